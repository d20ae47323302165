// TurboAngle and PolarQuant attention in their rotated domain
// (simd/angle_attention_kernels.h): the kernels against double-precision
// references on every Highway target, and the codecs' Scores / Attend
// against decode-then-compute, |score - ref| <= 1e-5 * |q| * |k| and
// |out_i - ref_i| <= 1e-5 * sum_t |w_t| * |v_t| (issue 8), and corrupt
// records rejected as Decode rejects them. Sections lie in buffers of
// exactly their size, so that the sanitizer builds catch a read past them.
#include <doctest/doctest.h>

#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "config/tensor_config.h"
#include "quant/tensor_codec.h"
#include "simd/angle_attention_kernels.h"
#include "test_util.h"

namespace {

constexpr double kTolerance = 1e-5;

std::vector<int64_t> Targets() {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  return std::vector<int64_t>(targets.rbegin(), targets.rend());
}

std::vector<float> Uniform(size_t n, std::mt19937* rng, float low, float high) {
  std::uniform_real_distribution<float> u(low, high);
  std::vector<float> v(n);
  for (float& x : v) x = u(*rng);
  return v;
}

double Norm(const float* x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s);
}

uint64_t Entry(float a, float b) {
  const float pair[2] = {a, b};
  uint64_t e;
  std::memcpy(&e, pair, 8);
  return e;
}

// Checks the kernels' dots and weighted sums against `rows` (count x dim,
// each token's reconstruction computed by the test), every value within
// 1e-5 of the sum of the magnitudes of its terms.
template <class Dots, class Sum>
void CheckAgainst(const std::vector<double>& rows, size_t count, size_t dim, size_t num_queries,
                  std::mt19937* rng, Dots&& dots_of, Sum&& sum_of) {
  CAPTURE(num_queries);
  const std::vector<float> queries = Uniform(num_queries * dim, rng, -1, 1);
  const std::vector<float> weights = Uniform(num_queries * (count + 3), rng, -1, 1);
  const size_t stride = count + 3;  // strides are not the count
  std::vector<float> dots(num_queries * stride, 7.0f);
  dots_of(queries.data(), num_queries, dots.data(), stride);
  std::vector<float> out = Uniform(num_queries * dim, rng, -1, 1);
  const std::vector<float> initial = out;  // weighted sums add to out
  sum_of(weights.data(), stride, num_queries, out.data());
  for (size_t q = 0; q < num_queries; ++q) {
    for (size_t n = 0; n < count; ++n) {
      double ref = 0, magnitude = 0;
      for (size_t i = 0; i < dim; ++i) {
        ref += queries[q * dim + i] * rows[n * dim + i];
        magnitude += std::fabs(queries[q * dim + i] * rows[n * dim + i]);
      }
      REQUIRE(std::fabs(dots[q * stride + n] - ref) <= kTolerance * magnitude + 1e-30);
    }
    for (size_t n = count; n < stride; ++n) REQUIRE(dots[q * stride + n] == 7.0f);
    for (size_t i = 0; i < dim; ++i) {
      double ref = initial[q * dim + i], magnitude = std::fabs(ref);
      for (size_t n = 0; n < count; ++n) {
        ref += weights[q * stride + n] * rows[n * dim + i];
        magnitude += std::fabs(weights[q * stride + n] * rows[n * dim + i]);
      }
      REQUIRE(std::fabs(out[q * dim + i] - ref) <= kTolerance * magnitude + 1e-30);
    }
  }
}

