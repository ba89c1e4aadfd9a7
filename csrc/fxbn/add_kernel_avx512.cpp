// The AVX-512 (x86-64-v4: F/BW/VL) body of the two-input add for 8-bit inputs and a 32-bit accumulator: 64 elements
// per step as described in add_kernel_simd.hpp; the tail (< 64 elements) is one more step with masked loads and
// stores (a masked-out byte is neither read nor written, so nothing past the arrays is touched).  The range check
// is fused: running min/max of the raw input bytes (masked in the tail), compared with the box once per call.
#include "add_kernel_simd.hpp"

#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FXBN_NO_DISPATCH)
#define FXBN_ADD512 __attribute__((target("arch=x86-64-v4")))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

namespace fxbn {
namespace addsimd {
namespace {

#define FXBN_ADD512_INLINE FXBN_ADD512 __attribute__((always_inline)) inline

template <class T>
FXBN_ADD512_INLINE void minmax(__m512i* mn, __m512i* mx, __mmask64 k, __m512i v) {
  if constexpr (std::is_signed<T>::value) {
    *mn = _mm512_mask_min_epi8(*mn, k, *mn, v);
    *mx = _mm512_mask_max_epi8(*mx, k, *mx, v);
  } else {
    *mn = _mm512_mask_min_epu8(*mn, k, *mn, v);
    *mx = _mm512_mask_max_epu8(*mx, k, *mx, v);
  }
}

template <class T>
FXBN_ADD512_INLINE bool outside(__m512i mn, __m512i mx, int32_t lo, int32_t hi) {
  const __m512i l = _mm512_set1_epi8(static_cast<char>(lo)), h = _mm512_set1_epi8(static_cast<char>(hi));
  if constexpr (std::is_signed<T>::value) {
    return (_mm512_cmplt_epi8_mask(mn, l) | _mm512_cmpgt_epi8_mask(mx, h)) != 0;
  } else {
    return (_mm512_cmplt_epu8_mask(mn, l) | _mm512_cmpgt_epu8_mask(mx, h)) != 0;
  }
}

struct Consts {
  __m512i flip1, flip2, idx0, idx1, hpair, lpair, bias, q8lo, q8hi, q16lo, q16hi, perm0, perm1;
  __m128i count;
};

template <class T1, class T2>
FXBN_ADD512_INLINE Consts consts(const Coefs& c) {
  Consts k;
  k.flip1 = _mm512_set1_epi8(std::is_signed<T1>::value ? static_cast<char>(0x80) : 0);
  k.flip2 = _mm512_set1_epi8(std::is_signed<T2>::value ? static_cast<char>(0x80) : 0);
  // dword j of p0 = bytes (2j, zero, 2j + 1, zero) of the unpacked lane: the pair of element j; p1: element j + 4
  k.idx0 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, 7, -1));
  k.idx1 = _mm512_broadcast_i32x4(_mm_setr_epi8(8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1));
  k.hpair = _mm512_set1_epi32(pair32(c.h1, c.h2));
  k.lpair = _mm512_set1_epi32(pair32(c.l1, c.l2));
  k.bias = _mm512_set1_epi32(c.bias);
  k.q8lo = _mm512_set1_epi8(static_cast<char>(c.qmin));
  k.q8hi = _mm512_set1_epi8(static_cast<char>(c.qmax));
  k.q16lo = _mm512_set1_epi16(static_cast<int16_t>(c.qmin));
  k.q16hi = _mm512_set1_epi16(static_cast<int16_t>(c.qmax));
  // 16-bit outputs: the 128-bit lanes of (w01, w23) back in element order
  k.perm0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
  k.perm1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  k.count = _mm_cvtsi32_si128(c.shift);
  return k;
}

template <bool Split>
FXBN_ADD512_INLINE __m512i lanes(__m512i p, const Consts& k) {
  __m512i v = _mm512_add_epi32(_mm512_madd_epi16(p, k.lpair), k.bias);
  if constexpr (Split) v = _mm512_add_epi32(v, _mm512_slli_epi32(_mm512_madd_epi16(p, k.hpair), 16));
  return _mm512_sra_epi32(v, k.count);  // counts >= 32 fill with the sign: floor for every s
}

// 64 elements (the low `take` under mask m) from the loaded bytes a, b to y.
template <class T1, class T2, class TO, bool Split>
FXBN_ADD512_INLINE void step(__m512i a, __m512i b, TO* y, __mmask64 m, const Consts& k) {
  a = _mm512_xor_si512(a, k.flip1);
  b = _mm512_xor_si512(b, k.flip2);
  const __m512i lo = _mm512_unpacklo_epi8(a, b), hi = _mm512_unpackhi_epi8(a, b);
  const __m512i r0 = lanes<Split>(_mm512_shuffle_epi8(lo, k.idx0), k);
  const __m512i r1 = lanes<Split>(_mm512_shuffle_epi8(lo, k.idx1), k);
  const __m512i r2 = lanes<Split>(_mm512_shuffle_epi8(hi, k.idx0), k);
  const __m512i r3 = lanes<Split>(_mm512_shuffle_epi8(hi, k.idx1), k);
  if constexpr (sizeof(TO) == 1) {
    const __m512i w01 = _mm512_packs_epi32(r0, r1), w23 = _mm512_packs_epi32(r2, r3);
    __m512i o;
    if constexpr (std::is_signed<TO>::value) {
      o = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(w01, w23), k.q8lo), k.q8hi);
    } else {
      o = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(w01, w23), k.q8lo), k.q8hi);
    }
    _mm512_mask_storeu_epi8(y, m, o);
  } else {
    __m512i w01, w23;
    if constexpr (std::is_signed<TO>::value) {
      w01 = _mm512_packs_epi32(r0, r1);
      w23 = _mm512_packs_epi32(r2, r3);
    } else {
      w01 = _mm512_packus_epi32(r0, r1);
      w23 = _mm512_packus_epi32(r2, r3);
    }
    __m512i o0 = _mm512_permutex2var_epi64(w01, k.perm0, w23), o1 = _mm512_permutex2var_epi64(w01, k.perm1, w23);
    if constexpr (std::is_signed<TO>::value) {
      o0 = _mm512_min_epi16(_mm512_max_epi16(o0, k.q16lo), k.q16hi);
      o1 = _mm512_min_epi16(_mm512_max_epi16(o1, k.q16lo), k.q16hi);
    } else {
      o0 = _mm512_min_epu16(_mm512_max_epu16(o0, k.q16lo), k.q16hi);
      o1 = _mm512_min_epu16(_mm512_max_epu16(o1, k.q16lo), k.q16hi);
    }
    _mm512_mask_storeu_epi16(y, static_cast<__mmask32>(m), o0);
    _mm512_mask_storeu_epi16(y + 32, static_cast<__mmask32>(m >> 32), o1);
  }
}

