// Shift-minimality certificates of a whole layer: the convex-hull search of verify.breakpoints.feasible_at
// (unconstrained case, no width limits) in exact 128-bit integer arithmetic, one call for every channel.
//
// For channel c, with s' = shift_m1[c] and levels k = qmin + 1 + i (i in [0, levels)), the constraints on
// (A', B) at shift s' are A'*x + B >= L_i at the lower points (T[c][i], k*2^s') with T[c][i] <= hi[c], and
// A'*x + B <= U_j at the upper points (T[c][j] - 1, k*2^s' - 1) with T[c][j] > lo[c], and A' >= 0.  The result
// names constraints by their level index i; the caller re-derives and checks every bound from those indices.
#pragma once

#include <cstdint>

namespace fxbn {

enum class MinimalityStatus : int32_t {
  feasible = 0,      // some A' >= 0 satisfies every pair bound (the caller decides (A', B) itself)
  crossing = 1,      // A' <= bound of pair idx[0], idx[1] < A' >= bound of pair idx[2], idx[3] (-1, -1: A' >= 0)
  same_input = 2,    // lower idx[0] and upper idx[1] at the same input contradict each other
  not_handled = 3,   // T not non-decreasing, or magnitudes beyond the exact 128-bit range: caller decides
};

// status[c] and idx[4*c .. 4*c + 3] for every channel (idx entries -1 where unused).  Channels with
// shift_m1[c] < 0 get not_handled.  Same hulls, iteration order and tie-breaking as feasible_at.
void minimality_hulls(int64_t channels, int64_t levels, const int64_t* T, const int64_t* lo, const int64_t* hi,
                      const int32_t* shift_m1, int64_t qmin, int32_t* status, int64_t* idx);

}  // namespace fxbn
