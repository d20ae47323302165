// SIMD randomized Hadamard pass (FORMAT.md, "Rotation"), bit-identical to
// Rotation's reference loops in quant/rotation.cc on every target.
#ifndef KVCODEC_CODEC_SIMD_ROTATION_KERNELS_H_
#define KVCODEC_CODEC_SIMD_ROTATION_KERNELS_H_

#include <cstddef>

namespace kvc {
namespace simd {

// One forward pass on p floats (p a power of two >= 2): x *= signs, then the
// butterflies of stride p/2 down to 1 (a+b, a-b), then x *= scale.
void HadamardForward(float* x, const float* signs, size_t p, float scale);
// The inverse pass: butterflies, x *= scale, then x *= signs.
void HadamardInverse(float* x, const float* signs, size_t p, float scale);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_ROTATION_KERNELS_H_
