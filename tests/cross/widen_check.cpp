// widen_to_high (csrc/fxbn/kernel.cpp, portable int64 arithmetic with overflow checks) against the former __int128
// formulation, on the host: the same parameters out for edge and random inputs.  Prints the number of differences.
#include <cstdint>
#include <cstdio>
#include <random>

#include "../../csrc/fxbn/kernel.cpp"

namespace {
template <class In>
void widen_int128(int32_t& a, int64_t& b, int64_t& s, int32_t& xk, int64_t lo, int64_t hi, bool xshift) {
  xk = 0;
  if (s >= 32 || s < 1) return;
  const int k = static_cast<int>(32 - s);
  const int64_t lim_a = int64_t{1} << (31 - k);
  const bool scale_a = a < lim_a && a > -lim_a;
  if (!scale_a && !(xshift && k <= fxbn::max_input_shift<In>())) return;
  const __int128 lim = static_cast<__int128>(1) << (63 - k);
  const __int128 ends[3] = {static_cast<__int128>(a) * lo + b, static_cast<__int128>(a) * hi + b, b};
  for (const __int128 v : ends) {
    if (v >= lim || v < -lim) return;
  }
  if (scale_a) {
    a = static_cast<int32_t>(static_cast<int64_t>(a) * (int64_t{1} << k));
  } else {
    xk = k;
  }
  b = static_cast<int64_t>(static_cast<__int128>(b) * (static_cast<__int128>(1) << k));
  s = 32;
}
}  // namespace

int main() {
  std::mt19937_64 rng(13);
  const int64_t edges_b[] = {0, 1, -1, INT64_MAX, INT64_MIN, int64_t{1} << 62, -(int64_t{1} << 62),
                             (int64_t{1} << 40) - 1, -(int64_t{1} << 40)};
  const int32_t edges_a[] = {0, 1, -1, INT32_MAX, INT32_MIN, 1 << 20, -(1 << 20), 12345};
  long diffs = 0, cases = 0;
  for (int it = 0; it < 400000; ++it) {
    int32_t a = it % 3 == 0 ? edges_a[rng() % 8] : static_cast<int32_t>(rng() >> (32 + rng() % 32));
    int64_t b = it % 5 == 0 ? edges_b[rng() % 9] : static_cast<int64_t>(rng()) >> (rng() % 64);
    int64_t s = 1 + static_cast<int64_t>(rng() % 33);
    int64_t lo = it % 2 ? INT32_MIN : -static_cast<int64_t>(rng() % (uint64_t{1} << 31));
    int64_t hi = it % 2 ? INT32_MAX : static_cast<int64_t>(rng() % (uint64_t{1} << 31));
    bool xshift = rng() & 1;
    int32_t a1 = a, a2 = a, k1 = -1, k2 = -1;
    int64_t b1 = b, b2 = b, s1 = s, s2 = s;
    fxbn::widen_to_high<int32_t>(a1, b1, s1, k1, lo, hi, xshift);
    widen_int128<int32_t>(a2, b2, s2, k2, lo, hi, xshift);
    diffs += (a1 != a2 || b1 != b2 || s1 != s2 || k1 != k2);
    cases += s2 == 32;
  }
  std::printf("%ld %ld\n", diffs, cases);
  return 0;
}
