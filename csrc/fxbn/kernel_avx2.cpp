// The hand-written AVX2 bodies: what the compiler does poorly without AVX-512.
//   mul32_rows  32-bit accumulator: vpmaddwd with the pair (A, 0) where |A| < 2^15 and the input is 8/16-bit (one
//               uop, where vpmulld is two on most AVX2 cores), else vpmulld; vpsrad; the narrowing packs.
//   mul32_periodic  the same with per-entry tables (channel-last layouts), vpsravd.
//   widen_periodic  widen_rows' arithmetic with per-entry tables when every s >= 32 (vpsravd by s - 32).
//   widen_rows  64-bit accumulator, 32-bit multiplier, s >= 32: vpmuldq on the even and odd lanes (AVX2 has no
//               vpmullq, vpsraq or 64-bit min/max, which the compiler emulates), the high dwords gathered with
//               vpshufd + vpblendd, vpsrad by s - 32 and 32-bit clamps; rows with s < 32 take the portable loop.
//               int32 inputs: the odd elements from a second load one element on, vpsravd.
//   widen_pixels  int32 -> 8-bit and int16 -> int16 channel-last, channels % 8 == 0, every s >= 32: 16 channels'
//               parameters in registers over runs of 16 pixels (no per-element table loads); the AVX-512 ISAs take
//               it where their own widen_pixels does not serve (channels % 64 != 0, per-channel ranges).  8-bit
//               outputs gather the high dwords with one vshufps, as widen_rows does, with the counts permuted to match
//               (no vpsravd where every s = 32 after widen_to_high).
//               A pixel split by a chunk's ends (2 threads) is walked by group pairs where channels % 16 == 0.
//   widen_pixels_words  int16 -> int16 channel-last where every channel admits input_shift_16 (xk = 16): a group
//               pair's 16 lanes from one 32-byte load (vpslld / vpand give x * 2^16), tables in the products' lane
//               order, one vshufps per 8 lanes and one vpshufb per 16 outputs (18 ops per 16 outputs, widen_pixels 22).
// Both narrow with saturating packs (vpackssdw / vpackusdw, vpacksswb / vpackuswb) and one cross-lane permute
// (vpermd / vpermq) per vector stored, then a min/max on the narrow lanes (dropped where [qmin, qmax] is a signed
// output type's whole range).  Picked by kernel.cpp's dispatch through avx2_rows, avx2_mul32_periodic and
// avx2_widen_periodic; -DFXBN_NO_DISPATCH and non-x86 builds compile this file to nothing.  The arithmetic of each
// body is a QF_BV lemma in verify/lemmas.py (avx2_mul32_rows, avx2_widen_rows, avx2_widen_rows_int32,
// avx2_widen_periodic, avx2_widen_pixels, avx2_widen_pixels_bytes, avx2_widen_pixels_words, avx2_pack_narrow).
#include "kernel_impl.hpp"

#include <cstring>

#if FXBN_X86_DISPATCH

namespace fxbn {
namespace detail {
namespace {

// 8 inputs widened to int32 lanes (reads exactly 8 elements).
template <class In>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i load8(const In* p) {
  if constexpr (std::is_same<In, int8_t>::value) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same<In, uint8_t>::value) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same<In, int16_t>::value) {
    return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {
    static_assert(std::is_same<In, int32_t>::value, "input type");
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
}

// Clamp bounds broadcast at every width the stores use.
struct Bounds {
  __m256i q32lo, q32hi, q16lo, q16hi, q8lo, q8hi;
};

FXBN_TARGET_AVX2 FXBN_INLINE Bounds bounds(int64_t qmin, int64_t qmax) {
  return {_mm256_set1_epi32(static_cast<int32_t>(qmin)), _mm256_set1_epi32(static_cast<int32_t>(qmax)),
          _mm256_set1_epi16(static_cast<int16_t>(qmin)), _mm256_set1_epi16(static_cast<int16_t>(qmax)),
          _mm256_set1_epi8(static_cast<char>(qmin)), _mm256_set1_epi8(static_cast<char>(qmax))};
}

// Four vectors of int32 lanes (elements 0-7, 8-15, 16-23, 24-31) narrowed to 32 bytes in order: the 8-bit
// packs of store_lanes and widen_pixels (``avx2_pack_narrow``).
template <class Out, bool Sat>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i pack32(__m256i h0, __m256i h1, __m256i h2, __m256i h3, const Bounds& q) {
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i w01 = _mm256_packs_epi32(h0, h1), w23 = _mm256_packs_epi32(h2, h3);
  __m256i v;
  if constexpr (std::is_signed<Out>::value) {
    v = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order);
    if constexpr (!Sat) v = _mm256_min_epi8(_mm256_max_epi8(v, q.q8lo), q.q8hi);
  } else {
    v = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), order);
    v = _mm256_min_epu8(_mm256_max_epu8(v, q.q8lo), q.q8hi);
  }
  return v;
}

// Two vectors of int32 lanes (elements 0-7, 8-15) narrowed to 16 16-bit lanes in order (vpackssdw / vpackusdw,
// vpermq, word min/max): store_lanes' 16-bit step and widen_pixels' int16 outputs (``avx2_pack_narrow``).
template <class Out, bool Sat>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i pack16(__m256i h0, __m256i h1, const Bounds& q) {
  __m256i v;
  if constexpr (std::is_signed<Out>::value) {
    v = _mm256_permute4x64_epi64(_mm256_packs_epi32(h0, h1), 0xD8);
    if constexpr (!Sat) v = _mm256_min_epi16(_mm256_max_epi16(v, q.q16lo), q.q16hi);
  } else {
    v = _mm256_permute4x64_epi64(_mm256_packus_epi32(h0, h1), 0xD8);
    v = _mm256_min_epu16(_mm256_max_epu16(v, q.q16lo), q.q16hi);
  }
  return v;
}

// Stores elements [i, n) in whole blocks from lanes8(k), the int32 lanes (before the clamp) of elements k..k+7:
// 8-bit Out 32 at a time (vpackssdw, vpacksswb / vpackuswb, vpermd restoring the order the per-128-bit-lane packs
// interleave, byte min/max), 16-bit Out 16 at a time (vpackssdw / vpackusdw, vpermq, word min/max), int32 8 at a
// time (dword min/max).  The packs saturate to Out's range, which a clamp to [qmin, qmax] within it then narrows
// (``avx2_pack_narrow``).  Sat: [qmin, qmax] is signed Out's whole range, the min/max are dropped.  Returns the first
// element not stored.
template <class Out, bool Sat, class Lanes8>
FXBN_TARGET_AVX2 FXBN_INLINE int64_t store_lanes(Out* y, int64_t i, int64_t n, const Lanes8& lanes8, const Bounds& q) {
  if constexpr (sizeof(Out) == 1) {
    for (; i + 32 <= n; i += 32) {
      const __m256i v = pack32<Out, Sat>(lanes8(i), lanes8(i + 8), lanes8(i + 16), lanes8(i + 24), q);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), v);
    }
  } else if constexpr (sizeof(Out) == 2) {
    for (; i + 16 <= n; i += 16) {
      const __m256i h0 = lanes8(i), h1 = lanes8(i + 8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), pack16<Out, Sat>(h0, h1, q));
    }
  } else {
    static_assert(sizeof(Out) == 4, "output type");
    for (; i + 8 <= n; i += 8) {
      const __m256i v = _mm256_min_epi32(_mm256_max_epi32(lanes8(i), q.q32lo), q.q32hi);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), v);
    }
  }
  return i;
}

FXBN_TARGET_AVX2 FXBN_INLINE __m256i ld(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// widen_rows' 8-bit stores from high8(k), the unshifted high dwords of elements k..k+7 in the order vshufps leaves
// them ([0, 2, 1, 3] in each 128-bit lane), 32 at a time: the shift by t = s - 32 (Shift: kShiftNone for t = 0,
// kShiftWords vpsraw after vpackssdw where t <= 8 (int8) / 7 (uint8): a value saturated to int16 and shifted by such
// t still saturates at the 8-bit pack, kShiftDwords vpsravd before it otherwise), the packs, vpermd as pack32's,
// and one vpshufb putting each dword's bytes back in order (``avx2_widen_rows_bytes``).  Returns the first element
// not stored.
constexpr int kShiftNone = 0, kShiftWords = 1, kShiftDwords = 2;

template <class Out, bool Sat, int Shift, class High8>
FXBN_TARGET_AVX2 FXBN_INLINE int64_t store_bytes_shuffled(Out* y, Out* save, bool streaming, int64_t i, int64_t n,
                                                          const High8& high8, int32_t t, const Bounds& q,
                                                          bool stream_y = false) {
  static_assert(sizeof(Out) == 1, "8-bit outputs");
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i bytes = _mm256_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15,
                                         0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
  const __m256i t32 = _mm256_set1_epi32(t);
  const __m128i t16 = _mm_cvtsi32_si128(t);
  for (; i + 32 <= n; i += 32) {
    __m256i h0 = high8(i), h1 = high8(i + 8), h2 = high8(i + 16), h3 = high8(i + 24);
    if constexpr (Shift == kShiftDwords) {
      h0 = _mm256_srav_epi32(h0, t32);
      h1 = _mm256_srav_epi32(h1, t32);
      h2 = _mm256_srav_epi32(h2, t32);
      h3 = _mm256_srav_epi32(h3, t32);
    }
    __m256i w01 = _mm256_packs_epi32(h0, h1), w23 = _mm256_packs_epi32(h2, h3);
    if constexpr (Shift == kShiftWords) {
      w01 = _mm256_sra_epi16(w01, t16);
      w23 = _mm256_sra_epi16(w23, t16);
    }
    __m256i v = std::is_signed<Out>::value ? _mm256_packs_epi16(w01, w23) : _mm256_packus_epi16(w01, w23);
    v = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, order), bytes);
    if constexpr (std::is_signed<Out>::value) {
      if constexpr (!Sat) v = _mm256_min_epi8(_mm256_max_epi8(v, q.q8lo), q.q8hi);
    } else {
      v = _mm256_min_epu8(_mm256_max_epu8(v, q.q8lo), q.q8hi);
    }
    // keep_out: y's old bytes saved here, a load and a store in this ALU-bound loop instead of a copy pass;
    // streaming: non-temporal (read back only after a violation: no read for ownership, no cache lines taken)
    if (save != nullptr) {
      if (streaming) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(save + i), ld(y + i));
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(save + i), ld(y + i));
      }
    }
    if (stream_y) {  // y + i 32-byte aligned (the caller's), no save: non-temporal (Job::stream_out)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(y + i), v);
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), v);
    }
  }
  return i;
}


FXBN_TARGET_AVX2 FXBN_INLINE int32_t reduce_min(__m256i v) {
  __m128i m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0xB1));
  return _mm_cvtsi128_si32(m);
}

FXBN_TARGET_AVX2 FXBN_INLINE int32_t reduce_max(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xB1));
  return _mm_cvtsi128_si32(m);
}

