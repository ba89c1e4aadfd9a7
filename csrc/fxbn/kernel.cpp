#include "kernel.hpp"

#include <algorithm>
#include <atomic>
#include <numeric>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// Runtime dispatch.  Every hot loop is an always-inline template, instantiated inside thin wrappers compiled for
// x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), AVX2 and the baseline, plus hand-written AVX-512 bodies for the paths the
// compiler does not do well (byte-table lookup with VBMI, vpdpwssd with VNNI, vpmuldq for 32x32->64 products).
// A function-pointer table picks one body per call from the ISA chosen once at start-up (CPU detection, FXBN_ISA)
// or by set_kernel_isa: what GCC's target_clones does, with the choice made explicit so that the tests can run
// every body on one machine.  Other compilers and architectures (or -DFXBN_NO_DISPATCH) get the baseline only.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FXBN_NO_DISPATCH)
#define FXBN_X86_DISPATCH 1
#define FXBN_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define FXBN_TARGET_AVX2 __attribute__((target("avx2")))
#define FXBN_TARGET_VBMI __attribute__((target("arch=x86-64-v4,avx512vbmi,avx512vnni")))
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized (their _mm512_undefined_* helpers); not our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#define FXBN_X86_DISPATCH 0
#endif

#if defined(__GNUC__)
#define FXBN_INLINE __attribute__((always_inline)) inline
#else
#define FXBN_INLINE inline
#endif

namespace fxbn {

// Platform facts the kernel relies on.
static_assert((-7 >> 1) == -4, "right shift of a negative integer must be arithmetic (floor division by 2^s)");
static_assert(static_cast<int32_t>(0xFFFFFFFFu) == -1, "two's complement conversion from unsigned is required");
static_assert(static_cast<int64_t>(0xFFFFFFFFFFFFFFFFull) == -1, "two's complement conversion from unsigned");

namespace {

// ------------------------------------------------------------------------------------------------ ISA selection
// vbmi: x86-64-v4 plus AVX512-VBMI and AVX512-VNNI (Ice Lake and later): 8-bit -> 8-bit rows become a 256-entry
// byte-permute table lookup; channel-last 8/16-bit inputs with 16-bit multipliers use one vpdpwssd for A*x + B.
enum class Isa : int { baseline = 0, avx2 = 1, v4 = 2, vbmi = 3 };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::vbmi: return "x86-64-v4+vbmi+vnni";
    case Isa::v4: return "x86-64-v4";
    case Isa::avx2: return "avx2";
    case Isa::baseline: break;
  }
  return "baseline";
}

bool cpu_has(Isa isa) {
#if FXBN_X86_DISPATCH
  if (isa == Isa::vbmi) {
    return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512vbmi") &&
           __builtin_cpu_supports("avx512vnni");
  }
  if (isa == Isa::v4) return __builtin_cpu_supports("x86-64-v4");
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2");
#endif
  return isa == Isa::baseline;
}

Isa best_isa() {
  if (cpu_has(Isa::vbmi)) return Isa::vbmi;
  if (cpu_has(Isa::v4)) return Isa::v4;
  if (cpu_has(Isa::avx2)) return Isa::avx2;
  return Isa::baseline;
}

bool parse_isa(const char* name, Isa* out) {
  if (name == nullptr) return false;
  if (std::strcmp(name, "auto") == 0) {
    *out = best_isa();
    return true;
  }
  for (Isa isa : {Isa::vbmi, Isa::v4, Isa::avx2, Isa::baseline}) {
    if (std::strcmp(name, isa_name(isa)) == 0) {
      if (!cpu_has(isa)) return false;
      *out = isa;
      return true;
    }
  }
  return false;
}

Isa initial_isa() {
  Isa isa = best_isa();
  parse_isa(std::getenv("FXBN_ISA"), &isa);  // unknown or unsupported names leave the best one
  return isa;
}

std::atomic<int>& isa_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

Isa current_isa() { return static_cast<Isa>(isa_slot().load(std::memory_order_relaxed)); }

// ------------------------------------------------------------------------------------------------ the arithmetic
// mul32: 32-bit accumulator.  widen: 64-bit accumulator, multiplier fits int32 (32x32->64 multiply, exact).
// mul64: 64-bit accumulator and multiplier.
enum class Mul : int { mul32 = 0, widen = 1, mul64 = 2 };

template <Mul M>
struct MulTypes {
  using Acc = int64_t;
  using Coef = int32_t;
};
template <>
struct MulTypes<Mul::mul32> {
  using Acc = int32_t;
  using Coef = int32_t;
};
template <>
struct MulTypes<Mul::mul64> {
  using Acc = int64_t;
  using Coef = int64_t;
};

// One element, branch-free: wrap-free unsigned multiply-add (the solver proves that in-range results fit Acc; out of
// range they wrap harmlessly and are reported), arithmetic shift, clamp (min/max).
template <Mul M, class In>
FXBN_INLINE typename MulTypes<M>::Acc fixed_point(In v, typename MulTypes<M>::Coef a, typename MulTypes<M>::Acc b,
                                                  typename MulTypes<M>::Acc s, typename MulTypes<M>::Acc qmin,
                                                  typename MulTypes<M>::Acc qmax) {
  using Acc = typename MulTypes<M>::Acc;
  using U = typename std::make_unsigned<Acc>::type;
  U prod;
  if constexpr (M == Mul::widen) {
    prod = static_cast<U>(static_cast<int64_t>(a) * static_cast<int64_t>(v));  // |a|, |v| <= 2^31: exact
  } else {
    prod = static_cast<U>(a) * static_cast<U>(static_cast<Acc>(v));
  }
  const Acc acc = static_cast<Acc>(prod + static_cast<U>(b));
  const Acc q = acc >> s;
  const Acc lo = q < qmin ? qmin : q;
  return lo > qmax ? qmax : lo;
}

// Tables of per-channel or per-entry parameters, 64-byte aligned: the AVX-512 bodies load whole vectors of them at
// offsets that are multiples of 16 entries, which then never split a cache line.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const Aligned64<U>&) const { return true; }
  template <class U>
  bool operator!=(const Aligned64<U>&) const { return false; }
};
template <class T>
using Table = std::vector<T, Aligned64<T>>;

// Everything one call needs, type-erased so that one function-pointer type serves every instantiation.
struct Job {
  const void* x;
  void* y;
  int64_t channels, inner;  // by-row mode: the channel of element i is (i / inner) % channels
  int64_t period;           // periodic mode: element i uses table entry i % period
  const void* a;            // Coef[]: per channel (by-row) or per period entry (periodic)
  const void* b;            // Acc[]
  const void* s;            // Acc[]
  const void* lo;           // In[]
  const void* hi;           // In[]
  int64_t qmin, qmax;
  const void* s32 = nullptr;  // widen_periodic: int32 shift - 32 per entry (b is then stored even/odd split)
  int64_t total = 0;          // elements in the tensor (widen_rows reads one element past a block, never past it)
  const void* xk = nullptr;   // widen bodies, 8/16-bit inputs: int32 input shift per channel (rows) or entry
};

