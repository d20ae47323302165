#include "base/prng.h"

#include <cmath>
#include <cstring>

namespace kvc {

double PortableLog(double x) {
  // x = m * 2^e with m in [sqrt(1/2), sqrt(2)), read from the bits (exact).
  uint64_t bits;
  std::memcpy(&bits, &x, 8);
  int e = static_cast<int>((bits >> 52) & 0x7FF) - 1023;
  bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;  // m in [1,2)
  double m;
  std::memcpy(&m, &bits, 8);
  if (m > 1.4142135623730951) {
    m = m * 0.5;
    e += 1;
  }
  // log(m) = 2 atanh(f), f = (m-1)/(m+1), |f| < 0.1716: the odd series to
  // f^23 leaves a relative error below 1e-17.
  const double f = (m - 1.0) / (m + 1.0);
  const double f2 = f * f;
  double series = 1.0 / 23.0;
  for (int k = 21; k >= 1; k -= 2) series = series * f2 + 1.0 / k;
  const double log_m = 2.0 * f * series;
  return static_cast<double>(e) * 0.6931471805599453 + log_m;
}

double GaussianSource::Next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  for (;;) {
    const double u = rng_.NextSigned();
    const double v = rng_.NextSigned();
    const double s = u * u + v * v;
    if (s >= 1.0 || s == 0.0) continue;
    const double scale = std::sqrt(-2.0 * PortableLog(s) / s);
    spare_ = v * scale;
    has_spare_ = true;
    return u * scale;
  }
}

std::vector<float> QjlMatrix(uint64_t seed, size_t d) {
  GaussianSource gauss(DeriveSeed(seed, kTagQjl));
  std::vector<float> s(d * d);
  for (float& v : s) v = static_cast<float>(gauss.Next());
  return s;
}

}  // namespace kvc