FXBN_TARGET_AVX2 FXBN_INLINE uint32_t reduce_max_u(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

// Whether some element of x[0, n) (8/16-bit In) lies outside [lo, hi]: vpminsw / vpmaxsw (vpminsb / vpmaxsb,
// vpminub / vpmaxub) on the loaded vectors as they are, 2 ops per 16 (32) elements where the same check on the
// int32 lanes the arithmetic widens them to takes 2 per 8.
template <class In>
FXBN_TARGET_AVX2 FXBN_INLINE bool narrow_out_of_range(const In* x, int64_t n, In lo, In hi) {
  static_assert(sizeof(In) <= 2, "8/16-bit inputs");
  constexpr int64_t W = 32 / sizeof(In);
  __m256i mn = _mm256_setzero_si256(), mx = mn;
  int64_t i = 0;
  if (n >= W) {
    mn = mx = ld(x);
    for (i = W; i + W <= n; i += W) {
      const __m256i v = ld(x + i);
      if constexpr (std::is_same<In, int16_t>::value) {
        mn = _mm256_min_epi16(mn, v);
        mx = _mm256_max_epi16(mx, v);
      } else if constexpr (std::is_same<In, int8_t>::value) {
        mn = _mm256_min_epi8(mn, v);
        mx = _mm256_max_epi8(mx, v);
      } else {
        mn = _mm256_min_epu8(mn, v);
        mx = _mm256_max_epu8(mx, v);
      }
    }
  }
  bool bad = false;
  if (i >= W) {
    __m256i out;
    if constexpr (std::is_same<In, int16_t>::value) {
      out = _mm256_or_si256(_mm256_cmpgt_epi16(_mm256_set1_epi16(lo), mn),
                            _mm256_cmpgt_epi16(mx, _mm256_set1_epi16(hi)));
    } else if constexpr (std::is_same<In, int8_t>::value) {
      out = _mm256_or_si256(_mm256_cmpgt_epi8(_mm256_set1_epi8(lo), mn), _mm256_cmpgt_epi8(mx, _mm256_set1_epi8(hi)));
    } else {  // unsigned: mn >= lo exactly where max(mn, lo) == mn
      const __m256i lov = _mm256_set1_epi8(static_cast<char>(lo)), hiv = _mm256_set1_epi8(static_cast<char>(hi));
      out = _mm256_andnot_si256(_mm256_and_si256(_mm256_cmpeq_epi8(_mm256_max_epu8(mn, lov), mn),
                                                 _mm256_cmpeq_epi8(_mm256_min_epu8(mx, hiv), mx)),
                                _mm256_set1_epi8(-1));
    }
    bad = !_mm256_testz_si256(out, out);
  }
  for (; i < n; ++i) bad |= (x[i] < lo) | (x[i] > hi);
  return bad;
}

// 32-bit accumulator by rows: acc = A*x + B (mod 2^32), vpsrad by s (<= 31), clamp.  vpmaddwd reads each int32 lane
// as the 16-bit pair (lo, hi) and sums lo*a_lo + hi*a_hi: with the pair (A, 0) that is lo*A, the exact x*A for an
// 8/16-bit input (hi is the sign extension of lo and is multiplied by 0) -- the dp_periodic arithmetic.
template <class In, class Out, bool Check, bool Sat>
FXBN_TARGET_AVX2 bool mul32_rows(const Job& j, int64_t begin, int64_t end) {
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int32_t* const B = static_cast<const int32_t*>(j.b);
  const int32_t* const S = static_cast<const int32_t*>(j.s);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const Bounds q = bounds(j.qmin, j.qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.inner;
    const int64_t off = pos - r * j.inner;
    const int64_t n = std::min(j.inner - off, end - pos);
    const int64_t c = r % j.channels;
    const In* x = xs + pos;
    Out* y = ys + pos;
    const int32_t a = A[c];
    const __m256i bv = _mm256_set1_epi32(B[c]);
    const __m128i cnt = _mm_cvtsi32_si128(S[c]);
    __m256i mn = _mm256_set1_epi32(std::numeric_limits<int32_t>::max());
    __m256i mx = _mm256_set1_epi32(std::numeric_limits<int32_t>::min());
    int64_t i;
    if (sizeof(In) <= 2 && a > -32768 && a < 32768) {
      const __m256i av = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint16_t>(a)));  // the pair (A, 0)
      const auto lanes8 = [&](int64_t k) FXBN_TARGET_AVX2 {
        const __m256i v = load8(x + k);
        if constexpr (Check) {
          mn = _mm256_min_epi32(mn, v);
          mx = _mm256_max_epi32(mx, v);
        }
        return _mm256_sra_epi32(_mm256_add_epi32(_mm256_madd_epi16(v, av), bv), cnt);
      };
      i = store_lanes<Out, Sat>(y, 0, n, lanes8, q);
    } else {
      const __m256i av = _mm256_set1_epi32(a);
      const auto lanes8 = [&](int64_t k) FXBN_TARGET_AVX2 {
        const __m256i v = load8(x + k);
        if constexpr (Check) {
          mn = _mm256_min_epi32(mn, v);
          mx = _mm256_max_epi32(mx, v);
        }
        return _mm256_sra_epi32(_mm256_add_epi32(_mm256_mullo_epi32(v, av), bv), cnt);
      };
      i = store_lanes<Out, Sat>(y, 0, n, lanes8, q);
    }
    bool bad = false;
    if constexpr (Check) bad = (reduce_min(mn) < LO[c]) | (reduce_max(mx) > HI[c]);
    for (; i < n; ++i) {  // tail (< 32 elements)
      const In v = x[i];
      if constexpr (Check) bad |= (v < LO[c]) | (v > HI[c]);
      y[i] = static_cast<Out>(fixed_point<Mul::mul32, In>(v, a, B[c], S[c], j.qmin, j.qmax));
    }
    if (bad) return true;
    pos += n;
  }
  return false;
}

// 64-bit accumulator, 32-bit multiplier, by rows.  Rows with s >= 32 (after widen_to_high, which also sets the input
// shift xk): x * 2^xk (vpsllvd), P = vpmuldq(x, A) + B on the even lanes and on the odd ones (vpsrlq by 32 brings
// them to the low dwords vpmuldq reads), floor(P / 2^32) is P's high dword: vpshufd 0xF5 moves the even products'
// high dwords down, vpblendd 0xAA takes the odd products' in place; then vpsrad by s - 32 ((P >> 32) >> (s - 32) is
// P >> s) and the 32-bit clamp of the store.  Rows with s < 32 run the portable loop (AVX2 has no 64-bit arithmetic
// shift or min/max).  8-bit outputs: 32-byte aligned stores from each row's y + head on (tests/
// test_rows_aligned_stores.py), non-temporal without a save on large tensors (Job::stream_out).
template <class In, class Out, bool Check, bool Sat>
FXBN_TARGET_AVX2 bool widen_rows(const Job& j, int64_t begin, int64_t end) {
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int64_t* const B = static_cast<const int64_t*>(j.b);
  const int64_t* const S = static_cast<const int64_t*>(j.s);
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const Bounds q = bounds(j.qmin, j.qmax);
  Out* const saves = static_cast<Out*>(j.save);
  bool flagged = false;
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.inner;
    const int64_t off = pos - r * j.inner;
    const int64_t n = std::min(j.inner - off, end - pos);
    const int64_t c = r % j.channels;
    const int64_t s = S[c];
    Out* const save = saves != nullptr ? saves + pos : nullptr;
    if (s < 32) {  // xk is 0 here (widen_to_high sets s = 32 whenever it scales)
      if (save != nullptr) std::memcpy(save, ys + pos, static_cast<size_t>(n) * sizeof(Out));
      if (ByRow<Mul::widen, In, Out, Check>::run(j, pos, pos + n)) {
        if (save == nullptr) return true;
        flagged = true;
      }
      pos += n;
      continue;
    }
    const In* x = xs + pos;
    Out* y = ys + pos;
    const __m256i av = _mm256_set1_epi64x(A[c]);  // vpmuldq reads the low 32 bits of each 64-bit lane
    const __m256i bv = _mm256_set1_epi64x(B[c]);
    const __m256i xkv = _mm256_set1_epi32(XK[c]);
    const __m256i cnt = _mm256_set1_epi32(static_cast<int32_t>(s - 32));  // vpsravd: one uop, vpsrad by xmm two
    __m256i mn = _mm256_set1_epi32(std::numeric_limits<int32_t>::max());
    __m256i mx = _mm256_set1_epi32(std::numeric_limits<int32_t>::min());
    // P = A*x + B of the even elements of x[k..k+7] (pe) and of the odd ones (po), 64-bit lanes
    const auto products = [&](int64_t k, __m256i& pe, __m256i& po) FXBN_TARGET_AVX2 {
      __m256i v = load8(x + k);
      __asm__("" : "+v"(v));  // one load in a register, not three folded into vpminsd, vpmaxsd and vpmuldq
      if constexpr (Check && sizeof(In) == 4) {  // 8/16-bit inputs: narrow_out_of_range
        mn = _mm256_min_epi32(mn, v);
        mx = _mm256_max_epi32(mx, v);
      }
      __m256i vo;
      if constexpr (sizeof(In) == 4) {
        vo = load8(x + k + 1);  // int32: the odd elements from a second load (x[k + 8] read: see lim)
      } else {
        v = _mm256_sllv_epi32(v, xkv);
        vo = _mm256_srli_epi64(v, 32);
      }
      pe = _mm256_add_epi64(_mm256_mul_epi32(v, av), bv);
      po = _mm256_add_epi64(_mm256_mul_epi32(vo, av), bv);
    };
    // int32: the odd-element loads read x[k + 8]: the tensor's last 32-block (and its tail) go to the scalar tail
    const int64_t lim = sizeof(In) == 4 ? std::min(n, j.total - pos - 1) : n;
    int64_t i;
    if constexpr (sizeof(Out) == 1) {
      // vshufps takes the high dwords of both products in one op (elements [0, 2, 1, 3] per 128-bit lane)
      const auto high8 = [&](int64_t k) FXBN_TARGET_AVX2 {
        __m256i pe, po;
        products(k, pe, po);
        return _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(pe), _mm256_castsi256_ps(po), 0xDD));
      };
      const int32_t t = static_cast<int32_t>(s - 32);
      // the blocks of [i0, i1) (shift kind by t), saving y's old bytes to sv (non-temporal where nt)
      const auto blocks = [&](int64_t i0, int64_t i1, Out* sv, bool nt, bool ny)
                              FXBN_TARGET_AVX2 __attribute__((always_inline)) {  // inlined: else mn/mx live in memory
        if (t == 0) return store_bytes_shuffled<Out, Sat, kShiftNone>(y, sv, nt, i0, i1, high8, t, q, ny);
        if (t <= (std::is_signed<Out>::value ? 8 : 7)) {
          return store_bytes_shuffled<Out, Sat, kShiftWords>(y, sv, nt, i0, i1, high8, t, q, ny);
        }
        return store_bytes_shuffled<Out, Sat, kShiftDwords>(y, sv, nt, i0, i1, high8, t, q, ny);
      };
      // 32-byte aligned stores from y + head on (a store split across two cache lines costs, and a save buffer as
      // aligned as y (run_chunks_keeping) then takes aligned non-temporal stores): one unaligned block [0, 32)
      // saving its old bytes, the old bytes of [32, head + 32) saved, the aligned block at head (it rewrites
      // [head, 32) with the same outputs, so it must not save them again), then the rest from head + 32
      i = 0;
      const int64_t head = static_cast<int64_t>((uintptr_t{0} - reinterpret_cast<uintptr_t>(y)) & 31);
      if (head != 0 && lim >= head + 64) {
        blocks(0, 32, save, false, false);
        if (save != nullptr) std::memcpy(save + 32, y + 32, static_cast<size_t>(head));
        blocks(head, head + 32, nullptr, false, false);
        i = head + 32;
      }
      const bool streaming =
          save != nullptr && j.save_streaming && (reinterpret_cast<uintptr_t>(save + i) & 31) == 0;
      // y itself non-temporal only without a save (which reads y's lines into the cache just before)
      const bool stream_y = j.stream_out && save == nullptr && (reinterpret_cast<uintptr_t>(y + i) & 31) == 0;
      i = blocks(i, lim, save, streaming, stream_y);
    } else {
      const auto lanes8 = [&](int64_t k) FXBN_TARGET_AVX2 {
        __m256i pe, po;
        products(k, pe, po);
        const __m256i h = _mm256_blend_epi32(_mm256_shuffle_epi32(pe, 0xF5), po, 0xAA);
        return _mm256_srav_epi32(h, cnt);
      };
      if (save != nullptr) std::memcpy(save, y, static_cast<size_t>(n) * sizeof(Out));  // not taken (8-bit only)
      i = 0;
      if constexpr (sizeof(In) == 2 && sizeof(Out) == 2) {
        if (XK[c] == 16) {  // input_shift_16: x * 2^16 is vpunpck[lh]wd with zero (``avx2_widen_rows_words``)
          const __m256i zero = _mm256_setzero_si256();
          const auto high = [&](__m256i v) FXBN_TARGET_AVX2 {
            const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(v, av), bv);
            const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(v, 32), av), bv);
            return _mm256_srav_epi32(_mm256_blend_epi32(_mm256_shuffle_epi32(pe, 0xF5), po, 0xAA), cnt);
          };
          for (; i + 16 <= lim; i += 16) {
            // elements 0-3 | 8-11 and 4-7 | 12-15: vpackssdw's per-lane order puts them back, no vpermq
            const __m256i raw = ld(x + i);
            const __m256i h0 = high(_mm256_unpacklo_epi16(zero, raw)), h1 = high(_mm256_unpackhi_epi16(zero, raw));
            __m256i v;
            if constexpr (std::is_signed<Out>::value) {
              v = _mm256_packs_epi32(h0, h1);
              if constexpr (!Sat) v = _mm256_min_epi16(_mm256_max_epi16(v, q.q16lo), q.q16hi);
            } else {
              v = _mm256_min_epu16(_mm256_max_epu16(_mm256_packus_epi32(h0, h1), q.q16lo), q.q16hi);
            }
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), v);
          }
        }
      }
      i = store_lanes<Out, Sat>(y, i, lim, lanes8, q);
    }
    bool bad = false;
    if constexpr (Check) {
      if constexpr (sizeof(In) == 4) {
        bad = (reduce_min(mn) < LO[c]) | (reduce_max(mx) > HI[c]);
      } else {
        (void)mn, (void)mx;
        bad = narrow_out_of_range(x, n, LO[c], HI[c]);
      }
    }
    if (save != nullptr && sizeof(Out) == 1) std::memcpy(save + i, y + i, static_cast<size_t>(n - i) * sizeof(Out));
    for (; i < n; ++i) {  // tail (< 32 elements; at most 32 at the end of the tensor)
      const In v = x[i];
      if constexpr (Check) bad |= (v < LO[c]) | (v > HI[c]);
      y[i] = static_cast<Out>(fixed_point_xk(v, XK[c], A[c], B[c], s, j.qmin, j.qmax));
    }
    if (bad) {
      if (save == nullptr) return true;
      flagged = true;
    }
    pos += n;
  }
  if (j.stream_out) _mm_sfence();  // the non-temporal stores to y, before the caller reads y or another thread does
  return flagged;
}

