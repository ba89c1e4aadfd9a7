// The exact two-input add: y(x1, x2) = clamp(R((s1*(x1 - z1) + s2*(x2 - z2))/s_out + z_out), qmin, qmax) as
// f(x1, x2) = clamp((A1*x1 + A2*x2 + B) >> s, qmin, qmax), equal for every (x1, x2) of the box [l1, h1] x [l2, h2],
// with the smallest s.
//
// Scales are positive, so y is non-decreasing in x1 and in x2.  Per row x1 the row is a one-input step function
// with breakpoints T_x1(k) (first x2 with y >= k); f equals y iff, for every row and level k,
//   A1*x1 + A2*T(k) + B       >= k*2^s       when T(k) <= h2     (lower points P)
//   A1*x1 + A2*(T(k) - 1) + B <= k*2^s - 1   when T(k) >  l2     (upper points Q)
// Only each row's hull vertices bind (a point below the row's upper hull of P is a convex combination of points
// of the same row, whose constraints imply its own; likewise Q).  For fixed s and A1 the problem in (A2, B) is the
// one-input problem over the per-column extremes, and
//   G(A1) = min over real A2 of [max_P (k*2^s - A1*x - A2*u) - min_Q (k*2^s - 1 - A1*x - A2*u)]
// is convex in A1 (a partial minimum of a jointly convex max of affine functions), with G(A1) <= 0 iff some real
// (A2, B) fits.  G is evaluated exactly (rationals over 128-bit integers) at the breakpoints of its piecewise-linear
// inner function; an integer ternary search finds its minimum, and the integer A1 around it (where G <= 0) are
// tried for an integer A2 in their exact slope interval.  Feasibility is monotone in s ((2A1, 2A2, 2B) at s + 1),
// so the smallest s is found by bisection.  No floating point takes part in any decision.
#pragma once

#include <cstdint>

#include "reference.hpp"
#include "solver.hpp"

namespace fxbn {

struct AddParams {
  double s1 = 1.0, s2 = 1.0, s_out = 1.0;  // positive, finite; taken as the exact rationals they denote
  int64_t z1 = 0, z2 = 0, z_out = 0;       // |z| <= 2^31
  int64_t l1 = 0, h1 = 0, l2 = 0, h2 = 0;  // input box, |bounds| <= 2^16
  int64_t qmin = 0, qmax = 0;              // output range, |bounds| <= 2^16
  Rounding rounding = Rounding::half_even;
};

struct AddSolution {
  int64_t a1 = 0, a2 = 0, bias = 0;
  int shift = 0;
  int multiplier_bits = 1;   // widest of A1, A2
  int accumulator_bits = 1;  // widest of A1*x1, A2*x2, A1*x1 + A2*x2, A1*x1 + A2*x2 + B, B over the box
};

constexpr int kAddMaxShift = 40;       // keeps every exact intermediate of the search within 128 bits
constexpr int64_t kAddMaxPairs = int64_t{1} << 25;  // the box size the solver accepts (rows * columns)

// Exact sign of v(x1, x2) - twice_t/2.
int add_sign(const AddParams& p, int64_t x1, int64_t x2, int64_t twice_t);

// The exact reference output at one pair.
int64_t add_reference(const AddParams& p, int64_t x1, int64_t x2);

// Smallest-shift exact parameters with shift <= max_shift (<= kAddMaxShift) and accumulator_bits <= acc_bits.
// Throws InfeasibleError (naming a tie pair when the reference has exact ties) or std::invalid_argument.
AddSolution solve_add(const AddParams& p, int max_shift, int acc_bits);

// Whether any integer (A1, A2, B) is exact at shift s (width limits ignored): the minimality certificate's claim.
bool add_feasible_at(const AddParams& p, int s);

// Every pair of the box checked against the exact reference (row breakpoints); returns false and the first
// mismatching pair in *bad1, *bad2 when f differs somewhere.
bool add_check_all(const AddParams& p, int64_t a1, int64_t a2, int64_t bias, int shift, int64_t* bad1,
                   int64_t* bad2);

}  // namespace fxbn

// ------------------------------------------------------------------------------------------------ kernel
#include "kernel.hpp"

namespace fxbn {

struct AddKernelParams {
  int64_t a1 = 0, a2 = 0, bias = 0;
  int shift = 0;
  int64_t l1 = 0, h1 = 0, l2 = 0, h2 = 0;  // proven input box; anything outside is reported, not computed on
  int64_t qmin = 0, qmax = 0;
  bool acc32 = false;  // |A1*x1|, |A2*x2|, their sum and + B fit 32 bits over the box
};

// y[i] = clamp((A1*x1[i] + A2*x2[i % period] + B) >> s, qmin, qmax) for i < n (period divides n; period == n: same
// shape).  Inputs int8, uint8 or int16; outputs int8, uint8, int16 or uint16.  Returns -1, or the smallest index i
// whose x1[i] (*which = 1) or x2[i % period] (*which = 2) is outside the box; then y is partly written, except with
// keep_y: then a box narrower than the input types is checked in a read-only pass first and y is untouched on error
// (without keep_y the check is fused into the computing pass).  y == nullptr: range check only.  threads <= 0: all
// available.
int64_t add_apply(DType t1, const void* x1, DType t2, const void* x2, int64_t period, DType tout, void* y, int64_t n,
                  const AddKernelParams& p, int threads, int* which, bool keep_y = false);

}  // namespace fxbn
