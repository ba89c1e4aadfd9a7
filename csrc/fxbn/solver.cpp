#include "solver.hpp"

#include <algorithm>
#include <sstream>

namespace fxbn {
namespace {

using i128 = __int128;

struct Point {
  int64_t x;
  int64_t k;
};

i128 cross(const Point& o, const Point& a, const Point& b) {
  return static_cast<i128>(a.x - o.x) * (b.k - o.k) - static_cast<i128>(a.k - o.k) * (b.x - o.x);
}

i128 floor_div(i128 n, i128 d) {  // d > 0
  i128 q = n / d;
  return (q * d > n) ? q - 1 : q;
}
i128 ceil_div(i128 n, i128 d) { return -floor_div(-n, d); }

// Hull vertex sets of the lower points P (upper hull) and upper points Q (lower hull), in s = 0 units.
struct Hulls {
  std::vector<Point> P, Q;
};

Hulls build_hulls(const StepFunction& f) {
  std::vector<Point> p, q;
  const int64_t levels = static_cast<int64_t>(f.T.size());
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t k = f.qmin + 1 + i, T = f.T[static_cast<size_t>(i)];
    if (T <= f.hi) {
      if (!p.empty() && p.back().x == T) p.back().k = k;  // keep the highest level reached at x
      else p.push_back({T, k});
    }
    if (T > f.lo) {
      if (q.empty() || q.back().x != T - 1) q.push_back({T - 1, k});  // keep the lowest level not reached
    }
  }
  Hulls h;
  for (const Point& pt : p) {
    while (h.P.size() >= 2 && cross(h.P[h.P.size() - 2], h.P.back(), pt) >= 0) h.P.pop_back();
    h.P.push_back(pt);
  }
  for (const Point& pt : q) {
    while (h.Q.size() >= 2 && cross(h.Q[h.Q.size() - 2], h.Q.back(), pt) <= 0) h.Q.pop_back();
    h.Q.push_back(pt);
  }
  return h;
}

struct SlopeRange {
  bool feasible = false;
  i128 a_lo = 0, a_hi = 0;  // integer A' in [a_lo, a_hi]; a_hi_inf when unbounded
  bool a_hi_inf = true;
};

SlopeRange slope_range(const Hulls& h, int s) {
  const i128 scale = static_cast<i128>(1) << s;
  bool has_max = false, has_min = false;
  i128 max_n = 0, max_d = 1, min_n = 0, min_d = 1;  // Amax = max_n/max_d (a minimum), Amin = min_n/min_d (a maximum)
  for (const Point& pi : h.P) {
    for (const Point& qj : h.Q) {
      if (pi.x < qj.x) {
        const i128 n = (qj.k - pi.k) * scale - 1, d = qj.x - pi.x;
        if (!has_max || n * max_d < max_n * d) { max_n = n; max_d = d; has_max = true; }
      } else if (pi.x > qj.x) {
        const i128 n = (pi.k - qj.k) * scale + 1, d = pi.x - qj.x;
        if (!has_min || n * min_d > min_n * d) { min_n = n; min_d = d; has_min = true; }
      } else if (pi.k * scale > qj.k * scale - 1) {
        return SlopeRange{};
      }
    }
  }
  SlopeRange r;
  r.a_lo = has_min ? std::max<i128>(0, ceil_div(min_n, min_d)) : 0;
  r.a_hi_inf = !has_max;
  r.a_hi = has_max ? floor_div(max_n, max_d) : 0;
  r.feasible = r.a_hi_inf || r.a_lo <= r.a_hi;
  return r;
}

struct Candidate {
  i128 A = 0, B = 0;  // mirrored coordinates
  int mult_bits = 0, acc_bits = 0;
};

Candidate candidate(const StepFunction& f, const Hulls& h, int s, i128 A) {
  const i128 scale = static_cast<i128>(1) << s;
  i128 b_min = 0, b_max = 0;
  bool first = true;
  for (const Point& p : h.P) {
    const i128 v = p.k * scale - A * p.x;
    if (first || v > b_min) b_min = v;
    first = false;
  }
  first = true;
  for (const Point& q : h.Q) {
    const i128 v = q.k * scale - 1 - A * q.x;
    if (first || v < b_max) b_max = v;
    first = false;
  }
  // centre the accumulator range on zero as far as the admissible interval allows
  const i128 centre = -floor_div(A * (static_cast<i128>(f.lo) + f.hi), 2);
  Candidate c;
  c.A = A;
  c.B = std::min(std::max(centre, b_min), b_max);
  const i128 lo_prod = A * f.lo, hi_prod = A * f.hi;
  c.acc_bits = std::max({signed_bits(lo_prod), signed_bits(hi_prod), signed_bits(lo_prod + c.B),
                         signed_bits(hi_prod + c.B), signed_bits(c.B)});
  c.mult_bits = signed_bits(A);  // |A| bits are the same for -A up to the asymmetric end; checked exactly below
  return c;
}

std::string tie_text(const StepFunction& f) {
  std::ostringstream os;
  os << "the reference has " << f.tie_count << " exact tie(s) in range (v(x) exactly halfway between two integers,"
     << " e.g. at x = " << f.tie_input << ") that round in both directions, which no floor((A*x + B) / 2^s) can"
     << " reproduce; use rounding='half_up' or 'floor', or exclude those inputs from in_range";
  return os.str();
}

}  // namespace

