// Standalone blocks through the C API: round trips, info, and every way a
// block can be malformed.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "test_util.h"

namespace {

std::vector<uint8_t> SampleBlock(const char* method, size_t heads = 2,
                                 size_t tokens = 5, size_t dim = 64) {
  std::vector<float> x = kvc_test::GaussianVectors(heads * tokens, dim, 3, false);
  kvc_tensor_config config = kvc_test::MethodConfig(method);
  const kvc_tensor input = kvc_test::Tensor3(x.data(), KVC_DTYPE_F32, heads, tokens, dim);
  std::vector<uint8_t> out(kvc_block_bound(&config, heads, tokens, dim));
  size_t size = 0;
  REQUIRE(kvc_encode_block(&config, 3, KVC_KIND_VALUES, 4, 100, &input, out.data(),
                           out.size(), &size, nullptr) == KVC_OK);
  REQUIRE(size == out.size());
  return out;
}

kvc_status Decode(const std::vector<uint8_t>& block, size_t size, size_t heads = 2,
                  size_t tokens = 5, size_t dim = 64) {
  std::vector<float> out(heads * tokens * dim);
  const kvc_tensor output = kvc_test::Tensor3(out.data(), KVC_DTYPE_F32, heads, tokens, dim);
  return kvc_decode_block(block.data(), size, &output, nullptr);
}

}  // namespace

TEST_CASE("a block records its position and config") {
  const auto block = SampleBlock("tq-prod-b3:nc");
  kvc_block_info info;
  kvc_block_info_init(&info);
  kvc_tensor_config config;
  kvc_tensor_config_init(&config);
  REQUIRE(kvc_get_block_info(block.data(), block.size(), &info, &config, nullptr) == KVC_OK);
  CHECK(info.layer == 3);
  CHECK(info.kind == KVC_KIND_VALUES);
  CHECK(info.head_start == 4);
  CHECK(info.head_count == 2);
  CHECK(info.token_start == 100);
  CHECK(info.token_count == 5);
  CHECK(info.head_dim == 64);
  char text[64];
  REQUIRE(kvc_tensor_config_format(&config, text, sizeof(text), nullptr) == KVC_OK);
  CHECK(std::string(text) == "tq-prod-b3:nc");
}

TEST_CASE("raw blocks are lossless in their own dtype, any strides") {
  // A transposed f16 input: [heads, tokens, dim] viewed through strides of a
  // [tokens, heads, dim] buffer.
  const size_t heads = 3, tokens = 7, dim = 32;
  std::vector<uint16_t> buffer(tokens * heads * dim);
  for (size_t i = 0; i < buffer.size(); ++i) {
    buffer[i] = kvc::F32ToF16(std::sin(static_cast<float>(i)) * 10);
  }
  kvc_tensor input = kvc_test::Tensor3(buffer.data(), KVC_DTYPE_F16, heads, tokens, dim);
  input.strides[0] = dim;
  input.strides[1] = heads * dim;
  input.strides[2] = 1;
  kvc_tensor_config config = kvc_test::MethodConfig("raw-f16");
  std::vector<uint8_t> block(kvc_block_bound(&config, heads, tokens, dim));
  size_t size;
  REQUIRE(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, block.data(),
                           block.size(), &size, nullptr) == KVC_OK);
  std::vector<uint16_t> decoded(buffer.size());
  kvc_tensor output = input;
  output.data = decoded.data();
  REQUIRE(kvc_decode_block(block.data(), size, &output, nullptr) == KVC_OK);
  CHECK(decoded == buffer);
}

TEST_CASE("encoding rejects bad arguments with a message") {
  std::vector<float> x(2 * 4 * 64, 1.0f);
  kvc_tensor input = kvc_test::Tensor3(x.data(), KVC_DTYPE_F32, 2, 4, 64);
  kvc_tensor_config config = kvc_test::MethodConfig("tq-mse-b4");
  std::vector<uint8_t> out(kvc_block_bound(&config, 2, 4, 64));
  size_t size;
  kvc_diagnostics diag;
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size() - 1, &size, &diag) == KVC_ERR_DST_TOO_SMALL);
  CHECK(std::strlen(diag.message) > 0);
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, nullptr, out.data(),
                         out.size(), &size, &diag) == KVC_ERR_INVALID_ARGUMENT);
  x[77] = std::nanf("");
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size(), &size, &diag) == KVC_ERR_INVALID_VALUE);
  CHECK(std::string(diag.message).find("head 0 token 1") != std::string::npos);
  x[77] = 1e5f;  // norm beyond f16
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size(), &size, &diag) == KVC_ERR_INVALID_VALUE);
  config.scalar_format = KVC_DTYPE_F32;
  out.resize(kvc_block_bound(&config, 2, 4, 64));
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size(), &size, &diag) == KVC_OK);
  input.shape[2] = 60;  // not a multiple of 8
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size(), &size, &diag) == KVC_ERR_INVALID_ARGUMENT);
  config.bits = 9;
  input.shape[2] = 64;
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size(), &size, &diag) == KVC_ERR_INVALID_ARGUMENT);
  CHECK(kvc_block_bound(&config, 2, 4, 64) == 0);
  config.bits = 4;
  config.struct_size = 8;  // an uninitialised struct
  CHECK(kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input, out.data(),
                         out.size(), &size, &diag) == KVC_ERR_INVALID_ARGUMENT);
}

