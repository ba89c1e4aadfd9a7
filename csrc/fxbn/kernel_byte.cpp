// The 8-bit template: 8-bit -> 8-bit channel-last layers in 16-bit lanes.
//
// Per element the byte bodies (kernel_avx2.cpp, kernel_avx512.cpp) run one fixed instruction sequence whose
// per-channel parameters sit in periodic tables (kernel_impl.hpp, byte_template):
//     w = (x ^ flip) << 8;  u = mulhi_u16(w, m);  v = sat_u16((u + p) mod 2^16 - n);  q = mulhi_u16(v, sm);
//     y = clamp(packus(q), qmin, qmax)      (int8 outputs on bytes biased by 128)
// With sm = 2^(16 - S), ignoring wrap and saturation, floor((floor(x'*m / 2^8) + K) / 2^S) = floor((x'*m + 2^8*K) /
// 2^(8 + S)) for K = p - n: the fixed-point form with A = m, B = 2^8*K, s = 8 + S, so the search starts from the
// solver's A, B, s rescaled to s = 8 + S.  Nothing here trusts that argument or the search: parameters enter a
// table only through byte_template_check, which evaluates byte_template -- the bodies' lanes, instruction by
// instruction (the QF_BV lemma byte_template ties the SIMD bodies to it) -- on every input of the channel's range
// (at most 256) against the kernel's proven output clamp((A*x + B) >> s, qmin, qmax).  An exhaustive check over a
// finite domain is a proof; channels that fail it (no parameters found) keep the exact formula in the bodies'
// fix-up pass.
#include "kernel_impl.hpp"

#include <memory>
#include <mutex>
#include <numeric>

