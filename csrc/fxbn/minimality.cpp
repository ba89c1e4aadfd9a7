#include "fxbn/minimality.hpp"

#include <vector>

namespace fxbn {
namespace {

using i128 = __int128;

struct Point {
  i128 x, y;
  int64_t level;
};

// |x| <= 2^40 and |y| <= 2^80: every difference fits 82 bits and every cross product 123 bits.
constexpr i128 kMaxX = static_cast<i128>(1) << 40;
constexpr i128 kMaxY = static_cast<i128>(1) << 80;

i128 floor_div(i128 a, i128 b) {  // b != 0
  i128 q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

i128 ceil_div(i128 a, i128 b) { return -floor_div(-a, b); }

// Upper (upper = true) or lower convex envelope of points sorted by (x, y), as verify.breakpoints._envelope.
void envelope(const std::vector<Point>& pts, bool upper, std::vector<Point>* hull) {
  hull->clear();
  for (const Point& p : pts) {
    while (hull->size() >= 2) {
      const Point& a = (*hull)[hull->size() - 2];
      const Point& b = (*hull)[hull->size() - 1];
      i128 cross = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
      if (upper ? cross >= 0 : cross <= 0) {
        hull->pop_back();
      } else {
        break;
      }
    }
    hull->push_back(p);
  }
}

}  // namespace

void minimality_hulls(int64_t channels, int64_t levels, const int64_t* T, const int64_t* lo, const int64_t* hi,
                      const int32_t* shift_m1, int64_t qmin, int32_t* status, int64_t* idx) {
  std::vector<Point> low, up, hull_low, hull_up;
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t* t = T + c * levels;
    int64_t* out = idx + 4 * c;
    out[0] = out[1] = out[2] = out[3] = -1;
    status[c] = static_cast<int32_t>(MinimalityStatus::not_handled);
    const int32_t s = shift_m1[c];
    if (s < 0 || s > 62) continue;
    const i128 step = static_cast<i128>(1) << s;
    bool ok = true;
    low.clear();
    up.clear();
    for (int64_t i = 0; i < levels && ok; ++i) {
      const i128 x = t[i];
      const i128 y = static_cast<i128>(qmin + 1 + i) * step;
      if ((i > 0 && t[i] < t[i - 1]) || x > kMaxX || x < -kMaxX || y > kMaxY || y < -kMaxY) ok = false;
      if (t[i] <= hi[c]) low.push_back({x, y, i});
      if (t[i] > lo[c]) up.push_back({x - 1, y - 1, i});
    }
    if (!ok) continue;
    // T non-decreasing and k*2^s' increasing in i: both lists are sorted by (x, y) without duplicates already.
    envelope(low, true, &hull_low);
    envelope(up, false, &hull_up);
    bool have_max = false;
    i128 a_max = 0, a_min = 0;
    int64_t max_i = -1, max_j = -1, min_i = -1, min_j = -1;
    bool same_input = false;
    for (const Point& p : hull_low) {
      for (const Point& q : hull_up) {
        const i128 dx = q.x - p.x, dv = q.y - p.y;
        if (dx > 0) {
          const i128 bound = floor_div(dv, dx);
          if (!have_max || bound < a_max) {
            have_max = true;
            a_max = bound;
            max_i = p.level;
            max_j = q.level;
          }
        } else if (dx < 0) {
          const i128 bound = ceil_div(dv, dx);
          if (bound > a_min) {
            a_min = bound;
            min_i = p.level;
            min_j = q.level;
          }
        } else if (dv < 0) {
          out[0] = p.level;
          out[1] = q.level;
          same_input = true;
          break;
        }
      }
      if (same_input) break;
    }
    if (same_input) {
      status[c] = static_cast<int32_t>(MinimalityStatus::same_input);
    } else if (have_max && a_max < a_min) {
      status[c] = static_cast<int32_t>(MinimalityStatus::crossing);
      out[0] = max_i;
      out[1] = max_j;
      out[2] = min_i;
      out[3] = min_j;
    } else {
      status[c] = static_cast<int32_t>(MinimalityStatus::feasible);
      out[2] = min_i;
      out[3] = min_j;
    }
  }
}

}  // namespace fxbn
