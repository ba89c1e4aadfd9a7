#include "kernel_impl.hpp"

#include <algorithm>
#include <atomic>
#include <numeric>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// Runtime dispatch.  Every hot loop is an always-inline template (kernel_impl.hpp), instantiated inside thin wrappers
// compiled for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), AVX2 and the baseline, plus hand-written bodies for the paths the
// compiler does not do well, one file per instruction set: kernel_avx512.cpp (byte-table lookup with VBMI, vpdpwssd
// with VNNI, vpmuldq for 32x32->64 products) and kernel_avx2.cpp (vpmuldq, vpmaddwd, pack narrowing).
// A function-pointer table picks one body per call from the ISA chosen once at start-up (CPU detection, FXBN_ISA)
// or by set_kernel_isa: what GCC's target_clones does, with the choice made explicit so that the tests can run
// every body on one machine.  Other compilers and architectures (or -DFXBN_NO_DISPATCH) get the baseline only.
// AArch64: kernel_neon.cpp's NEON bodies (ISA "neon", always available there) or the portable loops ("baseline").

namespace fxbn {

// Platform facts the kernel relies on.
static_assert((-7 >> 1) == -4, "right shift of a negative integer must be arithmetic (floor division by 2^s)");
static_assert(static_cast<int32_t>(0xFFFFFFFFu) == -1, "two's complement conversion from unsigned is required");
static_assert(static_cast<int64_t>(0xFFFFFFFFFFFFFFFFull) == -1, "two's complement conversion from unsigned");

namespace detail {

constexpr size_t kKeptTables = 8;  // shapes per layer whose tables are kept

std::shared_ptr<const PreparedTables> find_tables(KernelCache* cache, const void* tag, int isa, int64_t channels,
                                                  int64_t inner) {
  if (cache == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(cache->mu);
  for (const auto& t : cache->tables) {
    if (t->tag == tag && t->isa == isa && t->channels == channels && t->inner == inner) return t;
  }
  return nullptr;
}

void keep_tables(KernelCache* cache, std::shared_ptr<const PreparedTables> t) {
  if (cache == nullptr) return;
  std::lock_guard<std::mutex> lock(cache->mu);
  if (cache->tables.size() >= kKeptTables) cache->tables.erase(cache->tables.begin());
  cache->tables.push_back(std::move(t));
}

}  // namespace detail

namespace {

// ------------------------------------------------------------------------------------------------ ISA selection
// vbmi: x86-64-v4 plus AVX512-VBMI and AVX512-VNNI (Ice Lake and later): 8-bit -> 8-bit rows become a 256-entry
// byte-permute table lookup; channel-last 8/16-bit inputs with 16-bit multipliers use one vpdpwssd for A*x + B.
enum class Isa : int { baseline = 0, avx2 = 1, v4 = 2, vbmi = 3, neon = 4 };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::vbmi: return "x86-64-v4+vbmi+vnni";
    case Isa::v4: return "x86-64-v4";
    case Isa::avx2: return "avx2";
    case Isa::neon: return "neon";
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
#if FXBN_NEON_DISPATCH
  if (isa == Isa::neon) return true;
#endif
  return isa == Isa::baseline;
}

Isa best_isa() {
  if (cpu_has(Isa::vbmi)) return Isa::vbmi;
  if (cpu_has(Isa::v4)) return Isa::v4;
  if (cpu_has(Isa::avx2)) return Isa::avx2;
  if (cpu_has(Isa::neon)) return Isa::neon;
  return Isa::baseline;
}

bool parse_isa(const char* name, Isa* out) {
  if (name == nullptr) return false;
  if (std::strcmp(name, "auto") == 0) {
    *out = best_isa();
    return true;
  }
  for (Isa isa : {Isa::vbmi, Isa::v4, Isa::avx2, Isa::neon, Isa::baseline}) {
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

using namespace detail;

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

// Per-row kernel for this ISA: a hand-written body (kernel_avx512.cpp, kernel_avx2.cpp) where one serves the case,
// else the compiler-vectorized ByRow.
template <Mul M, class In, class Out>
ChunkFn pick_rows(Isa isa, bool check, bool sat) {
#if FXBN_X86_DISPATCH
  if (isa == Isa::v4 || isa == Isa::vbmi) {
    if (ChunkFn fn = avx512_rows<M, In, Out>(isa == Isa::vbmi, check, sat)) return fn;
  }
  if (isa == Isa::avx2) {
    if (ChunkFn fn = avx2_rows<M, In, Out>(check, sat)) return fn;
  }
#elif FXBN_NEON_DISPATCH
  if (isa == Isa::neon) {
    if (ChunkFn fn = neon_rows<M, In, Out>(check, sat)) return fn;
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
// Bytes (read + written) per thread below which a second thread costs more than it saves.  A warm OpenMP team
// costs a few us per call here; at 1 << 17 the 400 KB 8-bit tensors of 1x64x56x56 run on two threads (AVX2 body,
// uint8 NHWC 7.7 -> 5.8 us), a cold team (first call, or a busy second core) costs 10-50 us.
constexpr int64_t kBytesPerThread = int64_t{1} << 17;

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

// run_chunks for keep_out_on_error: each thread walks its chunk in blocks of kKeepBlock elements and saves a block of
// y (then in cache: the body writes it next) before the body overwrites it; after a violation every thread stops at
// its next block, and each puts back what it wrote.  The input is read once; the saving costs out-sized traffic (a
// quarter of the input's for int32 -> int8) where a separate range check would read the whole input twice.
// fn_saves: the body copies each output vector's old bytes to the buffer itself, just before it stores the vector
// (Job::save; widen_rows with 8-bit outputs): a load and a store inside its ALU-bound loop instead of a copy pass
// (1x64x56x56 int32 -> int8 keep_out, AVX-512 body: 28.5 -> 20.9 us; the range check alone is 20.0).
constexpr int64_t kKeepBlock = int64_t{1} << 14;  // a multiple of 64: periodic table offsets stay 16-aligned
// The blocks of bodies that do not save as they go, when the copy is non-temporal: shorter bursts of streaming stores
// overlap the body's work (32x56x56x64 int32 -> int8 NHWC, 1 thread, `out=` over `apply(x)`: +400 us at 1 << 14,
// +100 us at 1 << 12, no better at 1 << 10)
constexpr int64_t kKeepBlockStream = int64_t{1} << 12;

// The save buffer is kept per calling thread (up to kKeepCache bytes): a fresh one costs a page fault per 4 KiB
// (~1 ms for a 6 MB output), more than the copy itself.
constexpr size_t kKeepCache = size_t{64} << 20;
constexpr size_t kStreamSave = size_t{1} << 20;

// memcpy to a save buffer that is read back only after a violation: above kStreamSave bytes with non-temporal
// stores where dst is 16-byte aligned (no read for ownership, no cache lines taken from the body's input and output)
void copy_to_save(unsigned char* dst, const unsigned char* src, size_t bytes, bool streaming) {
  size_t i = 0;
#if FXBN_X86_DISPATCH
  if (streaming && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
    for (; i + 64 <= bytes; i += 64) {
      for (size_t k = 0; k < 64; k += 16) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + k),
                         _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + k)));
      }
    }
  }
#else
  (void)streaming;
#endif
  std::memcpy(dst + i, src + i, bytes - i);
}

bool run_chunks_keeping(ChunkFn fn, const Job& job, int64_t total, int nt, size_t out_size, bool fn_saves,
                        bool save_like_y) {
  thread_local std::unique_ptr<unsigned char[]> cache;
  thread_local size_t cache_size = 0;
  const size_t need = static_cast<size_t>(total) * out_size;
  std::unique_ptr<unsigned char[]> own;
  unsigned char* buf;
  if (need <= kKeepCache) {
    if (cache_size < need) {
      cache.reset(new unsigned char[need + 64]);
      cache_size = need;
    }
    buf = cache.get();
  } else {
    own.reset(new unsigned char[need + 64]);
    buf = own.get();
  }
  // 64-byte aligned: the saving bodies store whole aligned vectors of it with non-temporal stores; save_like_y: as
  // aligned as y instead (mod 64), for a body that aligns its stores to y and saves at the same offsets
  const uintptr_t offset = save_like_y ? reinterpret_cast<uintptr_t>(job.y) % 64 : 0;
  unsigned char* const saved = buf + (64 + offset - reinterpret_cast<uintptr_t>(buf) % 64) % 64;
  Job j = job;
  if (fn_saves) {
    j.save = saved;  // the body saves each output vector's old bytes as it goes (no copy pass)
    // non-temporal beyond kStreamSave bytes (int32 -> int8 32x64x56x56, 1 thread: 57-60% -> 67-68% of copy
    // bandwidth); below it they cost more than they save (1x64x56x56: 21.7 -> 24.8 us)
    j.save_streaming = need > kStreamSave;
  }
  unsigned char* const y = static_cast<unsigned char*>(j.y);
  std::atomic<bool> stop{false};
  // a body that saves as it goes, below kStreamSave bytes: one call per chunk (the blocks only let a violation stop
  // the other threads sooner; each call costs its set-up: 1x2048x7x7 int32 -> int8, AVX2, 7 blocks of 2^14)
  const int64_t block = fn_saves ? (need <= kStreamSave ? total : kKeepBlock)
                                 : (need > kStreamSave ? kKeepBlockStream : kKeepBlock);
  // [b, e): this thread's chunk; returns whether it met a violation, after restoring [b, reached) if any did
  const auto walk = [&](int64_t b, int64_t e) {
    int64_t pos = b;
    bool bad = false;
    while (pos < e && !stop.load(std::memory_order_relaxed)) {
      const int64_t be = std::min(e, pos + block);
      if (!fn_saves) {
        copy_to_save(saved + pos * static_cast<int64_t>(out_size), y + pos * static_cast<int64_t>(out_size),
                     static_cast<size_t>(be - pos) * out_size, need > kStreamSave);
      }
      const bool blk_bad = fn(j, pos, be);
      pos = be;
      if (blk_bad) {
        bad = true;
        stop.store(true, std::memory_order_relaxed);
      }
    }
#if FXBN_X86_DISPATCH
    _mm_sfence();  // the non-temporal stores to the buffer (bodies, copy_to_save), before any restore reads it
#endif
    return std::make_pair(bad, pos);
  };
  const auto restore = [&](int64_t b, int64_t reached) {
    std::memcpy(y + b * static_cast<int64_t>(out_size), saved + b * static_cast<int64_t>(out_size),
                static_cast<size_t>(reached - b) * out_size);
  };
  if (nt <= 1) {
    const auto r = walk(0, total);
    if (r.first) restore(0, r.second);
    return r.first;
  }
  bool bad = false;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    const int64_t t = omp_get_thread_num(), m = omp_get_num_threads();
    const int64_t chunk = ((total + m - 1) / m + 63) / 64 * 64;
    const int64_t b = std::min(total, t * chunk), e = std::min(total, b + chunk);
    int64_t reached = b;
    if (b < e) {
      const auto r = walk(b, e);
      bad |= r.first;
      reached = r.second;
    }
#pragma omp barrier
    if (stop.load(std::memory_order_relaxed) && reached > b) restore(b, reached);
  }
#else
  const auto r = walk(0, total);
  if (r.first) restore(0, r.second);
  bad = r.first;
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
// Whether (A*x + B) * 2^k fits int64 at x = lo, hi and 0 (so for every x in [lo, hi]): |A*x + B| < 2^(63 - k).  A
// product or sum overflowing int64 has |exact value| >= 2^63, so it fails the same test (no 128-bit type needed:
// 32-bit targets have none).
bool scaled_fits(int32_t a, int64_t b, int64_t lo, int64_t hi, int k) {
  const int64_t lim = int64_t{1} << (63 - k);
  for (const int64_t xe : {lo, hi, int64_t{0}}) {
    int64_t v = 0;
    if (__builtin_mul_overflow(static_cast<int64_t>(a), xe, &v) || __builtin_add_overflow(v, b, &v)) return false;
    if (v >= lim || v < -lim) return false;
  }
  return true;
}

template <class In>
void widen_to_high(int32_t& a, int64_t& b, int64_t& s, int32_t& xk, int64_t lo, int64_t hi, bool xshift) {
  xk = 0;
  if (s >= 32 || s < 1) return;  // s = 0 would need k = 32: A * 2^32 fits int32 only for A = 0
  const int k = static_cast<int>(32 - s);
  const int64_t lim_a = int64_t{1} << (31 - k);
  const bool scale_a = a < lim_a && a > -lim_a;
  if (!scale_a && !(xshift && k <= max_input_shift<In>())) return;
  if (!scaled_fits(a, b, lo, hi, k)) return;
  if (scale_a) {
    a = static_cast<int32_t>(static_cast<int64_t>(a) * (int64_t{1} << k));
  } else {
    xk = k;
  }
  b *= int64_t{1} << k;  // |b| < 2^(63 - k): exact
  s = 32;
}

#if FXBN_X86_DISPATCH
// widen_to_high with k = 16 for int16 inputs (the AVX2 widen_rows int16 -> 16-bit path: x * 2^16 is one vpunpck[lh]wd
// with zero, in place of vpmovsxwd + vpsllvd): (A*x + B)*2^16 >> (s + 16) == (A*x + B) >> s, when s >= 16, s + 16 <=
// 63 and (A*x + B)*2^16 at both ends of [lo, hi] and B*2^16 fit int64.  False (parameters unchanged) otherwise.
bool input_shift_16(int32_t a, int64_t& b, int64_t& s, int32_t& xk, int64_t lo, int64_t hi) {
  if (s < 16 || s > 63 - 16 || !scaled_fits(a, b, lo, hi, 16)) return false;
  b *= int64_t{1} << 16;
  s += 16;
  xk = 16;
  return true;
}
#endif

// Input + output bytes from which a body that can write y with non-temporal stores does so (Job::stream_out; the
// AVX2 widen_rows with 8-bit outputs, not under keep_out, whose save reads y's lines into the cache first): beyond a
// core's share of a last-level cache the input comes from memory anyway, and writing y through the cache costs a
// read for ownership (32x64x56x56 int32 -> int8 NCHW, 32 MB, AVX2, 1 thread: Kernel.run 1.13-1.21 -> 0.87-0.89 ms,
// apply(x) 1.13-1.19 -> 0.81-0.84 ms).  Only 8-bit outputs of wider inputs: int16 -> int16 of that shape streamed was
// 1.6x slower (non-temporal writes run at ~9 GB/s here; its output is half its traffic).
constexpr int64_t kStreamOutBytes = int64_t{16} << 20;

// run_chunks (or run_chunks_keeping) of fn over the tensor, then -1 or the first offending index (apply_typed's end).
template <class In>
int64_t run_reporting(ChunkFn fn, const Job& j, const In* x, int64_t outer, int64_t channels, int64_t inner,
                      const KernelParams& p, bool check, int threads, size_t elem_bytes, size_t out_size,
                      bool fn_saves = false, bool save_like_y = false) {
  const int64_t total = outer * channels * inner;
  const int nt = thread_count(threads, total * static_cast<int64_t>(elem_bytes));
  const bool keep = check && p.keep_out_on_error;
  Job job = j;
  job.stream_out = !keep && total * static_cast<int64_t>(elem_bytes) >= kStreamOutBytes;
  const bool bad = keep ? run_chunks_keeping(fn, job, total, nt, out_size, fn_saves, save_like_y)
                        : run_chunks(fn, job, total, nt);
  if (!bad) return -1;
  const int64_t first = first_bad(x, outer, channels, inner, p.lo, p.hi);
  if (first < 0) throw std::logic_error("fxbn kernel: a chunk reported an input out of range that the exact rescan "
                                        "did not find (outputs are not trusted)");
  return first;
}

#if FXBN_X86_DISPATCH
// Per-channel tables of widen_pixels: A, B (split per `group` channels, 8 for AVX2 and 16 for AVX-512: the even ones,
// then the odd ones), s - 32 after widen_to_high (xshift: the body scales 16-bit inputs by 2^xk), xk, lo, hi.  False
// (tables unusable) when some channel keeps s < 32.
template <class In>
bool pixel_tables(const KernelParams& p, int64_t channels, int max_shift, size_t group, bool xshift, Table<int32_t>& a,
                  Table<int64_t>& b, Table<int32_t>& s32, Table<int32_t>& xk, Table<In>& lo, Table<In>& hi) {
  const size_t n = static_cast<size_t>(channels);
  a.resize(n);
  b.resize(n);
  s32.resize(n);
  xk.resize(n);
  lo.resize(n);
  hi.resize(n);
  for (size_t c = 0; c < n; ++c) {
    int32_t ac = static_cast<int32_t>(p.multiplier[c]);  // multipliers_fit_int32
    int64_t bc = p.bias[c];
    int64_t sc = std::min<int64_t>(p.shift[c], max_shift);
    int32_t kc = 0;
    widen_to_high<In>(ac, bc, sc, kc, p.lo[c], p.hi[c], xshift);
    if (sc < 32) return false;
    a[c] = ac;
    b[(c & ~(group - 1)) + ((c & 1) ? group / 2 : 0) + ((c & (group - 1)) >> 1)] = bc;
    s32[c] = static_cast<int32_t>(sc - 32);
    xk[c] = kc;
    lo[c] = static_cast<In>(p.lo[c]);  // within In: the entry points clip [lo, hi] to In
    hi[c] = static_cast<In>(p.hi[c]);
  }
  return true;
}

// widen_pixels' prepared call (kept in the layer's KernelCache): fn is null where the pixel bodies do not serve (some
// channel keeps s < 32).  range32: per channel lo - 2^31 (as int32), then (hi - lo) - 2^31: x is in [lo, hi] exactly
// when x - (lo - 2^31) <= (hi - lo) - 2^31 as signed int32 (``pixel_range_check``), one subtraction and one compare
// per vector with one accumulator for every channel.
template <class In>
struct PixelPrepared : PreparedTables {
  Table<int32_t> a, s32, xk, range32;
  Table<int64_t> b, words;  // words: Job::pixel_words (pixel_words_tables)
  Table<In> lo, hi;
  Job job{};
  ChunkFn fn = nullptr;
};

// AVX2 int16 -> int16 channel-last where every channel admits input_shift_16 (xk = 16, s + 16: x * 2^16 comes from one
// 32-byte load of 16 channels by vpslld / vpand, ``avx2_widen_pixels_words``): pixel_tables' a, b, s32, xk replaced
// by those parameters (the last group where channels % 16 == 8 and the scalar formula use them), and pr.words, per 16
// channels g + (0..15) (kPixelWordsBlock qwords): A, then B, as int64 in the order of the four vpmuldq products
// (channels 0 4 8 12 | 2 6 10 14 | 1 5 9 13 | 3 7 11 15), s - 32 as int32 in the order vshufps 0xDD leaves their high
// dwords (0 4 2 6 8 12 10 14 | 1 5 3 7 9 13 11 15), lo - 2^15 and (hi - lo) - 2^15 as int16 in channel order (the
// biased word compare of ``pixel_range_check``).  False (tables unchanged) where some channel does not admit it.
constexpr int kWordsProducts[16] = {0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15};
constexpr int kWordsCounts[16] = {0, 4, 2, 6, 8, 12, 10, 14, 1, 5, 3, 7, 9, 13, 11, 15};

template <class In>
bool pixel_words_tables(const KernelParams& p, int64_t channels, int max_shift, PixelPrepared<In>& pr) {
  const size_t n = static_cast<size_t>(channels);
  std::vector<int64_t> b(n), s(n);
  for (size_t c = 0; c < n; ++c) {
    b[c] = p.bias[c];
    s[c] = std::min<int64_t>(p.shift[c], max_shift);
    int32_t k = 0;
    if (!input_shift_16(static_cast<int32_t>(p.multiplier[c]), b[c], s[c], k, p.lo[c], p.hi[c])) return false;
  }
  for (size_t c = 0; c < n; ++c) {
    pr.a[c] = static_cast<int32_t>(p.multiplier[c]);  // multipliers_fit_int32
    pr.b[(c & ~size_t{7}) + ((c & 1) ? 4 : 0) + ((c & 7) >> 1)] = b[c];
    pr.s32[c] = static_cast<int32_t>(s[c] - 32);  // input_shift_16: s + 16 in [32, 63]
    pr.xk[c] = 16;
  }
  pr.words.assign(n / 16 * kPixelWordsBlock, 0);
  for (size_t g = 0; g + 16 <= n; g += 16) {
    int64_t* const blk = pr.words.data() + g / 16 * kPixelWordsBlock;
    int32_t* const counts = reinterpret_cast<int32_t*>(blk + 32);
    int16_t* const lo2 = reinterpret_cast<int16_t*>(blk + 40);
    int16_t* const w2 = reinterpret_cast<int16_t*>(blk + 44);
    for (size_t i = 0; i < 16; ++i) {
      const size_t c = g + static_cast<size_t>(kWordsProducts[i]);
      blk[i] = pr.a[c];
      blk[16 + i] = b[c];
      counts[i] = pr.s32[g + static_cast<size_t>(kWordsCounts[i])];
      lo2[i] = static_cast<int16_t>(static_cast<uint16_t>(p.lo[g + i]) ^ 0x8000u);  // lo, hi within int16
      w2[i] = static_cast<int16_t>(static_cast<uint16_t>(p.hi[g + i] - p.lo[g + i]) ^ 0x8000u);
    }
  }
  return true;
}

template <class In, class Out>
void pixel_prepare(PixelPrepared<In>& pr, const KernelParams& p, int64_t channels, int max_shift, bool check,
                   bool avx512) {
  constexpr bool kInt32 = std::is_same<In, int32_t>::value;
  const bool one_range = std::all_of(p.lo, p.lo + channels, [&](int64_t v) { return v == p.lo[0]; }) &&
                         std::all_of(p.hi, p.hi + channels, [&](int64_t v) { return v == p.hi[0]; });
  // AVX-512: its own body (64 channels' parameters in zmm registers) where channels % 64 == 0, else the AVX2 one
  // (faster there than their periodic widen body: 1x64x56x56, 1 thread)
  const bool zmm = avx512 && channels % 64 == 0;
  if (!pixel_tables<In>(p, channels, max_shift, zmm ? 16 : 8, !kInt32, pr.a, pr.b, pr.s32, pr.xk, pr.lo, pr.hi)) {
    return;
  }
  pr.range32.resize(static_cast<size_t>(2 * channels));
  for (int64_t c = 0; c < channels; ++c) {  // within In (the entry points clip [lo, hi] to In): hi - lo < 2^32
    const uint32_t lo = static_cast<uint32_t>(static_cast<int32_t>(p.lo[c]));
    const uint32_t width = static_cast<uint32_t>(p.hi[c] - p.lo[c]);
    pr.range32[static_cast<size_t>(c)] = static_cast<int32_t>(lo ^ 0x80000000u);
    pr.range32[static_cast<size_t>(channels + c)] = static_cast<int32_t>(width ^ 0x80000000u);
  }
  Job& j = pr.job;
  j = Job{nullptr, nullptr, channels, 1, 0, pr.a.data(), pr.b.data(), nullptr, pr.lo.data(), pr.hi.data(), p.qmin,
          p.qmax};
  j.s32 = pr.s32.data();
  j.xk = pr.xk.data();
  j.range32 = pr.range32.data();
  const bool sat = saturating_store<Out>(p.qmin, p.qmax);
  if constexpr (kInt32) {
    // the AVX2 body without the per-lane vpsravd where every t = s - 32 is 0 (``avx2_widen_pixels_unshifted``).  Not
    // worth it for other t (h11-shift, AVX2, Zen 4, 1x56x56x64 Kernel.run, in-process A/B medians at load 3-4): a
    // per-lane word shift after vpackssdw by vpmulhrsw with 2^(15 - t) (B biased by -2^(31 + t) to round to the
    // floor) 1.00-1.06x the vpsravd body's time; every channel scaled to the largest t <= 8 (A*2^k, B*2^k where they
    // fit) and one vpsraw 0.98-1.02x (r50 2a_2b)
    if (!zmm) {
      const bool shift = std::any_of(pr.s32.begin(), pr.s32.end(), [](int32_t t) { return t != 0; });
      pr.fn = avx2_widen_pixels_bytes<Out>(check, sat, one_range, shift);
      return;
    }
  }
  if constexpr (std::is_same<In, int16_t>::value && std::is_same<Out, int16_t>::value) {
    if (!zmm && pixel_words_tables(p, channels, max_shift, pr)) {
      j.pixel_words = pr.words.data();
      pr.fn = avx2_widen_pixels_words<Out>(check, sat, one_range);
      return;
    }
  }
  pr.fn = zmm ? avx512_widen_pixels<In, Out>(check, sat, one_range)
              : avx2_widen_pixels<In, Out>(check, sat, one_range);
}
#endif

#if FXBN_X86_DISPATCH
// int32 -> 8-bit NCHW rows shorter than kMinRow (at least 8 elements, 16 for the AVX-512 body): widen_short with
// per-channel tables (channels entries, where the periodic tables have one per element of channels x inner), kept in
// the layer's cache.  Returns false (nothing done) when it does not serve the call: another ISA, rows too short, or a
// channel that keeps s < 32 after widen_to_high (remembered in the kept entry: the periodic path then serves).
template <class Out>
bool apply_short(const int32_t* x, Out* y, int64_t outer, int64_t channels, int64_t inner, const KernelParams& p,
                 bool check, int threads, int64_t* result) {
  const Isa isa = current_isa();
  const bool avx512 = (isa == Isa::v4 || isa == Isa::vbmi) && inner >= 16;
  if (!(avx512 || isa == Isa::avx2 || isa == Isa::v4 || isa == Isa::vbmi) || inner < 8 || inner >= kMinRow) {
    return false;
  }
  struct ShortTables : PreparedTables {
    Table<int32_t> a, s32, lo, hi, range32;
    Table<int64_t> b, packed;  // packed: Job::short_params
    ChunkFn fn = nullptr;  // null: some channel keeps s < 32
  };
  static const char tag = 0;
  std::shared_ptr<const PreparedTables> kept = find_tables(p.cache, &tag, static_cast<int>(isa), channels, inner);
  if (kept == nullptr) {
    const auto made = std::make_shared<ShortTables>();
    made->tag = &tag;
    made->isa = static_cast<int>(isa);
    made->channels = channels;
    made->inner = inner;
    ShortTables& t = *made;
    const size_t n = static_cast<size_t>(channels);
    t.a.resize(n);
    t.b.resize(n);
    t.s32.resize(n);
    t.lo.resize(n);
    t.hi.resize(n);
    bool high = true;
    for (size_t c = 0; c < n && high; ++c) {
      int32_t ac = static_cast<int32_t>(p.multiplier[c]);  // multipliers_fit_int32
      int64_t bc = p.bias[c];
      int64_t sc = std::min<int64_t>(p.shift[c], 63);
      int32_t kc = 0;
      widen_to_high<int32_t>(ac, bc, sc, kc, p.lo[c], p.hi[c], false);
      high = sc >= 32;
      t.a[c] = ac;
      t.b[c] = bc;
      t.s32[c] = static_cast<int32_t>(sc - 32);
      t.lo[c] = static_cast<int32_t>(p.lo[c]);  // within int32: the entry points clip [lo, hi] to In
      t.hi[c] = static_cast<int32_t>(p.hi[c]);
    }
    if (high) {
      const bool sat = saturating_store<Out>(p.qmin, p.qmax);
      const bool one_range = std::all_of(p.lo, p.lo + channels, [&](int64_t v) { return v == p.lo[0]; }) &&
                             std::all_of(p.hi, p.hi + channels, [&](int64_t v) { return v == p.hi[0]; });
      // the AVX2 body's per-channel check (``pixel_range_check``): lo2 = lo - 2^31, then w2 = (hi - lo) - 2^31
      t.range32.resize(2 * n);
      for (size_t c = 0; c < n; ++c) {
        const uint32_t width = static_cast<uint32_t>(p.hi[c] - p.lo[c]);  // lo <= hi within int32
        t.range32[c] = static_cast<int32_t>(static_cast<uint32_t>(t.lo[c]) ^ 0x80000000u);
        t.range32[n + c] = static_cast<int32_t>(width ^ 0x80000000u);
      }
      t.packed.resize(2 * (n + 1));
      for (size_t c = 0; c <= n; ++c) {
        const size_t e = c == n ? 0 : c;
        t.packed[2 * c] = t.b[e];
        t.packed[2 * c + 1] = static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(t.a[e])) |
                                                   (static_cast<uint64_t>(static_cast<uint32_t>(t.s32[e])) << 32));
      }
      const bool shift = std::any_of(t.s32.begin(), t.s32.end(), [](int32_t v) { return v != 0; });
      t.fn = avx512 ? avx512_widen_short<Out>(check, sat, one_range)
                    : avx2_widen_short<Out>(check, sat, one_range, shift);
    }
    kept = made;
    keep_tables(p.cache, kept);
  }
  const ShortTables& t = static_cast<const ShortTables&>(*kept);
  if (t.fn == nullptr) return false;
  Job j{x, y, channels, inner, 0, t.a.data(), t.b.data(), nullptr, t.lo.data(), t.hi.data(), p.qmin, p.qmax};
  j.s32 = t.s32.data();
  j.range32 = t.range32.data();
  j.short_params = t.packed.data();
  j.total = outer * channels * inner;
  *result = run_reporting(t.fn, j, x, outer, channels, inner, p, check, threads, sizeof(int32_t) + sizeof(Out),
                          sizeof(Out), true);
  return true;
}
#endif

