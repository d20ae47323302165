// SIMD QJL residual sketch signs (TurboQuant-prod), bit-identical to the
// reference loop in quant/turboquant_codec.cc on every target.
#ifndef KVCODEC_CODEC_SIMD_QJL_KERNELS_H_
#define KVCODEC_CODEC_SIMD_QJL_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// For each of count residuals r + n * d: signs[n * d + i] = (z_i < 0) with
// z_i = sum over j ascending of S[i][j] * r[j] (z starts at +0, each product
// rounded, then added), for S given transposed: st[j * d + i] = S[i][j].
// Outputs are computed lane-parallel, each lane in the reference's order.
void QjlSigns(const float* st, const float* r, size_t count, size_t d, uint8_t* signs);

// The decoder's correction, for n < count: y + n * d gets c * factors[n]
// added, c[j] = sum over i ascending of (bit i of the row's packed signs ?
// -S[i][j] : S[i][j]) (c starts at +0), for s holding the rows of S and -S
// interleaved (s[2 i d + j] = S[i][j], s[(2 i + 1) d + j] = -S[i][j]) and
// signs packed LSB first, d / 8 bytes a row (d a multiple of 8). Columns are
// computed lane-parallel, each lane in the reference's order.
void QjlCorrectRows(const float* s, const uint8_t* signs, const float* factors, size_t count,
                    size_t d, float* y);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_QJL_KERNELS_H_
