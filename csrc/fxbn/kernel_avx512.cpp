// The hand-written AVX-512 bodies (x86-64-v4; VBMI and VNNI where named): the paths the compiler does not do well
// (byte-table lookup with VBMI, vpdpwssd with VNNI, vpmuldq for 32x32->64 products).  Picked by kernel.cpp's dispatch
// through the avx512_* functions at the end; -DFXBN_NO_DISPATCH and non-x86 builds compile this file to nothing.
#include "kernel_impl.hpp"

#include <cstring>

#if FXBN_X86_DISPATCH

namespace fxbn {
namespace detail {
namespace {

// Rows of at least kLutRow 8-bit inputs with 8-bit outputs: the row's map is tabulated for all 256 inputs (with the
// same fixed_point arithmetic), then applied with two 128-entry byte permutes and a blend per 64 elements.

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
// WordShift: the lanes are shifted right by t (t16) after vpackssdw, with vpsraw per 32 elements instead of a
// vpsrad per 16 before it -- the same bytes for t <= 8 (int8) / 7 (uint8): a lane saturated to int16 and shifted by
// such t still saturates at the 8-bit pack (``avx2_widen_rows_bytes``' narrowing claim).
template <class Out, bool Sat, bool WordShift = false>
FXBN_TARGET_V4 FXBN_INLINE void pack_store64(Out* p, __m512i h0, __m512i h1, __m512i h2, __m512i h3, __m512i qmin8,
                                             __m512i qmax8, __m128i t16 = __m128i(), Out* save = nullptr,
                                             bool streaming = false) {
  static_assert(sizeof(Out) == 1, "8-bit outputs");
  // after the packs, dword 4L + k of the vector holds elements 4L..4L+3 of h_k (L: the 128-bit lane)
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512i w01 = _mm512_packs_epi32(h0, h1), w23 = _mm512_packs_epi32(h2, h3);
  if constexpr (WordShift) {
    w01 = _mm512_sra_epi16(w01, t16);
    w23 = _mm512_sra_epi16(w23, t16);
  } else {
    (void)t16;
  }
  __m512i v;
  if constexpr (std::is_signed<Out>::value) {
    v = _mm512_permutexvar_epi32(order, _mm512_packs_epi16(w01, w23));
    if constexpr (!Sat) v = _mm512_min_epi8(_mm512_max_epi8(v, qmin8), qmax8);
  } else {
    static_assert(!Sat, "saturating store: signed outputs");
    v = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w01, w23));
    v = _mm512_min_epu8(_mm512_max_epu8(v, qmin8), qmax8);
  }
  if (save != nullptr) {  // keep_out: y's old bytes (Job::save), streaming: non-temporal (see Job::save_streaming)
    if (streaming) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(save), _mm512_loadu_si512(p));
    } else {
      _mm512_storeu_si512(save, _mm512_loadu_si512(p));
    }
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
                                              __m512i qmax8, __m512i qmin32, __m512i qmax32, Out* save = nullptr,
                                              bool streaming = false) {
  if constexpr (sizeof(Out) == 1) {
    for (; i + 64 <= n; i += 64) {
      const __m512i h0 = high16(i), h1 = high16(i + 16), h2 = high16(i + 32), h3 = high16(i + 48);
      pack_store64<Out, Sat>(y + i, h0, h1, h2, h3, qmin8, qmax8, __m128i(), save != nullptr ? save + i : nullptr,
                             streaming);
    }
  }
  for (; i + 16 <= n; i += 16) {
    const __m512i h = high16(i);
    if (save != nullptr) std::memcpy(save + i, y + i, 16 * sizeof(Out));
    clamp_store16<Out, Sat>(y + i, h, qmin32, qmax32);
  }
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
  Out* const saves = static_cast<Out*>(j.save);
  bool flagged = false;
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.inner;
    const int64_t off = pos - r * j.inner;
    const int64_t n = std::min(j.inner - off, end - pos);
    const int64_t c = r % j.channels;
    const In* x = xs + pos;
    Out* y = ys + pos;
    Out* const save = saves != nullptr ? saves + pos : nullptr;
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
      const bool streaming = j.save_streaming && (reinterpret_cast<uintptr_t>(save) & 63) == 0;
      // the unshifted high dwords of elements k..k+15
      const auto raw16 = [&](int64_t k) FXBN_TARGET_V4 {
        __m512i v = load16(x + k);
        // one load, kept in a register: folded into vpminsd, vpmaxsd and vpmuldq it was three, each split across
        // two cache lines when x is not 32-byte aligned (27 vs 21 us on 1x64x56x56)
        __asm__("" : "+v"(v));
        if constexpr (Check) {
          mn = _mm512_min_epi32(mn, v);
          mx = _mm512_max_epi32(mx, v);
        }
        if constexpr (sizeof(In) == 4) {
          return high_dwords(v, load16(x + k + 1), av, av, bv, bv);
        } else {  // x * 2^xk (vpsllvd), then the odd elements by vpsrlq: a reload would need another widening
          v = _mm512_sllv_epi32(v, xkv);
          return high_dwords(v, _mm512_srli_epi64(v, 32), av, av, bv, bv);
        }
      };
      const auto high16 = [&](int64_t k) FXBN_TARGET_V4 {
        const __m512i h = raw16(k);
        return s > 32 ? _mm512_sra_epi32(h, cnt) : h;
      };
      if constexpr (sizeof(Out) == 1) {
        if (s > 32 && s - 32 <= (std::is_signed<Out>::value ? 8 : 7)) {  // the shift after vpackssdw (vpsraw)
          for (; i + 64 <= lim; i += 64) {
            const __m512i h0 = raw16(i), h1 = raw16(i + 16), h2 = raw16(i + 32), h3 = raw16(i + 48);
            pack_store64<Out, Sat, true>(y + i, h0, h1, h2, h3, qmin8, qmax8, cnt, save != nullptr ? save + i : nullptr,
                                         streaming);
          }
        }
      }
      i = store_high<Out, Sat>(y, i, lim, high16, qmin8, qmax8, qmin32, qmax32, save, streaming);
    } else {
      if (save != nullptr) std::memcpy(save, y, static_cast<size_t>(n) * sizeof(Out));  // the whole row, then i = n
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
    if (save != nullptr && s >= 32) std::memcpy(save + i, y + i, static_cast<size_t>(n - i) * sizeof(Out));
    for (; i < n; ++i) {  // tail (< 16 elements; < 32 at the end of the tensor)
      const In v = x[i];
      if constexpr (Check) bad |= (v < LO[c]) | (v > HI[c]);
      y[i] = static_cast<Out>(fixed_point_xk(v, xk, A[c], B[c], s, j.qmin, j.qmax));
    }
    if (bad) {
      if (save == nullptr) return true;
      flagged = true;
    }
    pos += n;
  }
  return flagged;
}