int signed_bits(__int128 v) {
  // smallest w >= 1 with -2^(w-1) <= v <= 2^(w-1) - 1
  unsigned __int128 m = v < 0 ? ~static_cast<unsigned __int128>(v) : static_cast<unsigned __int128>(v);
  int w = 1;
  while (m != 0) { m >>= 1; ++w; }
  return w;
}

int minimal_shift(const StepFunction& f, int max_shift) {
  bool constant = true;
  for (int64_t T : f.T) constant = constant && (T == f.lo || T == f.hi + 1);
  if (constant) return 0;
  const Hulls h = build_hulls(f);
  if (!slope_range(h, max_shift).feasible) return -1;
  int a = 0, b = max_shift;
  while (a < b) {
    const int mid = (a + b) / 2;
    if (slope_range(h, mid).feasible) b = mid; else a = mid + 1;
  }
  return a;
}

ChannelSolution solve_channel(const StepFunction& f, const SolveOptions& opt, int64_t channel) {
  if (opt.max_shift < 0 || opt.max_shift > 62 || opt.min_shift < 0 || opt.min_shift > opt.max_shift) {
    throw std::invalid_argument("shift bounds must satisfy 0 <= min_shift <= max_shift <= 62");
  }
  if (opt.acc_bits < 2 || opt.acc_bits > 64) throw std::invalid_argument("acc_bits must be in [2, 64]");
  if (opt.max_multiplier_bits < 1 || opt.max_multiplier_bits > 64) {
    throw std::invalid_argument("max_multiplier_bits must be in [1, 64]");
  }
  const int d = f.direction == 0 ? 1 : f.direction;

  bool constant = true;
  int64_t y0 = f.qmin;
  for (int64_t T : f.T) {
    constant = constant && (T == f.lo || T == f.hi + 1);
    if (T == f.lo) ++y0;
  }
  int best_acc = 1000, best_mult = 1000;
  auto fits = [&](const Candidate& c) {
    if (c.mult_bits <= opt.max_multiplier_bits) best_acc = std::min(best_acc, c.acc_bits);
    if (c.acc_bits <= opt.acc_bits) best_mult = std::min(best_mult, c.mult_bits);
    return c.acc_bits <= opt.acc_bits && c.mult_bits <= opt.max_multiplier_bits;
  };
  auto finish = [&](const Candidate& c, int s) {
    ChannelSolution sol;
    sol.multiplier = static_cast<int64_t>(c.A * d);
    sol.bias = static_cast<int64_t>(c.B);
    sol.shift = s;
    sol.multiplier_bits = signed_bits(c.A * d);
    sol.accumulator_bits = c.acc_bits;
    return sol;
  };

  if (constant) {
    const int s = opt.min_shift;
    Candidate c;
    c.B = static_cast<i128>(y0) << s;
    c.acc_bits = signed_bits(c.B);
    c.mult_bits = 1;
    if (!fits(c)) {
      std::ostringstream os;
      os << "channel " << channel << ": the constant output needs an accumulator of " << c.acc_bits << " bits (limit "
         << opt.acc_bits << ")";
      throw InfeasibleError(os.str());
    }
    return finish(c, s);
  }

  const Hulls h = build_hulls(f);
  if (!slope_range(h, opt.max_shift).feasible) {
    std::ostringstream os;
    os << "channel " << channel << ": no fixed-point parameters with shift <= " << opt.max_shift
       << " match the exact reference: ";
    if (f.has_tie) os << tie_text(f);
    else os << "the slope needs more precision than the shift allows over this input range";
    throw InfeasibleError(os.str());
  }
  int a = opt.min_shift, b = opt.max_shift;
  while (a < b) {
    const int mid = (a + b) / 2;
    if (slope_range(h, mid).feasible) b = mid; else a = mid + 1;
  }
  for (int s = a; s <= opt.max_shift; ++s) {
    const SlopeRange r = slope_range(h, s);
    Candidate c = candidate(f, h, s, r.a_lo);
    c.mult_bits = signed_bits(c.A * d);
    if (fits(c)) return finish(c, s);
  }
  std::ostringstream os;
  os << "channel " << channel << ": no exact parameters within the limits (acc_bits=" << opt.acc_bits
     << ", max_multiplier_bits=" << opt.max_multiplier_bits << "); minimal shift is " << a << "; ";
  if (best_acc <= 64) {
    os << "an accumulator of " << best_acc << " bits would work with this multiplier limit";
  } else if (best_acc < 1000) {
    os << "exact parameters need a " << best_acc << "-bit accumulator over this input range (64 is the widest"
       << " supported): pass a narrower in_range, such as the exact accumulator bound";
  } else {
    os << "no accumulator width works with this multiplier limit";
  }
  if (best_mult < 1000) os << "; a multiplier of " << best_mult << " bits would work with this accumulator limit";
  throw InfeasibleError(os.str());
}

}  // namespace fxbn
