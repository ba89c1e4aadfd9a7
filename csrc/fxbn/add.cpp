#include "add.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace fxbn {
namespace {

using i128 = __int128;

i128 floor_div(i128 n, i128 d) {  // d > 0
  i128 q = n / d;
  return (q * d > n) ? q - 1 : q;
}
i128 ceil_div(i128 n, i128 d) { return -floor_div(-n, d); }

int bits_of(i128 v) { return signed_bits(v); }

// A positive finite double as m * 2^e with m odd.
void odd_decompose(double v, int64_t* m, int* e) {
  int ex = 0;
  const double f = std::frexp(v, &ex);
  int64_t mi = static_cast<int64_t>(std::ldexp(f, 53));  // exact
  int64_t e64 = static_cast<int64_t>(ex) - 53;
  while ((mi & 1) == 0) {
    mi >>= 1;
    ++e64;
  }
  *m = mi;
  *e = static_cast<int>(e64);
}

// sign(v - t) = sign(2*M1*(x1 - z1) + 2*M2*(x2 - z2) + Mo*(2*z_out - twice_t)), M = scale * 2^-E integers.
struct Exact {
  i128 M1 = 0, M2 = 0, Mo = 0;
  AddParams p;

  explicit Exact(const AddParams& q) : p(q) {
    const double sc[3] = {q.s1, q.s2, q.s_out};
    for (double v : sc) {
      if (!std::isfinite(v) || !(v > 0)) throw std::invalid_argument("scales must be positive and finite");
    }
    const int64_t zs[3] = {q.z1, q.z2, q.z_out};
    for (int64_t z : zs) {
      if (z < -(int64_t{1} << 31) || z > (int64_t{1} << 31)) throw std::invalid_argument("zero points must be within 2^31");
    }
    const int64_t bounds[6] = {q.l1, q.h1, q.l2, q.h2, q.qmin, q.qmax};
    for (int64_t b : bounds) {
      if (b < -(int64_t{1} << 16) || b > (int64_t{1} << 16)) throw std::invalid_argument("ranges must be within 2^16");
    }
    if (q.l1 > q.h1 || q.l2 > q.h2) throw std::invalid_argument("empty input range");
    if (q.qmin > q.qmax) throw std::invalid_argument("empty output range");
    int64_t m[3];
    int e[3];
    for (int i = 0; i < 3; ++i) odd_decompose(sc[i], &m[i], &e[i]);
    const int E = std::min({e[0], e[1], e[2]});
    for (int i = 0; i < 3; ++i) {
      // |M| < 2^88 keeps |2*M1*(x1 - z1)| etc. below 2^123 and their sum below 2^125
      int mbits = 0;
      for (int64_t v = m[i]; v != 0; v >>= 1) ++mbits;
      if (e[i] - E + mbits > 88) {
        throw std::invalid_argument("the scales s1, s2, s_out are too far apart for exact 128-bit arithmetic (their odd mantissas times the exponent gap exceed 2^88); not supported");
      }
    }
    M1 = static_cast<i128>(m[0]) << (e[0] - E);
    M2 = static_cast<i128>(m[1]) << (e[1] - E);
    Mo = static_cast<i128>(m[2]) << (e[2] - E);
  }

  i128 sigma(int64_t x1, int64_t x2, int64_t twice_t) const {
    return 2 * M1 * (x1 - p.z1) + 2 * M2 * (x2 - p.z2) + Mo * (2 * p.z_out - twice_t);
  }

