// Fused TurboQuant-MSE row kernels: for power-of-two head dims whose
// rotation is one Hadamard pass that fits in the register file, a vector is
// loaded once and rotated, measured, quantized and packed (or unpacked,
// scaled and rotated back) without leaving registers. The same bytes and
// values as MseQuantizer's step-by-step path (rotation, SumOfSquares,
// Quantize + PackBits; UnpackBits, Gain, Dequantize, inverse rotation),
// which the tests compare on every target.
#ifndef KVCODEC_CODEC_SIMD_TURBOQUANT_KERNELS_H_
#define KVCODEC_CODEC_SIMD_TURBOQUANT_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "quant/codebooks.h"

namespace kvc {
namespace simd {

struct TqRows {
  size_t dim;              // a power of two
  const float* signs;      // the rotation's dim signs (+1 / -1)
  float rotation_scale;    // f32(1 / sqrt(dim))
  const Codebook* book;    // bits 1..4
  float sqrt_dim;          // f32(sqrt(dim))
  bool norm_correction;
};

// For n < count: y = rotation(x + n * dim), norms[n] = f32 ||y||, and the
// packed indices of y * (sqrt_dim / norm) at packed + n * index_bytes, where
// index_bytes = dim * bits / 8. Returns false, writing nothing, where no
// fused kernel exists for this target, dim and codebook.
bool TqEncodeRows(const TqRows& rows, const float* x, size_t count, float* norms,
                  uint8_t* packed);

// The inverse for count records whose norms are valid and whose padding is
// checked: out + n * dim = inverse rotation of centroid * gain. Returns false,
// writing nothing, where no fused kernel exists.
bool TqDecodeRows(const TqRows& rows, const uint8_t* packed, const float* norms,
                  size_t count, float* out);
// The same without the inverse rotation: y + n * dim = centroid * gain (the
// reconstruction in the rotated domain).
bool TqDequantizeRows(const TqRows& rows, const uint8_t* packed, const float* norms,
                      size_t count, float* y);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_TURBOQUANT_KERNELS_H_
