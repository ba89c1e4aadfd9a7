// Private to the kernel sources (kernel.cpp and the kernel_<isa>.cpp files): the arithmetic every body shares,
// the Job a chunk function receives, the compiler-vectorized loop templates, and the hand-written ISA bodies' entry
// points.  kernel.cpp holds the ISA selection, the driving code, the portable loops (compiled once per ISA) and the
// public entry points; each kernel_<isa>.cpp holds the hand-written bodies for one instruction set.
#pragma once

#include "kernel.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

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

// AArch64: Advanced SIMD (NEON) is part of the base architecture, so the NEON bodies need no run-time detection.
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(FXBN_NO_DISPATCH)
#define FXBN_NEON_DISPATCH 1
#else
#define FXBN_NEON_DISPATCH 0
#endif

#if defined(__GNUC__)
#define FXBN_INLINE __attribute__((always_inline)) inline
#else
#define FXBN_INLINE inline
#endif

namespace fxbn {
namespace detail {

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
  // keep_out_on_error with a body that saves (rows_body_saves): before writing y[k] the body copies its old bytes to
  // save[k] (same offsets), and it walks all of [begin, end) even after a violation, so [begin, end) is all saved
  void* save = nullptr;
  bool save_streaming = false;  // save with non-temporal stores where aligned (outputs larger than the caches)
  bool stream_out = false;      // no save: y with non-temporal stores where aligned (kernel.cpp stream_out_bytes)
  const int32_t* range32 = nullptr;  // widen_pixels: per channel lo - 2^31, then (hi - lo) - 2^31 (PixelPrepared)
  // AVX2 widen_short: per channel two qwords, B then the dwords A, s - 32; channels + 1 entries (the last: channel 0's)
  const int64_t* short_params = nullptr;
  // AVX2 widen_pixels_words (int16 -> int16 channel-last, every channel input_shift_16): per 16 channels A and B in
  // the products' lane order, the counts in vshufps order, lo2 / w2 as words (kernel.cpp pixel_words_tables)
  const int64_t* pixel_words = nullptr;
};
// Qwords per 16 channels of Job::pixel_words: 16 A, 16 B (int64), 16 counts (int32), 16 lo2, 16 w2 (int16).
constexpr int64_t kPixelWordsBlock = 48;

// A scalar widen element whose input is scaled by 2^xk (xk = 0: fixed_point itself); x * 2^xk fits int32.
template <class In>
FXBN_INLINE int64_t fixed_point_xk(In v, int32_t xk, int32_t a, int64_t b, int64_t s, int64_t qmin, int64_t qmax) {
  return fixed_point<Mul::widen, int32_t>(static_cast<int32_t>(v) * (int32_t{1} << xk), a, b, s, qmin, qmax);
}

using ChunkFn = bool (*)(const Job&, int64_t, int64_t);

// A call's prepared tables (apply_typed), kept in the layer's KernelCache for the next call of the same shape: the
// periodic tables of an NCHW layer with short rows are as large as its tensor (channels x inner entries), and
// building them, with fresh pages, cost 20x the kernel (2048 x 7 x 7 int32).  `tag` names the apply_typed
// instantiation, `isa` the bodies the tables were laid out for; the tables are not changed once kept.
struct PreparedTables {
  const void* tag = nullptr;
  int isa = -1;
  int64_t channels = 0, inner = 0;
  virtual ~PreparedTables() = default;
};
// The kept tables for (tag, isa, channels, inner), or null (also without a cache); keep_tables adds t (the oldest of
// kKeptTables goes).  In kernel.cpp, which builds alone for other targets (tests/test_cross_kernel.py).
std::shared_ptr<const PreparedTables> find_tables(KernelCache* cache, const void* tag, int isa, int64_t channels,
                                                  int64_t inner);
void keep_tables(KernelCache* cache, std::shared_ptr<const PreparedTables> t);

struct ByteChannels;  // kernel_byte.cpp
struct BytePlan;

// What apply() derives from a layer's parameter arrays for one input type, once per layer (KernelCache::facts, the
// arrays do not change): each channel's [lo, hi] intersected with In's range, whether some channel's is then empty,
// whether some channel needs the range check, whether every multiplier fits int32.  Scanning them on every call
// cost ~2 ns per channel (1x2048x7x7: ~4 us of a 20 us call).
struct LayerFacts {
  int64_t channels = 0;
  std::vector<int64_t> lo, hi;
  bool empty_channel = false, check = false, multipliers_int32 = false;
};

}  // namespace detail

