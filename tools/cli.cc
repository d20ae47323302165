#include "tools/cli.h"

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <system_error>

#include "tools/error.h"
#include "tools/file_util.h"

namespace kvc::tools {
namespace {

// The layer number of "layer{L}.k" / "layer{L}.v" (canonical decimal, no
// leading zeros), or false for any other name.
bool ParseLayerName(std::string_view name, uint32_t* layer) {
  constexpr std::string_view kPrefix = "layer";
  if (name.size() < kPrefix.size() + 3 ||
      name.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  const std::string_view suffix = name.substr(name.size() - 2);
  if (suffix != ".k" && suffix != ".v") return false;
  const std::string_view digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - 2);
  if (digits.size() > 1 && digits[0] == '0') return false;
  const char* end = digits.data() + digits.size();
  const auto [ptr, error] = std::from_chars(digits.data(), end, *layer);
  return error == std::errc() && ptr == end;
}

void ReadRopeMetadata(const SafetensorsFile& file, kvc_cache_desc* desc) {
  const auto& metadata = file.metadata();
  if (const auto it = metadata.find("rope_layout"); it != metadata.end()) {
    if (it->second == "split-half") {
      desc->rope_layout = KVC_ROPE_SPLIT_HALF;
    } else if (it->second == "interleaved") {
      desc->rope_layout = KVC_ROPE_INTERLEAVED;
    } else {
      throw Error(file.name() + ": metadata rope_layout is \"" + it->second +
                  "\", not split-half or interleaved");
    }
  }
  if (const auto it = metadata.find("rope_theta"); it != metadata.end()) {
    const std::string& text = it->second;
    double theta = 0;
    const auto [ptr, error] =
        std::from_chars(text.data(), text.data() + text.size(), theta);
    if (error != std::errc() || ptr != text.data() + text.size() ||
        !(theta > 0 && theta <= FLT_MAX)) {
      throw Error(file.name() + ": metadata rope_theta is \"" + text +
                  "\", not a positive number");
    }
    desc->rope_base = static_cast<float>(theta);
  }
}

}  // namespace

Args::Args(std::string_view command, const std::vector<std::string>& args,
           std::initializer_list<OptionSpec> specs)
    : command_(command) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    const auto spec =
        std::find_if(specs.begin(), specs.end(),
                     [&](const OptionSpec& s) { return s.name == arg; });
    if (spec == specs.end()) Fail("unknown option " + arg);
    if (options_.count(arg) != 0) Fail("option " + arg + " given twice");
    std::string value;
    if (spec->takes_value) {
      if (i + 1 == args.size()) Fail("option " + arg + " needs a value");
      value = args[++i];
    }
    options_.emplace(arg, value);
  }
}

void Args::Fail(const std::string& what) const {
  throw Error(command_ + ": " + what + " (see kvc help " + command_ + ")");
}

bool Args::Has(std::string_view option) const {
  return options_.find(option) != options_.end();
}

const std::string& Args::Get(std::string_view option) const {
  const auto it = options_.find(option);
  if (it == options_.end())
    Fail("option " + std::string(option) + " is required");
  return it->second;
}

uint64_t Args::GetUint(std::string_view option, uint64_t default_value,
                       uint64_t min, uint64_t max) const {
  if (!Has(option)) return default_value;
  const std::string& text = Get(option);
  uint64_t value = 0;
  const auto [ptr, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() ||
      ptr != text.data() + text.size() || value < min || value > max) {
    Fail("option " + std::string(option) + " needs an integer from " +
         std::to_string(min) + " to " + std::to_string(max) + ", not \"" +
         text + "\"");
  }
  return value;
}

const std::string& Args::Positional(std::string_view what) const {
  if (positional_.size() != 1) {
    Fail(positional_.empty() ? "missing " + std::string(what)
                             : "unexpected argument " + positional_[1]);
  }
  return positional_[0];
}

void Check(kvc_status status, const kvc_diagnostics& diag,
           const std::string& context) {
  if (status == KVC_OK) return;
  std::string message = context + ": " + kvc_status_string(status);
  if (diag.message[0] != '\0') {
    message += ": ";
    message += diag.message;
  }
  throw Error(message);
}

LoadedConfig LoadConfig(const Args& args) {
  if (args.Has("--preset") == args.Has("--config")) {
    args.Fail("give either --preset NAME or --config FILE");
  }
  LoadedConfig loaded;
  kvc_config* config = nullptr;
  kvc_diagnostics diag = {};
  if (args.Has("--preset")) {
    loaded.json_key = "preset";
    loaded.name = args.Get("--preset");
    Check(kvc_config_from_preset(loaded.name.c_str(), &config, &diag), diag,
          "preset " + loaded.name);
  } else {
    loaded.json_key = "config";
    loaded.name = args.Get("--config");
    const std::vector<uint8_t> text = ReadFile(loaded.name);
    Check(kvc_config_parse(reinterpret_cast<const char*>(text.data()),
                           text.size(), &config, &diag),
          diag, loaded.name);
  }
  loaded.config.reset(config);
  return loaded;
}

