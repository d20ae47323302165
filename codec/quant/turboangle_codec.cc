// TurboAngle (methods.md §4): a randomized Hadamard rotation makes each
// consecutive pair (y_2i, y_2i+1) uniform on a circle; its angle goes on a
// uniform codebook of n bins (any n in 2..4096: the d/2 bin indices of a
// vector are packed as one base-n number, so a vector costs
// ceil(d/2 * log2 n) bits, not d/2 * ceil(log2 n)), and its radius, relative
// to the vector's rms pair radius, in 8-bit linear, 4-bit log-spaced or exact
// f32 form.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/portable_math.h"
#include "config/tensor_config.h"
#include "quant/rotation.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
#include "simd/angle_attention_kernels.h"
#include "simd/angle_kernels.h"
#include "simd/bitpack.h"
#include "simd/quantize_kernels.h"
#include "simd/reduce_kernels.h"

namespace kvc {
namespace {

// 4-bit log-spaced radius levels: 2.6 * 2^((k - 15) / 4), k = 0..15, and the
// geometric midpoints between them (f32). Relative to the rms pair radius,
// radii follow a Rayleigh law; these levels minimise its squared error among
// quarter-octave grids.
constexpr float kLog4Levels[16] = {
    0.193246156f, 0.229809701f, 0.273291349f, 0.324999988f, 0.386492312f, 0.459619403f,
    0.546582699f, 0.649999976f, 0.772984624f, 0.919238806f, 1.0931654f,   1.29999995f,
    1.54596925f,  1.83847761f,  2.1863308f,   2.5999999f};
constexpr float kLog4Thresholds[15] = {
    0.210736424f, 0.250609249f, 0.298026323f, 0.354414999f, 0.421472847f,
    0.501218498f, 0.596052647f, 0.708829999f, 0.842945695f, 1.002437f,
    1.19210529f,  1.41766f,     1.68589139f,  2.00487399f,  2.38421059f};
// 8-bit linear levels: q * 4 / 255 times the rms radius, q = 0..255.
constexpr float kLinear8Range = 4.0f;

// Unsigned integers of a few hundred bits, little-endian 32-bit limbs: the
// base-n packing of a vector's angle bins.
class BigNumber {
 public:
  void MultiplyAdd(uint32_t factor, uint32_t addend) {
    uint64_t carry = addend;
    for (uint32_t& limb : limbs_) {
      const uint64_t v = uint64_t{limb} * factor + carry;
      limb = static_cast<uint32_t>(v);
      carry = v >> 32;
    }
    if (carry) limbs_.push_back(static_cast<uint32_t>(carry));
  }
  uint32_t DivideBy(uint32_t divisor) {  // returns the remainder
    uint64_t remainder = 0;
    for (size_t i = limbs_.size(); i-- > 0;) {
      const uint64_t v = (remainder << 32) | limbs_[i];
      limbs_[i] = static_cast<uint32_t>(v / divisor);
      remainder = v % divisor;
    }
    return static_cast<uint32_t>(remainder);
  }
  size_t BitLength() const {
    size_t bits = 32 * limbs_.size();
    for (size_t i = limbs_.size(); i-- > 0; bits -= 32) {
      if (limbs_[i]) return bits - static_cast<size_t>(__builtin_clz(limbs_[i]));
    }
    return 0;
  }
  bool IsZero() const { return BitLength() == 0; }
  void Decrement() {  // of a non-zero number
    for (uint32_t& limb : limbs_) {
      if (limb-- != 0) return;
    }
  }
  void Store(uint8_t* out, size_t bytes) const {
    for (size_t i = 0; i < bytes; ++i) {
      out[i] = i / 4 < limbs_.size() ? static_cast<uint8_t>(limbs_[i / 4] >> (8 * (i % 4))) : 0;
    }
  }
  static BigNumber Load(const uint8_t* in, size_t bytes) {
    BigNumber v;
    v.limbs_.assign((bytes + 3) / 4, 0);
    for (size_t i = 0; i < bytes; ++i) v.limbs_[i / 4] |= uint32_t{in[i]} << (8 * (i % 4));
    return v;
  }

