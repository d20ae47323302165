// SIMD row conversions between the caller's dtypes and f32 (Highway dynamic
// dispatch). Bit-identical to base/half.h on every target: integer
// arithmetic plus exactly rounded f32 additions and power-of-two products.
#ifndef KVCODEC_CODEC_SIMD_CONVERT_KERNELS_H_
#define KVCODEC_CODEC_SIMD_CONVERT_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// Contiguous rows; `in`/`out` 16-bit arrays need only 2-byte alignment.
void F16ToF32(const uint16_t* in, size_t n, float* out);
void BF16ToF32(const uint16_t* in, size_t n, float* out);
// Rounds to nearest even as F32ToF16. Returns false if some output is +-inf
// while its input was finite or infinite (the caller re-runs the reference
// to report which); NaN inputs give sign | 0x7E00.
bool F32ToF16(const float* in, size_t n, uint16_t* out);
void F32ToBF16(const float* in, size_t n, uint16_t* out);

// How a narrowing conversion stores. kAroundCache: non-temporal stores
// where `out` is vector-aligned, for outputs larger than the last-level
// cache, which ordinary stores would first read into it and then evict
// useful lines for; the caller runs hwy::FlushStream() before the output
// is handed on.
enum class Writes { kCached, kAroundCache };

// The same conversions, returning whether every value is finite: every input
// (widening), or every output (narrowing; false on a non-finite input or an
// overflow, where the caller re-runs the reference to report it).
bool F16ToF32Finite(const uint16_t* in, size_t n, float* out);
bool BF16ToF32Finite(const uint16_t* in, size_t n, float* out);
bool F32ToF16Finite(const float* in, size_t n, Writes writes, uint16_t* out);
bool F32ToBF16Finite(const float* in, size_t n, Writes writes, uint16_t* out);

// Columns of rows: out[n * m + k] = in[n * stride + columns[k]] for n < count,
// k < m (every column < stride).
void GatherColumns(const float* in, size_t stride, size_t count, const int32_t* columns, size_t m,
                   float* out);

// Rows of d channels split in two: bit j of mask (LSB first, d / 8 bytes)
// set sends channel j to `high`, m_high of them per row in ascending order,
// clear to `low`; the same as GatherColumns of high_columns and low_columns
// (those channels in ascending order), which it falls back to.
void SplitColumns(const float* in, size_t d, size_t count, const uint8_t* mask,
                  const int32_t* high_columns, size_t m_high, const int32_t* low_columns,
                  float* high, float* low);

// Columns with a stride each: out[n * m + k] = in[columns[k] + n *
// strides[k]] for n < count, k < m (every index below 2^31).
void GatherStridedColumns(const float* in, size_t count, const int32_t* columns,
                          const int32_t* strides, size_t m, float* out);

// Rows plus one vector: out[n * d + j] = x[n * d + j] + v[j] for n < count,
// j < d, one rounded f32 addition each (out may be x). Subtracting is adding
// the negated vector: the same result in IEEE arithmetic.
void AddToRows(const float* x, size_t d, size_t count, const float* v, float* out);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_CONVERT_KERNELS_H_
