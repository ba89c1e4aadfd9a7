// The add kernel.  Two 8-bit inputs with a 32-bit accumulator take the hand-written bodies (add_kernel_avx512.cpp,
// add_kernel_avx2.cpp: vpmaddwd on interleaved (x1, x2) pairs, see add_kernel_simd.hpp); every other case (int16
// inputs, 64-bit accumulators) plain loops the compiler vectorizes, compiled for x86-64-v4, AVX2 and the baseline.
// The body is chosen per call from kernel_isa() (so set_kernel_isa / FXBN_ISA select it as for the one-input
// kernel).
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "add.hpp"
#include "add_kernel_simd.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FXBN_NO_DISPATCH)
#define FXBN_ADD_DISPATCH 1
#define FXBN_ADD_V4 __attribute__((target("arch=x86-64-v4")))
#define FXBN_ADD_AVX2 __attribute__((target("avx2")))
#else
#define FXBN_ADD_DISPATCH 0
#endif

#if defined(__GNUC__)
#define FXBN_ADD_INLINE __attribute__((always_inline)) inline
#else
#define FXBN_ADD_INLINE inline
#endif

namespace fxbn {

static_assert((-7 >> 1) == -4, "right shift of a negative integer must be arithmetic (floor division by 2^s)");

namespace {

// One block [b, e) of the output; x2 is indexed modulo period (the caller splits blocks at period boundaries).
template <class T1, class T2, class TO, class Acc>
FXBN_ADD_INLINE void add_block(const T1* __restrict x1, const T2* __restrict x2, TO* __restrict y, int64_t len,
                               Acc a1, Acc a2, Acc b, int s, Acc qmin, Acc qmax) {
  for (int64_t i = 0; i < len; ++i) {
    Acc v = (a1 * static_cast<Acc>(x1[i]) + a2 * static_cast<Acc>(x2[i]) + b) >> s;
    v = v < qmin ? qmin : v;
    v = v > qmax ? qmax : v;
    y[i] = static_cast<TO>(v);
  }
}

// OR of (x outside [lo, hi]) over a block, branch-free (min/max reductions).
template <class T>
FXBN_ADD_INLINE bool block_bad(const T* __restrict x, int64_t len, T lo, T hi) {
  T mn = std::numeric_limits<T>::max(), mx = std::numeric_limits<T>::min();
  for (int64_t i = 0; i < len; ++i) {
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  return len > 0 && (mn < lo || mx > hi);
}

struct Job {
  const void* x1;
  const void* x2;
  void* y;
  int64_t period, n;
  AddKernelParams p;
  bool check1, check2;
  addsimd::Coefs c;  // the 8-bit bodies' constants (box clipped to the input types)
};

// Processes elements [begin, end); returns true when some input in it is out of range (outputs then partial).
template <class T1, class T2, class TO>
FXBN_ADD_INLINE bool run_range(const Job& j, int64_t begin, int64_t end) {
  const T1* x1 = static_cast<const T1*>(j.x1);
  const T2* x2 = static_cast<const T2*>(j.x2);
  TO* y = static_cast<TO*>(j.y);
  const AddKernelParams& p = j.p;
  constexpr int64_t kBlock = 4096;
  for (int64_t i = begin; i < end;) {
    const int64_t off = i % j.period;
    const int64_t len = std::min({end - i, j.period - off, kBlock});
    if (j.check1 && block_bad<T1>(x1 + i, len, static_cast<T1>(std::max<int64_t>(p.l1, std::numeric_limits<T1>::min())),
                                  static_cast<T1>(std::min<int64_t>(p.h1, std::numeric_limits<T1>::max()))))
      return true;
    if (j.check2 && block_bad<T2>(x2 + off, len, static_cast<T2>(std::max<int64_t>(p.l2, std::numeric_limits<T2>::min())),
                                  static_cast<T2>(std::min<int64_t>(p.h2, std::numeric_limits<T2>::max()))))
      return true;
    if (y != nullptr) {
      if (p.acc32) {
        add_block<T1, T2, TO, int32_t>(x1 + i, x2 + off, y + i, len, static_cast<int32_t>(p.a1),
                                       static_cast<int32_t>(p.a2), static_cast<int32_t>(p.bias),
                                       std::min(p.shift, 31),  // v fits 32 bits: >> 31 is floor for any s >= 31
                                       static_cast<int32_t>(p.qmin), static_cast<int32_t>(p.qmax));
      } else {
        add_block<T1, T2, TO, int64_t>(x1 + i, x2 + off, y + i, len, p.a1, p.a2, p.bias, p.shift, p.qmin, p.qmax);
      }
    }
    i += len;
  }
  return false;
}

using RangeFn = bool (*)(const Job&, int64_t, int64_t);

enum class Simd { avx512, avx2 };

// The 8-bit, 32-bit-accumulator bodies over [begin, end), split at period boundaries (and in blocks, so that an
// out-of-range input stops the work early).
template <class T1, class T2, class TO, Simd S>
bool run_simd(const Job& j, int64_t begin, int64_t end) {
  const T1* x1 = static_cast<const T1*>(j.x1);
  const T2* x2 = static_cast<const T2*>(j.x2);
  TO* y = static_cast<TO*>(j.y);
  const bool check = j.check1 || j.check2;
  constexpr int64_t kBlock = 16384;
  for (int64_t i = begin; i < end;) {
    const int64_t off = i % j.period;
    const int64_t len = std::min({end - i, j.period - off, kBlock});
    bool bad;
    if constexpr (S == Simd::avx512) {
      bad = addsimd::add8_avx512<T1, T2, TO>(x1 + i, x2 + off, y + i, len, j.c, check);
    } else {
      bad = addsimd::add8_avx2<T1, T2, TO>(x1 + i, x2 + off, y + i, len, j.c, check, j.p.a1, j.p.a2, j.p.bias);
    }
    if (bad) return true;
    i += len;
  }
  return false;
}

template <class T1, class T2, class TO>
bool body_base(const Job& j, int64_t b, int64_t e) { return run_range<T1, T2, TO>(j, b, e); }
#if FXBN_ADD_DISPATCH
template <class T1, class T2, class TO>
FXBN_ADD_AVX2 bool body_avx2(const Job& j, int64_t b, int64_t e) { return run_range<T1, T2, TO>(j, b, e); }
template <class T1, class T2, class TO>
FXBN_ADD_V4 bool body_v4(const Job& j, int64_t b, int64_t e) { return run_range<T1, T2, TO>(j, b, e); }
#endif

template <class T1, class T2, class TO>
RangeFn pick_body(bool acc32) {
#if FXBN_ADD_DISPATCH
  const char* isa = kernel_isa();
  constexpr bool eight = sizeof(T1) == 1 && sizeof(T2) == 1;
  if (std::strncmp(isa, "x86-64-v4", 9) == 0) {
    if constexpr (eight) {
      if (acc32) return &run_simd<T1, T2, TO, Simd::avx512>;
    }
    return &body_v4<T1, T2, TO>;
  }
  if (std::strcmp(isa, "avx2") == 0) {
    if constexpr (eight) {
      if (acc32) return &run_simd<T1, T2, TO, Simd::avx2>;
    }
    return &body_avx2<T1, T2, TO>;
  }
#else
  (void)acc32;
#endif
  return &body_base<T1, T2, TO>;
}

template <class T1, class T2>
RangeFn pick_out(DType tout, bool acc32) {
  switch (tout) {
    case DType::int8: return pick_body<T1, T2, int8_t>(acc32);
    case DType::uint8: return pick_body<T1, T2, uint8_t>(acc32);
    case DType::int16: return pick_body<T1, T2, int16_t>(acc32);
    case DType::uint16: return pick_body<T1, T2, uint16_t>(acc32);
    default: throw std::invalid_argument("add output dtype must be int8, uint8, int16 or uint16");
  }
}

template <class T1>
RangeFn pick_in2(DType t2, DType tout, bool acc32) {
  switch (t2) {
    case DType::int8: return pick_out<T1, int8_t>(tout, acc32);
    case DType::uint8: return pick_out<T1, uint8_t>(tout, acc32);
    case DType::int16: return pick_out<T1, int16_t>(tout, acc32);
    default: throw std::invalid_argument("add inputs must be int8, uint8 or int16");
  }
}

RangeFn pick(DType t1, DType t2, DType tout, bool acc32) {
  switch (t1) {
    case DType::int8: return pick_in2<int8_t>(t2, tout, acc32);
    case DType::uint8: return pick_in2<uint8_t>(t2, tout, acc32);
    case DType::int16: return pick_in2<int16_t>(t2, tout, acc32);
    default: throw std::invalid_argument("add inputs must be int8, uint8 or int16");
  }
}

void type_range(DType t, int64_t* lo, int64_t* hi) {
  switch (t) {
    case DType::int8: *lo = -128; *hi = 127; return;
    case DType::uint8: *lo = 0; *hi = 255; return;
    case DType::int16: *lo = -32768; *hi = 32767; return;
    default: *lo = 0; *hi = -1; return;
  }
}

template <class T>
int64_t first_bad_scalar(const T* x, int64_t period, int64_t begin, int64_t end, int64_t lo, int64_t hi) {
  for (int64_t i = begin; i < end; ++i) {
    const int64_t v = x[i % period];
    if (v < lo || v > hi) return i;
  }
  return -1;
}

int64_t first_bad(DType t, const void* x, int64_t period, int64_t end, int64_t lo, int64_t hi) {
  switch (t) {
    case DType::int8: return first_bad_scalar(static_cast<const int8_t*>(x), period, 0, end, lo, hi);
    case DType::uint8: return first_bad_scalar(static_cast<const uint8_t*>(x), period, 0, end, lo, hi);
    case DType::int16: return first_bad_scalar(static_cast<const int16_t*>(x), period, 0, end, lo, hi);
    default: return -1;
  }
}

}  // namespace

namespace {

// One pass over [0, n) with fn on nt threads; true when some block reported an out-of-range input.
bool run_all(RangeFn fn, const Job& j, int64_t n, int threads) {
  int nt = 1;
#ifdef _OPENMP
  const int avail = threads > 0 ? threads : omp_get_max_threads();
  nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(avail, n / (int64_t{1} << 18))));
#else
  (void)threads;
#endif
  if (nt <= 1) return fn(j, 0, n);
  bool bad = false;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    const int64_t t = omp_get_thread_num(), m = omp_get_num_threads();
    const int64_t chunk = ((n + m - 1) / m + 63) / 64 * 64;
    const int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) bad |= fn(j, b, e);
  }