// int32 -> 8-bit NCHW rows of 16 <= inner < 64 (kernel.cpp apply_short): the AVX2 widen_short with 16 lanes -- the
// current channel's A, B, s - 32, lo, hi broadcast in zmm registers, per-channel tables (j.a int32 A, j.b int64 B,
// j.s32, j.lo / j.hi int32).  inner >= 16: a vector holds at most one row boundary; the vector that reaches one (lane
// b = row_end - p, 1 <= b <= 16) takes lanes >= b from the next channel (k-mask m = 0xFFFF << b; for the even / odd
// elements' B, the qword masks 0xFF << ceil(b / 2) and 0xFF << floor(b / 2)), and the next channel becomes the
// current one.  widen_rows' arithmetic (high_dwords, the odd elements from a load one element on) with a per-lane
// vpsravd, its 8-bit stores (store_high: pack_store64, saving y's old bytes under keep_out); the range check a
// compare mask per vector, or with one [lo, hi] for every channel (OneRange) vpminsd / vpmaxsd accumulators reduced
// once per chunk, nothing of the range blended (``avx512_widen_short``).
struct ShortChannel16 {
  __m512i a, b, t, lo, hi;  // one channel's A (dwords), B (qwords), s - 32, lo, hi broadcast
};

// The shifted high dwords of 16 elements at x with per-lane parameters (a / ao: A of the even / odd elements in each
// qword's low dword; be / bo: B of the even / odd elements; t, lo, hi in element order); the lanes in range AND-ed
// into ok (OneRange: the lanes into mn / mx).
template <bool Check, bool OneRange>
FXBN_TARGET_V4 FXBN_INLINE __m512i short_lanes16(const int32_t* x, __m512i a, __m512i ao, __m512i be, __m512i bo,
                                                 __m512i t, __m512i lo, __m512i hi, __mmask16& ok, __m512i& mn,
                                                 __m512i& mx) {
  __m512i v = load16(x);
  __asm__("" : "+v"(v));
  if constexpr (Check && OneRange) {
    mn = _mm512_min_epi32(mn, v);
    mx = _mm512_max_epi32(mx, v);
  } else if constexpr (Check) {
    ok = _kand_mask16(ok, _mm512_mask_cmple_epi32_mask(_mm512_cmpge_epi32_mask(v, lo), v, hi));
  }
  (void)lo, (void)hi, (void)ok, (void)mn, (void)mx;
  return _mm512_srav_epi32(high_dwords(v, load16(x + 1), a, ao, be, bo), t);
}

