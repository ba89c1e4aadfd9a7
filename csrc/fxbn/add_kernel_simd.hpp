// Private to the add kernel (add_kernel.cpp, add_kernel_avx2.cpp, add_kernel_avx512.cpp): the hand-written bodies
// for two 8-bit inputs and a 32-bit accumulator.
//
// Each 128-bit lane of 16 elements is processed the same way on both ISAs (so one lemma covers both):
//   u = x ^ 0x80 for int8 inputs (u = x + 128 in [0, 255]; the 128*A of each signed input is folded into B'),
//   lo = vpunpcklbw(u1, u2), hi = vpunpckhbw(u1, u2)       (bytes u1[e], u2[e] of elements e = 0..7 / 8..15),
//   p_k = vpshufb(lo | hi, ...)                              (dword j = zero-extended 16-bit pair (u1[e], u2[e]),
//                                                             e = 4k + j),
//   v = (vpmaddwd(p, (H1, H2)) << 16) + vpmaddwd(p, (L1, L2)) + B'   (mod 2^32; A = H*2^16 + L, L signed 16-bit),
//   q = vpsrad(v, s), then vpackssdw (+ vpacksswb / vpackuswb) and a min/max on the narrow lanes: the packs undo
//   the element order of the pshufb split, the saturation is monotone, so the narrow clamp equals the 32-bit clamp
//   (left out when [qmin, qmax] is Out's whole range: the packs saturate to it).
// The fold body (8-bit outputs, split coefficients with s >= 16 and |h1| + |h2| <= 128, the common int8 layer):
//   t = vpackssdw(vpsrad(vpmaddwd(p0, (L1, L2)) + B', 16), same for p1)   (floor(T / 2^16) of the wrapped low sum T,
//                                                                          exact in 16 bits),
//   t = vpsraw(t + vpmaddubsw(lo, (h1, h2) bytes), s - 16)               (modulo 2^16: floor(v / 2^s) since the
//                                                                          exact v fits 32 bits; no saturation in
//                                                                          vpmaddubsw: 255*(|h1| + |h2|) < 2^15),
//   then vpacksswb / vpackuswb.  The lemma is ``add8_fold``.  With AVX512_VNNI, vpdpwssd fuses vpmaddwd + B'.
// Everything is exact modulo 2^32 and the solver's bound (A1*x1 + A2*x2 + B within 32 bits over the box) makes the
// wrapped v the exact sum.  The lemma is ``add8_lanes`` in verify/lemmas.py.
#pragma once

#include <cstdint>

namespace fxbn {
namespace addsimd {

struct Coefs {
  int16_t h1 = 0, h2 = 0, l1 = 0, l2 = 0;  // A_i = h_i*2^16 + l_i modulo 2^32 (l_i the sign-extended low 16 bits)
  int32_t bias = 0;                        // B' = B - 128*A_i for each int8 input (modulo 2^32)
  bool split = false;                      // some h_i != 0: two vpmaddwd per pair vector, else one
  bool fold = false;                       // split, s >= 16, |h1| + |h2| <= 128: the high halves by vpmaddubsw
  bool vnni = false;                       // AVX-512 body: vpdpwssd for vpmaddwd + bias (set by the dispatcher)
  int shift = 0;
  int32_t qmin = 0, qmax = 0;
  int32_t lo1 = 0, hi1 = 0, lo2 = 0, hi2 = 0;  // the proven box clipped to the input types
};

// 32-bit two's complement arithmetic on int64 parameters (wrapping, no undefined behaviour).
inline int32_t wrap32(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v))); }

inline Coefs make_coefs(int64_t a1, int64_t a2, int64_t b, int s, int64_t qmin, int64_t qmax, bool signed1,
                        bool signed2) {
  Coefs c;
  const auto split = [](int64_t a, int16_t* h, int16_t* l) {
    const uint32_t u = static_cast<uint32_t>(static_cast<uint64_t>(a));
    *l = static_cast<int16_t>(static_cast<uint16_t>(u & 0xFFFFu));
    *h = static_cast<int16_t>(static_cast<uint16_t>((u - static_cast<uint32_t>(static_cast<int32_t>(*l))) >> 16));
  };
  split(a1, &c.h1, &c.l1);
  split(a2, &c.h2, &c.l2);
  c.split = c.h1 != 0 || c.h2 != 0;
  const auto mag = [](int16_t v) { return v < 0 ? -static_cast<int>(v) : static_cast<int>(v); };
  c.fold = c.split && s >= 16 && mag(c.h1) + mag(c.h2) <= 128 && c.h1 <= 127 && c.h2 <= 127;
  // A*x = A*(u - 128) for a signed input: B' = B - 128*A (modulo 2^32)
  uint32_t bb = static_cast<uint32_t>(static_cast<uint64_t>(b));
  if (signed1) bb -= 128u * static_cast<uint32_t>(static_cast<uint64_t>(a1));
  if (signed2) bb -= 128u * static_cast<uint32_t>(static_cast<uint64_t>(a2));
  c.bias = static_cast<int32_t>(bb);
  c.shift = s;
  c.qmin = static_cast<int32_t>(qmin);
  c.qmax = static_cast<int32_t>(qmax);
  return c;
}

// The dword of the 16-bit pair (a, b) for vpmaddwd: a in the low word.
inline int32_t pair32(int16_t a, int16_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(a)) |
                              (static_cast<uint32_t>(static_cast<uint16_t>(b)) << 16));
}

// One scalar element with the same wrapping arithmetic (the AVX2 body's tail).
template <class T1, class T2>
inline int32_t scalar_v(T1 x1, T2 x2, int64_t a1, int64_t a2, int64_t b, int s) {
  const auto u = [](int64_t v) { return static_cast<uint32_t>(static_cast<uint64_t>(v)); };
  const uint32_t v = u(a1) * u(static_cast<int64_t>(x1)) + u(a2) * u(static_cast<int64_t>(x2)) + u(b);
  return static_cast<int32_t>(v) >> (s > 31 ? 31 : s);
}

// y[i] = clamp((A1*x1[i] + A2*x2[i] + B) >> s) for i < len; with check, returns true when some x1[i] is outside
// [lo1, hi1] or x2[i] outside [lo2, hi2] (outputs are written anyway).  T1, T2: int8_t / uint8_t; TO: int8_t,
// uint8_t, int16_t, uint16_t.  a1, a2, b: the exact parameters (the scalar tail of the AVX2 body).
template <class T1, class T2, class TO>
bool add8_avx512(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c, bool check);
template <class T1, class T2, class TO>
bool add8_avx2(const T1* x1, const T2* x2, TO* y, int64_t len, const Coefs& c, bool check, int64_t a1, int64_t a2,
               int64_t b);

}  // namespace addsimd
}  // namespace fxbn
