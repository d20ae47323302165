// The methods of issue 3 against their theory: PolarQuant's distortion and
// rate, TurboAngle's angle error and packing, the outlier split's rate,
// Block-GTQ's allocation; and malformed parameters.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "config/tensor_config.h"
#include "quant/tensor_codec.h"
#include "test_util.h"

namespace {

double RelativeMse(const kvc_tensor_config& config, const std::vector<float>& x,
                   size_t count, size_t dim, double* bits_per_coordinate = nullptr) {
  std::vector<float> copy = x;
  const auto block = kvc_test::EncodeBlock(config, copy, 1, count, dim);
  const auto y = kvc_test::DecodeBlock(block, 1, count, dim);
  double error = 0, energy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    error += (x[i] - y[i]) * double(x[i] - y[i]);
    energy += x[i] * double(x[i]);
  }
  if (bits_per_coordinate) *bits_per_coordinate = 8.0 * block.size() / (count * dim);
  return error / energy;
}

size_t BitsPerVector(const kvc_tensor_config& c, uint32_t d) {
  size_t bits = 0;
  for (size_t w : kvc::TensorCodec::Create(c, d)->SectionWidths(nullptr)) bits += w;
  return bits;
}

}  // namespace

TEST_CASE("PolarQuant (4,2,2,2) reaches relative MSE 0.032 at 3.875 bits") {
  const std::vector<float> x = kvc_test::GaussianVectors(20000, 128, 21, false);
  const kvc_tensor_config c = kvc_test::MethodConfig("polar-4222");
  double bits = 0;
  const double mse = RelativeMse(c, x, 20000, 128, &bits);
  CAPTURE(mse);
  CHECK(std::abs(mse / 0.0320 - 1) < 0.05);
  // 46 angle bits + one 16-bit radius per 16 coordinates.
  CHECK(BitsPerVector(c, 128) == 8 * 62);
  CHECK(bits < 3.875 + 0.01);
  // Other level splits: more bits, less error.
  const double finer = RelativeMse(kvc_test::MethodConfig("polar-4333"), x, 20000, 128);
  CAPTURE(finer);
  CHECK(finer < 0.7 * mse);
}

TEST_CASE("TurboAngle angle error with exact radii follows 2(1 - sinc(pi/n))") {
  const std::vector<float> x = kvc_test::GaussianVectors(20000, 128, 22, false);
  for (uint32_t n : {16u, 64u, 96u, 128u}) {
    CAPTURE(n);
    kvc_tensor_config c = kvc_test::MethodConfig(
        ("angle-n" + std::to_string(n) + ":radius=exact,norm=f32").c_str());
    const double mse = RelativeMse(c, x, 20000, 128);
    const double theory = 2 * (1 - std::sin(M_PI / n) / (M_PI / n));
    CAPTURE(mse);
    CAPTURE(theory);
    CHECK(std::abs(mse / theory - 1) < 0.03);
  }
}

TEST_CASE("TurboAngle packs n bins in log2(n) bits per pair within 1%") {
  for (uint32_t d : {64u, 128u, 256u}) {
    for (uint32_t n = 2; n <= 4096; n += (n < 300 ? 1 : 97)) {
      kvc_tensor_config c = kvc_test::MethodConfig("angle-n2");
      c.angle_bins = n;
      const size_t angle_bits = kvc::TensorCodec::Create(c, d)->SectionWidths(nullptr)[1];
      const double ideal = d / 2 * std::log2(static_cast<double>(n));
      CAPTURE(d);
      CAPTURE(n);
      REQUIRE(angle_bits >= ideal - 1e-9);
      REQUIRE(angle_bits <= ideal * 1.01 + 1e-9);
    }
  }
  // Round trip at awkward bin counts (not powers of two, the largest).
  const std::vector<float> x = kvc_test::GaussianVectors(64, 128, 23, false);
  for (uint32_t n : {2u, 3u, 7u, 96u, 100u, 4095u, 4096u}) {
    kvc_tensor_config c = kvc_test::MethodConfig("angle-n2:radius=exact,norm=f32");
    c.angle_bins = n;
    const double mse = RelativeMse(c, x, 64, 128);
    const double theory = 2 * (1 - std::sin(M_PI / n) / (M_PI / n));
    CAPTURE(n);
    CHECK(mse < 1.5 * theory + 1e-6);
  }
}