namespace fxbn {
namespace detail {
namespace {

constexpr int64_t kSearchWindow = 128;  // multipliers tried on each side of the rescaled A, per shift S

int64_t exact_output(int64_t a, int64_t b, int32_t s, int64_t x, int64_t qmin, int64_t qmax) {
  return fixed_point<Mul::mul64, int64_t>(x, a, b, std::min<int64_t>(s, 63), qmin, qmax);
}

// One candidate multiplier m at shift S: the interval of K = p - n that puts every in-range input on its biased
// target F (mirrored inputs x' = xbits ^ flip, F nondecreasing in x'), then lane = (m, max(K, 0), max(-K, 0)).
bool candidate(ByteLane& lane, int S, uint32_t m, const int32_t* target, uint8_t qlo, uint8_t qhi) {
  int64_t lo_k = -65535, hi_k = 65535;
  const int64_t unit = int64_t{1} << S;
  for (int xp = 0; xp < 256; ++xp) {
    const int32_t F = target[xp];
    if (F < 0) continue;  // not in the range
    const int64_t u = (static_cast<int64_t>(xp) * 256 * m) >> 16;
    hi_k = std::min(hi_k, 65535 - u);  // vpaddw must not wrap
    if (qlo == qhi) continue;
    if (F > qlo) lo_k = std::max(lo_k, F * unit - u);
    if (F < qhi) hi_k = std::min(hi_k, (F + 1) * unit - 1 - u);
  }
  if (lo_k > hi_k) return false;
  // the K nearest 0: K = 0 needs neither vpaddw nor vpsubusw, and a layer whose lanes all have n = 0 (K >= 0)
  // runs without the vpsubusw (ByteJob::sub)
  const int64_t K = std::min(std::max(int64_t{0}, lo_k), hi_k);
  lane.m = static_cast<uint16_t>(m);
  lane.p = static_cast<uint16_t>(K > 0 ? K : 0);
  lane.n = static_cast<uint16_t>(K < 0 ? -K : 0);
  lane.sm = static_cast<uint16_t>(1u << (16 - S));
  return true;
}

}  // namespace

bool byte_template_check(const ByteLane& lane, bool in_signed, bool out_signed, int64_t a, int64_t b, int32_t s,
                         int64_t lo, int64_t hi, int64_t qmin, int64_t qmax) {
  const uint8_t ob = out_signed ? 0x80 : 0;
  const int64_t tmin = in_signed ? -128 : 0, tmax = in_signed ? 127 : 255;
  const int64_t omin = out_signed ? -128 : 0, omax = out_signed ? 127 : 255;
  if (qmin > qmax || qmin < omin || qmax > omax) return false;
  const uint8_t qlo = static_cast<uint8_t>(qmin + ob), qhi = static_cast<uint8_t>(qmax + ob);
  for (int64_t x = std::max(lo, tmin); x <= std::min(hi, tmax); ++x) {
    const uint8_t want = static_cast<uint8_t>(exact_output(a, b, s, x, qmin, qmax));
    if (byte_template(lane, static_cast<uint8_t>(x), qlo, qhi, ob) != want) return false;
  }
  return true;
}

std::vector<bool> byte_template_search(bool in_signed, bool out_signed, int64_t channels, const int64_t* a,
                                       const int64_t* b, const int32_t* s, const int64_t* lo, const int64_t* hi,
                                       int64_t qmin, int64_t qmax, std::vector<ByteLane>& lanes) {
  lanes.assign(static_cast<size_t>(channels), ByteLane{});
  std::vector<bool> ok(static_cast<size_t>(channels), false);
  const uint8_t ob = out_signed ? 0x80 : 0, base = in_signed ? 0x80 : 0;
  const int64_t omin = out_signed ? -128 : 0, omax = out_signed ? 127 : 255;
  if (qmin > qmax || qmin < omin || qmax > omax) return ok;
  const uint8_t qlo = static_cast<uint8_t>(qmin + ob), qhi = static_cast<uint8_t>(qmax + ob);
  const int64_t tmin = in_signed ? -128 : 0, tmax = in_signed ? 127 : 255;
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t ac = a[c];
    if (ac == std::numeric_limits<int64_t>::min()) continue;
    const uint8_t flip = static_cast<uint8_t>(ac >= 0 ? base : base ^ 0xFF);
    int32_t target[256];  // biased output by mirrored input x' = xbits ^ flip; -1 outside the range
    std::fill(target, target + 256, -1);
    for (int64_t x = std::max(lo[c], tmin); x <= std::min(hi[c], tmax); ++x) {
      const uint8_t xp = static_cast<uint8_t>(static_cast<uint8_t>(x) ^ flip);
      target[xp] = static_cast<int32_t>(exact_output(ac, b[c], s[c], x, qmin, qmax) + ob);
    }
    const uint64_t mag = static_cast<uint64_t>(ac >= 0 ? ac : -ac);
    const int sc = std::min(s[c], 63);
    bool found = false;
    for (int S = 15; S >= 1 && !found; --S) {
      const int t = 8 + S;  // m ~ |A| * 2^(t - s)
      uint64_t m0;
      if (sc >= t) {
        m0 = sc - t >= 64 ? 0 : mag >> (sc - t);
      } else {
        if (mag > (uint64_t{65535} >> (t - sc))) continue;
        m0 = mag << (t - sc);
      }
      if (m0 > 65536) continue;
      // candidates by distance from m0: the feasible m of a hard channel (s >= 12) can be a few units off
      for (int64_t k = 0; k <= 2 * kSearchWindow && !found; ++k) {
        const int64_t m = static_cast<int64_t>(m0) + (k % 2 ? (k + 1) / 2 : -k / 2);
        if (m < 0 || m > 65535) continue;
        ByteLane lane;
        lane.flip = flip;
        if (!candidate(lane, S, static_cast<uint32_t>(m), target, qlo, qhi)) continue;
        // the only way parameters enter the tables: the exhaustive check on every input of the range
        if (byte_template_check(lane, in_signed, out_signed, ac, b[c], s[c], lo[c], hi[c], qmin, qmax)) {
          lanes[static_cast<size_t>(c)] = lane;
          ok[static_cast<size_t>(c)] = true;
          found = true;
        }
      }
    }
  }
  return ok;
}

// ------------------------------------------------------------------------------------------------ the cache
// Verified lanes per (input, output) signedness, and tables per (signedness, channels, inner, width).
struct ByteChannels {
  bool in_signed, out_signed;
  std::vector<ByteLane> lanes;
  std::vector<bool> ok;
  std::vector<uint8_t> ok_bytes;  // ok as bytes (ByteJob::lane_ok)
  int64_t count = 0;
};

struct BytePlan {
  bool in_signed, out_signed;
  int64_t channels, inner, width;
  bool check;
  Table<uint8_t> tab;
  std::vector<int64_t> a, b, s, lo, hi, fix;
  std::vector<uint8_t> lut;  // channels without a template: 256 exact output bytes per channel (by input bits)
  bool flip = false, sub = false;
  ByteJob job;
};

}  // namespace detail

KernelCache::KernelCache() = default;
KernelCache::~KernelCache() = default;

KernelCache* new_kernel_cache() { return new KernelCache(); }
void delete_kernel_cache(KernelCache* cache) { delete cache; }

int64_t byte_template_channels(KernelCache* cache, DType in_type, DType out_type) {
  if (cache == nullptr) return -1;
  std::lock_guard<std::mutex> lock(cache->mu);
  for (const auto& ch : cache->channels) {
    if (ch->in_signed == (in_type == DType::int8) && ch->out_signed == (out_type == DType::int8)) return ch->count;
  }
  return -1;
}