template <class In, class Out, bool Check, bool OneRange, bool Sat>
FXBN_TARGET_V4 bool widen_short(const Job& j, int64_t begin, int64_t end) {
  static_assert(std::is_same<In, int32_t>::value && sizeof(Out) == 1, "int32 -> 8-bit");
  const int32_t* const xs = static_cast<const int32_t*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const int64_t* const B = static_cast<const int64_t*>(j.b);
  const int32_t* const T = static_cast<const int32_t*>(j.s32);
  const int32_t* const LO = static_cast<const int32_t*>(j.lo);
  const int32_t* const HI = static_cast<const int32_t*>(j.hi);
  const __m512i qmin32 = _mm512_set1_epi32(static_cast<int32_t>(j.qmin));
  const __m512i qmax32 = _mm512_set1_epi32(static_cast<int32_t>(j.qmax));
  const __m512i qmin8 = _mm512_set1_epi8(static_cast<char>(j.qmin));
  const __m512i qmax8 = _mm512_set1_epi8(static_cast<char>(j.qmax));
  const int64_t inner = j.inner, channels = j.channels;
  int64_t c = (begin / inner) % channels;
  int64_t row_end = (begin / inner + 1) * inner;  // flat index where channel c's row ends
  const auto broadcast = [&](int64_t ch) FXBN_TARGET_V4 {
    return ShortChannel16{_mm512_set1_epi32(A[ch]), _mm512_set1_epi64(B[ch]), _mm512_set1_epi32(T[ch]),
                          _mm512_set1_epi32(LO[ch]), _mm512_set1_epi32(HI[ch])};
  };
  ShortChannel16 cur = broadcast(c);
  __mmask16 ok = 0xFFFF;
  __m512i mn = _mm512_set1_epi32(std::numeric_limits<int32_t>::max());
  __m512i mx = _mm512_set1_epi32(std::numeric_limits<int32_t>::min());
  const int32_t* x = xs + begin;
  Out* y = ys + begin;
  Out* const save = j.save != nullptr ? static_cast<Out*>(j.save) + begin : nullptr;
  const bool streaming = j.save_streaming && (reinterpret_cast<uintptr_t>(save) & 63) == 0;
  const auto high16 = [&](int64_t k) FXBN_TARGET_V4 {
    const int64_t p = begin + k;
    if (__builtin_expect(p + 16 < row_end, 1)) {
      return short_lanes16<Check, OneRange>(x + k, cur.a, cur.a, cur.b, cur.b, cur.t, cur.lo, cur.hi, ok, mn, mx);
    }
    // lanes >= b = row_end - p (1..16) belong to the next channel
    const int64_t nc = c + 1 == channels ? 0 : c + 1;
    const ShortChannel16 nx = broadcast(nc);
    const unsigned b = static_cast<unsigned>(row_end - p);
    const __mmask16 m = _cvtu32_mask16((0xFFFFu << b) & 0xFFFFu);
    const __mmask8 me = _cvtu32_mask8((0xFFu << ((b + 1) / 2)) & 0xFFu);  // qword i: element 2i
    const __mmask8 mo = _cvtu32_mask8((0xFFu << (b / 2)) & 0xFFu);        // qword i: element 2i + 1
    const __m512i a = _mm512_mask_blend_epi32(m, cur.a, nx.a);
    constexpr bool kBlendRange = Check && !OneRange;
    const __m512i h = short_lanes16<Check, OneRange>(
        x + k, a, _mm512_srli_epi64(a, 32), _mm512_mask_blend_epi64(me, cur.b, nx.b),
        _mm512_mask_blend_epi64(mo, cur.b, nx.b), _mm512_mask_blend_epi32(m, cur.t, nx.t),
        kBlendRange ? _mm512_mask_blend_epi32(m, cur.lo, nx.lo) : cur.lo,
        kBlendRange ? _mm512_mask_blend_epi32(m, cur.hi, nx.hi) : cur.hi, ok, mn, mx);
    cur = nx;
    c = nc;
    row_end += inner;
    return h;
  };
  // the odd-element loads read x[k + 16]: the tensor's last 16-block (and its tail) go to the scalar tail
  const int64_t n = end - begin;
  const int64_t lim = std::min(n, j.total - begin - 1);
  int64_t i = store_high<Out, Sat>(y, 0, lim, high16, qmin8, qmax8, qmin32, qmax32, save, streaming);
  bool flag = false;
  if constexpr (Check && OneRange) {
    flag = (_mm512_reduce_min_epi32(mn) < LO[0]) | (_mm512_reduce_max_epi32(mx) > HI[0]);
  } else if constexpr (Check) {
    flag = _cvtmask16_u32(ok) != 0xFFFF;
  }
  if (save != nullptr) std::memcpy(save + i, y + i, static_cast<size_t>(n - i));
  for (; i < n; ++i) {  // tail (< 16 elements; < 32 at the end of the tensor)
    const int64_t ch = ((begin + i) / inner) % channels;
    const int32_t v = x[i];
    if constexpr (Check) flag |= (v < LO[ch]) | (v > HI[ch]);
    y[i] = static_cast<Out>(fixed_point_xk(v, 0, A[ch], B[ch], int64_t{T[ch]} + 32, j.qmin, j.qmax));
  }
  return flag;
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

// Channel-last (inner == 1) widen layers with channels % 64 == 0, every s >= 32: int32 -> 8-bit and int16 -> int16.
// The widen_rows arithmetic with per-channel parameters held in registers for a block of 64 channels (4 vectors each
// of A, A of the odd channels (vpsrlq 32 of A loaded as dwords), B of the even and of the odd channels (per 16
// channels: the 8 even ones, then the 8 odd ones), s - 32, and for int16 inputs the input shift xk: 20 or 24 of the
// 32 zmm registers), reloaded once per block and run of pixel_run pixels.  The range check (CheckKind), per channel
// whether or not every channel has the same [lo, hi]: x - (lo - 2^31) > (hi - lo) - 2^31 (signed; Job::range32, read
// from L1) OR-ed into one mask (``pixel_range_check``).  int32 inputs: the odd elements from a second load one
// element on, one 64-byte store per pixel and block (pack_store64); the tensor's last vector, whose second load
// would read one past the array, loads it masked (lane 15, x[16], which vpmuldq ignores, left 0: the lemma's free
// x_next) (since h8-pix512; before, the tensor's last pixel took the scalar formula: 1x7x7x2048 full range kernel
// 14.2 -> 10.7 us).  int16 inputs: x * 2^xk (vpsllvd), the odd elements by vpsrlq, clamp_store16.  Under keep_out
// (j.save) the old bytes of each store are copied to the save buffer first, in the loop, and the whole chunk is
// walked.  A pixel split by the chunk's ends takes the scalar formula.
// ``avx512_widen_pixels`` in verify/lemmas.py, ``pixel_range_check``, ``pixel_save``.
constexpr int64_t kPixelRun = 16;
constexpr int64_t kPixelMedium = 2048;
constexpr int kPixelNoCheck = 0, kPixelPerChannel = 2;

// Pixels per run for pixel_bytes input bytes per pixel: kPixelRun up to kPixelMedium bytes, else a quarter.  A run
// visits its pixels at a stride of pixel_bytes once per 64-channel block: from 4 KiB on every pixel's lines of one
// block fall in the same L1 sets (8 ways), and 16 pixels evict the line the next block's first vector reads again
// (its odd-element load read it).  Zen 4, one thread, int32 -> int8 kernel, full range (runs of 16 / 8 / 4 pixels):
// 1x7x7x2048 10.7 / 10.0 / 9.6 us, 1x14x14x1024 21.5 / 20.4 / 19.0; with the range check the three were within
// the noise (13.0 / 14.0 / 13.2 and 27.9 / 30.1 / 28.6), and on 512 channels 16 was fastest (full 39.7 / 39.7 /
// 41.3, checked 55.1 / 57.2 / 58.5).  Unlike the AVX2 body's (8 from 256 bytes on) runs of 8 gained nothing here.
constexpr int64_t pixel_run(int64_t pixel_bytes) { return pixel_bytes <= kPixelMedium ? kPixelRun : kPixelRun / 4; }

template <class In, class Out, int CheckKind, bool Sat>
FXBN_TARGET_V4 bool widen_pixels(const Job& j, int64_t begin, int64_t end) {
  constexpr bool kInt32 = std::is_same<In, int32_t>::value;
  static_assert(kInt32 ? sizeof(Out) == 1 : std::is_same<Out, int16_t>::value, "int32 -> 8-bit, int16 -> int16");
  constexpr bool Check = CheckKind != kPixelNoCheck;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  Out* const saves = static_cast<Out*>(j.save);
  const int32_t* const A = static_cast<const int32_t*>(j.a);   // per channel
  const int64_t* const Bs = static_cast<const int64_t*>(j.b);  // per 16 channels: the 8 even ones, then the 8 odd
  const int32_t* const S = static_cast<const int32_t*>(j.s32);  // s - 32 per channel
  const int32_t* const XK = static_cast<const int32_t*>(j.xk);  // int16 inputs: the input shift per channel
  const int32_t* const R = j.range32;                           // kPixelPerChannel: lo2 per channel, then w2
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const int64_t C = j.channels;
  const int32_t qmin = static_cast<int32_t>(j.qmin), qmax = static_cast<int32_t>(j.qmax);
  // the save buffer is 64-byte aligned at offset 0, and every store's offset here a multiple of 64 bytes
  const bool streaming = saves != nullptr && j.save_streaming;
  bool flag = false;
  const auto scalar = [&](int64_t e0, int64_t e1) {
    if (e1 <= e0) return;
    if (saves != nullptr) std::memcpy(saves + e0, ys + e0, static_cast<size_t>(e1 - e0) * sizeof(Out));
    for (int64_t e = e0, c = e0 % C; e < e1; ++e, c = c + 1 == C ? 0 : c + 1) {
      const int64_t bi = (c & ~int64_t{15}) + ((c & 1) ? 8 : 0) + ((c & 15) >> 1);
      const int32_t v = xs[e];
      if constexpr (Check) flag |= (v < LO[c]) | (v > HI[c]);
      const int64_t xv = kInt32 ? int64_t{v} : int64_t{v} * (int64_t{1} << XK[c]);  // x * 2^xk, fits int32
      const uint64_t prod = static_cast<uint64_t>(static_cast<int64_t>(A[c]) * xv);
      const int64_t acc = static_cast<int64_t>(prod + static_cast<uint64_t>(Bs[bi]));
      const int32_t h = static_cast<int32_t>(acc >> 32) >> S[c];
      ys[e] = static_cast<Out>(std::min(std::max(h, qmin), qmax));
    }
  };
  const int64_t p0 = (begin + C - 1) / C;  // the first whole pixel
  const int64_t pe = end / C;              // past the last one
  const int64_t p1 = kInt32 ? std::min(pe, (j.total - 1) / C) : pe;  // past the pixels whose every odd load is whole
                                                                      // (int32: the tensor's last pixel excluded)
  if (pe <= p0) {
    scalar(begin, end);
    return flag;
  }
  scalar(begin, p0 * C);
  const __m512i qmin8 = _mm512_set1_epi8(static_cast<char>(qmin)), qmax8 = _mm512_set1_epi8(static_cast<char>(qmax));
  const __m512i qmin32 = _mm512_set1_epi32(qmin), qmax32 = _mm512_set1_epi32(qmax);
  __mmask16 out_of_range = 0;
  const auto copy64 = [&](Out* save, const Out* y) FXBN_TARGET_V4 {
    if (streaming) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(save), _mm512_loadu_si512(y));
    } else {
      _mm512_storeu_si512(save, _mm512_loadu_si512(y));
    }
  };
  const int64_t run = pixel_run(C * static_cast<int64_t>(sizeof(In)));
  for (int64_t px0 = p0; px0 < pe; px0 += run) {
    const int64_t px1 = std::min(px0 + run, pe);
    for (int64_t g = 0; g < C; g += 64) {
      __m512i a[4], ao[4], be[4], bo[4], cnt[4], xk[4];
      for (int k = 0; k < 4; ++k) {
        a[k] = _mm512_loadu_si512(A + g + 16 * k);
        ao[k] = _mm512_srli_epi64(a[k], 32);
        be[k] = _mm512_loadu_si512(Bs + g + 16 * k);
        bo[k] = _mm512_loadu_si512(Bs + g + 16 * k + 8);
        cnt[k] = _mm512_loadu_si512(S + g + 16 * k);
        xk[k] = kInt32 ? _mm512_setzero_si512() : _mm512_loadu_si512(XK + g + 16 * k);
      }
      const auto pixel = [&](int64_t px, auto at_array_end) FXBN_TARGET_V4 {
        const In* x = xs + px * C + g;
        const auto high16 = [&](int k) FXBN_TARGET_V4 {
          __m512i v = load16(x + 16 * k);
          if constexpr (CheckKind == kPixelPerChannel) {
            const __m512i d = _mm512_sub_epi32(v, _mm512_loadu_si512(R + g + 16 * k));
            out_of_range |= _mm512_cmpgt_epi32_mask(d, _mm512_loadu_si512(R + C + g + 16 * k));
          }
          __m512i vo;
          if constexpr (kInt32) {
            // x[16k + 16] read, into lane 15, whose dword vpmuldq ignores: at the array's end (the tensor's last
            // 16 elements) a masked load leaves it out
            if (decltype(at_array_end)::value && k == 3) {
              vo = _mm512_maskz_loadu_epi32(0x7FFF, x + 16 * k + 1);
            } else {
              vo = _mm512_loadu_si512(x + 16 * k + 1);
            }
          } else {
            v = _mm512_sllv_epi32(v, xk[k]);
            vo = _mm512_srli_epi64(v, 32);
          }
          return _mm512_srav_epi32(high_dwords(v, vo, a[k], ao[k], be[k], bo[k]), cnt[k]);
        };
        const __m512i h0 = high16(0), h1 = high16(1), h2 = high16(2), h3 = high16(3);
        Out* y = ys + px * C + g;
        Out* save = saves != nullptr ? saves + px * C + g : nullptr;
        if constexpr (sizeof(Out) == 1) {
          pack_store64<Out, Sat>(y, h0, h1, h2, h3, qmin8, qmax8, __m128i(), save, streaming);
        } else {
          if (save != nullptr) {
            copy64(save, y);
            copy64(save + 32, y + 32);
          }
          clamp_store16<Out, Sat>(y, h0, qmin32, qmax32);
          clamp_store16<Out, Sat>(y + 16, h1, qmin32, qmax32);
          clamp_store16<Out, Sat>(y + 32, h2, qmin32, qmax32);
          clamp_store16<Out, Sat>(y + 48, h3, qmin32, qmax32);
        }
      };
      const int64_t pw = std::min(px1, p1);
      for (int64_t px = px0; px < pw; ++px) pixel(px, std::false_type());
      if (pw < px1) {  // the tensor's last pixel (int32)
        if (g + 64 < C) {
          pixel(pw, std::false_type());
        } else {
          pixel(pw, std::true_type());
        }
      }
    }
  }
  if constexpr (CheckKind == kPixelPerChannel) flag |= out_of_range != 0;
  (void)R;
  scalar(pe * C, end);
  return flag;
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

}  // namespace