 private:
  std::vector<uint32_t> limbs_;
};

class TurboAngleCodec final : public TensorCodec {
 public:
  TurboAngleCodec(const kvc_tensor_config& c, uint32_t d)
      : TensorCodec(d),
        format_(c.scalar_format),
        radius_format_(c.radius_format),
        norm_correction_((c.flags & KVC_CONFIG_NORM_CORRECTION) != 0),
        bins_(c.angle_bins),
        rotation_(c.rotation, d, c.seed),
        rms_per_norm_(static_cast<float>(std::sqrt(2.0 / d))),
        norm_per_rms_(static_cast<float>(std::sqrt(d / 2.0))) {
    for (uint32_t k = 0; k < bins_; ++k) {
      double s, co;
      PortableSinCos((k + 0.5) * (2 * kPi) / bins_, &s, &co);
      cos_.push_back(static_cast<float>(co));
      sin_.push_back(static_cast<float>(s));
    }
    // The largest packed value, n^(d/2) - 1, sets the record's size.
    BigNumber largest;
    largest.MultiplyAdd(1, 1);
    for (uint32_t i = 0; i < d / 2; ++i) largest.MultiplyAdd(bins_, 0);
    largest.Decrement();
    angle_bits_ = largest.BitLength();
    for (uint32_t q = 0; q < 256; ++q) {
      linear8_levels_[q] = static_cast<float>(q * (kLinear8Range / 255.0));
    }
    // n = 2^k: the base-n number is the k-bit digits packed LSB first.
    for (uint32_t k = 1; k <= 8; ++k) {
      if (bins_ == (1u << k)) digit_bits_ = static_cast<int>(k);
    }
    // Whole rows in SIMD kernels: power-of-two bins, coded radii.
    kernel_ = digit_bits_ > 0 && radius_format_ != KVC_RADIUS_EXACT && angle_bits_ % 8 == 0 &&
              SectionWidths(nullptr)[2] % 8 == 0;
    for (uint32_t k = 0; k < bins_ && kernel_; ++k) {
      cos_sin_.push_back(uint64_t{FloatBits(cos_[k])} | uint64_t{FloatBits(sin_[k])} << 32);
    }
    rows_ = simd::TaRows{d / 2,           digit_bits_,  radius_format_ == KVC_RADIUS_LOG4,
                         kLog4Thresholds, kLog4Levels, cos_sin_.data()};
    // Attention's table: (cos, sin) per bin; with LOG4 radii per (level,
    // bin), the level already applied, so that a token costs one lookup.
    const uint32_t levels = radius_format_ == KVC_RADIUS_LOG4 ? 16 : 1;
    for (uint32_t level = 0; level < levels; ++level) {
      const float r = levels == 16 ? kLog4Levels[level] : 1.0f;
      for (uint32_t k = 0; k < bins_; ++k) {
        const float pair[2] = {r * cos_[k], r * sin_[k]};
        uint64_t entry;
        std::memcpy(&entry, pair, 8);
        attention_table_.push_back(entry);
      }
    }
  }

  // Bits: the norm, the base-n angle number (not rounded to bytes), radii.
  std::vector<size_t> SectionWidths(const uint8_t*) const override {
    const size_t pairs = head_dim() / 2;
    const size_t radius_bits = radius_format_ == KVC_RADIUS_EXACT     ? 32
                               : radius_format_ == KVC_RADIUS_LINEAR8 ? 8
                                                                      : 4;
    return {8 * DtypeBytes(format_), angle_bits_, pairs * radius_bits};
  }

  Status Encode(const uint8_t*, const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    const std::vector<size_t> w = SectionWidths(nullptr);
    BitWriter angles(sections[1]);  // records that are not whole bytes
    // Batches of rows: rotated (and measured) together, norms stored, then
    // the angles and radii of the whole batch.
    std::vector<float> y(kBatch * d);
    float sum_squares[kBatch], inverse_rms[kBatch];
    for (size_t n0 = 0; n0 < count; n0 += kBatch) {
      const size_t m = std::min(kBatch, count - n0);
      rotation_.ForwardRows(x + n0 * d, m, y.data(), sum_squares);
      // The batch's norms stored at once (one by one to name one that does
      // not fit: a non-finite sum stores a non-finite norm).
      float norms[kBatch];
      for (size_t i = 0; i < m; ++i) norms[i] = std::sqrt(sum_squares[i]);
      uint8_t* norm_records = sections[0] + n0 * w[0] / 8;
      const bool stored = StoreFiniteScalars(norms, m, format_, norm_records);
      for (size_t i = 0; !stored && i < m; ++i) {
        *bad_vector = n0 + i;
        if (!std::isfinite(sum_squares[i]) ||
            !StoreFiniteScalar(norms[i], format_, norm_records + i * w[0] / 8)) {
          return Status(KVC_ERR_INVALID_VALUE, "vector norm exceeds the norm format's range");
        }
      }
      // Radii are relative to the rms pair radius of the stored norm, as
      // the decoder will see it.
      LoadFiniteScalars(norm_records, m, format_, norms);
      for (size_t i = 0; i < m; ++i) {
        inverse_rms[i] = norms[i] > 0 ? norm_per_rms_ / norms[i] : 0.0f;
      }
      if (kernel_ && simd::TaEncodeRows(rows_, y.data(), m, inverse_rms,
                                        sections[1] + n0 * w[1] / 8,
                                        sections[2] + n0 * w[2] / 8)) {
        continue;
      }
      for (size_t i = 0; i < m; ++i) {
        EncodeRotated(y.data() + i * d, inverse_rms[i], n0 + i, sections, &angles);
      }
    }
    return OkStatus();
  }

