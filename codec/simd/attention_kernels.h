// Attention kernels on encoded rows, without decoding them: inner products
// of queries with rows of table entries addressed by packed indices
// (TurboQuant centroids, QJL signs as the table {+1, -1}) and weighted sums
// of such rows, and the same on RAW rows of f16, bf16 or f32 values.
//
// They serve TensorCodec::Scores and ::Attend, whose results are not part of
// the bitstream: they use fused multiply-adds and their own summation order
// (deterministic for a target), within 1e-5 of the exact value relative to
// the norms involved, not bit-identical to decode-then-compute.
//
// Several queries (the query heads of a GQA group) share each decoded
// register: a row's entries are looked up once per group of up to four
// queries, not once per query.
#ifndef KVCODEC_CODEC_SIMD_ATTENTION_KERNELS_H_
#define KVCODEC_CODEC_SIMD_ATTENTION_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// `count` rows of `dim` indices of `bits` bits (1..8), packed LSB first as
// kvc::PackBits writes them; row n starts at packed + n * stride (stride >=
// ceil(dim * bits / 8) bytes). Index k stands for table[k]; the table has
// 2^bits entries. Nothing is read past the rows' bytes.
struct IndexRows {
  const uint8_t* packed;
  size_t stride;
  size_t count;
  size_t dim;
  int bits;
  const float* table;
};

// dots[q * dot_stride + n] = sum over j of table[idx(n, j)] * queries[q *
// dim + j] for q < num_queries, n < rows.count; and, if len2 is not null,
// len2[n] = sum over j of table[idx(n, j)]^2 (num_queries may then be 0).
void IndexRowDots(const IndexRows& rows, const float* queries, size_t num_queries,
                  float* dots, size_t dot_stride, float* len2);

// out[q * dim + j] = sum over n of weights[q * weight_stride + n] *
// table[idx(n, j)], for q < num_queries; out is overwritten.
void IndexRowSums(const IndexRows& rows, const float* weights, size_t weight_stride,
                  size_t num_queries, float* out);

// `count` records of `dim` indices of `bits` bits (1..8) back to back in one
// LSB-first bit stream, records not aligned to bytes (Block-GTQ's groups
// within a vector's record): index j of record n is the `bits` bits from bit
// first_bit + n * record_bits + j * bits. Index k stands for table[k]; the
// table has 2^bits entries. The stream is read up to 8 bytes past the byte
// that holds the last record's last bit.
struct FieldRows {
  const uint8_t* stream;
  size_t first_bit;
  size_t record_bits;
  size_t count;
  size_t dim;
  int bits;
  const float* table;
};

// IndexRowDots on field rows: the same dots and, if len2 is not null, the
// same squared lengths. Records run across lanes (one record per lane, the
// indices of a lane gathered from the stream), so that no record pays a
// reduction across lanes, whatever its length.
void FieldRowDots(const FieldRows& rows, const float* queries, size_t num_queries, float* dots,
                  size_t dot_stride, float* len2);

// The gains of TurboQuant records, applied by FieldRowGainedDots: gain_n =
// norms[n] / sqrt(len2_n) (0 where that length is 0) with norm correction,
// len2_n being record n's squared length (FieldRowDots' len2), else
// norms[n] / sqrt_dim.
struct RowGains {
  const float* norms;
  bool norm_correction;
  float sqrt_dim;
};

// dots[q * dot_stride + n] += gain_n * (FieldRowDots' dot): reconstructions'
// dots added in place, each gain found and applied in the record's lane.
void FieldRowGainedDots(const FieldRows& rows, const float* queries, size_t num_queries,
                        const RowGains& gains, float* dots, size_t dot_stride);

// `count` rows of `dim` values stored little-endian in `format` (kvc_dtype
// F32, F16 or BF16), row n at values + n * dim * bytes.
struct ValueRows {
  const uint8_t* values;
  uint32_t format;
  size_t count;
  size_t dim;
};

// dots[q * dot_stride + n] = <queries[q], row n>. A non-finite stored value
// gives non-finite dots (IEEE arithmetic on the exact values), never finite
// ones, so that callers can find it afterwards.
void ValueRowDots(const ValueRows& rows, const float* queries, size_t num_queries, float* dots,
                  size_t dot_stride);
// out[q * dim + j] = sum over n of weights[q * weight_stride + n] * row n
// [j]; out is overwritten. Non-finite stored values give non-finite sums.
void ValueRowSums(const ValueRows& rows, const float* weights, size_t weight_stride,
                  size_t num_queries, float* out);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_ATTENTION_KERNELS_H_
