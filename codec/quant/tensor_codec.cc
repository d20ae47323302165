#include "quant/tensor_codec.h"

#include <cmath>
#include <numeric>

#include "base/endian.h"
#include "base/half.h"
#include "base/prng.h"
#include "config/tensor_config.h"
#include "quant/codebooks.h"
#include "quant/rotation.h"
#include "quant/vector_math.h"

namespace kvc {
namespace {

// Scalars (norms, raw values) are stored little-endian in the config's
// scalar format. Rounding to f16/bf16 is round-to-nearest-even.
void StoreScalar(float v, uint32_t format, uint8_t* p) {
  switch (format) {
    case KVC_DTYPE_F16: StoreLE16(F32ToF16(v), p); return;
    case KVC_DTYPE_BF16: StoreLE16(F32ToBF16(v), p); return;
    default: StoreLE32(FloatBits(v), p); return;
  }
}

float LoadScalar(const uint8_t* p, uint32_t format) {
  switch (format) {
    case KVC_DTYPE_F16: return F16ToF32(LoadLE16(p));
    case KVC_DTYPE_BF16: return BF16ToF32(LoadLE16(p));
    default: return BitsToFloat(LoadLE32(p));
  }
}

// Stores v and reports whether the stored value is still finite (f16 tops
// out at 65504).
bool StoreFiniteScalar(float v, uint32_t format, uint8_t* p) {
  StoreScalar(v, format, p);
  return std::isfinite(LoadScalar(p, format));
}

// A stored norm is valid if it is finite and not negative (-0 included: no
// encoder writes it).
bool LoadNorm(const uint8_t* p, uint32_t format, float* norm) {
  *norm = LoadScalar(p, format);
  return std::isfinite(*norm) && !std::signbit(*norm);
}

class RawCodec final : public TensorCodec {
 public:
  RawCodec(uint32_t head_dim, uint32_t format)
      : TensorCodec(head_dim, {head_dim * ScalarBytes(format)}),
        format_(format),
        bytes_(ScalarBytes(format)) {}

  Status Encode(const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    for (size_t n = 0; n < count; ++n) {
      uint8_t* record = sections[0] + n * d * bytes_;
      for (size_t j = 0; j < d; ++j) {
        if (!std::isfinite(x[n * d + j]) ||
            !StoreFiniteScalar(x[n * d + j], format_, record + j * bytes_)) {
          *bad_vector = n;
          return Status(KVC_ERR_INVALID_VALUE,
                        StrFormat("value %g at dimension %zu cannot be stored",
                                  static_cast<double>(x[n * d + j]), j));
        }
      }
    }
    return OkStatus();
  }

  Status Decode(const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
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

  Status Scores(const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    std::vector<float> v(d);
    for (size_t n = 0; n < count; ++n) {
      const uint8_t* record = sections[0] + n * d * bytes_;
      KVC_RETURN_IF_ERROR(Decode(&record, 1, v.data(), bad_vector));
      for (size_t q = 0; q < num_queries; ++q) {
        scores[q * count + n] = DotProduct(queries + q * d, v.data(), d);
      }
    }
    return OkStatus();
  }

 private:
  uint32_t format_;
  size_t bytes_;
};

// TurboQuant (methods.md §1.1-1.2). MSE: a norm and the Lloyd-Max indices of
// the rotated unit vector. Prod: the same at bits-1, then the 1-bit QJL sketch
// sign(S r) of the residual r and its norm, all in the rotated domain.
class TurboQuantCodec final : public TensorCodec {
 public:
  TurboQuantCodec(const kvc_tensor_config& c, uint32_t head_dim)
      : TensorCodec(head_dim, SectionWidths(c, head_dim)),
        format_(c.scalar_format),
        norm_correction_((c.flags & KVC_CONFIG_NORM_CORRECTION) != 0),
        prod_(c.method == KVC_METHOD_TQ_PROD),
        index_bits_(static_cast<int>(prod_ ? c.bits - 1 : c.bits)),
        book_(GaussianCodebook(index_bits_)),
        rotation_(c.rotation, head_dim, c.seed),
        sqrt_d_(static_cast<float>(std::sqrt(static_cast<double>(head_dim)))),
        qjl_scale_(static_cast<float>(std::sqrt(M_PI / 2) / head_dim)) {
    if (prod_) {
      GaussianSource gauss(DeriveSeed(c.seed, kTagQjl));
      qjl_.resize(static_cast<size_t>(head_dim) * head_dim);
      for (float& s : qjl_) s = static_cast<float>(gauss.Next());
    }
  }

