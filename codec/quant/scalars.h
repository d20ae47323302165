// Storing the scalars of a record (norms, radii, raw values) in a config's
// scalar format, little-endian, rounding to nearest even.
#ifndef KVCODEC_CODEC_QUANT_SCALARS_H_
#define KVCODEC_CODEC_QUANT_SCALARS_H_

#include <cmath>
#include <cstdint>

#include "base/endian.h"
#include "base/half.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

inline void StoreScalar(float v, uint32_t format, uint8_t* p) {
  switch (format) {
    case KVC_DTYPE_F16: StoreLE16(F32ToF16(v), p); return;
    case KVC_DTYPE_BF16: StoreLE16(F32ToBF16(v), p); return;
    default: StoreLE32(FloatBits(v), p); return;
  }
}

inline float LoadScalar(const uint8_t* p, uint32_t format) {
  switch (format) {
    case KVC_DTYPE_F16: return F16ToF32(LoadLE16(p));
    case KVC_DTYPE_BF16: return BF16ToF32(LoadLE16(p));
    default: return BitsToFloat(LoadLE32(p));
  }
}

// Stores v; false if the stored value is not finite (f16 tops out at 65504).
inline bool StoreFiniteScalar(float v, uint32_t format, uint8_t* p) {
  StoreScalar(v, format, p);
  return std::isfinite(LoadScalar(p, format));
}

// A stored norm is valid if finite and not negative (-0 included: no encoder
// writes it).
inline bool LoadNorm(const uint8_t* p, uint32_t format, float* norm) {
  *norm = LoadScalar(p, format);
  return std::isfinite(*norm) && !std::signbit(*norm);
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_SCALARS_H_
