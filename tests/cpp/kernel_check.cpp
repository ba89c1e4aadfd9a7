// The kernel against a scalar reference, as a stand-alone program (no Python): built for another architecture
// (tests/test_aarch64_qemu.py: aarch64 with Debian's cross compiler, run under qemu-user), it checks the kernel
// body picked there (FXBN_ISA / auto: the NEON bodies on aarch64) and, when that is not the portable one, also the
// portable body ("baseline") on the same data, whose output bytes must be identical.  For every input/output dtype,
// the three accumulator paths (mul32, widen, mul64) with random parameters and two extreme-range modes (mul32 and
// widen with |A*x + B| close to the accumulator's limit, inputs at the range ends, shifts 0/31/32/63, qmin/qmax at the
// output type's ends or equal), multipliers within int16 and beyond, by-row and periodic layouts with SIMD tails, 1
// and 2 threads (two large tensors where the second thread really runs): outputs equal clamp(floor((A*x + B) / 2^s),
// qmin, qmax) computed on 128-bit integers, and a planted out-of-range input is reported at its index.  With
// --mutate, the kernel gets one multiplier off by one and the program must report mismatches (the comparison can
// fail).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fxbn/kernel.hpp"

namespace {

using fxbn::DType;

template <class T>
DType dtype_of() {
  if (std::is_same<T, int8_t>::value) return DType::int8;
  if (std::is_same<T, uint8_t>::value) return DType::uint8;
  if (std::is_same<T, int16_t>::value) return DType::int16;
  if (std::is_same<T, uint16_t>::value) return DType::uint16;
  return DType::int32;
}

int64_t reference(int64_t x, int64_t a, int64_t b, int s, int64_t qmin, int64_t qmax) {
  const __int128 acc = static_cast<__int128>(a) * x + b;
  const __int128 q = acc >> s;  // arithmetic: floor division by 2^s
  return static_cast<int64_t>(q < qmin ? qmin : (q > qmax ? qmax : q));
}

std::mt19937_64 rng(2026);

int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

// The ISA the kernel started with (FXBN_ISA or the best available), and whether the portable body is compared too.
std::string initial_isa;
int64_t isa_comparisons = 0, isa_differences = 0;
bool stop_at_first_failure = false;  // --first-failure: for the deliberately wrong builds, which must fail

int64_t pick(std::initializer_list<int64_t> values) {
  return *(values.begin() + uniform(0, static_cast<int64_t>(values.size()) - 1));
}

// One run: returns the number of mismatching outputs (or -1 when the range report is wrong).
template <class In, class Out>
int64_t run(int path, int64_t outer, int64_t channels, int64_t inner, int threads, bool mutate) {
  const int64_t imin = std::numeric_limits<In>::min(), imax = std::numeric_limits<In>::max();
  const int64_t omin = std::numeric_limits<Out>::min(), omax = std::numeric_limits<Out>::max();
  // mul32 and mul64 with int32 inputs: a declared range of +-2^20 leaves room for the multipliers
  const bool narrow = (path == 0 || path == 2) && sizeof(In) == 4;
  const int in_bits = narrow ? 21 : 8 * static_cast<int>(sizeof(In));
  const int64_t rmin = narrow ? -(int64_t{1} << 20) : imin, rmax = narrow ? int64_t{1} << 20 : imax;
  const bool edge = path >= 3;  // 3: mul32, 4: widen, with extreme ranges
  std::vector<int64_t> a(channels), b(channels), lo(channels), hi(channels);
  std::vector<int32_t> s(channels);
  for (int64_t c = 0; c < channels; ++c) {
    lo[c] = c % 3 == 0 ? rmin : uniform(rmin, rmin / 2);
    hi[c] = c % 3 == 0 ? rmax : uniform(rmax / 2, rmax);
    if (path == 3 && sizeof(In) == 4 && c % 3 != 0) {  // int32 inputs: ranges of 2^16 .. 2^30 for room in A
      lo[c] = -(int64_t{1} << uniform(16, 30));
      hi[c] = int64_t{1} << uniform(16, 30);
    }
    const int64_t emax = std::max(-lo[c], hi[c]);
    if (path == 0) {  // mul32: |A*x + B| < 2^31; every other channel's A within int16 (the NEON smlal path)
      const int64_t m = c % 2 && sizeof(In) < 4 ? int64_t{1} << 15 : int64_t{1} << (29 - in_bits);
      a[c] = uniform(-m, m - 1);
      if (c % 2 == 0 && sizeof(In) < 4) a[c] = pick({a[c], 32767, -32768, 32768, -32769});
      b[c] = uniform(-(int64_t{1} << 29), int64_t{1} << 29);
      s[c] = static_cast<int32_t>(uniform(0, 31));
    } else if (path == 3) {  // mul32 at the edge: |A*x + B| <= 2^31 - 1 at an end of [lo, hi]
      b[c] = pick({0, 1, -1, uniform(-(int64_t{1} << 20), int64_t{1} << 20), (int64_t{1} << 30) - 1,
                   -(int64_t{1} << 30)});
      a[c] = ((int64_t{1} << 31) - 1 - std::abs(b[c])) / emax * pick({1, -1});
      s[c] = static_cast<int32_t>(pick({0, 1, 15, 30, 31, 40, uniform(0, 31)}));
    } else if (path == 4) {  // widen at the edge: |A| up to 2^31, |A*x + B| up to 2^63 - 1
      a[c] = pick({-(int64_t{1} << 31), (int64_t{1} << 31) - 1, -(int64_t{1} << 31) + 1, 1, -1, 0,
                   uniform(-(int64_t{1} << 31), (int64_t{1} << 31) - 1)});
      const int64_t room = std::numeric_limits<int64_t>::max() - std::abs(a[c]) * emax;  // |A*x| <= 2^62
      b[c] = pick({room, -room, 0, uniform(-room, room)});
      s[c] = static_cast<int32_t>(pick({0, 1, 31, 32, 33, 62, 63, 70, uniform(0, 63)}));
    } else if (path == 1) {  // widen: A fits int32
      a[c] = uniform(-(int64_t{1} << 31), (int64_t{1} << 31) - 1);
      b[c] = uniform(-(int64_t{1} << 60), int64_t{1} << 60);
      s[c] = static_cast<int32_t>(uniform(0, 62));
    } else {  // mul64: A beyond int32, |A*x| < 2^62
      const int64_t m = int64_t{1} << (61 - in_bits);
      a[c] = uniform(int64_t{1} << 31, m) * (uniform(0, 1) ? 1 : -1);
      b[c] = uniform(-(int64_t{1} << 60), int64_t{1} << 60);
      s[c] = static_cast<int32_t>(uniform(20, 62));
    }
  }
  int64_t qmin = uniform(omin, omin / 2 + omax / 4), qmax = uniform(omax / 2, omax);
  if (edge) {  // the output type's whole range (the NEON saturating stores without min/max), or one value
    const int64_t q = uniform(omin, omax);
    const int kind = static_cast<int>(uniform(0, 3));
    qmin = kind == 0 ? q : (kind == 3 ? qmin : omin);
    qmax = kind == 0 ? q : (kind == 3 ? qmax : omax);
  }
  const int64_t total = outer * channels * inner;
  std::vector<In> x(static_cast<size_t>(total));
  std::vector<Out> y(x.size());
  for (int64_t i = 0; i < total; ++i) {
    const int64_t c = (i / inner) % channels;
    x[i] = static_cast<In>(edge ? pick({lo[c], hi[c], lo[c] + 1, hi[c] - 1, 0, uniform(lo[c], hi[c])})
                                : uniform(lo[c], hi[c]));
  }
  std::vector<int64_t> a_k = a;
  if (mutate) a_k[channels / 2] += 1;
  const bool acc32 = path == 0 || path == 3;
  const fxbn::KernelParams p{a_k.data(), b.data(), s.data(), lo.data(), hi.data(), qmin, qmax, acc32};
  if (fxbn::apply(dtype_of<In>(), x.data(), dtype_of<Out>(), y.data(), outer, channels, inner, p, threads) != -1) {
    return -1;
  }
  if (initial_isa != "baseline") {  // the portable body on the same data: identical bytes
    std::vector<Out> y2(x.size());
    fxbn::set_kernel_isa("baseline");
    const int64_t r2 = fxbn::apply(dtype_of<In>(), x.data(), dtype_of<Out>(), y2.data(), outer, channels, inner, p,
                                   threads);
    fxbn::set_kernel_isa(initial_isa.c_str());
    ++isa_comparisons;
    if (r2 != -1 || std::memcmp(y.data(), y2.data(), y.size() * sizeof(Out)) != 0) ++isa_differences;
  }
  int64_t wrong = 0;
  for (int64_t i = 0; i < total; ++i) {
    const int64_t c = (i / inner) % channels;
    wrong += static_cast<int64_t>(y[i]) != reference(x[i], a[c], b[c], s[c], qmin, qmax);
  }
  // a planted out-of-range input is named at its index (when some channel has a narrower range than In)
  for (int64_t i = total * 2 / 3; i < total; ++i) {
    const int64_t c = (i / inner) % channels;
    if (lo[c] > imin) {
      const In keep = x[i];
      x[i] = static_cast<In>(lo[c] - 1);
      const int64_t got = fxbn::first_out_of_range(dtype_of<In>(), x.data(), outer, channels, inner, lo.data(),
                                                   hi.data());
      const int64_t got2 = fxbn::apply(dtype_of<In>(), x.data(), dtype_of<Out>(), y.data(), outer, channels, inner,
                                       p, threads);
      x[i] = keep;
      if (got != i || got2 != i) return -1;
      break;
    }
  }
  return wrong;
}

struct Stats {
  int64_t runs = 0, mismatches = 0, failures = 0;
};

template <class In, class Out>
void all_shapes(Stats& st, bool mutate) {
  // rows: whole 16-element blocks, tails, a row split across chunks; periodic tables (inner < 64): short tensors,
  // tensors longer than one period; the last two shapes (int8 outputs, mul32 and widen) are just large enough
  // (2 MB read + written) for the kernel to start the second thread
  const int64_t big = (int64_t{1} << 21) / static_cast<int64_t>(3 * (sizeof(In) + sizeof(Out))) + 1;
  const int64_t shapes[][3] = {{2, 3, 64}, {1, 5, 95},   {2, 3, 1000},  {7, 3, 1},  {33, 5, 1}, {3, 8, 3},
                               {1, 4, 4099}, {200, 5, 3}, {50, 64, 1}, {1, 3, big}, {big, 3, 1}};
  for (int path = 0; path < 5; ++path) {
    for (const auto& sh : shapes) {
      for (int threads : {1, 2}) {
        const bool large = sh[0] == big || sh[2] == big;
        if (large && (threads == 1 || !std::is_same<Out, int8_t>::value || path >= 2)) continue;
        if (stop_at_first_failure && (st.mismatches != 0 || st.failures != 0 || isa_differences != 0)) return;
        const int64_t w = run<In, Out>(path, sh[0], sh[1], sh[2], threads, mutate);
        if (w != 0 && std::getenv("FXBN_CHECK_VERBOSE")) std::printf("path %d in %d out %d shape %lld %lld %lld t%d: %lld\n", path, (int)sizeof(In), (int)sizeof(Out), (long long)sh[0], (long long)sh[1], (long long)sh[2], threads, (long long)w);
        ++st.runs;
        if (w < 0) {
          ++st.failures;
        } else {
          st.mismatches += w;
        }
      }
    }
  }
}

template <class In>
void all_outs(Stats& st, bool mutate) {
  all_shapes<In, int8_t>(st, mutate);
  all_shapes<In, uint8_t>(st, mutate);
  all_shapes<In, int16_t>(st, mutate);
  all_shapes<In, uint16_t>(st, mutate);
  all_shapes<In, int32_t>(st, mutate);
}

}  // namespace

int main(int argc, char** argv) {
  bool mutate = false;
  for (int k = 1; k < argc; ++k) {
    mutate |= std::strcmp(argv[k], "--mutate") == 0;
    stop_at_first_failure |= std::strcmp(argv[k], "--first-failure") == 0;
  }
  initial_isa = fxbn::kernel_isa();
  Stats st;
  all_outs<int8_t>(st, mutate);
  all_outs<uint8_t>(st, mutate);
  all_outs<int16_t>(st, mutate);
  all_outs<int32_t>(st, mutate);
  const bool ok = st.mismatches == 0 && st.failures == 0 && isa_differences == 0;
  std::printf("%s runs=%lld mismatches=%lld range_failures=%lld isa=%s compared_with_baseline=%lld differences=%lld\n",
              ok ? "ok" : "FAIL", static_cast<long long>(st.runs), static_cast<long long>(st.mismatches),
              static_cast<long long>(st.failures), fxbn::kernel_isa(), static_cast<long long>(isa_comparisons),
              static_cast<long long>(isa_differences));
  return ok ? 0 : 1;
}