const char* DtypeName(uint32_t dtype) {
  switch (dtype) {
    case KVC_DTYPE_F32:
      return "F32";
    case KVC_DTYPE_F16:
      return "F16";
    case KVC_DTYPE_BF16:
      return "BF16";
  }
  return nullptr;
}

size_t DtypeSize(uint32_t dtype) {
  switch (dtype) {
    case KVC_DTYPE_F32:
      return 4;
    case KVC_DTYPE_F16:
      return 2;
    case KVC_DTYPE_BF16:
      return 2;
  }
  return 0;
}

const char* RopeLayoutName(uint32_t layout) {
  switch (layout) {
    case KVC_ROPE_SPLIT_HALF:
      return "split-half";
    case KVC_ROPE_INTERLEAVED:
      return "interleaved";
  }
  return "unknown";
}

std::string LayerTensorName(uint32_t layer, std::string_view suffix) {
  return "layer" + std::to_string(layer) + "." + std::string(suffix);
}

std::string MethodString(const kvc_tensor_config& config) {
  // The first call reports the length, the second writes the string.
  size_t length = 0;
  kvc_tensor_config_format(&config, nullptr, 0, &length);
  std::string text(length + 1, '\0');
  if (kvc_tensor_config_format(&config, text.data(), text.size(), nullptr) !=
      KVC_OK) {
    return "(invalid tensor config)";
  }
  text.resize(length);
  return text;
}

kvc_tensor MakeTensor(const void* data, uint32_t dtype,
                      std::initializer_list<uint64_t> shape) {
  kvc_tensor tensor = {};
  // kvc_tensor serves inputs and outputs alike; inputs are only read.
  tensor.data = const_cast<void*>(data);
  tensor.dtype = dtype;
  tensor.ndim = static_cast<uint32_t>(shape.size());
  std::copy(shape.begin(), shape.end(), tensor.shape);
  return tensor;
}

uint64_t Cache::ElementsPerLayer() const {
  return uint64_t{desc.num_kv_heads} * desc.num_tokens * desc.head_dim;
}

Cache LoadCache(const SafetensorsFile& file) {
  const auto fail = [&file](const std::string& what) {
    throw Error(file.name() + ": " + what);
  };
  uint64_t num_layers = 0;  // 64 bits: "layer4294967295.k" must not wrap.
  for (const SafetensorsTensor& tensor : file.tensors()) {
    uint32_t layer;
    if (ParseLayerName(tensor.name, &layer)) {
      num_layers = std::max(num_layers, uint64_t{layer} + 1);
    }
  }
  if (num_layers == 0)
    fail("no tensors layer0.k, layer0.v, ...: not a KV cache");

  // Every tensor must match the first: checked in order, so the first
  // missing layer is the one reported.
  const SafetensorsTensor* first = nullptr;
  std::vector<const SafetensorsTensor*> tensors;  // k0, v0, k1, v1, ...
  for (uint32_t layer = 0; layer < num_layers; ++layer) {  // Stops at a gap.
    for (const char* suffix : {"k", "v"}) {
      const std::string name = LayerTensorName(layer, suffix);
      const SafetensorsTensor* tensor = file.Find(name);
      if (tensor == nullptr) fail("tensor " + name + " missing");
      if (first == nullptr) {
        first = tensor;
        if (tensor->dtype != "F16" && tensor->dtype != "BF16" &&
            tensor->dtype != "F32") {
          fail("tensor " + name + " has dtype " + tensor->dtype +
               "; kvc encodes F16, BF16 or F32");
        }
        // Empty caches are rejected too: there is nothing to encode, and
        // eval divides by the number of heads.
        if (tensor->shape.size() != 3 ||
            std::any_of(
                tensor->shape.begin(), tensor->shape.end(),
                [](uint64_t dim) { return dim == 0 || dim > UINT32_MAX; })) {
          fail("tensor " + name +
               " is not a [heads, tokens, head_dim] tensor with each "
               "dimension from 1 to 2^32-1");
        }
      } else if (tensor->dtype != first->dtype ||
                 tensor->shape != first->shape) {
        fail("tensor " + name + " differs in dtype or shape from " +
             first->name);
      }
      tensors.push_back(tensor);
    }
  }

  Cache cache;
  kvc_cache_desc_init(&cache.desc);
  cache.desc.num_layers = static_cast<uint32_t>(num_layers);
  cache.desc.num_kv_heads = static_cast<uint32_t>(first->shape[0]);
  cache.desc.num_tokens = static_cast<uint32_t>(first->shape[1]);
  cache.desc.head_dim = static_cast<uint32_t>(first->shape[2]);
  cache.desc.dtype = first->dtype == "F32"   ? KVC_DTYPE_F32
                     : first->dtype == "F16" ? KVC_DTYPE_F16
                                             : KVC_DTYPE_BF16;
  ReadRopeMetadata(file, &cache.desc);

  // Each layer's tensors lie anywhere in the file; copying them together
  // gives the single strided view kvc_encode_stream takes, suitably aligned.
  const size_t layer_bytes = first->end - first->begin;
  cache.keys.resize(num_layers * layer_bytes);
  cache.values.resize(num_layers * layer_bytes);
  for (uint32_t layer = 0; layer < num_layers; ++layer) {
    std::memcpy(&cache.keys[layer * layer_bytes],
                file.Data(*tensors[2 * layer]), layer_bytes);
    std::memcpy(&cache.values[layer * layer_bytes],
                file.Data(*tensors[2 * layer + 1]), layer_bytes);
  }
  return cache;
}