  // In the rotated domain: y = s * u, u's pairs w_j * (cos, sin) of bin
  // b_j (simd::TaTokens), s = rms * 4 / 255 (LINEAR8), rms (LOG4) or 1
  // (EXACT), or with norm correction norm / |u|. Queries are rotated once,
  // scores are s * <R q, u>.
  Status Scores(const uint8_t*, const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    std::vector<float> rotated(queries, queries + num_queries * d);
    for (size_t q = 0; q < num_queries; ++q) rotation_.Forward(&rotated[q * d]);
    Tokens batch(head_dim() / 2);
    for (size_t n0 = 0; n0 < count; n0 += kTokens) {
      const size_t m = std::min(kTokens, count - n0);
      size_t bad = 0;
      Status status = Load(sections, n0, m, &batch, &bad);
      if (!status.ok()) {
        *bad_vector = n0 + bad;
        return status;
      }
      simd::TaDots(batch.view, rotated.data(), num_queries, scores + n0, count, nullptr);
      Scales(&batch);
      for (size_t q = 0; q < num_queries; ++q) {
        for (size_t i = 0; i < m; ++i) scores[q * count + n0 + i] *= batch.scales[i];
      }
    }
    return OkStatus();
  }

  // sum over n of w_n * y_n in the rotated domain (weights scaled by s_n),
  // rotated back once per query.
  Status Attend(const uint8_t*, const uint8_t* const* sections, size_t count,
                const float* weights, size_t num_queries, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    std::fill(out, out + num_queries * d, 0.0f);
    Tokens batch(head_dim() / 2);
    std::vector<float> scaled(num_queries * kTokens);
    for (size_t n0 = 0; n0 < count; n0 += kTokens) {
      const size_t m = std::min(kTokens, count - n0);
      size_t bad = 0;
      Status status = Load(sections, n0, m, &batch, &bad);
      if (!status.ok()) {
        *bad_vector = n0 + bad;
        return status;
      }
      Scales(&batch);
      for (size_t q = 0; q < num_queries; ++q) {
        for (size_t i = 0; i < m; ++i) {
          scaled[q * m + i] = weights[q * count + n0 + i] * batch.scales[i];
        }
      }
      simd::TaWeightedSum(batch.view, scaled.data(), m, num_queries, out);
    }
    for (size_t q = 0; q < num_queries; ++q) rotation_.Inverse(out + q * d);
    return OkStatus();
  }