// int32 -> 8-bit NCHW rows of 8 <= inner < 64 (kernel.cpp apply_short; every channel s >= 32 after widen_to_high):
// the flat range walked 8 elements per vector as widen_rows walks a row, the current channel's A, B, s - 32 (and
// lo2, w2) broadcast in registers (per-channel tables: j.short_params B, A, s - 32 packed in 16 bytes per channel, so
// that a boundary's broadcasts index one table; j.lo / j.hi int32, j.range32; j.a, j.b, j.s32 for the scalar tail).
// inner >= 8, so a vector holds at most one row boundary; the vector that reaches one (lane b = row_end - p,
// 1 <= b <= 8) takes the lanes >= b from the next channel's broadcasts (vpblendvb by the kShortMasks[b] masks: dwords
// in element order, qwords for the even / odd elements' B, dwords in vshufps 0xDD's order [0, 2, 1, 3] for s - 32),
// and the next channel becomes the current one.  Then widen_rows' int32 arithmetic with a per-lane vpsravd, and its
// 8-bit stores (store_bytes_shuffled, saving y's old bytes under keep_out) (``avx2_widen_short``).  The range check:
// with one [lo, hi] for every channel (OneRange) a vpminsd / vpmaxsd of every vector into two accumulators compared
// once per chunk, nothing blended; else widen_pixels' biased one-compare x - lo2 > w2 (signed; j.range32 per channel
// lo2 = lo - 2^31, w2 = (hi - lo) - 2^31, ``pixel_range_check``), lo2 and w2 blended like A.
// widen_short's blend masks for a row boundary at lane b (1..8; row 0 unused), all-ones where the lane takes the next
// channel: dwords j >= b (element order: A, lo2, w2), qwords i with 2i >= b (even elements' B), 2i + 1 >= b (odd
// elements' B), dwords in vshufps 0xDD's order [0, 2, 1, 3] per 128-bit lane (s - 32).
struct ShortMaskTable {
  alignas(32) int32_t m[9][32];
  constexpr ShortMaskTable() : m() {
    for (int b = 0; b <= 8; ++b) {
      for (int l = 0; l < 8; ++l) {
        const int shuffled = (l & 4) + ((l & 3) == 1 ? 2 : (l & 3) == 2 ? 1 : (l & 3));
        m[b][l] = l >= b ? -1 : 0;
        m[b][8 + l] = 2 * (l / 2) >= b ? -1 : 0;
        m[b][16 + l] = 2 * (l / 2) + 1 >= b ? -1 : 0;
        m[b][24 + l] = shuffled >= b ? -1 : 0;
      }
    }
  }
};
constexpr ShortMaskTable kShortMaskTable{};
constexpr const int32_t (&kShortMasks)[9][32] = kShortMaskTable.m;

struct ShortChannel8 {
  __m256i a, b, t, lo2, w2;  // one channel's A (dwords), B (qwords), s - 32, biased lo and width broadcast
};

// The unshifted-then-shifted high dwords of 8 elements at x in vshufps 0xDD's order, with per-lane parameters (a / ao:
// A of the even / odd elements in each qword's low dword; be / bo: B of the even / odd elements; t in the shuffled
// order; lo2, w2 in element order); the range check: OneRange the lanes into mn / mx, else flagged into bad.
template <bool Check, bool OneRange, bool Shift>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i short_lanes8(const int32_t* x, __m256i a, __m256i ao, __m256i be, __m256i bo,
                                                  __m256i t, __m256i lo2, __m256i w2, __m256i& bad, __m256i mn,
                                                  __m256i& mx) {
  __m256i v = load8(x);
  __asm__("" : "+v"(v));
  if constexpr (Check && OneRange) {
    mx = _mm256_max_epu32(mx, _mm256_sub_epi32(v, mn));  // mn: lo in every lane
  } else if constexpr (Check) {
    bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(_mm256_sub_epi32(v, lo2), w2));
  }
  (void)lo2, (void)w2, (void)bad, (void)mn, (void)mx;
  const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(v, a), be);
  const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(load8(x + 1), ao), bo);
  const __m256i h = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(pe), _mm256_castsi256_ps(po), 0xDD));
  if constexpr (!Shift) {  // every channel's s - 32 is 0: the vpsravd by 0 dropped
    (void)t;
    return h;
  }
  return _mm256_srav_epi32(h, t);
}

// vpblendvb (b's byte where bit 7 of mask's byte is set, else a's), written out: GCC folds _mm256_blendv_epi8 into a
// select whose expansion first recomputes a loaded mask with vpcmpgtb against zero (one more op per blend)
FXBN_TARGET_AVX2 FXBN_INLINE __m256i blend_bytes(__m256i a, __m256i b, __m256i mask) {
  __m256i r;
  __asm__("vpblendvb %3, %2, %1, %0" : "=x"(r) : "x"(a), "xm"(b), "x"(mask));
  return r;
}

template <class In, class Out, bool Check, bool OneRange, bool Sat, bool Shift>
FXBN_TARGET_AVX2 bool widen_short(const Job& j, int64_t begin, int64_t end) {
  static_assert(std::is_same<In, int32_t>::value && sizeof(Out) == 1, "int32 -> 8-bit");
  const int32_t* const xs = static_cast<const int32_t*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int64_t* const B = static_cast<const int64_t*>(j.b);
  const int32_t* const T = static_cast<const int32_t*>(j.s32);
  const int32_t* const LO = static_cast<const int32_t*>(j.lo);
  const int32_t* const HI = static_cast<const int32_t*>(j.hi);
  const int32_t* const R = j.range32;  // !OneRange: lo2 per channel, then w2
  const Bounds q = bounds(j.qmin, j.qmax);
  const int64_t inner = j.inner, channels = j.channels;
  int64_t c = (begin / inner) % channels;
  int64_t row_end = (begin / inner + 1) * inner;  // flat index where channel c's row ends
  const int64_t* const P = j.short_params;  // channel ch: B at P[2 ch], A and s - 32 the dwords of P[2 ch + 1]
  // ch: P's entry (0..channels), chw: the channel (ch, or 0 for ch = channels)
  const auto broadcast = [&](int64_t ch, int64_t chw) FXBN_TARGET_AVX2 {
    const int32_t* const at = reinterpret_cast<const int32_t*>(P + 2 * ch + 1);
    ShortChannel8 r{_mm256_set1_epi32(at[0]), _mm256_set1_epi64x(P[2 * ch]), _mm256_set1_epi32(at[1]),
                    _mm256_setzero_si256(), _mm256_setzero_si256()};
    if constexpr (Check && !OneRange) {
      r.lo2 = _mm256_set1_epi32(R[chw]);
      r.w2 = _mm256_set1_epi32(R[channels + chw]);
    }
    (void)chw;
    return r;
  };
  ShortChannel8 cur = broadcast(c, c);
  __m256i bad = _mm256_setzero_si256();
  // OneRange: mn holds lo, mx the largest x - lo (mod 2^32, unsigned) of the chunk's vectors
  const __m256i mn = _mm256_set1_epi32(LO[0]);
  __m256i mx = _mm256_setzero_si256();
  const int32_t* x = xs + begin;
  Out* y = ys + begin;
  Out* const save = j.save != nullptr ? static_cast<Out*>(j.save) + begin : nullptr;
  const bool streaming = j.save_streaming && (reinterpret_cast<uintptr_t>(save) & 31) == 0;
  const auto high8 = [&](int64_t k) FXBN_TARGET_AVX2 {
    const int64_t p = begin + k;
    if (__builtin_expect(p + 8 < row_end, 1)) {
      return short_lanes8<Check, OneRange, Shift>(x + k, cur.a, cur.a, cur.b, cur.b, cur.t, cur.lo2, cur.w2, bad, mn, mx);
    }
    // lanes >= row_end - p (1..8) belong to the next channel, c + 1 (P's entry `channels` is channel 0's: the
    // broadcasts need no wrap; range32 is read at the wrapped index)
    const int64_t nc = c + 1;
    const int64_t ncw = nc == channels ? 0 : nc;
    const ShortChannel8 nx = broadcast(nc, ncw);
    const int32_t* const masks = kShortMasks[row_end - p];
    const __m256i m = ld(masks);
    const __m256i a = blend_bytes(cur.a, nx.a, m);
    constexpr bool kBlendRange = Check && !OneRange;
    const __m256i h = short_lanes8<Check, OneRange, Shift>(
        x + k, a, _mm256_srli_epi64(a, 32), blend_bytes(cur.b, nx.b, ld(masks + 8)),
        blend_bytes(cur.b, nx.b, ld(masks + 16)), Shift ? blend_bytes(cur.t, nx.t, ld(masks + 24)) : cur.t,
        kBlendRange ? blend_bytes(cur.lo2, nx.lo2, m) : cur.lo2, kBlendRange ? blend_bytes(cur.w2, nx.w2, m) : cur.w2,
        bad, mn, mx);
    cur = nx;
    c = ncw;
    row_end += inner;
    return h;
  };
  // the odd-element loads read x[k + 8]: the tensor's last 32-block (and its tail) go to the scalar tail
  const int64_t n = end - begin;
  const int64_t lim = std::min(n, j.total - begin - 1);
  int64_t i = store_bytes_shuffled<Out, Sat, kShiftNone>(y, save, streaming, 0, lim, high8, 0, q);
  bool flag = false;
  if constexpr (Check && OneRange) {
    // x in [lo, hi] exactly when x - lo <= hi - lo, unsigned (lo <= hi); no vector: mx = 0 flags nothing
    flag = reduce_max_u(mx) > static_cast<uint32_t>(HI[0]) - static_cast<uint32_t>(LO[0]);
  } else if constexpr (Check) {
    flag = !_mm256_testz_si256(bad, bad);
  }
  if (save != nullptr) std::memcpy(save + i, y + i, static_cast<size_t>(n - i));
  for (; i < n; ++i) {  // tail (< 32 elements; < 64 at the end of the tensor)
    const int64_t ch = ((begin + i) / inner) % channels;
    const int32_t v = x[i];
    if constexpr (Check) flag |= (v < LO[ch]) | (v > HI[ch]);
    y[i] = static_cast<Out>(fixed_point_xk(v, 0, A[ch], B[ch], int64_t{T[ch]} + 32, j.qmin, j.qmax));
  }
  return flag;
}