// A scalar widen element whose input is scaled by 2^xk (xk = 0: fixed_point itself); x * 2^xk fits int32.
template <class In>
FXBN_INLINE int64_t fixed_point_xk(In v, int32_t xk, int32_t a, int64_t b, int64_t s, int64_t qmin, int64_t qmax) {
  return fixed_point<Mul::widen, int32_t>(static_cast<int32_t>(v) * (int32_t{1} << xk), a, b, s, qmin, qmax);
}

using ChunkFn = bool (*)(const Job&, int64_t, int64_t);

// By-row mode (inner >= kMinRow): one channel per row of `inner` elements; scalars a, b, s hoisted; the range
// check is a min/max of the row on the input type (two narrow SIMD ops per vector), compared once per row, and
// compiled out when every channel accepts the whole input type.
template <Mul M, class In, class Out, bool Check = true>
struct ByRow {
  static FXBN_INLINE bool run(const Job& j, int64_t begin, int64_t end) {
    using Acc = typename MulTypes<M>::Acc;
    using Coef = typename MulTypes<M>::Coef;
    const In* const xs = static_cast<const In*>(j.x);
    Out* const ys = static_cast<Out*>(j.y);
    const Coef* const A = static_cast<const Coef*>(j.a);
    const Acc* const B = static_cast<const Acc*>(j.b);
    const Acc* const S = static_cast<const Acc*>(j.s);
    const In* const LO = static_cast<const In*>(j.lo);
    const In* const HI = static_cast<const In*>(j.hi);
    const Acc qmin = static_cast<Acc>(j.qmin), qmax = static_cast<Acc>(j.qmax);
    for (int64_t pos = begin; pos < end;) {
      const int64_t r = pos / j.inner;
      const int64_t off = pos - r * j.inner;
      const int64_t n = std::min(j.inner - off, end - pos);
      const int64_t c = r % j.channels;
      const In* __restrict x = xs + pos;
      Out* __restrict y = ys + pos;
      const Coef a = A[c];
      const Acc b = B[c], s = S[c];
      if constexpr (Check) {
        In mn = std::numeric_limits<In>::max(), mx = std::numeric_limits<In>::min();
        for (int64_t i = 0; i < n; ++i) {
          const In v = x[i];
          mn = v < mn ? v : mn;
          mx = v > mx ? v : mx;
          y[i] = static_cast<Out>(fixed_point<M, In>(v, a, b, s, qmin, qmax));
        }
        if ((mn < LO[c]) | (mx > HI[c])) return true;
      } else {
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<Out>(fixed_point<M, In>(x[i], a, b, s, qmin, qmax));
      }
      pos += n;
    }
    return false;
  }
};

// Periodic mode (channel-last layouts and short rows): per-element tables of one period (a multiple of
// channels * inner, at least kMinPeriod long); the range check is a flag OR-ed per element when any channel's range
// is narrower than the input type, else compiled out.
template <Mul M, class In, class Out, bool Check>
struct Periodic {
  static FXBN_INLINE bool run(const Job& j, int64_t begin, int64_t end) {
    using Acc = typename MulTypes<M>::Acc;
    using Coef = typename MulTypes<M>::Coef;
    const In* const xs = static_cast<const In*>(j.x);
    Out* const ys = static_cast<Out*>(j.y);
    const Acc qmin = static_cast<Acc>(j.qmin), qmax = static_cast<Acc>(j.qmax);
    for (int64_t pos = begin; pos < end;) {
      const int64_t r = pos / j.period;
      const int64_t off = pos - r * j.period;
      const int64_t n = std::min(j.period - off, end - pos);
      const In* __restrict x = xs + pos;
      Out* __restrict y = ys + pos;
      const Coef* __restrict a = static_cast<const Coef*>(j.a) + off;
      const Acc* __restrict b = static_cast<const Acc*>(j.b) + off;
      const Acc* __restrict s = static_cast<const Acc*>(j.s) + off;
      const In* __restrict lo = static_cast<const In*>(j.lo) + off;
      const In* __restrict hi = static_cast<const In*>(j.hi) + off;
      if constexpr (Check) {
        unsigned bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          const In v = x[i];
          bad |= static_cast<unsigned>((v < lo[i]) | (v > hi[i]));
          y[i] = static_cast<Out>(fixed_point<M, In>(v, a[i], b[i], s[i], qmin, qmax));
        }
        if (bad) return true;
      } else {
        for (int64_t i = 0; i < n; ++i) {
          y[i] = static_cast<Out>(fixed_point<M, In>(x[i], a[i], b[i], s[i], qmin, qmax));
        }
      }
      pos += n;
    }
    return false;
  }
};

// Range check only, by rows of `inner` elements (min/max per row).
template <class In>
struct CheckByRow {
  static FXBN_INLINE bool run(const Job& j, int64_t begin, int64_t end) {
    const In* const xs = static_cast<const In*>(j.x);
    const In* const LO = static_cast<const In*>(j.lo);
    const In* const HI = static_cast<const In*>(j.hi);
    for (int64_t pos = begin; pos < end;) {
      const int64_t r = pos / j.inner;
      const int64_t off = pos - r * j.inner;
      const int64_t n = std::min(j.inner - off, end - pos);
      const int64_t c = r % j.channels;
      const In* __restrict x = xs + pos;
      In mn = std::numeric_limits<In>::max(), mx = std::numeric_limits<In>::min();
      for (int64_t i = 0; i < n; ++i) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
      }
      if ((mn < LO[c]) | (mx > HI[c])) return true;
      pos += n;
    }
    return false;
  }
};

// Range check only, periodic tables.
template <class In>
struct CheckPeriodic {
  static FXBN_INLINE bool run(const Job& j, int64_t begin, int64_t end) {
    const In* const xs = static_cast<const In*>(j.x);
    for (int64_t pos = begin; pos < end;) {
      const int64_t r = pos / j.period;
      const int64_t off = pos - r * j.period;
      const int64_t n = std::min(j.period - off, end - pos);
      const In* __restrict x = xs + pos;
      const In* __restrict lo = static_cast<const In*>(j.lo) + off;
      const In* __restrict hi = static_cast<const In*>(j.hi) + off;
      unsigned bad = 0;
      for (int64_t i = 0; i < n; ++i) bad |= static_cast<unsigned>((x[i] < lo[i]) | (x[i] > hi[i]));
      if (bad) return true;
      pos += n;
    }
    return false;
  }
};

// Whether the AVX-512 bodies' saturating narrowing (clamp_store16<Out, true>) may be used: [qmin, qmax] is a signed
// 8/16-bit Out's whole range.
template <class Out>
bool saturating_store(int64_t qmin, int64_t qmax) {
  if constexpr (std::is_signed<Out>::value && sizeof(Out) < 4) {
    return qmin == std::numeric_limits<Out>::min() && qmax == std::numeric_limits<Out>::max();
  } else {
    (void)qmin;
    (void)qmax;
    return false;
  }
}