// TurboAngle tokens of every radius kind and bin type, random tables.
void CheckTurboAngleKernels(kvc::simd::TaRadius radius, bool wide_bins, size_t pairs,
                            size_t count, std::mt19937* rng) {
  using kvc::simd::TaRadius;
  CAPTURE(static_cast<int>(radius));
  CAPTURE(wide_bins);
  CAPTURE(pairs);
  CAPTURE(count);
  const uint32_t bins = wide_bins ? 1000 : 37;
  const size_t entries = radius == TaRadius::kLog4 ? 16 * bins : bins;
  const std::vector<float> table_values = Uniform(2 * entries, rng, -1, 1);
  std::vector<uint64_t> table(entries);
  for (size_t e = 0; e < entries; ++e) {
    table[e] = Entry(table_values[2 * e], table_values[2 * e + 1]);
  }
  std::vector<uint8_t> bins8(count * pairs), codes(count * pairs);
  std::vector<uint16_t> bins16(count * pairs);
  const std::vector<float> radii = Uniform(count * pairs, rng, 0, 3);
  std::vector<double> rows(count * 2 * pairs);
  for (size_t k = 0; k < count * pairs; ++k) {
    const uint32_t bin = (*rng)() % bins;
    bins8[k] = static_cast<uint8_t>(bin);
    bins16[k] = static_cast<uint16_t>(bin);
    codes[k] = static_cast<uint8_t>((*rng)() % (radius == TaRadius::kLog4 ? 16 : 256));
    const size_t e = radius == TaRadius::kLog4 ? codes[k] * bins + bin : bin;
    const double w = radius == TaRadius::kLinear8 ? codes[k]
                     : radius == TaRadius::kExact ? radii[k]
                                                  : 1.0;
    rows[2 * k] = w * table_values[2 * e];
    rows[2 * k + 1] = w * table_values[2 * e + 1];
  }
  kvc::simd::TaTokens t{pairs,
                        count,
                        radius,
                        bins,
                        table.data(),
                        wide_bins ? nullptr : bins8.data(),
                        wide_bins ? bins16.data() : nullptr,
                        codes.data(),
                        radii.data()};
  const size_t dim = 2 * pairs;
  for (size_t num_queries : {1, 2, 3, 4, 7}) {
    CheckAgainst(
        rows, count, dim, num_queries, rng,
        [&](const float* q, size_t nq, float* dots, size_t stride) {
          kvc::simd::TaDots(t, q, nq, dots, stride, nullptr);
        },
        [&](const float* w, size_t stride, size_t nq, float* out) {
          kvc::simd::TaWeightedSum(t, w, stride, nq, out);
        });
  }
  // Sums of squares: with no query, and not written with queries.
  std::vector<float> sums(count, -1.0f);
  kvc::simd::TaDots(t, nullptr, 0, nullptr, 0, sums.data());
  for (size_t n = 0; n < count; ++n) {
    double ref = 0;
    for (size_t i = 0; i < dim; ++i) ref += rows[n * dim + i] * rows[n * dim + i];
    REQUIRE(std::fabs(sums[n] - ref) <= kTolerance * ref + 1e-30);
  }
}

// PolarQuant tokens with random fields, radii and tables.
void CheckPolarQuantKernels(const std::vector<int>& bits, size_t dim, size_t count,
                            std::mt19937* rng) {
  CAPTURE(bits[0] * 1000 + bits[1] * 100 + bits[2] * 10 + bits[3]);
  CAPTURE(dim);
  CAPTURE(count);
  const size_t groups = dim / 16;
  const int group_bits = 8 * bits[0] + 4 * bits[1] + 2 * bits[2] + bits[3];
  const size_t circle_size = size_t{1} << bits[0];
  const std::vector<float> circle_values = Uniform(2 * circle_size, rng, -1, 1);
  std::vector<uint64_t> circle(circle_size);
  for (size_t k = 0; k < circle_size; ++k) {
    circle[k] = Entry(circle_values[2 * k], circle_values[2 * k + 1]);
  }
  const std::vector<float> factor_values =
      Uniform(kvc::simd::PqFactorCount(bits.data()), rng, 0, 1);
  std::vector<uint64_t> factors(factor_values.size());
  for (size_t k = 0; k < factors.size(); ++k) {
    factors[k] = Entry(factor_values[k], factor_values[k]);
  }
  std::vector<uint64_t> fields(count * groups);
  const std::vector<float> radii = Uniform(count * groups, rng, 0, 4);
  std::vector<double> rows(count * dim);
  for (size_t k = 0; k < count * groups; ++k) {
    // Bits past the group's set too: the kernels must ignore them.
    fields[k] = (uint64_t{(*rng)()} << 32) | (*rng)();
    // The group's codes, as the codec's bit writer lays them out: level 1's
    // 8, then 4, 2 and 1.
    int at = 0;
    auto next = [&](int b) {
      const uint32_t c = static_cast<uint32_t>(fields[k] >> at) & ((1u << b) - 1);
      at += b;
      return c;
    };
    uint32_t c1[8], c2[4], c3[2];
    for (uint32_t& c : c1) c = next(bits[0]);
    for (uint32_t& c : c2) c = next(bits[1]);
    for (uint32_t& c : c3) c = next(bits[2]);
    const uint32_t c4 = next(bits[3]);
    REQUIRE(at == group_bits);
    for (uint32_t j = 0; j < 8; ++j) {
      const double f =
          factor_values[kvc::simd::PqFactorIndex(bits.data(), c2[j / 2], c3[j / 4], c4, j)];
      rows[k * 16 + 2 * j] = radii[k] * f * circle_values[2 * c1[j]];
      rows[k * 16 + 2 * j + 1] = radii[k] * f * circle_values[2 * c1[j] + 1];
    }
  }
  kvc::simd::PqTokens t{dim,          count,         {bits[0], bits[1], bits[2], bits[3]},
                        circle.data(), factors.data(), fields.data(),
                        radii.data()};
  for (size_t num_queries : {1, 3, 4, 6}) {
    CheckAgainst(
        rows, count, dim, num_queries, rng,
        [&](const float* q, size_t nq, float* dots, size_t stride) {
          kvc::simd::PqDots(t, q, nq, dots, stride);
        },
        [&](const float* w, size_t stride, size_t nq, float* out) {
          kvc::simd::PqWeightedSum(t, w, stride, nq, out);
        });
  }
}