template <Mul M, class In, class Out>
ChunkFn avx512_rows(bool vbmi, bool check, bool sat) {
  if constexpr (sizeof(In) == 1 && sizeof(Out) == 1) {
    if (vbmi) return &lut_rows<M, In, Out>;
  }
  if constexpr (M == Mul::widen && sizeof(Out) <= 4) {
    if constexpr (std::is_signed<Out>::value && sizeof(Out) < 4) {
      if (sat) return check ? &widen_rows<In, Out, true, true> : &widen_rows<In, Out, false, true>;
    }
    return check ? &widen_rows<In, Out, true, false> : &widen_rows<In, Out, false, false>;
  }
  (void)check;
  (void)sat;
  return nullptr;
}

template <class In, class Out>
ChunkFn avx512_widen_periodic(bool check, bool high, bool sat) {
  if (!high) return check ? &widen_periodic<In, Out, true, false> : &widen_periodic<In, Out, false, false>;
  if constexpr (std::is_signed<Out>::value && sizeof(Out) < 4) {
    if (sat) return check ? &widen_periodic<In, Out, true, true, true> : &widen_periodic<In, Out, false, true, true>;
  }
  (void)sat;
  return check ? &widen_periodic<In, Out, true, true> : &widen_periodic<In, Out, false, true>;
}