#endif
  return bad;
}

template <class T>
void tile_bytes(const void* x, int64_t period, int64_t reps, std::vector<unsigned char>* buf) {
  const size_t bytes = static_cast<size_t>(period) * sizeof(T);
  buf->resize(bytes * static_cast<size_t>(reps));
  for (int64_t r = 0; r < reps; ++r) std::memcpy(buf->data() + static_cast<size_t>(r) * bytes, x, bytes);
}

}  // namespace

int64_t add_apply(DType t1, const void* x1, DType t2, const void* x2, int64_t period, DType tout, void* y, int64_t n,
                  const AddKernelParams& p, int threads, int* which, bool keep_y) {
  *which = 0;
  if (n <= 0) return -1;
  if (period <= 0 || n % period != 0) throw std::invalid_argument("add_apply: period must divide n");
  if (p.shift < 0 || p.shift > 62) throw std::invalid_argument("add_apply: shift must be in [0, 62]");
  Job j{x1, x2, y, period, n, p, false, false, {}};
  int64_t lo1, hi1, lo2, hi2;
  type_range(t1, &lo1, &hi1);
  j.check1 = p.l1 > lo1 || p.h1 < hi1;
  type_range(t2, &lo2, &hi2);
  j.check2 = p.l2 > lo2 || p.h2 < hi2;
  j.c = addsimd::make_coefs(p.a1, p.a2, p.bias, p.shift, p.qmin, p.qmax, t1 == DType::int8, t2 == DType::int8);
  j.c.lo1 = static_cast<int32_t>(std::max(p.l1, lo1));
  j.c.hi1 = static_cast<int32_t>(std::min(p.h1, hi1));
  j.c.lo2 = static_cast<int32_t>(std::max(p.l2, lo2));
  j.c.hi2 = static_cast<int32_t>(std::min(p.h2, hi2));
  j.c.vnni = std::strstr(kernel_isa(), "vnni") != nullptr;
  // A short x2 period (x2 broadcast along the last axes) is tiled to >= 4096 elements: the period only has to index
  // x2 modulo itself, any multiple of the original does so, and long blocks keep the SIMD bodies busy.
  std::vector<unsigned char> tiled;
  if (y != nullptr && period < 4096 && period < n) {
    const int64_t reps = std::min<int64_t>((4096 + period - 1) / period, n / period);
    if (t2 == DType::int16) {
      tile_bytes<int16_t>(x2, period, reps, &tiled);
    } else {
      tile_bytes<uint8_t>(x2, period, reps, &tiled);
    }
    j.x2 = tiled.data();
    j.period = period * reps;
  }
  // An in_range that no value of the input's type reaches (a narrow int16 range, int8 data): the clipped box
  // above is empty (lo > hi), which the bodies' unsigned x - lo <= hi - lo test would pass for every value.  Every
  // element is then out of range: nothing is run or written, first_bad names element 0.
  const bool empty1 = p.l1 > hi1 || p.h1 < lo1, empty2 = p.l2 > hi2 || p.h2 < lo2;
  bool bad;
  if (empty1 || empty2) {
    bad = true;
  } else if (y != nullptr && keep_y && (j.check1 || j.check2)) {
    // out= must stay untouched on error: a read-only check first, then the unchecked pass
    Job c = j;
    c.y = nullptr;
    bad = run_all(pick(t1, t2, tout, false), c, n, threads);
    if (!bad) {
      j.check1 = j.check2 = false;
      run_all(pick(t1, t2, tout, p.acc32), j, n, threads);
    }
  } else {
    bad = run_all(pick(t1, t2, tout, p.acc32 && y != nullptr), j, n, threads);
  }
  if (!bad) return -1;
  const int64_t b1 = j.check1 ? first_bad(t1, x1, n, n, p.l1, p.h1) : -1;
  const int64_t b2 = j.check2 ? first_bad(t2, x2, period, b1 < 0 ? n : b1, p.l2, p.h2) : -1;
  if (b2 >= 0 && (b1 < 0 || b2 < b1)) {
    *which = 2;
    return b2;
  }
  *which = 1;
  return b1;
}

}  // namespace fxbn
