// SIMD pair angles and radii (base/portable_math.h), bit-identical to
// AngleBin and to sqrt(x * x + y * y) on every target.
#ifndef KVCODEC_CODEC_SIMD_ANGLE_KERNELS_H_
#define KVCODEC_CODEC_SIMD_ANGLE_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// For the pairs (v[2i], v[2i+1]), i < pairs (finite values): bins[i] =
// AngleBin(v[2i], v[2i+1], n) (n in 1..65536) and, if radii is not null,
// radii[i] = sqrt(v[2i] * v[2i] + v[2i+1] * v[2i+1]).
void PairAngles(const float* v, size_t pairs, uint32_t n, uint32_t* bins, float* radii);

// PolarQuant's fold of radii (quant/polarquant_codec.cc): for the pairs
// (e, o) = (r[2i], r[2i+1]), bins[i] = number of k < count with
// o > tan_thresholds[k] * e, and radii[i] = sqrt(e * e + o * o).
void FoldPairs(const float* r, size_t pairs, const float* tan_thresholds, size_t count,
               uint32_t* bins, float* radii);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_ANGLE_KERNELS_H_
