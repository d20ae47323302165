// Golden streams freeze bitstream 1.0 (tests/golden/README.md). Each file
// must (1) decode to output whose SHA-256 is recorded in MANIFEST and (2) be
// reproduced byte for byte by today's encoder from the same input. Files are
// never regenerated: a format change adds new files.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/endian.h"
#include "base/half.h"
#include "format/checksum.h"
#include "format/section.h"
#include "sha256.h"
#include "test_util.h"

namespace {

struct Golden {
  const char* file;
  const char* config;  // config text
  uint32_t layers, heads, tokens, dim, block_tokens;
};

// Inputs: the deterministic cache below, in f16.
const Golden kGoldens[] = {
    {"tq-mse-b1.kvc", "all kv=tq-mse-b1", 2, 2, 6, 64, 0},
    {"tq-mse-b2.kvc", "all kv=tq-mse-b2", 2, 2, 6, 64, 4},
    {"tq-mse-b3-d80-nc.kvc", "all k=tq-mse-b3:nc v=tq-mse-b3", 1, 2, 5, 80, 0},
    {"tq-mse-b4.kvc", "all kv=tq-mse-b4", 2, 1, 9, 128, 0},
    {"tq-mse-b8-f32-norm.kvc", "all kv=tq-mse-b8:norm=f32,seed=0x1234", 1, 1, 4, 64, 0},
    {"tq-mse-b3-rot-none.kvc", "all kv=tq-mse-b3:rot=none,norm=bf16", 1, 1, 4, 96, 0},
    {"tq-prod-b2.kvc", "all kv=tq-prod-b2", 1, 2, 4, 64, 0},
    {"tq-prod-b3-d112.kvc", "all kv=tq-prod-b3", 1, 1, 5, 112, 0},
    {"tq-prod-b4.kvc", "all kv=tq-prod-b4:nc", 1, 1, 4, 128, 0},
    {"mixed-raw.kvc", "all kv=tq-mse-b3\nfirst 1 k=raw-f16 v=raw-bf16\nlast 1 v=raw-f32", 3, 1, 3, 64, 2},
    {"tq-outlier-b2.5.kvc", "all kv=tq-mse-b2.5", 1, 2, 5, 64, 0},
    {"tq-outlier-b3.25-d96.kvc", "all k=tq-mse-b3.25 v=tq-mse-b2:out=8", 1, 1, 4, 96, 0},
    {"polar-4222.kvc", "all kv=polar-4222", 1, 2, 4, 128, 0},
    {"polar-4333-d80.kvc", "all kv=polar-4333:norm=bf16", 1, 1, 3, 80, 0},
    {"angle-n128-n64.kvc", "all k=angle-n128 v=angle-n64:radius=log4", 2, 1, 3, 64, 0},
    {"angle-n96-exact-nc.kvc", "all kv=angle-n96:radius=exact,nc", 1, 1, 3, 128, 0},
    {"angle-n3-d112.kvc", "all k=angle-n3 v=angle-n4095:radius=log4", 1, 1, 9, 112, 4},
    {"gtq-b3.kvc", "all k=gtq-b3 v=tq-mse-b3", 1, 2, 8, 128, 0},
    {"gtq-b2-min0-interleaved.kvc", "all k=gtq-b2:min=0,pair=interleaved v=tq-mse-b2", 1, 1, 6, 64, 3},
    {"preset-kv-5.kvc", "all k=gtq-b5:nc v=tq-mse-b4.5:nc", 2, 2, 8, 128, 0},
    {"preset-kv-2.6-d80.kvc", "all k=gtq-b3:nc v=tq-mse-b1.5:nc", 1, 2, 6, 80, 0},
    // Format 1.2: centered configs (every method that takes the flag).
    {"center-tq-mse-b4-b3.kvc", "all k=tq-mse-b4:nc,center v=tq-mse-b3:center", 2, 2, 9, 128, 4},
    {"center-methods-d64.kvc",
     "all kv=tq-prod-b3:center\nlayer 1 k=gtq-b3:center v=polar-4222:norm=bf16,center\n"
     "layer 2 k=angle-n64:nc,center v=tq-mse-b2.5:norm=f32,center", 3, 1, 6, 64, 0},
};

std::string GoldenDir() { return KVC_TEST_GOLDEN_DIR; }

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::map<std::string, std::string> ReadManifest() {
  std::map<std::string, std::string> hashes;
  std::ifstream in(GoldenDir() + "/MANIFEST");
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string file, hash;
    if (line.empty() || line[0] == '#' || !(fields >> file >> hash)) continue;
    hashes[file] = hash;
  }
  return hashes;
}