// 32-bit accumulator, periodic tables (channel-last layouts): per-entry A, B, s (int32) and lo, hi (In); the
// arithmetic of mul32_rows with per-lane operands (Madd: every table A is stored as (uint16)A, the pair (A, 0), for
// vpmaddwd; vpsravd by the per-entry s), the range check a per-lane compare OR-ed into one mask.
template <class In, class Out, bool Check, bool Madd>
FXBN_TARGET_AVX2 bool mul32_periodic(const Job& j, int64_t begin, int64_t end) {
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int32_t* const B = static_cast<const int32_t*>(j.b);
  const int32_t* const S = static_cast<const int32_t*>(j.s);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const Bounds q = bounds(j.qmin, j.qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.period;
    const int64_t off = pos - r * j.period;
    const int64_t n = std::min(j.period - off, end - pos);
    const In* x = xs + pos;
    Out* y = ys + pos;
    __m256i bad = _mm256_setzero_si256();
    const auto lanes8 = [&](int64_t k) FXBN_TARGET_AVX2 {
      const int64_t e = off + k;
      const __m256i v = load8(x + k);
      if constexpr (Check) {
        bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi32(load8(LO + e), v),
                                                   _mm256_cmpgt_epi32(v, load8(HI + e))));
      }
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A + e));
      const __m256i prod = Madd ? _mm256_madd_epi16(v, av) : _mm256_mullo_epi32(v, av);
      const __m256i acc = _mm256_add_epi32(prod, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + e)));
      return _mm256_srav_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(S + e)));
    };
    int64_t i = store_lanes<Out, false>(y, 0, n, lanes8, q);
    bool flag = Check && !_mm256_testz_si256(bad, bad);
    for (; i < n; ++i) {  // tail (< 32 elements)
      const int64_t e = off + i;
      const In v = x[i];
      if constexpr (Check) flag |= (v < LO[e]) | (v > HI[e]);
      const int32_t a = Madd ? static_cast<int16_t>(static_cast<uint16_t>(A[e])) : A[e];
      y[i] = static_cast<Out>(fixed_point<Mul::mul32, In>(v, a, B[e], S[e], j.qmin, j.qmax));
    }
    if (flag) return true;
    pos += n;
  }
  return false;
}

// 64-bit accumulator, 32-bit multiplier, periodic tables, every s >= 32: the widen_rows arithmetic with per-entry
// operands in the table layout of the AVX-512 widen_periodic (apply_typed builds it): per 16-entry block, A (as
// int64) and B hold the even entries then the odd ones, so the even lanes of elements 0-7 of a block read qwords
// 0-3, of elements 8-15 qwords 4-7, and the odd lanes qwords 8-11 and 12-15; s32 = s - 32 per entry (vpsravd).
template <class In, class Out, bool Check, bool Sat>
FXBN_TARGET_AVX2 bool widen_periodic(const Job& j, int64_t begin, int64_t end) {
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int64_t* const As = static_cast<const int64_t*>(j.a);
  const int64_t* const Bs = static_cast<const int64_t*>(j.b);
  const int32_t* const S = static_cast<const int32_t*>(j.s32);
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const Bounds q = bounds(j.qmin, j.qmax);
  const int32_t qmin = static_cast<int32_t>(j.qmin), qmax = static_cast<int32_t>(j.qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.period;
    const int64_t off = pos - r * j.period;  // a multiple of 16 (see period_of)
    const int64_t n = std::min(j.period - off, end - pos);
    const In* x = xs + pos;
    Out* y = ys + pos;
    __m256i bad = _mm256_setzero_si256();
    const auto lanes8 = [&](int64_t k) FXBN_TARGET_AVX2 {
      const int64_t e = off + k;                  // a multiple of 8
      const int64_t ev = (e & ~int64_t{15}) + (e & 8) / 2;  // the block's even entries for these 8 elements
      __m256i v = load8(x + k);
      if constexpr (Check) {
        bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi32(load8(LO + e), v),
                                                   _mm256_cmpgt_epi32(v, load8(HI + e))));
      }
      if constexpr (sizeof(In) < 4) v = _mm256_sllv_epi32(v, ld(XK + e));
      const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(v, ld(As + ev)), ld(Bs + ev));
      const __m256i vo = _mm256_srli_epi64(v, 32);
      const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(vo, ld(As + ev + 8)), ld(Bs + ev + 8));
      const __m256i h = _mm256_blend_epi32(_mm256_shuffle_epi32(pe, 0xF5), po, 0xAA);
      return _mm256_srav_epi32(h, ld(S + e));
    };
    int64_t i = store_lanes<Out, Sat>(y, 0, n, lanes8, q);
    bool flag = Check && !_mm256_testz_si256(bad, bad);
    for (; i < n; ++i) {  // tail (< 32 elements)
      const int64_t e = off + i;
      const int64_t k = e & 15;
      const int64_t bi = (e - k) + ((k & 1) ? 8 : 0) + (k >> 1);
      const In v = x[i];
      if constexpr (Check) flag |= (v < LO[e]) | (v > HI[e]);
      const int64_t xv = static_cast<int64_t>(v) * (int64_t{1} << XK[e]);  // x * 2^xk, fits int32
      const uint64_t prod = static_cast<uint64_t>(As[bi] * xv);
      const int64_t acc = static_cast<int64_t>(prod + static_cast<uint64_t>(Bs[bi]));
      const int32_t h = static_cast<int32_t>(acc >> 32) >> S[e];
      y[i] = static_cast<Out>(std::min(std::max(h, qmin), qmax));
    }
    if (flag) return true;
    pos += n;
  }
  return false;
}

// One 8-channel group's parameters for widen_pixels as six named values r##a, r##ao, ... (FXBN_PIXEL_ARGS passes
// them to pixel_lanes8).
#define FXBN_PIXEL_GROUP(r, g)                                                                      \
  const __m256i r##a = ld(A + (g)), r##ao = _mm256_srli_epi64(r##a, 32), r##be = ld(Bs + (g));      \
  const __m256i r##bo = ld(Bs + (g) + 4), r##cnt = pixel_counts<Out>(S + (g));                     \
  const __m256i r##xk = std::is_same<In, int32_t>::value ? _mm256_setzero_si256() : ld(XK + (g))
#define FXBN_PIXEL_ARGS(r) r##a, r##ao, r##be, r##bo, r##cnt, r##xk

// The range checks of widen_pixels: none, a min/max per lane against one [lo, hi] for every channel, or per channel
// x - (lo - 2^31) > (hi - lo) - 2^31 (signed) OR-ed into one mask for all channels (Job::range32,
// ``pixel_range_check``): 2 ops per vector like the min/max, with no per-channel accumulators.
constexpr int kPixelNoCheck = 0, kPixelOneRange = 1, kPixelPerChannel = 2;
// kPixelPerChannel with int32 inputs, in widen_pixels' group pairs: per lane x - lo (vpsubd, lo = ranges[0..7] from
// Job::lo, mod 2^32) into one vpmaxud accumulator per group (mn), compared with the lanes' hi - lo once per group pair
// and run (``pixel_lane_check``): 2 ops per vector and one table load, where the biased compare took 3 and two
// (h10-pix, AVX2, Zen 4, r50 2a_2b 1x56x56x64 NHWC Kernel.run one thread: 0.95-0.97x, in-process A/B medians).  Not
// for one range: x - lo into one vpmaxud accumulator for the whole chunk in place of the vpminsd / vpmaxsd pair
// (one register fewer) was 1.03-1.04x on 1x56x56x64 +-2^23.
constexpr int kPixelPerLane = 3;

// The clamp-ready int32 lanes of 8 channels of one pixel (x: its first); the check of its inputs: min/max into mn,
// mx (kPixelOneRange), the per-channel compare with lo2 = ranges[0..7], w2 = ranges[C..C+7] into mn
// (kPixelPerChannel), or x - ranges[0..7] (lo) vpmaxud into mn (kPixelPerLane).  Shuffled with kShiftNone (every
// channel's t = s - 32 is 0): the high dwords as vshufps leaves them, no vpsravd.
template <int CheckKind, bool Shuffled, int Shift = kShiftDwords, class In>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i pixel_lanes8(__m256i a, __m256i ao, __m256i be, __m256i bo, __m256i cnt,
                                                  __m256i xk, __m256i& mn, __m256i& mx, const In* x,
                                                  const int32_t* ranges, int64_t C) {
  __m256i v = load8(x);
  if constexpr (CheckKind == kPixelOneRange) {
    mn = _mm256_min_epi32(mn, v);
    mx = _mm256_max_epi32(mx, v);
  } else if constexpr (CheckKind == kPixelPerChannel) {
    mn = _mm256_or_si256(mn, _mm256_cmpgt_epi32(_mm256_sub_epi32(v, ld(ranges)), ld(ranges + C)));
  } else if constexpr (CheckKind == kPixelPerLane) {
    mn = _mm256_max_epu32(mn, _mm256_sub_epi32(v, ld(ranges)));
  }
  (void)ranges, (void)C, (void)mx;
  __m256i vo;
  if constexpr (std::is_same<In, int32_t>::value) {
    (void)xk;
    vo = ld(x + 1);  // x[8] read: see widen_pixels' p1
  } else {
    v = _mm256_sllv_epi32(v, xk);
    vo = _mm256_srli_epi64(v, 32);
  }
  const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(v, a), be);
  const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(vo, ao), bo);
  if constexpr (Shuffled) {  // cnt permuted to match by the caller (pixel_counts)
    const __m256i h = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(pe), _mm256_castsi256_ps(po), 0xDD));
    if constexpr (Shift != kShiftDwords) return h;
    return _mm256_srav_epi32(h, cnt);
  } else {
    const __m256i h = _mm256_blend_epi32(_mm256_shuffle_epi32(pe, 0xF5), po, 0xAA);
    return _mm256_srav_epi32(h, cnt);
  }
}

// 8-bit outputs: the channels' counts s - 32 in the order vshufps 0xDD leaves pixel_lanes8<.., true>'s lanes ([0, 2,
// 1, 3] per 128-bit lane), one vpshufd per group and run (``avx2_widen_pixels_bytes``).
template <class Out>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i pixel_counts(const int32_t* s32) {
  const __m256i cnt = ld(s32);
  return sizeof(Out) == 1 ? _mm256_shuffle_epi32(cnt, 0xD8) : cnt;
}

// pack32 of four vectors in vshufps order, each dword's bytes put back in order by one vpshufb
// (``avx2_widen_pixels_bytes``).
template <class Out, bool Sat>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i pack32_shuffled(__m256i h0, __m256i h1, __m256i h2, __m256i h3,
                                                     const Bounds& q) {
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i bytes = _mm256_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15,
                                         0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
  const __m256i w01 = _mm256_packs_epi32(h0, h1), w23 = _mm256_packs_epi32(h2, h3);
  __m256i v;
  if constexpr (std::is_signed<Out>::value) {
    v = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order), bytes);
    if constexpr (!Sat) v = _mm256_min_epi8(_mm256_max_epi8(v, q.q8lo), q.q8hi);
  } else {
    v = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), order), bytes);
    v = _mm256_min_epu8(_mm256_max_epu8(v, q.q8lo), q.q8hi);
  }
  return v;
}

// Under keep_out: `bytes` bytes of y (src) copied to the save buffer (dst, the same offset) before the body overwrites
// them, 32 at a time (non-temporal where streaming and dst is 32-byte aligned: whole cache lines, in order), then
// the tail.
FXBN_TARGET_AVX2 FXBN_INLINE void save_run(void* dst, const void* src, int64_t bytes, bool streaming) {
  unsigned char* const d = static_cast<unsigned char*>(dst);
  const unsigned char* const s = static_cast<const unsigned char*>(src);
  int64_t i = 0;
  if (streaming && (reinterpret_cast<uintptr_t>(d) & 31) == 0) {
    for (; i + 32 <= bytes; i += 32) _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), ld(s + i));
  } else {
    for (; i + 32 <= bytes; i += 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), ld(s + i));
  }
  std::memcpy(d + i, s + i, static_cast<size_t>(bytes - i));
}

// Pixels per run of widen_pixels for pixel_bytes input bytes per pixel: kPixelRun up to kPixelNarrow bytes, half
// that up to kPixelMedium, else a quarter.  A run visits its pixels at a stride of pixel_bytes once per group pair:
// from 4 KiB on every pixel's line of one column falls in the same L1 set (8 ways), the outputs' lines at a quarter
// of that stride beside them, and 16 pixels evicted the lines that the next group pair reads and writes again
// (AVX2, Zen 4, one thread, int32 -> int8 kernel: 1x7x7x2048 26.1 -> 15.7 us with runs of 4, 1x14x14x1024 47 ->
// 29 us; runs of 8 were fastest with 256 and 512 channels, 16 with 64).
constexpr int64_t kPixelRun = 16;
constexpr int64_t kPixelNarrow = 256, kPixelMedium = 2048;

