// y = clamp((A[c]*x + B[c]) >> s[c], qmin, qmax) over a contiguous (outer, channels, inner) array.
//
// The solver guarantees that A*x, A*x + B and B fit the accumulator for every x in [lo[c], hi[c]]; the kernel checks
// that range in the same pass (branch-free: a min/max or a flag is OR-ed per row) and reports the first offending
// element instead of returning unproven outputs.  With acc32 the accumulator is 32 bits (twice the SIMD lanes of 64);
// on the 64-bit path a multiplier that fits 32 bits uses a widening 32x32->64 multiply.
//
// The loops are plain C++ that the compiler vectorizes; each is compiled three times (x86-64-v4 = AVX-512,
// AVX2, and the baseline) and the best one the CPU supports is picked at run time (other architectures and
// compilers: the baseline only).
#pragma once

#include <cstdint>

namespace fxbn {

enum class DType : int { int8 = 0, uint8 = 1, int16 = 2, uint16 = 3, int32 = 4 };

// What a caller may keep between the calls of one layer (fxbn._core.Kernel does): the 8-bit template's verified
// per-channel parameters and its tables (kernel_byte.cpp).  Thread-safe.  It belongs to one parameter set (the
// arrays of the KernelParams it is passed with must not change) and must outlive the calls that use it.
struct KernelCache;
KernelCache* new_kernel_cache();
void delete_kernel_cache(KernelCache* cache);
// Channels with verified template parameters for (in_type, out_type), or -1 when no call built them yet.
int64_t byte_template_channels(KernelCache* cache, DType in_type, DType out_type);
// The 8-bit template for tests and tools: search (find = true: params receives, per channel, m, p, n, sm, flip) or
// only check the given params; ok[c] = 1 where channel c's params passed the exhaustive check on every input of its
// range [lo, hi] (within the 8-bit input type), i.e. equal clamp((A*x + B) >> s, qmin, qmax) there.
void byte_template_params(bool in_signed, bool out_signed, int64_t channels, const int64_t* multiplier,
                          const int64_t* bias, const int32_t* shift, const int64_t* lo, const int64_t* hi,
                          int64_t qmin, int64_t qmax, bool find, int32_t* params, int8_t* ok);

struct KernelParams {
  const int64_t* multiplier;
  const int64_t* bias;
  const int32_t* shift;
  const int64_t* lo;
  const int64_t* hi;
  int64_t qmin, qmax;
  bool acc32;  // every channel's accumulator_bits <= 32
  // y is left as it was when an element is out of range (one pass: each block of y is saved before the kernel
  // writes it, and every written block is restored on a violation)
  bool keep_out_on_error = false;
  KernelCache* cache = nullptr;  // optional: 8-bit -> 8-bit channel-last layers then take the verified byte template
  // Internal: apply() sets both from the layer's facts (kept in `cache`), whatever the caller left in them.
  int known_check = -1;             // some channel's [lo, hi] (clipped to the input type) is narrower than the type
  int known_multipliers_int32 = -1;  // every multiplier fits int32
};

// Returns -1 when every element is in range, else the flat (row-major) index of the first element outside its
// channel's [lo, hi].  threads <= 0 means all available; small tensors run on one thread whatever is asked.
// Not all outputs are written when an element is out of range (p.keep_out_on_error: y is then restored as it was).
int64_t apply(DType in_type, const void* x, DType out_type, void* y, int64_t outer, int64_t channels, int64_t inner,
              const KernelParams& p, int threads);

// Range check only (no output): same return value as apply.
int64_t first_out_of_range(DType in_type, const void* x, int64_t outer, int64_t channels, int64_t inner,
                           const int64_t* lo, const int64_t* hi);

// The instruction set the kernel loops run with: "x86-64-v4+vbmi+vnni", "x86-64-v4", "avx2", "neon" (aarch64) or
// "baseline".
const char* kernel_isa();

// Select the kernel loops by name (as kernel_isa names them, or "auto" for the best the CPU supports).
// Returns false (and changes nothing) when the name is unknown or the CPU lacks it.  For tests and benchmarks; the
// environment variable FXBN_ISA sets the initial choice the same way.
bool set_kernel_isa(const char* name);

}  // namespace fxbn