template <class Out, bool Sat>
ChunkFn avx512_widen_short_sat(bool check, bool one_range) {
  if (!check) return &widen_short<int32_t, Out, false, false, Sat>;
  return one_range ? &widen_short<int32_t, Out, true, true, Sat> : &widen_short<int32_t, Out, true, false, Sat>;
}

template <class Out>
ChunkFn avx512_widen_short(bool check, bool sat, bool one_range) {
  if constexpr (std::is_signed<Out>::value) {
    if (sat) return avx512_widen_short_sat<Out, true>(check, one_range);
  }
  (void)sat;
  return avx512_widen_short_sat<Out, false>(check, one_range);
}
template ChunkFn avx512_widen_short<int8_t>(bool, bool, bool);
template ChunkFn avx512_widen_short<uint8_t>(bool, bool, bool);

template <class In, class Out>
ChunkFn avx512_widen_pixels(bool check, bool sat, bool one_range) {
  if (!check) {
    if constexpr (std::is_signed<Out>::value) {
      if (sat) return &widen_pixels<In, Out, kPixelNoCheck, true>;
    }
    return &widen_pixels<In, Out, kPixelNoCheck, false>;
  }
  // one shared [lo, hi] too: the per-channel compare took 23 us where the min/max took 26 (late 1x7x7x2048 +-2^23
  // kernel; small 1x56x56x64: 27 against 29)
  (void)one_range;
  if constexpr (std::is_signed<Out>::value) {
    if (sat) return &widen_pixels<In, Out, kPixelPerChannel, true>;
  }
  (void)sat;
  return &widen_pixels<In, Out, kPixelPerChannel, false>;
}
template ChunkFn avx512_widen_pixels<int32_t, int8_t>(bool, bool, bool);
template ChunkFn avx512_widen_pixels<int32_t, uint8_t>(bool, bool, bool);
template ChunkFn avx512_widen_pixels<int16_t, int16_t>(bool, bool, bool);

template <class In, class Out>
ChunkFn avx512_dp_periodic(bool check) {
  if constexpr (sizeof(In) <= 2) {
    return check ? &dp_periodic<In, Out, true> : &dp_periodic<In, Out, false>;
  } else {
    (void)check;
    return nullptr;
  }
}

#define FXBN_ROWS(M, In, Out) template ChunkFn avx512_rows<M, In, Out>(bool, bool, bool);
#define FXBN_PERIODIC(X, In, Out) \
  template ChunkFn avx512_widen_periodic<In, Out>(bool, bool, bool); template ChunkFn avx512_dp_periodic<In, Out>(bool);
FXBN_FOR_MUL_IN_OUT(FXBN_ROWS)
FXBN_FOR_IN_OUT(FXBN_PERIODIC, _)
#undef FXBN_ROWS
#undef FXBN_PERIODIC

}  // namespace detail
}  // namespace fxbn

#endif  // FXBN_X86_DISPATCH