// widen_pixels' sequential prefetch distance: on a tensor beyond 1 MiB a run's pages come from memory, and the run
// reads each one in 4 strided passes (64 channels) that the hardware prefetchers, which stop at a 4 KiB page, do not
// run ahead of; prefetching in address order kSeqAhead bytes past the run's start keeps the next page in flight
// (AVX2, Zen 4, one thread, int32 -> int8 with the range check, medians of in-process A/B ratios: 32x56x56x64
// Kernel.run 0.80-0.85x, out= 0.94-1.0x; 1x56x56x128 0.87x, out= 0.89x).  Not without the check (the full-range
// walk, faster, was 5-13% slower with it), nor for int16 inputs (no gain), nor where a run exceeds 4 KiB
// (1x28x28x512: 4% slower).
constexpr int64_t kSeqAhead = 4096;

constexpr int64_t pixel_run(int64_t pixel_bytes) {
  return pixel_bytes <= kPixelNarrow ? kPixelRun : pixel_bytes <= kPixelMedium ? kPixelRun / 2 : kPixelRun / 4;
}

// 64-bit accumulator, 32-bit multiplier, channel-last (inner == 1, channels % 8 == 0), int32 -> 8-bit or int16 ->
// int16, every s >= 32: the widen_periodic arithmetic with per-channel parameters instead of per-element tables
// (which cost 8 loads per 8 elements where the arithmetic needs 1).  Runs of pixel_run pixels, walked one pair of
// 8-channel groups at a time with both groups' parameters in registers (reloaded once per run and pair): 8-bit
// outputs in tiles of 2 pixels x 16 channels, narrowed together (pack32) into one 16-byte store per pixel (a run's
// odd last pixel is a tile with itself); int16 outputs one 32-byte store per pixel and pair (pack16); where
// channels % 16 == 8 the last group is walked alone (8-bit: tiles of 4 pixels x 8 channels, 8-byte stores).  Per
// group: A as 8 dwords (vpmuldq reads the even channels' from the low dwords, vpsrlq 32 brings the odd ones down), B
// split into the group's even then odd channels (two qword vectors), s - 32 (vpsravd; 8-bit outputs: the high dwords
// by one vshufps 0xDD, the counts permuted to its order once per group and run, one vpshufb after the packs, as in
// store_bytes_shuffled); int32 inputs: the odd
// elements come from a second load one element on; int16 inputs: x * 2^xk per channel (vpsllvd), the odd elements
// by vpsrlq 32.  The range check (CheckKind): a min/max per lane in two registers for the whole chunk where every
// channel has the same [lo, hi], else per channel: int32 inputs per-lane accumulators over each group pair and run
// (kPixelPerLane), int16 inputs and the groups walked alone the biased compare (pixel_lanes8), into one mask.
// Under keep_out (j.save) each run's outputs (contiguous: its pixels x channels) are copied to the save buffer before
// the run writes them, in whole 32-byte vectors (per-store 16-byte saves at a stride of `channels` cost as much on
// small tensors, and as non-temporal stores of partial cache lines tripled `out=` on large ones), and the whole chunk
// is walked (flag, not an early return).  A pixel split by the chunk's ends: with 8-bit outputs and channels % 16 == 0
// its group pairs from the first multiple of 16 as tiles with themselves (`part`), the rest by the scalar formula
// (h10-late: 2 threads cut 1x7x7x2048 inside pixel 24, whose 2 x 1024 elements took the formula; AVX2, load ~2,
// wall-clock medians of 4 alternating runs, Kernel.run 11.9-14.5 us against 16.9-18.4, out= 13.1-17.6 against
// 18.5-21.2; one thread unchanged); so do the last 16 (or 24) channels of the tensor's last pixel with int32 inputs
// (their odd-element load would read one past the array; the rest of that pixel: `part`, saved first).  What did not
// pay for 1x7x7x2048 on one thread (h10-late, thread-CPU minima; this walk 15.5-15.9 us): stripes of 64-1024
// channels over all pixels so that a stripe's parameters stay in L1 (16.0-35 us), runs of 2 or 8 pixels (22.2,
// 18.4), prefetches 1-4 pixels or 64-256 channels ahead (3-35% slower), the tile loop unrolled by 2 (17.4).  Inputs over 1 MiB with the range check and
// runs of at most 4 KiB: the walk prefetches its inputs in address order kSeqAhead bytes ahead, not by run.
// ``avx2_widen_pixels`` in verify/lemmas.py (the lane arithmetic; the order of the walk does not enter it),
// ``avx2_widen_pixels_bytes`` (8-bit outputs: the vshufps order, the permuted counts, the packs and vpshufb),
// ``pixel_range_check`` and ``pixel_lane_check`` (the per-channel checks), ``pixel_save`` (the save before each store).
// 8-bit outputs where every t = s - 32 is 0 (Shift = kShiftNone, e.g. 17-bit accumulators: s <= 32 before
// widen_to_high): no vpsravd, 34 vector ops per 32 outputs with the one-range check instead of 38
// (``avx2_widen_pixels_unshifted``; h11-shift: 1x56x56x64 +-2^16 Kernel.run 0.92-0.98x, AVX2, Zen 4).
// The pixel bodies' scalar formula over the elements [e0, e1) of a channel-last tensor (a pixel split by a chunk's
// ends, the tensor's last channels): y's old bytes saved first under keep_out (j.save), the tables of
// kernel.cpp pixel_tables (B in its per-8-channel order, x * 2^xk for 16-bit inputs).  True when some input lies
// outside its channel's [lo, hi] (Check).
template <class In, class Out, bool Check>
bool pixel_formula(const Job& j, int64_t e0, int64_t e1) {
  if (e1 <= e0) return false;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int64_t* const Bs = static_cast<const int64_t*>(j.b);
  const int32_t* const S = static_cast<const int32_t*>(j.s32);
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const int64_t C = j.channels;
  const int32_t qmin = static_cast<int32_t>(j.qmin), qmax = static_cast<int32_t>(j.qmax);
  if (j.save != nullptr) {
    std::memcpy(static_cast<Out*>(j.save) + e0, ys + e0, static_cast<size_t>(e1 - e0) * sizeof(Out));
  }
  bool flag = false;
  for (int64_t e = e0, c = e0 % C; e < e1; ++e, c = c + 1 == C ? 0 : c + 1) {
    const int64_t bi = (c & ~int64_t{7}) + ((c & 1) ? 4 : 0) + ((c & 7) >> 1);
    const int32_t v = xs[e];
    if constexpr (Check) flag |= (v < LO[c]) | (v > HI[c]);
    const int64_t xv = std::is_same<In, int32_t>::value ? int64_t{v} : int64_t{v} * (int64_t{1} << XK[c]);
    const uint64_t prod = static_cast<uint64_t>(static_cast<int64_t>(A[c]) * xv);  // x * 2^xk fits int32
    const int64_t acc = static_cast<int64_t>(prod + static_cast<uint64_t>(Bs[bi]));
    const int32_t h = static_cast<int32_t>(acc >> 32) >> S[c];
    ys[e] = static_cast<Out>(std::min(std::max(h, qmin), qmax));
  }
  return flag;
}

