// The input as config text (kvc_config_parse) and as a method string
// (kvc_tensor_config_parse), through the C API only. Never a crash; what
// parses must format to text that parses back to the same per-layer configs
// and formats to the same text again; a formatted method string parses back
// to the same tensor config. kvc_config_set_layer's overrides survive
// formatting too, and a buffer one byte short is refused with the length.
#include <cstring>
#include <string>
#include <vector>

#include <kvcodec/kvcodec.h>

#include "fuzz_helpers.h"

namespace {

bool SameTensorConfig(const kvc_tensor_config& a, const kvc_tensor_config& b) {
  return a.struct_size == b.struct_size && a.method == b.method && a.bits == b.bits &&
         a.scalar_format == b.scalar_format && a.flags == b.flags &&
         a.rotation == b.rotation && a.seed == b.seed &&
         a.outlier_sixteenths == b.outlier_sixteenths && a.angle_bins == b.angle_bins &&
         a.radius_format == b.radius_format && a.level_bits == b.level_bits &&
         a.min_bits == b.min_bits && a.rope_pairing == b.rope_pairing;
}

std::string FormatConfig(const kvc_config* config) {
  size_t length = 0;
  FUZZ_ASSERT(kvc_config_format(config, nullptr, 0, &length) == KVC_ERR_DST_TOO_SMALL);
  std::vector<char> text(length + 1);
  size_t short_length = 0;
  FUZZ_ASSERT(kvc_config_format(config, text.data(), length, &short_length) ==
              KVC_ERR_DST_TOO_SMALL);
  FUZZ_ASSERT(short_length == length);
  size_t written = 0;
  FUZZ_ASSERT(kvc_config_format(config, text.data(), text.size(), &written) == KVC_OK);
  FUZZ_ASSERT(written == length && text[length] == '\0' && std::strlen(text.data()) == length);
  return std::string(text.data(), length);
}

// A method string through format -> parse -> format: a fixed point.
void CheckTensorRoundTrip(const kvc_tensor_config& config) {
  size_t length = 0;
  FUZZ_ASSERT(kvc_tensor_config_format(&config, nullptr, 0, &length) ==
              KVC_ERR_DST_TOO_SMALL);
  std::vector<char> text(length + 1);
  FUZZ_ASSERT(kvc_tensor_config_format(&config, text.data(), text.size(), nullptr) == KVC_OK);
  FUZZ_ASSERT(std::strlen(text.data()) == length);
  kvc_tensor_config again;
  kvc_tensor_config_init(&again);
  kvc_diagnostics diag;
  if (kvc_tensor_config_parse(text.data(), &again, &diag) != KVC_OK) {
    std::fprintf(stderr, "'%s' does not parse: %s\n", text.data(), diag.message);
    FUZZ_ASSERT(false);
  }
  FUZZ_ASSERT(SameTensorConfig(config, again));
  std::vector<char> text2(length + 1);
  FUZZ_ASSERT(kvc_tensor_config_format(&again, text2.data(), text2.size(), nullptr) ==
              KVC_OK);
  FUZZ_ASSERT(text == text2);
}

// Both configs give every layer of a few cache depths the same K and V
// configs (or fail alike), and each of those round-trips as a method string.
void CheckSameLayers(const kvc_config* a, const kvc_config* b, uint32_t extra_depth) {
  const uint32_t depths[] = {1, 2, 3, 4, 7, 32, 80, 65535, 4000000000u, extra_depth};
  for (uint32_t depth : depths) {
    if (depth == 0) continue;
    // The first 40 layers and the last 8.
    for (uint64_t layer = 0; layer < depth; ++layer) {
      if (layer == 40 && depth > 48) layer = depth - 8;
      for (kvc_kind kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
        kvc_tensor_config ca, cb;
        kvc_tensor_config_init(&ca);
        kvc_tensor_config_init(&cb);
        const kvc_status sa =
            kvc_config_layer(a, static_cast<uint32_t>(layer), depth, kind, &ca);
        const kvc_status sb =
            kvc_config_layer(b, static_cast<uint32_t>(layer), depth, kind, &cb);
        FUZZ_ASSERT(sa == sb);
        if (sa != KVC_OK) continue;
        FUZZ_ASSERT(SameTensorConfig(ca, cb));
        if (depth <= 4) CheckTensorRoundTrip(ca);
      }
    }
  }
}

void CheckConfigRoundTrip(const kvc_config* config, uint32_t extra_depth) {
  const std::string text = FormatConfig(config);
  kvc_config* again = nullptr;
  kvc_diagnostics diag;
  if (kvc_config_parse(text.data(), text.size(), &again, &diag) != KVC_OK) {
    std::fprintf(stderr, "formatted config does not parse: %s\n%s", diag.message,
                 text.c_str());
    FUZZ_ASSERT(false);
  }
  FUZZ_ASSERT(FormatConfig(again) == text);
  CheckSameLayers(config, again, extra_depth);
  kvc_config_destroy(again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  // A cache depth of the input's choosing, beside the fixed ones.
  uint32_t extra_depth = 0;
  for (size_t i = 0; i < size && i < 4; ++i) extra_depth = (extra_depth << 8) | data[i];

  kvc_diagnostics diag;
  kvc_config* config = nullptr;
  const kvc_status s = kvc_config_parse(text, size, &config, &diag);
  if (s == KVC_OK) {
    FUZZ_ASSERT(config != nullptr && diag.message[0] == '\0');
    CheckConfigRoundTrip(config, extra_depth);
    // An override of one layer (the last byte picks it) with layer 0's keys
    // config, or the default, survives formatting as well.
    kvc_tensor_config layer0;
    kvc_tensor_config_init(&layer0);
    (void)kvc_config_layer(config, 0, 1, KVC_KIND_KEYS, &layer0);
    const uint32_t layer = size ? data[size - 1] % 8 : 0;
    const kvc_kind kind = size && (data[size - 1] & 8) ? KVC_KIND_VALUES : KVC_KIND_KEYS;
    FUZZ_ASSERT(kvc_config_set_layer(config, layer, kind, &layer0) == KVC_OK);
    kvc_tensor_config check;
    kvc_tensor_config_init(&check);
    FUZZ_ASSERT(kvc_config_layer(config, layer, layer + 1, kind, &check) == KVC_OK);
    FUZZ_ASSERT(SameTensorConfig(check, layer0));
    CheckConfigRoundTrip(config, extra_depth);
    kvc_config_destroy(config);
  } else {
    FUZZ_ASSERT(config == nullptr && diag.message[0] != '\0');
    FUZZ_ASSERT(std::memchr(diag.message, '\0', sizeof(diag.message)) != nullptr);
  }

  // Scopes against their definition, at cache depths up to 2^32 - 1: the
  // first bytes choose the depth, a count and a layer.
  if (size >= 12) {
    uint32_t count = 0, layer = 0;
    for (size_t i = 4; i < 8; ++i) count = (count << 8) | data[i];
    for (size_t i = 8; i < 12; ++i) layer = (layer << 8) | data[i];
    count %= 1000000000;  // config text takes at most 9 digits
    const uint32_t depth = extra_depth | 1;
    layer %= depth;
    for (const char* scope : {"first", "last"}) {
      const std::string rules = std::string("all kv=raw-f16\n") + scope + " " +
                                std::to_string(count) + " kv=raw-bf16\n";
      kvc_config* scoped = nullptr;
      FUZZ_ASSERT(kvc_config_parse(rules.data(), rules.size(), &scoped, &diag) == KVC_OK);
      kvc_tensor_config c;
      kvc_tensor_config_init(&c);
      FUZZ_ASSERT(kvc_config_layer(scoped, layer, depth, KVC_KIND_KEYS, &c) == KVC_OK);
      const bool covered = scope[0] == 'f' ? layer < count
                                           : uint64_t{layer} + count >= depth;
      FUZZ_ASSERT(c.scalar_format == (covered ? KVC_DTYPE_BF16 : KVC_DTYPE_F16));
      kvc_config_destroy(scoped);
    }
  }

  // The input up to its first NUL (at most 256 bytes) as a method string.
  const std::string method(text, strnlen(text, size < 256 ? size : 256));
  kvc_tensor_config tensor;
  kvc_tensor_config_init(&tensor);
  if (kvc_tensor_config_parse(method.c_str(), &tensor, &diag) == KVC_OK) {
    CheckTensorRoundTrip(tensor);
    // Usable wherever a config is: as a whole config's rule.
    const std::string rule = "all kv=" + method + "\n";
    kvc_config* one = nullptr;
    FUZZ_ASSERT(kvc_config_parse(rule.data(), rule.size(), &one, &diag) == KVC_OK);
    kvc_tensor_config resolved;
    kvc_tensor_config_init(&resolved);
    FUZZ_ASSERT(kvc_config_layer(one, 0, 1, KVC_KIND_VALUES, &resolved) == KVC_OK);
    FUZZ_ASSERT(SameTensorConfig(resolved, tensor));
    kvc_config_destroy(one);
  } else {
    FUZZ_ASSERT(diag.message[0] != '\0');
  }
  return 0;
}
