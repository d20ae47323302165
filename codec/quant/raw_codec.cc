// RAW: values stored as they are, in the config's scalar format.
#include <cmath>
#include <vector>

#include "config/tensor_config.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "simd/attention_kernels.h"
#include "simd/reduce_kernels.h"

namespace kvc {
namespace {

class RawCodec final : public TensorCodec {
 public:
  RawCodec(uint32_t head_dim, uint32_t format)
      : TensorCodec(head_dim), format_(format), bytes_(DtypeBytes(format)) {}

  std::vector<size_t> SectionWidths(const uint8_t* record) const override {
    std::vector<size_t> widths = ByteWidths(record);
    for (size_t& w : widths) w *= 8;
    return widths;
  }

  // Every record of this method is whole bytes.
  std::vector<size_t> ByteWidths(const uint8_t*) const {
    return {head_dim() * bytes_};
  }

  Status Encode(const uint8_t*, const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    // Every value at once; one by one only to name a value that fails.
    if (StoreFiniteScalars(x, count * d, format_, sections[0])) return OkStatus();
    for (size_t n = 0; n < count; ++n) {
      uint8_t* record = sections[0] + n * d * bytes_;
      for (size_t j = 0; j < d; ++j) {
        if (!StoreFiniteScalar(x[n * d + j], format_, record + j * bytes_)) {
          *bad_vector = n;
          return Status(KVC_ERR_INVALID_VALUE,
                        StrFormat("value %g at dimension %zu cannot be stored",
                                  static_cast<double>(x[n * d + j]), j));
        }
      }
    }
    return OkStatus();
  }

  Status Decode(const uint8_t*, const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    if (LoadFiniteScalars(sections[0], count * d, format_, out)) return OkStatus();
    for (size_t n = 0; n < count; ++n) {
      const uint8_t* record = sections[0] + n * d * bytes_;
      for (size_t j = 0; j < d; ++j) {
        out[n * d + j] = LoadScalar(record + j * bytes_, format_);
        if (!std::isfinite(out[n * d + j])) {
          *bad_vector = n;
          return Status(KVC_ERR_CORRUPT, "stored value is not finite");
        }
      }
    }
    return OkStatus();
  }

  // SIMD dot products and weighted sums on the stored values. A stored
  // value that is not finite (which Decode rejects) always makes the
  // results it enters non-finite; only then are the rows searched for it.
  Status Scores(const uint8_t*, const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    simd::ValueRowDots({sections[0], format_, count, head_dim()}, queries, num_queries, scores,
                       count);
    return CheckResults(sections[0], count, scores, num_queries * count, bad_vector);
  }

  Status Attend(const uint8_t*, const uint8_t* const* sections, size_t count,
                const float* weights, size_t num_queries, float* out,
                size_t* bad_vector) const override {
    simd::ValueRowSums({sections[0], format_, count, head_dim()}, weights, count, num_queries,
                       out);
    return CheckResults(sections[0], count, out, num_queries * head_dim(), bad_vector);
  }

 private:
  // CORRUPT naming the first vector with a non-finite stored value, if the
  // results (or, without any, the values themselves) show there is one.
  Status CheckResults(const uint8_t* section, size_t count, const float* results,
                      size_t result_count, size_t* bad_vector) const {
    if (result_count > 0 && simd::AllFinite(results, result_count)) return OkStatus();
    const size_t d = head_dim();
    std::vector<float> row(d);
    for (size_t n = 0; n < count; ++n) {
      if (!LoadFiniteScalars(section + n * d * bytes_, d, format_, row.data())) {
        *bad_vector = n;
        return Status(KVC_ERR_CORRUPT, "stored value is not finite");
      }
    }
    return OkStatus();  // finite values whose results overflow: the caller's to report
  }

  uint32_t format_;
  size_t bytes_;
};

}  // namespace

std::unique_ptr<TensorCodec> MakeRawCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<RawCodec>(d, c.scalar_format);
}

}  // namespace kvc