TEST_CASE("TurboAngle default radii cost little over exact ones") {
  const std::vector<float> x = kvc_test::GaussianVectors(5000, 128, 24, false);
  const double exact = RelativeMse(kvc_test::MethodConfig("angle-n128:radius=exact"), x, 5000, 128);
  const double linear = RelativeMse(kvc_test::MethodConfig("angle-n128"), x, 5000, 128);
  const double log4 = RelativeMse(kvc_test::MethodConfig("angle-n64:radius=log4"), x, 5000, 128);
  CAPTURE(exact);
  CAPTURE(linear);
  CAPTURE(log4);
  CHECK(linear < exact + 1e-4);      // 8-bit radii: ~2e-5 more
  CHECK(log4 < 0.0045);              // n=64 angles 8e-4 + 4-bit radii ~2.8e-3
}

TEST_CASE("outlier split gives fractional rates and beats the lower integer rate") {
  // Vectors with a few energetic channels, as keys have.
  std::vector<float> x = kvc_test::GaussianVectors(4000, 128, 25, false);
  for (size_t i = 0; i < x.size(); ++i) x[i] *= (i % 128) % 9 == 0 ? 5.0f : 1.0f;
  const kvc_tensor_config half = kvc_test::MethodConfig("tq-mse-b2.5");
  CHECK(half.method == KVC_METHOD_TQ_OUTLIER);
  CHECK(BitsPerVector(half, 128) == 64 * 3 + 64 * 2 + 2 * 16);
  CHECK(BitsPerVector(kvc_test::MethodConfig("tq-mse-b3.5"), 128) == 64 * 4 + 64 * 3 + 2 * 16);
  const double b2 = RelativeMse(kvc_test::MethodConfig("tq-mse-b2"), x, 4000, 128);
  const double b25 = RelativeMse(half, x, 4000, 128);
  const double b3 = RelativeMse(kvc_test::MethodConfig("tq-mse-b3"), x, 4000, 128);
  CAPTURE(b2);
  CAPTURE(b25);
  CAPTURE(b3);
  CHECK(b25 < b2);
  CHECK(b25 > b3);
}

TEST_CASE("Block-GTQ allocates by RoPE-block energy within the tq-mse budget") {
  // Keys whose RoPE blocks (i, i + 64) have energies falling by 4x every 8
  // blocks, as low-frequency RoPE dims dominate real keys.
  const size_t d = 128, count = 2000;
  std::vector<float> x = kvc_test::GaussianVectors(count, d, 26, false);
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = 0; j < d; ++j) x[n * d + j] *= std::ldexp(1.0f, -static_cast<int>((j % 64) / 8));
  }
  for (const char* pairing : {"half", "interleaved"}) {
    CAPTURE(pairing);
    std::vector<float> data = x;
    if (std::string(pairing) == "interleaved") {  // same blocks, other layout
      for (size_t n = 0; n < count; ++n) {
        for (size_t i = 0; i < 64; ++i) {
          data[n * d + 2 * i] = x[n * d + i];
          data[n * d + 2 * i + 1] = x[n * d + i + 64];
        }
      }
    }
    const kvc_tensor_config gtq =
        kvc_test::MethodConfig((std::string("gtq-b3:pair=") + pairing).c_str());
    double gtq_bits = 0, tq_bits = 0;
    const double gtq_mse = RelativeMse(gtq, data, count, d, &gtq_bits);
    const double tq_mse = RelativeMse(kvc_test::MethodConfig("tq-mse-b3"), data, count, d, &tq_bits);
    CAPTURE(gtq_mse);
    CAPTURE(tq_mse);
    CAPTURE(gtq_bits);
    CAPTURE(tq_bits);
    CHECK(gtq_bits <= tq_bits);
    CHECK(gtq_mse < 0.8 * tq_mse);
  }
}

TEST_CASE("Block-GTQ rejects allocations no encoder writes") {
  const kvc_tensor_config c = kvc_test::MethodConfig("gtq-b2");
  auto codec = kvc::TensorCodec::Create(c, 64);
  std::vector<uint8_t> record(codec->head_record_size(), 0x22);  // all blocks at 2 bits
  CHECK(codec->CheckHeadRecord(record.data()).ok());
  record[0] = 0x92;  // a block at 9 bits
  CHECK(codec->CheckHeadRecord(record.data()).code() == KVC_ERR_CORRUPT);
  std::fill(record.begin(), record.end(), 0x33);  // 3 bits everywhere: over budget
  CHECK(codec->CheckHeadRecord(record.data()).code() == KVC_ERR_CORRUPT);
  std::fill(record.begin(), record.end(), 0x20);  // 0-bit blocks below min_bits 1
  CHECK(codec->CheckHeadRecord(record.data()).code() == KVC_ERR_CORRUPT);
}