  // First x2 in [l2, h2] with y >= k (h2 + 1 if none); *tie set when v = t exactly at some x2 in range.
  int64_t row_breakpoint(int64_t x1, const RoundingLevel& lv, bool* tie, int64_t* tie_x2) const {
    // sigma = 2*M2*x2 + R0; need 2*M2*x2 >= -R0 (> when strict)
    const i128 R0 = 2 * M1 * (x1 - p.z1) - 2 * M2 * p.z2 + Mo * (2 * p.z_out - lv.twice_t);
    const i128 d = 2 * M2, n = -R0;
    i128 x = lv.strict ? floor_div(n, d) + 1 : ceil_div(n, d);
    *tie = false;
    if (n % d == 0) {
      const i128 xt = n / d;
      if (xt >= p.l2 && xt <= p.h2) {
        *tie = true;
        *tie_x2 = static_cast<int64_t>(xt);
      }
    }
    if (x < p.l2) x = p.l2;
    if (x > p.h2 + 1) x = p.h2 + 1;
    return static_cast<int64_t>(x);
  }
};

struct Pt {
  int64_t x, u, k;
};

i128 cross2(int64_t ou, int64_t ok, int64_t au, int64_t ak, int64_t bu, int64_t bk) {
  return static_cast<i128>(au - ou) * (bk - ok) - static_cast<i128>(ak - ok) * (bu - ou);
}

struct Problem {
  Exact ex;
  std::vector<Pt> P, Q;
  bool has_tie = false;
  int64_t tie1 = 0, tie2 = 0;
  int64_t tie_count = 0;
  bool constant = true;  // every row is constant and equal (y takes one value)
  int64_t y0 = 0;

  explicit Problem(const AddParams& q) : ex(q) {
    const AddParams& p = ex.p;
    const bool half = p.rounding != Rounding::floor;
    const int64_t levels = p.qmax - p.qmin;
    std::vector<int64_t> T(static_cast<size_t>(levels));
    std::vector<Pt> rp, rq, hp, hq;
    bool first_row = true;
    std::vector<int64_t> T0;
    for (int64_t x1 = p.l1; x1 <= p.h1; ++x1) {
      for (int64_t i = 0; i < levels; ++i) {
        const int64_t k = p.qmin + 1 + i;
        bool tie = false;
        int64_t tx2 = 0;
        T[static_cast<size_t>(i)] = ex.row_breakpoint(x1, rounding_level(k, p.rounding), &tie, &tx2);
        if (tie && half) {
          if (!has_tie) {
            tie1 = x1;
            tie2 = tx2;
          }
          has_tie = true;
          ++tie_count;
        }
      }
      if (first_row) {
        T0 = T;
        first_row = false;
        y0 = p.qmin;
        for (int64_t t : T) {
          if (t != p.l2 && t != p.h2 + 1) constant = false;
          if (t == p.l2) ++y0;
        }
      } else if (constant && T != T0) {
        constant = false;
      }
      rp.clear();
      rq.clear();
      for (int64_t i = 0; i < levels; ++i) {
        const int64_t k = p.qmin + 1 + i, t = T[static_cast<size_t>(i)];
        if (t <= p.h2) {
          if (!rp.empty() && rp.back().u == t) rp.back().k = k;
          else rp.push_back({x1, t, k});
        }
        if (t > p.l2) {
          if (rq.empty() || rq.back().u != t - 1) rq.push_back({x1, t - 1, k});
        }
      }
      hp.clear();
      for (const Pt& pt : rp) {  // upper hull in (u, k)
        while (hp.size() >= 2 && cross2(hp[hp.size() - 2].u, hp[hp.size() - 2].k, hp.back().u, hp.back().k, pt.u,
                                        pt.k) >= 0)
          hp.pop_back();
        hp.push_back(pt);
      }
      hq.clear();
      for (const Pt& pt : rq) {  // lower hull in (u, k)
        while (hq.size() >= 2 && cross2(hq[hq.size() - 2].u, hq[hq.size() - 2].k, hq.back().u, hq.back().k, pt.u,
                                        pt.k) <= 0)
          hq.pop_back();
        hq.push_back(pt);
      }
      P.insert(P.end(), hp.begin(), hp.end());
      Q.insert(Q.end(), hq.begin(), hq.end());
    }
  }
};

// A rational n/d (d > 0), or -infinity.
struct Rat {
  bool neg_inf = false;
  i128 n = 0, d = 1;
};

int cmp(const Rat& a, const Rat& b) {
  if (a.neg_inf || b.neg_inf) return a.neg_inf == b.neg_inf ? 0 : (a.neg_inf ? -1 : 1);
  const i128 l = a.n * b.d, r = b.n * a.d;
  return l < r ? -1 : (l > r ? 1 : 0);
}

struct UC {
  int64_t u;
  i128 c;
};

// Per-column extremes for fixed (s, A1), their hulls, and the one-input analysis in (A2, B).
class Slice {
 public:
  Slice(const Problem& pr, int s, i128 a1) {
    const AddParams& p = pr.ex.p;
    const int64_t width = p.h2 - p.l2 + 1;
    const i128 scale = static_cast<i128>(1) << s;
    pmax_.assign(static_cast<size_t>(width), 0);
    qmin_.assign(static_cast<size_t>(width), 0);
    hasp_.assign(static_cast<size_t>(width), 0);
    hasq_.assign(static_cast<size_t>(width), 0);
    for (const Pt& pt : pr.P) {
      const size_t j = static_cast<size_t>(pt.u - p.l2);
      const i128 c = pt.k * scale - a1 * pt.x;
      if (!hasp_[j] || c > pmax_[j]) pmax_[j] = c;
      hasp_[j] = 1;
    }
    for (const Pt& pt : pr.Q) {
      const size_t j = static_cast<size_t>(pt.u - p.l2);
      const i128 c = pt.k * scale - 1 - a1 * pt.x;
      if (!hasq_[j] || c < qmin_[j]) qmin_[j] = c;
      hasq_[j] = 1;
    }
    for (int64_t j = 0; j < width; ++j) {
      const size_t js = static_cast<size_t>(j);
      if (hasp_[js]) push_hull(HP, {p.l2 + j, pmax_[js]}, true);
      if (hasq_[js]) push_hull(HQ, {p.l2 + j, qmin_[js]}, false);
    }
  }

