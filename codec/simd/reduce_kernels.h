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

// Channel energies of `count` rows of d floats, rows in order:
// energy[j] += double(x[j]) * double(x[j]) (each product rounded to double,
// then added).
void AccumulateSquares(const float* x, size_t d, size_t count, double* energy);
// Channel sums of `count` rows of d floats, rows in order:
// sums[j] += double(x[j]) (the channel means of centered blocks).
void AccumulateColumns(const float* x, size_t d, size_t count, double* sums);
// RoPE block energies: for block i < d / 2 with channels (a, b) = (i, i + d/2)
// or, interleaved, (2i, 2i + 1): energy[i] += (double(a)^2 + double(b)^2).
void AccumulatePairEnergies(const float* x, size_t d, size_t count, bool interleaved,
                            double* energy);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_REDUCE_KERNELS_H_