// The three compiled bodies of each loop.
template <class K>
bool body_baseline(const Job& j, int64_t begin, int64_t end) {
  return K::run(j, begin, end);
}
#if FXBN_X86_DISPATCH
template <class K>
FXBN_TARGET_AVX2 bool body_avx2(const Job& j, int64_t begin, int64_t end) {
  return K::run(j, begin, end);
}
template <class K>
FXBN_TARGET_V4 bool body_v4(const Job& j, int64_t begin, int64_t end) {
  return K::run(j, begin, end);
}
#endif

template <class K>
ChunkFn pick(Isa isa) {
#if FXBN_X86_DISPATCH
  if (isa == Isa::v4 || isa == Isa::vbmi) return &body_v4<K>;
  if (isa == Isa::avx2) return &body_avx2<K>;
#else
  (void)isa;
#endif
  return &body_baseline<K>;
}

#if FXBN_X86_DISPATCH
// ------------------------------------------------------------------------------------------------ AVX-512 bodies
// Rows of at least kLutRow 8-bit inputs with 8-bit outputs: the row's map is tabulated for all 256 inputs (with the
// same fixed_point arithmetic), then applied with two 128-entry byte permutes and a blend per 64 elements.
constexpr int64_t kLutRow = 512;

template <Mul M, class In, class Out>
FXBN_TARGET_VBMI bool lut_rows(const Job& j, int64_t begin, int64_t end) {
  static_assert(sizeof(In) == 1 && sizeof(Out) == 1, "byte tables");
  using Acc = typename MulTypes<M>::Acc;
  using Coef = typename MulTypes<M>::Coef;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const Coef* const A = static_cast<const Coef*>(j.a);
  const Acc* const B = static_cast<const Acc*>(j.b);
  const Acc* const S = static_cast<const Acc*>(j.s);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const Acc qmin = static_cast<Acc>(j.qmin), qmax = static_cast<Acc>(j.qmax);
  alignas(64) uint8_t table[256];
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.inner;
    const int64_t off = pos - r * j.inner;
    const int64_t n = std::min(j.inner - off, end - pos);
    if (n < kLutRow) {
      if (ByRow<M, In, Out>::run(j, pos, pos + n)) return true;
      pos += n;
      continue;
    }
    const int64_t c = r % j.channels;
    const Coef a = A[c];
    const Acc b = B[c], s = S[c];
    for (int u = 0; u < 256; ++u) {  // table[u]: the output for the input whose byte is u
      const In v = static_cast<In>(static_cast<uint8_t>(u));
      table[u] = static_cast<uint8_t>(static_cast<Out>(fixed_point<M, In>(v, a, b, s, qmin, qmax)));
    }
    const __m512i t0 = _mm512_load_si512(table), t1 = _mm512_load_si512(table + 64);
    const __m512i t2 = _mm512_load_si512(table + 128), t3 = _mm512_load_si512(table + 192);
    const uint8_t* x = reinterpret_cast<const uint8_t*>(xs + pos);
    uint8_t* y = reinterpret_cast<uint8_t*>(ys + pos);
    __m512i mn = _mm512_set1_epi8(static_cast<char>(std::numeric_limits<In>::max()));
    __m512i mx = _mm512_set1_epi8(static_cast<char>(std::numeric_limits<In>::min()));
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
      const __m512i v = _mm512_loadu_si512(x + i);
      if constexpr (std::is_signed<In>::value) {
        mn = _mm512_min_epi8(mn, v);
        mx = _mm512_max_epi8(mx, v);
      } else {
        mn = _mm512_min_epu8(mn, v);
        mx = _mm512_max_epu8(mx, v);
      }
      const __m512i lo = _mm512_permutex2var_epi8(t0, v, t1);  // entries 0..127 (bit 6 picks t0 / t1)
      const __m512i hi = _mm512_permutex2var_epi8(t2, v, t3);  // entries 128..255
      _mm512_storeu_si512(y + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
    if (i < n) {  // tail: a masked load (lanes past the end repeat x[i], which keeps min/max honest) and store
      const __mmask64 k = _cvtu64_mask64(~uint64_t{0} >> (64 - (n - i)));
      const __m512i v = _mm512_mask_loadu_epi8(_mm512_set1_epi8(static_cast<char>(x[i])), k, x + i);
      if constexpr (std::is_signed<In>::value) {
        mn = _mm512_min_epi8(mn, v);
        mx = _mm512_max_epi8(mx, v);
      } else {
        mn = _mm512_min_epu8(mn, v);
        mx = _mm512_max_epu8(mx, v);
      }
      const __m512i lo = _mm512_permutex2var_epi8(t0, v, t1);
      const __m512i hi = _mm512_permutex2var_epi8(t2, v, t3);
      _mm512_mask_storeu_epi8(y + i, k, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
    bool bad;
    if constexpr (std::is_signed<In>::value) {
      bad = (_mm512_cmplt_epi8_mask(mn, _mm512_set1_epi8(static_cast<char>(LO[c]))) |
             _mm512_cmpgt_epi8_mask(mx, _mm512_set1_epi8(static_cast<char>(HI[c])))) != 0;
    } else {
      bad = (_mm512_cmplt_epu8_mask(mn, _mm512_set1_epi8(static_cast<char>(LO[c]))) |
             _mm512_cmpgt_epu8_mask(mx, _mm512_set1_epi8(static_cast<char>(HI[c])))) != 0;
    }
    if (bad) return true;
    pos += n;
  }
  return false;
}

// 16 inputs widened to int32 lanes.
template <class In>
FXBN_TARGET_V4 FXBN_INLINE __m512i load16(const In* p) {
  if constexpr (std::is_same<In, int8_t>::value) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same<In, uint8_t>::value) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same<In, int16_t>::value) {
    return _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    static_assert(std::is_same<In, int32_t>::value, "input type");
    return _mm512_loadu_si512(p);
  }
}

// 16 int32 lanes (already clamped to the output range) narrowed and stored.
template <class Out>
FXBN_TARGET_V4 FXBN_INLINE void store16(Out* p, __m512i v) {
  if constexpr (sizeof(Out) == 1) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
  } else if constexpr (sizeof(Out) == 2) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
  } else {
    _mm512_storeu_si512(p, v);
  }
}

// Clamp 16 int32 lanes to [qmin, qmax] and store them narrowed.  Sat: [qmin, qmax] is exactly Out's range (int8 or
// int16), so the signed saturating narrowing (vpmovsdb / vpmovsdw) is that clamp and the min/max are dropped.
template <class Out, bool Sat>
FXBN_TARGET_V4 FXBN_INLINE void clamp_store16(Out* p, __m512i v, __m512i qmin32, __m512i qmax32) {
  if constexpr (Sat) {
    static_assert(std::is_signed<Out>::value && sizeof(Out) < 4, "saturating narrowing: int8 or int16 outputs");
    (void)qmin32;
    (void)qmax32;
    if constexpr (sizeof(Out) == 1) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtsepi32_epi8(v));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtsepi32_epi16(v));
    }
  } else {
    store16(p, _mm512_min_epi32(_mm512_max_epi32(v, qmin32), qmax32));
  }
}

