// Parameters and data from the input: encode a block, encode it again (the
// bytes must not change), decode, and check the error is that of a codec,
// not of garbage; also an undersized destination must fail cleanly.
#include <cmath>
#include <cstring>
#include <vector>

#include <kvcodec/kvcodec.h>

#include "fuzz_helpers.h"

namespace {

const char* const kMethods[] = {
    "raw-f32",     "raw-f16",      "raw-bf16",        "tq-mse-b1",  "tq-mse-b4:nc",
    "tq-mse-b8",   "tq-prod-b2",   "tq-prod-b4",      "tq-mse-b2.5", "tq-mse-b3.75",
    "polar-4222",  "polar-4333",   "angle-n3",        "angle-n96",  "angle-n128:radius=log4",
    "angle-n64:radius=exact,nc",   "gtq-b2",          "gtq-b3:min=0,pair=interleaved",
    "tq-mse-b3:rot=none,norm=bf16", "tq-mse-b3:nc,center", "tq-prod-b3:center",
    "tq-mse-b2.5:center", "polar-4222:norm=bf16,center", "angle-n64:nc,center",
    "gtq-b3:center,norm=f32"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DataProducer producer(data, size);
  const size_t method_count = sizeof(kMethods) / sizeof(kMethods[0]);
  const char* method = kMethods[producer.Range(0, method_count - 1)];
  const uint32_t dim = 16 * producer.Range(1, 12);
  const uint32_t heads = producer.Range(1, 3);
  const uint32_t tokens = producer.Range(1, 40);
  const kvc_dtype dtype = static_cast<kvc_dtype>(producer.Range(0, 2));
  kvc_tensor_config config;
  kvc_tensor_config_init(&config);
  FUZZ_ASSERT(kvc_tensor_config_parse(method, &config, nullptr) == KVC_OK);

  // Values from the payload bytes (cycled), moderate and finite, stored in
  // the chosen dtype; the f32 copy holds exactly what the encoder sees.
  const size_t n = size_t{heads} * tokens * dim;
  std::vector<float> x(n);
  std::vector<uint16_t> half(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = producer.size() ? producer.data()[i % producer.size()] : 0;
    x[i] = (static_cast<int>(b) - 128) / 16.0f + 0.01f * static_cast<float>(i % 7);
  }
  kvc_tensor input = {};
  input.dtype = dtype;
  input.ndim = 3;
  input.shape[0] = heads;
  input.shape[1] = tokens;
  input.shape[2] = dim;
  input.data = x.data();
  if (dtype != KVC_DTYPE_F32) {
    std::vector<float> rounded(n);
    kvc_tensor f32 = input;
    f32.dtype = KVC_DTYPE_F32;
    // Round through the library itself: a raw block of the target dtype.
    kvc_tensor_config raw;
    kvc_tensor_config_init(&raw);
    FUZZ_ASSERT(kvc_tensor_config_parse(dtype == KVC_DTYPE_F16 ? "raw-f16" : "raw-bf16",
                                        &raw, nullptr) == KVC_OK);
    std::vector<uint8_t> tmp(kvc_block_bound(&raw, heads, tokens, dim));
    size_t tmp_size;
    FUZZ_ASSERT(kvc_encode_block(&raw, 0, KVC_KIND_KEYS, 0, 0, &f32, tmp.data(), tmp.size(),
                                 &tmp_size, nullptr) == KVC_OK);
    kvc_tensor out16 = input;
    out16.data = half.data();
    FUZZ_ASSERT(kvc_decode_block(tmp.data(), tmp_size, &out16, nullptr) == KVC_OK);
    kvc_tensor back = f32;
    back.data = rounded.data();
    FUZZ_ASSERT(kvc_decode_block(tmp.data(), tmp_size, &back, nullptr) == KVC_OK);
    x = rounded;
    input.data = half.data();
  }

  const size_t bound = kvc_block_bound(&config, heads, tokens, dim);
  std::vector<uint8_t> first(bound + 1), second(bound + 1);
  size_t first_size = 0, second_size = 0;
  kvc_diagnostics diag;
  if (bound == 0) {  // a method that does not fit this head_dim
    FUZZ_ASSERT(kvc_encode_block(&config, 1, KVC_KIND_VALUES, 0, 0, &input, first.data(),
                                 first.size(), &first_size, &diag) ==
                KVC_ERR_INVALID_ARGUMENT);
    return 0;
  }
  const kvc_status s = kvc_encode_block(&config, 1, KVC_KIND_VALUES, 0, 0, &input,
                                        first.data(), first.size(), &first_size, &diag);
  if (s != KVC_OK) {
    FUZZ_ASSERT(s == KVC_ERR_INVALID_VALUE);  // e.g. a norm beyond f16
    return 0;
  }
  FUZZ_ASSERT(first_size <= bound);
  FUZZ_ASSERT(kvc_encode_block(&config, 1, KVC_KIND_VALUES, 0, 0, &input, second.data(),
                               second.size(), &second_size, &diag) == KVC_OK);
  FUZZ_ASSERT(first_size == second_size &&
              std::memcmp(first.data(), second.data(), first_size) == 0);
  // One byte short must be refused, not overflowed.
  std::vector<uint8_t> tight(first_size - 1);
  size_t ignored;
  FUZZ_ASSERT(kvc_encode_block(&config, 1, KVC_KIND_VALUES, 0, 0, &input, tight.data(),
                               tight.size(), &ignored, &diag) == KVC_ERR_DST_TOO_SMALL);

  std::vector<float> y(n);
  kvc_tensor output = input;
  output.dtype = KVC_DTYPE_F32;
  output.data = y.data();
  FUZZ_ASSERT(kvc_decode_block(first.data(), first_size, &output, &diag) == KVC_OK);
  double error = 0, energy = 0;
  for (size_t i = 0; i < n; ++i) {
    FUZZ_ASSERT(std::isfinite(y[i]));
    error += (x[i] - y[i]) * double(x[i] - y[i]);
    energy += x[i] * double(x[i]);
  }
  // Lossless methods are exact; every other MSE-optimal one stays below the
  // error of decoding zeros (1.0 x energy) on any data. tq-prod trades
  // reconstruction error for unbiased inner products: to the residual r of
  // its MSE stage (|r|^2 <= energy, as for tq-mse) it adds the QJL term
  // sqrt(pi/2)/d |r| S^T s, s in {-1, +1}^d, of norm at most
  // sqrt(pi/2) |r| sigma_max(S) / sqrt(d), and sigma_max(S) <= 2.2 sqrt(d)
  // for the default seed (tests/quant_test.cc). So its error is at most
  // (1 + 2.2 sqrt(pi/2))^2 x energy; single vectors of small d reach 1.8.
  if (config.method == KVC_METHOD_RAW && dtype != KVC_DTYPE_F32 &&
      config.scalar_format == KVC_DTYPE_F32) {
    FUZZ_ASSERT(error == 0);
  }
  const double qjl_growth = 1 + 2.2 * std::sqrt(std::acos(-1.0) / 2);
  const double error_bound =
      config.method == KVC_METHOD_TQ_PROD ? qjl_growth * qjl_growth : 1.0;
  FUZZ_ASSERT(error <= error_bound * energy + 1e-9);
  return 0;
}
