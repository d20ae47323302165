// The distortion of TurboQuant must match its theory (methods.md §1.3-1.4,
// §7.4): these are the oracles that catch a wrong rotation, codebook or
// scaling anywhere in the pipeline.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

constexpr size_t kDim = 128;
constexpr size_t kCount = 100000;

// Exact-law Lloyd-Max distortion at d = 128 (methods.md §1.3).
constexpr double kMseAt128[5] = {0, 0.3609, 0.1160, 0.03397, 0.00931};

double RelativeMse(const char* method, const std::vector<float>& x) {
  std::vector<float> copy = x;
  const auto block = kvc_test::EncodeBlock(kvc_test::MethodConfig(method), copy,
                                           1, kCount, kDim);
  const auto y = kvc_test::DecodeBlock(block, 1, kCount, kDim);
  double error = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = static_cast<double>(x[i]) - y[i];
    error += e * e;
  }
  return error / kCount;  // unit vectors
}

struct InnerProductStats {
  double mean_error, stderr_mean, variance;
};

// Inner-product errors of a method's estimator (kvc_block_scores) against the
// exact ones, for unit keys drawn around a unit query (<q, x> ~ 0.57, so a
// shrinking estimator shows its bias). TurboQuant-prod is unbiased in
// expectation over its random QJL matrix, so every block of kKeysPerBlock
// keys gets its own seed and its own query.
InnerProductStats InnerProducts(const char* method) {
  constexpr size_t kBlocks = 1000, kKeysPerBlock = 100;
  double sum = 0, sum_squares = 0;
  for (size_t b = 0; b < kBlocks; ++b) {
    const std::vector<float> query = kvc_test::GaussianVectors(1, kDim, 2 * b + 1, true);
    std::vector<float> keys = kvc_test::GaussianVectors(kKeysPerBlock, kDim, 2 * b + 2, true);
    for (size_t n = 0; n < kKeysPerBlock; ++n) {
      double norm = 0;
      for (size_t j = 0; j < kDim; ++j) {
        float& k = keys[n * kDim + j];
        k = k + 0.7f * query[j];
        norm += static_cast<double>(k) * k;
      }
      for (size_t j = 0; j < kDim; ++j) {
        keys[n * kDim + j] = static_cast<float>(keys[n * kDim + j] / std::sqrt(norm));
      }
    }
    kvc_tensor_config config = kvc_test::MethodConfig(method);
    config.seed = 1000 + b;
    std::vector<float> copy = keys;
    const auto block = kvc_test::EncodeBlock(config, copy, 1, kKeysPerBlock, kDim);
    std::vector<float> scores(kKeysPerBlock);
    REQUIRE(kvc_block_scores(block.data(), block.size(), query.data(), 1,
                             scores.data(), scores.size(), nullptr) == KVC_OK);
    for (size_t n = 0; n < kKeysPerBlock; ++n) {
      double exact = 0;
      for (size_t j = 0; j < kDim; ++j) {
        exact += static_cast<double>(query[j]) * keys[n * kDim + j];
      }
      const double e = scores[n] - exact;
      sum += e;
      sum_squares += e * e;
    }
  }
  const double n = static_cast<double>(kBlocks * kKeysPerBlock);
  const double mean = sum / n;
  const double variance = sum_squares / n - mean * mean;
  return {mean, std::sqrt(variance / n), variance};
}

}  // namespace

TEST_CASE("tq-mse relative MSE matches Lloyd-Max theory within 2% at d=128") {
  const std::vector<float> x = kvc_test::GaussianVectors(kCount, kDim, 1, true);
  for (int bits = 1; bits <= 4; ++bits) {
    const std::string method = "tq-mse-b" + std::to_string(bits);
    const double mse = RelativeMse(method.c_str(), x);
    CAPTURE(method);
    CAPTURE(mse);
    CHECK(std::abs(mse / kMseAt128[bits] - 1) < 0.02);
  }
}

TEST_CASE("tq-prod inner products are unbiased with the QJL variance bound") {
  for (int bits = 2; bits <= 4; ++bits) {
    const std::string method = "tq-prod-b" + std::to_string(bits);
    const InnerProductStats s = InnerProducts(method.c_str());
    // methods.md §1.2: D_prod <= (pi / 2d) * D_mse(b - 1) for unit vectors.
    const double bound = 1.15 * (M_PI / 2) * kMseAt128[bits - 1] / kDim;
    CAPTURE(method);
    CAPTURE(s.mean_error);
    CAPTURE(s.stderr_mean);
    CAPTURE(s.variance);
    CAPTURE(bound);
    CHECK(std::abs(s.mean_error) < 3 * s.stderr_mean);
    CHECK(s.variance <= bound);
  }
  // The same check fails for the biased MSE quantizer, so it can tell them
  // apart.
  const InnerProductStats mse = InnerProducts("tq-mse-b2");
  CAPTURE(mse.mean_error);
  CHECK(std::abs(mse.mean_error) > 10 * mse.stderr_mean);
}

TEST_CASE("non-power-of-two head dims keep TurboQuant's distortion") {
  // The three overlapping Hadamard passes must act like a random rotation:
  // Gaussian-theory MSE on random unit vectors, and no worse than that on
  // the hardest inputs for a rotation, single spikes (outlier channels).
  for (size_t d : {80u, 96u, 112u, 192u}) {
    CAPTURE(d);
    std::vector<float> x = kvc_test::GaussianVectors(20000, d, d, true);
    const kvc_tensor_config config = kvc_test::MethodConfig("tq-mse-b3");
    auto mse = [&](std::vector<float>& v, size_t count) {
      std::vector<float> copy = v;
      const auto y = kvc_test::DecodeBlock(kvc_test::EncodeBlock(config, copy, 1, count, d),
                                           1, count, d);
      double e = 0;
      for (size_t i = 0; i < v.size(); ++i) e += (v[i] - y[i]) * double(v[i] - y[i]);
      return e / count;
    };
    const double random = mse(x, 20000);
    CAPTURE(random);
    CHECK(std::abs(random / 0.0340 - 1) < 0.03);
    std::vector<float> spikes(d * d, 0.0f);
    for (size_t i = 0; i < d; ++i) spikes[i * d + i] = (i % 2) ? -3.0f : 3.0f;
    const double spike = mse(spikes, d) / 9.0;
    CAPTURE(spike);
    CHECK(spike < 1.3 * 0.0340);
  }
}