TEST_CASE("every truncation of a block is a clean error") {
  for (const char* method : {"raw-f16", "tq-mse-b3", "tq-prod-b4"}) {
    CAPTURE(method);
    const auto block = SampleBlock(method);
    CHECK(Decode(block, block.size()) == KVC_OK);
    for (size_t n = 0; n < block.size(); ++n) {
      const kvc_status s = Decode(block, n);
      CAPTURE(n);
      CHECK((s == KVC_ERR_TRUNCATED || s == KVC_ERR_NOT_KVCODEC));
    }
  }
}

TEST_CASE("every single-bit flip of a block is detected") {
  for (const char* method : {"raw-bf16", "tq-mse-b2", "tq-prod-b3"}) {
    CAPTURE(method);
    const auto block = SampleBlock(method, 1, 2, 16);
    size_t detected = 0, harmless = 0;
    for (size_t bit = 0; bit < block.size() * 8; ++bit) {
      auto flipped = block;
      flipped[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      const kvc_status s = Decode(flipped, flipped.size(), 1, 2, 16);
      // Byte 5 is Version_Minor: informational by specification.
      if (bit / 8 == 5) {
        harmless += s == KVC_OK;
      } else {
        detected += s != KVC_OK;
      }
    }
    CHECK(detected == block.size() * 8 - 8);
    CHECK(harmless == 8);
  }
}

TEST_CASE("decoding checks the output shape and the kind of input") {
  const auto block = SampleBlock("tq-mse-b4");
  CHECK(Decode(block, block.size(), 2, 6, 64) == KVC_ERR_SHAPE_MISMATCH);
  const std::vector<uint8_t> junk(100, 0x42);
  CHECK(Decode(junk, junk.size()) == KVC_ERR_NOT_KVCODEC);
  auto future = block;
  future[4] = 2;  // major version 2
  CHECK(Decode(future, future.size()) == KVC_ERR_UNSUPPORTED_VERSION);
}

TEST_CASE("block scores equal inner products with the decoded vectors") {
  const size_t heads = 2, tokens = 40, dim = 128, per_head = 3;
  std::vector<float> x = kvc_test::GaussianVectors(heads * tokens, dim, 9, false);
  const std::vector<float> queries =
      kvc_test::GaussianVectors(heads * per_head, dim, 10, false);
  for (const char* method : {"raw-f32", "tq-mse-b3", "tq-mse-b4:nc", "tq-prod-b3",
                             "tq-mse-b2.5", "polar-4222", "angle-n96", "gtq-b3"}) {
    CAPTURE(method);
    std::vector<float> copy = x;
    const auto block =
        kvc_test::EncodeBlock(kvc_test::MethodConfig(method), copy, heads, tokens, dim);
    const auto decoded = kvc_test::DecodeBlock(block, heads, tokens, dim);
    std::vector<float> scores(heads * per_head * tokens);
    REQUIRE(kvc_block_scores(block.data(), block.size(), queries.data(), per_head,
                             scores.data(), scores.size(), nullptr) == KVC_OK);
    double worst = 0;
    for (size_t h = 0; h < heads; ++h) {
      for (size_t q = 0; q < per_head; ++q) {
        for (size_t t = 0; t < tokens; ++t) {
          double exact = 0, scale = 0;
          for (size_t j = 0; j < dim; ++j) {
            const double a = queries[(h * per_head + q) * dim + j];
            const double b = decoded[(h * tokens + t) * dim + j];
            exact += a * b;
            scale += std::abs(a * b);
          }
          const double got = scores[(h * per_head + q) * tokens + t];
          worst = std::max(worst, std::abs(got - exact) / scale);
        }
      }
    }
    CAPTURE(worst);
    CHECK(worst < 1e-5);
  }
  std::vector<float> small(1);
  CHECK(kvc_block_scores(x.data(), 4, queries.data(), 1, small.data(), 1, nullptr) ==
        KVC_ERR_NOT_KVCODEC);
}