template <class In, class Out, int CheckKind, bool Sat, int Shift = kShiftDwords>
FXBN_TARGET_AVX2 bool widen_pixels(const Job& j, int64_t begin, int64_t end) {
  constexpr bool kInt32 = std::is_same<In, int32_t>::value;
  static_assert(kInt32 ? sizeof(Out) == 1 : std::is_same<Out, int16_t>::value, "int32 -> 8-bit, int16 -> int16");
  constexpr bool Check = CheckKind != kPixelNoCheck;
  constexpr bool kBytes = sizeof(Out) == 1;  // lanes in vshufps order (``avx2_widen_pixels_bytes``)
  // 8-bit outputs: kShiftNone where every t = s - 32 is 0 (no vpsravd; ``avx2_widen_pixels_unshifted``), else
  // kShiftDwords
  static_assert(Shift == kShiftDwords || (kBytes && Shift == kShiftNone), "the lanes' shift");
  // the group pairs' check: int32 inputs per-lane accumulators for the per-channel ranges
  constexpr int kPairCheck = kInt32 && CheckKind == kPixelPerChannel ? kPixelPerLane : CheckKind;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  Out* const saves = static_cast<Out*>(j.save);
  const int32_t* const A = static_cast<const int32_t*>(j.a);   // per channel
  const int64_t* const Bs = static_cast<const int64_t*>(j.b);  // per 8 channels: the 4 even ones, then the 4 odd
  const int32_t* const S = static_cast<const int32_t*>(j.s32);  // s - 32 per channel
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);  // int16 inputs: the input shift per channel
  const int32_t* const R = j.range32;                           // kPixelPerChannel: lo2 per channel, then w2
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const int64_t C = j.channels;
  bool flag = false;
  const auto scalar = [&](int64_t e0, int64_t e1) { flag |= pixel_formula<In, Out, Check>(j, e0, e1); };
  const int64_t p0 = (begin + C - 1) / C;  // the first whole pixel
  const int64_t pe = end / C;              // past the last one
  const int64_t p1 = kInt32 ? std::min(pe, (j.total - 1) / C) : pe;  // past the runs' (int32: the tensor's last pixel
                                                                      // excluded)
  const bool last_whole = p1 < pe && p1 >= p0;  // int32: the tensor's last pixel is whole in this chunk
  if (p1 <= p0 && !last_whole) {
    scalar(begin, end);
    return flag;
  }
  const Bounds q = bounds(j.qmin, j.qmax);
  // kPixelOneRange: every lane's min/max (mn_all, mx_all); kPixelPerChannel: the out-of-range mask (mn_all)
  __m256i mn_all = CheckKind == kPixelPerChannel ? _mm256_setzero_si256()
                                                 : _mm256_set1_epi32(std::numeric_limits<int32_t>::max());
  __m256i mx_all = _mm256_set1_epi32(std::numeric_limits<int32_t>::min());
  const auto store16 = [&](Out* y, __m128i v) FXBN_TARGET_AVX2 {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), v);
  };
  // int32 -> 8-bit: [e0, e1) of one pixel, from a group pair's start, one pair at a time as a tile with itself (the
  // pair at g reads x[g + 16], its odd-element load: the caller keeps it inside the array), saved first
  const auto part = [&](int64_t e0, int64_t e1) FXBN_TARGET_AVX2 {
    if constexpr (kBytes) {
      if (e1 <= e0) return;
      if (saves != nullptr) save_run(saves + e0, ys + e0, (e1 - e0) * int64_t{sizeof(Out)}, j.save_streaming);
      __m256i mn = mn_all, mx = mx_all;
      for (int64_t e = e0; e < e1; e += 16) {
        const int64_t g = e % C;
        FXBN_PIXEL_GROUP(r0, g);
        FXBN_PIXEL_GROUP(r1, g + 8);
        const __m256i h0 = pixel_lanes8<CheckKind, kBytes, Shift>(FXBN_PIXEL_ARGS(r0), mn, mx, xs + e,
                                                                  CheckKind == kPixelPerChannel ? R + g : nullptr, C);
        const __m256i h1 = pixel_lanes8<CheckKind, kBytes, Shift>(
            FXBN_PIXEL_ARGS(r1), mn, mx, xs + e + 8, CheckKind == kPixelPerChannel ? R + g + 8 : nullptr, C);
        store16(ys + e, _mm256_castsi256_si128(pack32_shuffled<Out, Sat>(h0, h1, h0, h1, q)));
      }
      mn_all = mn;
      mx_all = mx;
    }
    (void)e0, (void)e1;
  };
  // a pixel split by the chunk's start or end (2 threads: run_chunks cuts at multiples of 64 elements; out= over 1
  // MiB: blocks of 2^14): with channels % 16 == 0 its group pairs from the first multiple of 16 (part), the rest by
  // the formula; the tensor's last 16 elements always by the formula
  const bool parts = kBytes && C % 16 == 0;
  const int64_t head = parts ? std::min((begin + 15) / 16 * 16, p0 * C) : p0 * C;
  scalar(begin, head);
  part(head, p0 * C);
  // the next run's inputs at this pixel and group pair, a run ahead (the walk visits each pixel once per pair: a
  // stride the hardware prefetchers follow poorly); an address past the array is only a hint, never read.  Only
  // where a run's inputs are at most 4 KiB and the tensor's 1 MiB: beyond them the prefetches made the kernel
  // slower (1x56x56x64 -8%, but 1x7x7x2048 +25% and 32x56x56x64 +15% without the limits, AVX2, Zen 4).  Elsewhere
  // the hint is the line about to be read (no branch in the loop: with one, GCC dropped the prefetches)
  const int64_t run = pixel_run(C * static_cast<int64_t>(sizeof(In)));
  const int64_t run_bytes = run * C * static_cast<int64_t>(sizeof(In));
  const uintptr_t ahead = run_bytes <= 4096 && j.total * static_cast<int64_t>(sizeof(In)) <= (int64_t{1} << 20)
                              ? static_cast<uintptr_t>(run_bytes)
                              : 0;
  const auto prefetch_next_run = [&](const In* x) {
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(x) + ahead), _MM_HINT_T0);
  };
  // Beyond 1 MiB with the range check, int32 inputs and runs of at most 4 KiB: instead, the inputs kSeqAhead bytes
  // past the run's start in address order, two lines per tile (kSeqAhead).
  const bool sequential = run_bytes <= 4096 && j.total * static_cast<int64_t>(sizeof(In)) > (int64_t{1} << 20);
  const auto walk = [&](auto sequential_prefetch) FXBN_TARGET_AVX2 {
    for (int64_t px0 = p0; px0 < p1; px0 += run) {
      const int64_t px1 = std::min(px0 + run, p1);
      // sequential_prefetch's next line (an address, maybe past the array: only a hint)
      uintptr_t seq = reinterpret_cast<uintptr_t>(xs + px0 * C) + static_cast<uintptr_t>(kSeqAhead);
      if (saves != nullptr) {
        save_run(saves + px0 * C, ys + px0 * C, (px1 - px0) * C * static_cast<int64_t>(sizeof(Out)),
                 j.save_streaming);
      }
      int64_t g = 0;
      for (; g + 16 <= C; g += 16) {
        FXBN_PIXEL_GROUP(r0, g);
        FXBN_PIXEL_GROUP(r1, g + 8);
        // kPixelPerLane: mn and mn1 the two groups' accumulators (from 0), ranges their lo (Job::lo)
        __m256i mn = kPairCheck == kPixelPerLane ? _mm256_setzero_si256() : mn_all, mx = mx_all;
        __m256i mn1 = _mm256_setzero_si256();
        __m256i& acc1 = kPairCheck == kPixelPerLane ? mn1 : mn;
        const int32_t* const r0r = kPairCheck == kPixelPerLane     ? reinterpret_cast<const int32_t*>(LO) + g
                                   : CheckKind == kPixelPerChannel ? R + g
                                                                   : nullptr;
        const int32_t* const r1r = r0r == nullptr ? nullptr : r0r + 8;
        const auto lanes0 = [&](const In* x) FXBN_TARGET_AVX2 {
          return pixel_lanes8<kPairCheck, kBytes, Shift>(FXBN_PIXEL_ARGS(r0), mn, mx, x, r0r, C);
        };
        const auto lanes1 = [&](const In* x) FXBN_TARGET_AVX2 {
          return pixel_lanes8<kPairCheck, kBytes, Shift>(FXBN_PIXEL_ARGS(r1), acc1, mx, x, r1r, C);
        };
        if constexpr (sizeof(Out) == 2) {
          for (int64_t px = px0; px < px1; ++px) {
            const In* x = xs + px * C + g;
            prefetch_next_run(x);
            const __m256i h0 = lanes0(x), h1 = lanes1(x + 8);
            Out* y = ys + px * C + g;
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), pack16<Out, Sat>(h0, h1, q));
          }
        } else {
          int64_t px = px0;
          for (; px + 2 <= px1; px += 2) {
            const In* x = xs + px * C + g;
            if constexpr (decltype(sequential_prefetch)::value) {
              _mm_prefetch(reinterpret_cast<const char*>(seq), _MM_HINT_T0);
              _mm_prefetch(reinterpret_cast<const char*>(seq + 64), _MM_HINT_T0);
              seq += 128;  // the tile's input bytes: 2 pixels x 16 int32
            } else {
              prefetch_next_run(x);
              prefetch_next_run(x + C);
            }
            const __m256i h0 = lanes0(x), h1 = lanes1(x + 8), h2 = lanes0(x + C), h3 = lanes1(x + C + 8);
            const __m256i v = pack32_shuffled<Out, Sat>(h0, h1, h2, h3, q);
            Out* y = ys + px * C + g;
            store16(y, _mm256_castsi256_si128(v));
            store16(y + C, _mm256_extracti128_si256(v, 1));
          }
          if (px < px1) {  // the run's odd last pixel, as a tile with itself
            const In* x = xs + px * C + g;
            const __m256i h0 = lanes0(x), h1 = lanes1(x + 8);
            const __m256i v = pack32_shuffled<Out, Sat>(h0, h1, h0, h1, q);
            store16(ys + px * C + g, _mm256_castsi256_si128(v));
          }
        }
        if constexpr (kPairCheck == kPixelPerLane) {  // a lane whose max(x - lo) exceeds hi - lo (unsigned)
          const __m256i bias = _mm256_set1_epi32(std::numeric_limits<int32_t>::min());
          const __m256i w0 = _mm256_xor_si256(ld(R + C + g), bias), w1 = _mm256_xor_si256(ld(R + C + g + 8), bias);
          const __m256i within = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_max_epu32(mn, w0), w0),
                                                  _mm256_cmpeq_epi32(_mm256_max_epu32(mn1, w1), w1));
          mn_all = _mm256_or_si256(mn_all, _mm256_xor_si256(within, _mm256_set1_epi32(-1)));
        } else {
          mn_all = mn;
          mx_all = mx;
        }
      }
      if (g < C) {  // channels % 16 == 8: the last group alone (8-bit outputs: 4 pixels at a time)
        FXBN_PIXEL_GROUP(r, g);
        __m256i mn = mn_all, mx = mx_all;
        const int32_t* const rr = CheckKind == kPixelPerChannel ? R + g : nullptr;
        const auto lanes = [&](const In* x) FXBN_TARGET_AVX2 {
          return pixel_lanes8<CheckKind, kBytes, Shift>(FXBN_PIXEL_ARGS(r), mn, mx, x, rr, C);
        };
        if constexpr (sizeof(Out) == 2) {
          for (int64_t px = px0; px < px1; ++px) {
            const __m256i h = lanes(xs + px * C + g);
            Out* y = ys + px * C + g;
            _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm256_castsi256_si128(pack16<Out, Sat>(h, h, q)));
          }
        } else {
          const auto store8 = [&](Out* y, __m128i v, bool high) FXBN_TARGET_AVX2 {
            if (high) {
              _mm_storeh_pd(reinterpret_cast<double*>(y), _mm_castsi128_pd(v));
            } else {
              _mm_storel_epi64(reinterpret_cast<__m128i*>(y), v);
            }
          };
          int64_t px = px0;
          for (; px + 4 <= px1; px += 4) {
            const In* x = xs + px * C + g;
            const __m256i v = pack32_shuffled<Out, Sat>(lanes(x), lanes(x + C), lanes(x + 2 * C),
                                                               lanes(x + 3 * C), q);
            const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
            Out* y = ys + px * C + g;
            store8(y, lo, false);
            store8(y + C, lo, true);
            store8(y + 2 * C, hi, false);
            store8(y + 3 * C, hi, true);
          }
          for (; px < px1; ++px) {
            const __m256i h = lanes(xs + px * C + g);
            const __m256i v = pack32_shuffled<Out, Sat>(h, h, h, h, q);
            store8(ys + px * C + g, _mm256_castsi256_si128(v), false);
          }
        }
        mn_all = mn;
        mx_all = mx;
      }
    }
  };
  if constexpr (kInt32 && Check) {
    if (sequential) {
      walk(std::true_type{});
    } else {
      walk(std::false_type{});
    }
  } else {
    walk(std::false_type{});
  }
  if (kInt32 && last_whole) {  // its pairs of groups as tiles with itself, but its last 16 (or 24) channels by the
                               // formula (before h8-pix all of it: 1x7x7x2048, 2% of the elements, 15% of the time)
    const int64_t pairs = kBytes ? (C - 1) / 16 * 16 : 0;  // the pairs whose odd-element load stays in the pixel
    part(p1 * C, p1 * C + pairs);
    scalar(p1 * C + pairs, pe * C);
  }
  const int64_t tail = last_whole ? pe * C : p1 * C;  // a pixel split by the chunk's end: [tail, end)
  const int64_t tail_parts = parts ? std::max(tail, std::min(end / 16 * 16, j.total - 16)) : tail;
  part(tail, tail_parts);
  if constexpr (CheckKind == kPixelPerChannel) {
    flag |= !_mm256_testz_si256(mn_all, mn_all);
  } else if constexpr (CheckKind == kPixelOneRange) {
    flag |= (reduce_min(mn_all) < int32_t{LO[0]}) | (reduce_max(mx_all) > int32_t{HI[0]});
  }
  (void)mx_all;
  scalar(tail_parts, end);
  return flag;
}