  Status Decode(const uint8_t*, const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    if (!kernel_) return DecodeEach(sections, count, out, bad_vector);
    // Power-of-two bins and coded radii: no record but the norm can be
    // invalid, so norms are checked a batch at a time.
    const size_t d = head_dim(), pairs = d / 2;
    const std::vector<size_t> w = SectionWidths(nullptr);
    float norms[kBatch], rms[kBatch];
    for (size_t n0 = 0; n0 < count; n0 += kBatch) {
      const size_t m = std::min(kBatch, count - n0);
      // All at once; one by one to name an invalid norm.
      bool valid = LoadNorms(sections[0] + n0 * w[0] / 8, m, format_, norms);
      for (size_t i = 0; !valid && i < m; ++i) {
        if (!LoadNorm(sections[0] + (n0 + i) * w[0] / 8, format_, &norms[i])) {
          *bad_vector = n0 + i;
          return Status(KVC_ERR_CORRUPT, "stored norm is negative or not finite");
        }
      }
      for (size_t i = 0; i < m; ++i) rms[i] = norms[i] * rms_per_norm_;
      const uint8_t* angle_records = sections[1] + n0 * w[1] / 8;
      const uint8_t* radius_records = sections[2] + n0 * w[2] / 8;
      float* y = out + n0 * d;
      if (!simd::TaDecodeRows(rows_, angle_records, radius_records, rms, m, y)) {
        // The same products: r = level * rms, then r * cos, r * sin.
        const bool linear = radius_format_ == KVC_RADIUS_LINEAR8;
        const float* level = linear ? linear8_levels_ : kLog4Levels;
        std::vector<uint8_t> digits(pairs), levels(pairs);
        for (size_t i = 0; i < m; ++i) {
          simd::UnpackBits(angle_records + i * w[1] / 8, pairs, digit_bits_, digits.data());
          const uint8_t* q = radius_records + i * w[2] / 8;
          if (!linear) {
            simd::UnpackBits(q, pairs, 4, levels.data());
            q = levels.data();
          }
          float* row = y + i * d;
          for (size_t j = 0; j < pairs; ++j) {
            const float r = level[q[j]] * rms[i];
            row[2 * j] = r * cos_[digits[j]];
            row[2 * j + 1] = r * sin_[digits[j]];
          }
        }
      }
      for (size_t i = 0; norm_correction_ && i < m; ++i) Correct(norms[i], y + i * d);
      rotation_.InverseRows(y, m);
    }
    return OkStatus();
  }

 private:
  static constexpr size_t kBatch = 16;

  // Angles and radii of one rotated vector (the reference path), vector n.
  void EncodeRotated(const float* y, float inverse_rms, size_t n, uint8_t* const* sections,
                     BitWriter* angles) const {
    const size_t pairs = head_dim() / 2;
    const std::vector<size_t> w = SectionWidths(nullptr);
    std::vector<float> radius(pairs);
    std::vector<uint32_t> bin(pairs);
    std::vector<uint8_t> digits(pairs), levels(pairs);
    std::vector<uint8_t> number((angle_bits_ + 7) / 8);
    uint8_t* radii = sections[2] + n * w[2] / 8;
    simd::PairAngles(y, pairs, bins_, bin.data(), radius.data());
    if (digit_bits_ > 0) {
      for (size_t i = 0; i < pairs; ++i) digits[i] = static_cast<uint8_t>(bin[i]);
      simd::PackBits(digits.data(), pairs, digit_bits_, number.data());
    } else {
      BigNumber packed;
      for (size_t i = pairs; i-- > 0;) packed.MultiplyAdd(bins_, bin[i]);
      packed.Store(number.data(), number.size());
    }
    if (angle_bits_ % 8 == 0) {
      // Whole-byte records: vector n's starts at byte n * angle_bits_ / 8
      // of the (zeroed) section, as the bit writer would place it.
      std::copy(number.begin(), number.end(), sections[1] + n * (angle_bits_ / 8));
    } else {
      for (size_t bit = 0; bit < angle_bits_; bit += 8) {
        angles->Put(number[bit / 8], static_cast<int>(std::min<size_t>(8, angle_bits_ - bit)));
      }
    }
    if (radius_format_ == KVC_RADIUS_LOG4) {
      // q = the number of thresholds below u = r * inverse_rms, 4 bits each.
      simd::CountBelow(kLog4Thresholds, 15, radius.data(), pairs, inverse_rms, levels.data());
      simd::PackBits(levels.data(), pairs, 4, radii);
    }
    for (size_t i = 0; radius_format_ != KVC_RADIUS_LOG4 && i < pairs; ++i) {
      const float r = radius[i];  // sqrt(y0 * y0 + y1 * y1)
      const float u = r * inverse_rms;
      if (radius_format_ == KVC_RADIUS_EXACT) {
        StoreLE32(FloatBits(r), radii + 4 * i);
      } else {
        const float q = u * (255.0f / kLinear8Range) + 0.5f;
        radii[i] = static_cast<uint8_t>(q >= 255.0f ? 255 : static_cast<uint32_t>(q));
      }
    }
  }

