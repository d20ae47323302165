// SIMD pieces of a numerically stable softmax, for decode attention. Their
// results feed no bitstream, so they may differ between targets in the last
// bits (lane-parallel reductions, Highway's Exp).
#ifndef KVCODEC_CODEC_SIMD_SOFTMAX_KERNELS_H_
#define KVCODEC_CODEC_SIMD_SOFTMAX_KERNELS_H_

#include <cstddef>

namespace kvc {
namespace simd {

// The largest of x[0..n) (n >= 1).
float MaxValue(const float* x, size_t n);
// x[i] = exp(x[i] - shift) for i < n; returns their sum. Arguments at or
// below Exp's lower range give 0, as exp would within float precision.
float ExpShiftedSum(float* x, size_t n, float shift);
// x[i] *= factor.
void Scale(float* x, size_t n, float factor);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_SOFTMAX_KERNELS_H_
