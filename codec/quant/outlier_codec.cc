// TurboQuant with outlier channels (methods.md §1.5): per head, the
// outlier_sixteenths/16 channels of highest energy over the block (listed in
// the head record as a channel bitmask) are quantized with bits+1, the rest
// with bits, each part by its own TurboQuant-MSE instance. Half the channels
// at one more bit gives bits + 0.5 per coordinate ("tq-mse-b2.5").
#include <algorithm>
#include <numeric>

#include "base/prng.h"
#include "config/tensor_config.h"
#include "quant/mse_quantizer.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
#include "simd/convert_kernels.h"
#include "simd/reduce_kernels.h"

namespace kvc {
namespace {

constexpr uint64_t kTagOutliers = 0x4F55544C49455253ull;  // "OUTLIERS"
constexpr uint64_t kTagInliers = 0x494E4C4945525321ull;   // "INLIERS!"

class OutlierCodec final : public TensorCodec {
 public:
  OutlierCodec(const kvc_tensor_config& c, uint32_t d)
      : TensorCodec(d),
        outliers_(d * c.outlier_sixteenths / 16),
        high_(outliers_, static_cast<int>(c.bits + 1), c.rotation,
              DeriveSeed(c.seed, kTagOutliers),
              (c.flags & KVC_CONFIG_NORM_CORRECTION) != 0, c.scalar_format),
        low_(d - outliers_, static_cast<int>(c.bits), c.rotation,
             DeriveSeed(c.seed, kTagInliers),
             (c.flags & KVC_CONFIG_NORM_CORRECTION) != 0, c.scalar_format) {}

  size_t head_record_size() const override { return head_dim() / 8; }
  size_t head_stats_size() const override { return head_dim(); }

  // energy[j] += x_j^2 in double, vector after vector (a SIMD kernel).
  void ObserveHead(const float* x, size_t count, double* energy) const override {
    simd::AccumulateSquares(x, head_dim(), count, energy);
  }

  // The channels of highest energy; ties go to the lower channel.
  void FinishHead(const double* energy, uint8_t* mask) const override {
    const size_t d = head_dim();
    std::vector<uint32_t> order(d);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return energy[a] > energy[b]; });
    std::fill(mask, mask + d / 8, 0);
    for (size_t i = 0; i < outliers_; ++i) {
      mask[order[i] / 8] |= static_cast<uint8_t>(1u << (order[i] % 8));
    }
  }

  Status CheckHeadRecord(const uint8_t* mask) const override {
    size_t set = 0;
    for (size_t i = 0; i < head_dim() / 8; ++i) set += __builtin_popcount(mask[i]);
    if (set != outliers_) {
      return Status(KVC_ERR_CORRUPT, StrFormat("outlier mask lists %zu channels, not %zu",
                                               set, outliers_));
    }
    return OkStatus();
  }

  std::vector<size_t> SectionWidths(const uint8_t* record) const override {
    std::vector<size_t> widths = ByteWidths(record);
    for (size_t& w : widths) w *= 8;
    return widths;
  }

  // Every record of this method is whole bytes.
  std::vector<size_t> ByteWidths(const uint8_t*) const {
    return {high_.norm_bytes(), high_.index_bytes(), low_.norm_bytes(), low_.index_bytes()};
  }

  // Both channel sets of every vector gathered, then each quantized a
  // batch at a time; the error reported is the reference's, which checks
  // vector by vector, the high channels first.
  Status Encode(const uint8_t* mask, const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    const size_t d = head_dim(), lows = d - outliers_;
    std::vector<int32_t> high_dims, low_dims;
    Channels(mask, &high_dims, &low_dims);
    std::vector<float> high(count * outliers_), low(count * lows);
    simd::SplitColumns(x, d, count, mask, high_dims.data(), outliers_, low_dims.data(),
                       high.data(), low.data());
    size_t bad_high = 0, bad_low = 0;
    const Status high_status = high_.EncodeRows(high.data(), count, sections[0], sections[1],
                                                &bad_high);
    const Status low_status = low_.EncodeRows(low.data(), count, sections[2], sections[3],
                                              &bad_low);
    return FirstError(high_status, bad_high, low_status, bad_low, bad_vector);
  }

