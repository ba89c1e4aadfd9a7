// The AVX2 body of the two-input add for 8-bit inputs and a 32-bit accumulator: 32 elements per step as described
// in add_kernel_simd.hpp (the same per-128-bit-lane instructions as the AVX-512 body); the tail (< 32 elements) is
// a scalar loop with the same wrapping arithmetic.  The range check is fused: running min/max of the raw input
// bytes, compared with the box once per call.
#include "add_kernel_simd.hpp"

#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FXBN_NO_DISPATCH)
#define FXBN_ADD256 __attribute__((target("avx2")))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

namespace fxbn {
namespace addsimd {
namespace {

#define FXBN_ADD256_INLINE FXBN_ADD256 __attribute__((always_inline)) inline

template <class T>
FXBN_ADD256_INLINE void minmax(__m256i* mn, __m256i* mx, __m256i v) {
  if constexpr (std::is_signed<T>::value) {
    *mn = _mm256_min_epi8(*mn, v);
    *mx = _mm256_max_epi8(*mx, v);
  } else {
    *mn = _mm256_min_epu8(*mn, v);
    *mx = _mm256_max_epu8(*mx, v);
  }
}

// Whether some byte of mn is below lo or some byte of mx above hi.
template <class T>
FXBN_ADD256_INLINE bool outside(__m256i mn, __m256i mx, int32_t lo, int32_t hi) {
  const __m256i l = _mm256_set1_epi8(static_cast<char>(lo)), h = _mm256_set1_epi8(static_cast<char>(hi));
  __m256i ok;
  if constexpr (std::is_signed<T>::value) {
    ok = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_max_epi8(mn, l), mn), _mm256_cmpeq_epi8(_mm256_min_epi8(mx, h), mx));
  } else {
    ok = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_max_epu8(mn, l), mn), _mm256_cmpeq_epi8(_mm256_min_epu8(mx, h), mx));
  }
  return _mm256_movemask_epi8(ok) != -1;
}

struct Consts {
  __m256i flip1, flip2, idx0, idx1, hpair, lpair, bias, q8lo, q8hi, q16lo, q16hi;
  __m128i count;
};

template <class T1, class T2>
FXBN_ADD256_INLINE Consts consts(const Coefs& c) {
  Consts k;
  k.flip1 = _mm256_set1_epi8(std::is_signed<T1>::value ? static_cast<char>(0x80) : 0);
  k.flip2 = _mm256_set1_epi8(std::is_signed<T2>::value ? static_cast<char>(0x80) : 0);
  k.idx0 = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, 7, -1,
                            0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, 7, -1);
  k.idx1 = _mm256_setr_epi8(8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1,
                            8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1);
  k.hpair = _mm256_set1_epi32(pair32(c.h1, c.h2));
  k.lpair = _mm256_set1_epi32(pair32(c.l1, c.l2));
  k.bias = _mm256_set1_epi32(c.bias);
  k.q8lo = _mm256_set1_epi8(static_cast<char>(c.qmin));
  k.q8hi = _mm256_set1_epi8(static_cast<char>(c.qmax));
  k.q16lo = _mm256_set1_epi16(static_cast<int16_t>(c.qmin));
  k.q16hi = _mm256_set1_epi16(static_cast<int16_t>(c.qmax));
  k.count = _mm_cvtsi32_si128(c.shift);
  return k;
}

template <bool Split>
FXBN_ADD256_INLINE __m256i lanes(__m256i p, const Consts& k) {
  __m256i v = _mm256_add_epi32(_mm256_madd_epi16(p, k.lpair), k.bias);
  if constexpr (Split) v = _mm256_add_epi32(v, _mm256_slli_epi32(_mm256_madd_epi16(p, k.hpair), 16));
  return _mm256_sra_epi32(v, k.count);
}