// 64 int32 lanes (h0 holds elements 0-15, h1 16-31, ...) clamped to [qmin, qmax] and stored as 8-bit Out: vpackssdw
// and vpacksswb / vpackuswb saturate to int16 and then to Out's range (a clamp to Out's range, as a clamp to a
// wider range followed by one to a narrower is), vpermd restores the element order the 128-bit-lane packs
// interleave, and a byte min/max (dropped when Sat) narrows to [qmin, qmax].  4 shuffle uops per 64 outputs where
// four vpmovsdb take 8.
template <class Out, bool Sat>
FXBN_TARGET_V4 FXBN_INLINE void pack_store64(Out* p, __m512i h0, __m512i h1, __m512i h2, __m512i h3, __m512i qmin8,
                                             __m512i qmax8) {
  static_assert(sizeof(Out) == 1, "8-bit outputs");
  // after the packs, dword 4L + k of the vector holds elements 4L..4L+3 of h_k (L: the 128-bit lane)
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i w01 = _mm512_packs_epi32(h0, h1), w23 = _mm512_packs_epi32(h2, h3);
  __m512i v;
  if constexpr (std::is_signed<Out>::value) {
    v = _mm512_permutexvar_epi32(order, _mm512_packs_epi16(w01, w23));
    if constexpr (!Sat) v = _mm512_min_epi8(_mm512_max_epi8(v, qmin8), qmax8);
  } else {
    static_assert(!Sat, "saturating store: signed outputs");
    v = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w01, w23));
    v = _mm512_min_epu8(_mm512_max_epu8(v, qmin8), qmax8);
  }
  _mm512_storeu_si512(p, v);
}

// High dwords floor(P / 2^32) of P = A*x + B for 16 inputs: vpmuldq (32x32->64, reading the low dword of each
// qword) on the even elements v and on the odd ones vo, vpaddq, then a masked vpshufd swaps the even products' high
// dwords down into the even lanes.  vo holds the odd elements in its low dwords: vpsrlq(v, 32) (port 0, where vpshufd
// would add to the shuffles on port 5), or in widen_rows a second, unaligned load one element further on (the load
// ports have room: 8% faster than vpsrlq there, none in widen_periodic, which loads five table vectors).
FXBN_TARGET_V4 FXBN_INLINE __m512i high_dwords(__m512i v, __m512i vo, __m512i a_even, __m512i a_odd, __m512i b_even,
                                               __m512i b_odd) {
  const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(v, a_even), b_even);
  const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(vo, a_odd), b_odd);
  return _mm512_mask_shuffle_epi32(po, 0x5555, pe, _MM_PERM_CDAB);
}

// Stores elements [i, n) (whole blocks of 16) from high16(k), the clamp-ready int32 lanes of elements k..k+15: 64 at
// a time for 8-bit outputs (pack_store64), then 16 at a time.  Returns the first element not stored.
template <class Out, bool Sat, class High16>
FXBN_TARGET_V4 FXBN_INLINE int64_t store_high(Out* y, int64_t i, int64_t n, const High16& high16, __m512i qmin8,
                                              __m512i qmax8, __m512i qmin32, __m512i qmax32) {
  if constexpr (sizeof(Out) == 1) {
    for (; i + 64 <= n; i += 64) {
      const __m512i h0 = high16(i), h1 = high16(i + 16), h2 = high16(i + 32), h3 = high16(i + 48);
      pack_store64<Out, Sat>(y + i, h0, h1, h2, h3, qmin8, qmax8);
    }
  }
  for (; i + 16 <= n; i += 16) clamp_store16<Out, Sat>(y + i, high16(i), qmin32, qmax32);
  return i;
}

// The 64-bit accumulator with a 32-bit multiplier: two 32x32->64 multiplies (vpmuldq, one uop each, where the
// compiler would sign-extend and use the 3-uop vpmullq) for the even and odd lanes of 16 inputs.  With s >= 32 the
// floor division is taken as (P >> 32) >> (s - 32) (a floor of a floor), so shift and clamp run on 32-bit lanes, and
// 8-bit outputs are packed 64 at a time (pack_store64).
template <class In, class Out, bool Check, bool Sat>
FXBN_TARGET_V4 bool widen_rows(const Job& j, int64_t begin, int64_t end) {
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int64_t* const B = static_cast<const int64_t*>(j.b);
  const int64_t* const S = static_cast<const int64_t*>(j.s);
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const __m512i qmin32 = _mm512_set1_epi32(static_cast<int32_t>(j.qmin));
  const __m512i qmax32 = _mm512_set1_epi32(static_cast<int32_t>(j.qmax));
  const __m512i qmin8 = _mm512_set1_epi8(static_cast<char>(j.qmin));
  const __m512i qmax8 = _mm512_set1_epi8(static_cast<char>(j.qmax));
  const __m512i qmin64 = _mm512_set1_epi64(j.qmin), qmax64 = _mm512_set1_epi64(j.qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.inner;
    const int64_t off = pos - r * j.inner;
    const int64_t n = std::min(j.inner - off, end - pos);
    const int64_t c = r % j.channels;
    const In* x = xs + pos;
    Out* y = ys + pos;
    const __m512i av = _mm512_set1_epi64(A[c]);  // vpmuldq reads the low 32 bits of each 64-bit lane
    const __m512i bv = _mm512_set1_epi64(B[c]);
    const int64_t s = S[c];
    const int32_t xk = XK[c];
    __m512i mn = _mm512_set1_epi32(std::numeric_limits<int32_t>::max());
    __m512i mx = _mm512_set1_epi32(std::numeric_limits<int32_t>::min());
    int64_t i = 0;
    if (s >= 32) {
      const __m128i cnt = _mm_cvtsi64_si128(s - 32);
      const __m512i xkv = _mm512_set1_epi32(xk);
      // the odd-element loads read x[k + 16]: the tensor's last 16-block (and its tail) go to the scalar tail
      const int64_t lim = std::min(n, j.total - pos - 1);
      const auto high16 = [&](int64_t k) FXBN_TARGET_V4 {
        __m512i v = load16(x + k);
        if constexpr (Check) {
          mn = _mm512_min_epi32(mn, v);
          mx = _mm512_max_epi32(mx, v);
        }
        __m512i h;
        if constexpr (sizeof(In) == 4) {
          h = high_dwords(v, load16(x + k + 1), av, av, bv, bv);
        } else {  // x * 2^xk (vpsllvd), then the odd elements by vpsrlq: a reload would need another widening
          v = _mm512_sllv_epi32(v, xkv);
          h = high_dwords(v, _mm512_srli_epi64(v, 32), av, av, bv, bv);
        }
        return s > 32 ? _mm512_sra_epi32(h, cnt) : h;
      };
      i = store_high<Out, Sat>(y, i, lim, high16, qmin8, qmax8, qmin32, qmax32);
    } else {
      const __m128i cnt = _mm_cvtsi64_si128(s);
      for (; i + 16 <= n; i += 16) {
        const __m512i v = load16(x + i);
        if constexpr (Check) {
          mn = _mm512_min_epi32(mn, v);
          mx = _mm512_max_epi32(mx, v);
        }
        __m512i pe = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(v, av), bv), cnt);
        __m512i po = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), av), bv), cnt);
        pe = _mm512_min_epi64(_mm512_max_epi64(pe, qmin64), qmax64);
        po = _mm512_min_epi64(_mm512_max_epi64(po, qmin64), qmax64);
        store16(y + i, _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32)));
      }
    }
    bool bad = false;
    if constexpr (Check) bad = (_mm512_reduce_min_epi32(mn) < LO[c]) | (_mm512_reduce_max_epi32(mx) > HI[c]);
    for (; i < n; ++i) {  // tail (< 16 elements; < 32 at the end of the tensor)
      const In v = x[i];
      if constexpr (Check) bad |= (v < LO[c]) | (v > HI[c]);
      y[i] = static_cast<Out>(fixed_point_xk(v, xk, A[c], B[c], s, j.qmin, j.qmax));
    }
    if (bad) return true;
    pos += n;
  }
  return false;
}

