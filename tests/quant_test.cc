// quant/: rotation, codebooks, bit packing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/prng.h"
#include "config/tensor_config.h"
#include "kvcodec/kvcodec.h"
#include "quant/codebooks.h"
#include "quant/rotation.h"
#include "quant/vector_math.h"
#include "test_util.h"

TEST_CASE("Hadamard rotation is orthogonal and inverts for every head_dim") {
  for (uint32_t d : {8u, 16u, 24u, 64u, 80u, 96u, 112u, 128u, 160u, 192u, 256u, 1000u}) {
    CAPTURE(d);
    const kvc::Rotation rotation(KVC_ROTATION_HADAMARD, d, 42);
    std::vector<float> x = kvc_test::GaussianVectors(1, d, d, false);
    std::vector<float> y = x;
    rotation.Forward(y.data());
    double nx = 0, ny = 0, diff = 0, moved = 0;
    for (uint32_t j = 0; j < d; ++j) {
      nx += x[j] * x[j];
      ny += y[j] * y[j];
      moved += std::abs(x[j] - y[j]);
    }
    CHECK(std::abs(ny / nx - 1) < 1e-5);
    CHECK(moved > 0.1);
    rotation.Inverse(y.data());
    for (uint32_t j = 0; j < d; ++j) diff = std::max(diff, double(std::abs(x[j] - y[j])));
    CHECK(diff < 1e-5);
  }
}

// The roundtrip fuzzer bounds tq-prod's reconstruction error through the QJL
// matrix's largest singular value: sigma_max(S) <= 2.2 sqrt(d) for the
// default seed at every head_dim it draws. sigma_max^2 is the top eigenvalue
// of A = S^T S, and lambda_max^k <= trace(A^k); squaring A six times gives
// an upper bound within d^(1/128) (4% at d = 192) of sigma_max.
TEST_CASE("the default QJL matrices have sigma_max <= 2.2 sqrt(d)") {
  for (size_t d = 16; d <= 192; d += 16) {
    CAPTURE(d);
    const std::vector<float> s = kvc::QjlMatrix(kvc::kDefaultSeed, d);
    std::vector<double> a(d * d, 0.0), next(d * d);
    for (size_t i = 0; i < d; ++i) {
      for (size_t k = 0; k < d; ++k) {
        for (size_t j = 0; j < d; ++j) a[j * d + k] += double{s[i * d + j]} * s[i * d + k];
      }
    }
    // A^(2^m) / c with log(c) tracked, so nothing overflows.
    double log_scale = 0;
    for (int m = 0; m < 6; ++m) {
      double top = 0;
      for (double v : a) top = std::max(top, std::abs(v));
      for (double& v : a) v /= top;
      log_scale = 2 * (log_scale + std::log(top));
      for (size_t i = 0; i < d; ++i) {
        for (size_t j = 0; j < d; ++j) {
          double sum = 0;
          for (size_t k = 0; k < d; ++k) sum += a[i * d + k] * a[k * d + j];
          next[i * d + j] = sum;
        }
      }
      a.swap(next);
    }
    double trace = 0;
    for (size_t i = 0; i < d; ++i) trace += a[i * d + i];
    const double log_lambda_max_bound = (std::log(trace) + log_scale) / 64;
    CHECK(std::exp(log_lambda_max_bound / 2) <= 2.2 * std::sqrt(static_cast<double>(d)));
  }
}

TEST_CASE("codebooks are symmetric, ascending, and thresholds are midpoints") {
  for (int bits = 1; bits <= kvc::kMaxCodebookBits; ++bits) {
    const kvc::Codebook& book = kvc::GaussianCodebook(bits);
    REQUIRE(book.size == (1 << bits));
    for (int i = 0; i < book.size; ++i) {
      CHECK(book.centroids[i] == -book.centroids[book.size - 1 - i]);
      if (i + 1 < book.size) {
        CHECK(book.centroids[i] < book.centroids[i + 1]);
        CHECK(book.thresholds[i] > book.centroids[i]);
        CHECK(book.thresholds[i] < book.centroids[i + 1]);
      }
    }
    // Quantization picks the nearest centroid.
    for (float t = -5.0f; t <= 5.0f; t += 0.013f) {
      const uint32_t idx = kvc::QuantizeToCodebook(book, t);
      for (int i = 0; i < book.size; ++i) {
        CHECK(std::abs(t - book.centroids[idx]) <= std::abs(t - book.centroids[i]));
      }
    }
  }
}

TEST_CASE("bit packing round trips at every width") {
  for (int bits = 1; bits <= 8; ++bits) {
    CAPTURE(bits);
    std::vector<uint8_t> values(203);
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = static_cast<uint8_t>((i * 37 + 11) & ((1 << bits) - 1));
    }
    std::vector<uint8_t> packed((values.size() * bits + 7) / 8, 0xFF);
    kvc::PackBits(values.data(), values.size(), bits, packed.data());
    std::vector<uint8_t> unpacked(values.size());
    kvc::UnpackBits(packed.data(), values.size(), bits, unpacked.data());
    CHECK(unpacked == values);
  }
  // LSB first: values 1, 2 at 3 bits are bits 0-2 and 3-5 of byte 0.
  const uint8_t two[2] = {1, 2};
  uint8_t out[1];
  kvc::PackBits(two, 2, 3, out);
  CHECK(out[0] == (1 | (2 << 3)));
}

TEST_CASE("reductions use 16 lanes folded by halves") {
  // 1 + 2^-24 * 16 ones: a sequential sum would lose them all; the lane
  // order keeps them (each lane adds one 2^-24 to 0 first).
  std::vector<float> a(32, 0x1.0p-24f);
  a[0] = 1.0f;
  std::vector<float> ones(32, 1.0f);
  const float lanes = kvc::DotProduct(a.data(), ones.data(), a.size());
  float sequential = 0;
  for (float v : a) sequential += v;
  CHECK(sequential == 1.0f);
  CHECK(lanes > 1.0f);
}
