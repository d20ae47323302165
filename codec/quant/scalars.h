// Storing the scalars of a record (norms, radii, raw values) in a config's
// scalar format, little-endian, rounding to nearest even.
#ifndef KVCODEC_CODEC_QUANT_SCALARS_H_
#define KVCODEC_CODEC_QUANT_SCALARS_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "base/dtype.h"
#include "base/endian.h"
#include "base/half.h"
#include "kvcodec/kvcodec.h"
#include "simd/convert_kernels.h"
#include "simd/reduce_kernels.h"

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

// Many scalars at once (SIMD conversions: in place on a little-endian host,
// else a few thousand at a time through an aligned buffer):
// StoreFiniteScalars stores n values as StoreScalar does and returns
// whether every stored value is finite; LoadFiniteScalars
// loads n values and returns whether every one is finite. Where one is not,
// the caller redoes the values one by one to name it.
inline bool StoreFiniteScalars(const float* v, size_t n, uint32_t format, uint8_t* out) {
  const size_t bytes = DtypeBytes(format);
  if (kHostIsLittleEndian && bytes == 2 && reinterpret_cast<uintptr_t>(out) % 2 == 0) {
    auto* half = reinterpret_cast<uint16_t*>(out);
    const simd::Writes writes = simd::Writes::kCached;
    return format == KVC_DTYPE_F16 ? simd::F32ToF16Finite(v, n, writes, half)
                                   : simd::F32ToBF16Finite(v, n, writes, half);
  }
  constexpr size_t kPiece = 2048;
  bool finite = true;
  for (size_t i = 0; i < n; i += kPiece) {
    const size_t m = std::min(kPiece, n - i);
    uint8_t* to = out + i * bytes;
    if (format == KVC_DTYPE_F32) {
      finite = simd::AllFinite(v + i, m) && finite;
      for (size_t j = 0; j < m; ++j) StoreLE32(FloatBits(v[i + j]), to + 4 * j);
      continue;
    }
    alignas(64) uint16_t half[kPiece];
    const simd::Writes writes = simd::Writes::kCached;
    finite = (format == KVC_DTYPE_F16 ? simd::F32ToF16Finite(v + i, m, writes, half)
                                      : simd::F32ToBF16Finite(v + i, m, writes, half)) &&
             finite;
    for (size_t j = 0; j < m; ++j) StoreLE16(half[j], to + 2 * j);
  }
  return finite;
}

inline bool LoadFiniteScalars(const uint8_t* p, size_t n, uint32_t format, float* out) {
  const size_t bytes = DtypeBytes(format);
  if (kHostIsLittleEndian && bytes == 2 && reinterpret_cast<uintptr_t>(p) % 2 == 0) {
    const auto* half = reinterpret_cast<const uint16_t*>(p);
    return format == KVC_DTYPE_F16 ? simd::F16ToF32Finite(half, n, out)
                                   : simd::BF16ToF32Finite(half, n, out);
  }
  constexpr size_t kPiece = 2048;
  bool finite = true;
  for (size_t i = 0; i < n; i += kPiece) {
    const size_t m = std::min(kPiece, n - i);
    const uint8_t* from = p + i * bytes;
    if (format == KVC_DTYPE_F32) {
      for (size_t j = 0; j < m; ++j) out[i + j] = BitsToFloat(LoadLE32(from + 4 * j));
      finite = simd::AllFinite(out + i, m) && finite;
      continue;
    }
    alignas(64) uint16_t half[kPiece];
    for (size_t j = 0; j < m; ++j) half[j] = LoadLE16(from + 2 * j);
    finite = (format == KVC_DTYPE_F16 ? simd::F16ToF32Finite(half, m, out + i)
                                      : simd::BF16ToF32Finite(half, m, out + i)) &&
             finite;
  }
  return finite;
}

// LoadNorm for n norms at once: true if every one is finite and none is
// negative (-0 included), their sign bits OR-ed in a loop the compiler
// vectorizes. Where one is not, the caller redoes them with LoadNorm to name
// it.
inline bool LoadNorms(const uint8_t* p, size_t n, uint32_t format, float* out) {
  const bool finite = LoadFiniteScalars(p, n, format, out);
  uint32_t signs = 0;
  for (size_t i = 0; i < n; ++i) signs |= FloatBits(out[i]);
  return finite && (signs >> 31) == 0;
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_SCALARS_H_
