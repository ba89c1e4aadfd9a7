// Whole-layer entry points: per-channel arrays in, per-channel solutions out.  Arrays have `channels` entries;
// breakpoint arrays are channels x (qmax - qmin), row-major.  Outputs are written only when every channel succeeds.
#pragma once

#include <cstdint>

#include "reference.hpp"
#include "solver.hpp"

namespace fxbn {

struct LayerOutput {
  int64_t* multiplier;
  int64_t* bias;
  int32_t* shift;
  int32_t* multiplier_bits;
  int32_t* accumulator_bits;
};

struct BatchNormArrays {
  const double *gamma, *beta, *mean, *var, *eps, *in_scale, *out_scale;
  const int64_t *in_zero_point, *out_zero_point;
};

void solve_affine_layer(int64_t channels, const double* a, const double* b, const int64_t* lo, const int64_t* hi,
                        int64_t qmin, int64_t qmax, Rounding rounding, const SolveOptions& opt, bool common_shift,
                        const LayerOutput& out);

void solve_batchnorm_layer(int64_t channels, const BatchNormArrays& p, const int64_t* lo, const int64_t* hi,
                           int64_t qmin, int64_t qmax, Rounding rounding, const SolveOptions& opt, bool common_shift,
                           const LayerOutput& out);

// Reference breakpoints in mirrored coordinates (see StepFunction), for verification.
void affine_breakpoints(int64_t channels, const double* a, const double* b, const int64_t* lo, const int64_t* hi,
                        int64_t qmin, int64_t qmax, Rounding rounding, int8_t* direction, int64_t* T);
void batchnorm_breakpoints(int64_t channels, const BatchNormArrays& p, const int64_t* lo, const int64_t* hi,
                           int64_t qmin, int64_t qmax, Rounding rounding, int8_t* direction, int64_t* T);

// Breakpoints of the fixed-point map clamp((A*x + B) >> s, qmin, qmax) in the coordinates x' = d*x given by
// direction[c] (0 counts as +1): T(k) = min{x' in [lo', hi'] : f >= k}, hi' + 1 if none.  The map must be
// non-decreasing in x' (A*d >= 0); channels where it is not get T filled with -1 and ok[c] = 0.
void fixed_point_breakpoints(int64_t channels, const int64_t* multiplier, const int64_t* bias, const int32_t* shift,
                             const int8_t* direction, const int64_t* lo, const int64_t* hi, int64_t qmin,
                             int64_t qmax, int64_t* T, int8_t* ok);

}  // namespace fxbn
