// Angle functions whose every operation is specified (FORMAT.md, "Angles"),
// so encoders agree on bins and decoders on tables, on every platform and
// SIMD target. libm's atan2/sin/cos are not reproducible across platforms.
#ifndef KVCODEC_CODEC_BASE_PORTABLE_MATH_H_
#define KVCODEC_CODEC_BASE_PORTABLE_MATH_H_

#include <cstdint>

namespace kvc {

constexpr double kPi = 3.14159265358979323846;

// Angle of (x, y) in [0, 2*pi), in f32 arithmetic: octant reduction, then an
// odd Taylor polynomial of atan on |u| <= tan(pi/8). Error below 1e-6 rad.
float PortableAngle(float x, float y);

// Bin of (x, y) on the uniform codebook of n bins over [0, 2*pi): bin k
// holds angles in [2*pi*k/n, 2*pi*(k+1)/n).
uint32_t AngleBin(float x, float y, uint32_t n);

// sin and cos of a in [0, 2*pi] in IEEE double with a fixed algorithm
// (quadrant reduction, Taylor series to degree 21): for building tables.
void PortableSinCos(double a, double* sine, double* cosine);

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_PORTABLE_MATH_H_