  Status Encode(const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    std::vector<float> y(d), residual(d);
    std::vector<uint8_t> idx(d), signs(d);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      std::copy(x + n * d, x + (n + 1) * d, y.begin());
      if (!AllFinite(y.data(), d)) {
        return Status(KVC_ERR_INVALID_VALUE, "vector has a non-finite value");
      }
      rotation_.Forward(y.data());
      const float sum_squares = SumOfSquares(y.data(), d);
      if (!std::isfinite(sum_squares)) {
        return Status(KVC_ERR_INVALID_VALUE, "vector norm overflows f32");
      }
      const float norm = std::sqrt(sum_squares);
      uint8_t* norm_record = sections[0] + n * widths()[0];
      if (!StoreFiniteScalar(norm, format_, norm_record)) {
        return Status(KVC_ERR_INVALID_VALUE,
                      StrFormat("vector norm %g exceeds the norm format's "
                                "range (use norm=f32 or norm=bf16)",
                                static_cast<double>(norm)));
      }
      const float scale = norm > 0 ? sqrt_d_ / norm : 0.0f;
      for (size_t j = 0; j < d; ++j) {
        idx[j] = static_cast<uint8_t>(QuantizeToCodebook(book_, y[j] * scale));
      }
      PackBits(idx.data(), d, index_bits_, sections[1] + n * widths()[1]);
      if (!prod_) continue;

      // The residual against exactly what the decoder will reconstruct.
      const float gain = Gain(idx.data(), LoadScalar(norm_record, format_));
      for (size_t j = 0; j < d; ++j) {
        residual[j] = y[j] - book_.centroids[idx[j]] * gain;
      }
      const float gamma = std::sqrt(SumOfSquares(residual.data(), d));
      if (!StoreFiniteScalar(gamma, format_, sections[2] + n * widths()[2])) {
        return Status(KVC_ERR_INVALID_VALUE, "residual norm out of range");
      }
      for (size_t i = 0; i < d; ++i) {
        const float* row = qjl_.data() + i * d;
        float z = 0.0f;
        for (size_t j = 0; j < d; ++j) z = z + row[j] * residual[j];
        signs[i] = z < 0.0f ? 1 : 0;
      }
      PackBits(signs.data(), d, 1, sections[3] + n * widths()[3]);
    }
    return OkStatus();
  }

  Status Decode(const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    std::vector<uint8_t> idx(d);
    std::vector<float> correction(d);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      float* y = out + n * d;
      float norm;
      if (!LoadNorm(sections[0] + n * widths()[0], format_, &norm)) {
        return Status(KVC_ERR_CORRUPT, "stored norm is negative or not finite");
      }
      UnpackBits(sections[1] + n * widths()[1], d, index_bits_, idx.data());
      const float gain = Gain(idx.data(), norm);
      for (size_t j = 0; j < d; ++j) y[j] = book_.centroids[idx[j]] * gain;
      if (prod_) {
        float gamma;
        if (!LoadNorm(sections[2] + n * widths()[2], format_, &gamma)) {
          return Status(KVC_ERR_CORRUPT,
                        "stored residual norm is negative or not finite");
        }
        QjlTranspose(sections[3] + n * widths()[3], correction.data());
        const float factor = qjl_scale_ * gamma;
        for (size_t j = 0; j < d; ++j) y[j] = y[j] + correction[j] * factor;
      }
      rotation_.Inverse(y);
    }
    return OkStatus();
  }

