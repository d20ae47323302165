// Centered configs (format 1.2, FORMAT.md §5.7): each head of a block stores
// its channel mean and the method codes the vectors minus it.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/endian.h"
#include "base/half.h"
#include "format/section.h"
#include "test_util.h"

namespace {

using kvc_test::DecodeBlock;
using kvc_test::EncodeBlock;
using kvc_test::GaussianVectors;
using kvc_test::MethodConfig;

// Every method that takes the flag, with its head-record size in bytes at
// head_dim 64 (the mean follows the method's record).
struct Method {
  const char* text;
  size_t record_bytes;
};
const Method kMethods[] = {
    {"tq-mse-b3", 0},  {"tq-prod-b3", 0}, {"tq-mse-b2.5", 8}, {"polar-4222", 0},
    {"angle-n64", 0},  {"gtq-b3", 16},
};

std::string Centered(const char* method) { return std::string(method) + ":center"; }

// Squared error of decoding x through a block of `config`.
double RoundTripError(const kvc_tensor_config& config, std::vector<float> x, size_t heads,
                      size_t tokens, size_t dim) {
  const std::vector<float> y = DecodeBlock(EncodeBlock(config, x, heads, tokens, dim), heads,
                                           tokens, dim);
  double error = 0;
  for (size_t i = 0; i < x.size(); ++i) error += (x[i] - y[i]) * double{x[i] - y[i]};
  return error;
}

// Gaussian vectors plus a per-head channel offset four times their spread
// (keys under RoPE look like this: a few channels far from zero).
std::vector<float> OffsetVectors(size_t heads, size_t tokens, size_t dim, uint64_t seed) {
  std::vector<float> x = GaussianVectors(heads * tokens, dim, seed, false);
  const std::vector<float> offset = GaussianVectors(heads, dim, seed + 1, false);
  for (size_t h = 0; h < heads; ++h) {
    for (size_t t = 0; t < tokens; ++t) {
      for (size_t i = 0; i < dim; ++i) x[(h * tokens + t) * dim + i] += 4 * offset[h * dim + i];
    }
  }
  return x;
}

// Offset of head `head`'s f16 channel mean in a standalone block of
// `method` centered: frame, section header, block header, Tensor_Config (16
// or 20 bytes), the records before it, then the method's part of its own.
size_t MeanOffset(const Method& method, size_t dim, size_t head) {
  const size_t config_bytes = MethodConfig(method.text).method >= KVC_METHOD_TQ_OUTLIER ? 20 : 16;
  const size_t record_bytes = method.record_bytes + 2 * dim;
  return 8 + kvc::kSectionHeaderSize + 20 + config_bytes + head * record_bytes +
         method.record_bytes;
}

void Reseal(std::vector<uint8_t>* block) {
  uint8_t* section = block->data() + 8;
  kvc::SealSection(section[0], kvc::LoadLE32(section + 4), section);
}

}  // namespace

TEST_CASE("centered method strings parse, print canonically and are refused for raw") {
  kvc_tensor_config c;
  kvc_tensor_config_init(&c);
  REQUIRE(kvc_tensor_config_parse("tq-mse-b4:center,nc", &c, nullptr) == KVC_OK);
  CHECK(c.flags == (KVC_CONFIG_CENTERED | KVC_CONFIG_NORM_CORRECTION));
  char text[64];
  REQUIRE(kvc_tensor_config_format(&c, text, sizeof(text), nullptr) == KVC_OK);
  CHECK(std::string(text) == "tq-mse-b4:nc,center");
  REQUIRE(kvc_tensor_config_parse("polar-4222:center", &c, nullptr) == KVC_OK);
  CHECK(c.flags == KVC_CONFIG_CENTERED);
  kvc_diagnostics diag;
  CHECK(kvc_tensor_config_parse("raw-f16:center", &c, &diag) == KVC_ERR_INVALID_ARGUMENT);
  CHECK(kvc_tensor_config_parse("polar-4222:nc,center", &c, &diag) ==
        KVC_ERR_INVALID_ARGUMENT);
  CHECK(kvc_tensor_config_parse("tq-mse-b3:center=1", &c, &diag) == KVC_ERR_INVALID_ARGUMENT);
  kvc_tensor_config raw = MethodConfig("raw-f16");
  raw.flags = KVC_CONFIG_CENTERED;
  std::vector<float> x(64, 1.0f);
  CHECK_THROWS(EncodeBlock(raw, x, 1, 1, 64));
}

