// Whole streams through the C API: every preset, dtype and head_dim;
// determinism across threads and block sizes; corruption and truncation.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <thread>
#include <string>
#include <vector>

#include <hwy/targets.h>

#include "base/half.h"
#include "test_util.h"

namespace {

struct Cache {
  kvc_cache_desc desc;
  std::vector<float> keys, values;
  kvc_tensor KeysTensor() {
    return kvc_test::Tensor4(keys.data(), KVC_DTYPE_F32, desc.num_layers,
                             desc.num_kv_heads, desc.num_tokens, desc.head_dim);
  }
  kvc_tensor ValuesTensor() {
    return kvc_test::Tensor4(values.data(), KVC_DTYPE_F32, desc.num_layers,
                             desc.num_kv_heads, desc.num_tokens, desc.head_dim);
  }
};

// A cache with KV-like structure: per-channel scales (a few outlier
// channels) times Gaussian noise, values f16-representable.
Cache MakeCache(uint32_t layers, uint32_t heads, uint32_t tokens, uint32_t dim,
                uint64_t seed = 1) {
  Cache c;
  kvc_cache_desc_init(&c.desc);
  c.desc.num_layers = layers;
  c.desc.num_kv_heads = heads;
  c.desc.num_tokens = tokens;
  c.desc.head_dim = dim;
  c.desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  c.desc.rope_base = 10000.0f;
  const size_t n = size_t{layers} * heads * tokens * dim;
  c.keys = kvc_test::GaussianVectors(n / dim, dim, seed, false);
  c.values = kvc_test::GaussianVectors(n / dim, dim, seed + 1, false);
  for (size_t i = 0; i < n; ++i) {
    const float scale = (i % dim) % 17 == 3 ? 8.0f : 1.0f;
    c.keys[i] = kvc::F16ToF32(kvc::F32ToF16(c.keys[i] * scale));
    c.values[i] = kvc::F16ToF32(kvc::F32ToF16(c.values[i]));
  }
  return c;
}

// preset: a preset's name, or a config's text where it holds a space.
std::vector<uint8_t> Encode(Cache& c, const char* preset, uint32_t threads = 1,
                            uint32_t block_tokens = 0, uint8_t dst_fill = 0) {
  kvc_config* config = nullptr;
  if (std::strchr(preset, ' ') != nullptr) {
    REQUIRE(kvc_config_parse(preset, std::strlen(preset), &config, nullptr) == KVC_OK);
  } else {
    REQUIRE(kvc_config_from_preset(preset, &config, nullptr) == KVC_OK);
  }
  kvc_encode_options options;
  kvc_encode_options_init(&options);
  options.threads = threads;
  options.block_tokens = block_tokens;
  std::vector<uint8_t> out(kvc_stream_bound(config, &c.desc, &options), dst_fill);
  REQUIRE(!out.empty());
  const kvc_tensor keys = c.KeysTensor(), values = c.ValuesTensor();
  size_t size = 0;
  kvc_diagnostics diag;
  const kvc_status s = kvc_encode_stream(config, &c.desc, &keys, &values, &options,
                                         out.data(), out.size(), &size, &diag);
  kvc_config_destroy(config);
  INFO(diag.message);
  REQUIRE(s == KVC_OK);
  REQUIRE(size <= out.size());
  out.resize(size);
  return out;
}

kvc_status Decode(const std::vector<uint8_t>& stream, size_t size, const Cache& like,
                  std::vector<float>* keys, std::vector<float>* values,
                  uint32_t threads = 1, kvc_diagnostics* diag = nullptr) {
  const kvc_cache_desc& d = like.desc;
  keys->assign(like.keys.size(), 0.0f);
  values->assign(like.values.size(), 0.0f);
  const kvc_tensor k = kvc_test::Tensor4(keys->data(), KVC_DTYPE_F32, d.num_layers,
                                         d.num_kv_heads, d.num_tokens, d.head_dim);
  const kvc_tensor v = kvc_test::Tensor4(values->data(), KVC_DTYPE_F32, d.num_layers,
                                         d.num_kv_heads, d.num_tokens, d.head_dim);
  kvc_decode_options options;
  kvc_decode_options_init(&options);
  options.threads = threads;
  return kvc_decode_stream(stream.data(), size, &options, &k, &v, diag);
}

double RelativeError(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (x[i] - y[i]) * double(x[i] - y[i]);
    s += x[i] * double(x[i]);
  }
  return e / s;
}

