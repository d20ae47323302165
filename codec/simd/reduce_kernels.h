// SIMD reductions with the reference association order of
// quant/vector_math.h (16 interleaved partial sums folded by halves).
#ifndef KVCODEC_CODEC_SIMD_REDUCE_KERNELS_H_
#define KVCODEC_CODEC_SIMD_REDUCE_KERNELS_H_

#include <cstddef>

namespace kvc {
namespace simd {

// Bit-identical to kvc::DotProduct / kvc::SumOfSquares.
float DotProduct(const float* a, const float* b, size_t n);
float SumOfSquares(const float* a, size_t n);
// True if every value is finite (kvc::AllFinite).
bool AllFinite(const float* a, size_t n);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_REDUCE_KERNELS_H_