  std::vector<UC> HP, HQ;  // upper hull of the P extremes, lower hull of the Q extremes

  // min over real a of max_P(c - a*u) - min_Q(c - a*u)
  Rat G() const {
    Rat r;
    if (HP.empty() || HQ.empty()) {
      r.neg_inf = true;
      return r;
    }
    if (HQ.back().u < HP.front().u || HP.back().u < HQ.front().u) {
      r.neg_inf = true;
      return r;
    }
    bool have = false;
    auto consider = [&](i128 n, i128 d) {
      i128 U = 0, L = 0;
      bool f = true;
      for (const UC& q : HP) {
        const i128 v = q.c * d - n * q.u;
        if (f || v > U) U = v;
        f = false;
      }
      f = true;
      for (const UC& q : HQ) {
        const i128 v = q.c * d - n * q.u;
        if (f || v < L) L = v;
        f = false;
      }
      Rat cand{false, U - L, d};
      if (!have || cmp(cand, r) < 0) r = cand;
      have = true;
    };
    consider(0, 1);
    for (size_t i = 0; i + 1 < HP.size(); ++i) consider(HP[i + 1].c - HP[i].c, HP[i + 1].u - HP[i].u);
    for (size_t i = 0; i + 1 < HQ.size(); ++i) consider(HQ[i + 1].c - HQ[i].c, HQ[i + 1].u - HQ[i].u);
    return r;
  }