// Periodic tables (channel-last layouts) with the 64-bit accumulator and a 32-bit multiplier: vpmuldq on even and
// odd lanes (one uop each, where the compiler sign-extends and uses the 3-uop vpmullq).  High (every shift >= 32):
// the high dwords are floor(P / 2^32), then per-lane 32-bit shifts and clamps; otherwise per-lane 64-bit shifts and
// clamps.  Tables (64-byte aligned): lo/hi per entry; a (as int64), b and (when !High) s split per 16-entry block into
// even then odd entries, so that each vpmuldq operand is one aligned load; s32 = s - 32 per entry when High.  The
// odd inputs come from vpsrlq, as in widen_rows.
template <class In, class Out, bool Check, bool High, bool Sat = false>
FXBN_TARGET_V4 bool widen_periodic(const Job& j, int64_t begin, int64_t end) {
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int64_t* const As = static_cast<const int64_t*>(j.a);
  const int64_t* const Bs = static_cast<const int64_t*>(j.b);
  const int64_t* const Ss = static_cast<const int64_t*>(j.s);
  const int32_t* const S = static_cast<const int32_t*>(j.s32);
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const int32_t qmin = static_cast<int32_t>(j.qmin), qmax = static_cast<int32_t>(j.qmax);
  const __m512i qmin32 = _mm512_set1_epi32(qmin), qmax32 = _mm512_set1_epi32(qmax);
  const __m512i qmin8 = _mm512_set1_epi8(static_cast<char>(qmin)), qmax8 = _mm512_set1_epi8(static_cast<char>(qmax));
  const __m512i qmin64 = _mm512_set1_epi64(j.qmin), qmax64 = _mm512_set1_epi64(j.qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.period;
    const int64_t off = pos - r * j.period;  // a multiple of 16 (see period_of)
    const int64_t n = std::min(j.period - off, end - pos);
    const In* x = xs + pos;
    Out* y = ys + pos;
    __mmask16 bad = 0;
    int64_t i = 0;
    if constexpr (High) {
      const auto high16 = [&](int64_t k) FXBN_TARGET_V4 {
        const int64_t e = off + k;
        __m512i v = load16(x + k);
        if constexpr (Check) {
          bad |= _mm512_cmplt_epi32_mask(v, load16(LO + e)) | _mm512_cmpgt_epi32_mask(v, load16(HI + e));
        }
        if constexpr (sizeof(In) < 4) v = _mm512_sllv_epi32(v, _mm512_load_si512(XK + e));  // x * 2^xk
        const __m512i h = high_dwords(v, _mm512_srli_epi64(v, 32), _mm512_load_si512(As + e),
                                      _mm512_load_si512(As + e + 8), _mm512_load_si512(Bs + e),
                                      _mm512_load_si512(Bs + e + 8));
        return _mm512_srav_epi32(h, _mm512_load_si512(S + e));
      };
      i = store_high<Out, Sat>(y, i, n, high16, qmin8, qmax8, qmin32, qmax32);
    } else {
      for (; i + 16 <= n; i += 16) {
        const int64_t e = off + i;
        __m512i v = load16(x + i);
        if constexpr (Check) {
          bad |= _mm512_cmplt_epi32_mask(v, load16(LO + e)) | _mm512_cmpgt_epi32_mask(v, load16(HI + e));
        }
        if constexpr (sizeof(In) < 4) v = _mm512_sllv_epi32(v, _mm512_load_si512(XK + e));  // x * 2^xk
        __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(v, _mm512_load_si512(As + e)), _mm512_load_si512(Bs + e));
        __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), _mm512_load_si512(As + e + 8)),
                                      _mm512_load_si512(Bs + e + 8));
        pe = _mm512_srav_epi64(pe, _mm512_load_si512(Ss + e));
        po = _mm512_srav_epi64(po, _mm512_load_si512(Ss + e + 8));
        pe = _mm512_min_epi64(_mm512_max_epi64(pe, qmin64), qmax64);
        po = _mm512_min_epi64(_mm512_max_epi64(po, qmin64), qmax64);
        store16(y + i, _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32)));
      }
    }
    for (; i < n; ++i) {  // tail (< 16 elements, only at the very end of the tensor)
      const int64_t e = off + i;
      const int64_t k = e & 15;
      const int64_t bi = (e - k) + ((k & 1) ? 8 : 0) + (k >> 1);
      const In v = x[i];
      if constexpr (Check) bad |= static_cast<__mmask16>((v < LO[e]) | (v > HI[e]));
      const int64_t xv = static_cast<int64_t>(v) * (int64_t{1} << XK[e]);  // x * 2^xk, fits int32
      const uint64_t prod = static_cast<uint64_t>(As[bi] * xv);
      const int64_t acc = static_cast<int64_t>(prod + static_cast<uint64_t>(Bs[bi]));
      if constexpr (High) {
        const int32_t h = static_cast<int32_t>(acc >> 32) >> S[e];
        y[i] = static_cast<Out>(std::min(std::max(h, qmin), qmax));
      } else {
        const int64_t q = acc >> Ss[bi];
        y[i] = static_cast<Out>(std::min(std::max(q, j.qmin), j.qmax));
      }
    }
    if (Check && bad) return true;
    pos += n;
  }
  return false;
}