void byte_template_params(bool in_signed, bool out_signed, int64_t channels, const int64_t* multiplier,
                          const int64_t* bias, const int32_t* shift, const int64_t* lo, const int64_t* hi,
                          int64_t qmin, int64_t qmax, bool find, int32_t* params, int8_t* ok) {
  using detail::ByteLane;
  std::vector<ByteLane> lanes(static_cast<size_t>(channels));
  if (find) {
    detail::byte_template_search(in_signed, out_signed, channels, multiplier, bias, shift, lo, hi, qmin, qmax, lanes);
  }
  for (int64_t c = 0; c < channels; ++c) {
    ByteLane& l = lanes[static_cast<size_t>(c)];
    int32_t* q = params + 5 * c;
    if (find) {
      q[0] = l.m, q[1] = l.p, q[2] = l.n, q[3] = l.sm, q[4] = l.flip;
    } else {
      l.m = static_cast<uint16_t>(q[0]), l.p = static_cast<uint16_t>(q[1]), l.n = static_cast<uint16_t>(q[2]);
      l.sm = static_cast<uint16_t>(q[3]), l.flip = static_cast<uint8_t>(q[4]);
    }
    ok[c] = detail::byte_template_check(l, in_signed, out_signed, multiplier[c], bias[c], shift[c], lo[c], hi[c],
                                        qmin, qmax);
  }
}