// int16 -> int16 channel-last where every channel admits input_shift_16 (kernel.cpp pixel_words_tables: xk = 16 and
// s + 16 for every channel): widen_pixels' walk (runs of pixel_run pixels, one 16-channel group pair at a time, the
// run's outputs saved first under keep_out, the next run's inputs prefetched as there), with a group pair's 16 lanes
// from one 32-byte load of the pixel's 16 int16 inputs instead of two vpmovsxwd + vpsllvd: vpslld 16 gives the even
// channels times 2^16 in every dword, vpand 0xFFFF0000 the odd ones; vpmuldq reads each qword's low dword (channels 0
// 4 8 12 and 1 5 9 13) and a vpsrlq 32 of each brings the other dword down (2 6 10 14, 3 7 11 15); A and B come in
// that order from the table.  vpaddq, one vshufps 0xDD per 8 lanes gathers the high dwords (channels 0 4 2 6 | 8 12
// 10 14 and 1 5 3 7 | 9 13 11 15), vpsravd by the counts stored in that order, vpackssdw, and one vpshufb puts each
// 128-bit lane's words back in channel order (vpackssdw stays within the lanes: no vpermq).  18 ops per 16 outputs
// (widen_pixels: 22), and 2 (one range: vpminsw / vpmaxsw) or 3 (per channel: the biased compare of
// ``pixel_range_check`` on words) for the check (widen_pixels: 4, 6).  The last group where channels % 16 == 8:
// pixel_lanes8 with xk = 16; a pixel split by the chunk's ends: the scalar formula (``avx2_widen_pixels_words``).
template <int CheckKind, bool Sat>
FXBN_TARGET_AVX2 bool widen_pixels_words(const Job& j, int64_t begin, int64_t end) {
  using In = int16_t;
  using Out = int16_t;
  constexpr bool Check = CheckKind != kPixelNoCheck;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  Out* const saves = static_cast<Out*>(j.save);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int64_t* const Bs = static_cast<const int64_t*>(j.b);
  const int32_t* const S = static_cast<const int32_t*>(j.s32);
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);
  const int32_t* const R = j.range32;
  const int64_t* const W = j.pixel_words;
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const int64_t C = j.channels;
  bool flag = false;
  const auto scalar = [&](int64_t e0, int64_t e1) { flag |= pixel_formula<In, Out, Check>(j, e0, e1); };
  const int64_t p0 = (begin + C - 1) / C;  // the first whole pixel
  const int64_t p1 = end / C;              // past the last one
  if (p1 <= p0) {
    scalar(begin, end);
    return flag;
  }
  scalar(begin, p0 * C);
  const Bounds q = bounds(j.qmin, j.qmax);
  // the lone last group (pixel_lanes8): kPixelOneRange every lane's min/max, kPixelPerChannel the out-of-range mask
  __m256i mn_all = CheckKind == kPixelPerChannel ? _mm256_setzero_si256()
                                                 : _mm256_set1_epi32(std::numeric_limits<int32_t>::max());
  __m256i mx_all = _mm256_set1_epi32(std::numeric_limits<int32_t>::min());
  // the group pairs on words: kPixelOneRange the min / max of every word lane, kPixelPerChannel the mask
  __m256i mn_w = CheckKind == kPixelPerChannel ? _mm256_setzero_si256() : _mm256_set1_epi16(32767);
  __m256i mx_w = _mm256_set1_epi16(-32768);
  const __m256i odd_words = _mm256_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
  // vpackssdw's words per 128-bit lane are channels 0 4 2 6 1 5 3 7: channel i's word back at i
  const __m256i order = _mm256_setr_epi8(0, 1, 8, 9, 4, 5, 12, 13, 2, 3, 10, 11, 6, 7, 14, 15,
                                         0, 1, 8, 9, 4, 5, 12, 13, 2, 3, 10, 11, 6, 7, 14, 15);
  const int64_t run = pixel_run(C * static_cast<int64_t>(sizeof(In)));
  const int64_t run_bytes = run * C * static_cast<int64_t>(sizeof(In));
  const uintptr_t ahead = run_bytes <= 4096 && j.total * static_cast<int64_t>(sizeof(In)) <= (int64_t{1} << 20)
                              ? static_cast<uintptr_t>(run_bytes)
                              : 0;
  for (int64_t px0 = p0; px0 < p1; px0 += run) {
    const int64_t px1 = std::min(px0 + run, p1);
    if (saves != nullptr) {
      save_run(saves + px0 * C, ys + px0 * C, (px1 - px0) * C * static_cast<int64_t>(sizeof(Out)), j.save_streaming);
    }
    int64_t g = 0;
    for (; g + 16 <= C; g += 16) {
      const int64_t* const t = W + g / 16 * kPixelWordsBlock;
      const __m256i a0 = ld(t), a1 = ld(t + 4), a2 = ld(t + 8), a3 = ld(t + 12);
      const __m256i b0 = ld(t + 16), b1 = ld(t + 20), b2 = ld(t + 24), b3 = ld(t + 28);
      const __m256i t0 = ld(t + 32), t1 = ld(t + 36);
      const __m256i lo2 = ld(t + 40), w2 = ld(t + 44);
      __m256i mn = mn_w, mx = mx_w;
      for (int64_t px = px0; px < px1; ++px) {
        const In* x = xs + px * C + g;
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(x) + ahead), _MM_HINT_T0);
        __m256i raw = ld(x);
        __asm__("" : "+v"(raw));  // one load in a register, not folded into each use
        if constexpr (CheckKind == kPixelOneRange) {
          mn = _mm256_min_epi16(mn, raw);
          mx = _mm256_max_epi16(mx, raw);
        } else if constexpr (CheckKind == kPixelPerChannel) {
          mn = _mm256_or_si256(mn, _mm256_cmpgt_epi16(_mm256_sub_epi16(raw, lo2), w2));
        }
        const __m256i ev = _mm256_slli_epi32(raw, 16), od = _mm256_and_si256(raw, odd_words);
        const __m256i pa = _mm256_add_epi64(_mm256_mul_epi32(ev, a0), b0);
        const __m256i pb = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(ev, 32), a1), b1);
        const __m256i pc = _mm256_add_epi64(_mm256_mul_epi32(od, a2), b2);
        const __m256i pd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(od, 32), a3), b3);
        const __m256i h0 = _mm256_srav_epi32(
            _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(pa), _mm256_castsi256_ps(pb), 0xDD)), t0);
        const __m256i h1 = _mm256_srav_epi32(
            _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(pc), _mm256_castsi256_ps(pd), 0xDD)), t1);
        __m256i v = _mm256_shuffle_epi8(_mm256_packs_epi32(h0, h1), order);
        if constexpr (!Sat) v = _mm256_min_epi16(_mm256_max_epi16(v, q.q16lo), q.q16hi);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ys + px * C + g), v);
      }
      (void)lo2, (void)w2;
      mn_w = mn;
      mx_w = mx;
    }
    if (g < C) {  // channels % 16 == 8: the last group alone (avx2_widen_pixels' lanes, xk = 16)
      FXBN_PIXEL_GROUP(r, g);
      __m256i mn = mn_all, mx = mx_all;
      const int32_t* const rr = CheckKind == kPixelPerChannel ? R + g : nullptr;
      for (int64_t px = px0; px < px1; ++px) {
        const __m256i h = pixel_lanes8<CheckKind, false>(FXBN_PIXEL_ARGS(r), mn, mx, xs + px * C + g, rr, C);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ys + px * C + g),
                         _mm256_castsi256_si128(pack16<Out, Sat>(h, h, q)));
      }
      mn_all = mn;
      mx_all = mx;
    }
  }
  if constexpr (CheckKind == kPixelPerChannel) {
    flag |= !_mm256_testz_si256(mn_all, mn_all) || !_mm256_testz_si256(mn_w, mn_w);
  } else if constexpr (CheckKind == kPixelOneRange) {
    const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi16(_mm256_set1_epi16(LO[0]), mn_w),
                                        _mm256_cmpgt_epi16(mx_w, _mm256_set1_epi16(HI[0])));
    flag |= !_mm256_testz_si256(out, out);
    flag |= (reduce_min(mn_all) < int32_t{LO[0]}) | (reduce_max(mx_all) > int32_t{HI[0]});
  }
  (void)mx_all, (void)mx_w;
  scalar(p1 * C, end);
  return flag;
}

#undef FXBN_PIXEL_GROUP
#undef FXBN_PIXEL_ARGS

}  // namespace

template <Mul M, class In, class Out>
ChunkFn avx2_rows(bool check, bool sat) {
  if constexpr (M != Mul::mul64 && sizeof(Out) <= 4) {
    constexpr bool can_sat = std::is_signed<Out>::value && sizeof(Out) < 4;
    if constexpr (M == Mul::mul32) {
      if (can_sat && sat) return check ? &mul32_rows<In, Out, true, can_sat> : &mul32_rows<In, Out, false, can_sat>;
      return check ? &mul32_rows<In, Out, true, false> : &mul32_rows<In, Out, false, false>;
    } else {
      if (can_sat && sat) return check ? &widen_rows<In, Out, true, can_sat> : &widen_rows<In, Out, false, can_sat>;
      return check ? &widen_rows<In, Out, true, false> : &widen_rows<In, Out, false, false>;
    }
  }
  (void)check;
  (void)sat;
  return nullptr;
}

template <class In, class Out>
ChunkFn avx2_mul32_periodic(bool check, bool madd) {
  if constexpr (sizeof(In) <= 2) {
    if (madd) return check ? &mul32_periodic<In, Out, true, true> : &mul32_periodic<In, Out, false, true>;
  }
  return check ? &mul32_periodic<In, Out, true, false> : &mul32_periodic<In, Out, false, false>;
}

template <class In, class Out>
ChunkFn avx2_widen_periodic(bool check, bool sat) {
  if constexpr (std::is_signed<Out>::value && sizeof(Out) < 4) {
    if (sat) return check ? &widen_periodic<In, Out, true, true> : &widen_periodic<In, Out, false, true>;
  }
  (void)sat;
  return check ? &widen_periodic<In, Out, true, false> : &widen_periodic<In, Out, false, false>;
}

template <class Out, bool Sat, bool Shift>
ChunkFn avx2_widen_short_shift(bool check, bool one_range) {
  if (!check) return &widen_short<int32_t, Out, false, false, Sat, Shift>;
  return one_range ? &widen_short<int32_t, Out, true, true, Sat, Shift>
                   : &widen_short<int32_t, Out, true, false, Sat, Shift>;
}

template <class Out, bool Sat>
ChunkFn avx2_widen_short_sat(bool check, bool one_range, bool shift) {
  return shift ? avx2_widen_short_shift<Out, Sat, true>(check, one_range)
               : avx2_widen_short_shift<Out, Sat, false>(check, one_range);
}

template <class Out>
ChunkFn avx2_widen_short(bool check, bool sat, bool one_range, bool shift) {
  if constexpr (std::is_signed<Out>::value) {
    if (sat) return avx2_widen_short_sat<Out, true>(check, one_range, shift);
  }
  (void)sat;
  return avx2_widen_short_sat<Out, false>(check, one_range, shift);
}
template ChunkFn avx2_widen_short<int8_t>(bool, bool, bool, bool);
template ChunkFn avx2_widen_short<uint8_t>(bool, bool, bool, bool);

template <class In, class Out>
ChunkFn avx2_widen_pixels(bool check, bool sat, bool one_range) {
  if (!check) {
    if constexpr (std::is_signed<Out>::value) {
      if (sat) return &widen_pixels<In, Out, kPixelNoCheck, true>;
    }
    return &widen_pixels<In, Out, kPixelNoCheck, false>;
  }
  if (one_range) {
    if constexpr (std::is_signed<Out>::value) {
      if (sat) return &widen_pixels<In, Out, kPixelOneRange, true>;
    }
    return &widen_pixels<In, Out, kPixelOneRange, false>;
  }
  if constexpr (std::is_signed<Out>::value) {
    if (sat) return &widen_pixels<In, Out, kPixelPerChannel, true>;
  }
  (void)sat;
  return &widen_pixels<In, Out, kPixelPerChannel, false>;
}
template ChunkFn avx2_widen_pixels<int16_t, int16_t>(bool, bool, bool);

template <class Out, int Shift>
ChunkFn avx2_widen_pixels_shift(bool check, bool sat, bool one_range) {
  if (!check) {
    if constexpr (std::is_signed<Out>::value) {
      if (sat) return &widen_pixels<int32_t, Out, kPixelNoCheck, true, Shift>;
    }
    return &widen_pixels<int32_t, Out, kPixelNoCheck, false, Shift>;
  }
  if (one_range) {
    if constexpr (std::is_signed<Out>::value) {
      if (sat) return &widen_pixels<int32_t, Out, kPixelOneRange, true, Shift>;
    }
    return &widen_pixels<int32_t, Out, kPixelOneRange, false, Shift>;
  }
  if constexpr (std::is_signed<Out>::value) {
    if (sat) return &widen_pixels<int32_t, Out, kPixelPerChannel, true, Shift>;
  }
  (void)sat;
  return &widen_pixels<int32_t, Out, kPixelPerChannel, false, Shift>;
}

template <class Out>
ChunkFn avx2_widen_pixels_bytes(bool check, bool sat, bool one_range, bool shift) {
  return shift ? avx2_widen_pixels_shift<Out, kShiftDwords>(check, sat, one_range)
               : avx2_widen_pixels_shift<Out, kShiftNone>(check, sat, one_range);
}
template ChunkFn avx2_widen_pixels_bytes<int8_t>(bool, bool, bool, bool);
template ChunkFn avx2_widen_pixels_bytes<uint8_t>(bool, bool, bool, bool);

template <class Out>
ChunkFn avx2_widen_pixels_words(bool check, bool sat, bool one_range) {
  static_assert(std::is_same<Out, int16_t>::value, "int16 -> int16");
  if (!check) return sat ? &widen_pixels_words<kPixelNoCheck, true> : &widen_pixels_words<kPixelNoCheck, false>;
  if (one_range) return sat ? &widen_pixels_words<kPixelOneRange, true> : &widen_pixels_words<kPixelOneRange, false>;
  return sat ? &widen_pixels_words<kPixelPerChannel, true> : &widen_pixels_words<kPixelPerChannel, false>;
}
template ChunkFn avx2_widen_pixels_words<int16_t>(bool, bool, bool);

#define FXBN_ROWS(M, In, Out) template ChunkFn avx2_rows<M, In, Out>(bool, bool);
#define FXBN_PERIODIC(X, In, Out) \
  template ChunkFn avx2_mul32_periodic<In, Out>(bool, bool); template ChunkFn avx2_widen_periodic<In, Out>(bool, bool);
FXBN_FOR_MUL_IN_OUT(FXBN_ROWS)
FXBN_FOR_IN_OUT(FXBN_PERIODIC, _)
#undef FXBN_ROWS
#undef FXBN_PERIODIC