// Periodic tables, 32-bit accumulator, 8/16-bit inputs and every |A| < 2^15: A*x + B is one vpdpwssd (B plus the
// dot product of the 16-bit pairs (x, *) and (A, 0)).  Tables: a = A & 0xFFFF, b, s as int32; lo/hi per entry.
template <class In, class Out, bool Check>
FXBN_TARGET_VBMI bool dp_periodic(const Job& j, int64_t begin, int64_t end) {
  static_assert(sizeof(In) <= 2, "16-bit pairs");
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int32_t* const B = static_cast<const int32_t*>(j.b);
  const int32_t* const S = static_cast<const int32_t*>(j.s);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const int32_t qmin = static_cast<int32_t>(j.qmin), qmax = static_cast<int32_t>(j.qmax);
  const __m512i qmin32 = _mm512_set1_epi32(qmin), qmax32 = _mm512_set1_epi32(qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.period;
    const int64_t off = pos - r * j.period;
    const int64_t n = std::min(j.period - off, end - pos);
    const In* x = xs + pos;
    Out* y = ys + pos;
    __mmask16 bad = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const int64_t e = off + i;
      const __m512i v = load16(x + i);
      if constexpr (Check) {
        bad |= _mm512_cmplt_epi32_mask(v, load16(LO + e)) | _mm512_cmpgt_epi32_mask(v, load16(HI + e));
      }
      __m512i acc = _mm512_dpwssd_epi32(_mm512_loadu_si512(B + e), v, _mm512_loadu_si512(A + e));
      acc = _mm512_srav_epi32(acc, _mm512_loadu_si512(S + e));
      acc = _mm512_min_epi32(_mm512_max_epi32(acc, qmin32), qmax32);
      store16(y + i, acc);
    }
    for (; i < n; ++i) {  // tail (< 16 elements)
      const int64_t e = off + i;
      const In v = x[i];
      if constexpr (Check) bad |= static_cast<__mmask16>((v < LO[e]) | (v > HI[e]));
      const int32_t a16 = static_cast<int16_t>(static_cast<uint16_t>(A[e]));
      const uint32_t acc = static_cast<uint32_t>(a16 * static_cast<int32_t>(v)) + static_cast<uint32_t>(B[e]);
      const int32_t q = static_cast<int32_t>(acc) >> S[e];
      y[i] = static_cast<Out>(std::min(std::max(q, qmin), qmax));
    }
    if (Check && bad) return true;
    pos += n;
  }
  return false;
}
#endif

// Per-row kernel for this ISA: the table lookup (8-bit -> 8-bit, VBMI), the vpmuldq body (widen, AVX-512), or the
// compiler-vectorized ByRow.
template <Mul M, class In, class Out>
ChunkFn pick_rows(Isa isa, bool check, bool sat) {
#if FXBN_X86_DISPATCH
  if constexpr (sizeof(In) == 1 && sizeof(Out) == 1) {
    if (isa == Isa::vbmi) return &lut_rows<M, In, Out>;
  }
  if constexpr (M == Mul::widen && sizeof(Out) <= 4) {
    if (isa == Isa::v4 || isa == Isa::vbmi) {
      if constexpr (std::is_signed<Out>::value && sizeof(Out) < 4) {
        if (sat) return check ? &widen_rows<In, Out, true, true> : &widen_rows<In, Out, false, true>;
      }
      return check ? &widen_rows<In, Out, true, false> : &widen_rows<In, Out, false, false>;
    }
  }
#else
  (void)sat;
#endif
  return check ? pick<ByRow<M, In, Out, true>>(isa) : pick<ByRow<M, In, Out, false>>(isa);
}

// ------------------------------------------------------------------------------------------------ driving
constexpr int64_t kMinRow = 64;       // rows shorter than this go through the periodic tables
constexpr int64_t kMinPeriod = 1024;  // periodic tables are repeated to at least this many entries
constexpr int64_t kMaxPeriod = int64_t{1} << 18;  // table entries (~22 bytes each) per call, at most
// Bytes (read + written) per thread below which a second thread costs more than it saves (thread wake-up is
// ~10-50 us here, a 1 MB pass ~50 us).
constexpr int64_t kBytesPerThread = int64_t{1} << 20;

int thread_count(int threads, int64_t bytes) {
#ifdef _OPENMP
  const int n = threads > 0 ? threads : omp_get_max_threads();
  const int64_t by_work = std::max<int64_t>(1, bytes / kBytesPerThread);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, by_work)));
#else
  (void)threads;
  (void)bytes;
  return 1;
#endif
}

// Splits [0, total) into one contiguous, 64-element aligned chunk per thread.
bool run_chunks(ChunkFn fn, const Job& j, int64_t total, int nt) {
  if (nt <= 1) return fn(j, 0, total);
  bool bad = false;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    const int64_t t = omp_get_thread_num(), m = omp_get_num_threads();
    const int64_t chunk = ((total + m - 1) / m + 63) / 64 * 64;
    const int64_t b = std::min(total, t * chunk), e = std::min(total, b + chunk);
    if (b < e) bad |= fn(j, b, e);
  }
#else
  bad = fn(j, 0, total);
#endif
  return bad;
}

template <class In>
bool needs_check(const int64_t* lo, const int64_t* hi, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    if (lo[c] > std::numeric_limits<In>::min() || hi[c] < std::numeric_limits<In>::max()) return true;
  }
  return false;
}

// The period of the periodic tables: a multiple of channels * inner of at least kMinPeriod entries.
// (A multiple of 64 when that stays below kMaxPeriod: with 64-aligned chunks, SIMD blocks then start at table
// offsets that are multiples of 16.)
int64_t period_of(int64_t channels, int64_t inner) {
  const int64_t base = channels * inner;
  const int64_t aligned = base / std::gcd(base, int64_t{64}) * 64;
  const int64_t unit = aligned <= kMaxPeriod ? aligned : base;
  const int64_t reps = std::max<int64_t>(1, (kMinPeriod + unit - 1) / unit);
  return unit * reps;
}

bool use_rows(int64_t channels, int64_t inner) { return inner >= kMinRow || channels * inner > kMaxPeriod; }

// First offending flat index, exact and serial (only after a chunk reported a violation, or for check_range).
template <class In>
int64_t first_bad_scalar(const In* x, int64_t outer, int64_t channels, int64_t inner, const int64_t* lo,
                         const int64_t* hi) {
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

template <class In>
int64_t first_bad(const In* x, int64_t outer, int64_t channels, int64_t inner, const int64_t* lo, const int64_t* hi) {
  if (outer * channels * inner == 0 || !needs_check<In>(lo, hi, channels)) return -1;
  std::vector<In> lo_t, hi_t;
  Job j{};
  j.x = x;
  j.channels = channels;
  j.inner = inner;
  ChunkFn fn;
  if (use_rows(channels, inner)) {
    lo_t.resize(static_cast<size_t>(channels));
    hi_t.resize(lo_t.size());
    for (int64_t c = 0; c < channels; ++c) {
      lo_t[static_cast<size_t>(c)] = static_cast<In>(lo[c]);  // within In: the entry points clip [lo, hi] to In
      hi_t[static_cast<size_t>(c)] = static_cast<In>(hi[c]);
    }
    fn = pick<CheckByRow<In>>(current_isa());
    j.period = 0;
  } else {
    j.period = channels * inner;
    lo_t.resize(static_cast<size_t>(j.period));
    hi_t.resize(lo_t.size());
    for (int64_t e = 0; e < j.period; ++e) {
      lo_t[static_cast<size_t>(e)] = static_cast<In>(lo[e / inner]);
      hi_t[static_cast<size_t>(e)] = static_cast<In>(hi[e / inner]);
    }
    fn = pick<CheckPeriodic<In>>(current_isa());
  }
  j.lo = lo_t.data();
  j.hi = hi_t.data();
  // Blocks in order: the first block with a violation holds the first offending element.
  const int64_t total = outer * channels * inner;
  const int64_t block = std::max<int64_t>(j.period > 0 ? j.period : inner, 1 << 16);
  for (int64_t b = 0; b < total; b += block) {
    const int64_t e = std::min(total, b + block);
    if (fn(j, b, e)) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t c = (i / inner) % channels;
        const int64_t v = x[i];
        if (v < lo[c] || v > hi[c]) return i;
      }
      return first_bad_scalar(x, outer, channels, inner, lo, hi);  // not reached
    }
  }
  return -1;
}