namespace detail {

namespace {

// The verified lanes for this signedness (searched on first use); the caller holds cache->mu.
ByteChannels* byte_channels(KernelCache* cache, bool in_signed, bool out_signed, int64_t channels,
                            const KernelParams& p) {
  for (const auto& ch : cache->channels) {
    if (ch->in_signed == in_signed && ch->out_signed == out_signed) return ch.get();
  }
  auto made = std::make_unique<ByteChannels>();
  made->in_signed = in_signed;
  made->out_signed = out_signed;
  made->ok = byte_template_search(in_signed, out_signed, channels, p.multiplier, p.bias, p.shift, p.lo, p.hi, p.qmin,
                                  p.qmax, made->lanes);
  made->count = std::count(made->ok.begin(), made->ok.end(), true);
  made->ok_bytes.assign(made->ok.begin(), made->ok.end());
  cache->channels.push_back(std::move(made));
  return cache->channels.back().get();
}

// The plan's exact-formula parameters, range flag and fix-up tables (channels without a verified lane).
void byte_plan_exact(BytePlan& pl, const ByteChannels& chs, bool in_signed, int64_t channels,
                     const KernelParams& p) {
  const int64_t tmin = in_signed ? -128 : 0, tmax = in_signed ? 127 : 255;
  pl.check = false;
  for (int64_t c = 0; c < channels; ++c) {
    pl.a.push_back(p.multiplier[c]);
    pl.b.push_back(p.bias[c]);
    pl.s.push_back(std::min(p.shift[c], 63));
    pl.lo.push_back(p.lo[c]);
    pl.hi.push_back(p.hi[c]);
    pl.check |= p.lo[c] > tmin || p.hi[c] < tmax;
  }
  pl.lut.assign(static_cast<size_t>(channels * 256), 0);
  for (int64_t c = 0; c < channels; ++c) {
    if (chs.ok[static_cast<size_t>(c)]) continue;
    for (int v = 0; v < 256; ++v) {  // the exact formula on every input value (out-of-range ones are reported)
      const int64_t xv = in_signed ? static_cast<int8_t>(v) : v;
      pl.lut[static_cast<size_t>(c * 256 + v)] =
          static_cast<uint8_t>(exact_output(p.multiplier[c], p.bias[c], p.shift[c], xv, p.qmin, p.qmax));
    }
  }
  pl.flip = pl.sub = false;
  for (int64_t c = 0; c < channels; ++c) {
    const ByteLane& l = chs.lanes[static_cast<size_t>(c)];
    pl.flip |= l.flip != 0;
    pl.sub |= l.n != 0;
  }
}

void byte_job_common(BytePlan& pl, const ByteChannels& chs, const KernelParams& p) {
  ByteJob& j = pl.job;
  j.channels = pl.channels;
  j.inner = pl.inner;
  j.qlo = static_cast<uint8_t>(p.qmin + (pl.out_signed ? 0x80 : 0));
  j.qhi = static_cast<uint8_t>(p.qmax + (pl.out_signed ? 0x80 : 0));
  j.a = pl.a.data();
  j.b = pl.b.data();
  j.s = pl.s.data();
  j.lo = pl.lo.data();
  j.hi = pl.hi.data();
  j.qmin = p.qmin;
  j.qmax = p.qmax;
  j.fix = pl.fix.data();
  j.nfix = static_cast<int64_t>(pl.fix.size() / 2);
  j.lut = pl.lut.data();
  j.flip = pl.flip;
  j.sub = pl.sub;
  j.clamp = !(j.qlo == 0 && j.qhi == 255);
  j.lanes = chs.lanes.data();
  j.lane_ok = chs.ok_bytes.data();
}

// The plan cached for this call's shape and body width (0: by rows), or nullptr.  Caller holds cache.mu.
const BytePlan* cached_plan(const KernelCache& cache, bool in_signed, bool out_signed, int64_t channels,
                            int64_t inner, int64_t width) {
  for (const auto& pl : cache.plans) {
    if (pl->in_signed == in_signed && pl->out_signed == out_signed && pl->channels == channels &&
        pl->inner == inner && pl->width == width) {
      return pl.get();
    }
  }
  return nullptr;
}

std::unique_ptr<BytePlan> new_plan(const ByteChannels& chs, bool in_signed, bool out_signed, int64_t channels,
                                   int64_t inner, int64_t width, const KernelParams& p) {
  auto pl = std::make_unique<BytePlan>();
  pl->in_signed = in_signed;
  pl->out_signed = out_signed;
  pl->channels = channels;
  pl->inner = inner;
  pl->width = width;
  byte_plan_exact(*pl, chs, in_signed, channels, p);
  return pl;
}

}  // namespace

const ByteJob* byte_rows_job(KernelCache* cache, bool in_signed, bool out_signed, int64_t channels, int64_t inner,
                             const KernelParams& p, bool* check) {
  std::lock_guard<std::mutex> lock(cache->mu);
  if (const BytePlan* found = cached_plan(*cache, in_signed, out_signed, channels, inner, 0)) {
    *check = found->check;
    return &found->job;
  }
  ByteChannels* chs = byte_channels(cache, in_signed, out_signed, channels, p);
  if (chs->count == 0) return nullptr;
  auto pl = new_plan(*chs, in_signed, out_signed, channels, inner, 0, p);
  byte_job_common(*pl, *chs, p);
  pl->job.tab = nullptr;
  pl->job.period = 0;
  *check = pl->check;
  cache->plans.push_back(std::move(pl));
  return &cache->plans.back()->job;
}

// The ByteJob of a cached plan (built on first use), or nullptr when no channel has verified parameters or the
// period would be too long.  p.lo / p.hi: the channel ranges within In.
const ByteJob* byte_plan_job(KernelCache* cache, bool in_signed, bool out_signed, int64_t channels, int64_t inner,
                             const KernelParams& p, bool* check) {
  constexpr int64_t W = 32;  // the AVX2 body's step: the tables are laid out per 32 elements
  constexpr int64_t kMaxBytePeriod = int64_t{1} << 15;
  const int64_t base = channels * inner;
  if (base > kMaxBytePeriod) return nullptr;
  const int64_t period = base / std::gcd(base, int64_t{64}) * 64;
  if (period > kMaxBytePeriod) return nullptr;
  std::lock_guard<std::mutex> lock(cache->mu);
  if (const BytePlan* found = cached_plan(*cache, in_signed, out_signed, channels, inner, W)) {
    *check = found->check;
    return &found->job;
  }
  ByteChannels* chs = byte_channels(cache, in_signed, out_signed, channels, p);
  if (chs->count == 0) return nullptr;
  auto pl = new_plan(*chs, in_signed, out_signed, channels, inner, W, p);
  pl->tab.assign(static_cast<size_t>(period / W * kByteTabVectors * W), 0);
  for (int64_t blk = 0; blk < period / W; ++blk) {
    uint8_t* t = pl->tab.data() + blk * kByteTabVectors * W;
    uint16_t* words = reinterpret_cast<uint16_t*>(t + 3 * W);  // 8 vectors of W/2 words
    for (int64_t i = 0; i < W; ++i) {
      const int64_t e = blk * W + i;
      const int64_t c = (e / inner) % channels;
      const ByteLane& l = chs->lanes[static_cast<size_t>(c)];
      t[i] = l.flip;
      t[W + i] = static_cast<uint8_t>(p.lo[c]);
      t[2 * W + i] = static_cast<uint8_t>(p.hi[c]);
      // element i of the block sits in word k of the low (h = 0) or high (h = 1) unpacked half
      const int64_t h = (i % 16) / 8, k = (i / 16) * 8 + i % 8;
      const uint16_t vals[4] = {l.m, l.p, l.n, l.sm};
      for (int v = 0; v < 4; ++v) words[(2 * v + h) * (W / 2) + k] = vals[v];
      if (!chs->ok[static_cast<size_t>(c)]) {
        pl->fix.push_back(e);
        pl->fix.push_back(c);
      }
    }
  }
  byte_job_common(*pl, *chs, p);
  pl->job.tab = pl->tab.data();
  pl->job.period = period;
  *check = pl->check;
  cache->plans.push_back(std::move(pl));
  return &cache->plans.back()->job;
}

}  // namespace detail
}  // namespace fxbn
