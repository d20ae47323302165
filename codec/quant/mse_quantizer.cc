#include "quant/mse_quantizer.h"

#include <cmath>

#include "config/tensor_config.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "simd/bitpack.h"
#include "simd/quantize_kernels.h"
#include "simd/reduce_kernels.h"

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
  const float sum_squares = simd::SumOfSquares(y, dim_);
  if (!std::isfinite(sum_squares)) {
    return Status(KVC_ERR_INVALID_VALUE, "vector norm overflows f32");
  }
  const float norm = std::sqrt(sum_squares);
  if (!StoreFiniteScalar(norm, format_, norm_record)) {
    return Status(KVC_ERR_INVALID_VALUE,
                  StrFormat("vector norm %g exceeds the norm format's range (use "
                            "norm=f32 or norm=bf16)", static_cast<double>(norm)));
  }
  const float scale = norm > 0 ? sqrt_dim_ / norm : 0.0f;
  uint8_t idx[kMaxHeadDim];
  if (simd::QuantizePacked(book_, y, dim_, scale, indices)) return OkStatus();
  simd::Quantize(book_, y, dim_, scale, idx);
  simd::PackBits(idx, dim_, bits_, indices);
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

Status MseQuantizer::Decode(const uint8_t* norm_record, const uint8_t* indices,
                            float* x) const {
  KVC_RETURN_IF_ERROR(DecodeRotated(norm_record, indices, x));
  rotation_.Inverse(x);
  return OkStatus();
}

Status MseQuantizer::Dot(const uint8_t* norm_record, const uint8_t* indices,
                         const float* rotated_query, float* dot) const {
  float norm;
  uint8_t idx[kMaxHeadDim];
  float centroids[kMaxHeadDim];
  KVC_RETURN_IF_ERROR(Unpack(norm_record, indices, &norm, idx));
  for (uint32_t j = 0; j < dim_; ++j) centroids[j] = book_.centroids[idx[j]];
  *dot = Gain(idx, norm) * simd::DotProduct(centroids, rotated_query, dim_);
  return OkStatus();
}

}  // namespace kvc