// f16 values with outlier channels, from the format's own PRNG.
std::vector<uint16_t> GoldenInput(const Golden& g, uint64_t seed) {
  const size_t n = size_t{g.layers} * g.heads * g.tokens * g.dim;
  const std::vector<float> x = kvc_test::GaussianVectors(n / g.dim, g.dim, seed, false);
  std::vector<uint16_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = kvc::F32ToF16(x[i] * ((i % g.dim) % 13 == 5 ? 6.0f : 1.5f));
  }
  return out;
}

std::vector<uint8_t> EncodeGolden(const Golden& g) {
  std::vector<uint16_t> keys = GoldenInput(g, 1), values = GoldenInput(g, 2);
  kvc_cache_desc desc;
  kvc_cache_desc_init(&desc);
  desc.num_layers = g.layers;
  desc.num_kv_heads = g.heads;
  desc.num_tokens = g.tokens;
  desc.head_dim = g.dim;
  desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  desc.rope_base = 10000.0f;
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_parse(g.config, std::strlen(g.config), &config, nullptr) == KVC_OK);
  kvc_encode_options options;
  kvc_encode_options_init(&options);
  options.block_tokens = g.block_tokens;
  const kvc_tensor k = kvc_test::Tensor4(keys.data(), KVC_DTYPE_F16, g.layers, g.heads,
                                         g.tokens, g.dim);
  const kvc_tensor v = kvc_test::Tensor4(values.data(), KVC_DTYPE_F16, g.layers, g.heads,
                                         g.tokens, g.dim);
  std::vector<uint8_t> out(kvc_stream_bound(config, &desc, &options));
  size_t size = 0;
  REQUIRE(kvc_encode_stream(config, &desc, &k, &v, &options, out.data(), out.size(), &size,
                            nullptr) == KVC_OK);
  kvc_config_destroy(config);
  out.resize(size);
  return out;
}

// SHA-256 of the decoded keys then values, as little-endian f32.
std::string DecodedHash(const std::vector<uint8_t>& stream, const Golden& g) {
  const size_t n = size_t{g.layers} * g.heads * g.tokens * g.dim;
  std::vector<float> kv(2 * n);
  const kvc_tensor k = kvc_test::Tensor4(kv.data(), KVC_DTYPE_F32, g.layers, g.heads,
                                         g.tokens, g.dim);
  const kvc_tensor v = kvc_test::Tensor4(kv.data() + n, KVC_DTYPE_F32, g.layers, g.heads,
                                         g.tokens, g.dim);
  kvc_diagnostics diag;
  const kvc_status s = kvc_decode_stream(stream.data(), stream.size(), nullptr, &k, &v, &diag);
  INFO(diag.message);
  REQUIRE(s == KVC_OK);
  std::vector<uint8_t> bytes(kv.size() * 4);
  for (size_t i = 0; i < kv.size(); ++i) kvc::StoreLE32(kvc::FloatBits(kv[i]), &bytes[4 * i]);
  return kvc_test::Sha256Hex(bytes.data(), bytes.size());
}

}  // namespace

TEST_CASE("golden streams decode to their recorded output and re-encode exactly") {
  const std::map<std::string, std::string> manifest = ReadManifest();
  const bool write_missing = std::getenv("KVC_WRITE_MISSING_GOLDEN") != nullptr;
  for (const Golden& g : kGoldens) {
    const std::string file = g.file;
    CAPTURE(file);
    const std::string path = GoldenDir() + "/" + g.file;
    std::vector<uint8_t> golden = ReadFile(path);
    if (golden.empty() && write_missing) {
      // Only for a new golden file; existing ones are never rewritten.
      golden = EncodeGolden(g);
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char*>(golden.data()),
                 static_cast<std::streamsize>(golden.size()));
      MESSAGE(std::string(g.file) << " " << DecodedHash(golden, g) << "  (add to MANIFEST)");
      continue;
    }
    REQUIRE_MESSAGE(!golden.empty(), "golden file missing: " << path);
    REQUIRE_MESSAGE(manifest.count(g.file) == 1, "not in MANIFEST: " << g.file);
    CHECK(DecodedHash(golden, g) == manifest.at(g.file));
    CHECK(EncodeGolden(g) == golden);
  }
}

