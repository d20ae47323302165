#include "quant/mse_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "config/tensor_config.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "simd/bitpack.h"
#include "simd/quantize_kernels.h"

namespace kvc {

MseQuantizer::MseQuantizer(uint32_t dim, int bits, uint32_t rotation, uint64_t seed,
                           bool norm_correction, uint32_t format)
    : dim_(dim),
      bits_(bits),
      norm_correction_(norm_correction),
      format_(format),
      book_(GaussianCodebook(bits)),
      rotation_(rotation, dim, seed),
      sqrt_dim_(static_cast<float>(std::sqrt(static_cast<double>(dim)))) {}

size_t MseQuantizer::norm_bytes() const { return DtypeBytes(format_); }

Status MseQuantizer::Encode(const float* x, float* y, uint8_t* norm_record,
                            uint8_t* indices) const {
  std::copy(x, x + dim_, y);
  rotation_.Forward(y);
  const float norm = std::sqrt(simd::SumOfSquares(y, dim_));
  KVC_RETURN_IF_ERROR(StoreNorm(norm, norm_record));
  const float scale = norm > 0 ? sqrt_dim_ / norm : 0.0f;
  uint8_t idx[kMaxHeadDim];
  if (simd::QuantizePacked(book_, y, dim_, scale, indices)) return OkStatus();
  simd::Quantize(book_, y, dim_, scale, idx);
  simd::PackBits(idx, dim_, bits_, indices);
  return OkStatus();
}

Status MseQuantizer::EncodeRows(const float* x, size_t count, uint8_t* norms,
                                size_t norm_stride, uint8_t* indices, size_t* bad_vector) const {
  // Batches of rows: fused kernels where they apply (rows in registers from
  // load to packed indices), else rotated together, then quantized together;
  // norms stored and checked in order.
  constexpr size_t kBatch = kMaxBatch;
  float batch_norms[kBatch], scales[kBatch];
  const simd::TqRows fused = Fused();
  bool use_fused = fused.signs != nullptr;
  std::vector<float> y;
  for (size_t n0 = 0; n0 < count; n0 += kBatch) {
    const size_t m = std::min(kBatch, count - n0);
    uint8_t* batch_indices = indices + n0 * index_bytes();
    if (use_fused) {
      use_fused = simd::TqEncodeRows(fused, x + n0 * dim_, m, batch_norms, batch_indices);
    }
    if (!use_fused) {
      y.resize(kBatch * dim_);
      rotation_.ForwardRows(x + n0 * dim_, m, y.data(), batch_norms);
      for (size_t i = 0; i < m; ++i) batch_norms[i] = std::sqrt(batch_norms[i]);
    }
    // The batch's norms converted at once; one by one to name a failure.
    uint8_t stored[kBatch * 4] = {};
    if (StoreFiniteScalars(batch_norms, m, format_, stored)) {
      for (size_t i = 0; i < m; ++i) {
        std::memcpy(norms + (n0 + i) * norm_stride, stored + i * norm_bytes(), norm_bytes());
      }
    } else {
      for (size_t i = 0; i < m; ++i) {
        *bad_vector = n0 + i;
        KVC_RETURN_IF_ERROR(StoreNorm(batch_norms[i], norms + (n0 + i) * norm_stride));
      }
    }
    for (size_t i = 0; i < m; ++i) {
      scales[i] = batch_norms[i] > 0 ? sqrt_dim_ / batch_norms[i] : 0.0f;
    }
    if (!use_fused) simd::QuantizeRows(book_, y.data(), dim_, m, scales, batch_indices);
  }
  return OkStatus();
}

Status MseQuantizer::DecodeRows(const uint8_t* norms, size_t norm_stride,
                                const uint8_t* indices, size_t count, float* out,
                                size_t* bad_vector) const {
  constexpr size_t kBatch = kMaxBatch;
  float batch_norms[kBatch];
  const simd::TqRows fused = Fused();
  bool use_fused = fused.signs != nullptr;
  for (size_t n0 = 0; n0 < count; n0 += kBatch) {
    const size_t m = std::min(kBatch, count - n0);
    if (!LoadNorms(norms + n0 * norm_stride, norm_stride, indices + n0 * index_bytes(), m,
                   batch_norms)) {
      // One by one, to name the first invalid record.
      for (size_t i = 0; i < m; ++i) {
        const size_t n = n0 + i;
        *bad_vector = n;
        KVC_RETURN_IF_ERROR(CheckRecord(norms + n * norm_stride, indices + n * index_bytes()));
      }
    }
    const uint8_t* batch_indices = indices + n0 * index_bytes();
    float* y = out + n0 * dim_;
    if (use_fused) use_fused = simd::TqDecodeRows(fused, batch_indices, batch_norms, m, y);
    if (!use_fused) {
      simd::DequantizeRows(book_, batch_indices, dim_, m, batch_norms, sqrt_dim_,
                           norm_correction_, y);
      rotation_.InverseRows(y, m);
    }
  }
  return OkStatus();
}

Status MseQuantizer::StoreNorm(float norm, uint8_t* record) const {
  if (!std::isfinite(norm)) return Status(KVC_ERR_INVALID_VALUE, "vector norm overflows f32");
  if (!StoreFiniteScalar(norm, format_, record)) {
    return Status(KVC_ERR_INVALID_VALUE,
                  StrFormat("vector norm %g exceeds the norm format's range (use "
                            "norm=f32 or norm=bf16)", static_cast<double>(norm)));
  }
  return OkStatus();
}

Status MseQuantizer::Unpack(const uint8_t* norm_record, const uint8_t* indices,
                            float* norm, uint8_t* idx) const {
  if (!LoadNorm(norm_record, format_, norm)) {
    return Status(KVC_ERR_CORRUPT, "stored norm is negative or not finite");
  }
  simd::UnpackBits(indices, dim_, bits_, idx);
  const size_t used = size_t{dim_} * bits_;
  if (used % 8 != 0 && (indices[used / 8] >> (used % 8)) != 0) {
    return Status(KVC_ERR_CORRUPT, "padding bits set");
  }
  return OkStatus();
}

float MseQuantizer::Gain(const uint8_t* idx, float norm) const {
  if (!norm_correction_) return norm / sqrt_dim_;
  float centroids[kMaxHeadDim];
  for (uint32_t j = 0; j < dim_; ++j) centroids[j] = book_.centroids[idx[j]];
  const float length = std::sqrt(simd::SumOfSquares(centroids, dim_));
  return length > 0 ? norm / length : 0.0f;
}

Status MseQuantizer::DecodeRotated(const uint8_t* norm_record, const uint8_t* indices,
                                   float* y) const {
  float norm;
  uint8_t idx[kMaxHeadDim];
  KVC_RETURN_IF_ERROR(Unpack(norm_record, indices, &norm, idx));
  simd::Dequantize(book_, idx, dim_, Gain(idx, norm), y);
  return OkStatus();
}

void MseQuantizer::QuantizeRotatedRows(const float* y, const float* norms, size_t count,
                                       uint8_t* indices) const {
  constexpr size_t kBatch = kMaxBatch;
  float scales[kBatch];
  for (size_t n0 = 0; n0 < count; n0 += kBatch) {
    const size_t m = std::min(kBatch, count - n0);
    for (size_t i = 0; i < m; ++i) {
      scales[i] = norms[n0 + i] > 0 ? sqrt_dim_ / norms[n0 + i] : 0.0f;
    }
    simd::QuantizeRows(book_, y + n0 * dim_, dim_, m, scales, indices + n0 * index_bytes());
  }
}

bool MseQuantizer::LoadNorms(const uint8_t* norms, size_t norm_stride, const uint8_t* indices,
                             size_t count, float* out) const {
  const size_t bytes = norm_bytes();  // 2 or 4
  bool valid = true;
  if (norm_stride == bytes) {
    valid = kvc::LoadNorms(norms, count, format_, out);
  } else {
    // Norms that are not adjacent (records of several sections, Block-GTQ's
    // groups), gathered and converted a few hundred at a time.
    constexpr size_t kGathered = 512;
    uint8_t packed[kGathered * 4];
    for (size_t n0 = 0; n0 < count; n0 += kGathered) {
      const size_t m = std::min(kGathered, count - n0);
      for (size_t n = 0; n < m; ++n) {
        std::memcpy(packed + n * bytes, norms + (n0 + n) * norm_stride, bytes);
      }
      valid = kvc::LoadNorms(packed, m, format_, out + n0) && valid;
    }
  }
  const size_t used = size_t{dim_} * bits_;
  for (size_t n = 0; indices != nullptr && used % 8 != 0 && n < count; ++n) {
    valid = valid && (indices[n * index_bytes() + used / 8] >> (used % 8)) == 0;
  }
  return valid;
}

Status MseQuantizer::CheckRecord(const uint8_t* norm_record, const uint8_t* indices) const {
  float norm;
  if (!LoadNorm(norm_record, format_, &norm)) {
    return Status(KVC_ERR_CORRUPT, "stored norm is negative or not finite");
  }
  const size_t used = size_t{dim_} * bits_;
  if (indices != nullptr && used % 8 != 0 && (indices[used / 8] >> (used % 8)) != 0) {
    return Status(KVC_ERR_CORRUPT, "padding bits set");
  }
  return OkStatus();
}

void MseQuantizer::DecodeRotatedRows(const uint8_t* norms, const uint8_t* indices, size_t count,
                                     float* y) const {
  constexpr size_t kBatch = 64;
  float batch_norms[kBatch];
  for (size_t n0 = 0; n0 < count; n0 += kBatch) {
    const size_t m = std::min(kBatch, count - n0);
    for (size_t i = 0; i < m; ++i) {
      batch_norms[i] = LoadScalar(norms + (n0 + i) * norm_bytes(), format_);
    }
    if (!simd::TqDequantizeRows(Fused(), indices + n0 * index_bytes(), batch_norms, m,
                                y + n0 * dim_)) {
      simd::DequantizeRows(book_, indices + n0 * index_bytes(), dim_, m, batch_norms, sqrt_dim_,
                           norm_correction_, y + n0 * dim_);
    }
  }
}

Status MseQuantizer::Decode(const uint8_t* norm_record, const uint8_t* indices,
                            float* x) const {
  KVC_RETURN_IF_ERROR(DecodeRotated(norm_record, indices, x));
  rotation_.Inverse(x);
  return OkStatus();
}

Status MseQuantizer::LoadTileNorms(const uint8_t* norms, size_t norm_stride,
                                   const uint8_t* indices, size_t count, float* out,
                                   size_t* bad_vector) const {
  if (LoadNorms(norms, norm_stride, indices, count, out)) return OkStatus();
  // One by one, to name the first invalid record.
  for (size_t n = 0; n < count; ++n) {
    *bad_vector = n;
    KVC_RETURN_IF_ERROR(CheckRecord(norms + n * norm_stride,
                                    indices == nullptr ? nullptr : indices + n * index_bytes()));
  }
  return OkStatus();
}

void MseQuantizer::NormsToGains(const float* len2, size_t count, float* gains) const {
  for (size_t n = 0; n < count; ++n) {
    if (!norm_correction_) {
      gains[n] = gains[n] / sqrt_dim_;
      continue;
    }
    const float length = std::sqrt(len2[n]);
    gains[n] = length > 0 ? gains[n] / length : 0.0f;
  }
}

template <class Tile>
Status MseQuantizer::ForEachNormTile(const uint8_t* norms, size_t norm_stride,
                                     const uint8_t* indices, size_t count, size_t* bad_vector,
                                     const Tile& tile) const {
  float tile_norms[kAttentionTile];
  for (size_t n0 = 0; n0 < count; n0 += kAttentionTile) {
    const size_t m = std::min(kAttentionTile, count - n0);
    size_t bad = 0;
    const Status status =
        LoadTileNorms(norms + n0 * norm_stride, norm_stride,
                      indices == nullptr ? nullptr : indices + n0 * index_bytes(), m, tile_norms,
                      &bad);
    if (!status.ok()) {
      *bad_vector = n0 + bad;
      return status;
    }
    tile(n0, m, tile_norms);
  }
  return OkStatus();
}

Status MseQuantizer::RotatedDots(const uint8_t* norms, size_t norm_stride,
                                 const uint8_t* indices, size_t count,
                                 const float* rotated_queries, size_t num_queries, float* dots,
                                 size_t dot_stride, size_t* bad_vector) const {
  float len2[kAttentionTile];
  return ForEachNormTile(norms, norm_stride, indices, count, bad_vector,
                         [&](size_t n0, size_t m, float* gains) {
    // The centroids' lengths (norm correction) come with the dots.
    const simd::IndexRows rows{indices + n0 * index_bytes(), index_bytes(), m, dim_, bits_,
                               book_.centroids};
    simd::IndexRowDots(rows, rotated_queries, num_queries, dots + n0, dot_stride,
                       norm_correction_ ? len2 : nullptr);
    NormsToGains(len2, m, gains);
    for (size_t q = 0; q < num_queries; ++q) {
      float* row = dots + q * dot_stride + n0;
      for (size_t i = 0; i < m; ++i) row[i] = gains[i] * row[i];
    }
  });
}

Status MseQuantizer::AddRotatedFieldDots(const uint8_t* norms, size_t norm_stride,
                                         const uint8_t* stream, size_t first_bit,
                                         size_t record_bits, size_t count,
                                         const float* rotated_queries, size_t num_queries,
                                         float* dots, size_t dot_stride,
                                         size_t* bad_vector) const {
  return ForEachNormTile(norms, norm_stride, nullptr, count, bad_vector,
                         [&](size_t n0, size_t m, const float* tile_norms) {
    const simd::FieldRows rows{stream, first_bit + n0 * record_bits, record_bits, m, dim_,
                               bits_, book_.centroids};
    simd::FieldRowGainedDots(rows, rotated_queries, num_queries,
                             {tile_norms, norm_correction_, sqrt_dim_}, dots + n0, dot_stride);
  });
}

Status MseQuantizer::RotatedSums(const uint8_t* norms, size_t norm_stride,
                                 const uint8_t* indices, size_t count, const float* weights,
                                 size_t weight_stride, size_t num_queries, float* out,
                                 size_t* bad_vector) const {
  float len2[kAttentionTile];
  // The weights times each row's gain, then the tile's sum added to out.
  std::vector<float> scaled(num_queries * kAttentionTile), part(num_queries * dim_);
  std::fill(out, out + num_queries * dim_, 0.0f);
  return ForEachNormTile(norms, norm_stride, indices, count, bad_vector,
                         [&](size_t n0, size_t m, float* gains) {
    const simd::IndexRows rows{indices + n0 * index_bytes(), index_bytes(), m, dim_, bits_,
                               book_.centroids};
    if (norm_correction_) simd::IndexRowDots(rows, nullptr, 0, nullptr, 0, len2);
    NormsToGains(len2, m, gains);
    for (size_t q = 0; q < num_queries; ++q) {
      for (size_t i = 0; i < m; ++i) {
        scaled[q * kAttentionTile + i] = weights[q * weight_stride + n0 + i] * gains[i];
      }
    }
    simd::IndexRowSums(rows, scaled.data(), kAttentionTile, num_queries, part.data());
    for (size_t j = 0; j < num_queries * dim_; ++j) out[j] += part[j];
  });
}

}  // namespace kvc