  // Integer A2 interval [lo, hi] (unbounded ends flagged); false when empty.
  bool a2_range(i128* lo, bool* lo_inf, i128* hi, bool* hi_inf) const {
    bool has_max = false, has_min = false;
    i128 max_n = 0, max_d = 1, min_n = 0, min_d = 1;
    for (const UC& pi : HP) {
      for (const UC& qj : HQ) {
        if (pi.u < qj.u) {  // a <= (c_q - c_p)/(u_q - u_p)
          const i128 n = qj.c - pi.c, d = qj.u - pi.u;
          if (!has_max || n * max_d < max_n * d) { max_n = n; max_d = d; has_max = true; }
        } else if (pi.u > qj.u) {  // a >= (c_p - c_q)/(u_p - u_q)
          const i128 n = pi.c - qj.c, d = pi.u - qj.u;
          if (!has_min || n * min_d > min_n * d) { min_n = n; min_d = d; has_min = true; }
        } else if (pi.c > qj.c) {
          return false;
        }
      }
    }
    *lo_inf = !has_min;
    *hi_inf = !has_max;
    *lo = has_min ? ceil_div(min_n, min_d) : 0;
    *hi = has_max ? floor_div(max_n, max_d) : 0;
    return !has_min || !has_max || *lo <= *hi;
  }

 private:
  std::vector<i128> pmax_, qmin_;
  std::vector<char> hasp_, hasq_;

  static void push_hull(std::vector<UC>& h, const UC& pt, bool upper) {
    while (h.size() >= 2) {
      const UC& o = h[h.size() - 2];
      const UC& a = h.back();
      // cross of (a - o) x (pt - o) in (u, c); c needs 128 bits, so does the product: c differences < 2^76,
      // u differences < 2^18
      const i128 cr = static_cast<i128>(a.u - o.u) * (pt.c - o.c) - (a.c - o.c) * static_cast<i128>(pt.u - o.u);
      if (upper ? cr >= 0 : cr <= 0) h.pop_back();
      else break;
    }
    h.push_back(pt);
  }
};

struct Found {
  bool ok = false;
  i128 a1 = 0, a2 = 0, b = 0;
};

// Pick B in [b_min, b_max] for integer (A1, A2), centring the accumulator range on zero.
i128 pick_bias(const Problem& pr, int s, i128 a1, i128 a2, bool* ok) {
  const AddParams& p = pr.ex.p;
  const i128 scale = static_cast<i128>(1) << s;
  bool hp = false, hq = false;
  i128 bmin = 0, bmax = 0;
  for (const Pt& pt : pr.P) {
    const i128 v = pt.k * scale - a1 * pt.x - a2 * pt.u;
    if (!hp || v > bmin) bmin = v;
    hp = true;
  }
  for (const Pt& pt : pr.Q) {
    const i128 v = pt.k * scale - 1 - a1 * pt.x - a2 * pt.u;
    if (!hq || v < bmax) bmax = v;
    hq = true;
  }
  *ok = !(hp && hq && bmin > bmax);
  i128 b = -floor_div(a1 * (static_cast<i128>(p.l1) + p.h1) + a2 * (static_cast<i128>(p.l2) + p.h2), 2);
  if (hp && b < bmin) b = bmin;
  if (hq && b > bmax) b = bmax;
  return b;
}

constexpr int64_t kScanLimit = int64_t{1} << 14;

Found feasible(const Problem& pr, int s) {
  const AddParams& p = pr.ex.p;
  Found out;
  if (pr.constant) {
    out.ok = true;
    out.b = static_cast<i128>(pr.y0) << s;
    return out;
  }
  const i128 scale = static_cast<i128>(1) << s;
  const i128 top = p.l1 == p.h1 ? 0 : (static_cast<i128>(p.qmax - p.qmin) + 1) * scale;
  auto G = [&](i128 a1) { return Slice(pr, s, a1).G(); };
  // integer ternary search for a minimiser of the convex G on [0, top]
  i128 lo = 0, hi = top;
  while (hi - lo > 2) {
    const i128 m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
    const int c = cmp(G(m1), G(m2));
    if (c < 0) hi = m2 - 1;
    else if (c > 0) lo = m1 + 1;
    else { lo = m1; hi = m2; }
  }
  i128 best = lo;
  Rat gbest = G(lo);
  for (i128 a = lo + 1; a <= hi; ++a) {
    const Rat g = G(a);
    if (cmp(g, gbest) < 0) { gbest = g; best = a; }
  }
  const Rat zero{false, 0, 1};
  if (cmp(gbest, zero) > 0) return out;  // no real (A1, A2, B): infeasible at s
  // the integer A1 with G <= 0 form an interval around best: try them outwards
  auto try_a1 = [&](i128 a1) {
    const Slice sl(pr, s, a1);
    i128 alo, ahi;
    bool lo_inf, hi_inf;
    if (!sl.a2_range(&alo, &lo_inf, &ahi, &hi_inf)) return false;
    i128 a2 = 0;
    if (!lo_inf) a2 = std::max<i128>(a2, alo);
    if (!hi_inf) a2 = std::min<i128>(a2, ahi);
    bool ok = false;
    const i128 b = pick_bias(pr, s, a1, a2, &ok);
    if (!ok) throw std::logic_error("internal error: add solver bias interval empty for a feasible slope");
    out.ok = true;
    out.a1 = a1;
    out.a2 = a2;
    out.b = b;
    return true;
  };
  if (try_a1(best)) return out;
  bool up = true, down = true;
  int64_t tried = 1;
  for (i128 step = 1; up || down; ++step) {
    if (up) {
      const i128 a = best + step;
      if (a > top || cmp(G(a), zero) > 0) up = false;
      else if (try_a1(a)) return out;
    }
    if (down) {
      const i128 a = best - step;
      if (a < 0 || cmp(G(a), zero) > 0) down = false;
      else if (try_a1(a)) return out;
    }
    if (++tried > kScanLimit) {
      std::ostringstream os;
      os << "add solver: more than " << kScanLimit << " candidate multipliers at shift " << s
         << " without deciding feasibility (search limit; no parameters returned)";
      throw InfeasibleError(os.str());
    }
  }
  return out;
}

void check_pairs(const AddParams& p) {
  const i128 pairs = (static_cast<i128>(p.h1) - p.l1 + 1) * (static_cast<i128>(p.h2) - p.l2 + 1);
  if (pairs > kAddMaxPairs) throw std::invalid_argument("input box too large for the add solver");
}

int acc_bits_of(const AddParams& p, i128 a1, i128 a2, i128 b) {
  int w = bits_of(b);
  const int64_t xs1[2] = {p.l1, p.h1}, xs2[2] = {p.l2, p.h2};
  for (int64_t x1 : xs1) {
    for (int64_t x2 : xs2) {
      const i128 t1 = a1 * x1, t2 = a2 * x2;
      w = std::max({w, bits_of(t1), bits_of(t2), bits_of(t1 + t2), bits_of(t1 + t2 + b)});
    }
  }
  return w;
}

}  // namespace

