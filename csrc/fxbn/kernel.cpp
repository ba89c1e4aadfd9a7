#include "kernel.hpp"

#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fxbn {

// Platform facts the kernel relies on.
static_assert((-7 >> 1) == -4, "right shift of a negative integer must be arithmetic (floor division by 2^s)");
static_assert(static_cast<int32_t>(0xFFFFFFFFu) == -1, "two's complement conversion from unsigned is required");
static_assert(static_cast<int64_t>(0xFFFFFFFFFFFFFFFFull) == -1, "two's complement conversion from unsigned");

namespace {

template <class Acc>
struct ChannelConst {
  Acc a, b, lo, hi;
  int s;
};

// One element: wrap-free unsigned multiply-add (the solver proves in-range results fit Acc), arithmetic shift, clamp.
template <class Acc, class In>
inline Acc fixed_point(In v, Acc a, Acc b, int s, Acc qmin, Acc qmax) {
  using U = typename std::make_unsigned<Acc>::type;
  const Acc acc = static_cast<Acc>(static_cast<U>(a) * static_cast<U>(static_cast<Acc>(v)) + static_cast<U>(b));
  const Acc q = acc >> s;
  return std::min(std::max(q, qmin), qmax);
}

// Rows of `inner` elements sharing one channel (NCHW, (N, C) with inner == 1 handled by the next function).
template <class Acc, class In, class Out>
bool row_same_channel(const In* __restrict x, Out* __restrict y, int64_t n, const ChannelConst<Acc>& k, Acc qmin,
                      Acc qmax) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    const Acc v = static_cast<Acc>(x[i]);
    bad |= (v < k.lo) | (v > k.hi);
    y[i] = static_cast<Out>(fixed_point<Acc>(x[i], k.a, k.b, k.s, qmin, qmax));
  }
  return bad;
}

// One row over all channels (channel-last layouts: NHWC, (N, C)).
template <class Acc, class In, class Out>
bool row_all_channels(const In* __restrict x, Out* __restrict y, int64_t channels, const Acc* __restrict a,
                      const Acc* __restrict b, const int32_t* __restrict s, const Acc* __restrict lo,
                      const Acc* __restrict hi, Acc qmin, Acc qmax) {
  bool bad = false;
  for (int64_t c = 0; c < channels; ++c) {
    const Acc v = static_cast<Acc>(x[c]);
    bad |= (v < lo[c]) | (v > hi[c]);
    y[c] = static_cast<Out>(fixed_point<Acc>(x[c], a[c], b[c], s[c], qmin, qmax));
  }
  return bad;
}

int thread_count(int threads, int64_t work) {
#ifdef _OPENMP
  int n = threads > 0 ? threads : omp_get_max_threads();
  // below ~64K elements a second thread costs more than it saves
  const int64_t by_work = std::max<int64_t>(1, work / 65536);
  return static_cast<int>(std::min<int64_t>(n, by_work));
#else
  (void)threads;
  (void)work;
  return 1;
#endif
}

template <class In>
int64_t first_bad(const In* x, int64_t outer, int64_t channels, int64_t inner, const int64_t* lo, const int64_t* hi) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const In* row = x + (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t v = row[i];
        if (v < lo[c] || v > hi[c]) return (o * channels + c) * inner + i;
      }
    }
  }
  return -1;
}

template <class Acc, class In, class Out>
int64_t apply_typed(const In* x, Out* y, int64_t outer, int64_t channels, int64_t inner, const KernelParams& p,
                    int threads) {
  const int max_shift = static_cast<int>(sizeof(Acc) * 8 - 1);
  // |acc| < 2^(w-1) makes acc >> (w-1) equal to floor(acc / 2^s) for every s >= w-1
  std::vector<Acc> a(static_cast<size_t>(channels)), b(a.size()), lo(a.size()), hi(a.size());
  std::vector<int32_t> s(a.size());
  for (int64_t c = 0; c < channels; ++c) {
    a[static_cast<size_t>(c)] = static_cast<Acc>(p.multiplier[c]);
    b[static_cast<size_t>(c)] = static_cast<Acc>(p.bias[c]);
    s[static_cast<size_t>(c)] = std::min(p.shift[c], max_shift);
    lo[static_cast<size_t>(c)] = static_cast<Acc>(p.lo[c]);  // in_range lies within int32 (checked by the caller)
    hi[static_cast<size_t>(c)] = static_cast<Acc>(p.hi[c]);
  }
  const Acc qmin = static_cast<Acc>(p.qmin), qmax = static_cast<Acc>(p.qmax);
  bool bad = false;
  const int nt = thread_count(threads, outer * channels * inner);
  if (inner == 1) {
#pragma omp parallel for schedule(static) num_threads(nt) reduction(| : bad)
    for (int64_t o = 0; o < outer; ++o) {
      bad |= row_all_channels<Acc, In, Out>(x + o * channels, y + o * channels, channels, a.data(), b.data(),
                                            s.data(), lo.data(), hi.data(), qmin, qmax);
    }
  } else {
    const int64_t rows = outer * channels;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(| : bad)
    for (int64_t r = 0; r < rows; ++r) {
      const size_t c = static_cast<size_t>(r % channels);
      const ChannelConst<Acc> k{a[c], b[c], lo[c], hi[c], s[c]};
      bad |= row_same_channel<Acc, In, Out>(x + r * inner, y + r * inner, inner, k, qmin, qmax);
    }
  }
  return bad ? first_bad(x, outer, channels, inner, p.lo, p.hi) : -1;
}

template <class In>
int64_t apply_in(const In* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
                 const KernelParams& p, int threads) {
#define FXBN_OUT(T)                                                                                          \
  return p.acc32 ? apply_typed<int32_t, In, T>(x, static_cast<T*>(y), outer, channels, inner, p, threads) \
                 : apply_typed<int64_t, In, T>(x, static_cast<T*>(y), outer, channels, inner, p, threads)
  switch (out_type) {
    case DType::int8: FXBN_OUT(int8_t);
    case DType::uint8: FXBN_OUT(uint8_t);
    case DType::int16: FXBN_OUT(int16_t);
    case DType::uint16: FXBN_OUT(uint16_t);
    case DType::int32: FXBN_OUT(int32_t);
  }
#undef FXBN_OUT
  throw std::invalid_argument("unsupported output dtype");
}

}  // namespace

int64_t apply(DType in_type, const void* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
              const KernelParams& p, int threads) {
  switch (in_type) {
    case DType::int8: return apply_in(static_cast<const int8_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::uint8: return apply_in(static_cast<const uint8_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::int16: return apply_in(static_cast<const int16_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::int32: return apply_in(static_cast<const int32_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::uint16: break;
  }
  throw std::invalid_argument("unsupported input dtype (int8, uint8, int16, int32)");
}

int64_t first_out_of_range(DType in_type, const void* x, int64_t outer, int64_t channels, int64_t inner,
                           const int64_t* lo, const int64_t* hi) {
  switch (in_type) {
    case DType::int8: return first_bad(static_cast<const int8_t*>(x), outer, channels, inner, lo, hi);
    case DType::uint8: return first_bad(static_cast<const uint8_t*>(x), outer, channels, inner, lo, hi);
    case DType::int16: return first_bad(static_cast<const int16_t*>(x), outer, channels, inner, lo, hi);
    case DType::int32: return first_bad(static_cast<const int32_t*>(x), outer, channels, inner, lo, hi);
    case DType::uint16: break;
  }
  throw std::invalid_argument("unsupported input dtype (int8, uint8, int16, int32)");
}

}  // namespace fxbn