// The largest k with x * 2^k inside int32 for every x of In (0 for int32 inputs).
template <class In>
constexpr int max_input_shift() {
  if constexpr (sizeof(In) >= 4) {
    return 0;
  } else {
    return 32 - 8 * static_cast<int>(sizeof(In)) - (std::is_signed<In>::value ? 0 : 1);
  }
}

// (A*2^k*x + B*2^k) >> (s + k) == (A*x + B) >> s (floor of the same rational).  With k = 32 - s the widen bodies
// take their high-dword path (one 32-bit shift and clamp per 16 lanes instead of two 64-bit ones) -- when
// (A*x + B)*2^k, at both ends of [lo, hi] (it is affine in x), and B*2^k fit int64, and either A*2^k still fits
// int32 (then A is scaled) or, where the body applies it (xshift), x*2^k fits int32 for every x of In (then the
// input is: xk = k, A unchanged).  Otherwise the parameters are left as they are (xk = 0).
template <class In>
void widen_to_high(int32_t& a, int64_t& b, int64_t& s, int32_t& xk, int64_t lo, int64_t hi, bool xshift) {
  xk = 0;
  if (s >= 32 || s < 1) return;  // s = 0 would need k = 32: A * 2^32 fits int32 only for A = 0
  const int k = static_cast<int>(32 - s);
  const int64_t lim_a = int64_t{1} << (31 - k);
  const bool scale_a = a < lim_a && a > -lim_a;
  if (!scale_a && !(xshift && k <= max_input_shift<In>())) return;
  const __int128 lim = static_cast<__int128>(1) << (63 - k);
  const __int128 ends[3] = {static_cast<__int128>(a) * lo + b, static_cast<__int128>(a) * hi + b, b};
  for (const __int128 v : ends) {
    if (v >= lim || v < -lim) return;
  }
  if (scale_a) {
    a = static_cast<int32_t>(static_cast<int64_t>(a) * (int64_t{1} << k));
  } else {
    xk = k;
  }
  b = static_cast<int64_t>(static_cast<__int128>(b) * (static_cast<__int128>(1) << k));
  s = 32;
}

template <Mul M, class In, class Out>
int64_t apply_typed(const In* x, Out* y, int64_t outer, int64_t channels, int64_t inner, const KernelParams& p,
                    int threads) {
  using Acc = typename MulTypes<M>::Acc;
  using Coef = typename MulTypes<M>::Coef;
  const int max_shift = static_cast<int>(sizeof(Acc) * 8 - 1);
  // |acc| < 2^(w-1) makes acc >> (w-1) equal to floor(acc / 2^s) for every s >= w-1
  const bool check = needs_check<In>(p.lo, p.hi, channels);
  const bool rows = use_rows(channels, inner);
  const int64_t n = rows ? channels : period_of(channels, inner);
  const int64_t per = rows ? 1 : inner;  // table entry e belongs to channel (e / per) % channels
  Table<Coef> a(static_cast<size_t>(n));
  Table<Acc> b(a.size()), s(a.size());
  Table<In> lo(a.size()), hi(a.size());
  Table<int32_t> xk(M == Mul::widen ? a.size() : 0);  // input shifts: widen bodies only
  const Isa isa = current_isa();
  // inputs are scaled (xk) only where the body picked below applies it: widen_rows and widen_periodic
  const bool lut = rows && sizeof(In) == 1 && sizeof(Out) == 1 && isa == Isa::vbmi;
  const bool xshift = !lut && (rows || n % 64 == 0);
  // entry e belongs to channel (e / per) % channels: one channel-major pass, then whole copies of the first period
  const int64_t base = channels * per;
  for (int64_t c = 0, e = 0; c < channels; ++c) {
    Coef ac = static_cast<Coef>(p.multiplier[c]);  // mul32: the low 32 bits suffice (wrap-around is exact)
    Acc bc = static_cast<Acc>(p.bias[c]);
    Acc sc = static_cast<Acc>(std::min(p.shift[c], max_shift));
    int32_t kc = 0;
#if FXBN_X86_DISPATCH
    if constexpr (M == Mul::widen) {
      if (isa == Isa::v4 || isa == Isa::vbmi) widen_to_high<In>(ac, bc, sc, kc, p.lo[c], p.hi[c], xshift);
    }
#else
    (void)xshift;
#endif
    const In loc = static_cast<In>(p.lo[c]);  // within In: the entry points clip [lo, hi] to In
    const In hic = static_cast<In>(p.hi[c]);
    for (int64_t i = 0; i < per; ++i, ++e) {
      const size_t k = static_cast<size_t>(e);
      a[k] = ac;
      b[k] = bc;
      s[k] = sc;
      lo[k] = loc;
      hi[k] = hic;
      if constexpr (M == Mul::widen) xk[k] = kc;
    }
  }
  for (int64_t e = base; e < n; e += base) {
    std::copy_n(a.begin(), base, a.begin() + e);
    std::copy_n(b.begin(), base, b.begin() + e);
    std::copy_n(s.begin(), base, s.begin() + e);
    std::copy_n(lo.begin(), base, lo.begin() + e);
    std::copy_n(hi.begin(), base, hi.begin() + e);
    if constexpr (M == Mul::widen) std::copy_n(xk.begin(), base, xk.begin() + e);
  }
  Job j{x, y, channels, inner, rows ? 0 : n, a.data(), b.data(), s.data(), lo.data(), hi.data(), p.qmin, p.qmax};
  j.total = outer * channels * inner;
  j.xk = xk.data();
  const bool sat = saturating_store<Out>(p.qmin, p.qmax);
  ChunkFn fn = rows ? pick_rows<M, In, Out>(isa, check, sat)
                    : (check ? pick<Periodic<M, In, Out, true>>(isa) : pick<Periodic<M, In, Out, false>>(isa));
#if FXBN_X86_DISPATCH
  Table<int32_t> s32;
  Table<int64_t> a64;
  if constexpr (M == Mul::widen && sizeof(Out) <= 4) {
    if (!rows && (isa == Isa::v4 || isa == Isa::vbmi) && n % 64 == 0) {
      const bool high = std::all_of(s.begin(), s.end(), [](Acc v) { return v >= 32; });
      const auto split = [](Table<int64_t>& t) {  // per 16-entry block: even entries first, then odd ones
        for (size_t blk = 0; blk < t.size(); blk += 16) {
          Acc tmp[16];
          for (size_t k = 0; k < 16; ++k) tmp[(k & 1 ? 8 : 0) + (k >> 1)] = t[blk + k];
          std::copy_n(tmp, 16, t.begin() + static_cast<std::ptrdiff_t>(blk));
        }
      };
      split(b);
      a64.assign(a.begin(), a.end());  // sign-extended: vpmuldq reads the low dword of each qword
      split(a64);
      j.a = a64.data();
      if (high) {
        s32.resize(s.size());
        for (size_t k = 0; k < s.size(); ++k) s32[k] = static_cast<int32_t>(s[k] - 32);
        j.s32 = s32.data();
        fn = check ? &widen_periodic<In, Out, true, true> : &widen_periodic<In, Out, false, true>;
        if constexpr (std::is_signed<Out>::value && sizeof(Out) < 4) {
          if (sat) {
            fn = check ? &widen_periodic<In, Out, true, true, true> : &widen_periodic<In, Out, false, true, true>;
          }
        }
      } else {
        split(s);
        fn = check ? &widen_periodic<In, Out, true, false> : &widen_periodic<In, Out, false, false>;
      }
    }
  }
  if constexpr (M == Mul::mul32 && sizeof(In) <= 2 && sizeof(Out) <= 4) {
    const bool a16 = std::all_of(a.begin(), a.end(), [](Coef v) { return v > -32768 && v < 32768; });
    if (!rows && isa == Isa::vbmi && a16) {
      for (auto& v : a) v = static_cast<Coef>(static_cast<uint16_t>(v));  // (A, 0) as a pair of 16-bit words
      fn = check ? &dp_periodic<In, Out, true> : &dp_periodic<In, Out, false>;
    }
  }
#endif
  const int64_t total = outer * channels * inner;
  const int nt = thread_count(threads, total * static_cast<int64_t>(sizeof(In) + sizeof(Out)));
  const bool bad = run_chunks(fn, j, total, nt);
  if (!bad) return -1;
  const int64_t first = first_bad(x, outer, channels, inner, p.lo, p.hi);
  if (first < 0) throw std::logic_error("fxbn kernel: a chunk reported an input out of range that the exact rescan "
                                        "did not find (outputs are not trusted)");
  return first;
}

