// Caches on disk and on the wire (format 1.1) through the C API: the
// layer-by-layer writer, random access, appended segments and what an
// interrupted append leaves, the zstd stage, the streaming reader, the model
// identity, and damage.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/endian.h"
#include "base/prng.h"
#include "test_util.h"

namespace {

constexpr uint32_t kLayers = 3, kHeads = 2, kDim = 64;

// One layer's K or V, [heads, tokens, dim], f32 values that f16 holds.
std::vector<float> LayerData(uint32_t tokens, uint64_t seed) {
  std::vector<float> v = kvc_test::GaussianVectors(size_t{kHeads} * tokens, kDim, seed, false);
  for (float& x : v) x = static_cast<float>(static_cast<int>(x * 256)) / 256;
  return v;
}

struct Memory {
  std::vector<uint8_t> bytes;
  bool fail = false;
  int syncs = 0;
};

int WriteToMemory(void* opaque, const void* data, size_t size) {
  auto* m = static_cast<Memory*>(opaque);
  if (m->fail) return 1;
  const auto* p = static_cast<const uint8_t*>(data);
  m->bytes.insert(m->bytes.end(), p, p + size);
  return 0;
}
int SyncMemory(void* opaque) {
  ++static_cast<Memory*>(opaque)->syncs;
  return 0;
}
int ReadAtMemory(void* opaque, uint64_t offset, void* data, size_t size) {
  const auto* m = static_cast<const std::vector<uint8_t>*>(opaque);
  if (offset + size > m->size()) return 1;
  std::memcpy(data, m->data() + offset, size);
  return 0;
}

// A read callback that hands out at most `chunk` bytes per call.
struct Pipe {
  const std::vector<uint8_t>* bytes;
  size_t position = 0, chunk = 1;
};
int64_t ReadPipe(void* opaque, void* data, size_t size) {
  auto* p = static_cast<Pipe*>(opaque);
  const size_t n = std::min({size, p->chunk, p->bytes->size() - p->position});
  std::memcpy(data, p->bytes->data() + p->position, n);
  p->position += n;
  return static_cast<int64_t>(n);
}

kvc_cache_desc Desc(uint32_t tokens) {
  kvc_cache_desc d;
  kvc_cache_desc_init(&d);
  d.num_layers = kLayers;
  d.num_kv_heads = kHeads;
  d.head_dim = kDim;
  d.num_tokens = tokens;
  d.rope_layout = KVC_ROPE_SPLIT_HALF;
  d.rope_base = 10000.0f;
  return d;
}

// Data of layer l, kind k, tokens [start, start + count) of a cache whose
// token t is a function of (seed, l, k, t).
std::vector<float> Slice(uint32_t layer, int kind, uint32_t start, uint32_t count) {
  std::vector<float> out(size_t{kHeads} * count * kDim);
  for (uint32_t t = 0; t < count; ++t) {
    const std::vector<float> token = LayerData(1, 1000 * layer + 100 * kind + start + t + 1);
    for (uint32_t h = 0; h < kHeads; ++h) {
      std::copy(token.begin() + h * kDim, token.begin() + (h + 1) * kDim,
                out.begin() + (size_t{h} * count + t) * kDim);
    }
  }
  return out;
}

struct Written {
  std::vector<uint8_t> bytes;
  int syncs = 0;
};

Written WriteCache(const char* preset, uint32_t tokens, kvc_writer_options options) {
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_from_preset(preset, &config, nullptr) == KVC_OK);
  Memory m;
  kvc_writer* w = nullptr;
  const kvc_cache_desc d = Desc(tokens);
  kvc_diagnostics diag;
  REQUIRE(kvc_writer_create(config, &d, &options, WriteToMemory, &m, &w, &diag) == KVC_OK);
  for (uint32_t l = 0; l < kLayers; ++l) {
    std::vector<float> k = Slice(l, 0, 0, tokens), v = Slice(l, 1, 0, tokens);
    const kvc_tensor kt = kvc_test::Tensor3(k.data(), KVC_DTYPE_F32, kHeads, tokens, kDim);
    const kvc_tensor vt = kvc_test::Tensor3(v.data(), KVC_DTYPE_F32, kHeads, tokens, kDim);
    INFO(diag.message);
    REQUIRE(kvc_writer_add_layer(w, &kt, &vt, &diag) == KVC_OK);
  }
  uint64_t total = 0;
  REQUIRE(kvc_writer_finish(w, &total, &diag) == KVC_OK);
  kvc_writer_destroy(w);
  kvc_config_destroy(config);
  CHECK(total == m.bytes.size());
  return Written{m.bytes, m.syncs};
}

