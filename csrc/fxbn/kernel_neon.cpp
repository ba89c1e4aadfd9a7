// The hand-written NEON bodies (AArch64 Advanced SIMD, part of the base architecture: no run-time detection), 16
// elements per step, for the 32-bit accumulator and the 64-bit one with a 32-bit multiplier (mul64 keeps the
// portable loop):
//   mul32  acc = B + A*x (mod 2^32): smlal/smlal2 (vmlal_s16) on the 16-bit widened input where the input is 8/16-bit
//          and A fits int16 (by rows), else mla (vmlaq_s32) on int32 lanes; sshl (vshlq_s32) by -s, which is an
//          arithmetic right shift by s.
//   widen  acc = B + A*x (mod 2^64): smlal/smlal2 (vmlal_s32: 32x32->64, exact); sshl (vshlq_s64) by -s; sqxtn
//          (vqmovn_s64) saturates to int32 -- qmin and qmax fit int32 (sizeof(Out) <= 4), so clamping the saturated
//          value clamps the value itself, and no 64-bit min/max is needed.
// The narrowing store saturates step by step (sqxtn / sqxtun: int32 -> int16 / uint16, int16 -> int8 / uint8), which
// keeps every value inside Out's range that was in it, then clamps on the narrow lanes (16 per instruction for 8-bit
// outputs); for int8 / int16 outputs whose [qmin, qmax] is the whole type the saturation is the clamp.  By rows (one
// channel per row: A, B, s broadcast; the range check a min/max of the row in the input's own lanes) and with the
// periodic tables of channel-last layouts (per-lane A, B, s and a per-lane range compare).  Picked by kernel.cpp's
// dispatch (kernel ISA "neon"; FXBN_ISA=baseline selects the portable loops); -DFXBN_NO_DISPATCH and other
// architectures compile this file to nothing.  The arithmetic of each body is a QF_BV lemma in verify/lemmas.py
// (neon_mul32, neon_widen, neon_narrow).  Its speed has not been measured (no ARM machine; qemu timings mean nothing).
#include "kernel_impl.hpp"

#if FXBN_NEON_DISPATCH

#include <arm_neon.h>

