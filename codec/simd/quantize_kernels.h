// SIMD Lloyd-Max quantization and dequantization (quant/codebooks.h,
// quant/mse_quantizer.cc), bit-identical to the scalar reference.
#ifndef KVCODEC_CODEC_SIMD_QUANTIZE_KERNELS_H_
#define KVCODEC_CODEC_SIMD_QUANTIZE_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "quant/codebooks.h"

namespace kvc {
namespace simd {

// idx[j] = QuantizeToCodebook(book, y[j] * scale).
void Quantize(const Codebook& book, const float* y, size_t n, float scale, uint8_t* idx);
// The indices of Quantize packed as PackBits(idx, n, book.bits) would, where
// a fused kernel exists for this codebook and target (4 bits, 8+ lanes);
// returns false, writing nothing, otherwise.
bool QuantizePacked(const Codebook& book, const float* y, size_t n, float scale,
                    uint8_t* packed);
// y[j] = book.centroids[idx[j]] * gain.
void Dequantize(const Codebook& book, const uint8_t* idx, size_t n, float gain, float* y);
// out[j] = count of thresholds[0..count) strictly below in[j] * scale
// (ascending thresholds, count <= 15); NaN gives 0.
void CountBelow(const float* thresholds, size_t count, const float* in, size_t n,
                float scale, uint8_t* out);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_QUANTIZE_KERNELS_H_