Queries LoadQueries(const SafetensorsFile& file, const Cache& cache) {
  const kvc_cache_desc& desc = cache.desc;
  const SafetensorsTensor* first = nullptr;
  Queries queries;
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    const std::string name = LayerTensorName(layer, "q");
    const SafetensorsTensor* tensor = file.Find(name);
    if (tensor == nullptr) throw Error(file.name() + ": tensor " + name + " missing (--queries)");
    if (first == nullptr) {
      first = tensor;
      if ((tensor->dtype != "F16" && tensor->dtype != "BF16" && tensor->dtype != "F32") ||
          tensor->shape.size() != 3 || tensor->shape[0] == 0 || tensor->shape[1] == 0 ||
          tensor->shape[0] % desc.num_kv_heads != 0 || tensor->shape[1] > UINT32_MAX ||
          tensor->shape[2] != desc.head_dim) {
        throw Error(file.name() + ": tensor " + name +
                    " is not [a multiple of the kv heads, tokens, head_dim] in F16, BF16 "
                    "or F32");
      }
    } else if (tensor->dtype != first->dtype || tensor->shape != first->shape) {
      throw Error(file.name() + ": tensor " + name + " differs in dtype or shape from " +
                  first->name);
    }
    queries.data.insert(queries.data.end(), file.Data(*tensor),
                        file.Data(*tensor) + (tensor->end - tensor->begin));
  }
  const uint32_t dtype = first->dtype == "F32"   ? KVC_DTYPE_F32
                         : first->dtype == "F16" ? KVC_DTYPE_F16
                                                 : KVC_DTYPE_BF16;
  queries.tensor = MakeTensor(queries.data.data(), dtype,
                              {desc.num_layers, first->shape[0], first->shape[1],
                               desc.head_dim});
  return queries;
}

std::vector<uint8_t> EncodeCache(const Cache& cache, const kvc_config* config,
                                 const kvc_encode_options& options,
                                 const std::string& name) {
  const kvc_cache_desc& desc = cache.desc;
  const size_t bound = kvc_stream_bound(config, &desc, &options);
  if (bound == 0) {
    throw Error(name + ": kvcodec cannot encode a cache of " +
                std::to_string(desc.num_layers) + " layers x " +
                std::to_string(desc.num_kv_heads) + " heads x " +
                std::to_string(desc.num_tokens) + " tokens x head_dim " +
                std::to_string(desc.head_dim) +
                " with this config and options");
  }
  const std::initializer_list<uint64_t> shape = {
      desc.num_layers, desc.num_kv_heads, desc.num_tokens, desc.head_dim};
  const kvc_tensor keys = MakeTensor(cache.keys.data(), desc.dtype, shape);
  const kvc_tensor values = MakeTensor(cache.values.data(), desc.dtype, shape);
  std::vector<uint8_t> stream(bound);
  size_t size = 0;
  kvc_diagnostics diag = {};
  Check(kvc_encode_stream(config, &desc, &keys, &values, &options,
                          stream.data(), stream.size(), &size, &diag),
        diag, name + ": encoding");
  stream.resize(size);
  return stream;
}

kvc_stream_info GetStreamInfo(const std::vector<uint8_t>& stream,
                              const std::string& name) {
  kvc_stream_info info;
  kvc_stream_info_init(&info);
  kvc_diagnostics diag = {};
  Check(kvc_get_stream_info(stream.data(), stream.size(), &info, &diag), diag,
        name);
  return info;
}

uint64_t StreamElements(const kvc_stream_info& info, const std::string& name) {
  uint64_t elements = 1;
  for (const uint64_t dim :
       {info.num_layers, info.num_kv_heads, info.num_tokens, info.head_dim}) {
    if (dim != 0 && elements > SIZE_MAX / sizeof(float) / dim) {
      throw Error(name + ": the stream's cache is too large to decode here");
    }
    elements *= dim;
  }
  return elements;
}

std::map<std::string, std::string> CacheMetadata(const kvc_stream_info& info) {
  std::map<std::string, std::string> metadata;
  if (info.rope_layout != KVC_ROPE_UNKNOWN) {
    metadata["rope_layout"] = RopeLayoutName(info.rope_layout);
  }
  if (info.rope_base > 0) {
    char theta[32];
    const auto end = std::to_chars(theta, theta + sizeof(theta), info.rope_base);
    metadata["rope_theta"] = std::string(theta, end.ptr);
  }
  return metadata;
}

}  // namespace kvc::tools