namespace fxbn {
namespace detail {
namespace {

// 16 inputs in In's own lanes (8-bit: one vector, int16: two, int32: four): the range check runs there.
template <class In>
struct Block;

template <>
struct Block<int8_t> {
  int8x16_t v;
  explicit Block(const int8_t* p) : v(vld1q_s8(p)) {}
  int16x8_t w16(int h) const { return h ? vmovl_high_s8(v) : vmovl_s8(vget_low_s8(v)); }  // elements 8h..8h+7
  uint32x4_t outside(const Block& lo, const Block& hi) const {
    return vreinterpretq_u32_u8(vorrq_u8(vcltq_s8(v, lo.v), vcgtq_s8(v, hi.v)));
  }
};

template <>
struct Block<uint8_t> {
  uint8x16_t v;
  explicit Block(const uint8_t* p) : v(vld1q_u8(p)) {}
  // 0..255 zero-extended: the same value read as int16
  int16x8_t w16(int h) const { return vreinterpretq_s16_u16(h ? vmovl_high_u8(v) : vmovl_u8(vget_low_u8(v))); }
  uint32x4_t outside(const Block& lo, const Block& hi) const {
    return vreinterpretq_u32_u8(vorrq_u8(vcltq_u8(v, lo.v), vcgtq_u8(v, hi.v)));
  }
};

template <>
struct Block<int16_t> {
  int16x8_t v[2];
  explicit Block(const int16_t* p) : v{vld1q_s16(p), vld1q_s16(p + 8)} {}
  int16x8_t w16(int h) const { return v[h]; }
  uint32x4_t outside(const Block& lo, const Block& hi) const {
    const uint16x8_t m0 = vorrq_u16(vcltq_s16(v[0], lo.v[0]), vcgtq_s16(v[0], hi.v[0]));
    const uint16x8_t m1 = vorrq_u16(vcltq_s16(v[1], lo.v[1]), vcgtq_s16(v[1], hi.v[1]));
    return vreinterpretq_u32_u16(vorrq_u16(m0, m1));
  }
};

template <>
struct Block<int32_t> {
  int32x4_t v[4];
  explicit Block(const int32_t* p) : v{vld1q_s32(p), vld1q_s32(p + 4), vld1q_s32(p + 8), vld1q_s32(p + 12)} {}
  uint32x4_t outside(const Block& lo, const Block& hi) const {
    uint32x4_t m = vdupq_n_u32(0);
    for (int k = 0; k < 4; ++k) m = vorrq_u32(m, vorrq_u32(vcltq_s32(v[k], lo.v[k]), vcgtq_s32(v[k], hi.v[k])));
    return m;
  }
};

// Elements 4k..4k+3 as int32 lanes (sxtl / sxtl2 of the 16-bit widening).
template <class In>
FXBN_INLINE int32x4_t w32(const Block<In>& b, int k) {
  if constexpr (sizeof(In) == 4) {
    return b.v[k];
  } else {
    const int16x8_t h = b.w16(k >> 1);
    return (k & 1) ? vmovl_high_s16(h) : vmovl_s16(vget_low_s16(h));
  }
}

// Running min and max of a row in In's lanes, reduced once per row.
template <class In>
struct MinMax;

template <>
struct MinMax<int8_t> {
  int8x16_t mn = vdupq_n_s8(std::numeric_limits<int8_t>::max()), mx = vdupq_n_s8(std::numeric_limits<int8_t>::min());
  void add(const Block<int8_t>& b) {
    mn = vminq_s8(mn, b.v);
    mx = vmaxq_s8(mx, b.v);
  }
  bool outside(int8_t lo, int8_t hi) const { return (vminvq_s8(mn) < lo) | (vmaxvq_s8(mx) > hi); }
};

template <>
struct MinMax<uint8_t> {
  uint8x16_t mn = vdupq_n_u8(std::numeric_limits<uint8_t>::max()), mx = vdupq_n_u8(0);
  void add(const Block<uint8_t>& b) {
    mn = vminq_u8(mn, b.v);
    mx = vmaxq_u8(mx, b.v);
  }
  bool outside(uint8_t lo, uint8_t hi) const { return (vminvq_u8(mn) < lo) | (vmaxvq_u8(mx) > hi); }
};

template <>
struct MinMax<int16_t> {
  int16x8_t mn = vdupq_n_s16(std::numeric_limits<int16_t>::max());
  int16x8_t mx = vdupq_n_s16(std::numeric_limits<int16_t>::min());
  void add(const Block<int16_t>& b) {
    mn = vminq_s16(mn, vminq_s16(b.v[0], b.v[1]));
    mx = vmaxq_s16(mx, vmaxq_s16(b.v[0], b.v[1]));
  }
  bool outside(int16_t lo, int16_t hi) const { return (vminvq_s16(mn) < lo) | (vmaxvq_s16(mx) > hi); }
};

template <>
struct MinMax<int32_t> {
  int32x4_t mn = vdupq_n_s32(std::numeric_limits<int32_t>::max());
  int32x4_t mx = vdupq_n_s32(std::numeric_limits<int32_t>::min());
  void add(const Block<int32_t>& b) {
    mn = vminq_s32(mn, vminq_s32(vminq_s32(b.v[0], b.v[1]), vminq_s32(b.v[2], b.v[3])));
    mx = vmaxq_s32(mx, vmaxq_s32(vmaxq_s32(b.v[0], b.v[1]), vmaxq_s32(b.v[2], b.v[3])));
  }
  bool outside(int32_t lo, int32_t hi) const { return (vminvq_s32(mn) < lo) | (vmaxvq_s32(mx) > hi); }
};

// sshl by a negative count: an arithmetic right shift (the count is the lane's signed low byte).
FXBN_INLINE int32x4_t shift_right32(int32x4_t v, int32x4_t neg_s) { return vshlq_s32(v, neg_s); }
FXBN_INLINE int64x2_t shift_right64(int64x2_t v, int64x2_t neg_s) { return vshlq_s64(v, neg_s); }

// Clamp bounds at every width the stores use.
struct Bounds {
  int32x4_t q32lo, q32hi;
  int16x8_t s16lo, s16hi;
  uint16x8_t u16lo, u16hi;
  int8x16_t s8lo, s8hi;
  uint8x16_t u8lo, u8hi;
};

Bounds bounds(int64_t qmin, int64_t qmax) {
  return {vdupq_n_s32(static_cast<int32_t>(qmin)),  vdupq_n_s32(static_cast<int32_t>(qmax)),
          vdupq_n_s16(static_cast<int16_t>(qmin)),  vdupq_n_s16(static_cast<int16_t>(qmax)),
          vdupq_n_u16(static_cast<uint16_t>(qmin)), vdupq_n_u16(static_cast<uint16_t>(qmax)),
          vdupq_n_s8(static_cast<int8_t>(qmin)),    vdupq_n_s8(static_cast<int8_t>(qmax)),
          vdupq_n_u8(static_cast<uint8_t>(qmin)),   vdupq_n_u8(static_cast<uint8_t>(qmax))};
}

// Stores 16 outputs from the int32 lanes q[0..3] (elements 0-3, 4-7, 8-11, 12-15, before the clamp): saturating
// narrows to Out's range, then a min/max to [qmin, qmax] on the narrow lanes (Sat: [qmin, qmax] is signed Out's whole
// range and the min/max are dropped).
template <class Out, bool Sat>
FXBN_INLINE void store16(Out* y, const int32x4_t q[4], const Bounds& b) {
  if constexpr (std::is_same<Out, int32_t>::value) {
    for (int k = 0; k < 4; ++k) vst1q_s32(y + 4 * k, vminq_s32(vmaxq_s32(q[k], b.q32lo), b.q32hi));
  } else if constexpr (std::is_same<Out, uint16_t>::value) {
    for (int h = 0; h < 2; ++h) {
      const uint16x8_t v = vqmovun_high_s32(vqmovun_s32(q[2 * h]), q[2 * h + 1]);
      vst1q_u16(y + 8 * h, vminq_u16(vmaxq_u16(v, b.u16lo), b.u16hi));
    }
  } else {
    const int16x8_t w0 = vqmovn_high_s32(vqmovn_s32(q[0]), q[1]);
    const int16x8_t w1 = vqmovn_high_s32(vqmovn_s32(q[2]), q[3]);
    if constexpr (std::is_same<Out, int16_t>::value) {
      if constexpr (Sat) {
        vst1q_s16(y, w0);
        vst1q_s16(y + 8, w1);
      } else {
        vst1q_s16(y, vminq_s16(vmaxq_s16(w0, b.s16lo), b.s16hi));
        vst1q_s16(y + 8, vminq_s16(vmaxq_s16(w1, b.s16lo), b.s16hi));
      }
    } else if constexpr (std::is_same<Out, int8_t>::value) {
      int8x16_t v = vqmovn_high_s16(vqmovn_s16(w0), w1);
      if constexpr (!Sat) v = vminq_s8(vmaxq_s8(v, b.s8lo), b.s8hi);
      vst1q_s8(y, v);
    } else {
      static_assert(std::is_same<Out, uint8_t>::value, "output type");
      const uint8x16_t v = vqmovun_high_s16(vqmovun_s16(w0), w1);
      vst1q_u8(y, vminq_u8(vmaxq_u8(v, b.u8lo), b.u8hi));
    }
  }
}

// The int32 lanes (before the clamp) of 16 elements, one channel (row) or one table entry per lane (periodic).
// mul32: a: A (int32, the low 32 bits of the multiplier suffice: the sum wraps mod 2^32 exactly), b: B, ns: -s.
FXBN_INLINE int32x4_t mul32_lanes(int32x4_t x, int32x4_t a, int32x4_t b, int32x4_t ns) {
  return shift_right32(vmlaq_s32(b, x, a), ns);
}

// widen: x, a int32; b0, b1: B of lanes 0-1 and 2-3; ns0, ns1: -s likewise.  sqxtn saturates to int32.
FXBN_INLINE int32x4_t widen_lanes(int32x4_t x, int32x4_t a, int64x2_t b0, int64x2_t b1, int64x2_t ns0,
                                  int64x2_t ns1) {
  const int64x2_t p0 = vmlal_s32(b0, vget_low_s32(x), vget_low_s32(a));
  const int64x2_t p1 = vmlal_high_s32(b1, x, a);
  return vqmovn_high_s64(vqmovn_s64(shift_right64(p0, ns0)), shift_right64(p1, ns1));
}

// By rows: one channel per row of `inner` elements; A, B, -s broadcast; the row's min/max checked once per row.
template <Mul M, class In, class Out, bool Check, bool Sat>
bool rows(const Job& j, int64_t begin, int64_t end) {
  using Acc = typename MulTypes<M>::Acc;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const Acc* const B = static_cast<const Acc*>(j.b);
  const Acc* const S = static_cast<const Acc*>(j.s);
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
    MinMax<In> mm;
    int64_t i = 0;
    if constexpr (M == Mul::mul32) {
      const int32x4_t bv = vdupq_n_s32(B[c]), ns = vdupq_n_s32(-S[c]);
      const bool a16 = a >= std::numeric_limits<int16_t>::min() && a <= std::numeric_limits<int16_t>::max();
      if (sizeof(In) <= 2 && a16) {
        if constexpr (sizeof(In) <= 2) {
          // 8/16-bit inputs, A within int16: smlal / smlal2 on the 16-bit lanes (B + x*A mod 2^32, exact products)
          const int16x8_t av = vdupq_n_s16(static_cast<int16_t>(a));
          for (; i + 16 <= n; i += 16) {
            const Block<In> blk(x + i);
            if constexpr (Check) mm.add(blk);
            int32x4_t v[4];
            for (int h = 0; h < 2; ++h) {
              const int16x8_t x16 = blk.w16(h);
              v[2 * h] = shift_right32(vmlal_s16(bv, vget_low_s16(x16), vget_low_s16(av)), ns);
              v[2 * h + 1] = shift_right32(vmlal_high_s16(bv, x16, av), ns);
            }
            store16<Out, Sat>(y + i, v, q);
          }
        }
      } else {
        const int32x4_t av = vdupq_n_s32(a);
        for (; i + 16 <= n; i += 16) {
          const Block<In> blk(x + i);
          if constexpr (Check) mm.add(blk);
          int32x4_t v[4];
          for (int k = 0; k < 4; ++k) v[k] = mul32_lanes(w32(blk, k), av, bv, ns);
          store16<Out, Sat>(y + i, v, q);
        }
      }
    } else {
      static_assert(M == Mul::widen, "mul32 or widen");
      const int32x4_t av = vdupq_n_s32(a);
      const int64x2_t bv = vdupq_n_s64(B[c]), ns = vdupq_n_s64(-S[c]);
      for (; i + 16 <= n; i += 16) {
        const Block<In> blk(x + i);
        if constexpr (Check) mm.add(blk);
        int32x4_t v[4];
        for (int k = 0; k < 4; ++k) v[k] = widen_lanes(w32(blk, k), av, bv, bv, ns, ns);
        store16<Out, Sat>(y + i, v, q);
      }
    }
    bool bad = false;
    if constexpr (Check) bad = mm.outside(LO[c], HI[c]);
    for (; i < n; ++i) {  // tail (< 16 elements)
      const In v = x[i];
      if constexpr (Check) bad |= (v < LO[c]) | (v > HI[c]);
      y[i] = static_cast<Out>(fixed_point<M, In>(v, a, B[c], S[c], j.qmin, j.qmax));
    }
    if (bad) return true;
    pos += n;
  }
  return false;
}

// Periodic tables (channel-last layouts and short rows): per-entry A (int32), B and s (Acc), lo and hi (In); the
// arithmetic of `rows` with per-lane operands (mla on int32 lanes for mul32), the range check a per-lane compare
// OR-ed into one mask.
template <Mul M, class In, class Out, bool Check, bool Sat>
bool periodic(const Job& j, int64_t begin, int64_t end) {
  using Acc = typename MulTypes<M>::Acc;
  const In* const xs = static_cast<const In*>(j.x);
  Out* const ys = static_cast<Out*>(j.y);
  const int32_t* const A = static_cast<const int32_t*>(j.a);
  const Acc* const B = static_cast<const Acc*>(j.b);
  const Acc* const S = static_cast<const Acc*>(j.s);
  const In* const LO = static_cast<const In*>(j.lo);
  const In* const HI = static_cast<const In*>(j.hi);
  const Bounds q = bounds(j.qmin, j.qmax);
  for (int64_t pos = begin; pos < end;) {
    const int64_t r = pos / j.period;
    const int64_t off = pos - r * j.period;
    const int64_t n = std::min(j.period - off, end - pos);
    const In* x = xs + pos;
    Out* y = ys + pos;
    uint32x4_t badv = vdupq_n_u32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const int64_t e = off + i;
      const Block<In> blk(x + i);
      if constexpr (Check) badv = vorrq_u32(badv, blk.outside(Block<In>(LO + e), Block<In>(HI + e)));
      int32x4_t v[4];
      for (int k = 0; k < 4; ++k) {
        const int64_t t = e + 4 * k;
        const int32x4_t av = vld1q_s32(A + t);
        if constexpr (M == Mul::mul32) {
          v[k] = mul32_lanes(w32(blk, k), av, vld1q_s32(B + t), vnegq_s32(vld1q_s32(S + t)));
        } else {
          static_assert(M == Mul::widen, "mul32 or widen");
          v[k] = widen_lanes(w32(blk, k), av, vld1q_s64(B + t), vld1q_s64(B + t + 2), vnegq_s64(vld1q_s64(S + t)),
                             vnegq_s64(vld1q_s64(S + t + 2)));
        }
      }
      store16<Out, Sat>(y + i, v, q);
    }
    bool bad = Check && vmaxvq_u32(badv) != 0;
    for (; i < n; ++i) {  // tail (< 16 elements)
      const int64_t e = off + i;
      const In v = x[i];
      if constexpr (Check) bad |= (v < LO[e]) | (v > HI[e]);
      y[i] = static_cast<Out>(fixed_point<M, In>(v, A[e], B[e], S[e], j.qmin, j.qmax));
    }
    if (bad) return true;
    pos += n;
  }
  return false;
}

}  // namespace