// Upper bounds of relative MSE on this data (theory x margin; outlier
// channels make it a little harder than unit Gaussians).
const std::map<std::string, double> kMaxError = {
    {"raw-f16", 0.0},       {"tq-mse-b1", 0.40},  {"tq-mse-b2", 0.13},
    {"tq-mse-b3", 0.040},   {"tq-mse-b4", 0.011}, {"tq-prod-b2", 0.75},
    {"tq-prod-b3", 0.20},   {"tq-prod-b4", 0.065},  {"tq-2.5", 0.085},
    {"tq-3.5", 0.025},      {"polarquant", 0.040},  {"turboangle", 0.010},
    {"turboangle-e4", 0.010}, {"blockgtq-k3v3", 0.045}, {"blockgtq-k2v2", 0.15},
    {"kv-6.5", 0.0035}, {"kv-5", 0.0085}, {"kv-4.25", 0.011}, {"kv-3.25", 0.040},
    {"kv-2.6", 0.30}, {"kv-4.25z", 0.011}, {"kv-3.25z", 0.040}, {"kv-2.6z", 0.040}, {"default", 0.0085}};

}  // namespace

TEST_CASE("every preset round trips every dtype and head_dim") {
  for (uint32_t i = 0; i < kvc_preset_count(); ++i) {
    const std::string preset = kvc_preset_name(i);
    REQUIRE(kMaxError.count(preset) == 1);
    for (uint32_t dim : {64u, 80u, 96u, 128u, 256u}) {
      for (kvc_dtype dtype : {KVC_DTYPE_F32, KVC_DTYPE_F16, KVC_DTYPE_BF16}) {
        CAPTURE(preset);
        CAPTURE(dim);
        CAPTURE(dtype);
        Cache c = MakeCache(2, 2, 24, dim, dim);
        // Feed the encoder this dtype: convert the cache, keep f32 copies of
        // what it holds.
        std::vector<uint16_t> k16(c.keys.size()), v16(c.values.size());
        for (size_t j = 0; j < c.keys.size(); ++j) {
          k16[j] = dtype == KVC_DTYPE_BF16 ? kvc::F32ToBF16(c.keys[j]) : kvc::F32ToF16(c.keys[j]);
          v16[j] = dtype == KVC_DTYPE_BF16 ? kvc::F32ToBF16(c.values[j]) : kvc::F32ToF16(c.values[j]);
          if (dtype == KVC_DTYPE_BF16) {
            c.keys[j] = kvc::BF16ToF32(k16[j]);
            c.values[j] = kvc::BF16ToF32(v16[j]);
          }
        }
        kvc_config* config = nullptr;
        REQUIRE(kvc_config_from_preset(preset.c_str(), &config, nullptr) == KVC_OK);
        c.desc.dtype = dtype;
        kvc_tensor keys = c.KeysTensor(), values = c.ValuesTensor();
        if (dtype != KVC_DTYPE_F32) {
          keys.data = k16.data();
          values.data = v16.data();
          keys.dtype = values.dtype = dtype;
        }
        std::vector<uint8_t> stream(kvc_stream_bound(config, &c.desc, nullptr));
        size_t size;
        kvc_diagnostics diag;
        const kvc_status s = kvc_encode_stream(config, &c.desc, &keys, &values, nullptr,
                                               stream.data(), stream.size(), &size, &diag);
        kvc_config_destroy(config);
        INFO(diag.message);
        REQUIRE(s == KVC_OK);
        kvc_stream_info info;
        kvc_stream_info_init(&info);
        REQUIRE(kvc_get_stream_info(stream.data(), size, &info, nullptr) == KVC_OK);
        CHECK(info.dtype == static_cast<uint32_t>(dtype));
        CHECK(info.head_dim == dim);
        std::vector<float> dk, dv;
        REQUIRE(Decode(stream, size, c, &dk, &dv) == KVC_OK);
        const double max_error = kMaxError.at(preset);
        const double ek = RelativeError(c.keys, dk), ev = RelativeError(c.values, dv);
        CAPTURE(ek);
        CAPTURE(ev);
        if (max_error == 0 && dtype != KVC_DTYPE_BF16) {
          CHECK(dk == c.keys);
          CHECK(dv == c.values);
        } else {
          CHECK(ek <= std::max(max_error, 1e-5));
          CHECK(ev <= std::max(max_error, 1e-5));
        }
      }
    }
  }
}