// The sections of `count` encoded vectors, each in a buffer of exactly its
// size.
struct Encoded {
  std::vector<std::unique_ptr<uint8_t[]>> storage;
  std::vector<uint8_t*> sections;
  std::vector<size_t> widths;
};

Encoded Encode(const kvc::TensorCodec& codec, const std::vector<float>& x, size_t count) {
  Encoded e;
  e.widths = codec.SectionWidths(nullptr);
  for (size_t w : e.widths) {
    e.storage.emplace_back(new uint8_t[(count * w + 7) / 8]());
    e.sections.push_back(e.storage.back().get());
  }
  size_t bad = 0;
  REQUIRE(codec.Encode(nullptr, x.data(), count, e.sections.data(), &bad).ok());
  return e;
}

// Scores and Attend of a method against decode-then-compute in double.
void CheckMethod(const std::string& method, uint32_t dim, size_t count, size_t num_queries) {
  CAPTURE(method);
  CAPTURE(dim);
  CAPTURE(count);
  CAPTURE(num_queries);
  const kvc_tensor_config config = kvc_test::MethodConfig(method.c_str());
  REQUIRE(kvc::ValidateTensorConfig(config, "test").ok());
  REQUIRE(kvc::ValidateForHeadDim(config, dim, "test").ok());
  const std::unique_ptr<kvc::TensorCodec> codec = kvc::TensorCodec::Create(config, dim);
  REQUIRE(codec->head_record_size() == 0);
  std::mt19937 rng(static_cast<uint32_t>(dim * 7919 + count * 31 + num_queries));
  // Keys of unequal norms, queries of any sign.
  std::vector<float> x = kvc_test::GaussianVectors(count, dim, dim + count, false);
  for (size_t n = 0; n < count; ++n) {
    for (size_t i = 0; i < dim; ++i) x[n * dim + i] *= 0.25f + 0.01f * static_cast<float>(n % 50);
  }
  Encoded e = Encode(*codec, x, count);
  std::vector<float> decoded(count * dim);
  size_t bad = 0;
  REQUIRE(codec->Decode(nullptr, e.sections.data(), count, decoded.data(), &bad).ok());

  const std::vector<float> queries = Uniform(num_queries * dim, &rng, -2, 2);
  const std::vector<float> weights = Uniform(num_queries * count, &rng, -1, 1);
  std::vector<float> scores(num_queries * count, 7.0f), out(num_queries * dim, 9.0f);
  REQUIRE(codec->Scores(nullptr, e.sections.data(), count, queries.data(), num_queries,
                        scores.data(), &bad).ok());
  REQUIRE(codec->Attend(nullptr, e.sections.data(), count, weights.data(), num_queries,
                        out.data(), &bad).ok());
  for (size_t q = 0; q < num_queries; ++q) {
    double bound = 0;
    for (size_t n = 0; n < count; ++n) {
      const float* v = &decoded[n * dim];
      double ref = 0;
      for (size_t i = 0; i < dim; ++i) ref += double(queries[q * dim + i]) * v[i];
      const double tolerance = kTolerance * Norm(&queries[q * dim], dim) * Norm(v, dim);
      REQUIRE(std::fabs(scores[q * count + n] - ref) <= tolerance + 1e-30);
      bound += std::fabs(weights[q * count + n]) * Norm(v, dim);
    }
    for (size_t i = 0; i < dim; ++i) {
      double ref = 0;
      for (size_t n = 0; n < count; ++n) {
        ref += double(weights[q * count + n]) * decoded[n * dim + i];
      }
      REQUIRE(std::fabs(out[q * dim + i] - ref) <= kTolerance * bound + 1e-30);
    }
  }
}