// ------------------------------------------------------------------------------------------------ 8-bit template
// byte_periodic: 8-bit -> 8-bit periodic tables (kernel_byte.cpp verified every parameter on every input of its
// channel's range; kernel_impl.hpp byte_template is one lane), 32 elements per step: vpxor (flip), vpunpck[lh]bw
// with zero (x << 8 in 16-bit lanes), vpmulhuw (m), vpaddw (p), vpsubusw (n), vpmulhuw (sm = 2^(16 - S): a
// per-lane shift), vpackuswb (restores the element order the unpacks left), vpmaxub / vpminub, vpxor 0x80 for int8
// outputs.  The range check is a byte max/min against the lo/hi tables.  QF_BV lemma ``avx2_byte_template``.
// Left out where the plan's lanes make them identities (ByteJob::flip / sub / clamp; ``avx2_byte_lean``): the flip
// vpxor when every flip is 0, vpsubusw when every n is 0, vpmaxub / vpminub when [qlo, qhi] = [0, 255].
// Resident: a period of 64 elements (channels * inner divides 64, e.g. NHWC with 64 channels): both blocks' tables
// are loaded once per chunk and stay in registers, no table load per element.
// byte_rows: NCHW rows (one channel per row): the row's lane broadcast in registers, its p or n (one is 0) and flip
// picked per row (``avx2_byte_rows``); rows of channels without a verified lane take the exact formula's table.
namespace {
constexpr int kByteFlip = 1, kByteSub = 2, kByteClamp = 4, kByteNoAdd = 8;  // kByteNoAdd: every p is 0

struct ByteRegs {
  __m256i flip, m0, m1, p0, p1, n0, n1, s0, s1, lo, hi;
};

template <bool Check, int Ops>
FXBN_TARGET_AVX2 FXBN_INLINE ByteRegs byte_regs(const uint8_t* t) {
  constexpr int64_t W = 32;
  ByteRegs r;
  const __m256i zero = _mm256_setzero_si256();
  r.flip = (Ops & kByteFlip) ? ld(t) : zero;
  r.lo = Check ? ld(t + W) : zero;
  r.hi = Check ? ld(t + 2 * W) : zero;
  r.m0 = ld(t + 3 * W), r.m1 = ld(t + 4 * W), r.p0 = ld(t + 5 * W), r.p1 = ld(t + 6 * W);
  r.n0 = (Ops & kByteSub) ? ld(t + 7 * W) : zero;
  r.n1 = (Ops & kByteSub) ? ld(t + 8 * W) : zero;
  r.s0 = ld(t + 9 * W), r.s1 = ld(t + 10 * W);
  return r;
}

// One 32-element step of the template on x; ORs the range check into bad.
template <class In, class Out, bool Check, int Ops>
FXBN_TARGET_AVX2 FXBN_INLINE __m256i byte_step(__m256i x, const ByteRegs& r, __m256i qlo, __m256i qhi,
                                               __m256i& bad) {
  const __m256i zero = _mm256_setzero_si256();
  if constexpr (Check) {
    const __m256i a = std::is_signed<In>::value ? _mm256_max_epi8(x, r.lo) : _mm256_max_epu8(x, r.lo);
    const __m256i b = std::is_signed<In>::value ? _mm256_min_epi8(x, r.hi) : _mm256_min_epu8(x, r.hi);
    bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_xor_si256(a, x), _mm256_xor_si256(b, x)));
  }
  const __m256i xf = (Ops & kByteFlip) ? _mm256_xor_si256(x, r.flip) : x;
  const __m256i w0 = _mm256_unpacklo_epi8(zero, xf), w1 = _mm256_unpackhi_epi8(zero, xf);
  __m256i v0 = _mm256_mulhi_epu16(w0, r.m0), v1 = _mm256_mulhi_epu16(w1, r.m1);
  if constexpr ((Ops & kByteNoAdd) == 0) {
    v0 = _mm256_add_epi16(v0, r.p0);
    v1 = _mm256_add_epi16(v1, r.p1);
  }
  if constexpr ((Ops & kByteSub) != 0) {
    v0 = _mm256_subs_epu16(v0, r.n0);
    v1 = _mm256_subs_epu16(v1, r.n1);
  }
  __m256i y = _mm256_packus_epi16(_mm256_mulhi_epu16(v0, r.s0), _mm256_mulhi_epu16(v1, r.s1));
  if constexpr ((Ops & kByteClamp) != 0) y = _mm256_min_epu8(_mm256_max_epu8(y, qlo), qhi);
  if constexpr (std::is_signed<Out>::value) y = _mm256_xor_si256(y, _mm256_set1_epi8(static_cast<char>(0x80)));
  return y;
}

template <class In, class Out, bool Check, int Ops, bool Resident>
FXBN_TARGET_AVX2 bool byte_periodic(const Job& j, int64_t begin, int64_t end) {
  const ByteJob& bj = *static_cast<const ByteJob*>(j.a);
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  constexpr int64_t W = 32;
  const __m256i qlo = _mm256_set1_epi8(static_cast<char>(bj.qlo)), qhi = _mm256_set1_epi8(static_cast<char>(bj.qhi));
  __m256i bad = _mm256_setzero_si256();
  const int64_t vend = begin + (end - begin) / W * W;
  if constexpr (Resident) {
    // period 64 and 64-aligned chunks: every 64-element step starts at table block 0
    const ByteRegs r0 = byte_regs<Check, Ops>(bj.tab), r1 = byte_regs<Check, Ops>(bj.tab + kByteTabVectors * W);
    int64_t pos = begin;
    for (; pos + 2 * W <= vend; pos += 2 * W) {
      const __m256i y0 = byte_step<In, Out, Check, Ops>(ld(xs + pos), r0, qlo, qhi, bad);
      const __m256i y1 = byte_step<In, Out, Check, Ops>(ld(xs + pos + W), r1, qlo, qhi, bad);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ys + pos), y0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ys + pos + W), y1);
    }
    if (pos < vend) {
      const __m256i y0 = byte_step<In, Out, Check, Ops>(ld(xs + pos), r0, qlo, qhi, bad);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ys + pos), y0);
    }
  } else {
    int64_t off = begin % bj.period;
    for (int64_t pos = begin; pos < vend; pos += W) {
      const ByteRegs r = byte_regs<Check, Ops>(bj.tab + off / W * (kByteTabVectors * W));
      const __m256i y = byte_step<In, Out, Check, Ops>(ld(xs + pos), r, qlo, qhi, bad);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ys + pos), y);
      off += W;
      if (off == bj.period) off = 0;
    }
  }
  bool flag = Check && !_mm256_testz_si256(bad, bad);
  flag |= byte_scalar<In, Out, Check>(bj, xs, ys, vend, end);
  byte_fixups<In, Out>(bj, xs, ys, begin, vend);
  return flag;
}

template <class In, class Out, bool Check, int Ops>
ChunkFn byte_periodic_fn(bool resident) {
  return resident ? &byte_periodic<In, Out, Check, Ops, true> : &byte_periodic<In, Out, Check, Ops, false>;
}

template <class In, class Out, bool Check>
ChunkFn byte_periodic_ops(int ops, bool resident) {
  switch (ops) {
    case 0: return byte_periodic_fn<In, Out, Check, 0>(resident);
    case 1: return byte_periodic_fn<In, Out, Check, 1>(resident);
    case 2: return byte_periodic_fn<In, Out, Check, 2>(resident);
    case 3: return byte_periodic_fn<In, Out, Check, 3>(resident);
    case 4: return byte_periodic_fn<In, Out, Check, 4>(resident);
    case 5: return byte_periodic_fn<In, Out, Check, 5>(resident);
    case 6: return byte_periodic_fn<In, Out, Check, 6>(resident);
    default: return byte_periodic_fn<In, Out, Check, 7>(resident);
  }
}

// The 32-element steps of one row of n elements with the row's lane broadcast in registers; returns the first
// element not done (the rest take the exact formula).
template <class In, class Out, bool Check, int Ops>
FXBN_TARGET_AVX2 FXBN_INLINE int64_t byte_row(const In* x, Out* y, int64_t n, const ByteLane& l, __m256i qlo,
                                              __m256i qhi, __m256i lo, __m256i hi, __m256i& bad) {
  ByteRegs r;
  r.flip = _mm256_set1_epi8(static_cast<char>(l.flip));
  r.lo = lo, r.hi = hi;
  r.m0 = r.m1 = _mm256_set1_epi16(static_cast<int16_t>(l.m));
  r.p0 = r.p1 = _mm256_set1_epi16(static_cast<int16_t>(l.p));
  r.n0 = r.n1 = _mm256_set1_epi16(static_cast<int16_t>(l.n));
  r.s0 = r.s1 = _mm256_set1_epi16(static_cast<int16_t>(l.sm));
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), byte_step<In, Out, Check, Ops>(ld(x + i), r, qlo, qhi, bad));
  }
  return i;
}

template <class In, class Out, bool Check, bool Clamp>
FXBN_TARGET_AVX2 bool byte_rows(const Job& j, int64_t begin, int64_t end) {
  const ByteJob& bj = *static_cast<const ByteJob*>(j.a);
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const __m256i qlo = _mm256_set1_epi8(static_cast<char>(bj.qlo)), qhi = _mm256_set1_epi8(static_cast<char>(bj.qhi));
  __m256i bad = _mm256_setzero_si256();
  bool flag = false;
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / bj.inner;
    const int64_t n = std::min(bj.inner - (pos - r * bj.inner), end - pos);
    const int64_t c = r % bj.channels;
    const In* x = xs + pos;
    Out* y = ys + pos;
    int64_t i = 0;
    if (bj.lane_ok[c]) {
      const ByteLane& l = bj.lanes[c];
      const __m256i lo = _mm256_set1_epi8(static_cast<char>(bj.lo[c])), hi = _mm256_set1_epi8(static_cast<char>(bj.hi[c]));
      constexpr int C = Clamp ? kByteClamp : 0;
      // kernel_byte.cpp's lanes have p == 0 or n == 0: vpaddw p or vpsubusw n, rarely both
      const int mode = (l.flip != 0 ? 1 : 0) + (l.n == 0 ? 0 : l.p == 0 ? 2 : 4);
      switch (mode) {
        case 0: i = byte_row<In, Out, Check, C>(x, y, n, l, qlo, qhi, lo, hi, bad); break;
        case 1: i = byte_row<In, Out, Check, C | kByteFlip>(x, y, n, l, qlo, qhi, lo, hi, bad); break;
        case 2: i = byte_row<In, Out, Check, C | kByteSub | kByteNoAdd>(x, y, n, l, qlo, qhi, lo, hi, bad); break;
        case 3:
          i = byte_row<In, Out, Check, C | kByteFlip | kByteSub | kByteNoAdd>(x, y, n, l, qlo, qhi, lo, hi, bad);
          break;
        case 4: i = byte_row<In, Out, Check, C | kByteSub>(x, y, n, l, qlo, qhi, lo, hi, bad); break;
        default: i = byte_row<In, Out, Check, C | kByteFlip | kByteSub>(x, y, n, l, qlo, qhi, lo, hi, bad); break;
      }
    } else {
      const uint8_t* lut = bj.lut + c * 256;
      for (; i < n; ++i) {
        const In v = x[i];
        if constexpr (Check) flag |= (v < bj.lo[c]) | (v > bj.hi[c]);
        y[i] = static_cast<Out>(static_cast<int8_t>(lut[static_cast<uint8_t>(v)]));
      }
    }
    flag |= byte_scalar<In, Out, Check>(bj, xs, ys, pos + i, pos + n);
    pos += n;
  }
  return flag || (Check && !_mm256_testz_si256(bad, bad));
}
}  // namespace

template <class In, class Out>
ChunkFn avx2_byte_body(const ByteJob& bj, bool check) {
  static_assert(sizeof(In) == 1 && sizeof(Out) == 1, "8-bit types");
  const int ops = (bj.flip ? kByteFlip : 0) | (bj.sub ? kByteSub : 0) | (bj.clamp ? kByteClamp : 0);
  const bool resident = bj.period == 64;
  return check ? byte_periodic_ops<In, Out, true>(ops, resident) : byte_periodic_ops<In, Out, false>(ops, resident);
}

template <class In, class Out>
ChunkFn avx2_byte_rows(bool check, bool clamp) {
  static_assert(sizeof(In) == 1 && sizeof(Out) == 1, "8-bit types");
  if (clamp) return check ? &byte_rows<In, Out, true, true> : &byte_rows<In, Out, false, true>;
  return check ? &byte_rows<In, Out, true, false> : &byte_rows<In, Out, false, false>;
}

#define FXBN_BYTE(In, Out)                                                                  \
  template ChunkFn avx2_byte_body<In, Out>(const ByteJob&, bool);                           \
  template ChunkFn avx2_byte_rows<In, Out>(bool, bool);
FXBN_BYTE(int8_t, int8_t)
FXBN_BYTE(int8_t, uint8_t)
FXBN_BYTE(uint8_t, int8_t)
FXBN_BYTE(uint8_t, uint8_t)
#undef FXBN_BYTE

}  // namespace detail
}  // namespace fxbn

#endif  // FXBN_X86_DISPATCH