kvc_writer_options Options(uint32_t block_tokens, int zstd) {
  kvc_writer_options o;
  kvc_writer_options_init(&o);
  o.block_tokens = block_tokens;
  o.zstd_level = zstd;
  o.threads = 2;
  return o;
}

// Appends `tokens` more to the cache in `bytes`.
void Append(std::vector<uint8_t>* bytes, uint32_t old_tokens, uint32_t tokens, int zstd) {
  kvc_cache* cache = nullptr;
  kvc_diagnostics diag;
  REQUIRE(kvc_cache_open(ReadAtMemory, bytes, bytes->size(), nullptr, &cache, &diag) == KVC_OK);
  kvc_cache_info info;
  kvc_cache_info_init(&info);
  REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
  REQUIRE(info.stream.num_tokens == old_tokens);
  Memory m;
  m.bytes.assign(bytes->begin(), bytes->begin() + static_cast<std::ptrdiff_t>(info.size));
  kvc_writer_options o = Options(4, zstd);
  o.sync = SyncMemory;
  kvc_writer* w = nullptr;
  REQUIRE(kvc_cache_append(cache, tokens, &o, WriteToMemory, &m, &w, &diag) == KVC_OK);
  for (uint32_t l = 0; l < kLayers; ++l) {
    std::vector<float> k = Slice(l, 0, old_tokens, tokens), v = Slice(l, 1, old_tokens, tokens);
    const kvc_tensor kt = kvc_test::Tensor3(k.data(), KVC_DTYPE_F32, kHeads, tokens, kDim);
    const kvc_tensor vt = kvc_test::Tensor3(v.data(), KVC_DTYPE_F32, kHeads, tokens, kDim);
    REQUIRE(kvc_writer_add_layer(w, &kt, &vt, &diag) == KVC_OK);
  }
  REQUIRE(kvc_writer_finish(w, nullptr, &diag) == KVC_OK);
  CHECK(m.syncs == 2);  // before and after the commit record
  kvc_writer_destroy(w);
  kvc_cache_close(cache);
  *bytes = m.bytes;
}

// The whole cache through kvc_decode_stream: [layers, heads, tokens, dim].
std::vector<float> DecodeWhole(const std::vector<uint8_t>& bytes, uint32_t tokens, int kind) {
  std::vector<float> out(size_t{kLayers} * kHeads * tokens * kDim);
  const kvc_tensor t = kvc_test::Tensor4(out.data(), KVC_DTYPE_F32, kLayers, kHeads, tokens, kDim);
  kvc_diagnostics diag;
  const kvc_status s = kvc_decode_stream(bytes.data(), bytes.size(), nullptr,
                                         kind == 0 ? &t : nullptr, kind == 1 ? &t : nullptr,
                                         &diag);
  INFO(diag.message);
  REQUIRE(s == KVC_OK);
  return out;
}

// Rows [heads a..b) x tokens [t0, t1) of layer l out of a whole decode.
std::vector<float> Cut(const std::vector<float>& whole, uint32_t tokens, uint32_t layer,
                       uint32_t h0, uint32_t h1, uint32_t t0, uint32_t t1) {
  std::vector<float> out;
  for (uint32_t h = h0; h < h1; ++h) {
    const size_t base = ((size_t{layer} * kHeads + h) * tokens + t0) * kDim;
    out.insert(out.end(), whole.begin() + base, whole.begin() + base + size_t{t1 - t0} * kDim);
  }
  return out;
}

}  // namespace