// Defined here so that kernel.cpp reaches `tables` without kernel_byte.cpp; constructed and destroyed there (where
// the byte template's types are complete).
struct KernelCache {
  std::mutex mu;
  std::vector<std::unique_ptr<detail::ByteChannels>> channels;
  std::vector<std::unique_ptr<detail::BytePlan>> plans;
  std::vector<std::shared_ptr<const detail::PreparedTables>> tables;  // oldest first
  std::shared_ptr<const detail::LayerFacts> facts[4];                  // per input type: int8, uint8, int16, int32
  KernelCache();
  ~KernelCache();
};

namespace detail {

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


// Rows of at least kLutRow 8-bit inputs with 8-bit outputs take the table-lookup bodies (a 256-entry table per row).
constexpr int64_t kLutRow = 512;

// Every (Mul, In, Out) the kernel instantiates: F(M, In, Out) for each; FXBN_FOR_IN_OUT(F, X) gives F(X, In, Out).
#define FXBN_FOR_OUT(F, X, In) F(X, In, int8_t) F(X, In, uint8_t) F(X, In, int16_t) F(X, In, uint16_t) F(X, In, int32_t)
#define FXBN_FOR_IN_OUT(F, X) \
  FXBN_FOR_OUT(F, X, int8_t) FXBN_FOR_OUT(F, X, uint8_t) FXBN_FOR_OUT(F, X, int16_t) FXBN_FOR_OUT(F, X, int32_t)
#define FXBN_FOR_MUL_IN_OUT(F) FXBN_FOR_IN_OUT(F, Mul::mul32) FXBN_FOR_IN_OUT(F, Mul::widen) FXBN_FOR_IN_OUT(F, Mul::mul64)

#if FXBN_X86_DISPATCH
// kernel_avx512.cpp.  Each returns the hand-written body for the case, or nullptr when none serves it.
// By rows: lut_rows (vbmi, 8-bit -> 8-bit), widen_rows (widen, sizeof(Out) <= 4).
template <Mul M, class In, class Out>
ChunkFn avx512_rows(bool vbmi, bool check, bool sat);
// Periodic tables, widen (tables prepared by apply_typed: a64/b split even/odd per 16 entries, s32 when high).
template <class In, class Out>
ChunkFn avx512_widen_periodic(bool check, bool high, bool sat);
// Periodic tables, mul32, 8/16-bit inputs, every |A| < 2^15 (vbmi+vnni: vpdpwssd).
template <class In, class Out>
ChunkFn avx512_dp_periodic(bool check);
// int32 -> 8-bit or int16 -> int16, channel-last (inner == 1, channels % 64 == 0), widen, every s >= 32: j.a int32 A,
// j.b B split per 16 channels into even then odd, j.s32, for int16 inputs j.xk (int32 per channel); the check per
// channel (j.range32; one_range is not used).  Saves y's old bytes under keep_out (j.save).
template <class In, class Out>
ChunkFn avx512_widen_pixels(bool check, bool sat, bool one_range);
// int32 -> 8-bit NCHW rows of 16 <= inner < 64, widen, every s >= 32: per-channel tables (j.a int32 A, j.b int64 B,
// j.s32 s - 32, j.lo / j.hi int32), the current channel broadcast, blended with the next one on a row boundary;
// one_range: every channel has the same [lo, hi] (j.lo[0], j.hi[0]).
template <class Out>
ChunkFn avx512_widen_short(bool check, bool sat, bool one_range);
// kernel_avx2.cpp.  By rows: mul32_rows (mul32), widen_rows (widen); sizeof(Out) <= 4.
template <Mul M, class In, class Out>
ChunkFn avx2_rows(bool check, bool sat);
// Periodic tables, mul32, sizeof(Out) <= 4; madd (8/16-bit inputs, tables hold (uint16)A): vpmaddwd, else vpmulld.
template <class In, class Out>
ChunkFn avx2_mul32_periodic(bool check, bool madd);
// Periodic tables, widen, every s >= 32 (tables as for avx512_widen_periodic with high).
template <class In, class Out>
ChunkFn avx2_widen_periodic(bool check, bool sat);
// int32 -> 8-bit NCHW rows of 8 <= inner < 64: avx512_widen_short's tables, walked row segment by row segment
// (each with its channel's parameters broadcast); one_range: every channel has the same [lo, hi] (j.lo[0], j.hi[0]).
// Saves y's old bytes under keep_out (j.save).  shift: some channel's s - 32 is not 0 (else no per-lane vpsravd).
template <class Out>
ChunkFn avx2_widen_short(bool check, bool sat, bool one_range, bool shift);
// int32 -> 8-bit or int16 -> int16, channel-last (inner == 1, channels % 8 == 0), widen, every s >= 32: per-channel
// tables (j.a int32 A, j.b B split per 8 channels into even then odd, j.s32 s - 32, j.xk for int16, j.lo / j.hi In);
// one_range: every channel has the same [lo, hi] (min/max in registers), else the check reads j.range32 (int32
// inputs: j.lo and range32's widths).  Saves y's
// old bytes under keep_out (j.save).
template <class In, class Out>
ChunkFn avx2_widen_pixels(bool check, bool sat, bool one_range);
// avx2_widen_pixels<int32_t, Out>; shift: some channel's t = s - 32 is not 0 (else no per-lane vpsravd).
template <class Out>
ChunkFn avx2_widen_pixels_bytes(bool check, bool sat, bool one_range, bool shift);
// int16 -> int16 channel-last (channels % 8 == 0) where every channel admits input_shift_16: avx2_widen_pixels' tables
// with xk = 16 (the last group where channels % 16 == 8, the scalar formula) and j.pixel_words (the group pairs).
template <class Out>
ChunkFn avx2_widen_pixels_words(bool check, bool sat, bool one_range);
#endif

#if FXBN_NEON_DISPATCH
// kernel_neon.cpp (aarch64).  mul32 and widen (sizeof(Out) <= 4), by rows and with periodic tables (as apply_typed
// builds them on aarch64: one plain entry per element); nullptr for mul64.
template <Mul M, class In, class Out>
ChunkFn neon_rows(bool check, bool sat);
template <Mul M, class In, class Out>
ChunkFn neon_periodic(bool check, bool sat);
#endif

// ------------------------------------------------------------------------------------------------ 8-bit template
// 8-bit -> 8-bit layers in periodic mode (channel-last): kernel_byte.cpp finds, per channel, the parameters of one
// fixed sequence of 16-bit lane instructions and keeps them only when that sequence, evaluated by byte_template on
// EVERY input of the channel's range (at most 256), gives the kernel's proven output clamp((A*x + B) >> s, qmin,
// qmax) -- an exhaustive check is a proof, whatever the search did.  Channels without verified parameters keep the
// exact scalar formula (the bodies fix their elements up after the vector loop).
struct ByteLane {
  uint16_t m = 0, p = 0, n = 0, sm = 0;  // vpmulhuw multiplier, vpaddw addend, vpsubusw subtrahend, shift multiplier
  uint8_t flip = 0;                      // x ^ flip: 0x00 / 0xFF (uint8 input), 0x80 / 0x7F (int8 input)
};

// One lane of the SIMD bodies, instruction by instruction (the QF_BV lemma ``byte_template`` models the same
// instructions with their lane structure): xb is the input's bit pattern; ob = 0x80 for int8 outputs, else 0.
FXBN_INLINE uint8_t byte_template(const ByteLane& l, uint8_t xb, uint8_t qlo, uint8_t qhi, uint8_t ob) {
  const uint32_t w = static_cast<uint32_t>(static_cast<uint8_t>(xb ^ l.flip)) << 8;  // vpxor, vpunpck[lh]bw(0, x)
  const uint32_t u = (w * l.m) >> 16;                                                // vpmulhuw
  const uint32_t a = (u + l.p) & 0xFFFFu;                                            // vpaddw (mod 2^16)
  const uint32_t v = a > l.n ? a - l.n : 0;                                          // vpsubusw
  const uint32_t q = (v * l.sm) >> 16;                                               // vpmulhuw
  const int32_t t = static_cast<int16_t>(static_cast<uint16_t>(q));                  // vpackuswb reads signed words
  uint32_t b = t < 0 ? 0u : t > 255 ? 255u : static_cast<uint32_t>(t);
  b = b < qlo ? qlo : b;                                                             // vpmaxub
  b = b > qhi ? qhi : b;                                                             // vpminub
  return static_cast<uint8_t>(b ^ ob);                                               // vpxor (int8 out)
}

// The byte bodies' tables: per W-element block of the period (W = 32 AVX2, 64 AVX-512), W bytes each of flip,
// lo, hi (the input range, In-typed), then W/2 words each of m, p, n, sm for the low unpacked half and the high one
// (m_lo, m_hi, p_lo, p_hi, n_lo, n_hi, sm_lo, sm_hi): word k of a low half is element 16*(k/8) + k%8 of the block,
// of a high half element 16*(k/8) + 8 + k%8 (the order vpunpck[lh]bw leave and vpackuswb restores).
constexpr int64_t kByteTabVectors = 11;

struct ByteJob {
  const uint8_t* tab;
  int64_t period;              // elements, a multiple of 64
  int64_t channels, inner;     // element i belongs to channel (i / inner) % channels
  uint8_t qlo, qhi;            // qmin, qmax as biased output bytes (+ ob)
  const int64_t* a;            // exact formula per channel (tails and channels without a template)
  const int64_t* b;
  const int64_t* s;
  const int64_t* lo;
  const int64_t* hi;
  int64_t qmin, qmax;
  const int64_t* fix;          // (period offset, channel) of the elements whose channel has no template, ascending
  int64_t nfix;
  const uint8_t* lut;          // per channel, 256 output bytes by input bits: the exact formula (fix-ups)
  // The instructions the bodies may leave out, each an identity on the verified parameters (byte_template's model
  // keeps them): flip: some lane has flip != 0 (else no vpxor); sub: some lane has n != 0 (else no vpsubusw);
  // clamp: [qlo, qhi] is not [0, 255] (else no vpmaxub / vpminub: vpackuswb already gives bytes in [0, 255]).
  bool flip, sub, clamp;
  // By-row mode (NCHW rows: one channel per row of `inner` elements): the verified lane of each channel (valid
  // where lane_ok), broadcast in registers for its rows; rows of other channels take lut.
  const ByteLane* lanes;
  const uint8_t* lane_ok;
};

// Elements [pos, end) by the exact formula (tails): returns whether one is out of range.
template <class In, class Out, bool Check>
FXBN_INLINE bool byte_scalar(const ByteJob& bj, const In* xs, Out* ys, int64_t pos, int64_t end) {
  bool bad = false;
  for (; pos < end; ++pos) {
    const int64_t c = (pos / bj.inner) % bj.channels;
    const In v = xs[pos];
    if constexpr (Check) bad |= (v < bj.lo[c]) | (v > bj.hi[c]);
    ys[pos] = static_cast<Out>(fixed_point<Mul::mul64, In>(v, bj.a[c], bj.b[c], bj.s[c], bj.qmin, bj.qmax));
  }
  return bad;
}

// The elements in [begin, end) of channels without a template: the exact formula's outputs, tabulated.
template <class In, class Out>
FXBN_INLINE void byte_fixups(const ByteJob& bj, const In* xs, Out* ys, int64_t begin, int64_t end) {
  if (bj.nfix == 0 || begin >= end) return;
  const uint8_t* const x8 = reinterpret_cast<const uint8_t*>(xs);
  uint8_t* const y8 = reinterpret_cast<uint8_t*>(ys);
  for (int64_t base = begin / bj.period * bj.period; base < end; base += bj.period) {
    for (int64_t k = 0; k < bj.nfix; ++k) {
      const int64_t pos = base + bj.fix[2 * k];
      if (pos < begin) continue;
      if (pos >= end) break;
      y8[pos] = bj.lut[bj.fix[2 * k + 1] * 256 + x8[pos]];
    }
  }
}

// Per-channel template search and exhaustive check (kernel_byte.cpp).  lo/hi: the channel ranges within In.
// Returns, per channel, whether verified parameters were found; lanes[c] is left zero where not.
std::vector<bool> byte_template_search(bool in_signed, bool out_signed, int64_t channels, const int64_t* a,
                                       const int64_t* b, const int32_t* s, const int64_t* lo, const int64_t* hi,
                                       int64_t qmin, int64_t qmax, std::vector<ByteLane>& lanes);
// The exhaustive check alone: whether lane gives the exact formula's output on every x in [lo, hi].
bool byte_template_check(const ByteLane& lane, bool in_signed, bool out_signed, int64_t a, int64_t b, int32_t s,
                         int64_t lo, int64_t hi, int64_t qmin, int64_t qmax);

// The cached plan's job for this layout (built on first use; kernel_byte.cpp), nullptr when no channel has verified
// parameters or the period is too long; *check: some channel's range is narrower than In.
const ByteJob* byte_plan_job(KernelCache* cache, bool in_signed, bool out_signed, int64_t channels, int64_t inner,
                             const KernelParams& p, bool* check);
// By-row mode (width 0 in the cache: no tables, per-channel lanes): nullptr when no channel has verified parameters.
const ByteJob* byte_rows_job(KernelCache* cache, bool in_signed, bool out_signed, int64_t channels, int64_t inner,
                             const KernelParams& p, bool* check);

#if FXBN_X86_DISPATCH
// kernel_avx2.cpp: the byte bodies (Job::a points to a ByteJob; In, Out 8-bit).
// AVX2 with the ByteJob's flags (flip, sub, clamp) and the period: resident tables when the period is 64 elements.
template <class In, class Out>
ChunkFn avx2_byte_body(const ByteJob& bj, bool check);
// AVX2 by rows (byte_rows_job).
template <class In, class Out>
ChunkFn avx2_byte_rows(bool check, bool clamp);
#endif

}  // namespace detail
}  // namespace fxbn