  Status Decode(const uint8_t* mask, const uint8_t* const* sections, size_t count,
                float* out, size_t* bad_vector) const override {
    const size_t d = head_dim(), lows = d - outliers_;
    std::vector<int32_t> high_dims, low_dims;
    Channels(mask, &high_dims, &low_dims);
    // The high rows, then the low rows, in one buffer.
    std::vector<float> parts(count * d);
    float* high = parts.data();
    float* low = high + count * outliers_;
    size_t bad_high = 0, bad_low = 0;
    const Status high_status = high_.DecodeRows(sections[0], sections[1], count, high, &bad_high);
    const Status low_status = low_.DecodeRows(sections[2], sections[3], count, low, &bad_low);
    KVC_RETURN_IF_ERROR(FirstError(high_status, bad_high, low_status, bad_low, bad_vector));
    // Channel j of vector n is entry a of row n of its part (gathered, not
    // scattered: the stores stay in order; a chunk is at most 64 vectors,
    // block.cc, so the indices fit in int32).
    std::vector<int32_t> columns(d), strides(d);
    for (size_t a = 0; a < outliers_; ++a) {
      columns[high_dims[a]] = static_cast<int32_t>(a);
      strides[high_dims[a]] = static_cast<int32_t>(outliers_);
    }
    for (size_t a = 0; a < lows; ++a) {
      columns[low_dims[a]] = static_cast<int32_t>(count * outliers_ + a);
      strides[low_dims[a]] = static_cast<int32_t>(lows);
    }
    simd::GatherStridedColumns(parts.data(), count, columns.data(), strides.data(), d, out);
    return OkStatus();
  }

  // Each channel set in its own rotated domain: the queries split and
  // rotated once per set, the two dot products of a token added.
  Status Scores(const uint8_t* mask, const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    const size_t d = head_dim(), lows = d - outliers_;
    std::vector<int32_t> high_dims, low_dims;
    Channels(mask, &high_dims, &low_dims);
    std::vector<float> high(num_queries * outliers_), low(num_queries * lows);
    simd::GatherColumns(queries, d, num_queries, high_dims.data(), outliers_, high.data());
    simd::GatherColumns(queries, d, num_queries, low_dims.data(), lows, low.data());
    for (size_t q = 0; q < num_queries; ++q) {
      high_.rotation().Forward(&high[q * outliers_]);
      low_.rotation().Forward(&low[q * lows]);
    }
    std::vector<float> low_scores(num_queries * count);
    size_t bad_high = 0, bad_low = 0;
    const Status high_status = high_.RotatedDots(sections[0], high_.norm_bytes(), sections[1],
                                                 count, high.data(), num_queries, scores, count,
                                                 &bad_high);
    const Status low_status = low_.RotatedDots(sections[2], low_.norm_bytes(), sections[3], count,
                                               low.data(), num_queries, low_scores.data(), count,
                                               &bad_low);
    KVC_RETURN_IF_ERROR(FirstError(high_status, bad_high, low_status, bad_low, bad_vector));
    for (size_t i = 0; i < num_queries * count; ++i) scores[i] += low_scores[i];
    return OkStatus();
  }

  // Each set summed in its rotated domain and rotated back once per query,
  // then its channels put in place.
  Status Attend(const uint8_t* mask, const uint8_t* const* sections, size_t count,
                const float* weights, size_t num_queries, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim(), lows = d - outliers_;
    std::vector<int32_t> high_dims, low_dims;
    Channels(mask, &high_dims, &low_dims);
    std::vector<float> high(num_queries * outliers_), low(num_queries * lows);
    size_t bad_high = 0, bad_low = 0;
    const Status high_status = high_.RotatedSums(sections[0], high_.norm_bytes(), sections[1],
                                                 count, weights, count, num_queries, high.data(),
                                                 &bad_high);
    const Status low_status = low_.RotatedSums(sections[2], low_.norm_bytes(), sections[3], count,
                                               weights, count, num_queries, low.data(), &bad_low);
    KVC_RETURN_IF_ERROR(FirstError(high_status, bad_high, low_status, bad_low, bad_vector));
    for (size_t q = 0; q < num_queries; ++q) {
      high_.rotation().Inverse(&high[q * outliers_]);
      low_.rotation().Inverse(&low[q * lows]);
      for (size_t a = 0; a < outliers_; ++a) out[q * d + high_dims[a]] = high[q * outliers_ + a];
      for (size_t a = 0; a < lows; ++a) out[q * d + low_dims[a]] = low[q * lows + a];
    }
    return OkStatus();
  }

 private:
  static bool IsOutlier(const uint8_t* mask, size_t j) {
    return (mask[j / 8] >> (j % 8)) & 1;
  }
  // The channels of each set, ascending.
  void Channels(const uint8_t* mask, std::vector<int32_t>* high, std::vector<int32_t>* low) const {
    high->reserve(outliers_);
    low->reserve(head_dim() - outliers_);
    for (uint32_t j = 0; j < head_dim(); ++j) {
      (IsOutlier(mask, j) ? high : low)->push_back(static_cast<int32_t>(j));
    }
  }
  // Of two batch results, the error the reference meets first: the lower
  // vector, and at the same vector the high channels.
  static Status FirstError(const Status& high, size_t bad_high, const Status& low,
                           size_t bad_low, size_t* bad_vector) {
    if (!high.ok() && (low.ok() || bad_high <= bad_low)) {
      *bad_vector = bad_high;
      return high;
    }
    if (!low.ok()) {
      *bad_vector = bad_low;
      return low;
    }
    return OkStatus();
  }

  size_t outliers_;
  MseQuantizer high_, low_;
};

}  // namespace

std::unique_ptr<TensorCodec> MakeOutlierCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<OutlierCodec>(c, d);
}

}  // namespace kvc