TEST_CASE("a cache written layer by layer decodes as the one-shot stream does") {
  for (int zstd : {0, 3}) {
    CAPTURE(zstd);
    const uint32_t tokens = 21;
    const Written w = WriteCache("tq-mse-b4", tokens, Options(8, zstd));
    kvc_stream_info info;
    kvc_stream_info_init(&info);
    REQUIRE(kvc_get_stream_info(w.bytes.data(), w.bytes.size(), &info, nullptr) == KVC_OK);
    CHECK(info.format_minor == 1);
    CHECK(info.num_tokens == tokens);
    // The same cache through kvc_encode_stream (blocks of 8 tokens too).
    std::vector<float> k(size_t{kLayers} * kHeads * tokens * kDim), v(k.size());
    for (uint32_t l = 0; l < kLayers; ++l) {
      const std::vector<float> ks = Slice(l, 0, 0, tokens), vs = Slice(l, 1, 0, tokens);
      std::copy(ks.begin(), ks.end(), k.begin() + size_t{l} * ks.size());
      std::copy(vs.begin(), vs.end(), v.begin() + size_t{l} * vs.size());
    }
    kvc_config* config = nullptr;
    REQUIRE(kvc_config_from_preset("tq-mse-b4", &config, nullptr) == KVC_OK);
    const kvc_cache_desc d = Desc(tokens);
    const kvc_tensor kt = kvc_test::Tensor4(k.data(), KVC_DTYPE_F32, kLayers, kHeads, tokens, kDim);
    const kvc_tensor vt = kvc_test::Tensor4(v.data(), KVC_DTYPE_F32, kLayers, kHeads, tokens, kDim);
    kvc_encode_options eo;
    kvc_encode_options_init(&eo);
    eo.block_tokens = 8;
    std::vector<uint8_t> one_shot(kvc_stream_bound(config, &d, &eo));
    size_t size = 0;
    REQUIRE(kvc_encode_stream(config, &d, &kt, &vt, &eo, one_shot.data(), one_shot.size(), &size,
                              nullptr) == KVC_OK);
    one_shot.resize(size);
    kvc_config_destroy(config);
    CHECK(DecodeWhole(w.bytes, tokens, 0) == DecodeWhole(one_shot, tokens, 0));
    CHECK(DecodeWhole(w.bytes, tokens, 1) == DecodeWhole(one_shot, tokens, 1));
    // Beyond the one-shot stream: the index (16 + 32 bytes per block) and the
    // locator, in sections; zstd is kept only where it saves.
    const size_t blocks = kLayers * 2 * 3;
    CHECK(w.bytes.size() <= one_shot.size() + (12 + 16 + 32 * blocks) + (12 + 8));
  }
}

TEST_CASE("the writer takes the config's zstd level unless its options choose") {
  // kv-3.25z names zstd 3; the Zstd_Sections feature (bit 1) shows whether
  // the writer used a zstd stage. Blocks are kept compressed only where that
  // saves, so the sizes only bound each other.
  auto features = [](const std::vector<uint8_t>& bytes) {
    kvc_cache* cache = nullptr;
    REQUIRE(kvc_cache_open(ReadAtMemory, const_cast<std::vector<uint8_t>*>(&bytes),
                           bytes.size(), nullptr, &cache, nullptr) == KVC_OK);
    kvc_cache_info info;
    kvc_cache_info_init(&info);
    REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
    kvc_cache_close(cache);
    return info.features;
  };
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_from_preset("kv-3.25z", &config, nullptr) == KVC_OK);
  CHECK(kvc_config_zstd_level(config) == 3);
  kvc_config_destroy(config);
  REQUIRE(kvc_config_from_preset("kv-3.25", &config, nullptr) == KVC_OK);
  CHECK(kvc_config_zstd_level(config) == 0);
  kvc_config_destroy(config);
  CHECK(kvc_config_zstd_level(nullptr) == 0);
  const uint32_t tokens = 64;
  const Written by_config = WriteCache("kv-3.25z", tokens, Options(0, 0));
  const Written none = WriteCache("kv-3.25z", tokens, Options(0, -1));
  const Written chosen = WriteCache("kv-3.25z", tokens, Options(0, 9));
  CHECK((features(by_config.bytes) & 2) != 0);
  CHECK((features(none.bytes) & 2) == 0);
  CHECK((features(chosen.bytes) & 2) != 0);
  CHECK(by_config.bytes.size() <= none.bytes.size());
  CHECK(DecodeWhole(by_config.bytes, tokens, 0) == DecodeWhole(none.bytes, tokens, 0));
  CHECK(DecodeWhole(by_config.bytes, tokens, 1) == DecodeWhole(none.bytes, tokens, 1));
  // Levels below -1 or above 19 are refused.
  REQUIRE(kvc_config_from_preset("kv-3.25z", &config, nullptr) == KVC_OK);
  const kvc_cache_desc d = Desc(tokens);
  for (int level : {-2, 20}) {
    CAPTURE(level);
    const kvc_writer_options o = Options(0, level);
    Memory m;
    kvc_writer* w = nullptr;
    kvc_diagnostics diag;
    CHECK(kvc_writer_create(config, &d, &o, WriteToMemory, &m, &w, &diag) ==
          KVC_ERR_INVALID_ARGUMENT);
    CHECK(w == nullptr);
  }
  kvc_config_destroy(config);
}

