// The AVX-512 (x86-64-v4: F/BW/VL) body of the two-input add for 8-bit inputs and a 32-bit accumulator: 64 elements
// per step as described in add_kernel_simd.hpp (per-lane code add_kernel_body.inc, shared with the AVX2 body); the
// tail (< 64 elements) is one more step with masked loads and stores.  The range check is fused: running min/max of
// the raw input bytes (masked in the tail), compared with the box once per call.  Two builds of the body
// (add_kernel_avx512.inc): plain x86-64-v4, and with AVX512_VNNI (Coefs::vnni, set from kernel_isa()).
#include "add_kernel_simd.hpp"

#include <limits>
#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FXBN_NO_DISPATCH)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace fxbn {
namespace addsimd {
namespace {
namespace v4 {
#define FXBN_ADD512_VNNI 0
#include "add_kernel_avx512.inc"
#undef FXBN_ADD512_VNNI
}  // namespace v4
}  // namespace
}  // namespace addsimd
}  // namespace fxbn
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4,avx512vnni")
namespace fxbn {
namespace addsimd {
namespace {
namespace vnni {
#define FXBN_ADD512_VNNI 1
#include "add_kernel_avx512.inc"
#undef FXBN_ADD512_VNNI
}  // namespace vnni
}  // namespace

template <class T1, class T2, class TO>
bool add8_avx512(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c, bool check) {
  if (c.vnni) return vnni::dispatch<T1, T2, TO, vnni::Run>(c, check, x1, x2, y, len);
  return v4::dispatch<T1, T2, TO, v4::Run>(c, check, x1, x2, y, len);
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
#pragma GCC pop_options

#endif