TEST_CASE("bytes do not depend on threads; values not on block size") {
  Cache c = MakeCache(3, 2, 50, 128);
  for (const char* preset : {"tq-mse-b3", "tq-prod-b3"}) {
    CAPTURE(preset);
    const auto one = Encode(c, preset, 1, 16);
    CHECK(Encode(c, preset, 4, 16) == one);
    CHECK(Encode(c, preset, 0, 16) == one);
    const auto whole = Encode(c, preset, 2, 0);
    std::vector<float> k1, v1, k2, v2;
    REQUIRE(Decode(one, one.size(), c, &k1, &v1, 3) == KVC_OK);
    REQUIRE(Decode(whole, whole.size(), c, &k2, &v2, 1) == KVC_OK);
    CHECK(k1 == k2);
    CHECK(v1 == v2);
  }
}

// The block writer zeroes each chunk's bytes just before its codec writes
// them (some codecs add bits into zeroed memory): whatever dst held, every
// byte of the stream, padding bits included, is the stream's own.
TEST_CASE("bytes do not depend on what dst held") {
  std::vector<std::string> configs;
  for (uint32_t i = 0; i < kvc_preset_count(); ++i) configs.push_back(kvc_preset_name(i));
  // Every method and option beyond the presets'.
  for (const char* method :
       {"raw-f32", "raw-bf16", "tq-mse-b1", "tq-mse-b5", "tq-mse-b6", "tq-mse-b7", "tq-mse-b8",
        "tq-mse-b3:nc", "tq-prod-b2", "tq-prod-b5", "tq-prod-b8", "tq-mse-b2.5", "tq-mse-b1.5",
        "tq-mse-b6.5", "gtq-b1", "gtq-b4", "gtq-b6", "gtq-b7:pair=interleaved",
        "gtq-b2:min=0,pair=half", "angle-n2", "angle-n7", "angle-n1000", "angle-n256",
        "angle-n16:radius=exact", "angle-n5:radius=log4,nc", "angle-n3:radius=exact,nc",
        "polar-1111", "polar-5432", "polar-8444"}) {
    configs.push_back(std::string("all kv=") + method);
  }
  for (uint32_t dim : {64u, 80u}) {
    Cache c = MakeCache(1, 2, 75, dim);
    for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
      hwy::SetSupportedTargetsForTest(target);
      const std::string target_name = hwy::TargetName(target);
      CAPTURE(target_name);
      for (const std::string& config : configs) {
        CAPTURE(config);
        CAPTURE(dim);
        for (uint32_t block_tokens : {0u, 69u}) {
          CAPTURE(block_tokens);
          CHECK(Encode(c, config.c_str(), 1, block_tokens, 0xFF) ==
                Encode(c, config.c_str(), 1, block_tokens, 0));
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("stream info and per-layer info describe the stream") {
  Cache c = MakeCache(2, 3, 10, 64);
  kvc_config* config = nullptr;
  const char* text = "all k=tq-mse-b4 v=tq-mse-b2\nlayer 1 v=raw-f16\n";
  REQUIRE(kvc_config_parse(text, std::strlen(text), &config, nullptr) == KVC_OK);
  std::vector<uint8_t> stream(kvc_stream_bound(config, &c.desc, nullptr));
  const kvc_tensor keys = c.KeysTensor(), values = c.ValuesTensor();
  size_t size;
  REQUIRE(kvc_encode_stream(config, &c.desc, &keys, &values, nullptr, stream.data(),
                            stream.size(), &size, nullptr) == KVC_OK);
  kvc_config_destroy(config);
  kvc_tensor_config k, v;
  kvc_tensor_config_init(&k);
  kvc_tensor_config_init(&v);
  uint64_t kb = 0, vb = 0;
  REQUIRE(kvc_get_stream_layer(stream.data(), size, 1, &k, &v, &kb, &vb, nullptr) == KVC_OK);
  CHECK(k.method == KVC_METHOD_TQ_MSE);
  CHECK(k.bits == 4);
  CHECK(v.method == KVC_METHOD_RAW);
  CHECK(kb == 8 + 36 + 30 * (2 + 32) + 4);
  CHECK(vb == 8 + 36 + 30 * 128 + 4);
  CHECK(kvc_get_stream_layer(stream.data(), size, 2, &k, &v, &kb, &vb, nullptr) ==
        KVC_ERR_INVALID_ARGUMENT);
}

TEST_CASE("stream API misuse gives clean errors") {
  Cache c = MakeCache(2, 2, 8, 64);
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_from_preset("tq-mse-b4", &config, nullptr) == KVC_OK);
  std::vector<uint8_t> stream(kvc_stream_bound(config, &c.desc, nullptr));
  kvc_tensor keys = c.KeysTensor(), values = c.ValuesTensor();
  size_t size;
  kvc_diagnostics diag;
  CHECK(kvc_encode_stream(config, &c.desc, &keys, &values, nullptr, stream.data(),
                          stream.size() - 1, &size, &diag) == KVC_ERR_DST_TOO_SMALL);
  keys.shape[2] = 9;
  CHECK(kvc_encode_stream(config, &c.desc, &keys, &values, nullptr, stream.data(),
                          stream.size(), &size, &diag) == KVC_ERR_SHAPE_MISMATCH);
  keys.shape[2] = 8;
  kvc_cache_desc bad = c.desc;
  bad.head_dim = 100;
  CHECK(kvc_encode_stream(config, &bad, &keys, &values, nullptr, stream.data(),
                          stream.size(), &size, &diag) == KVC_ERR_INVALID_ARGUMENT);
  CHECK(kvc_stream_bound(config, &bad, nullptr) == 0);
  REQUIRE(kvc_encode_stream(config, &c.desc, &keys, &values, nullptr, stream.data(),
                            stream.size(), &size, &diag) == KVC_OK);
  kvc_config_destroy(config);
  // Decoding into a wrongly shaped output, or into nothing.
  std::vector<float> out(c.keys.size());
  kvc_tensor wrong = kvc_test::Tensor4(out.data(), KVC_DTYPE_F32, 2, 2, 4, 128);
  CHECK(kvc_decode_stream(stream.data(), size, nullptr, &wrong, nullptr, &diag) ==
        KVC_ERR_SHAPE_MISMATCH);
  CHECK(kvc_decode_stream(stream.data(), size, nullptr, nullptr, nullptr, &diag) ==
        KVC_ERR_INVALID_ARGUMENT);
  // Keys alone.
  kvc_tensor only = kvc_test::Tensor4(out.data(), KVC_DTYPE_F32, 2, 2, 8, 64);
  CHECK(kvc_decode_stream(stream.data(), size, nullptr, &only, nullptr, &diag) == KVC_OK);
}

TEST_CASE("every truncation of a stream is a clean error") {
  for (const char* preset : {"tq-prod-b2", "tq-3.5", "turboangle-e4", "blockgtq-k3v3"}) {
    CAPTURE(preset);
    Cache c = MakeCache(2, 1, 3, 16);
    const auto stream = Encode(c, preset, 1, 2);
    std::vector<float> k, v;
    for (size_t n = 0; n < stream.size(); ++n) {
      CAPTURE(n);
      const kvc_status s = Decode(stream, n, c, &k, &v);
      CHECK((s == KVC_ERR_TRUNCATED || s == KVC_ERR_NOT_KVCODEC));
    }
  }
}

TEST_CASE("every single-bit flip of a stream is detected") {
  for (const char* preset : {"raw-f16", "tq-mse-b1", "tq-mse-b4", "tq-prod-b3", "tq-2.5",
                             "polarquant", "turboangle", "blockgtq-k2v2"}) {
    CAPTURE(preset);
    Cache c = MakeCache(2, 1, 3, 16);
    const auto stream = Encode(c, preset, 1, 2);
    std::vector<float> k, v;
    size_t detected = 0;
    for (size_t bit = 0; bit < stream.size() * 8; ++bit) {
      auto flipped = stream;
      flipped[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      detected += Decode(flipped, flipped.size(), c, &k, &v) != KVC_OK;
    }
    CHECK(detected == stream.size() * 8);
  }
}

TEST_CASE("structurally invalid streams are rejected as corrupt") {
  Cache c = MakeCache(1, 1, 4, 16);
  const auto two_blocks = Encode(c, "tq-mse-b2", 1, 2);
  std::vector<float> k, v;
  // Stream: header 40 | layer config 48 | block A | block B | end 16.
  const size_t block_size = (two_blocks.size() - 40 - 48 - 16) / 2;
  const size_t a = 40 + 48, b = a + block_size;
  auto dropped = two_blocks;  // drop block B, fix the End count
  dropped.erase(dropped.begin() + b, dropped.begin() + b + block_size);
  kvc_diagnostics diag;
  CHECK(Decode(dropped, dropped.size(), c, &k, &v, 1, &diag) != KVC_OK);
  auto duplicated = two_blocks;  // block A twice instead of A, B
  std::copy(two_blocks.begin() + a, two_blocks.begin() + b, duplicated.begin() + b);
  CHECK(Decode(duplicated, duplicated.size(), c, &k, &v, 1, &diag) == KVC_ERR_CORRUPT);
  CHECK(std::string(diag.message).find("two blocks") != std::string::npos);
  auto trailing = two_blocks;
  trailing.push_back(0);
  CHECK(Decode(trailing, trailing.size(), c, &k, &v, 1, &diag) != KVC_OK);
}

TEST_CASE("eight threads encoding and decoding at once match one thread") {
  // The API is stateless: concurrent calls on shared read-only inputs must
  // give exactly the single-threaded bytes and values.
  Cache c = MakeCache(2, 2, 40, 128);
  const char* presets[] = {"tq-mse-b4", "tq-prod-b3", "tq-2.5", "polarquant",
                           "turboangle", "blockgtq-k3v3", "raw-f16", "tq-mse-b2"};
  std::vector<std::vector<uint8_t>> expected;
  for (const char* p : presets) expected.push_back(Encode(c, p, 1, 16));
  std::vector<int> failures(8, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        const int i = (t + round) % 8;
        kvc_config* config = nullptr;
        kvc_config_from_preset(presets[i], &config, nullptr);
        kvc_encode_options options;
        kvc_encode_options_init(&options);
        options.threads = 1;
        options.block_tokens = 16;
        std::vector<uint8_t> out(kvc_stream_bound(config, &c.desc, &options));
        const kvc_tensor keys = c.KeysTensor(), values = c.ValuesTensor();
        size_t size = 0;
        if (kvc_encode_stream(config, &c.desc, &keys, &values, &options, out.data(),
                              out.size(), &size, nullptr) != KVC_OK) {
          ++failures[t];
        }
        kvc_config_destroy(config);
        out.resize(size);
        if (out != expected[i]) ++failures[t];
        std::vector<float> k(c.keys.size()), v(c.values.size());
        const kvc_tensor dk = kvc_test::Tensor4(k.data(), KVC_DTYPE_F32, 2, 2, 40, 128);
        const kvc_tensor dv = kvc_test::Tensor4(v.data(), KVC_DTYPE_F32, 2, 2, 40, 128);
        if (kvc_decode_stream(expected[i].data(), expected[i].size(), nullptr, &dk, &dv,
                              nullptr) != KVC_OK) {
          ++failures[t];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < 8; ++t) CHECK(failures[t] == 0);
}
