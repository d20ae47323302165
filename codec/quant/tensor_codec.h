// The methods: how one vector of head_dim values becomes bytes and back.
//
// A block's payload is a list of sections (FORMAT.md, "Block"); each method
// declares how many bytes one vector takes in each section, so a block of N
// vectors holds N records per section, vector n at offset n * width. Keeping
// norms, indices and signs in separate sections lets SIMD kernels and the
// optional zstd stage see homogeneous data.
#ifndef KVCODEC_CODEC_QUANT_TENSOR_CODEC_H_
#define KVCODEC_CODEC_QUANT_TENSOR_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

constexpr uint32_t kMinHeadDim = 8;
constexpr uint32_t kMaxHeadDim = 2048;

Status ValidateHeadDim(uint32_t head_dim);

class TensorCodec {
 public:
  // config must have passed ValidateTensorConfig; head_dim ValidateHeadDim.
  // Prepares every table the method needs (rotation signs, QJL matrix).
  static std::unique_ptr<TensorCodec> Create(const kvc_tensor_config& config,
                                             uint32_t head_dim);
  virtual ~TensorCodec() = default;

  // Bytes one vector takes in each section, without preparing any table.
  static std::vector<size_t> SectionWidths(const kvc_tensor_config& config,
                                           uint32_t head_dim);

  uint32_t head_dim() const { return head_dim_; }
  const std::vector<size_t>& section_widths() const { return widths_; }
  size_t bytes_per_vector() const;

  // Encodes `count` vectors (contiguous f32, count x head_dim); vector n's
  // record in section s goes to sections[s] + n * width(s). On a value the
  // format cannot hold, fails with INVALID_VALUE and *bad_vector = n.
  virtual Status Encode(const float* x, size_t count, uint8_t* const* sections,
                        size_t* bad_vector) const = 0;
  // The inverse; CORRUPT (with *bad_vector) if a record holds a value no
  // encoder writes (negative or non-finite norm, padding bits set).
  virtual Status Decode(const uint8_t* const* sections, size_t count,
                        float* out, size_t* bad_vector) const = 0;
  // scores[q * count + n] = <queries[q], decoded vector n> for q < num_queries
  // (queries: num_queries x head_dim f32), computed without decoding vectors
  // where the method allows (in the rotated domain).
  virtual Status Scores(const uint8_t* const* sections, size_t count,
                        const float* queries, size_t num_queries,
                        float* scores, size_t* bad_vector) const = 0;

 protected:
  TensorCodec(uint32_t head_dim, std::vector<size_t> widths)
      : head_dim_(head_dim), widths_(std::move(widths)) {}

 private:
  uint32_t head_dim_;
  std::vector<size_t> widths_;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_TENSOR_CODEC_H_
