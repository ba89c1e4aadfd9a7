#include "exact.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace fxbn {

BigInt BigInt::from_int(__int128 v) {
  BigInt r;
  r.negative_ = v < 0;
  unsigned __int128 m = r.negative_ ? (unsigned __int128)0 - (unsigned __int128)v : (unsigned __int128)v;
  while (m != 0) {
    r.mag_.push_back(static_cast<uint32_t>(m));
    m >>= 32;
  }
  return r;
}

void BigInt::trim() {
  while (!mag_.empty() && mag_.back() == 0) mag_.pop_back();
  if (mag_.empty()) negative_ = false;
}

BigInt BigInt::operator-() const {
  BigInt r = *this;
  if (!r.mag_.empty()) r.negative_ = !r.negative_;
  return r;
}

BigInt BigInt::shl(int64_t bits) const {
  if (bits < 0) throw std::logic_error("BigInt::shl: negative shift");
  if (mag_.empty() || bits == 0) return *this;
  BigInt r;
  r.negative_ = negative_;
  const size_t limbs = static_cast<size_t>(bits / 32);
  const unsigned rem = static_cast<unsigned>(bits % 32);
  r.mag_.assign(limbs, 0);
  uint32_t carry = 0;
  for (uint32_t limb : mag_) {
    if (rem == 0) {
      r.mag_.push_back(limb);
    } else {
      r.mag_.push_back((limb << rem) | carry);
      carry = limb >> (32 - rem);
    }
  }
  if (carry != 0) r.mag_.push_back(carry);
  r.trim();
  return r;
}

int BigInt::cmp_mag(const std::vector<uint32_t>& x, const std::vector<uint32_t>& y) {
  if (x.size() != y.size()) return x.size() < y.size() ? -1 : 1;
  for (size_t i = x.size(); i-- > 0;) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

std::vector<uint32_t> BigInt::add_mag(const std::vector<uint32_t>& x, const std::vector<uint32_t>& y) {
  const std::vector<uint32_t>& big = x.size() >= y.size() ? x : y;
  const std::vector<uint32_t>& small = x.size() >= y.size() ? y : x;
  std::vector<uint32_t> r(big.size() + 1, 0);
  uint64_t carry = 0;
  for (size_t i = 0; i < big.size(); ++i) {
    uint64_t s = static_cast<uint64_t>(big[i]) + (i < small.size() ? small[i] : 0) + carry;
    r[i] = static_cast<uint32_t>(s);
    carry = s >> 32;
  }
  r[big.size()] = static_cast<uint32_t>(carry);
  return r;
}

std::vector<uint32_t> BigInt::sub_mag(const std::vector<uint32_t>& x, const std::vector<uint32_t>& y) {
  std::vector<uint32_t> r(x.size(), 0);
  int64_t borrow = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t d = static_cast<int64_t>(x[i]) - (i < y.size() ? y[i] : 0) - borrow;
    borrow = d < 0 ? 1 : 0;
    r[i] = static_cast<uint32_t>(d + (borrow << 32));
  }
  return r;
}

BigInt operator+(const BigInt& x, const BigInt& y) {
  BigInt r;
  if (x.negative_ == y.negative_) {
    r.mag_ = BigInt::add_mag(x.mag_, y.mag_);
    r.negative_ = x.negative_;
  } else {
    int c = BigInt::cmp_mag(x.mag_, y.mag_);
    if (c == 0) return r;
    if (c > 0) {
      r.mag_ = BigInt::sub_mag(x.mag_, y.mag_);
      r.negative_ = x.negative_;
    } else {
      r.mag_ = BigInt::sub_mag(y.mag_, x.mag_);
      r.negative_ = y.negative_;
    }
  }
  r.trim();
  return r;
}

BigInt operator*(const BigInt& x, const BigInt& y) {
  BigInt r;
  if (x.mag_.empty() || y.mag_.empty()) return r;
  r.mag_.assign(x.mag_.size() + y.mag_.size(), 0);
  for (size_t i = 0; i < x.mag_.size(); ++i) {
    uint64_t carry = 0;
    for (size_t j = 0; j < y.mag_.size(); ++j) {
      uint64_t t = static_cast<uint64_t>(x.mag_[i]) * y.mag_[j] + r.mag_[i + j] + carry;
      r.mag_[i + j] = static_cast<uint32_t>(t);
      carry = t >> 32;
    }
    size_t k = i + y.mag_.size();
    while (carry != 0) {
      uint64_t t = static_cast<uint64_t>(r.mag_[k]) + carry;
      r.mag_[k] = static_cast<uint32_t>(t);
      carry = t >> 32;
      ++k;
    }
  }
  r.negative_ = x.negative_ != y.negative_;
  r.trim();
  return r;
}

int compare(const BigInt& x, const BigInt& y) { return (x - y).sign(); }

Dyadic Dyadic::from_double(double v) {
  if (!std::isfinite(v)) throw std::invalid_argument("Dyadic::from_double: value is not finite");
  if (v == 0.0) return Dyadic{};
  int e = 0;
  double m = std::frexp(v, &e);                        // v = m * 2^e, 0.5 <= |m| < 1
  int64_t mi = static_cast<int64_t>(std::ldexp(m, 53));  // exact: 53 significant bits at most
  return Dyadic{BigInt::from_int(mi), static_cast<int64_t>(e) - 53};
}

Dyadic Dyadic::half_integer(int64_t twice) { return Dyadic{BigInt::from_int(twice), -1}; }

static void align(const Dyadic& x, const Dyadic& y, BigInt& mx, BigInt& my, int64_t& e) {
  e = std::min(x.exp, y.exp);
  mx = x.mant.shl(x.exp - e);
  my = y.mant.shl(y.exp - e);
}

Dyadic operator+(const Dyadic& x, const Dyadic& y) {
  if (x.sign() == 0) return y;
  if (y.sign() == 0) return x;
  BigInt mx, my;
  int64_t e;
  align(x, y, mx, my, e);
  return Dyadic{mx + my, e};
}

Dyadic operator-(const Dyadic& x, const Dyadic& y) { return x + Dyadic{-y.mant, y.exp}; }

Dyadic operator*(const Dyadic& x, const Dyadic& y) { return Dyadic{x.mant * y.mant, x.exp + y.exp}; }

int compare(const Dyadic& x, const Dyadic& y) { return (x - y).sign(); }

}  // namespace fxbn
