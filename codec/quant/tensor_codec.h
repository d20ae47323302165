// The methods: how one vector of head_dim values becomes bytes and back.
//
// A block's payload is a header, one side record per head (bit allocations,
// outlier channels: most methods have none), then a list of sections
// (FORMAT.md, "Block"). Each method says how many bytes one vector takes in
// each section, given its head's record; section s holds, head after head,
// the records of that head's vectors in token order. Keeping norms, indices
// and signs in separate sections lets SIMD kernels and the optional zstd
// stage see homogeneous data.
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
  // config must have passed ValidateTensorConfig and ValidateForHeadDim.
  // Prepares every table the method needs (rotation signs, QJL matrix).
  static std::unique_ptr<TensorCodec> Create(const kvc_tensor_config& config,
                                             uint32_t head_dim);
  virtual ~TensorCodec() = default;

  uint32_t head_dim() const { return head_dim_; }

  // Per-head side information, computed by the encoder from statistics of
  // every vector of the head: ObserveHead accumulates head_stats_size()
  // doubles (zeroed first) over chunks, FinishHead writes the record.
  virtual size_t head_record_size() const { return 0; }
  virtual size_t head_stats_size() const { return 0; }
  virtual void ObserveHead(const float* /*x*/, size_t /*count*/,
                           double* /*stats*/) const {}
  // Queries of the head's query heads, when the caller supplies a sample.
  virtual void ObserveQueries(const float* /*q*/, size_t /*count*/,
                              double* /*stats*/) const {}
  virtual void FinishHead(const double* /*stats*/, uint8_t* /*record*/) const {}
  // Decoder-side check of a record read from a stream (CORRUPT if invalid).
  virtual Status CheckHeadRecord(const uint8_t* /*record*/) const {
    return OkStatus();
  }

  // Bits one vector takes in each section, for a head with this record
  // (nullptr when head_record_size() is 0). Most are whole bytes; TurboAngle's
  // base-n angle records are not, so records are laid out bit by bit.
  virtual std::vector<size_t> SectionWidths(const uint8_t* record) const = 0;
  // The most bits one vector can take, over every possible record.
  virtual size_t MaxBitsPerVector() const;

  // Encodes `count` vectors (contiguous f32, count x head_dim, all finite:
  // the block encoder checks that once for every method); vector n's
  // record in section s starts at bit n * width(s) of sections[s] (zeroed by
  // the caller). On a value the format cannot hold, fails with INVALID_VALUE
  // and *bad_vector = n.
  virtual Status Encode(const uint8_t* head_record, const float* x, size_t count,
                        uint8_t* const* sections, size_t* bad_vector) const = 0;
  // The inverse; CORRUPT (with *bad_vector) if a record holds a value no
  // encoder writes (negative or non-finite norm, padding bits set).
  virtual Status Decode(const uint8_t* head_record, const uint8_t* const* sections,
                        size_t count, float* out, size_t* bad_vector) const = 0;
  // scores[q * count + n] = <queries[q], decoded vector n>, q < num_queries
  // (queries: num_queries x head_dim f32). Methods compute it in their own
  // domain where they can; the default decodes and takes dot products.
  virtual Status Scores(const uint8_t* head_record, const uint8_t* const* sections,
                        size_t count, const float* queries, size_t num_queries,
                        float* scores, size_t* bad_vector) const;
  // out[q * head_dim + i] = sum over n of weights[q * count + n] * (decoded
  // vector n)[i], q < num_queries; out is overwritten. Rotation-based methods
  // accumulate in their rotated domain and rotate back once per query; the
  // default decodes a few vectors at a time. Both reject what Decode rejects.
  virtual Status Attend(const uint8_t* head_record, const uint8_t* const* sections,
                        size_t count, const float* weights, size_t num_queries,
                        float* out, size_t* bad_vector) const;

 protected:
  explicit TensorCodec(uint32_t head_dim) : head_dim_(head_dim) {}

 private:
  uint32_t head_dim_;
};

// Factories of the method files.
std::unique_ptr<TensorCodec> MakeRawCodec(const kvc_tensor_config& c, uint32_t d);
std::unique_ptr<TensorCodec> MakeTurboQuantCodec(const kvc_tensor_config& c, uint32_t d);
std::unique_ptr<TensorCodec> MakeOutlierCodec(const kvc_tensor_config& c, uint32_t d);
std::unique_ptr<TensorCodec> MakePolarQuantCodec(const kvc_tensor_config& c, uint32_t d);
std::unique_ptr<TensorCodec> MakeTurboAngleCodec(const kvc_tensor_config& c, uint32_t d);
std::unique_ptr<TensorCodec> MakeBlockGtqCodec(const kvc_tensor_config& c, uint32_t d);

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_TENSOR_CODEC_H_