TEST_CASE("centering takes a per-head offset off every method's error") {
  const size_t heads = 2, tokens = 40, dim = 64;
  const std::vector<float> offset_x = OffsetVectors(heads, tokens, dim, 7);
  const std::vector<float> plain_x = GaussianVectors(heads * tokens, dim, 7, false);
  for (const Method& m : kMethods) {
    for (const char* norm : {"", ",norm=f32", ",norm=bf16"}) {
      const std::string centered = Centered(m.text) + norm;
      CAPTURE(centered);
      const kvc_tensor_config with = MethodConfig(centered.c_str());
      REQUIRE((with.flags & KVC_CONFIG_CENTERED) != 0);
      kvc_tensor_config without = with;
      without.flags &= ~KVC_CONFIG_CENTERED;
      const double centered_error = RoundTripError(with, offset_x, heads, tokens, dim);
      // The offset costs the uncentered method its precision; centered, the
      // error is about that of zero-mean data (the mean is rounded to the
      // scalar format, so not exactly).
      CHECK(RoundTripError(without, offset_x, heads, tokens, dim) > 4 * centered_error);
      CHECK(centered_error < 1.5 * RoundTripError(without, plain_x, heads, tokens, dim));
    }
  }
}

TEST_CASE("a centered block stores its mean after the method's record and says format 1.2") {
  const size_t heads = 2, tokens = 9, dim = 64;
  std::vector<float> x = OffsetVectors(heads, tokens, dim, 11);
  for (const Method& m : kMethods) {
    const std::string method = m.text;
    CAPTURE(method);
    const kvc_tensor_config plain = MethodConfig(m.text);
    const kvc_tensor_config centered = MethodConfig(Centered(m.text).c_str());
    const std::vector<uint8_t> a = EncodeBlock(plain, x, heads, tokens, dim);
    const std::vector<uint8_t> b = EncodeBlock(centered, x, heads, tokens, dim);
    CHECK(a[5] == 0);  // Version_Minor of the frame
    CHECK(b[5] == 2);
    // Records grow by one f16 mean per head (Block-GTQ's bit allocation,
    // hence its sections, follow the centered vectors).
    if (plain.method != KVC_METHOD_BLOCKGTQ) CHECK(b.size() - a.size() == heads * 2 * dim);
    for (size_t h = 0; h < heads; ++h) {
      for (size_t i = 0; i < dim; ++i) {
        double sum = 0;
        for (size_t t = 0; t < tokens; ++t) sum += x[(h * tokens + t) * dim + i];
        const uint16_t stored = kvc::LoadLE16(&b[MeanOffset(m, dim, h) + 2 * i]);
        CHECK(stored == kvc::F32ToF16(static_cast<float>(sum / tokens)));
      }
    }
  }
}

TEST_CASE("a centered block whose mean is not finite is corrupt") {
  const size_t heads = 2, tokens = 8, dim = 64;
  std::vector<float> x = OffsetVectors(heads, tokens, dim, 3);
  for (const Method& m : kMethods) {
    const std::string method = m.text;
    CAPTURE(method);
    const kvc_tensor_config config = MethodConfig(Centered(m.text).c_str());
    std::vector<uint8_t> block = EncodeBlock(config, x, heads, tokens, dim);
    // Head 1, channel 5: +infinity in f16.
    kvc::StoreLE16(0x7C00, &block[MeanOffset(m, dim, 1) + 2 * 5]);
    Reseal(&block);
    std::vector<float> out(heads * tokens * dim);
    const kvc_tensor output = kvc_test::Tensor3(out.data(), KVC_DTYPE_F32, heads, tokens, dim);
    kvc_diagnostics diag;
    CHECK(kvc_decode_block(block.data(), block.size(), &output, &diag) == KVC_ERR_CORRUPT);
    CHECK(std::string(diag.message).find("head 1: channel mean is not finite") !=
          std::string::npos);
  }
}