template <Mul M, class In, class Out>
ChunkFn neon_rows(bool check, bool sat) {
  if constexpr (M != Mul::mul64) {
    constexpr bool can_sat = std::is_signed<Out>::value && sizeof(Out) < 4;
    if (can_sat && sat) return check ? &rows<M, In, Out, true, can_sat> : &rows<M, In, Out, false, can_sat>;
    return check ? &rows<M, In, Out, true, false> : &rows<M, In, Out, false, false>;
  }
  (void)check;
  (void)sat;
  return nullptr;
}

template <Mul M, class In, class Out>
ChunkFn neon_periodic(bool check, bool sat) {
  if constexpr (M != Mul::mul64) {
    constexpr bool can_sat = std::is_signed<Out>::value && sizeof(Out) < 4;
    if (can_sat && sat) return check ? &periodic<M, In, Out, true, can_sat> : &periodic<M, In, Out, false, can_sat>;
    return check ? &periodic<M, In, Out, true, false> : &periodic<M, In, Out, false, false>;
  }
  (void)check;
  (void)sat;
  return nullptr;
}

#define FXBN_NEON(M, In, Out) \
  template ChunkFn neon_rows<M, In, Out>(bool, bool); template ChunkFn neon_periodic<M, In, Out>(bool, bool);
FXBN_FOR_MUL_IN_OUT(FXBN_NEON)
#undef FXBN_NEON

}  // namespace detail
}  // namespace fxbn

#endif  // FXBN_NEON_DISPATCH
