#include "reference.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "exact.hpp"

namespace fxbn {
namespace {

// Relative error allowance for a handful of long-double operations (each adds at most one unit roundoff).
const long double kRel = 16.0L * std::numeric_limits<long double>::epsilon();

// floor of a long double known to lie within int64 (here |v| < 2^35): truncation, corrected for negatives
inline int64_t floor_int(long double v) {
  const int64_t n = static_cast<int64_t>(v);
  return n - (static_cast<long double>(n) > v ? 1 : 0);
}

// [lo, hi] contains no integer
inline bool no_integer_within(long double lo, long double hi) {
  const int64_t f = floor_int(lo);
  return floor_int(hi) == f && static_cast<long double>(f) != lo;
}

struct AffineModel {
  const AffineParams& p;
  int direction() const { return p.a > 0 ? 1 : (p.a < 0 ? -1 : 0); }
  // tau: estimate of the real x' where v crosses t; |tau - exact| <= err
  long double inv_a;  // 1/|a|, one rounding: tau below carries at most 3 roundings
  explicit AffineModel(const AffineParams& q) : p(q), inv_a(1.0L / std::fabs(static_cast<long double>(q.a))) {}
  void approx(int64_t twice_t, long double& tau, long double& err) const {
    const long double t = static_cast<long double>(twice_t) * 0.5L;
    tau = (t - static_cast<long double>(p.b)) * inv_a;
    err = std::fabs(tau) * kRel;
  }
  int sign(int64_t x, int64_t twice_t) const { return affine_sign(p, x, twice_t); }
};

struct BatchNormModel {
  const BatchNormParams& p;
  int direction() const { return p.gamma > 0 ? 1 : (p.gamma < 0 ? -1 : 0); }
  void approx(int64_t twice_t, long double& tau, long double& err) const {
    using ld = long double;
    const ld t = static_cast<ld>(twice_t) / 2.0L;
    const ld d = std::sqrt(static_cast<ld>(p.var) + static_cast<ld>(p.eps));
    const ld tz = t - static_cast<ld>(p.out_zero_point);
    const ld c = tz * static_cast<ld>(p.out_scale) - static_cast<ld>(p.beta);
    const ld g = static_cast<ld>(p.gamma), s_in = static_cast<ld>(p.in_scale);
    const ld inner = (static_cast<ld>(p.mean) + c * d / g) / s_in;
    const ld zin = static_cast<ld>(p.in_zero_point);
    tau = (zin + inner) * static_cast<ld>(direction());
    // every term's magnitude, so that cancellation is accounted for
    const ld mag_c = std::fabs(tz) * static_cast<ld>(p.out_scale) + std::fabs(static_cast<ld>(p.beta));
    const ld mag = std::fabs(zin) + (std::fabs(static_cast<ld>(p.mean)) + mag_c * d / std::fabs(g)) / s_in;
    // var + eps may cancel (a negative var is accepted while var + eps > 0): scale by its condition number
    const ld cond = (std::fabs(static_cast<ld>(p.var)) + std::fabs(static_cast<ld>(p.eps))) /
                    (static_cast<ld>(p.var) + static_cast<ld>(p.eps));
    err = mag * kRel * cond;
  }
  int sign(int64_t x, int64_t twice_t) const { return batchnorm_sign(p, x, twice_t); }
};

template <class Model>
StepFunction step_function(const Model& m, int64_t lo, int64_t hi, int64_t qmin, int64_t qmax, Rounding rounding) {
  if (lo > hi) throw std::invalid_argument("empty input range (lo > hi)");
  if (qmin > qmax) throw std::invalid_argument("empty output range (qmin > qmax)");
  StepFunction f;
  f.direction = m.direction();
  f.qmin = qmin;
  f.qmax = qmax;
  const int64_t d = f.direction == 0 ? 1 : f.direction;
  f.lo = d > 0 ? lo : -hi;
  f.hi = d > 0 ? hi : -lo;
  const bool half = rounding != Rounding::floor;
  f.T.resize(static_cast<size_t>(qmax - qmin));

  auto pred = [&](int64_t xp, const RoundingLevel& lv) {
    int s = m.sign(d * xp, lv.twice_t);
    return s > 0 || (s == 0 && !lv.strict);
  };
  auto note_tie = [&](int64_t xp, const RoundingLevel& lv) {
    if (!half || xp < f.lo || xp > f.hi) return;
    if (m.sign(d * xp, lv.twice_t) != 0) return;
    if (!f.has_tie) f.tie_input = d * xp;
    f.has_tie = true;
    ++f.tie_count;
  };

  for (int64_t k = qmin + 1; k <= qmax; ++k) {
    const RoundingLevel lv = rounding_level(k, rounding);
    int64_t T;
    if (f.direction == 0) {
      T = pred(f.lo, lv) ? f.lo : f.hi + 1;
      if (T == f.lo) note_tie(f.lo, lv);
    } else {
      long double tau, err;
      m.approx(lv.twice_t, tau, err);
      if (!(err >= 0.0L) || !std::isfinite(tau) || !std::isfinite(err)) {
        err = std::numeric_limits<long double>::infinity();  // no usable estimate: exact bisection below
        tau = 0.0L;
      }
      const long double lo_ld = static_cast<long double>(f.lo), hi_ld = static_cast<long double>(f.hi);
      if (tau + err < lo_ld - 1.0L) {
        T = f.lo;
      } else if (tau - err > hi_ld + 1.0L) {
        T = f.hi + 1;
      } else if (err < 0.25L && no_integer_within(tau - err, tau + err)) {
        // no integer within the error margin: the exact threshold is not an integer and has the same ceiling
        T = floor_int(tau - err) + 1;
      } else if (err < 0.25L) {
        // the exact threshold is within 1/4 of the integer n: decide exactly
        const int64_t n = static_cast<int64_t>(std::llround(tau));
        const int s = m.sign(d * n, lv.twice_t);
        T = s > 0 ? n : (s < 0 ? n + 1 : (lv.strict ? n + 1 : n));
        if (s == 0) note_tie(n, lv);
      } else {
        // the estimate is too coarse: exact bisection over the range (pred is monotone in x')
        int64_t a = f.lo, b = f.hi + 1;  // invariant: pred false below a, true at b (b = hi+1 means none)
        while (a < b) {
          int64_t mid = a + (b - a) / 2;
          if (pred(mid, lv)) b = mid; else a = mid + 1;
        }
        T = a;
        note_tie(a, lv);
        note_tie(a - 1, lv);
      }
      if (T < f.lo) T = f.lo;
      if (T > f.hi + 1) T = f.hi + 1;
    }
    f.T[static_cast<size_t>(k - qmin - 1)] = T;
  }
  for (size_t i = 1; i < f.T.size(); ++i) {
    if (f.T[i] < f.T[i - 1]) throw std::logic_error("internal error: breakpoints are not monotone");
  }
  return f;
}

}  // namespace

int affine_sign(const AffineParams& p, int64_t x, int64_t twice_t) {
  Dyadic v = Dyadic::from_double(p.a) * Dyadic::from_int(x) + Dyadic::from_double(p.b);
  return (v - Dyadic::half_integer(twice_t)).sign();
}

int batchnorm_sign(const BatchNormParams& p, int64_t x, int64_t twice_t) {
  // sign(v - t) = sign(P - c*sqrt(r)) with P = gamma*(s_in*(x - z_in) - mean), c = (t - z_out)*s_out - beta,
  // r = var + eps > 0 (the positive factor 1/(sqrt(r)*s_out) dropped).
  const Dyadic P = Dyadic::from_double(p.gamma) *
                   (Dyadic::from_double(p.in_scale) * Dyadic::from_int(x - p.in_zero_point) -
                    Dyadic::from_double(p.mean));
  const Dyadic c = (Dyadic::half_integer(twice_t) - Dyadic::from_int(p.out_zero_point)) *
                       Dyadic::from_double(p.out_scale) -
                   Dyadic::from_double(p.beta);
  const Dyadic r = Dyadic::from_double(p.var) + Dyadic::from_double(p.eps);
  const int sp = P.sign(), sc = c.sign();
  if (sc == 0) return sp;
  if (sp == 0) return -sc;
  if (sp > 0 && sc < 0) return 1;
  if (sp < 0 && sc > 0) return -1;
  const int sq = compare(P * P, c * c * r);  // sign(P^2 - c^2 r)
  return sp > 0 ? sq : -sq;
}

StepFunction affine_step_function(const AffineParams& p, int64_t lo, int64_t hi, int64_t qmin, int64_t qmax,
                                  Rounding rounding) {
  if (!std::isfinite(p.a) || !std::isfinite(p.b)) throw std::invalid_argument("a and b must be finite");
  return step_function(AffineModel(p), lo, hi, qmin, qmax, rounding);
}

StepFunction batchnorm_step_function(const BatchNormParams& p, int64_t lo, int64_t hi, int64_t qmin, int64_t qmax,
                                     Rounding rounding) {
  const double vals[] = {p.gamma, p.beta, p.mean, p.var, p.eps, p.in_scale, p.out_scale};
  for (double v : vals) {
    if (!std::isfinite(v)) throw std::invalid_argument("batchnorm parameters must be finite");
  }
  if (p.in_scale <= 0 || p.out_scale <= 0) throw std::invalid_argument("scales must be positive");
  if ((Dyadic::from_double(p.var) + Dyadic::from_double(p.eps)).sign() <= 0) {
    throw std::invalid_argument("var + eps must be positive");
  }
  return step_function(BatchNormModel{p}, lo, hi, qmin, qmax, rounding);
}

RoundingLevel rounding_level(int64_t k, Rounding r) {
  switch (r) {
    case Rounding::floor:
      return {2 * k, false};
    case Rounding::half_up:
      return {2 * k - 1, false};
    case Rounding::half_even:
      return {2 * k - 1, (k % 2) != 0};
    case Rounding::half_away:
      return {2 * k - 1, k <= 0};
  }
  throw std::invalid_argument("unknown rounding");
}

}  // namespace fxbn