TEST_CASE("the SHA-256 used for goldens matches FIPS 180-4 test vectors") {
  const uint8_t abc[3] = {'a', 'b', 'c'};
  CHECK(kvc_test::Sha256Hex(abc, 3) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(kvc_test::Sha256Hex(abc, 0) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// ---------------------------------------------------------------------------
// Golden error files (tests/golden/errors/): malformed streams, each with the
// status a decoder must report, written once from a valid stream by the
// mutations below and frozen like the golden streams.

namespace {

struct ErrorGolden {
  const char* file;
  kvc_status status;  // of kvc_decode_stream into the base cache's shape
};

const ErrorGolden kErrorGoldens[] = {
    {"bad-magic.kvc", KVC_ERR_NOT_KVCODEC},
    {"truncated-header.kvc", KVC_ERR_TRUNCATED},
    {"truncated-block.kvc", KVC_ERR_TRUNCATED},
    {"header-checksum.kvc", KVC_ERR_CHECKSUM},
    {"future-major-version.kvc", KVC_ERR_UNSUPPORTED_VERSION},
    {"required-feature.kvc", KVC_ERR_UNSUPPORTED_FEATURE},
    {"block-checksum.kvc", KVC_ERR_CHECKSUM},
    {"unknown-method.kvc", KVC_ERR_UNSUPPORTED_FEATURE},
    {"unknown-critical-section.kvc", KVC_ERR_UNSUPPORTED_FEATURE},
    {"missing-block.kvc", KVC_ERR_CORRUPT},
    {"duplicate-block.kvc", KVC_ERR_CORRUPT},
    {"trailing-bytes.kvc", KVC_ERR_CORRUPT},
    {"huge-dimensions.kvc", KVC_ERR_SHAPE_MISMATCH},
    {"ancillary-section.kvc", KVC_OK},  // unknown but skippable: harmless
};

// The base: 1 layer, 1 head, 4 tokens, d 16, tq-mse-b2, blocks of 2 tokens.
// Layout: header 40 | layer config 44 | block A | block B | end 16.
const Golden kErrorBase = {"", "all kv=tq-mse-b2", 1, 1, 4, 16, 2};

void Reseal(std::vector<uint8_t>* s, size_t offset) {
  const size_t payload = kvc::LoadLE32(&(*s)[offset + 4]);
  kvc::SealSection((*s)[offset], payload, &(*s)[offset]);
}

void ResealHeader(std::vector<uint8_t>* s) {
  kvc::StoreLE32(kvc::Checksum32(s->data(), 36), &(*s)[36]);
}

std::vector<uint8_t> MakeErrorGolden(const std::string& name) {
  std::vector<uint8_t> s = EncodeGolden(kErrorBase);
  const size_t layer = 40, layer_size = 8 + 36 + 4;
  const size_t block_a = layer + layer_size;
  const size_t block_size = (s.size() - block_a - 16) / 4;  // K: A B, V: A B
  const size_t end = s.size() - 16;
  if (name == "bad-magic.kvc") s[0] = 'P';
  if (name == "truncated-header.kvc") s.resize(20);
  if (name == "truncated-block.kvc") s.resize(block_a + block_size / 2);
  if (name == "header-checksum.kvc") s[20] ^= 0x04;
  if (name == "future-major-version.kvc") {
    s[4] = 2;
    ResealHeader(&s);
  }
  if (name == "required-feature.kvc") {
    s[8] = 1;
    ResealHeader(&s);
  }
  if (name == "block-checksum.kvc") s[block_a + 40] ^= 0x10;
  if (name == "unknown-method.kvc") {
    s[layer + 8 + 4] = 99;  // K method of layer 0
    Reseal(&s, layer);
  }
  if (name == "unknown-critical-section.kvc" || name == "ancillary-section.kvc") {
    std::vector<uint8_t> section(8 + 3 + 4, 0);
    section[0] = name == "ancillary-section.kvc" ? 0x81 : 0x05;
    kvc::StoreLE32(3, &section[4]);
    section[8] = 'k';
    section[9] = 'v';
    section[10] = 'c';
    kvc::SealSection(section[0], 3, section.data());
    s.insert(s.begin() + static_cast<long>(end), section.begin(), section.end());
    kvc::StoreLE32(kvc::LoadLE32(&s[s.size() - 8]) + 1, &s[s.size() - 8]);  // Section_Count
    Reseal(&s, s.size() - 16);
  }
  if (name == "missing-block.kvc" || name == "duplicate-block.kvc") {
    const size_t block_b = block_a + block_size;
    if (name == "missing-block.kvc") {
      s.erase(s.begin() + static_cast<long>(block_b),
              s.begin() + static_cast<long>(block_b + block_size));
      kvc::StoreLE32(kvc::LoadLE32(&s[s.size() - 8]) - 1, &s[s.size() - 8]);
      Reseal(&s, s.size() - 16);
    } else {
      std::copy(s.begin() + static_cast<long>(block_a), s.begin() + static_cast<long>(block_b),
                s.begin() + static_cast<long>(block_b));
    }
  }
  if (name == "trailing-bytes.kvc") s.push_back(0);
  if (name == "huge-dimensions.kvc") {
    kvc::StoreLE16(0xFFFF, &s[12]);      // layers
    kvc::StoreLE16(0xFFFF, &s[14]);      // heads
    kvc::StoreLE32(0xFFFFFFFF, &s[20]);  // tokens
    ResealHeader(&s);
  }
  return s;
}

kvc_status DecodeIntoBase(const std::vector<uint8_t>& s, kvc_diagnostics* diag) {
  const Golden& g = kErrorBase;
  const size_t n = size_t{g.layers} * g.heads * g.tokens * g.dim;
  std::vector<float> k(n), v(n);
  const kvc_tensor kt = kvc_test::Tensor4(k.data(), KVC_DTYPE_F32, g.layers, g.heads, g.tokens, g.dim);
  const kvc_tensor vt = kvc_test::Tensor4(v.data(), KVC_DTYPE_F32, g.layers, g.heads, g.tokens, g.dim);
  return kvc_decode_stream(s.data(), s.size(), nullptr, &kt, &vt, diag);
}

kvc_status DecodeKinds(const std::vector<uint8_t>& s, bool keys, bool values,
                       kvc_diagnostics* diag) {
  const Golden& g = kErrorBase;
  const size_t n = size_t{g.layers} * g.heads * g.tokens * g.dim;
  std::vector<float> k(n), v(n);
  const kvc_tensor kt = kvc_test::Tensor4(k.data(), KVC_DTYPE_F32, g.layers, g.heads, g.tokens, g.dim);
  const kvc_tensor vt = kvc_test::Tensor4(v.data(), KVC_DTYPE_F32, g.layers, g.heads, g.tokens, g.dim);
  return kvc_decode_stream(s.data(), s.size(), nullptr, keys ? &kt : nullptr,
                           values ? &vt : nullptr, diag);
}

}  // namespace

TEST_CASE("a bad block checksum is reported as a verifying walk reports it") {
  // The decoder leaves block checksums to the jobs that decode the blocks
  // (stream.cc): every payload byte of every block, flipped, must still give
  // the first bad section's error, for either kind or both.
  const std::vector<uint8_t> base = EncodeGolden(kErrorBase);
  const size_t block_a = 40 + 8 + 36 + 4;
  const size_t block_size = (base.size() - block_a - 16) / 4;
  for (size_t block = 0; block < 4; ++block) {
    const size_t section = block_a + block * block_size;
    const size_t payload = kvc::LoadLE32(&base[section + 4]);
    for (size_t at = section + 8; at < section + 8 + payload; ++at) {
      CAPTURE(block);
      CAPTURE(at);
      std::vector<uint8_t> s = base;
      s[at] ^= 0x10;
      kvc_diagnostics walked;
      REQUIRE(kvc_get_stream_layer(s.data(), s.size(), 0, nullptr, nullptr, nullptr, nullptr,
                                   &walked) == KVC_ERR_CHECKSUM);
      for (const auto& [keys, values] : {std::pair{true, true}, {true, false}, {false, true}}) {
        kvc_diagnostics decoded;
        CHECK(DecodeKinds(s, keys, values, &decoded) == KVC_ERR_CHECKSUM);
        CHECK(std::string(decoded.message) == walked.message);
      }
    }
  }
  // A block that passes every check but holds an invalid record (a NaN
  // norm, resealed) fails to decode, unless a later block's checksum is bad:
  // the format checks every checksum first.
  std::vector<uint8_t> s = base;
  // The payload ends with 2 norms (f16) and 2 records of 16 2-bit indices.
  const size_t norm = block_a + 8 + kvc::LoadLE32(&s[block_a + 4]) - 12;
  s[norm] = s[norm + 1] = 0xFF;
  Reseal(&s, block_a);
  kvc_diagnostics diag;
  CHECK(DecodeKinds(s, true, true, &diag) == KVC_ERR_CORRUPT);
  const size_t last = block_a + 3 * block_size;  // V, tokens 2-3
  s[last + 8 + kvc::LoadLE32(&s[last + 4]) - 1] ^= 0x10;  // an index: the walk passes
  kvc_diagnostics walked;
  REQUIRE(kvc_get_stream_layer(s.data(), s.size(), 0, nullptr, nullptr, nullptr, nullptr,
                               &walked) == KVC_ERR_CHECKSUM);
  CHECK(DecodeKinds(s, true, true, &diag) == KVC_ERR_CHECKSUM);
  CHECK(std::string(diag.message) == walked.message);
}

TEST_CASE("golden error files give their status and a message") {
  const bool write_missing = std::getenv("KVC_WRITE_MISSING_GOLDEN") != nullptr;
  for (const ErrorGolden& e : kErrorGoldens) {
    const std::string file = e.file;
    CAPTURE(file);
    const std::string path = GoldenDir() + "/errors/" + file;
    std::vector<uint8_t> bytes = ReadFile(path);
    if (bytes.empty() && write_missing) {
      bytes = MakeErrorGolden(file);
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
    REQUIRE_MESSAGE(!bytes.empty(), "golden error file missing: " << path);
    kvc_diagnostics diag;
    const kvc_status status = DecodeIntoBase(bytes, &diag);
    CHECK(status == e.status);
    if (status != KVC_OK) CHECK(std::strlen(diag.message) > 0);
  }
  // The huge header is refused by the structure walk without allocating for
  // its claimed 2^63 values.
  const std::vector<uint8_t> huge = ReadFile(GoldenDir() + "/errors/huge-dimensions.kvc");
  CHECK(kvc_get_stream_layer(huge.data(), huge.size(), 0, nullptr, nullptr, nullptr, nullptr,
                             nullptr) == KVC_ERR_CORRUPT);
}

// ---------------------------------------------------------------------------
// Golden caches of bitstream 1.1 (FORMAT.md §2.5), written by kvc_writer and
// kvc_cache_append: block index, locator, model identity, appended segments,
// zstd. They decode to their MANIFEST output; the writer reproduces the ones
// without zstd byte for byte (zstd's frames may differ between zstd
// versions, which the format allows: only their content is specified).

namespace {

struct CacheGolden {
  const char* file;
  const char* config;
  int zstd_level;
  bool appendable;
  const char* model;  // NULL: no Model_Identity
  uint32_t layers, heads, tokens, appended, dim, block_tokens;
};

const CacheGolden kCacheGoldens[] = {
    {"cache-1.1-segments.kvc", "all k=tq-mse-b3 v=angle-n64:radius=log4", 0, true, "golden-model",
     2, 2, 6, 3, 64, 4},
    {"cache-1.1-zstd.kvc", "all kv=raw-f16\nlast 1 kv=tq-mse-b2", 3, true, nullptr, 2, 1, 8, 5, 64,
     4},
    {"cache-1.0-sealed-index.kvc", "all kv=polar-4222", 0, false, nullptr, 1, 1, 5, 0, 128, 0},
};

int AppendBytes(void* opaque, const void* data, size_t size) {
  auto* out = static_cast<std::vector<uint8_t>*>(opaque);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
  return 0;
}

int ReadAtBytes(void* opaque, uint64_t offset, void* data, size_t size) {
  const auto* in = static_cast<const std::vector<uint8_t>*>(opaque);
  if (offset + size > in->size()) return 1;
  std::memcpy(data, in->data() + offset, size);
  return 0;
}

// Layer l of a GoldenInput cache: tokens [t0, t0 + count) of [heads, all, dim].
std::vector<uint16_t> CacheGoldenLayer(const CacheGolden& c, uint64_t seed, uint32_t layer,
                                       uint32_t t0, uint32_t count) {
  const Golden g{c.file, c.config, c.layers, c.heads, c.tokens + c.appended, c.dim, 0};
  const std::vector<uint16_t> all = GoldenInput(g, seed);
  std::vector<uint16_t> out;
  for (uint32_t h = 0; h < c.heads; ++h) {
    const size_t base = ((size_t{layer} * c.heads + h) * g.tokens + t0) * c.dim;
    out.insert(out.end(), all.begin() + base, all.begin() + base + size_t{count} * c.dim);
  }
  return out;
}

void WriteLayers(const CacheGolden& c, kvc_writer* w, uint32_t t0, uint32_t count) {
  for (uint32_t layer = 0; layer < c.layers; ++layer) {
    std::vector<uint16_t> k = CacheGoldenLayer(c, 1, layer, t0, count);
    std::vector<uint16_t> v = CacheGoldenLayer(c, 2, layer, t0, count);
    const kvc_tensor kt = kvc_test::Tensor3(k.data(), KVC_DTYPE_F16, c.heads, count, c.dim);
    const kvc_tensor vt = kvc_test::Tensor3(v.data(), KVC_DTYPE_F16, c.heads, count, c.dim);
    REQUIRE(kvc_writer_add_layer(w, &kt, &vt, nullptr) == KVC_OK);
  }
  REQUIRE(kvc_writer_finish(w, nullptr, nullptr) == KVC_OK);
  kvc_writer_destroy(w);
}

std::vector<uint8_t> WriteCacheGolden(const CacheGolden& c) {
  kvc_cache_desc desc;
  kvc_cache_desc_init(&desc);
  desc.num_layers = c.layers;
  desc.num_kv_heads = c.heads;
  desc.num_tokens = c.tokens;
  desc.head_dim = c.dim;
  desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  desc.rope_base = 500000.0f;
  desc.position_offset = 7;
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_parse(c.config, std::strlen(c.config), &config, nullptr) == KVC_OK);
  kvc_writer_options o;
  kvc_writer_options_init(&o);
  o.threads = 1;
  o.block_tokens = c.block_tokens;
  o.zstd_level = c.zstd_level;
  o.appendable = c.appendable ? 1 : 0;
  o.model_name = c.model;
  if (c.model != nullptr) o.model_config_hash = kvc_hash64(c.model, std::strlen(c.model));
  std::vector<uint8_t> out;
  kvc_writer* w = nullptr;
  REQUIRE(kvc_writer_create(config, &desc, &o, AppendBytes, &out, &w, nullptr) == KVC_OK);
  kvc_config_destroy(config);
  WriteLayers(c, w, 0, c.tokens);
  if (c.appended > 0) {
    kvc_cache* cache = nullptr;
    REQUIRE(kvc_cache_open(ReadAtBytes, &out, out.size(), nullptr, &cache, nullptr) == KVC_OK);
    std::vector<uint8_t> grown = out;
    REQUIRE(kvc_cache_append(cache, c.appended, &o, AppendBytes, &grown, &w, nullptr) == KVC_OK);
    WriteLayers(c, w, c.tokens, c.appended);
    kvc_cache_close(cache);
    out = grown;
  }
  return out;
}

}  // namespace

TEST_CASE("golden 1.1 caches decode to their recorded output; the writer reproduces them") {
  const std::map<std::string, std::string> manifest = ReadManifest();
  const bool write_missing = std::getenv("KVC_WRITE_MISSING_GOLDEN") != nullptr;
  for (const CacheGolden& c : kCacheGoldens) {
    const std::string file = c.file;
    CAPTURE(file);
    const Golden g{c.file, c.config, c.layers, c.heads, c.tokens + c.appended, c.dim, 0};
    const std::string path = GoldenDir() + "/" + c.file;
    std::vector<uint8_t> golden = ReadFile(path);
    if (golden.empty() && write_missing) {
      golden = WriteCacheGolden(c);
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char*>(golden.data()),
                 static_cast<std::streamsize>(golden.size()));
      MESSAGE(std::string(c.file) << " " << DecodedHash(golden, g) << "  (add to MANIFEST)");
      continue;
    }
    REQUIRE_MESSAGE(!golden.empty(), "golden file missing: " << path);
    REQUIRE_MESSAGE(manifest.count(c.file) == 1, "not in MANIFEST: " << c.file);
    CHECK(DecodedHash(golden, g) == manifest.at(c.file));
    if (c.zstd_level == 0) CHECK(WriteCacheGolden(c) == golden);
    // Random access reads the same values as the whole-stream decoder.
    kvc_cache* cache = nullptr;
    REQUIRE(kvc_cache_open(ReadAtBytes, &golden, golden.size(), nullptr, &cache, nullptr) ==
            KVC_OK);
    kvc_cache_info info;
    kvc_cache_info_init(&info);
    REQUIRE(kvc_cache_get_info(cache, &info, nullptr) == KVC_OK);
    CHECK(info.stream.num_tokens == c.tokens + c.appended);
    CHECK(info.segments == (c.appended > 0 ? 2u : 1u));
    CHECK(info.has_model == (c.model != nullptr ? 1u : 0u));
    kvc_cache_close(cache);
  }
}