TEST_CASE("a writer without append or zstd writes a 1.0 stream") {
  kvc_writer_options o = Options(0, 0);
  o.appendable = 0;
  const Written w = WriteCache("tq-mse-b3", 5, o);
  CHECK(w.bytes[5] == 0);                              // Version_Minor
  CHECK(kvc::LoadLE32(w.bytes.data() + 8) == 0);  // Required_Features
  // Still indexed: random access does not walk it.
  kvc_cache* cache = nullptr;
  REQUIRE(kvc_cache_open(ReadAtMemory, const_cast<std::vector<uint8_t>*>(&w.bytes),
                         w.bytes.size(), nullptr, &cache, nullptr) == KVC_OK);
  kvc_cache_info info;
  kvc_cache_info_init(&info);
  REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
  CHECK(info.blocks == 2 * kLayers);
  kvc_writer* appender = nullptr;
  Memory m;
  kvc_diagnostics diag;
  CHECK(kvc_cache_append(cache, 3, nullptr, WriteToMemory, &m, &appender, &diag) ==
        KVC_ERR_INVALID_ARGUMENT);
  CHECK(std::string(diag.message).find("appendable") != std::string::npos);
  kvc_cache_close(cache);
}

TEST_CASE("random access reads any heads and tokens, reading only their blocks") {
  const uint32_t tokens = 30;
  for (int zstd : {0, 5}) {
    CAPTURE(zstd);
    Written w = WriteCache("turboangle", tokens, Options(8, zstd));
    const std::vector<float> whole_v = DecodeWhole(w.bytes, tokens, 1);
    kvc_cache* cache = nullptr;
    kvc_diagnostics diag;
    REQUIRE(kvc_cache_open(ReadAtMemory, &w.bytes, w.bytes.size(), nullptr, &cache, &diag) ==
            KVC_OK);
    struct Range { uint32_t layer, h0, h1, t0, t1; };
    for (const Range r : {Range{0, 0, 2, 0, 30}, Range{2, 1, 2, 7, 9}, Range{1, 0, 1, 8, 16},
                          Range{1, 1, 2, 29, 30}, Range{2, 0, 2, 3, 25}}) {
      std::vector<float> got(size_t{r.h1 - r.h0} * (r.t1 - r.t0) * kDim);
      const kvc_tensor out = kvc_test::Tensor3(got.data(), KVC_DTYPE_F32, r.h1 - r.h0,
                                               r.t1 - r.t0, kDim);
      REQUIRE(kvc_cache_read(cache, r.layer, KVC_KIND_VALUES, r.h0, r.h1 - r.h0, r.t0,
                             r.t1 - r.t0, &out, &diag) == KVC_OK);
      CHECK(got == Cut(whole_v, tokens, r.layer, r.h0, r.h1, r.t0, r.t1));
    }
    // Out of range and wrong shapes are clean errors.
    std::vector<float> one(kDim);
    const kvc_tensor out = kvc_test::Tensor3(one.data(), KVC_DTYPE_F32, 1, 1, kDim);
    CHECK(kvc_cache_read(cache, 0, KVC_KIND_KEYS, 0, 1, tokens, 1, &out, &diag) ==
          KVC_ERR_INVALID_ARGUMENT);
    CHECK(kvc_cache_read(cache, 3, KVC_KIND_KEYS, 0, 1, 0, 1, &out, &diag) ==
          KVC_ERR_INVALID_ARGUMENT);
    CHECK(kvc_cache_read(cache, 0, KVC_KIND_KEYS, 0, 2, 0, 1, &out, &diag) ==
          KVC_ERR_SHAPE_MISMATCH);
    // A damaged block fails its read with CHECKSUM, the others still read.
    kvc_cache_close(cache);
    std::vector<uint8_t> damaged = w.bytes;
    REQUIRE(kvc_cache_open(ReadAtMemory, &damaged, damaged.size(), nullptr, &cache, &diag) ==
            KVC_OK);
    // The first block of the stream (layer 0 K, tokens 0..7) sits after the
    // header and the layer configs: flip a byte in its middle.
    size_t offset = 40;
    while (damaged[offset] != 0x02) offset += 12 + kvc::LoadLE32(&damaged[offset + 4]);
    damaged[offset + 30] ^= 1;
    CHECK(kvc_cache_read(cache, 0, KVC_KIND_KEYS, 0, 1, 0, 1, &out, &diag) == KVC_ERR_CHECKSUM);
    CHECK(kvc_cache_read(cache, 0, KVC_KIND_KEYS, 0, 1, 8, 1, &out, &diag) == KVC_OK);
    kvc_cache_close(cache);
  }
}