// One record made invalid: Scores and Attend fail as Decode does, naming
// the same vector.
void CheckCorrupt(const std::string& method, uint32_t dim, size_t count,
                  void (*spoil)(const Encoded&, size_t)) {
  CAPTURE(method);
  CAPTURE(count);
  const kvc_tensor_config config = kvc_test::MethodConfig(method.c_str());
  const std::unique_ptr<kvc::TensorCodec> codec = kvc::TensorCodec::Create(config, dim);
  const std::vector<float> x = kvc_test::GaussianVectors(count, dim, 5, false);
  const Encoded e = Encode(*codec, x, count);
  for (size_t bad_at : {size_t{0}, size_t{22}, count - 1}) {
    CAPTURE(bad_at);
    Encoded copy;
    copy.widths = e.widths;
    for (size_t s = 0; s < e.widths.size(); ++s) {
      const size_t size = (count * e.widths[s] + 7) / 8;
      copy.storage.emplace_back(new uint8_t[size]);
      std::memcpy(copy.storage.back().get(), e.sections[s], size);
      copy.sections.push_back(copy.storage.back().get());
    }
    spoil(copy, bad_at);
    std::vector<float> out(count * dim), queries(3 * dim, 0.5f), weights(3 * count, 0.25f);
    size_t decode_bad = 0, scores_bad = 0, attend_bad = 0;
    const kvc::Status d =
        codec->Decode(nullptr, copy.sections.data(), count, out.data(), &decode_bad);
    const kvc::Status s = codec->Scores(nullptr, copy.sections.data(), count, queries.data(), 3,
                                        out.data(), &scores_bad);
    const kvc::Status a = codec->Attend(nullptr, copy.sections.data(), count, weights.data(), 3,
                                        out.data(), &attend_bad);
    REQUIRE(d.code() == KVC_ERR_CORRUPT);
    CHECK(s.code() == KVC_ERR_CORRUPT);
    CHECK(a.code() == KVC_ERR_CORRUPT);
    CHECK(s.message() == d.message());
    CHECK(a.message() == d.message());
    CHECK(decode_bad == bad_at);
    CHECK(scores_bad == bad_at);
    CHECK(attend_bad == bad_at);
  }
}

// Bits [bit, bit + n) of a section set.
void SetBits(uint8_t* section, size_t bit, size_t n) {
  for (size_t b = bit; b < bit + n; ++b) section[b / 8] |= static_cast<uint8_t>(1u << (b % 8));
}

const char* const kMethods[] = {
    "angle-n128",           "angle-n64:radius=log4", "angle-n256",
    "angle-n2",             "angle-n7",              "angle-n1000",
    "angle-n16:radius=exact", "angle-n128:nc",       "angle-n5:radius=log4:nc",
    "angle-n3:radius=exact:nc", "polar-4222",        "polar-1111",
    "polar-3333",           "polar-5432",            "polar-8444"};

}  // namespace

