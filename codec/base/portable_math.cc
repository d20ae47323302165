#include "base/portable_math.h"

#include <cmath>

namespace kvc {

float PortableAngle(float x, float y) {
  const float ax = std::fabs(x), ay = std::fabs(y);
  const float lo = ax < ay ? ax : ay;
  const float hi = ax < ay ? ay : ax;
  const float t = hi > 0.0f ? lo / hi : 0.0f;  // tan of the angle in [0, pi/4]
  // atan(t) = pi/4 + atan((t - 1) / (t + 1)) keeps the series argument small.
  const bool reduced = t > 0.414213562f;
  const float u = reduced ? (t - 1.0f) / (t + 1.0f) : t;
  const float s = u * u;
  float p = -1.0f / 17.0f;
  p = p * s + 1.0f / 15.0f;
  p = p * s - 1.0f / 13.0f;
  p = p * s + 1.0f / 11.0f;
  p = p * s - 1.0f / 9.0f;
  p = p * s + 1.0f / 7.0f;
  p = p * s - 1.0f / 5.0f;
  p = p * s + 1.0f / 3.0f;
  float a = u - (u * s) * p;  // u - u^3/3 + u^5/5 - ...
  if (reduced) a = 0.785398163f + a;
  if (ay > ax) a = 1.57079633f - a;
  if (x < 0.0f) a = 3.14159265f - a;
  if (y < 0.0f) a = 6.28318531f - a;
  return a;
}

uint32_t AngleBin(float x, float y, uint32_t n) {
  const float per_radian = static_cast<float>(n) * 0.159154943f;  // n / 2pi
  const float position = PortableAngle(x, y) * per_radian;
  const uint32_t bin = position > 0.0f ? static_cast<uint32_t>(position) : 0;
  return bin < n ? bin : n - 1;
}

void PortableSinCos(double a, double* sine, double* cosine) {
  const double half_pi = kPi / 2;
  int quadrant = static_cast<int>(a / half_pi);
  if (quadrant > 3) quadrant = 3;
  const double r = a - quadrant * half_pi;  // [0, pi/2]
  const double r2 = r * r;
  // Horner on the Taylor series: sin r = r(1 - r^2/(2*3)(1 - r^2/(4*5)(...)))
  double s = 1.0;
  for (int k = 20; k >= 2; k -= 2) s = 1.0 - s * r2 / (k * (k + 1));
  s = s * r;
  double c = 1.0;
  for (int k = 20; k >= 2; k -= 2) c = 1.0 - c * r2 / (k * (k - 1));
  switch (quadrant) {
    case 0: *sine = s; *cosine = c; break;
    case 1: *sine = c; *cosine = -s; break;
    case 2: *sine = -s; *cosine = -c; break;
    default: *sine = -c; *cosine = s; break;
  }
}

}  // namespace kvc
