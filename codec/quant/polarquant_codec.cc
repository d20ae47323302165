// PolarQuant (methods.md §3): a randomized Hadamard rotation, then per group
// of 16 coordinates the recursive polar transform: 8 pair angles in
// [0, 2pi) (level 1, uniform bins), then 4, 2 and 1 angles in [0, pi/2]
// between the radii of the level below (levels 2-4, Lloyd-Max codebooks of
// their analytic densities), and the group's radius in the scalar format.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/portable_math.h"
#include "config/tensor_config.h"
#include "quant/polar_tables.h"
#include "quant/rotation.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
#include "simd/angle_attention_kernels.h"
#include "simd/angle_kernels.h"
#include "simd/bitpack.h"
#include "simd/reduce_kernels.h"

namespace kvc {
namespace {

constexpr size_t kGroup = 16;

// One level-2..4 codebook: tan of the thresholds, cos/sin of the centroids.
struct AngleBook {
  int bits;
  const float* tan_thresholds;
  const float* cosines;
  const float* sines;

  // Bin of the angle atan(odd / even) in [0, pi/2], without the arctangent.
  uint32_t Bin(float even, float odd) const {
    uint32_t bin = 0;
    for (int k = 0; k + 1 < (1 << bits); ++k) bin += odd > tan_thresholds[k] * even;
    return bin;
  }
};

AngleBook LevelBook(int level, int bits) {
  using namespace polar_tables;
#define KVC_BOOK(l, b) \
  if (level == l && bits == b) return AngleBook{b, kTan##l##_##b, kCos##l##_##b, kSin##l##_##b};
  KVC_BOOK(2, 1) KVC_BOOK(2, 2) KVC_BOOK(2, 3) KVC_BOOK(2, 4)
  KVC_BOOK(3, 1) KVC_BOOK(3, 2) KVC_BOOK(3, 3) KVC_BOOK(3, 4)
  KVC_BOOK(4, 1) KVC_BOOK(4, 2) KVC_BOOK(4, 3) KVC_BOOK(4, 4)
#undef KVC_BOOK
  return AngleBook{0, nullptr, nullptr, nullptr};  // unreachable: validated
}

class PolarQuantCodec final : public TensorCodec {
 public:
  PolarQuantCodec(const kvc_tensor_config& c, uint32_t d)
      : TensorCodec(d), format_(c.scalar_format), rotation_(c.rotation, d, c.seed) {
    for (int level = 0; level < 4; ++level) {
      bits_[level] = static_cast<int>((c.level_bits >> (12 - 4 * level)) & 0xF);
    }
    for (int level = 1; level < 4; ++level) books_[level] = LevelBook(level + 1, bits_[level]);
    // Level 1: uniform bins over the circle, decoded at their centres.
    const uint32_t bins = 1u << bits_[0];
    for (uint32_t k = 0; k < bins; ++k) {
      double s, co;
      PortableSinCos((k + 0.5) * (2 * kPi) / bins, &s, &co);
      circle_cos_.push_back(static_cast<float>(co));
      circle_sin_.push_back(static_cast<float>(s));
      circle_cos_sin_.push_back(uint64_t{FloatBits(circle_cos_.back())} |
                                uint64_t{FloatBits(circle_sin_.back())} << 32);
    }
    // The row kernels' view: tables padded to 16 entries.
    rows_.dim = d;
    for (int level = 0; level < 4; ++level) rows_.bits[level] = bits_[level];
    for (int level = 1; level < 4; ++level) {
      const size_t size = size_t{1} << bits_[level];
      padded_cos_[level - 1].assign(books_[level].cosines, books_[level].cosines + size);
      padded_sin_[level - 1].assign(books_[level].sines, books_[level].sines + size);
      padded_cos_[level - 1].resize(16, 0.0f);
      padded_sin_[level - 1].resize(16, 0.0f);
      rows_.tan_thresholds[level - 1] = books_[level].tan_thresholds;
      rows_.cosines[level - 1] = padded_cos_[level - 1].data();
      rows_.sines[level - 1] = padded_sin_[level - 1].data();
    }
    padded_circle_cos_ = circle_cos_;
    padded_circle_sin_ = circle_sin_;
    padded_circle_cos_.resize(std::max<size_t>(16, bins), 0.0f);
    padded_circle_sin_.resize(std::max<size_t>(16, bins), 0.0f);
    rows_.circle_cos = padded_circle_cos_.data();
    rows_.circle_sin = padded_circle_sin_.data();
    rows_.circle_cos_sin = circle_cos_sin_.data();
    // Attention's tables (simd::PqTokens), where a group's codes fit one
    // 64-bit field: (cos, sin) of the circle's bins, and every product of
    // the level-2..4 factors on a pair's path.
    if (GroupBits() <= 64) {
      for (uint32_t k = 0; k < bins; ++k) {
        circle_pairs_.push_back(Pair(circle_cos_[k], circle_sin_[k]));
      }
      factors_.resize(simd::PqFactorCount(bits_));
      for (uint32_t c2 = 0; c2 < (1u << bits_[1]); ++c2) {
        for (uint32_t c3 = 0; c3 < (1u << bits_[2]); ++c3) {
          for (uint32_t c4 = 0; c4 < (1u << bits_[3]); ++c4) {
            for (uint32_t j = 0; j < 8; ++j) {
              auto side = [&](int level, uint32_t k, uint32_t s) {
                return s ? books_[level].sines[k] : books_[level].cosines[k];
              };
              const float f =
                  side(3, c4, j >> 2 & 1) * side(2, c3, j >> 1 & 1) * side(1, c2, j & 1);
              factors_[simd::PqFactorIndex(bits_, c2, c3, c4, j)] = Pair(f, f);
            }
          }
        }
      }
    }
  }

  std::vector<size_t> SectionWidths(const uint8_t* record) const override {
    std::vector<size_t> widths = ByteWidths(record);
    for (size_t& w : widths) w *= 8;
    return widths;
  }

  // Every record of this method is whole bytes.
  std::vector<size_t> ByteWidths(const uint8_t*) const {
    const size_t groups = head_dim() / kGroup;
    const size_t group_bits = 8 * bits_[0] + 4 * bits_[1] + 2 * bits_[2] + bits_[3];
    return {groups * DtypeBytes(format_), (groups * group_bits + 7) / 8};
  }

  Status Encode(const uint8_t*, const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    const size_t d = head_dim(), groups = d / kGroup;
    const std::vector<size_t> w = ByteWidths(nullptr);
    // Batches of rows: rotated together, then every level of every group
    // by the row kernels (or one vector at a time below), then the group
    // radii stored and checked in order.
    std::vector<float> y(kBatch * d), group_radii(kBatch * groups);
    for (size_t n0 = 0; n0 < count; n0 += kBatch) {
      const size_t m = std::min(kBatch, count - n0);
      rotation_.ForwardRows(x + n0 * d, m, y.data(), nullptr);
      if (!simd::PqEncodeRows(rows_, y.data(), m, sections[1] + n0 * w[1],
                              group_radii.data())) {
        for (size_t i = 0; i < m; ++i) {
          EncodeRotated(y.data() + i * d, sections[1] + (n0 + i) * w[1],
                        group_radii.data() + i * groups);
        }
      }
      // The batch's radii converted at once; one by one to name a failure.
      if (StoreFiniteScalars(group_radii.data(), m * groups, format_, sections[0] + n0 * w[0])) {
        continue;
      }
      for (size_t i = 0; i < m; ++i) {
        *bad_vector = n0 + i;
        uint8_t* radii = sections[0] + (n0 + i) * w[0];
        for (size_t g = 0; g < groups; ++g) {
          const float group_radius = group_radii[i * groups + g];
          if (!StoreFiniteScalar(group_radius, format_, radii + g * DtypeBytes(format_))) {
            return Status(KVC_ERR_INVALID_VALUE,
                          StrFormat("group radius %g exceeds the scalar format's range",
                                    static_cast<double>(group_radius)));
          }
        }
      }
    }
    return OkStatus();
  }

  // In the rotated domain (simd::PqTokens): queries rotated once, outputs
  // rotated back once. Groups of more than 64 bits decode (the default).
  Status Scores(const uint8_t* record, const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    if (factors_.empty()) {
      return TensorCodec::Scores(record, sections, count, queries, num_queries, scores,
                                 bad_vector);
    }
    const size_t d = head_dim();
    std::vector<float> rotated(queries, queries + num_queries * d);
    for (size_t q = 0; q < num_queries; ++q) rotation_.Forward(&rotated[q * d]);
    Tokens batch(d / kGroup);
    simd::PqTokens view;
    for (size_t n0 = 0; n0 < count; n0 += kTokens) {
      const size_t m = std::min(kTokens, count - n0);
      KVC_RETURN_IF_ERROR(Load(sections, n0, m, &batch, &view, bad_vector));
      simd::PqDots(view, rotated.data(), num_queries, scores + n0, count);
    }
    return OkStatus();
  }

  Status Attend(const uint8_t* record, const uint8_t* const* sections, size_t count,
                const float* weights, size_t num_queries, float* out,
                size_t* bad_vector) const override {
    if (factors_.empty()) {
      return TensorCodec::Attend(record, sections, count, weights, num_queries, out,
                                 bad_vector);
    }
    const size_t d = head_dim();
    std::fill(out, out + num_queries * d, 0.0f);
    Tokens batch(d / kGroup);
    simd::PqTokens view;
    std::vector<float> batch_weights(num_queries * kTokens);
    for (size_t n0 = 0; n0 < count; n0 += kTokens) {
      const size_t m = std::min(kTokens, count - n0);
      KVC_RETURN_IF_ERROR(Load(sections, n0, m, &batch, &view, bad_vector));
      for (size_t q = 0; q < num_queries; ++q) {
        std::copy(weights + q * count + n0, weights + q * count + n0 + m,
                  batch_weights.begin() + q * m);
      }
      simd::PqWeightedSum(view, batch_weights.data(), m, num_queries, out);
    }
    for (size_t q = 0; q < num_queries; ++q) rotation_.Inverse(out + q * d);
    return OkStatus();
  }

  Status Decode(const uint8_t*, const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim(), groups = d / kGroup;
    const std::vector<size_t> w = ByteWidths(nullptr);
    std::vector<float> group_radii(kBatch * groups);
    for (size_t n0 = 0; n0 < count; n0 += kBatch) {
      const size_t m = std::min(kBatch, count - n0);
      KVC_RETURN_IF_ERROR(CheckRecords(sections, n0, m, group_radii.data(), bad_vector));
      float* y = out + n0 * d;
      if (!simd::PqDecodeRows(rows_, sections[1] + n0 * w[1], group_radii.data(), m, y)) {
        for (size_t i = 0; i < m; ++i) {
          DecodeRotated(sections[1] + (n0 + i) * w[1], group_radii.data() + i * groups,
                        y + i * d);
        }
      }
      rotation_.InverseRows(y, m);
    }
    return OkStatus();
  }

 private:
  static constexpr size_t kBatch = 16;

  size_t GroupBits() const {
    return static_cast<size_t>(8 * bits_[0] + 4 * bits_[1] + 2 * bits_[2] + bits_[3]);
  }

  // The reference path for one rotated vector: its record (zeroed here) and
  // its group radii.
  void EncodeRotated(const float* y, uint8_t* angles, float* group_radii) const {
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    // Per level: bins and radii of every group at once (level l has d/2^l).
    std::vector<float> radius[4] = {std::vector<float>(d / 2), std::vector<float>(d / 4),
                                    std::vector<float>(d / 8), std::vector<float>(d / 16)};
    std::vector<uint32_t> bin[4] = {std::vector<uint32_t>(d / 2), std::vector<uint32_t>(d / 4),
                                    std::vector<uint32_t>(d / 8), std::vector<uint32_t>(d / 16)};
    std::fill(angles, angles + w[1], 0);
    BitWriter writer(angles);
    // Level 1: pair angle bins and radii; levels 2-4 fold the radii
    // pairwise, 8 -> 4 -> 2 -> 1 per group of 16 coordinates.
    simd::PairAngles(y, d / 2, 1u << bits_[0], bin[0].data(), radius[0].data());
    for (int level = 1; level < 4; ++level) {
      simd::FoldPairs(radius[level - 1].data(), d >> (level + 1), books_[level].tan_thresholds,
                      (size_t{1} << bits_[level]) - 1, bin[level].data(), radius[level].data());
    }
    for (size_t g = 0; g < d / kGroup; ++g) {
      for (int level = 0, per_group = 8; level < 4; ++level, per_group /= 2) {
        for (int j = 0; j < per_group; ++j) {
          writer.Put(bin[level][g * per_group + j], bits_[level]);
        }
      }
      group_radii[g] = radius[3][g];
    }
  }

  // The reference path for one record with valid radii and padding.
  void DecodeRotated(const uint8_t* angles, const float* group_radii, float* y) const {
    const size_t d = head_dim();
    BitReader reader(angles);
    for (size_t g = 0; g < d / kGroup; ++g) {
      uint32_t circle[8], folds[7];  // level 1; levels 2-4 (4 + 2 + 1)
      for (uint32_t& k : circle) k = reader.Get(bits_[0]);
      for (int i = 0, level = 1, pairs = 4; level < 4; ++level, pairs /= 2) {
        for (int j = 0; j < pairs; ++j) folds[i++] = reader.Get(bits_[level]);
      }
      float r[8];
      r[0] = group_radii[g];
      // Unfold from the top: level 4 (folds[6]), level 3 (folds[4..5]),
      // level 2 (folds[0..3]); in place from the highest index down.
      const int first_fold[4] = {0, 0, 4, 6};
      for (int level = 3, pairs = 1; level >= 1; --level, pairs *= 2) {
        for (int j = pairs - 1; j >= 0; --j) {
          const uint32_t k = folds[first_fold[level] + j];
          const float radius = r[j];
          r[2 * j] = radius * books_[level].cosines[k];
          r[2 * j + 1] = radius * books_[level].sines[k];
        }
      }
      for (int j = 0; j < 8; ++j) {
        y[g * kGroup + 2 * j] = r[j] * circle_cos_[circle[j]];
        y[g * kGroup + 2 * j + 1] = r[j] * circle_sin_[circle[j]];
      }
    }
  }

  // Vectors [n0, n0 + m): every record checked, all at once, then, if one
  // fails, in the order the reference reads them (a vector's group radii,
  // then its padding) to name it; their group radii into radii.
  Status CheckRecords(const uint8_t* const* sections, size_t n0, size_t m, float* radii,
                      size_t* bad_vector) const {
    const size_t groups = head_dim() / kGroup;
    const std::vector<size_t> w = ByteWidths(nullptr);
    const size_t used_bits = groups * GroupBits();
    bool valid = LoadNorms(sections[0] + n0 * w[0], m * groups, format_, radii);
    for (size_t i = 0; used_bits % 8 != 0 && i < m; ++i) {
      valid = valid && (sections[1][(n0 + i) * w[1] + used_bits / 8] >> (used_bits % 8)) == 0;
    }
    for (size_t i = 0; !valid && i < m; ++i) {
      *bad_vector = n0 + i;
      const uint8_t* stored = sections[0] + (n0 + i) * w[0];
      for (size_t g = 0; g < groups; ++g) {
        if (!LoadNorm(stored + g * DtypeBytes(format_), format_, &radii[i * groups + g])) {
          return Status(KVC_ERR_CORRUPT, "stored radius is negative or not finite");
        }
      }
      const uint8_t* angles = sections[1] + (n0 + i) * w[1];
      if (used_bits % 8 != 0 && (angles[used_bits / 8] >> (used_bits % 8)) != 0) {
        return Status(KVC_ERR_CORRUPT, "padding bits set");
      }
    }
    return OkStatus();
  }

  // Two floats as one table entry, in memory order.
  static uint64_t Pair(float a, float b) {
    const float pair[2] = {a, b};
    uint64_t entry;
    std::memcpy(&entry, pair, 8);
    return entry;
  }

  // Vectors [n0, n0 + m) checked, and their group fields and radii.
  static constexpr size_t kTokens = 64;
  struct Tokens {
    explicit Tokens(size_t groups) : fields(kTokens * groups), radii(kTokens * groups) {}
    std::vector<uint64_t> fields;
    std::vector<float> radii;
  };
  Status Load(const uint8_t* const* sections, size_t n0, size_t m, Tokens* batch,
              simd::PqTokens* view, size_t* bad_vector) const {
    const size_t groups = head_dim() / kGroup, group_bits = GroupBits();
    const size_t record_bytes = ByteWidths(nullptr)[1];
    KVC_RETURN_IF_ERROR(CheckRecords(sections, n0, m, batch->radii.data(), bad_vector));
    // A field is read as the 9 bytes from its first: the record copied with
    // room after it.
    std::vector<uint8_t> record(record_bytes + 9, 0);
    const uint64_t mask = group_bits == 64 ? ~uint64_t{0} : (uint64_t{1} << group_bits) - 1;
    for (size_t i = 0; i < m; ++i) {
      std::memcpy(record.data(), sections[1] + (n0 + i) * record_bytes, record_bytes);
      for (size_t g = 0; g < groups; ++g) {
        const size_t bit = g * group_bits, shift = bit % 8;
        const uint8_t* at = record.data() + bit / 8;
        uint64_t field = simd::bitpack_internal::Load64(at) >> shift;
        if (shift != 0) field |= uint64_t{at[8]} << (64 - shift);
        batch->fields[i * groups + g] = field & mask;
      }
    }
    *view = simd::PqTokens{head_dim(),
                           m,
                           {bits_[0], bits_[1], bits_[2], bits_[3]},
                           circle_pairs_.data(),
                           factors_.data(),
                           batch->fields.data(),
                           batch->radii.data()};
    return OkStatus();
  }

  uint32_t format_;
  Rotation rotation_;
  int bits_[4];
  AngleBook books_[4];  // [1..3]: levels 2-4
  std::vector<float> circle_cos_, circle_sin_;
  std::vector<uint64_t> circle_cos_sin_;  // cos | sin << 32, as float bits
  std::vector<float> padded_cos_[3], padded_sin_[3], padded_circle_cos_, padded_circle_sin_;
  simd::PqRows rows_;
  std::vector<uint64_t> circle_pairs_, factors_;  // simd::PqTokens' tables
};

}  // namespace

std::unique_ptr<TensorCodec> MakePolarQuantCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<PolarQuantCodec>(c, d);
}

}  // namespace kvc