TEST_CASE("appended segments extend every layer; an interrupted append leaves the cache as it was") {
  for (int zstd : {0, 1}) {
    CAPTURE(zstd);
    std::vector<uint8_t> bytes = WriteCache("tq-mse-b3", 10, Options(4, zstd)).bytes;
    const std::vector<uint8_t> first = bytes;
    Append(&bytes, 10, 7, zstd);
    const std::vector<uint8_t> second = bytes;
    Append(&bytes, 17, 1, zstd);
    // The whole cache decodes in memory and matches the data token by token
    // as a single-segment cache of the same tokens would in its tokens 0..9.
    const std::vector<float> whole = DecodeWhole(bytes, 18, 0);
    CHECK(Cut(whole, 18, 1, 0, 2, 0, 10) == Cut(DecodeWhole(first, 10, 0), 10, 1, 0, 2, 0, 10));
    kvc_cache* cache = nullptr;
    kvc_diagnostics diag;
    REQUIRE(kvc_cache_open(ReadAtMemory, &bytes, bytes.size(), nullptr, &cache, &diag) == KVC_OK);
    kvc_cache_info info;
    kvc_cache_info_init(&info);
    REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
    CHECK(info.stream.num_tokens == 18);
    CHECK(info.segments == 3);
    CHECK(info.ignored_bytes == 0);
    std::vector<float> got(size_t{2} * 12 * kDim);
    const kvc_tensor out = kvc_test::Tensor3(got.data(), KVC_DTYPE_F32, 2, 12, kDim);
    REQUIRE(kvc_cache_read(cache, 2, KVC_KIND_KEYS, 0, 2, 6, 12, &out, &diag) == KVC_OK);
    CHECK(got == Cut(whole, 18, 2, 0, 2, 6, 18));
    kvc_cache_close(cache);

    // Every prefix of the last append (a crash at any byte) opens as the
    // two-segment cache; the whole-stream decoder calls it truncated.
    for (size_t cut = second.size(); cut < bytes.size(); ++cut) {
      std::vector<uint8_t> crashed(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      CAPTURE(cut);
      REQUIRE(kvc_cache_open(ReadAtMemory, &crashed, crashed.size(), nullptr, &cache, &diag) ==
              KVC_OK);
      REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
      CHECK(info.stream.num_tokens == 17);
      CHECK(info.size == second.size());
      CHECK(info.ignored_bytes == cut - second.size());
      kvc_cache_close(cache);
      if (cut > second.size()) {
        std::vector<float> k(size_t{kLayers} * kHeads * 17 * kDim);
        const kvc_tensor kt = kvc_test::Tensor4(k.data(), KVC_DTYPE_F32, kLayers, kHeads, 17, kDim);
        CHECK(kvc_decode_stream(crashed.data(), crashed.size(), nullptr, &kt, nullptr, &diag) !=
              KVC_OK);
      }
    }
  }
}

TEST_CASE("the streaming reader delivers layer runs through any read sizes") {
  std::vector<uint8_t> bytes = WriteCache("polarquant", 12, Options(5, 2)).bytes;
  Append(&bytes, 12, 4, 2);
  const std::vector<float> whole_k = DecodeWhole(bytes, 16, 0);
  const std::vector<float> whole_v = DecodeWhole(bytes, 16, 1);
  for (size_t chunk : {1, 7, 4096}) {
    CAPTURE(chunk);
    Pipe pipe{&bytes, 0, chunk};
    kvc_reader* reader = nullptr;
    kvc_diagnostics diag;
    REQUIRE(kvc_reader_create(ReadPipe, &pipe, nullptr, &reader, &diag) == KVC_OK);
    std::vector<std::string> runs;
    for (;;) {
      kvc_layer_run run;
      kvc_layer_run_init(&run);
      INFO(diag.message);
      REQUIRE(kvc_reader_next(reader, &run, &diag) == KVC_OK);
      if (run.end) break;
      runs.push_back(std::to_string(run.layer) + ":" + std::to_string(run.token_start) + "+" +
                     std::to_string(run.token_count));
      std::vector<float> k(size_t{kHeads} * run.token_count * kDim), v(k.size());
      const kvc_tensor kt = kvc_test::Tensor3(k.data(), KVC_DTYPE_F32, kHeads, run.token_count, kDim);
      const kvc_tensor vt = kvc_test::Tensor3(v.data(), KVC_DTYPE_F32, kHeads, run.token_count, kDim);
      if (run.layer == 1 && run.segment == 0) continue;  // skipped: still checked
      REQUIRE(kvc_reader_read(reader, &kt, &vt, &diag) == KVC_OK);
      const uint32_t t1 = run.token_start + run.token_count;
      CHECK(k == Cut(whole_k, 16, run.layer, 0, kHeads, run.token_start, t1));
      CHECK(v == Cut(whole_v, 16, run.layer, 0, kHeads, run.token_start, t1));
    }
    CHECK(runs == std::vector<std::string>{"0:0+12", "1:0+12", "2:0+12", "0:12+4", "1:12+4",
                                           "2:12+4"});
    kvc_reader_destroy(reader);
  }
  // Damage and truncation reach the reader as clean errors.
  for (size_t flip : {size_t{200}, bytes.size() / 2, bytes.size() - 30}) {
    std::vector<uint8_t> damaged = bytes;
    damaged[flip] ^= 0x40;
    for (size_t cut : {damaged.size(), damaged.size() - 9}) {
      std::vector<uint8_t> input(damaged.begin(), damaged.begin() + static_cast<std::ptrdiff_t>(cut));
      Pipe pipe{&input, 0, 64};
      kvc_reader* reader = nullptr;
      kvc_status s = kvc_reader_create(ReadPipe, &pipe, nullptr, &reader, nullptr);
      while (s == KVC_OK) {
        kvc_layer_run run;
        kvc_layer_run_init(&run);
        s = kvc_reader_next(reader, &run, nullptr);
        if (s != KVC_OK || run.end) break;
        s = kvc_reader_read(reader, nullptr, nullptr, nullptr);
      }
      CHECK(s != KVC_OK);
      kvc_reader_destroy(reader);
    }
  }
}

TEST_CASE("a cache refuses to open for another model unless told to") {
  kvc_writer_options o = Options(0, 0);
  o.model_name = "kvlab-A";
  const std::string config = "{\"hidden_size\": 256}";
  o.model_config_hash = kvc_hash64(config.data(), config.size());
  Written w = WriteCache("tq-mse-b2", 4, o);
  kvc_open_options open;
  kvc_open_options_init(&open);
  open.expect_model_name = "kvlab-A";
  open.expect_model_config_hash = o.model_config_hash;
  kvc_cache* cache = nullptr;
  kvc_diagnostics diag;
  REQUIRE(kvc_cache_open(ReadAtMemory, &w.bytes, w.bytes.size(), &open, &cache, &diag) == KVC_OK);
  kvc_cache_info info;
  kvc_cache_info_init(&info);
  REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
  CHECK(info.has_model == 1);
  CHECK(std::string(info.model_name) == "kvlab-A");
  kvc_cache_close(cache);
  open.expect_model_config_hash = o.model_config_hash + 1;
  CHECK(kvc_cache_open(ReadAtMemory, &w.bytes, w.bytes.size(), &open, &cache, &diag) ==
        KVC_ERR_MODEL_MISMATCH);
  CHECK(std::string(diag.message).find("kvlab-A") != std::string::npos);
  Pipe pipe{&w.bytes, 0, 100};
  kvc_reader* reader = nullptr;
  CHECK(kvc_reader_create(ReadPipe, &pipe, &open, &reader, &diag) == KVC_ERR_MODEL_MISMATCH);
  open.allow_model_mismatch = 1;
  REQUIRE(kvc_cache_open(ReadAtMemory, &w.bytes, w.bytes.size(), &open, &cache, &diag) == KVC_OK);
  kvc_cache_close(cache);
}

TEST_CASE("a one-shot 1.0 stream opens for random access; writer errors are clean") {
  // kvc_encode_stream output has no index: the cache walks it once.
  const uint32_t tokens = 9;
  std::vector<float> k(size_t{kLayers} * kHeads * tokens * kDim, 0.5f), v = k;
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_from_preset("tq-mse-b2", &config, nullptr) == KVC_OK);
  const kvc_cache_desc d = Desc(tokens);
  const kvc_tensor kt = kvc_test::Tensor4(k.data(), KVC_DTYPE_F32, kLayers, kHeads, tokens, kDim);
  const kvc_tensor vt = kvc_test::Tensor4(v.data(), KVC_DTYPE_F32, kLayers, kHeads, tokens, kDim);
  std::vector<uint8_t> bytes(kvc_stream_bound(config, &d, nullptr));
  size_t size = 0;
  REQUIRE(kvc_encode_stream(config, &d, &kt, &vt, nullptr, bytes.data(), bytes.size(), &size,
                            nullptr) == KVC_OK);
  bytes.resize(size);
  kvc_cache* cache = nullptr;
  REQUIRE(kvc_cache_open(ReadAtMemory, &bytes, bytes.size(), nullptr, &cache, nullptr) == KVC_OK);
  std::vector<float> row(kDim);
  const kvc_tensor out = kvc_test::Tensor3(row.data(), KVC_DTYPE_F32, 1, 1, kDim);
  CHECK(kvc_cache_read(cache, 2, KVC_KIND_VALUES, 1, 1, 8, 1, &out, nullptr) == KVC_OK);
  kvc_cache_close(cache);
  // Truncated index-less streams fail to open.
  CHECK(kvc_cache_open(ReadAtMemory, &bytes, bytes.size() - 1, nullptr, &cache, nullptr) != KVC_OK);

  // Writer: layers out of count, wrong shapes, a failing sink.
  Memory m;
  kvc_writer* w = nullptr;
  kvc_diagnostics diag;
  REQUIRE(kvc_writer_create(config, &d, nullptr, WriteToMemory, &m, &w, &diag) == KVC_OK);
  CHECK(kvc_writer_finish(w, nullptr, &diag) == KVC_ERR_INVALID_ARGUMENT);
  std::vector<float> layer(size_t{kHeads} * tokens * kDim, 1.0f);
  const kvc_tensor wrong = kvc_test::Tensor3(layer.data(), KVC_DTYPE_F32, kHeads, tokens - 1, kDim);
  CHECK(kvc_writer_add_layer(w, &wrong, &wrong, &diag) == KVC_ERR_SHAPE_MISMATCH);
  const kvc_tensor right = kvc_test::Tensor3(layer.data(), KVC_DTYPE_F32, kHeads, tokens, kDim);
  m.fail = true;
  CHECK(kvc_writer_add_layer(w, &right, &right, &diag) == KVC_ERR_IO);
  CHECK(kvc_writer_finish(w, nullptr, &diag) == KVC_ERR_IO);
  kvc_writer_destroy(w);
  kvc_writer_options bad = Options(0, 40);
  CHECK(kvc_writer_create(config, &d, &bad, WriteToMemory, &m, &w, &diag) ==
        KVC_ERR_INVALID_ARGUMENT);
  CHECK(w == nullptr);
  kvc_config_destroy(config);
}
