// Helpers shared by the unit tests.
#ifndef KVCODEC_TESTS_TEST_UTIL_H_
#define KVCODEC_TESTS_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/prng.h"
#include "kvcodec/kvcodec.h"

namespace kvc_test {

// count vectors of dim Gaussian entries (deterministic), optionally unit.
inline std::vector<float> GaussianVectors(size_t count, size_t dim,
                                          uint64_t seed, bool unit) {
  kvc::GaussianSource gauss(seed);
  std::vector<float> v(count * dim);
  for (size_t n = 0; n < count; ++n) {
    double sum = 0;
    for (size_t j = 0; j < dim; ++j) {
      const double g = gauss.Next();
      v[n * dim + j] = static_cast<float>(g);
      sum += g * g;
    }
    if (unit) {
      const double inv = 1.0 / std::sqrt(sum);
      for (size_t j = 0; j < dim; ++j) {
        v[n * dim + j] = static_cast<float>(v[n * dim + j] * inv);
      }
    }
  }
  return v;
}

inline kvc_tensor Tensor3(void* data, kvc_dtype dtype, uint64_t heads,
                          uint64_t tokens, uint64_t dim) {
  kvc_tensor t = {};
  t.data = data;
  t.dtype = dtype;
  t.ndim = 3;
  t.shape[0] = heads;
  t.shape[1] = tokens;
  t.shape[2] = dim;
  return t;
}

inline kvc_tensor Tensor4(void* data, kvc_dtype dtype, uint64_t layers,
                          uint64_t heads, uint64_t tokens, uint64_t dim) {
  kvc_tensor t = {};
  t.data = data;
  t.dtype = dtype;
  t.ndim = 4;
  t.shape[0] = layers;
  t.shape[1] = heads;
  t.shape[2] = tokens;
  t.shape[3] = dim;
  return t;
}

inline kvc_tensor_config MethodConfig(const char* method) {
  kvc_tensor_config c;
  kvc_tensor_config_init(&c);
  kvc_tensor_config_parse(method, &c, nullptr);
  return c;
}

// Encodes `x` (heads x tokens x dim f32) as one standalone block.
inline std::vector<uint8_t> EncodeBlock(const kvc_tensor_config& config,
                                        std::vector<float>& x, size_t heads,
                                        size_t tokens, size_t dim) {
  const kvc_tensor input = Tensor3(x.data(), KVC_DTYPE_F32, heads, tokens, dim);
  std::vector<uint8_t> out(kvc_block_bound(&config, static_cast<uint32_t>(heads),
                                           static_cast<uint32_t>(tokens),
                                           static_cast<uint32_t>(dim)));
  size_t size = 0;
  kvc_diagnostics diag;
  const kvc_status s = kvc_encode_block(&config, 0, KVC_KIND_KEYS, 0, 0, &input,
                                        out.data(), out.size(), &size, &diag);
  if (s != KVC_OK) throw std::runtime_error(diag.message);
  out.resize(size);
  return out;
}

inline std::vector<float> DecodeBlock(const std::vector<uint8_t>& block,
                                      size_t heads, size_t tokens, size_t dim) {
  std::vector<float> out(heads * tokens * dim);
  const kvc_tensor output = Tensor3(out.data(), KVC_DTYPE_F32, heads, tokens, dim);
  kvc_diagnostics diag;
  if (kvc_decode_block(block.data(), block.size(), &output, &diag) != KVC_OK) {
    throw std::runtime_error(diag.message);
  }
  return out;
}

}  // namespace kvc_test

#endif  // KVCODEC_TESTS_TEST_UTIL_H_
