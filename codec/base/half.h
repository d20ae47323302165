// Exact conversions between f32 and the 16-bit float formats, with
// round-to-nearest-even, in portable integer arithmetic: the results must not
// depend on the host's F16C/NEON conversions or their rounding modes.
#ifndef KVCODEC_CODEC_BASE_HALF_H_
#define KVCODEC_CODEC_BASE_HALF_H_

#include <cstdint>

#include "base/endian.h"

namespace kvc {

inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) {  // Inf or NaN
    return BitsToFloat(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    if (mantissa == 0) return BitsToFloat(sign);
    // Subnormal: normalise. Exact, since f32 has more range and precision.
    exponent = 1;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    mantissa &= 0x3FF;
  }
  return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t F32ToF16(float f) {
  const uint32_t bits = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // Inf or NaN (keep NaN quiet and non-zero)
    return static_cast<uint16_t>(sign | 0x7C00 | (abs > 0x7F800000u ? 0x200 : 0));
  }
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00);  // overflow
  const int32_t exponent = static_cast<int32_t>(abs >> 23) - 127;
  if (exponent < -14) {  // f16 subnormal or zero
    if (exponent < -25) return sign;
    const uint32_t mantissa = (abs & 0x7FFFFF) | 0x800000;
    const uint32_t shift = static_cast<uint32_t>(-exponent - 14 + 13);
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t midpoint = 1u << (shift - 1);
    if (rest > midpoint || (rest == midpoint && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((static_cast<uint32_t>(exponent + 15)) << 10) |
                  ((abs >> 13) & 0x3FF);
  const uint32_t rest = abs & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;  // may carry
  return static_cast<uint16_t>(sign | half);
}

inline float BF16ToF32(uint16_t h) {
  return BitsToFloat(static_cast<uint32_t>(h) << 16);
}

inline uint16_t F32ToBF16(float f) {
  const uint32_t bits = FloatBits(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: keep it a NaN
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  }
  const uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_HALF_H_
