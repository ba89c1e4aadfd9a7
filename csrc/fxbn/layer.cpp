#include "layer.hpp"

#include <algorithm>
#include <sstream>
#include <vector>

namespace fxbn {
namespace {

// Step-function entries (int64 breakpoints) a common-shift solve keeps in memory at once: 32 Mi entries, 256 MiB.
constexpr int64_t kKeptStepEntries = int64_t{1} << 25;

BatchNormParams channel_params(const BatchNormArrays& p, int64_t c) {
  BatchNormParams q;
  q.gamma = p.gamma[c];
  q.beta = p.beta[c];
  q.mean = p.mean[c];
  q.var = p.var[c];
  q.eps = p.eps[c];
  q.in_scale = p.in_scale[c];
  q.out_scale = p.out_scale[c];
  q.in_zero_point = p.in_zero_point[c];
  q.out_zero_point = p.out_zero_point[c];
  return q;
}

// Rethrow std::invalid_argument with the channel named (InfeasibleError messages already name it).
template <class F>
StepFunction with_channel(int64_t c, F&& make) {
  try {
    return make();
  } catch (const InfeasibleError&) {
    throw;
  } catch (const std::invalid_argument& e) {
    std::ostringstream os;
    os << "channel " << c << ": " << e.what();
    throw std::invalid_argument(os.str());
  }
}

template <class MakeStep>
void solve_layer(int64_t channels, MakeStep&& make_step, const SolveOptions& opt, bool common_shift,
                 const LayerOutput& out) {
  std::vector<ChannelSolution> sol(static_cast<size_t>(channels));
  if (!common_shift) {
    for (int64_t c = 0; c < channels; ++c) {
      sol[static_cast<size_t>(c)] = solve_channel(with_channel(c, [&] { return make_step(c); }), opt, c);
    }
  } else {
    // Each channel's step function is needed twice (its minimal shift, then its parameters at the common shift).
    // They are kept while that stays small; otherwise recomputed, so memory does not grow with channels * levels
    // (uint16 outputs: 512 KiB per channel).
    bool keep = true;  // decided on the first channel: every channel has qmax - qmin levels
    std::vector<StepFunction> steps;
    int shift = opt.min_shift;
    for (int64_t c = 0; c < channels; ++c) {
      StepFunction f = with_channel(c, [&] { return make_step(c); });
      if (c == 0) keep = channels * (static_cast<int64_t>(f.T.size()) + 1) <= kKeptStepEntries;
      const int s = minimal_shift(f, opt.max_shift);
      if (s < 0) solve_channel(f, opt, c);  // throws the channel's own error
      shift = std::max(shift, s);
      if (keep) steps.push_back(std::move(f));
    }
    // every channel is feasible at the largest minimal shift; width limits may push it further
    for (bool done = false; !done;) {
      SolveOptions at = opt;
      at.min_shift = shift;
      done = true;
      for (int64_t c = 0; c < channels && done; ++c) {
        sol[static_cast<size_t>(c)] = keep ? solve_channel(steps[static_cast<size_t>(c)], at, c)
                                           : solve_channel(with_channel(c, [&] { return make_step(c); }), at, c);
        if (sol[static_cast<size_t>(c)].shift > shift) {
          shift = sol[static_cast<size_t>(c)].shift;
          done = false;
        }
      }
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    const ChannelSolution& s = sol[static_cast<size_t>(c)];
    out.multiplier[c] = s.multiplier;
    out.bias[c] = s.bias;
    out.shift[c] = s.shift;
    out.multiplier_bits[c] = s.multiplier_bits;
    out.accumulator_bits[c] = s.accumulator_bits;
  }
}

template <class MakeStep>
void breakpoints(int64_t channels, MakeStep&& make_step, int64_t levels, int8_t* direction, int64_t* T) {
  for (int64_t c = 0; c < channels; ++c) {
    const StepFunction f = with_channel(c, [&] { return make_step(c); });
    direction[c] = static_cast<int8_t>(f.direction);
    std::copy(f.T.begin(), f.T.end(), T + c * levels);
  }
}

}  // namespace

void solve_affine_layer(int64_t channels, const double* a, const double* b, const int64_t* lo, const int64_t* hi,
                        int64_t qmin, int64_t qmax, Rounding rounding, const SolveOptions& opt, bool common_shift,
                        const LayerOutput& out) {
  auto make = [&](int64_t c) { return affine_step_function({a[c], b[c]}, lo[c], hi[c], qmin, qmax, rounding); };
  solve_layer(channels, make, opt, common_shift, out);
}

void solve_batchnorm_layer(int64_t channels, const BatchNormArrays& p, const int64_t* lo, const int64_t* hi,
                           int64_t qmin, int64_t qmax, Rounding rounding, const SolveOptions& opt, bool common_shift,
                           const LayerOutput& out) {
  auto make = [&](int64_t c) {
    return batchnorm_step_function(channel_params(p, c), lo[c], hi[c], qmin, qmax, rounding);
  };
  solve_layer(channels, make, opt, common_shift, out);
}

void affine_breakpoints(int64_t channels, const double* a, const double* b, const int64_t* lo, const int64_t* hi,
                        int64_t qmin, int64_t qmax, Rounding rounding, int8_t* direction, int64_t* T) {
  auto make = [&](int64_t c) { return affine_step_function({a[c], b[c]}, lo[c], hi[c], qmin, qmax, rounding); };
  breakpoints(channels, make, qmax - qmin, direction, T);
}

void batchnorm_breakpoints(int64_t channels, const BatchNormArrays& p, const int64_t* lo, const int64_t* hi,
                           int64_t qmin, int64_t qmax, Rounding rounding, int8_t* direction, int64_t* T) {
  auto make = [&](int64_t c) {
    return batchnorm_step_function(channel_params(p, c), lo[c], hi[c], qmin, qmax, rounding);
  };
  breakpoints(channels, make, qmax - qmin, direction, T);
}

void fixed_point_breakpoints(int64_t channels, const int64_t* multiplier, const int64_t* bias, const int32_t* shift,
                             const int8_t* direction, const int64_t* lo, const int64_t* hi, int64_t qmin,
                             int64_t qmax, int64_t* T, int8_t* ok) {
  using i128 = __int128;
  const int64_t levels = qmax - qmin;
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t d = direction[c] < 0 ? -1 : 1;
    const int64_t lo_m = d > 0 ? lo[c] : -hi[c], hi_m = d > 0 ? hi[c] : -lo[c];
    const i128 A = static_cast<i128>(multiplier[c]) * d, B = bias[c];
    int64_t* row = T + c * levels;
    ok[c] = A >= 0;
    for (int64_t i = 0; i < levels; ++i) {
      const i128 need = static_cast<i128>(qmin + 1 + i) * (static_cast<i128>(1) << shift[c]) - B;  // A*x' >= need
      int64_t t;
      if (A < 0) {
        t = -1;
      } else if (A == 0) {
        t = need <= 0 ? lo_m : hi_m + 1;
      } else {
        i128 q = need / A;
        if (q * A < need) ++q;  // ceil
        t = q < lo_m ? lo_m : (q > hi_m ? hi_m + 1 : static_cast<int64_t>(q));
      }
      row[i] = t;
    }
  }
}

}  // namespace fxbn
