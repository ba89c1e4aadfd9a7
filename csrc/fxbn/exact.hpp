// Exact dyadic rationals m * 2^e with an arbitrary-precision integer m.
//
// Used only where the fast long-double filter in reference.cpp cannot decide a comparison (exact ties, values within
// a few ulps of a level boundary) and for the batchnorm form's square comparisons.  Speed is secondary; every
// operation is exact and never rounds.
#pragma once

#include <cstdint>
#include <vector>

namespace fxbn {

class BigInt {
 public:
  BigInt() = default;
  static BigInt from_int(__int128 v);

  int sign() const { return mag_.empty() ? 0 : (negative_ ? -1 : 1); }
  BigInt operator-() const;
  BigInt shl(int64_t bits) const;  // multiply by 2^bits, bits >= 0

  friend BigInt operator+(const BigInt& x, const BigInt& y);
  friend BigInt operator-(const BigInt& x, const BigInt& y) { return x + (-y); }
  friend BigInt operator*(const BigInt& x, const BigInt& y);
  friend int compare(const BigInt& x, const BigInt& y);  // -1, 0, 1

 private:
  bool negative_ = false;
  std::vector<uint32_t> mag_;  // little-endian limbs, no leading zero limbs; empty means zero

  void trim();
  static int cmp_mag(const std::vector<uint32_t>& x, const std::vector<uint32_t>& y);
  static std::vector<uint32_t> add_mag(const std::vector<uint32_t>& x, const std::vector<uint32_t>& y);
  static std::vector<uint32_t> sub_mag(const std::vector<uint32_t>& x, const std::vector<uint32_t>& y);  // x >= y
};

// value = mant * 2^exp
struct Dyadic {
  BigInt mant;
  int64_t exp = 0;

  static Dyadic from_double(double v);  // exact; v must be finite
  static Dyadic from_int(__int128 v) { return Dyadic{BigInt::from_int(v), 0}; }
  static Dyadic half_integer(int64_t twice);  // twice / 2
  int sign() const { return mant.sign(); }
};

Dyadic operator+(const Dyadic& x, const Dyadic& y);
Dyadic operator-(const Dyadic& x, const Dyadic& y);
Dyadic operator*(const Dyadic& x, const Dyadic& y);
int compare(const Dyadic& x, const Dyadic& y);

}  // namespace fxbn
