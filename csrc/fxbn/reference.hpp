// The exact reference y(x) = clamp(R(v(x)), qmin, qmax) of one channel, described by its breakpoints.
//
// v is affine in x (affine form: v = a*x + b; batchnorm form: v = (gamma*(s_in*(x - z_in) - mean)/sqrt(var + eps)
// + beta)/s_out + z_out), so y is a monotone step function.  With direction d = sign of the slope, x' = d*x makes it
// non-decreasing on [lo', hi'], and it is fully described by T(k) = min{x' in [lo', hi'] : y >= k} (hi' + 1 if none)
// for k = qmin+1 .. qmax.  Every T(k) is exact: a long-double estimate decides the easy cases with a proven error
// margin, exact dyadic arithmetic (exact.hpp) decides the rest, and the batchnorm square root is never rounded
// (signs of p - c*sqrt(r) are decided by comparing squares).
#pragma once

#include <cstdint>
#include <vector>

namespace fxbn {

enum class Rounding : int { half_even = 0, half_up = 1, half_away = 2, floor = 3 };

// Level k of a rounding: R(v) >= k  <=>  v > t (strict) or v >= t, with threshold t = twice_t / 2.
struct RoundingLevel {
  int64_t twice_t;
  bool strict;
};
RoundingLevel rounding_level(int64_t k, Rounding r);

struct AffineParams {
  double a = 0.0, b = 0.0;
};

struct BatchNormParams {
  double gamma = 1.0, beta = 0.0, mean = 0.0, var = 1.0, eps = 0.0;
  double in_scale = 1.0, out_scale = 1.0;
  int64_t in_zero_point = 0, out_zero_point = 0;
};

struct StepFunction {
  int direction = 0;       // +1: y non-decreasing in x; -1: non-increasing (x' = -x); 0: constant
  int64_t lo = 0, hi = 0;  // the input range in x' coordinates
  int64_t qmin = 0, qmax = 0;
  std::vector<int64_t> T;  // T[k - qmin - 1] for k = qmin+1 .. qmax, each in [lo, hi + 1], non-decreasing
  bool has_tie = false;    // some input in range has v(x) exactly halfway between two integers
  int64_t tie_input = 0;   // such an input x (original coordinates), when has_tie
  int tie_count = 0;
};

// Range checks are the caller's: lo <= hi, |lo|, |hi| <= 2^40, qmin < qmax (or equal), finite parameters,
// var + eps > 0 and positive scales.  Invalid values throw std::invalid_argument.
StepFunction affine_step_function(const AffineParams& p, int64_t lo, int64_t hi, int64_t qmin, int64_t qmax,
                                  Rounding rounding);
StepFunction batchnorm_step_function(const BatchNormParams& p, int64_t lo, int64_t hi, int64_t qmin, int64_t qmax,
                                     Rounding rounding);

// Exact sign of v(x) - twice_t/2 (x in original coordinates).  Exposed for tests and the verifier.
int affine_sign(const AffineParams& p, int64_t x, int64_t twice_t);
int batchnorm_sign(const BatchNormParams& p, int64_t x, int64_t twice_t);

}  // namespace fxbn