  // Tokens for the attention kernels, checked as DecodeEach checks them.
  static constexpr size_t kTokens = 64;  // a multiple of 8: byte-aligned
  struct Tokens {
    explicit Tokens(size_t pairs)
        : bins8(kTokens * pairs), bins16(kTokens * pairs), codes(kTokens * pairs),
          radii(kTokens * pairs) {}
    simd::TaTokens view;
    float norms[kTokens], scales[kTokens], sum_squares[kTokens];
    std::vector<uint8_t> bins8;
    std::vector<uint16_t> bins16;
    std::vector<uint8_t> codes;
    std::vector<float> radii;
  };

  // Vectors [n0, n0 + m) into *batch (m <= kTokens, n0 a multiple of 8).
  // Of invalid records, the first vector's is named, and within a vector
  // the first that DecodeEach meets: norm, radius, then the packed angles.
  Status Load(const uint8_t* const* sections, size_t n0, size_t m, Tokens* batch,
              size_t* bad_vector) const {
    const size_t pairs = head_dim() / 2;
    const std::vector<size_t> w = SectionWidths(nullptr);
    size_t bad = m;
    Status status;
    auto fail = [&](size_t i, const char* message) {
      bad = i;
      status = Status(KVC_ERR_CORRUPT, message);
    };
    const uint8_t* norms = sections[0] + n0 * w[0] / 8;
    bool valid = LoadNorms(norms, m, format_, batch->norms);
    for (size_t i = 0; !valid && i < m; ++i) {
      if (!LoadNorm(norms + i * w[0] / 8, format_, &batch->norms[i])) {
        fail(i, "stored norm is negative or not finite");
        break;
      }
    }
    simd::TaTokens& t = batch->view;
    t = simd::TaTokens{pairs, m, simd::TaRadius::kLinear8, bins_, attention_table_.data(),
                       nullptr, nullptr, nullptr, nullptr};
    const uint8_t* radii = sections[2] + n0 * w[2] / 8;
    switch (radius_format_) {
      case KVC_RADIUS_LINEAR8: t.codes = radii; break;
      case KVC_RADIUS_LOG4:
        t.radius = simd::TaRadius::kLog4;
        simd::UnpackBits(radii, m * pairs, 4, batch->codes.data());
        t.codes = batch->codes.data();
        break;
      default:
        t.radius = simd::TaRadius::kExact;
        t.radii = batch->radii.data();
        for (size_t i = 0; i < bad; ++i) {
          for (size_t j = 0; j < pairs; ++j) {
            if (!LoadNorm(radii + i * w[2] / 8 + 4 * j, KVC_DTYPE_F32,
                          &batch->radii[i * pairs + j])) {
              fail(i, "stored radius is negative or not finite");
              break;
            }
          }
        }
    }
    // n = 2^k, k <= 8: the angle records are one stream of k-bit digits.
    const uint8_t* angles = sections[1] + n0 * angle_bits_ / 8;
    if (digit_bits_ > 0) {
      simd::UnpackBits(angles, m * pairs, digit_bits_, batch->bins8.data());
      t.bins8 = batch->bins8.data();
    } else {
      t.bins16 = batch->bins16.data();
      BitReader reader(angles);
      std::vector<uint8_t> number((angle_bits_ + 7) / 8);
      for (size_t i = 0; i < bad; ++i) {
        for (size_t bit = 0; bit < angle_bits_; bit += 8) {
          number[bit / 8] = static_cast<uint8_t>(
              reader.Get(static_cast<int>(std::min<size_t>(8, angle_bits_ - bit))));
        }
        BigNumber packed = BigNumber::Load(number.data(), number.size());
        for (size_t j = 0; j < pairs; ++j) {
          batch->bins16[i * pairs + j] = static_cast<uint16_t>(packed.DivideBy(bins_));
        }
        if (!packed.IsZero()) fail(i, "packed angles exceed n^(d/2)");
      }
    }
    *bad_vector = bad;
    return status;
  }

  // batch->scales: s_n of every token (after Load).
  void Scales(Tokens* batch) const {
    const simd::TaTokens& t = batch->view;
    if (norm_correction_) {
      simd::TaDots(t, nullptr, 0, nullptr, 0, batch->sum_squares);
      for (size_t i = 0; i < t.count; ++i) {
        const float length = std::sqrt(batch->sum_squares[i]);
        batch->scales[i] = length > 0 ? batch->norms[i] / length : 0.0f;
      }
      return;
    }
    const float unit = radius_format_ == KVC_RADIUS_LINEAR8
                           ? static_cast<float>(kLinear8Range / 255.0)
                           : 1.0f;
    for (size_t i = 0; i < t.count; ++i) {
      batch->scales[i] = radius_format_ == KVC_RADIUS_EXACT
                             ? 1.0f
                             : batch->norms[i] * rms_per_norm_ * unit;
    }
  }

