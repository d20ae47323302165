#include "quant/tensor_codec.h"

#include <algorithm>
#include <numeric>

#include "quant/vector_math.h"
#include "simd/reduce_kernels.h"

namespace kvc {

Status ValidateHeadDim(uint32_t head_dim) {
  if (head_dim < kMinHeadDim || head_dim > kMaxHeadDim || head_dim % 8 != 0) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("head_dim %u unsupported (a multiple of 8 in %u..%u)",
                            head_dim, kMinHeadDim, kMaxHeadDim));
  }
  return OkStatus();
}

size_t TensorCodec::MaxBitsPerVector() const {
  const std::vector<size_t> widths = SectionWidths(nullptr);
  return std::accumulate(widths.begin(), widths.end(), size_t{0});
}

Status TensorCodec::Scores(const uint8_t* head_record, const uint8_t* const* sections,
                           size_t count, const float* queries, size_t num_queries,
                           float* scores, size_t* bad_vector) const {
  const size_t d = head_dim();
  const std::vector<size_t> widths = SectionWidths(head_record);
  // Chunks of 8 vectors start on byte boundaries whatever the widths.
  constexpr size_t kChunk = 8;
  std::vector<float> v(kChunk * d);
  std::vector<const uint8_t*> at(widths.size());
  for (size_t n0 = 0; n0 < count; n0 += kChunk) {
    const size_t chunk = std::min(kChunk, count - n0);
    for (size_t s = 0; s < widths.size(); ++s) at[s] = sections[s] + n0 * widths[s] / 8;
    size_t bad = 0;
    Status status = Decode(head_record, at.data(), chunk, v.data(), &bad);
    if (!status.ok()) {
      *bad_vector = n0 + bad;
      return status;
    }
    for (size_t n = 0; n < chunk; ++n) {
      for (size_t q = 0; q < num_queries; ++q) {
        scores[q * count + n0 + n] = simd::DotProduct(queries + q * d, &v[n * d], d);
      }
    }
  }
  return OkStatus();
}

Status TensorCodec::Attend(const uint8_t* head_record, const uint8_t* const* sections,
                           size_t count, const float* weights, size_t num_queries,
                           float* out, size_t* bad_vector) const {
  const size_t d = head_dim();
  const std::vector<size_t> widths = SectionWidths(head_record);
  std::fill(out, out + num_queries * d, 0.0f);
  constexpr size_t kChunk = 8;  // byte-aligned whatever the widths
  std::vector<float> v(kChunk * d);
  std::vector<const uint8_t*> at(widths.size());
  for (size_t n0 = 0; n0 < count; n0 += kChunk) {
    const size_t chunk = std::min(kChunk, count - n0);
    for (size_t s = 0; s < widths.size(); ++s) at[s] = sections[s] + n0 * widths[s] / 8;
    size_t bad = 0;
    Status status = Decode(head_record, at.data(), chunk, v.data(), &bad);
    if (!status.ok()) {
      *bad_vector = n0 + bad;
      return status;
    }
    for (size_t q = 0; q < num_queries; ++q) {
      float* acc = out + q * d;
      for (size_t n = 0; n < chunk; ++n) {
        const float w = weights[q * count + n0 + n];
        const float* row = &v[n * d];
        for (size_t i = 0; i < d; ++i) acc[i] += w * row[i];
      }
    }
  }
  return OkStatus();
}

std::unique_ptr<TensorCodec> TensorCodec::Create(const kvc_tensor_config& c,
                                                 uint32_t head_dim) {
  switch (c.method) {
    case KVC_METHOD_RAW: return MakeRawCodec(c, head_dim);
    case KVC_METHOD_TQ_OUTLIER: return MakeOutlierCodec(c, head_dim);
    case KVC_METHOD_POLARQUANT: return MakePolarQuantCodec(c, head_dim);
    case KVC_METHOD_TURBOANGLE: return MakeTurboAngleCodec(c, head_dim);
    case KVC_METHOD_BLOCKGTQ: return MakeBlockGtqCodec(c, head_dim);
    default: return MakeTurboQuantCodec(c, head_dim);
  }
}

}  // namespace kvc