template <class T1, class T2, class TO, bool Split>
FXBN_ADD256_INLINE void step(__m256i a, __m256i b, TO* y, const Consts& k) {
  a = _mm256_xor_si256(a, k.flip1);
  b = _mm256_xor_si256(b, k.flip2);
  const __m256i lo = _mm256_unpacklo_epi8(a, b), hi = _mm256_unpackhi_epi8(a, b);
  const __m256i r0 = lanes<Split>(_mm256_shuffle_epi8(lo, k.idx0), k);
  const __m256i r1 = lanes<Split>(_mm256_shuffle_epi8(lo, k.idx1), k);
  const __m256i r2 = lanes<Split>(_mm256_shuffle_epi8(hi, k.idx0), k);
  const __m256i r3 = lanes<Split>(_mm256_shuffle_epi8(hi, k.idx1), k);
  if constexpr (sizeof(TO) == 1) {
    const __m256i w01 = _mm256_packs_epi32(r0, r1), w23 = _mm256_packs_epi32(r2, r3);
    __m256i o;
    if constexpr (std::is_signed<TO>::value) {
      o = _mm256_min_epi8(_mm256_max_epi8(_mm256_packs_epi16(w01, w23), k.q8lo), k.q8hi);
    } else {
      o = _mm256_min_epu8(_mm256_max_epu8(_mm256_packus_epi16(w01, w23), k.q8lo), k.q8hi);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), o);
  } else {
    __m256i w01, w23;
    if constexpr (std::is_signed<TO>::value) {
      w01 = _mm256_packs_epi32(r0, r1);
      w23 = _mm256_packs_epi32(r2, r3);
    } else {
      w01 = _mm256_packus_epi32(r0, r1);
      w23 = _mm256_packus_epi32(r2, r3);
    }
    // lanes of w01 hold elements 0..7 and 16..23, of w23 8..15 and 24..31
    __m256i o0 = _mm256_permute2x128_si256(w01, w23, 0x20), o1 = _mm256_permute2x128_si256(w01, w23, 0x31);
    if constexpr (std::is_signed<TO>::value) {
      o0 = _mm256_min_epi16(_mm256_max_epi16(o0, k.q16lo), k.q16hi);
      o1 = _mm256_min_epi16(_mm256_max_epi16(o1, k.q16lo), k.q16hi);
    } else {
      o0 = _mm256_min_epu16(_mm256_max_epu16(o0, k.q16lo), k.q16hi);
      o1 = _mm256_min_epu16(_mm256_max_epu16(o1, k.q16lo), k.q16hi);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), o0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 16), o1);
  }
}

template <class T1, class T2, class TO, bool Split, bool Check>
FXBN_ADD256 bool run(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c, int64_t a1, int64_t a2,
                     int64_t b) {
  const Consts k = consts<T1, T2>(c);
  __m256i mn1 = _mm256_set1_epi8(static_cast<char>(c.lo1)), mx1 = mn1;
  __m256i mn2 = _mm256_set1_epi8(static_cast<char>(c.lo2)), mx2 = mn2;
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    const __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + i));
    const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x2 + i));
    if constexpr (Check) {
      minmax<T1>(&mn1, &mx1, va);
      minmax<T2>(&mn2, &mx2, vb);
    }
    step<T1, T2, TO, Split>(va, vb, y + i, k);
  }
  bool bad = false;
  for (; i < len; ++i) {
    if constexpr (Check) bad |= x1[i] < c.lo1 || x1[i] > c.hi1 || x2[i] < c.lo2 || x2[i] > c.hi2;
    int32_t q = scalar_v(x1[i], x2[i], a1, a2, b, c.shift);
    q = q < c.qmin ? c.qmin : q;
    y[i] = static_cast<TO>(q > c.qmax ? c.qmax : q);
  }
  if constexpr (Check) return bad || outside<T1>(mn1, mx1, c.lo1, c.hi1) || outside<T2>(mn2, mx2, c.lo2, c.hi2);
  return false;
}

}  // namespace

template <class T1, class T2, class TO>
bool add8_avx2(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c, bool check, int64_t a1, int64_t a2,
               int64_t b) {
  if (c.split) {
    return check ? run<T1, T2, TO, true, true>(x1, x2, y, len, c, a1, a2, b)
                 : run<T1, T2, TO, true, false>(x1, x2, y, len, c, a1, a2, b);
  }
  return check ? run<T1, T2, TO, false, true>(x1, x2, y, len, c, a1, a2, b)
               : run<T1, T2, TO, false, false>(x1, x2, y, len, c, a1, a2, b);
}

#define FXBN_ADD256_INST1(T1, T2, TO) \
  template bool add8_avx2<T1, T2, TO>(const T1*, const T2*, TO*, int64_t, const Coefs&, bool, int64_t, int64_t, \
                                      int64_t);
#define FXBN_ADD256_INST(T1, T2)             \
  FXBN_ADD256_INST1(T1, T2, int8_t)          \
  FXBN_ADD256_INST1(T1, T2, uint8_t)         \
  FXBN_ADD256_INST1(T1, T2, int16_t)         \
  FXBN_ADD256_INST1(T1, T2, uint16_t)
FXBN_ADD256_INST(int8_t, int8_t)
FXBN_ADD256_INST(int8_t, uint8_t)
FXBN_ADD256_INST(uint8_t, int8_t)
FXBN_ADD256_INST(uint8_t, uint8_t)
#undef FXBN_ADD256_INST
#undef FXBN_ADD256_INST1

}  // namespace addsimd
}  // namespace fxbn

#endif
