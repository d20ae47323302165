// TurboQuant-MSE on one (sub)vector: rotate, store the norm, quantize each
// coordinate on the Lloyd-Max codebook scaled by sqrt(dim) / norm. Used whole
// by tq-mse and tq-prod, and on channel groups by the outlier split and
// Block-GTQ.
#ifndef KVCODEC_CODEC_QUANT_MSE_QUANTIZER_H_
#define KVCODEC_CODEC_QUANT_MSE_QUANTIZER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/status.h"
#include "quant/codebooks.h"
#include "quant/rotation.h"
#include "simd/attention_kernels.h"
#include "simd/turboquant_kernels.h"

namespace kvc {

class MseQuantizer {
 public:
  // dim >= 2; bits 1..8; rotation: kvc_rotation; format: scalar format of the
  // norm.
  MseQuantizer(uint32_t dim, int bits, uint32_t rotation, uint64_t seed,
               bool norm_correction, uint32_t format);

  uint32_t dim() const { return dim_; }
  size_t norm_bytes() const;
  size_t index_bytes() const { return (size_t{dim_} * bits_ + 7) / 8; }
  const Rotation& rotation() const { return rotation_; }

  // Rotates x (finite) into y (dim floats), writes the norm and the packed
  // indices. INVALID_VALUE if the norm overflows its format.
  Status Encode(const float* x, float* y, uint8_t* norm, uint8_t* indices) const;
  // Encode for `count` vectors (x: count x dim), records at norms + n *
  // norm_bytes() and indices + n * index_bytes(); fused kernels where they
  // apply. On failure *bad_vector names the vector.
  Status EncodeRows(const float* x, size_t count, uint8_t* norms, uint8_t* indices,
                    size_t* bad_vector) const {
    return EncodeRows(x, count, norms, norm_bytes(), indices, bad_vector);
  }
  // The same with vector n's norm at norms + n * norm_stride.
  Status EncodeRows(const float* x, size_t count, uint8_t* norms, size_t norm_stride,
                    uint8_t* indices, size_t* bad_vector) const;
  // Decode for `count` records into out (count x dim); records are checked
  // first, in order, as Decode checks them.
  Status DecodeRows(const uint8_t* norms, const uint8_t* indices, size_t count, float* out,
                    size_t* bad_vector) const {
    return DecodeRows(norms, norm_bytes(), indices, count, out, bad_vector);
  }
  Status DecodeRows(const uint8_t* norms, size_t norm_stride, const uint8_t* indices,
                    size_t count, float* out, size_t* bad_vector) const;
  // The reconstruction in the rotated domain: centroid * gain per coordinate.
  // CORRUPT if the stored norm is invalid or padding bits are set.
  Status DecodeRotated(const uint8_t* norm, const uint8_t* indices, float* y) const;
  // Checks and stores a vector's norm in the norm format (INVALID_VALUE if
  // it is not finite or does not fit).
  Status StoreNorm(float norm, uint8_t* record) const;
  // For `count` rotated rows y (count x dim) with these norms (stored, and
  // checked, by the caller): the packed indices at indices + n *
  // index_bytes(), as Encode writes them.
  void QuantizeRotatedRows(const float* y, const float* norms, size_t count,
                           uint8_t* indices) const;
  // DecodeRotated's checks alone, for callers that check every record
  // before decoding a batch of them (indices null: a record without padding
  // of its own, only its norm to check).
  Status CheckRecord(const uint8_t* norm, const uint8_t* indices) const;
  // DecodeRotated for `count` checked records (norms + n * norm_bytes(),
  // indices + n * index_bytes()) into y (count x dim).
  void DecodeRotatedRows(const uint8_t* norms, const uint8_t* indices, size_t count,
                         float* y) const;
  // DecodeRotated then the inverse rotation.
  Status Decode(const uint8_t* norm, const uint8_t* indices, float* x) const;