template <Mul M, class In, class Out>
int64_t apply_typed(const In* x, Out* y, int64_t outer, int64_t channels, int64_t inner, const KernelParams& p,
                    int threads) {
  using Acc = typename MulTypes<M>::Acc;
  using Coef = typename MulTypes<M>::Coef;
  const int max_shift = static_cast<int>(sizeof(Acc) * 8 - 1);
  // |acc| < 2^(w-1) makes acc >> (w-1) equal to floor(acc / 2^s) for every s >= w-1
  const bool check = p.known_check >= 0 ? p.known_check != 0 : needs_check<In>(p.lo, p.hi, channels);
  const bool rows = use_rows(channels, inner);
#if FXBN_X86_DISPATCH
  // widen_pixels with per-channel tables (no period tables) when every channel reaches s >= 32: int32 -> 8-bit and
  // int16 -> int16 channel-last (pixel_prepare picks the body); they save y's old bytes themselves under keep_out
  if constexpr (M == Mul::widen && ((std::is_same<In, int32_t>::value && sizeof(Out) == 1) ||
                                    (std::is_same<In, int16_t>::value && std::is_same<Out, int16_t>::value))) {
    const Isa isa = current_isa();
    const bool avx512 = isa == Isa::v4 || isa == Isa::vbmi;
    if (!rows && inner == 1 && channels % 8 == 0 && (avx512 || isa == Isa::avx2)) {
      // the tables, body and job of this layer's channel-last calls: kept in p.cache (building them cost as much as
      // the kernel with 2048 channels: 1x7x7x2048 int32 -> int8, AVX2)
      static const char pixel_tag = 0;
      std::shared_ptr<const PreparedTables> kept =
          find_tables(p.cache, &pixel_tag, static_cast<int>(isa), channels, inner);
      if (kept == nullptr) {
        const auto made = std::make_shared<PixelPrepared<In>>();
        made->tag = &pixel_tag;
        made->isa = static_cast<int>(isa);
        made->channels = channels;
        made->inner = inner;
        pixel_prepare<In, Out>(*made, p, channels, max_shift, check, avx512);
        kept = made;
        keep_tables(p.cache, kept);
      }
      const auto& pr = static_cast<const PixelPrepared<In>&>(*kept);
      if (pr.fn != nullptr) {
        Job j = pr.job;
        j.x = x;
        j.y = y;
        j.total = outer * channels * inner;
        return run_reporting(pr.fn, j, x, outer, channels, inner, p, check, threads, sizeof(In) + sizeof(Out),
                             sizeof(Out), true);
      }
    }
  }
  // int32 -> 8-bit NCHW rows shorter than kMinRow: widen_short (per-channel tables) where it serves
  if constexpr (M == Mul::widen && std::is_same<In, int32_t>::value && sizeof(Out) == 1) {
    int64_t r = -1;
    if (!rows && apply_short<Out>(x, y, outer, channels, inner, p, check, threads, &r)) return r;
  }
#endif
  const Isa isa = current_isa();
  // the tables of this call's shape: kept from an earlier call (p.cache), or built here (and kept)
  struct Prepared : PreparedTables {
    Table<Coef> a;
    Table<Acc> b, s;
    Table<In> lo, hi;
    Table<int32_t> xk, s32;
    Table<int64_t> a64;
    Job job{};
    ChunkFn fn = nullptr;
    bool fn_saves = false;
    bool save_like_y = false;  // the save buffer as aligned as y (the AVX2 widen_rows' aligned stores)
  };
  static const char tag = 0;  // one address per instantiation: a kept entry with this tag is a Prepared
  std::shared_ptr<const PreparedTables> kept = find_tables(p.cache, &tag, static_cast<int>(isa), channels, inner);
  if (kept == nullptr) {
    const auto made = std::make_shared<Prepared>();
    made->tag = &tag;
    made->isa = static_cast<int>(isa);
    made->channels = channels;
    made->inner = inner;
    Prepared& pr = *made;
    const int64_t n = rows ? channels : period_of(channels, inner);
    const int64_t per = rows ? 1 : inner;  // table entry e belongs to channel (e / per) % channels
    auto& a = pr.a;
    auto& b = pr.b;
    auto& s = pr.s;
    auto& lo = pr.lo;
    auto& hi = pr.hi;
    auto& xk = pr.xk;
    a.resize(static_cast<size_t>(n));
    b.resize(a.size());
    s.resize(a.size());
    lo.resize(a.size());
    hi.resize(a.size());
    xk.resize(M == Mul::widen ? a.size() : 0);  // input shifts: widen bodies only
    // inputs are scaled (xk) only where the body picked below applies it: widen_rows and widen_periodic
    const bool lut = rows && sizeof(In) == 1 && sizeof(Out) == 1 && isa == Isa::vbmi;
    bool xshift = !lut && (rows || (n % 64 == 0 && isa != Isa::avx2));
#if FXBN_X86_DISPATCH
    if constexpr (M == Mul::widen && sizeof(Out) <= 4) {
      // AVX2 periodic tables: widen_periodic (the high path only) applies the input shift, the portable loop does not;
      // scale inputs there when every entry then reaches s >= 32 (int16 -> int16 channel-last layers)
      if (!rows && !lut && isa == Isa::avx2 && n % 64 == 0) {
        bool all_high = true;
        for (int64_t c = 0; c < channels && all_high; ++c) {
          Coef ac = static_cast<Coef>(p.multiplier[c]);
          Acc bc = static_cast<Acc>(p.bias[c]);
          Acc sc = static_cast<Acc>(std::min(p.shift[c], max_shift));
          int32_t kc = 0;
          widen_to_high<In>(ac, bc, sc, kc, p.lo[c], p.hi[c], true);
          all_high = sc >= 32;
        }
        xshift = all_high;
      }
    }
#endif
    // entry e belongs to channel (e / per) % channels: one channel-major pass, then whole copies of the first period
    const int64_t base = channels * per;
    for (int64_t c = 0, e = 0; c < channels; ++c) {
      Coef ac = static_cast<Coef>(p.multiplier[c]);  // mul32: the low 32 bits suffice (wrap-around is exact)
      Acc bc = static_cast<Acc>(p.bias[c]);
      Acc sc = static_cast<Acc>(std::min(p.shift[c], max_shift));
      int32_t kc = 0;
#if FXBN_X86_DISPATCH
      if constexpr (M == Mul::widen) {
        // AVX2 int16 -> 16-bit rows: the input shift 16 where it serves (widen_rows' unpack path), else widen_to_high
        const bool shift16 = std::is_same<In, int16_t>::value && sizeof(Out) == 2 && rows && isa == Isa::avx2 &&
                             input_shift_16(ac, bc, sc, kc, p.lo[c], p.hi[c]);
        if (isa != Isa::baseline && !shift16) widen_to_high<In>(ac, bc, sc, kc, p.lo[c], p.hi[c], xshift);
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
    Job& j = pr.job;
    j = Job{nullptr, nullptr, channels, inner, rows ? 0 : n, a.data(), b.data(), s.data(), lo.data(), hi.data(),
            p.qmin, p.qmax};
    j.xk = xk.data();
    const bool sat = saturating_store<Out>(p.qmin, p.qmax);
    ChunkFn& fn = pr.fn;
    fn = rows ? pick_rows<M, In, Out>(isa, check, sat)
                      : (check ? pick<Periodic<M, In, Out, true>>(isa) : pick<Periodic<M, In, Out, false>>(isa));
#if FXBN_NEON_DISPATCH
    if (!rows && isa == Isa::neon) {
      if (ChunkFn f = neon_periodic<M, In, Out>(check, sat)) fn = f;
    }
#endif
#if FXBN_X86_DISPATCH
    auto& s32 = pr.s32;
    auto& a64 = pr.a64;
    if constexpr (M == Mul::widen && sizeof(Out) <= 4) {
      const bool high = std::all_of(s.begin(), s.end(), [](Acc v) { return v >= 32; });
      // AVX2: the high path only (no 64-bit shift or min/max); its tables need no input shift (xshift is off there)
      if (!rows && (isa == Isa::v4 || isa == Isa::vbmi || (isa == Isa::avx2 && high)) && n % 64 == 0) {
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
          fn = isa == Isa::avx2 ? avx2_widen_periodic<In, Out>(check, sat)
                                : avx512_widen_periodic<In, Out>(check, true, sat);
        } else {
          split(s);
          fn = avx512_widen_periodic<In, Out>(check, false, sat);
        }
      }
    }
    if constexpr (M == Mul::mul32 && sizeof(In) <= 2 && sizeof(Out) <= 4) {
      const bool a16 = std::all_of(a.begin(), a.end(), [](Coef v) { return v > -32768 && v < 32768; });
      if (!rows && isa == Isa::vbmi && a16) {
        for (auto& v : a) v = static_cast<Coef>(static_cast<uint16_t>(v));  // (A, 0) as a pair of 16-bit words
        fn = avx512_dp_periodic<In, Out>(check);
      }
    }
    if constexpr (M == Mul::mul32 && sizeof(Out) <= 4) {
      if (!rows && isa == Isa::avx2) {
        const bool madd =
            sizeof(In) <= 2 && std::all_of(a.begin(), a.end(), [](Coef v) { return v > -32768 && v < 32768; });
        if (madd) {
          for (auto& v : a) v = static_cast<Coef>(static_cast<uint16_t>(v));  // (A, 0) as a pair of 16-bit words
        }
        fn = avx2_mul32_periodic<In, Out>(check, madd);
      }
    }
#endif
    // the AVX2 / AVX-512 widen_rows with 8-bit outputs save y's old bytes themselves under keep_out (Job::save)
#if FXBN_X86_DISPATCH
    if constexpr (M == Mul::widen && sizeof(Out) == 1) {
      pr.fn_saves = rows && !lut && (isa == Isa::avx2 || isa == Isa::v4 || isa == Isa::vbmi);
      pr.save_like_y = pr.fn_saves && isa == Isa::avx2;
    }
#endif
    kept = made;
    keep_tables(p.cache, kept);
  }
  const Prepared& pr = static_cast<const Prepared&>(*kept);
  Job j = pr.job;
  j.x = x;
  j.y = y;
  j.total = outer * channels * inner;
  return run_reporting(pr.fn, j, x, outer, channels, inner, p, check, threads, sizeof(In) + sizeof(Out),
                       sizeof(Out), pr.fn_saves, pr.save_like_y);
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
  if (p.known_multipliers_int32 >= 0 ? p.known_multipliers_int32 != 0 : multipliers_fit_int32(p.multiplier, channels)) {
    return apply_typed<Mul::widen, In, Out>(x, y, outer, channels, inner, p, threads);
  }
  return apply_typed<Mul::mul64, In, Out>(x, y, outer, channels, inner, p, threads);
}

// 8-bit -> 8-bit periodic layers with a KernelCache: the verified byte template (kernel_byte.cpp) where some channel
// has one.  Returns false (nothing done) when it does not serve the call.
template <class In, class Out>
bool apply_byte(const In* x, Out* y, int64_t outer, int64_t channels, int64_t inner, const KernelParams& p,
                int threads, int64_t* result) {
#if FXBN_X86_DISPATCH
  const Isa isa = current_isa();
  if (p.cache == nullptr || !(isa == Isa::avx2 || isa == Isa::v4 || isa == Isa::vbmi)) return false;
  bool check = false;
  const ByteJob* bj = nullptr;
  ChunkFn fn = nullptr;
  if (use_rows(channels, inner)) {
    // AVX2 NCHW rows: the template with each row's lane in registers (AVX-512 with VBMI has its lookup rows)
    if (isa != Isa::avx2 || inner < kMinRow) return false;
    bj = byte_rows_job(p.cache, std::is_signed<In>::value, std::is_signed<Out>::value, channels, inner, p, &check);
    if (bj != nullptr) fn = avx2_byte_rows<In, Out>(check, bj->clamp);
  } else {
    // Every x86 ISA with AVX2 takes the AVX2 body: on the AMD EPYC here (512-bit ops issued as two halves) it ran
    // at half the time of the former 64-lane AVX-512 body (uint8 NHWC 1x56x56x64: 6.4 vs 11.9 us kernel).
    bj = byte_plan_job(p.cache, std::is_signed<In>::value, std::is_signed<Out>::value, channels, inner, p, &check);
    if (bj != nullptr) fn = avx2_byte_body<In, Out>(*bj, check);
  }
  if (bj == nullptr) return false;
  Job j{};
  j.x = x;
  j.y = y;
  j.a = bj;
  *result = run_reporting(fn, j, x, outer, channels, inner, p, check, threads, 2, sizeof(Out));
  return true;
#else
  (void)x, (void)y, (void)outer, (void)channels, (void)inner, (void)p, (void)threads, (void)result;
  return false;
#endif
}

template <class In>
int64_t apply_in(const In* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
                 const KernelParams& p, int threads) {
  if constexpr (sizeof(In) == 1) {
    int64_t r = -1;
    if (out_type == DType::int8 &&
        apply_byte(x, static_cast<int8_t*>(y), outer, channels, inner, p, threads, &r)) return r;
    if (out_type == DType::uint8 &&
        apply_byte(x, static_cast<uint8_t*>(y), outer, channels, inner, p, threads, &r)) return r;
  }
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

// The layer's LayerFacts for In: kept in p.cache (made on its first call with In), or made for this call only.
template <class In>
std::shared_ptr<const LayerFacts> layer_facts(const KernelParams& p, int64_t channels) {
  constexpr int slot = std::is_same<In, int8_t>::value ? 0 : std::is_same<In, uint8_t>::value ? 1
                       : std::is_same<In, int16_t>::value ? 2 : 3;
  if (p.cache != nullptr) {
    std::lock_guard<std::mutex> lock(p.cache->mu);
    const auto& kept = p.cache->facts[slot];
    if (kept != nullptr && kept->channels == channels) return kept;
  }
  InRanges<In> r(p.lo, p.hi, channels);
  auto f = std::make_shared<LayerFacts>();
  f->channels = channels;
  f->empty_channel = r.empty_channel;
  f->check = !r.empty_channel && needs_check<In>(r.lo.data(), r.hi.data(), channels);
  f->multipliers_int32 = multipliers_fit_int32(p.multiplier, channels);
  f->lo = std::move(r.lo);
  f->hi = std::move(r.hi);
  if (p.cache != nullptr) {
    std::lock_guard<std::mutex> lock(p.cache->mu);
    p.cache->facts[slot] = f;
  }
  return f;
}

template <class In>
int64_t apply_clipped(const In* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
                      const KernelParams& p, int threads) {
  const std::shared_ptr<const LayerFacts> f = layer_facts<In>(p, channels);
  if (f->empty_channel) return first_bad_scalar(x, outer, channels, inner, p.lo, p.hi);
  KernelParams q = p;
  q.lo = f->lo.data();
  q.hi = f->hi.data();
  q.known_check = f->check ? 1 : 0;
  q.known_multipliers_int32 = f->multipliers_int32 ? 1 : 0;
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
