// TurboQuant (methods.md §1.1-1.2). MSE: a norm and the Lloyd-Max indices of
// the rotated unit vector. Prod: the same at bits-1, then the 1-bit QJL
// sketch sign(S r) of the residual r and its norm, all in the rotated domain.
#include <algorithm>
#include <cmath>

#include <hwy/aligned_allocator.h>

#include "base/prng.h"
#include "base/portable_math.h"
#include "config/tensor_config.h"
#include "quant/mse_quantizer.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
#include "simd/attention_kernels.h"
#include "simd/bitpack.h"
#include "simd/qjl_kernels.h"
#include "simd/reduce_kernels.h"

namespace kvc {
namespace {

class TurboQuantCodec final : public TensorCodec {
 public:
  TurboQuantCodec(const kvc_tensor_config& c, uint32_t head_dim)
      : TensorCodec(head_dim),
        format_(c.scalar_format),
        prod_(c.method == KVC_METHOD_TQ_PROD),
        mse_(head_dim, static_cast<int>(prod_ ? c.bits - 1 : c.bits), c.rotation,
             c.seed, (c.flags & KVC_CONFIG_NORM_CORRECTION) != 0, c.scalar_format),
        qjl_scale_(static_cast<float>(std::sqrt(kPi / 2) / head_dim)) {
    if (prod_) {
      const std::vector<float> s = QjlMatrix(c.seed, head_dim);
      qjl_t_ = hwy::AllocateAligned<float>(s.size());
      for (size_t i = 0; i < head_dim; ++i) {
        for (size_t j = 0; j < head_dim; ++j) qjl_t_[j * head_dim + i] = s[i * head_dim + j];
      }
      // Rows of S and -S interleaved, for the decoder's correction.
      qjl_signed_ = hwy::AllocateAligned<float>(2 * s.size());
      for (size_t i = 0; i < head_dim; ++i) {
        for (size_t j = 0; j < head_dim; ++j) {
          qjl_signed_[2 * i * head_dim + j] = s[i * head_dim + j];
          qjl_signed_[(2 * i + 1) * head_dim + j] = -s[i * head_dim + j];
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
    if (!prod_) return {mse_.norm_bytes(), mse_.index_bytes()};
    return {mse_.norm_bytes(), mse_.index_bytes(), mse_.norm_bytes(), head_dim() / 8u};
  }

  Status Encode(const uint8_t*, const float* x, size_t count, uint8_t* const* sections,
                size_t* bad_vector) const override {
    if (!prod_) return mse_.EncodeRows(x, count, sections[0], sections[1], bad_vector);
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    // Batches: rotated together, the MSE records, their reconstructions,
    // then per vector the residual and its norm, then the QJL signs of the
    // batch. Failures are collected and the reference's first one (vector
    // by vector: the norm, then the residual norm) reported.
    std::vector<float> y(kBatch * d), reconstruction(kBatch * d), residual(kBatch * d);
    std::vector<uint8_t> signs(kBatch * d);
    float norms[kBatch];
    for (size_t n0 = 0; n0 < count; n0 += kBatch) {
      const size_t m = std::min(kBatch, count - n0);
      mse_.rotation().ForwardRows(x + n0 * d, m, y.data(), norms);
      size_t bad_norm = m;
      Status norm_status = OkStatus();
      for (size_t i = 0; i < m; ++i) {
        norms[i] = std::sqrt(norms[i]);
        if (bad_norm == m) {
          norm_status = mse_.StoreNorm(norms[i], sections[0] + (n0 + i) * w[0]);
          if (!norm_status.ok()) bad_norm = i;
        }
      }
      mse_.QuantizeRotatedRows(y.data(), norms, m, sections[1] + n0 * w[1]);
      // The residual against exactly what the decoder will reconstruct.
      mse_.DecodeRotatedRows(sections[0] + n0 * w[0], sections[1] + n0 * w[1], m,
                             reconstruction.data());
      for (size_t i = 0; i < m; ++i) {
        *bad_vector = n0 + i;
        if (i == bad_norm) return norm_status;
        const float* yi = y.data() + i * d;
        const float* ri = reconstruction.data() + i * d;
        float* residual_i = residual.data() + i * d;
        for (size_t j = 0; j < d; ++j) residual_i[j] = yi[j] - ri[j];
        const float gamma = std::sqrt(simd::SumOfSquares(residual_i, d));
        if (!StoreFiniteScalar(gamma, format_, sections[2] + (n0 + i) * w[2])) {
          return Status(KVC_ERR_INVALID_VALUE, "residual norm out of range");
        }
      }
      // signs[i] = (sum_j S[i][j] * residual[j] < 0), j ascending per row.
      simd::QjlSigns(qjl_t_.get(), residual.data(), m, d, signs.data());
      for (size_t i = 0; i < m; ++i) {
        simd::PackBits(signs.data() + i * d, d, 1, sections[3] + (n0 + i) * w[3]);
      }
    }
    return OkStatus();
  }

  Status Decode(const uint8_t*, const uint8_t* const* sections, size_t count, float* out,
                size_t* bad_vector) const override {
    if (!prod_) return mse_.DecodeRows(sections[0], sections[1], count, out, bad_vector);
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    // Batches: every record checked in the reference's order (the MSE
    // record, then the residual norm), then the MSE reconstructions, the
    // QJL corrections and the inverse rotations of the whole batch.
    float factors[kBatch];
    for (size_t n0 = 0; n0 < count; n0 += kBatch) {
      const size_t m = std::min(kBatch, count - n0);
      for (size_t i = 0; i < m; ++i) {
        const size_t n = n0 + i;
        *bad_vector = n;
        KVC_RETURN_IF_ERROR(mse_.CheckRecord(sections[0] + n * w[0], sections[1] + n * w[1]));
        float gamma;
        if (!LoadNorm(sections[2] + n * w[2], format_, &gamma)) {
          return Status(KVC_ERR_CORRUPT, "stored residual norm is negative or not finite");
        }
        factors[i] = qjl_scale_ * gamma;
      }
      float* y = out + n0 * d;
      mse_.DecodeRotatedRows(sections[0] + n0 * w[0], sections[1] + n0 * w[1], m, y);
      simd::QjlCorrectRows(qjl_signed_.get(), sections[3] + n0 * w[3], factors, m, d, y);
      mse_.rotation().InverseRows(y, m);
    }
    return OkStatus();
  }

  // In the rotated domain: each query rotated once (and, for prod, sketched
  // once: sk = S qr), then per token the centroids' dot product times the
  // gain, plus for prod qjl_scale * gamma * <s, sk> (FORMAT.md §9.4).
  Status Scores(const uint8_t*, const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    std::vector<float> rotated = Rotated(queries, num_queries);
    // Vectors before the first invalid residual norm (prod), which the
    // reference checks before the vector's MSE record.
    std::vector<float> gammas;
    const size_t valid = prod_ ? LoadResidualNorms(sections[2], count, &gammas) : count;
    KVC_RETURN_IF_ERROR(mse_.RotatedDots(sections[0], w[0], sections[1], valid, rotated.data(),
                                         num_queries, scores, count, bad_vector));
    if (!prod_) return OkStatus();
    if (valid < count) return ResidualNormError(valid, bad_vector);
    std::vector<float> sketched(num_queries * d);
    for (size_t q = 0; q < num_queries; ++q) {
      for (size_t i = 0; i < d; ++i) {
        sketched[q * d + i] = simd::DotProduct(SRow(i), &rotated[q * d], d);
      }
    }
    std::vector<float> sign_dots(num_queries * count);
    const simd::IndexRows signs{sections[3], w[3], count, d, 1, kSignValues};
    simd::IndexRowDots(signs, sketched.data(), num_queries, sign_dots.data(), count, nullptr);
    for (size_t q = 0; q < num_queries; ++q) {
      for (size_t n = 0; n < count; ++n) {
        scores[q * count + n] += (qjl_scale_ * gammas[n]) * sign_dots[q * count + n];
      }
    }
    return OkStatus();
  }

  // Summed in the rotated domain (prod: the QJL terms in the sketch domain,
  // multiplied by S^T once per query), then rotated back once per query.
  Status Attend(const uint8_t*, const uint8_t* const* sections, size_t count,
                const float* weights, size_t num_queries, float* out,
                size_t* bad_vector) const override {
    const size_t d = head_dim();
    const std::vector<size_t> w = ByteWidths(nullptr);
    std::vector<float> gammas;
    const size_t valid = prod_ ? LoadResidualNorms(sections[2], count, &gammas) : count;
    KVC_RETURN_IF_ERROR(mse_.RotatedSums(sections[0], w[0], sections[1], valid, weights, count,
                                         num_queries, out, bad_vector));
    if (valid < count) return ResidualNormError(valid, bad_vector);
    if (prod_) {
      std::vector<float> scaled(num_queries * count), sketch(num_queries * d);
      for (size_t q = 0; q < num_queries; ++q) {
        for (size_t n = 0; n < count; ++n) {
          scaled[q * count + n] = weights[q * count + n] * (qjl_scale_ * gammas[n]);
        }
      }
      const simd::IndexRows signs{sections[3], w[3], count, d, 1, kSignValues};
      simd::IndexRowSums(signs, scaled.data(), count, num_queries, sketch.data());
      // corr[j] = sum over i of S[i][j] * sketch[i]: row j of S^T.
      for (size_t q = 0; q < num_queries; ++q) {
        for (size_t j = 0; j < d; ++j) {
          out[q * d + j] += simd::DotProduct(qjl_t_.get() + j * d, &sketch[q * d], d);
        }
      }
    }
    for (size_t q = 0; q < num_queries; ++q) mse_.rotation().Inverse(out + q * d);
    return OkStatus();
  }

 private:
  static constexpr size_t kBatch = 16;
  // The QJL signs as a 1-bit table: bit 0 is +1, bit 1 is -1.
  static constexpr float kSignValues[2] = {1.0f, -1.0f};

  std::vector<float> Rotated(const float* queries, size_t num_queries) const {
    const size_t d = head_dim();
    std::vector<float> rotated(queries, queries + num_queries * d);
    for (size_t q = 0; q < num_queries; ++q) mse_.rotation().Forward(&rotated[q * d]);
    return rotated;
  }

  // The residual norms of `count` vectors into *gammas; returns the first
  // invalid one's vector (count if none).
  size_t LoadResidualNorms(const uint8_t* section, size_t count,
                           std::vector<float>* gammas) const {
    gammas->resize(count);
    if (LoadNorms(section, count, format_, gammas->data())) return count;
    const size_t bytes = mse_.norm_bytes();
    for (size_t n = 0; n < count; ++n) {
      if (!LoadNorm(section + n * bytes, format_, &(*gammas)[n])) return n;
    }
    return count;
  }

  static Status ResidualNormError(size_t vector, size_t* bad_vector) {
    *bad_vector = vector;
    return Status(KVC_ERR_CORRUPT, "stored residual norm is negative or not finite");
  }

  // Row i of S (prod only), held in qjl_signed_.
  const float* SRow(size_t i) const { return qjl_signed_.get() + 2 * i * head_dim(); }

  uint32_t format_;
  bool prod_;
  MseQuantizer mse_;
  float qjl_scale_;         // f32(sqrt(pi/2) / d)
  // S twice over (prod only), as kernel operands, aligned so that no vector
  // load straddles cache lines:
  hwy::AlignedFreeUniquePtr<float[]> qjl_signed_;  // rows of S and -S interleaved
  hwy::AlignedFreeUniquePtr<float[]> qjl_t_;  // S transposed, for the lane-parallel sketch
};

}  // namespace

std::unique_ptr<TensorCodec> MakeTurboQuantCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<TurboQuantCodec>(c, d);
}

}  // namespace kvc