  Status Scores(const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    // Rotate each query once (and sketch it once for QJL), then every token
    // costs a dot product with its centroids in the rotated domain.
    std::vector<float> rotated(num_queries * d), sketched(num_queries * d);
    for (size_t q = 0; q < num_queries; ++q) {
      float* r = rotated.data() + q * d;
      std::copy(queries + q * d, queries + (q + 1) * d, r);
      rotation_.Forward(r);
      if (prod_) {
        for (size_t i = 0; i < d; ++i) {
          sketched[q * d + i] = DotProduct(qjl_.data() + i * d, r, d);
        }
      }
    }
    std::vector<uint8_t> idx(d), signs(d);
    std::vector<float> centroids(d), sign_values(d);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      float norm, gamma = 0.0f;
      if (!LoadNorm(sections[0] + n * widths()[0], format_, &norm) ||
          (prod_ && !LoadNorm(sections[2] + n * widths()[2], format_, &gamma))) {
        return Status(KVC_ERR_CORRUPT, "stored norm is negative or not finite");
      }
      UnpackBits(sections[1] + n * widths()[1], d, index_bits_, idx.data());
      for (size_t j = 0; j < d; ++j) centroids[j] = book_.centroids[idx[j]];
      const float gain = Gain(idx.data(), norm);
      if (prod_) {
        UnpackBits(sections[3] + n * widths()[3], d, 1, signs.data());
        for (size_t i = 0; i < d; ++i) sign_values[i] = signs[i] ? -1.0f : 1.0f;
      }
      for (size_t q = 0; q < num_queries; ++q) {
        float score = gain * DotProduct(centroids.data(), &rotated[q * d], d);
        if (prod_) {
          score += qjl_scale_ * gamma *
                   DotProduct(sign_values.data(), &sketched[q * d], d);
        }
        scores[q * count + n] = score;
      }
    }
    return OkStatus();
  }

 private:
  const std::vector<size_t>& widths() const { return section_widths(); }

  // Scale from codebook units to the vector's: norm / sqrt(d), or with norm
  // correction norm / |centroids| so the decoded vector has the stored norm.
  float Gain(const uint8_t* idx, float norm) const {
    if (!norm_correction_) return norm / sqrt_d_;
    const size_t d = head_dim();
    float acc[kReductionLanes] = {};
    for (size_t j = 0; j < d; ++j) {
      const float c = book_.centroids[idx[j]];
      acc[j % kReductionLanes] = acc[j % kReductionLanes] + c * c;
    }
    const float length = std::sqrt(FoldLanes(acc));
    return length > 0 ? norm / length : 0.0f;
  }

  // correction = S^T s for the stored signs s (+1/-1), summed over rows in
  // ascending order.
  void QjlTranspose(const uint8_t* packed, float* correction) const {
    const size_t d = head_dim();
    std::vector<uint8_t> signs(d);
    UnpackBits(packed, d, 1, signs.data());
    std::fill(correction, correction + d, 0.0f);
    for (size_t i = 0; i < d; ++i) {
      const float* row = qjl_.data() + i * d;
      if (signs[i]) {
        for (size_t j = 0; j < d; ++j) correction[j] = correction[j] - row[j];
      } else {
        for (size_t j = 0; j < d; ++j) correction[j] = correction[j] + row[j];
      }
    }
  }

  uint32_t format_;
  bool norm_correction_;
  bool prod_;
  int index_bits_;
  const Codebook& book_;
  Rotation rotation_;
  float sqrt_d_;
  float qjl_scale_;          // f32(sqrt(pi/2) / d)
  std::vector<float> qjl_;   // S, d x d row-major (prod only)
};

}  // namespace

Status ValidateHeadDim(uint32_t head_dim) {
  if (head_dim < kMinHeadDim || head_dim > kMaxHeadDim || head_dim % 8 != 0) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("head_dim %u unsupported (a multiple of 8 in "
                            "%u..%u)", head_dim, kMinHeadDim, kMaxHeadDim));
  }
  return OkStatus();
}

std::vector<size_t> TensorCodec::SectionWidths(const kvc_tensor_config& c,
                                               uint32_t d) {
  const size_t scalar = ScalarBytes(c.scalar_format);
  switch (c.method) {
    case KVC_METHOD_RAW: return {d * scalar};
    case KVC_METHOD_TQ_MSE: return {scalar, d * c.bits / 8};
    default: return {scalar, d * (c.bits - 1) / 8, scalar, d / 8};
  }
}

size_t TensorCodec::bytes_per_vector() const {
  return std::accumulate(widths_.begin(), widths_.end(), size_t{0});
}

std::unique_ptr<TensorCodec> TensorCodec::Create(const kvc_tensor_config& c,
                                                 uint32_t head_dim) {
  if (c.method == KVC_METHOD_RAW) {
    return std::make_unique<RawCodec>(head_dim, c.scalar_format);
  }
  return std::make_unique<TurboQuantCodec>(c, head_dim);
}

}  // namespace kvc