int add_sign(const AddParams& p, int64_t x1, int64_t x2, int64_t twice_t) {
  const Exact ex(p);
  const i128 v = ex.sigma(x1, x2, twice_t);
  return v > 0 ? 1 : (v < 0 ? -1 : 0);
}

int64_t add_reference(const AddParams& p, int64_t x1, int64_t x2) {
  const Exact ex(p);
  int64_t y = p.qmin;
  for (int64_t k = p.qmin + 1; k <= p.qmax; ++k) {
    const RoundingLevel lv = rounding_level(k, p.rounding);
    const i128 v = ex.sigma(x1, x2, lv.twice_t);
    if (v > 0 || (v == 0 && !lv.strict)) y = k;
    else break;
  }
  return y;
}

bool add_feasible_at(const AddParams& p, int s) {
  if (s < 0 || s > kAddMaxShift) throw std::invalid_argument("shift out of range");
  check_pairs(p);
  const Problem pr(p);
  return feasible(pr, s).ok;
}

AddSolution solve_add(const AddParams& p, int max_shift, int acc_bits) {
  if (max_shift < 0 || max_shift > kAddMaxShift) throw std::invalid_argument("max_shift must be in [0, 40]");
  if (acc_bits < 2 || acc_bits > 64) throw std::invalid_argument("acc_bits must be in [2, 64]");
  check_pairs(p);
  const Problem pr(p);
  Found f = feasible(pr, max_shift);
  if (!f.ok) {
    std::ostringstream os;
    os << "no fixed-point parameters with shift <= " << max_shift << " match the exact add reference: ";
    if (pr.has_tie) {
      os << "the reference has " << pr.tie_count << " exact tie(s) in range (the sum exactly halfway between two "
         << "integers, e.g. at (x1, x2) = (" << pr.tie1 << ", " << pr.tie2 << ")) that round in both directions, "
         << "which no floor((A1*x1 + A2*x2 + B) / 2^s) can reproduce; use rounding='half_up' or 'floor'";
    } else {
      os << "the ratios need more precision than the shift allows over this input box";
    }
    throw InfeasibleError(os.str());
  }
  int a = 0, b = max_shift;
  while (a < b) {
    const int mid = (a + b) / 2;
    if (feasible(pr, mid).ok) b = mid; else a = mid + 1;
  }
  for (int s = a; s <= max_shift; ++s) {
    f = feasible(pr, s);
    if (!f.ok) throw std::logic_error("internal error: add feasibility is not monotone in the shift");
    AddSolution sol;
    sol.a1 = static_cast<int64_t>(f.a1);
    sol.a2 = static_cast<int64_t>(f.a2);
    sol.bias = static_cast<int64_t>(f.b);
    sol.shift = s;
    sol.multiplier_bits = std::max(bits_of(f.a1), bits_of(f.a2));
    sol.accumulator_bits = acc_bits_of(p, f.a1, f.a2, f.b);
    if (sol.accumulator_bits > acc_bits) continue;
    int64_t b1 = 0, b2 = 0;
    if (!add_check_all(p, sol.a1, sol.a2, sol.bias, s, &b1, &b2)) {
      std::ostringstream os;
      os << "internal error: add solution fails at (" << b1 << ", " << b2 << ")";
      throw std::logic_error(os.str());
    }
    return sol;
  }
  std::ostringstream os;
  os << "no exact add parameters fit an accumulator of " << acc_bits << " bits (minimal shift " << a << ")";
  throw InfeasibleError(os.str());
}

