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
// kvc::PackBits(idx, n, bits, packed) and kvc::UnpackBits(packed, n, bits,
// idx), the fields taken a block of bytes at a time (simd/bitpack-inl.h).
void PackIndices(const uint8_t* idx, size_t n, int bits, uint8_t* packed);
void UnpackIndices(const uint8_t* packed, size_t n, int bits, uint8_t* idx);
// y[j] = book.centroids[idx[j]] * gain.
void Dequantize(const Codebook& book, const uint8_t* idx, size_t n, float gain, float* y);
// out[j] = count of thresholds[0..count) strictly below in[j] * scale
// (ascending thresholds, count <= 15); NaN gives 0.
void CountBelow(const float* thresholds, size_t count, const float* in, size_t n,
                float scale, uint8_t* out);

// Rows of n values, one call: for r < count, the indices of Quantize(book,
// y + r * n, n, scales[r]) packed as PackBits at packed + r * ceil(n * bits
// / 8) (padding bits zero).
void QuantizeRows(const Codebook& book, const float* y, size_t n, size_t count,
                  const float* scales, uint8_t* packed);
// The inverse for records with zero padding: y + r * n = centroids * gain,
// gain = norms[r] / sqrt_dim, or with norm correction norms[r] / the length
// of the row's centroids (0 if that length is 0), as MseQuantizer's Gain.
void DequantizeRows(const Codebook& book, const uint8_t* packed, size_t n, size_t count,
                    const float* norms, float sqrt_dim, bool norm_correction, float* y);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_QUANTIZE_KERNELS_H_