bool multipliers_fit_int32(const int64_t* m, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    if (m[c] < std::numeric_limits<int32_t>::min() || m[c] > std::numeric_limits<int32_t>::max()) return false;
  }
  return true;
}

template <class In, class Out>
int64_t apply_mul(const In* x, Out* y, int64_t outer, int64_t channels, int64_t inner, const KernelParams& p,
                  int threads) {
  if (p.acc32) return apply_typed<Mul::mul32, In, Out>(x, y, outer, channels, inner, p, threads);
  if (multipliers_fit_int32(p.multiplier, channels)) {
    return apply_typed<Mul::widen, In, Out>(x, y, outer, channels, inner, p, threads);
  }
  return apply_typed<Mul::mul64, In, Out>(x, y, outer, channels, inner, p, threads);
}

template <class In>
int64_t apply_in(const In* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
                 const KernelParams& p, int threads) {
  switch (out_type) {
    case DType::int8: return apply_mul(x, static_cast<int8_t*>(y), outer, channels, inner, p, threads);
    case DType::uint8: return apply_mul(x, static_cast<uint8_t*>(y), outer, channels, inner, p, threads);
    case DType::int16: return apply_mul(x, static_cast<int16_t*>(y), outer, channels, inner, p, threads);
    case DType::uint16: return apply_mul(x, static_cast<uint16_t*>(y), outer, channels, inner, p, threads);
    case DType::int32: return apply_mul(x, static_cast<int32_t*>(y), outer, channels, inner, p, threads);
  }
  throw std::invalid_argument("unsupported output dtype");
}

}  // namespace

namespace {

// The channel ranges the SIMD bodies see are In-typed: a layer declared for another input type may have bounds that
// In cannot hold.  Each [lo, hi] is intersected with In's range (the same set of accepted inputs); a channel whose
// range misses In entirely accepts no element, and then the exact int64 scan names the first offending one.
template <class In>
struct InRanges {
  std::vector<int64_t> lo, hi;
  bool empty_channel = false;
  InRanges(const int64_t* l, const int64_t* h, int64_t channels)
      : lo(static_cast<size_t>(channels)), hi(static_cast<size_t>(channels)) {
    constexpr int64_t tmin = std::numeric_limits<In>::min(), tmax = std::numeric_limits<In>::max();
    for (size_t c = 0; c < lo.size(); ++c) {
      lo[c] = std::max(l[c], tmin);
      hi[c] = std::min(h[c], tmax);
      empty_channel |= lo[c] > hi[c];
    }
  }
};

template <class In>
int64_t apply_clipped(const In* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
                      const KernelParams& p, int threads) {
  const InRanges<In> r(p.lo, p.hi, channels);
  if (r.empty_channel) return first_bad_scalar(x, outer, channels, inner, p.lo, p.hi);
  KernelParams q = p;
  q.lo = r.lo.data();
  q.hi = r.hi.data();
  return apply_in(x, out_type, y, outer, channels, inner, q, threads);
}

template <class In>
int64_t check_clipped(const In* x, int64_t outer, int64_t channels, int64_t inner, const int64_t* lo,
                      const int64_t* hi) {
  const InRanges<In> r(lo, hi, channels);
  if (r.empty_channel) return first_bad_scalar(x, outer, channels, inner, lo, hi);
  return first_bad(x, outer, channels, inner, r.lo.data(), r.hi.data());
}

}  // namespace

int64_t apply(DType in_type, const void* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
              const KernelParams& p, int threads) {
  if (outer <= 0 || channels <= 0 || inner <= 0) return -1;
  switch (in_type) {
    case DType::int8: return apply_clipped(static_cast<const int8_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::uint8: return apply_clipped(static_cast<const uint8_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::int16: return apply_clipped(static_cast<const int16_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::int32: return apply_clipped(static_cast<const int32_t*>(x), out_type, y, outer, channels, inner, p, threads);
    case DType::uint16: break;
  }
  throw std::invalid_argument("unsupported input dtype (int8, uint8, int16, int32)");
}

int64_t first_out_of_range(DType in_type, const void* x, int64_t outer, int64_t channels, int64_t inner,
                           const int64_t* lo, const int64_t* hi) {
  if (outer <= 0 || channels <= 0 || inner <= 0) return -1;
  switch (in_type) {
    case DType::int8: return check_clipped(static_cast<const int8_t*>(x), outer, channels, inner, lo, hi);
    case DType::uint8: return check_clipped(static_cast<const uint8_t*>(x), outer, channels, inner, lo, hi);
    case DType::int16: return check_clipped(static_cast<const int16_t*>(x), outer, channels, inner, lo, hi);
    case DType::int32: return check_clipped(static_cast<const int32_t*>(x), outer, channels, inner, lo, hi);
    case DType::uint16: break;
  }
  throw std::invalid_argument("unsupported input dtype (int8, uint8, int16, int32)");
}

const char* kernel_isa() { return isa_name(current_isa()); }

bool set_kernel_isa(const char* name) {
  Isa isa;
  if (!parse_isa(name, &isa)) return false;
  isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

}  // namespace fxbn