bool add_check_all(const AddParams& p, int64_t a1, int64_t a2, int64_t bias, int shift, int64_t* bad1,
                   int64_t* bad2) {
  if (shift < 0 || shift > 62) throw std::invalid_argument("shift must be in [0, 62]");
  check_pairs(p);
  const Exact ex(p);
  const int64_t levels = p.qmax - p.qmin;
  std::vector<int64_t> T(static_cast<size_t>(levels));
  for (int64_t x1 = p.l1; x1 <= p.h1; ++x1) {
    for (int64_t i = 0; i < levels; ++i) {
      bool tie;
      int64_t tx;
      T[static_cast<size_t>(i)] = ex.row_breakpoint(x1, rounding_level(p.qmin + 1 + i, p.rounding), &tie, &tx);
    }
    size_t lev = 0;
    for (int64_t x2 = p.l2; x2 <= p.h2; ++x2) {
      while (lev < T.size() && T[lev] <= x2) ++lev;
      const int64_t y = p.qmin + static_cast<int64_t>(lev);
      const i128 acc = static_cast<i128>(a1) * x1 + static_cast<i128>(a2) * x2 + bias;
      i128 f = floor_div(acc, static_cast<i128>(1) << shift);
      if (f < p.qmin) f = p.qmin;
      if (f > p.qmax) f = p.qmax;
      if (f != y) {
        *bad1 = x1;
        *bad2 = x2;
        return false;
      }
    }
  }
  return true;
}

}  // namespace fxbn
