// Cache configs: which tensor config each layer's K and V use. A config is an
// ordered list of rules ("all", "first N", "last N", "layer N", "layers A-B"),
// later rules overriding earlier ones, so one config fits models of any depth.
// Presets are configs written in the same text form (FORMAT.md, "Config text").
#ifndef KVCODEC_CODEC_CONFIG_CONFIG_H_
#define KVCODEC_CODEC_CONFIG_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

struct ConfigRule {
  enum class Scope { kAll, kFirst, kLast, kRange };
  Scope scope = Scope::kAll;
  uint32_t first = 0, last = 0;  // kFirst/kLast: count in `first`; kRange: [first, last]
  std::optional<kvc_tensor_config> keys, values;

  bool Covers(uint32_t layer, uint32_t num_layers) const;
};

class CacheConfig {
 public:
  static Status Parse(const std::string& text, CacheConfig* out);
  static Status FromPreset(const std::string& name, CacheConfig* out);

  std::string Format() const;
  // The zstd level (1..19) that caches written with this config store their
  // blocks with unless the writer's options choose; 0: none. A lossless
  // stage for caches at rest and on the wire (FORMAT.md §3.7): a single
  // block (kvc_encode_block) is fixed-rate whatever it says.
  int zstd_level() const { return zstd_level_; }
  void SetLayer(uint32_t layer, kvc_kind kind, const kvc_tensor_config& config);
  Status Resolve(uint32_t layer, uint32_t num_layers, kvc_kind kind,
                 kvc_tensor_config* out) const;

 private:
  std::vector<ConfigRule> rules_;
  int zstd_level_ = 0;
};

struct Preset {
  const char* name;
  const char* description;
  const char* config_text;
};
const std::vector<Preset>& Presets();

}  // namespace kvc

#endif  // KVCODEC_CODEC_CONFIG_CONFIG_H_
