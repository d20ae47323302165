// config/: method strings, config text, presets.
#include <doctest/doctest.h>

#include <string>

#include "config/config.h"
#include "config/tensor_config.h"

using kvc::CacheConfig;

TEST_CASE("method strings parse and format canonically") {
  for (const char* text : {"tq-mse-b1", "tq-mse-b4", "tq-mse-b8", "tq-prod-b2",
                           "tq-prod-b3:nc", "tq-mse-b3:norm=f32,nc,rot=none,seed=0x2a",
                           "raw-f16", "raw-bf16", "raw-f32"}) {
    CAPTURE(text);
    kvc_tensor_config c;
    REQUIRE(kvc::ParseMethodString(text, &c).ok());
    CHECK(kvc::FormatMethodString(c) == text);
  }
  kvc_tensor_config c;
  CHECK(kvc::ParseMethodString("tq-mse-b3:seed=42", &c).ok());
  CHECK(c.seed == 42);
}

TEST_CASE("malformed method strings are rejected with a reason") {
  for (const char* text : {"", "tq", "tq-mse", "tq-mse-b0", "tq-mse-b9", "tq-prod-b1",
                           "tq-mse-4", "raw-f64", "raw-f16:nc", "tq-mse-b4:bogus",
                           "tq-mse-b4:seed=-1", "tq-mse-b4:seed=0x", "tq-mse-b4:norm=f64",
                           "polarquant"}) {
    CAPTURE(text);
    kvc_tensor_config c;
    const kvc::Status s = kvc::ParseMethodString(text, &c);
    CHECK(s.code() == KVC_ERR_INVALID_ARGUMENT);
    CHECK(!s.message().empty());
  }
}

TEST_CASE("config rules resolve per layer, later rules overriding") {
  CacheConfig config;
  REQUIRE(CacheConfig::Parse("kvcodec-config 1\n"
                             "all kv=tq-mse-b3   # everything\n"
                             "first 1 k=tq-mse-b4\n"
                             "last 2 v=raw-f16\n"
                             "layers 3-4 k=tq-prod-b3\n"
                             "layer 5 kv=tq-mse-b2\n",
                             &config).ok());
  auto method = [&](uint32_t layer, kvc_kind kind) {
    kvc_tensor_config c;
    REQUIRE(config.Resolve(layer, 8, kind, &c).ok());
    return kvc::FormatMethodString(c);
  };
  CHECK(method(0, KVC_KIND_KEYS) == "tq-mse-b4");
  CHECK(method(0, KVC_KIND_VALUES) == "tq-mse-b3");
  CHECK(method(3, KVC_KIND_KEYS) == "tq-prod-b3");
  CHECK(method(5, KVC_KIND_VALUES) == "tq-mse-b2");
  CHECK(method(6, KVC_KIND_VALUES) == "raw-f16");
  CHECK(method(7, KVC_KIND_KEYS) == "tq-mse-b3");
  kvc_tensor_config c;
  CHECK(config.Resolve(8, 8, KVC_KIND_KEYS, &c).code() == KVC_ERR_INVALID_ARGUMENT);

  // Format gives text that parses to the same rules.
  CacheConfig again;
  REQUIRE(CacheConfig::Parse(config.Format(), &again).ok());
  CHECK(again.Format() == config.Format());
}

TEST_CASE("malformed config text names the line") {
  for (const char* text : {"", "# only a comment\n", "all\n", "everything kv=tq-mse-b4\n",
                           "first k=tq-mse-b4\n", "layers 4-2 k=tq-mse-b4\n",
                           "all q=tq-mse-b4\n", "all kv=tq-mse-b9\n",
                           "all kv=tq-mse-b4\nkvcodec-config 1\n", "kvcodec-config 2\n",
                           "all kv=tq-mse-b4\nzstd\n", "all kv=tq-mse-b4\nzstd 0\n",
                           "all kv=tq-mse-b4\nzstd 20\n", "all kv=tq-mse-b4\nzstd 3 4\n",
                           "all kv=tq-mse-b4\nzstd 3\nzstd 3\n", "zstd 3\n"}) {
    CAPTURE(text);
    CacheConfig config;
    const kvc::Status s = CacheConfig::Parse(text, &config);
    CHECK(s.code() == KVC_ERR_INVALID_ARGUMENT);
  }
  CacheConfig config;
  const kvc::Status s = CacheConfig::Parse("all kv=tq-mse-b4\nlayer x k=raw-f16\n", &config);
  CHECK(s.message().find("line 2") != std::string::npos);
  // A config that leaves a layer without a method fails when resolved.
  REQUIRE(CacheConfig::Parse("first 2 kv=tq-mse-b4\n", &config).ok());
  kvc_tensor_config c;
  CHECK(config.Resolve(3, 6, KVC_KIND_KEYS, &c).code() == KVC_ERR_INVALID_ARGUMENT);
}

TEST_CASE("a config names its zstd level on a line of its own") {
  CacheConfig config;
  REQUIRE(CacheConfig::Parse("kvcodec-config 1\nzstd 7  # at rest\nall kv=tq-mse-b3\n",
                             &config).ok());
  CHECK(config.zstd_level() == 7);
  CHECK(config.Format() == "kvcodec-config 1\nall kv=tq-mse-b3\nzstd 7\n");
  CacheConfig again;
  REQUIRE(CacheConfig::Parse(config.Format(), &again).ok());
  CHECK(again.zstd_level() == 7);
  REQUIRE(CacheConfig::Parse("all kv=tq-mse-b3\n", &config).ok());
  CHECK(config.zstd_level() == 0);
  CHECK(config.Format().find("zstd") == std::string::npos);
  REQUIRE(CacheConfig::FromPreset("kv-3.25z", &config).ok());
  CHECK(config.zstd_level() == 3);
}

TEST_CASE("every preset parses and resolves") {
  for (const kvc::Preset& p : kvc::Presets()) {
    CAPTURE(p.name);
    CacheConfig config;
    REQUIRE(CacheConfig::FromPreset(p.name, &config).ok());
    kvc_tensor_config c;
    CHECK(config.Resolve(0, 32, KVC_KIND_KEYS, &c).ok());
    CHECK(config.Resolve(31, 32, KVC_KIND_VALUES, &c).ok());
  }
  CacheConfig config;
  CHECK(CacheConfig::FromPreset("no-such-preset", &config).code() ==
        KVC_ERR_INVALID_ARGUMENT);
}