  // Attention in the rotated domain (TensorCodec::Scores and ::Attend), on
  // `count` records: norm n at norms + n * norm_stride, indices at indices +
  // n * index_bytes(). Records are checked first, tile by tile, as
  // DecodeRows checks them (CORRUPT, *bad_vector naming the first). The
  // entries are looked up once per row for all the queries, and each gain
  // (norm / sqrt(dim), or with norm correction norm / the centroids' length)
  // is applied once per row.
  // dots[q * dot_stride + n] = <rotated_queries[q], reconstruction n>.
  Status RotatedDots(const uint8_t* norms, size_t norm_stride, const uint8_t* indices,
                     size_t count, const float* rotated_queries, size_t num_queries,
                     float* dots, size_t dot_stride, size_t* bad_vector) const;
  // RotatedDots on records whose indices lie back to back in a bit stream
  // (Block-GTQ's groups), added to dots: dots[q * dot_stride + n] +=
  // <rotated_queries[q], reconstruction n>. Record n's indices are the dim *
  // bits bits from bit first_bit + n * record_bits of `stream` (readable 8
  // bytes past them, as simd::FieldRows); such records have no padding of
  // their own to check.
  Status AddRotatedFieldDots(const uint8_t* norms, size_t norm_stride, const uint8_t* stream,
                             size_t first_bit, size_t record_bits, size_t count,
                             const float* rotated_queries, size_t num_queries, float* dots,
                             size_t dot_stride, size_t* bad_vector) const;
  // out[q * dim + j] = sum over n of weights[q * weight_stride + n] *
  // reconstruction n [j], in the rotated domain (the caller rotates back
  // once); out is overwritten.
  Status RotatedSums(const uint8_t* norms, size_t norm_stride, const uint8_t* indices,
                     size_t count, const float* weights, size_t weight_stride,
                     size_t num_queries, float* out, size_t* bad_vector) const;

 private:
  static constexpr size_t kMaxBatch = 16;  // rows of the batched paths
  // The norms of `count` records at once: true if every norm
  // is valid and every record's padding zero (else nothing is reported:
  // CheckRecord names the culprit). indices null: norms alone.
  bool LoadNorms(const uint8_t* norms, size_t norm_stride, const uint8_t* indices, size_t count,
                 float* out) const;
  // Rows per tile of RotatedDots / RotatedSums (their stack buffers).
  static constexpr size_t kAttentionTile = 512;
  // The norms of `count` records, checked as DecodeRows checks them
  // (indices null: records without padding of their own).
  Status LoadTileNorms(const uint8_t* norms, size_t norm_stride, const uint8_t* indices,
                       size_t count, float* out, size_t* bad_vector) const;
  // Norms to gains in place; len2: the centroids' squared lengths (read
  // only with norm correction).
  void NormsToGains(const float* len2, size_t count, float* gains) const;
  // Attention's tiles of up to kAttentionTile records: each tile's norms
  // loaded and checked (LoadTileNorms), then tile(first record, records,
  // norms). The first invalid record ends the walk, *bad_vector naming it.
  template <class Tile>
  Status ForEachNormTile(const uint8_t* norms, size_t norm_stride, const uint8_t* indices,
                         size_t count, size_t* bad_vector, const Tile& tile) const;
  // The fused kernels' view of this quantizer (signs null: none apply).
  simd::TqRows Fused() const {
    return {dim_, rotation_.single_pass_signs(), rotation_.scale(), &book_, sqrt_dim_,
            norm_correction_};
  }
  // Scale from codebook units to the vector's (FORMAT.md, TurboQuant-MSE).
  float Gain(const uint8_t* idx, float norm) const;
  Status Unpack(const uint8_t* norm_record, const uint8_t* indices, float* norm,
                uint8_t* idx) const;

  uint32_t dim_;
  int bits_;
  bool norm_correction_;
  uint32_t format_;
  const Codebook& book_;
  Rotation rotation_;
  float sqrt_dim_;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_MSE_QUANTIZER_H_
