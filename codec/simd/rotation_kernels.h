// SIMD randomized Hadamard pass (FORMAT.md, "Rotation"), bit-identical to
// Rotation's reference loops in quant/rotation.cc on every target.
#ifndef KVCODEC_CODEC_SIMD_ROTATION_KERNELS_H_
#define KVCODEC_CODEC_SIMD_ROTATION_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// One forward pass on p floats (p a power of two >= 2): x *= signs, then the
// butterflies of stride p/2 down to 1 (a+b, a-b), then x *= scale.
void HadamardForward(float* x, const float* signs, size_t p, float scale);
// The inverse pass: butterflies, x *= scale, then x *= signs.
void HadamardInverse(float* x, const float* signs, size_t p, float scale);

// Whole rows of one power-of-two pass (dim = p) held in registers, where the
// target has them (dim = 1, 2, 4, 8 or 16 vectors); false, writing nothing,
// elsewhere. For n < count: y + n * dim = the forward pass of x + n * dim
// and, if sum_squares is not null, sum_squares[n] = kvc::SumOfSquares of
// it. y may be x.
bool RotateRows(const float* signs, float scale, size_t dim, const float* x, size_t count,
                float* y, float* sum_squares);
// out + n * dim = the inverse pass of y + n * dim (out may be y).
bool InverseRotateRows(const float* signs, float scale, size_t dim, const float* y,
                       size_t count, float* out);

// Rows of any layout of passes of p floats (offsets and signs of each pass,
// in order: Rotation's), one call: y + n * dim = the forward passes of
// x + n * dim (y may be x) and, if sum_squares is not null, its
// kvc::SumOfSquares; and the inverse in place.
void RotatePassRows(const float* const* signs, const uint32_t* offsets, size_t passes, size_t p,
                    float scale, size_t dim, const float* x, size_t count, float* y,
                    float* sum_squares);
void InversePassRows(const float* const* signs, const uint32_t* offsets, size_t passes, size_t p,
                     float scale, size_t dim, float* y, size_t count);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_ROTATION_KERNELS_H_