TEST_CASE("malformed method parameters are rejected") {
  kvc_tensor_config c;
  for (const char* bad : {"angle-n1", "angle-n4097", "angle-n0", "angle-n64:radius=log8",
                          "polar-4522", "polar-0222", "polar-422", "polar-4222:nc",
                          "gtq-b0", "gtq-b9", "gtq-b3:min=2", "gtq-b3:pair=diagonal",
                          "tq-mse-b8.5", "tq-mse-b2.3", "tq-mse-b2:out=16", "tq-prod-b3.5"}) {
    CAPTURE(bad);
    CHECK(kvc::ParseMethodString(bad, &c).code() == KVC_ERR_INVALID_ARGUMENT);
  }
  // Head-dim dependent: a split into multiples of 8 channels, 16-groups.
  REQUIRE(kvc::ParseMethodString("tq-mse-b2.25", &c).ok());
  CHECK(kvc::ValidateForHeadDim(c, 48, "x").code() == KVC_ERR_INVALID_ARGUMENT);  // 12 channels
  CHECK(kvc::ValidateForHeadDim(c, 128, "x").ok());
  REQUIRE(kvc::ParseMethodString("polar-4222", &c).ok());
  CHECK(kvc::ValidateForHeadDim(c, 72, "x").code() == KVC_ERR_INVALID_ARGUMENT);
  // The C API refuses such a block.
  std::vector<float> x(72 * 4, 1.0f);
  const kvc_tensor input = kvc_test::Tensor3(x.data(), KVC_DTYPE_F32, 1, 4, 72);
  uint8_t out[4096];
  size_t size;
  CHECK(kvc_encode_block(&c, 0, KVC_KIND_KEYS, 0, 0, &input, out, sizeof(out), &size,
                         nullptr) == KVC_ERR_INVALID_ARGUMENT);
}

TEST_CASE("new method strings round trip") {
  for (const char* text : {"tq-mse-b2.5", "tq-mse-b3.75", "tq-mse-b2:out=3", "polar-4222",
                           "polar-4333", "angle-n96", "angle-n64:radius=log4",
                           "angle-n4096:radius=exact,nc", "gtq-b3", "gtq-b2:min=0,pair=half",
                           "gtq-b3:pair=interleaved"}) {
    CAPTURE(text);
    kvc_tensor_config c;
    REQUIRE(kvc::ParseMethodString(text, &c).ok());
    CHECK(kvc::FormatMethodString(c) == text);
  }
}

TEST_CASE("Block-GTQ encodes blocks too small for an uneven allocation") {
  // One token cannot pay for its head record, and at head_dim 8 no uneven
  // allocation fits: both fall back to every block at the average bits.
  for (uint32_t d : {8u, 16u, 128u}) {
    for (size_t tokens : {1u, 2u, 3u}) {
      for (const char* method : {"gtq-b1", "gtq-b2", "gtq-b3", "gtq-b4"}) {
        CAPTURE(d);
        CAPTURE(tokens);
        const std::string name = method;
        CAPTURE(name);
        std::vector<float> x = kvc_test::GaussianVectors(tokens, d, d + tokens, false);
        for (size_t j = 0; j < x.size(); ++j) x[j] *= (j % d) < 2 ? 30.0f : 1.0f;
        const std::vector<float> original = x;
        const auto block = kvc_test::EncodeBlock(kvc_test::MethodConfig(method), x, 1, tokens, d);
        const auto y = kvc_test::DecodeBlock(block, 1, tokens, d);
        double error = 0, energy = 0;
        for (size_t j = 0; j < y.size(); ++j) {
          error += (original[j] - y[j]) * double(original[j] - y[j]);
          energy += original[j] * double(original[j]);
        }
        // No crash, and a codec's error, not garbage (1-2 bits without a
        // rotation on two spikes in 8 dims is as poor as it gets).
        CHECK(error < 1.5 * energy);
      }
    }
  }
}

TEST_CASE("a RAW config keeps working whatever its seed") {
  kvc_tensor_config c;
  kvc_tensor_config_init(&c);  // default seed
  c.method = KVC_METHOD_RAW;
  c.bits = 16;
  c.rotation = KVC_ROTATION_NONE;
  std::vector<float> x(2 * 16, 0.5f);
  const auto block = kvc_test::EncodeBlock(c, x, 1, 2, 16);
  CHECK(kvc_test::DecodeBlock(block, 1, 2, 16) == std::vector<float>(2 * 16, 0.5f));
}
