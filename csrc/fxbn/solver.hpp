// Minimal-shift fixed-point parameters for one channel's reference step function.
//
// f(x) = clamp((A*x + B) >> s, qmin, qmax) equals the reference for every x in [lo, hi] iff, in the mirrored
// coordinates x' of StepFunction (A' = direction*A >= 0), for every level k:
//   A'*T(k) + B       >= k*2^s       when T(k) <= hi'   (lower points P)
//   A'*(T(k) - 1) + B <= k*2^s - 1   when T(k) >  lo'   (upper points Q)
// For a fixed A' the admissible B form an interval whose ends are attained on the upper hull of P and the lower hull
// of Q; both hulls are the same vertex sets for every s (P, Q scale by 2^s and Q shifts by -1).  So feasibility at s
// reduces to a slope interval [Amin(s), Amax(s)] from hull-vertex pairs, decided with exact 128-bit integers.
// Feasibility is monotone in s ((A, B) at s gives (2A, 2B) at s + 1), so the minimal s is found by bisection.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference.hpp"

namespace fxbn {

// No parameters satisfy the request (ties that no floor can reproduce, shift or width limits).
class InfeasibleError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct SolveOptions {
  int acc_bits = 64;             // signed accumulator width: every intermediate A*x, A*x + B, B fits
  int max_multiplier_bits = 64;  // signed width of A
  int min_shift = 0;
  int max_shift = 62;
};

struct ChannelSolution {
  int64_t multiplier = 0;  // A (original coordinates)
  int64_t bias = 0;        // B
  int shift = 0;           // s
  int multiplier_bits = 1;
  int accumulator_bits = 1;
};

// Smallest signed two's-complement width holding v (1 for 0 and -1).
int signed_bits(__int128 v);

// channel is used in error messages only.
ChannelSolution solve_channel(const StepFunction& f, const SolveOptions& opt, int64_t channel);

// Minimal feasible shift ignoring width limits, or -1 when none <= max_shift.
int minimal_shift(const StepFunction& f, int max_shift);

}  // namespace fxbn