TEST_CASE("Angle attention kernels match double references on every target") {
  using kvc::simd::TaRadius;
  for (int64_t target : Targets()) {
    const std::string target_name = hwy::TargetName(target);
    CAPTURE(target_name);
    hwy::SetSupportedTargetsForTest(target);
    std::mt19937 rng(static_cast<uint32_t>(target % 1000003));
    for (TaRadius radius : {TaRadius::kLinear8, TaRadius::kLog4, TaRadius::kExact}) {
      for (bool wide : {false, true}) {
        // Pair counts with and without a part vector at the end.
        for (size_t pairs : {4, 12, 36, 64}) {
          for (size_t count : {1, 5, 67}) {
            CheckTurboAngleKernels(radius, wide, pairs, count, &rng);
          }
        }
      }
    }
    const std::vector<std::vector<int>> widths = {
        {4, 2, 2, 2}, {1, 1, 1, 1}, {3, 3, 3, 3}, {5, 4, 3, 2}, {6, 2, 2, 1}};
    for (const std::vector<int>& bits : widths) {
      for (size_t dim : {16, 48, 128}) {
        for (size_t count : {1, 9, 66}) CheckPolarQuantKernels(bits, dim, count, &rng);
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("TurboAngle and PolarQuant scores and attend match decode-then-compute") {
  for (int64_t target : Targets()) {
    const std::string target_name = hwy::TargetName(target);
    CAPTURE(target_name);
    hwy::SetSupportedTargetsForTest(target);
    for (const char* method : kMethods) {
      const bool polar = std::string(method).rfind("polar", 0) == 0;
      for (uint32_t dim : {16u, 48u, 72u, 128u}) {
        if (polar && dim % 16 != 0) continue;
        for (size_t count : {1, 64, 130}) {
          for (size_t num_queries : {1, 4, 6}) CheckMethod(method, dim, count, num_queries);
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("TurboAngle and PolarQuant scores and attend reject what Decode rejects") {
  // Norms and radii: f16, so a set top bit makes them negative.
  auto negative_norm = [](const Encoded& e, size_t n) {
    e.sections[0][n * e.widths[0] / 8 + 1] |= 0x80;
  };
  auto negative_radius = [](const Encoded& e, size_t n) {  // EXACT: f32 radius 1
    e.sections[2][n * e.widths[2] / 8 + 7] |= 0x80;
  };
  // angle-n7 at head_dim 8: 4 digits, 12-bit records (7^4 - 1 = 2400 needs
  // 12 bits): all ones exceeds it.
  auto big_angles = [](const Encoded& e, size_t n) { SetBits(e.sections[1], n * 12, 12); };
  // polar-4222 at head_dim 16: 46 bits of a 6-byte record; the top 2 pad.
  auto padding = [](const Encoded& e, size_t n) { e.sections[1][n * 6 + 5] |= 0x40; };
  for (int64_t target : Targets()) {
    const std::string target_name = hwy::TargetName(target);
    CAPTURE(target_name);
    hwy::SetSupportedTargetsForTest(target);
    for (size_t count : {23, 70}) {
      CheckCorrupt("angle-n128", 128, count, negative_norm);
      CheckCorrupt("angle-n64:radius=log4:nc", 64, count, negative_norm);
      CheckCorrupt("angle-n16:radius=exact", 16, count, negative_radius);
      CheckCorrupt("angle-n7", 8, count, big_angles);
      CheckCorrupt("angle-n7:radius=exact", 8, count, big_angles);
      CheckCorrupt("polar-4222", 16, count, negative_norm);
      CheckCorrupt("polar-4222", 16, count, padding);
      CheckCorrupt("polar-8444", 16, count, negative_norm);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("A vector's first invalid record is the one named, as DecodeEach meets it") {
  // Vector 30: a negative radius and packed angles out of range; the
  // radius is read first. Vector 40: a negative norm.
  const kvc_tensor_config config = kvc_test::MethodConfig("angle-n7:radius=exact");
  const std::unique_ptr<kvc::TensorCodec> codec = kvc::TensorCodec::Create(config, 8);
  const size_t count = 50;
  const std::vector<float> x = kvc_test::GaussianVectors(count, 8, 9, false);
  Encoded e = Encode(*codec, x, count);
  SetBits(e.sections[1], 30 * 12, 12);
  e.sections[2][30 * 16 + 3] |= 0x80;
  e.sections[0][40 * 2 + 1] |= 0x80;
  std::vector<float> out(count * 8), queries(8, 1.0f), weights(count, 1.0f);
  size_t decode_bad = 0, scores_bad = 0;
  const kvc::Status d = codec->Decode(nullptr, e.sections.data(), count, out.data(), &decode_bad);
  const kvc::Status s =
      codec->Scores(nullptr, e.sections.data(), count, queries.data(), 1, out.data(), &scores_bad);
  REQUIRE(d.code() == KVC_ERR_CORRUPT);
  CHECK(decode_bad == 30);
  CHECK(scores_bad == 30);
  CHECK(s.message() == d.message());
}