template <class T1, class T2, class TO, bool Split, bool Check>
FXBN_ADD512 bool run(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c) {
  const Consts k = consts<T1, T2>(c);
  __m512i mn1 = _mm512_set1_epi8(static_cast<char>(c.lo1)), mx1 = _mm512_set1_epi8(static_cast<char>(c.lo1));
  __m512i mn2 = _mm512_set1_epi8(static_cast<char>(c.lo2)), mx2 = _mm512_set1_epi8(static_cast<char>(c.lo2));
  int64_t i = 0;
  for (; i + 64 <= len; i += 64) {
    const __m512i a = _mm512_loadu_si512(x1 + i), b = _mm512_loadu_si512(x2 + i);
    if constexpr (Check) {
      minmax<T1>(&mn1, &mx1, ~__mmask64{0}, a);
      minmax<T2>(&mn2, &mx2, ~__mmask64{0}, b);
    }
    step<T1, T2, TO, Split>(a, b, y + i, ~__mmask64{0}, k);
  }
  if (i < len) {
    const __mmask64 m = (~__mmask64{0}) >> (64 - (len - i));
    const __m512i a = _mm512_maskz_loadu_epi8(m, x1 + i), b = _mm512_maskz_loadu_epi8(m, x2 + i);
    if constexpr (Check) {
      minmax<T1>(&mn1, &mx1, m, a);
      minmax<T2>(&mn2, &mx2, m, b);
    }
    step<T1, T2, TO, Split>(a, b, y + i, m, k);
  }
  if constexpr (Check) return outside<T1>(mn1, mx1, c.lo1, c.hi1) || outside<T2>(mn2, mx2, c.lo2, c.hi2);
  return false;
}

}  // namespace

template <class T1, class T2, class TO>
bool add8_avx512(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c, bool check) {
  if (c.split) {
    return check ? run<T1, T2, TO, true, true>(x1, x2, y, len, c) : run<T1, T2, TO, true, false>(x1, x2, y, len, c);
  }
  return check ? run<T1, T2, TO, false, true>(x1, x2, y, len, c) : run<T1, T2, TO, false, false>(x1, x2, y, len, c);
}

#define FXBN_ADD512_INST(T1, T2)                                                                   \
  template bool add8_avx512<T1, T2, int8_t>(const T1*, const T2*, int8_t*, int64_t, const Coefs&, bool);   \
  template bool add8_avx512<T1, T2, uint8_t>(const T1*, const T2*, uint8_t*, int64_t, const Coefs&, bool); \
  template bool add8_avx512<T1, T2, int16_t>(const T1*, const T2*, int16_t*, int64_t, const Coefs&, bool); \
  template bool add8_avx512<T1, T2, uint16_t>(const T1*, const T2*, uint16_t*, int64_t, const Coefs&, bool);
FXBN_ADD512_INST(int8_t, int8_t)
FXBN_ADD512_INST(int8_t, uint8_t)
FXBN_ADD512_INST(uint8_t, int8_t)
FXBN_ADD512_INST(uint8_t, uint8_t)
#undef FXBN_ADD512_INST

}  // namespace addsimd
}  // namespace fxbn

#endif
