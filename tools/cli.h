// Pieces the kvc commands share: option parsing, kvcodec error reporting,
// configs, and loading a K/V cache from a safetensors file.
#ifndef KVCODEC_TOOLS_CLI_H_
#define KVCODEC_TOOLS_CLI_H_

#include <kvcodec/kvcodec.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tools/safetensors.h"

namespace kvc::tools {

struct OptionSpec {
  std::string_view name;  // "-o", "--preset", ...
  bool takes_value;
};

// The arguments of one command: options from `specs`, given at most once
// each, and positional arguments. Throws Error("COMMAND: <problem>") for an
// unknown option, a repeated one or a missing value.
class Args {
 public:
  Args(std::string_view command, const std::vector<std::string>& args,
       std::initializer_list<OptionSpec> specs);

  bool Has(std::string_view option) const;
  // The option's value; throws if the option was not given.
  const std::string& Get(std::string_view option) const;
  // The option's value as a decimal integer in [min, max], or
  // `default_value` if the option was not given.
  uint64_t GetUint(std::string_view option, uint64_t default_value,
                   uint64_t min, uint64_t max) const;
  // The only positional argument; throws unless there is exactly one.
  const std::string& Positional(std::string_view what) const;
  const std::vector<std::string>& positional() const { return positional_; }
  [[noreturn]] void Fail(const std::string& what) const;

 private:
  std::string command_;
  std::map<std::string, std::string, std::less<>> options_;
  std::vector<std::string> positional_;
};

// Throws Error("CONTEXT: <status string>: <diagnostics>") unless status is
// KVC_OK.
void Check(kvc_status status, const kvc_diagnostics& diag,
           const std::string& context);

struct ConfigDeleter {
  void operator()(kvc_config* config) const { kvc_config_destroy(config); }
};
using ConfigPtr = std::unique_ptr<kvc_config, ConfigDeleter>;

// The config named by --preset NAME or read from --config FILE (exactly one
// of the two must be given), and the name to report it by.
struct LoadedConfig {
  ConfigPtr config;
  std::string json_key;  // "preset" or "config"
  std::string name;      // The preset name or the config file's path.
};
LoadedConfig LoadConfig(const Args& args);

// "F32", "F16" or "BF16" (safetensors' names); nullptr for other values.
const char* DtypeName(uint32_t dtype);
size_t DtypeSize(uint32_t dtype);  // 0 for unknown values.
const char* RopeLayoutName(uint32_t layout);

// "layer3.k" and the like.
std::string LayerTensorName(uint32_t layer, std::string_view suffix);

// The canonical method string of a tensor config ("tq-mse-b4", ...).
std::string MethodString(const kvc_tensor_config& config);

// A contiguous tensor view of caller memory.
kvc_tensor MakeTensor(const void* data, uint32_t dtype,
                      std::initializer_list<uint64_t> shape);

// The keys and values of every layer of a cache, each contiguous
// [layers, kv_heads, tokens, head_dim] in the source dtype.
struct Cache {
  kvc_cache_desc desc;
  std::vector<uint8_t> keys;
  std::vector<uint8_t> values;

  uint64_t ElementsPerLayer() const;  // kv_heads * tokens * head_dim
};

// Reads the tensors layer{L}.k and layer{L}.v (L = 0, 1, ... without gaps,
// [kv_heads, tokens, head_dim], none empty, one shape and dtype for all) and
// the RoPE metadata ("rope_layout" = split-half or interleaved, "rope_theta")
// of `file`. Other tensors are ignored. Throws Error("FILE: <problem>").
Cache LoadCache(const SafetensorsFile& file);

// The queries layer{L}.q of every layer of `cache`, contiguous
// [layers, query_heads, tokens, head_dim] in their dtype: the sample that
// Block-GTQ may use to allocate bits (kvc encode/eval --queries). Throws
// Error("FILE: <problem>") if one is missing or does not fit the cache.
struct Queries {
  std::vector<uint8_t> data;
  kvc_tensor tensor;
};
Queries LoadQueries(const SafetensorsFile& file, const Cache& cache);

// The safetensors metadata `kvc encode` reads (rope_layout, rope_theta) for
// a stream's header.
std::map<std::string, std::string> CacheMetadata(const kvc_stream_info& info);

// Encodes a cache into a kvcodec stream. `name` names the input in errors.
std::vector<uint8_t> EncodeCache(const Cache& cache, const kvc_config* config,
                                 const kvc_encode_options& options,
                                 const std::string& name);

// Reads and checks a stream's header. Throws Error("NAME: <problem>").
kvc_stream_info GetStreamInfo(const std::vector<uint8_t>& stream,
                              const std::string& name);

// Number of elements of K (or of V) of a stream. Throws if they could not be
// held in memory as f32, so that callers may size buffers without overflow.
uint64_t StreamElements(const kvc_stream_info& info, const std::string& name);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_CLI_H_