TEST_CASE("encoding fails cleanly where the mean or the centered values do not fit") {
  const size_t dim = 16;
  kvc_diagnostics diag;
  // A channel mean beyond f16's range (the norms' format).
  std::vector<float> big(2 * dim, 1.0f);
  big[3] = big[dim + 3] = 70000.0f;
  kvc_tensor_config f16 = MethodConfig("tq-mse-b3:norm=f16,center");
  kvc_tensor input = kvc_test::Tensor3(big.data(), KVC_DTYPE_F32, 1, 2, dim);
  std::vector<uint8_t> out(kvc_block_bound(&f16, 1, 2, dim));
  size_t size = 0;
  CHECK(kvc_encode_block(&f16, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(), out.size(), &size,
                         &diag) == KVC_ERR_INVALID_VALUE);
  CHECK(std::string(diag.message).find("channel 3 has mean") != std::string::npos);
  // A value minus the mean that overflows f32.
  std::vector<float> wide(3 * dim, 0.0f);
  wide[0] = 3.0e38f;
  wide[dim] = wide[2 * dim] = -3.0e38f;
  kvc_tensor_config f32 = MethodConfig("tq-mse-b3:norm=f32,center");
  input = kvc_test::Tensor3(wide.data(), KVC_DTYPE_F32, 1, 3, dim);
  out.resize(kvc_block_bound(&f32, 1, 3, dim));
  CHECK(kvc_encode_block(&f32, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(), out.size(), &size,
                         &diag) == KVC_ERR_INVALID_VALUE);
  CHECK(std::string(diag.message).find("token 0: vector minus its head's channel mean "
                                       "overflows") != std::string::npos);
}

TEST_CASE("Config_Flags bits after CENTERED are a later version's") {
  std::vector<float> x = GaussianVectors(4, 16, 5, false);
  std::vector<uint8_t> block = EncodeBlock(MethodConfig("tq-mse-b2:center"), x, 1, 4, 16);
  block[8 + kvc::kSectionHeaderSize + 20 + 3] |= 0x04;  // Config_Flags
  Reseal(&block);
  std::vector<float> out(4 * 16);
  const kvc_tensor output = kvc_test::Tensor3(out.data(), KVC_DTYPE_F32, 1, 4, 16);
  CHECK(kvc_decode_block(block.data(), block.size(), &output, nullptr) ==
        KVC_ERR_UNSUPPORTED_FEATURE);
}

TEST_CASE("scores and weighted sums of centered blocks match decode-then-compute") {
  const size_t heads = 2, tokens = 37, dim = 64, group = 3;
  std::vector<float> x = OffsetVectors(heads, tokens, dim, 21);
  const std::vector<float> queries = GaussianVectors(heads * group, dim, 22, false);
  const std::vector<float> weights = GaussianVectors(heads * group, tokens, 23, false);
  for (const Method& m : kMethods) {
    const std::string method = Centered(m.text);
    CAPTURE(method);
    const std::vector<uint8_t> block = EncodeBlock(MethodConfig(method.c_str()), x, heads,
                                                   tokens, dim);
    const std::vector<float> y = DecodeBlock(block, heads, tokens, dim);
    std::vector<float> scores(heads * group * tokens), sums(heads * group * dim);
    REQUIRE(kvc_block_scores(block.data(), block.size(), queries.data(), group, scores.data(),
                             scores.size(), nullptr) == KVC_OK);
    REQUIRE(kvc_block_attend(block.data(), block.size(), weights.data(), group, sums.data(),
                             sums.size(), nullptr) == KVC_OK);
    for (size_t h = 0; h < heads; ++h) {
      for (size_t q = 0; q < group; ++q) {
        const float* query = &queries[(h * group + q) * dim];
        const float* w = &weights[(h * group + q) * tokens];
        for (size_t t = 0; t < tokens; ++t) {
          const float* k = &y[(h * tokens + t) * dim];
          double dot = 0, scale = 0;
          for (size_t i = 0; i < dim; ++i) {
            dot += double{query[i]} * k[i];
            scale += std::fabs(double{query[i]} * k[i]);
          }
          CHECK(std::fabs(scores[(h * group + q) * tokens + t] - dot) <= 1e-5 * scale);
        }
        for (size_t i = 0; i < dim; ++i) {
          double sum = 0, scale = 0;
          for (size_t t = 0; t < tokens; ++t) {
            sum += double{w[t]} * y[(h * tokens + t) * dim + i];
            scale += std::fabs(double{w[t]} * y[(h * tokens + t) * dim + i]);
          }
          CHECK(std::fabs(sums[(h * group + q) * dim + i] - sum) <= 1e-5 * scale);
        }
      }
    }
  }
}
