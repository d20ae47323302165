// PolarQuant (methods.md §3): a randomized Hadamard rotation, then per group
// of 16 coordinates the recursive polar transform: 8 pair angles in
// [0, 2pi) (level 1, uniform bins), then 4, 2 and 1 angles in [0, pi/2]
// between the radii of the level below (levels 2-4, Lloyd-Max codebooks of
// their analytic densities), and the group's radius in the scalar format.
#include <cmath>

#include "base/portable_math.h"
#include "config/tensor_config.h"
#include "quant/polar_tables.h"
#include "quant/rotation.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
#include "simd/angle_kernels.h"
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
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    // Per level: bins and radii of every group at once (level l has d/2^l).
    std::vector<float> y(d), radius[4] = {std::vector<float>(d / 2), std::vector<float>(d / 4),
                                          std::vector<float>(d / 8), std::vector<float>(d / 16)};
    std::vector<uint32_t> bin[4] = {std::vector<uint32_t>(d / 2), std::vector<uint32_t>(d / 4),
                                    std::vector<uint32_t>(d / 8), std::vector<uint32_t>(d / 16)};
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      std::copy(x + n * d, x + (n + 1) * d, y.begin());
      rotation_.Forward(y.data());
      uint8_t* radii = sections[0] + n * w[0];
      uint8_t* angles = sections[1] + n * w[1];
      std::fill(angles, angles + w[1], 0);
      BitWriter writer(angles);
      // Level 1: pair angle bins and radii; levels 2-4 fold the radii
      // pairwise, 8 -> 4 -> 2 -> 1 per group of 16 coordinates.
      simd::PairAngles(y.data(), d / 2, 1u << bits_[0], bin[0].data(), radius[0].data());
      for (int level = 1; level < 4; ++level) {
        simd::FoldPairs(radius[level - 1].data(), d >> (level + 1),
                        books_[level].tan_thresholds, (size_t{1} << bits_[level]) - 1,
                        bin[level].data(), radius[level].data());
      }
      for (size_t g = 0; g < d / kGroup; ++g) {
        for (int level = 0, per_group = 8; level < 4; ++level, per_group /= 2) {
          for (int j = 0; j < per_group; ++j) {
            writer.Put(bin[level][g * per_group + j], bits_[level]);
          }
        }
        const float group_radius = radius[3][g];
        if (!StoreFiniteScalar(group_radius, format_, radii + g * DtypeBytes(format_))) {
          return Status(KVC_ERR_INVALID_VALUE,
                        StrFormat("group radius %g exceeds the scalar format's range",
                                  static_cast<double>(group_radius)));
        }
      }
    }
    return OkStatus();
  }

  Status Decode(const uint8_t*, const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      float* y = out + n * d;
      const uint8_t* radii = sections[0] + n * w[0];
      BitReader reader(sections[1] + n * w[1]);
      for (size_t g = 0; g < d / kGroup; ++g) {
        uint32_t circle[8], folds[7];  // level 1; levels 2-4 (4 + 2 + 1)
        for (uint32_t& k : circle) k = reader.Get(bits_[0]);
        for (int i = 0, level = 1, pairs = 4; level < 4; ++level, pairs /= 2) {
          for (int j = 0; j < pairs; ++j) folds[i++] = reader.Get(bits_[level]);
        }
        float r[8];
        if (!LoadNorm(radii + g * DtypeBytes(format_), format_, &r[0])) {
          return Status(KVC_ERR_CORRUPT, "stored radius is negative or not finite");
        }
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
      if (!reader.PaddingIsZero()) return Status(KVC_ERR_CORRUPT, "padding bits set");
      rotation_.Inverse(y);
    }
    return OkStatus();
  }

 private:
  uint32_t format_;
  Rotation rotation_;
  int bits_[4];
  AngleBook books_[4];  // [1..3]: levels 2-4
  std::vector<float> circle_cos_, circle_sin_;
};

}  // namespace

std::unique_ptr<TensorCodec> MakePolarQuantCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<PolarQuantCodec>(c, d);
}

}  // namespace kvc