  // Norm correction: the reconstruction scaled to the stored norm.
  void Correct(float norm, float* y) const {
    const size_t d = head_dim();
    const float length = std::sqrt(simd::SumOfSquares(y, d));
    const float gain = length > 0 ? norm / length : 0.0f;
    for (size_t j = 0; j < d; ++j) y[j] = y[j] * gain;
  }

  // Any bin count and radius format, one vector at a time.
  Status DecodeEach(const uint8_t* const* sections, size_t count, float* out,
                    size_t* bad_vector) const {
    const size_t d = head_dim(), pairs = d / 2;
    const std::vector<size_t> w = SectionWidths(nullptr);
    std::vector<uint8_t> number((angle_bits_ + 7) / 8);
    std::vector<uint8_t> digits(pairs), levels(pairs);
    BitReader angles(sections[1]);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      float* y = out + n * d;
      float norm;
      if (!LoadNorm(sections[0] + n * w[0] / 8, format_, &norm)) {
        return Status(KVC_ERR_CORRUPT, "stored norm is negative or not finite");
      }
      const float rms = norm * rms_per_norm_;
      if (angle_bits_ % 8 == 0) {
        const uint8_t* record = sections[1] + n * (angle_bits_ / 8);
        std::copy(record, record + number.size(), number.begin());
      } else {
        for (size_t bit = 0; bit < angle_bits_; bit += 8) {
          number[bit / 8] = static_cast<uint8_t>(
              angles.Get(static_cast<int>(std::min<size_t>(8, angle_bits_ - bit))));
        }
      }
      // n = 2^k: every k-bit digit is a valid bin and nothing is left over.
      BigNumber packed;
      if (digit_bits_ > 0) {
        simd::UnpackBits(number.data(), pairs, digit_bits_, digits.data());
      } else {
        packed = BigNumber::Load(number.data(), number.size());
      }
      const uint8_t* radii = sections[2] + n * w[2] / 8;
      if (radius_format_ == KVC_RADIUS_LOG4) simd::UnpackBits(radii, pairs, 4, levels.data());
      for (size_t i = 0; i < pairs; ++i) {
        const uint32_t bin = digit_bits_ > 0 ? digits[i] : packed.DivideBy(bins_);
        float r;
        switch (radius_format_) {
          case KVC_RADIUS_EXACT:
            if (!LoadNorm(radii + 4 * i, KVC_DTYPE_F32, &r)) {
              return Status(KVC_ERR_CORRUPT, "stored radius is negative or not finite");
            }
            break;
          case KVC_RADIUS_LINEAR8:
            r = static_cast<float>(radii[i] * (kLinear8Range / 255.0)) * rms;
            break;
          default: r = kLog4Levels[levels[i]] * rms;
        }
        y[2 * i] = r * cos_[bin];
        y[2 * i + 1] = r * sin_[bin];
      }
      // What is left after d/2 digits must be 0: the value was < n^(d/2).
      if (!packed.IsZero()) return Status(KVC_ERR_CORRUPT, "packed angles exceed n^(d/2)");
      if (norm_correction_) Correct(norm, y);
      rotation_.Inverse(y);
    }
    return OkStatus();
  }

  uint32_t format_;
  uint32_t radius_format_;
  bool norm_correction_;
  uint32_t bins_;
  Rotation rotation_;
  float rms_per_norm_;  // f32(sqrt(2 / d))
  float norm_per_rms_;  // f32(sqrt(d / 2))
  std::vector<float> cos_, sin_;
  size_t angle_bits_ = 0;  // of n^(d/2) - 1: one vector's angle record
  int digit_bits_ = 0;     // k if n = 2^k with k <= 8, else 0
  float linear8_levels_[256];  // f32(q * 4 / 255): LINEAR8 radius q, rms units
  bool kernel_ = false;        // rows_ describes this codec to the row kernels
  std::vector<uint64_t> cos_sin_;  // cos_[k] | sin_[k] << 32, as float bits
  simd::TaRows rows_;
  std::vector<uint64_t> attention_table_;  // simd::TaTokens::table
};

}  // namespace

std::unique_ptr<TensorCodec> MakeTurboAngleCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<TurboAngleCodec>(c, d);
}

}  // namespace kvc
