// kvc: the kvcodec command-line tool. Encodes safetensors KV caches into
// kvcodec streams and back, describes streams and presets, and measures
// quality (kvc_eval.cc). Uses only the public C API.
#include <kvcodec/kvcodec.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tools/bench.h"
#include "tools/bench_attention.h"
#include "tools/cache_commands.h"
#include "tools/cli.h"
#include "tools/error.h"
#include "tools/file_util.h"
#include "tools/json.h"
#include "tools/kvc_eval.h"
#include "tools/safetensors.h"
#include "tools/tune.h"

namespace kvc::tools {
namespace {

struct Command {
  const char* name;
  const char* usage;
  void (*run)(const std::vector<std::string>& args);
};

// The representative cache `kvc presets` sizes every preset for.
constexpr uint32_t kRefLayers = 32;
constexpr uint32_t kRefHeads = 8;
constexpr uint32_t kRefTokens = 4096;
constexpr uint32_t kRefHeadDim = 128;

double BitsPerElement(uint64_t bytes, uint64_t elements) {
  return 8.0 * static_cast<double>(bytes) / static_cast<double>(elements);
}

kvc_decode_options DecodeOptions(const Args& args) {
  kvc_decode_options options;
  kvc_decode_options_init(&options);
  options.threads =
      static_cast<uint32_t>(args.GetUint("--threads", 0, 0, 4096));
  return options;
}

void EncodeCommand(const std::vector<std::string>& argv) {
  const Args args("encode", argv,
                  {{"-o", true},
                   {"--preset", true},
                   {"--config", true},
                   {"--threads", true},
                   {"--block-tokens", true},
                   {"--queries", false}});
  const std::string& input = args.Positional("input .safetensors file");
  const std::string& output = args.Get("-o");
  const LoadedConfig config = LoadConfig(args);
  kvc_encode_options options;
  kvc_encode_options_init(&options);
  options.threads =
      static_cast<uint32_t>(args.GetUint("--threads", 0, 0, 4096));
  options.block_tokens =
      static_cast<uint32_t>(args.GetUint("--block-tokens", 0, 0, UINT32_MAX));

  const SafetensorsFile safetensors = SafetensorsFile::Read(input);
  const Cache cache = LoadCache(safetensors);
  Queries queries;
  if (args.Has("--queries")) {
    queries = LoadQueries(safetensors, cache);
    options.queries = &queries.tensor;
  }
  const std::vector<uint8_t> stream =
      EncodeCache(cache, config.config.get(), options, input);
  AtomicFile file(output);
  file.Write(stream.data(), stream.size());
  file.Commit();

  const kvc_cache_desc& d = cache.desc;
  const uint64_t bytes_in = cache.keys.size() + cache.values.size();
  std::printf(
      "%s: %u layers, %u kv heads, %u tokens, head_dim %u, %s: %llu bytes in, "
      "%zu bytes out, %.4f bits per element\n",
      output.c_str(), d.num_layers, d.num_kv_heads, d.num_tokens, d.head_dim,
      DtypeName(d.dtype), static_cast<unsigned long long>(bytes_in),
      stream.size(),
      BitsPerElement(stream.size(),
                     2 * uint64_t{d.num_layers} * cache.ElementsPerLayer()));
}

void DecodeCommand(const std::vector<std::string>& argv) {
  const Args args("decode", argv, {{"-o", true}, {"--threads", true}});
  const std::string& input = args.Positional("input .kvc file");
  const std::string& output = args.Get("-o");
  const kvc_decode_options options = DecodeOptions(args);

  const std::vector<uint8_t> stream = ReadFile(input);
  const kvc_stream_info info = GetStreamInfo(stream, input);
  const char* dtype = DtypeName(info.dtype);
  if (dtype == nullptr) {
    throw Error(input + ": the stream records source dtype " +
                std::to_string(info.dtype) + ", which kvc cannot write");
  }
  const uint64_t elements = StreamElements(info, input);
  std::vector<uint8_t> keys(elements * DtypeSize(info.dtype));
  std::vector<uint8_t> values(keys.size());
  const std::initializer_list<uint64_t> shape = {
      info.num_layers, info.num_kv_heads, info.num_tokens, info.head_dim};
  const kvc_tensor keys_out = MakeTensor(keys.data(), info.dtype, shape);
  const kvc_tensor values_out = MakeTensor(values.data(), info.dtype, shape);
  kvc_diagnostics diag = {};
  Check(kvc_decode_stream(stream.data(), stream.size(), &options, &keys_out,
                          &values_out, &diag),
        diag, input + ": decoding");

  // Written back with the names and metadata `kvc encode` reads.
  const std::map<std::string, std::string> metadata = CacheMetadata(info);
  const size_t layer_bytes =
      keys.size() / std::max<uint32_t>(info.num_layers, 1);
  std::vector<SafetensorsTensorView> tensors;
  for (uint32_t layer = 0; layer < info.num_layers; ++layer) {
    for (const auto& [suffix, data] :
         {std::pair{"k", keys.data()}, std::pair{"v", values.data()}}) {
      tensors.push_back({LayerTensorName(layer, suffix),
                         dtype,
                         {info.num_kv_heads, info.num_tokens, info.head_dim},
                         data + layer * layer_bytes,
                         layer_bytes});
    }
  }
  WriteSafetensors(output, metadata, tensors);
  std::printf(
      "%s: %u layers, %u kv heads, %u tokens, head_dim %u, %s: %zu bytes in, "
      "%zu bytes out\n",
      output.c_str(), info.num_layers, info.num_kv_heads, info.num_tokens,
      info.head_dim, dtype, stream.size(), keys.size() + values.size());
}

void InfoCommand(const std::vector<std::string>& argv) {
  const Args args("info", argv, {{"--json", false}});
  const std::string& input = args.Positional(".kvc file");
  const std::vector<uint8_t> stream = ReadFile(input);
  const kvc_stream_info info = GetStreamInfo(stream, input);

  struct Layer {
    std::string keys_method;
    std::string values_method;
    uint64_t keys_bytes;
    uint64_t values_bytes;
  };
  std::vector<Layer> layers;
  for (uint32_t layer = 0; layer < info.num_layers; ++layer) {
    kvc_tensor_config keys;
    kvc_tensor_config values;
    kvc_tensor_config_init(&keys);
    kvc_tensor_config_init(&values);
    Layer out;
    kvc_diagnostics diag = {};
    Check(kvc_get_stream_layer(stream.data(), stream.size(), layer, &keys,
                               &values, &out.keys_bytes, &out.values_bytes,
                               &diag),
          diag, input + ": layer " + std::to_string(layer));
    out.keys_method = MethodString(keys);
    out.values_method = MethodString(values);
    layers.push_back(out);
  }
  const double bits =
      BitsPerElement(stream.size(), 2 * StreamElements(info, input));
  const char* dtype = DtypeName(info.dtype);

  if (args.Has("--json")) {
    JsonWriter json;
    json.BeginObject();
    json.Key("file").String(input);
    json.Key("format_version")
        .String(std::to_string(info.format_major) + "." +
                std::to_string(info.format_minor));
    json.Key("num_layers").Uint(info.num_layers);
    json.Key("num_kv_heads").Uint(info.num_kv_heads);
    json.Key("num_tokens").Uint(info.num_tokens);
    json.Key("head_dim").Uint(info.head_dim);
    json.Key("dtype");
    dtype != nullptr ? json.String(dtype) : json.Uint(info.dtype);
    json.Key("rope_layout").String(RopeLayoutName(info.rope_layout));
    json.Key("rope_theta").Number(info.rope_base);
    json.Key("position_offset").Uint(info.position_offset);
    json.Key("bytes").Uint(stream.size());
    json.Key("bits_per_element").Number(bits);
    json.Key("layers").BeginArray();
    for (size_t i = 0; i < layers.size(); ++i) {
      json.BeginObject();
      json.Key("layer").Uint(i);
      json.Key("k_method").String(layers[i].keys_method);
      json.Key("k_bytes").Uint(layers[i].keys_bytes);
      json.Key("v_method").String(layers[i].values_method);
      json.Key("v_bytes").Uint(layers[i].values_bytes);
      json.EndObject();
    }
    json.EndArray().EndObject();
    std::printf("%s\n", json.text().c_str());
    return;
  }

  std::printf("%s: kvcodec stream, format %u.%u, %zu bytes\n", input.c_str(),
              info.format_major, info.format_minor, stream.size());
  std::printf(
      "cache: %u layers, %u kv heads, %u tokens, head_dim %u, source "
      "dtype %s\n",
      info.num_layers, info.num_kv_heads, info.num_tokens, info.head_dim,
      dtype != nullptr ? dtype : "unknown");
  if (info.rope_base > 0) {
    std::printf("rope: %s, theta %g, position offset %u\n",
                RopeLayoutName(info.rope_layout), info.rope_base,
                info.position_offset);
  } else {
    std::printf("rope: %s, theta unknown, position offset %u\n",
                RopeLayoutName(info.rope_layout), info.position_offset);
  }
  std::printf("%5s  %-24s %12s  %-24s %12s\n", "layer", "keys", "bytes",
              "values", "bytes");
  for (size_t i = 0; i < layers.size(); ++i) {
    std::printf("%5zu  %-24s %12llu  %-24s %12llu\n", i,
                layers[i].keys_method.c_str(),
                static_cast<unsigned long long>(layers[i].keys_bytes),
                layers[i].values_method.c_str(),
                static_cast<unsigned long long>(layers[i].values_bytes));
  }
  std::printf("total: %.4f bits per element\n", bits);
}

void PresetsCommand(const std::vector<std::string>& argv) {
  const Args args("presets", argv, {{"--json", false}});
  if (!args.positional().empty()) {
    args.Fail("unexpected argument " + args.positional()[0]);
  }
  kvc_cache_desc desc;
  kvc_cache_desc_init(&desc);
  desc.num_layers = kRefLayers;
  desc.num_kv_heads = kRefHeads;
  desc.num_tokens = kRefTokens;
  desc.head_dim = kRefHeadDim;
  desc.dtype = KVC_DTYPE_F16;
  const uint64_t elements =
      uint64_t{2} * kRefLayers * kRefHeads * kRefTokens * kRefHeadDim;

  struct Preset {
    const char* name;
    const char* description;
    double bits;  // NaN if the preset cannot encode the reference cache.
  };
  std::vector<Preset> presets;
  for (uint32_t i = 0; i < kvc_preset_count(); ++i) {
    Preset preset = {kvc_preset_name(i), kvc_preset_description(i), NAN};
    kvc_config* config = nullptr;
    kvc_diagnostics diag = {};
    Check(kvc_config_from_preset(preset.name, &config, &diag), diag,
          std::string("preset ") + preset.name);
    const ConfigPtr owned(config);
    const size_t bytes = kvc_stream_bound(config, &desc, nullptr);
    if (bytes != 0) preset.bits = BitsPerElement(bytes, elements);
    presets.push_back(preset);
  }

  if (args.Has("--json")) {
    JsonWriter json;
    json.BeginObject();
    json.Key("reference_cache").BeginObject();
    json.Key("num_layers").Uint(kRefLayers);
    json.Key("num_kv_heads").Uint(kRefHeads);
    json.Key("num_tokens").Uint(kRefTokens);
    json.Key("head_dim").Uint(kRefHeadDim);
    json.Key("dtype").String("F16");
    json.EndObject();
    json.Key("presets").BeginArray();
    for (const Preset& preset : presets) {
      json.BeginObject();
      json.Key("name").String(preset.name);
      json.Key("description").String(preset.description);
      json.Key("bits_per_element").Number(preset.bits);
      json.EndObject();
    }
    json.EndArray().EndObject();
    std::printf("%s\n", json.text().c_str());
    return;
  }
  std::printf(
      "Presets and their bits per element: 8 x kvc_stream_bound / elements\n"
      "for an F16 cache of %u layers x %u kv heads x %u tokens x head_dim %u\n"
      "with default options (all overheads included; an upper bound for\n"
      "methods with per-head side information).\n",
      kRefLayers, kRefHeads, kRefTokens, kRefHeadDim);
  for (const Preset& preset : presets) {
    std::printf("  %-14s %7.3f  %s\n", preset.name, preset.bits,
                preset.description);
  }
}

// kvc bench: tools/bench.cc parses its own options and reports its own
// errors (exit status 2).
void BenchCommand(const std::vector<std::string>& args) {
  std::vector<std::string> words = {"bench"};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  const bool attention = std::find(args.begin(), args.end(), "--attention") != args.end();
  const int status = (attention ? RunBenchAttention : RunBench)(static_cast<int>(argv.size()),
                                                                argv.data());
  if (status != 0) std::exit(status);
}

const Command kCommands[] = {
    {"encode",
     "kvc encode IN.safetensors -o OUT.kvc (--preset NAME | --config FILE)\n"
     "           [--threads T] [--block-tokens N] [--queries]\n"
     "  Encodes the tensors layer{L}.k and layer{L}.v ([heads, tokens,\n"
     "  head_dim], F16/BF16/F32) of IN. Metadata rope_layout (split-half or\n"
     "  interleaved) and rope_theta are recorded when present.\n",
     EncodeCommand},
    {"decode",
     "kvc decode IN.kvc -o OUT.safetensors [--threads T]\n"
     "  Decodes a stream into layer{L}.k and layer{L}.v, in the source\n"
     "  dtype the stream records.\n",
     DecodeCommand},
    {"pack",
     "kvc pack IN.safetensors -o OUT.kvc|- (--preset NAME | --config FILE)\n"
     "         [--zstd LEVEL] [--block-tokens 4096] [--threads T] [--sealed]\n"
     "         [--model-name NAME] [--model-config config.json]\n"
     "  Writes a whole cache layer by layer (to stdout with -o -), with a block\n"
     "  index for random access; appendable unless --sealed (which, without\n"
     "  zstd, gives a stream every 1.0 decoder reads). --zstd: the level of the\n"
     "  lossless stage per block, 0 for none (default: the config's, as the\n"
     "  kv-*z presets name one). The model identity is\n"
     "  checked by readers that expect one.\n",
     PackCommand},
    {"unpack",
     "kvc unpack IN.kvc|- -o OUT.safetensors [--dtype f32|f16|bf16]\n"
     "  Writes every layer's layer{L}.k and layer{L}.v (default: the source\n"
     "  dtype); from stdin (-) layer by layer as the stream arrives.\n",
     UnpackCommand},
    {"cat",
     "kvc cat FILE.kvc --layer L --kv k|v [--heads A:B] [--tokens A:B]\n"
     "        -o OUT.safetensors [--dtype f32|f16|bf16]\n"
     "  Decodes one piece of one layer, reading only the blocks that hold it.\n",
     CatCommand},
    {"append",
     "kvc append FILE.kvc NEW.safetensors [--zstd LEVEL] [--block-tokens N]\n"
     "           [--threads T]\n"
     "  Adds the tokens of NEW (layer{L}.k/.v, every layer) to the cache\n"
     "  without rewriting it; a crash leaves the cache as it was.\n",
     AppendCommand},
    {"verify",
     "kvc verify FILE.kvc\n"
     "  Checks every checksum and the whole structure; lists each damaged\n"
     "  block (layer, kind, tokens, bytes) and exits 1 if there is one.\n",
     VerifyCommand},
    {"info",
     "kvc info FILE.kvc [--json]\n"
     "  Describes a stream: format version, cache shape, methods and sizes.\n",
     InfoCommand},
    {"presets",
     "kvc presets [--json]\n"
     "  Lists the built-in presets with their bits per element.\n",
     PresetsCommand},
    {"eval",
     "kvc eval IN.safetensors (--preset NAME | --config FILE) [--threads T] [--queries]\n"
     "         --json\n"
     "  Encodes and decodes a cache; prints bits per element, K and V\n"
     "  relative MSE and, where every layer has layer{L}.q, the attention\n"
     "  logit error and KL divergence.\n"
     "kvc eval --synthetic gaussian --dim D --count N\n"
     "         (--preset NAME | --config FILE) [--seed S] --json\n"
     "  Encodes N random unit vectors as one block with the config's layer-0\n"
     "  K method; prints MSE and inner-product estimator statistics.\n",
     EvalCommand},
    {"tune",
     "kvc tune IN.safetensors --budget BITS -o CONFIG [--candidates M1,M2,...]\n"
     "         [--key-weight 4] [--sample-queries 128] [--no-queries] [--json]\n"
     "  Chooses every layer's K and V method so that the cache fits BITS per\n"
     "  element (all overhead included) with the least attention-output error\n"
     "  at the dump's queries layer{L}.q (or, without them, K/V error); writes\n"
     "  config text for --config. Candidates are method strings with their\n"
     "  options (tq-mse-b3:nc,center,gtq-b4:nc).\n",
     TuneCommand},
    {"bench",
     "kvc bench (--preset NAME ... | --all) [--dim 128] [--heads 8] [--tokens N]\n"
     "          [--block-tokens 4096] [--threads T] [--reps 5] [--target NAME]\n"
     "          [--no-scalar] [--json]\n"
     "  Encode and decode throughput (GB/s of f16 input, medians) against\n"
     "  memcpy on the same buffers, a Highway int8 absmax quantizer and the\n"
     "  scalar target, over a working set larger than the last-level cache.\n"
     "kvc bench --attention (--preset NAME ... | --all) [--context N ...]\n"
     "          [--threads 1] [--dim 128] [--group 4] [--kv-heads 8]\n"
     "          [--block-tokens 4096] [--reps 5] [--kv FILE] [--target NAME] [--warm]\n"
     "          [--spawn] [--json]\n"
     "  One decode step of attention (scores; softmax and weighted values) on\n"
     "  encoded blocks against a Highway f16 baseline in the same run, over a\n"
     "  sample cache (default: the bundled one) tiled to each context (default\n"
     "  4096, 32768, 131072 tokens). --threads 0: one per core, a pool that both\n"
     "  paths share (kvcodec's as a kvc_parallel_runner); --spawn: each call\n"
     "  starts its own threads. Each timed call finds the cache cold (the\n"
     "  last-level cache flushed), as a decode step finds each layer's; --warm\n"
     "  keeps it between calls.\n",
     BenchCommand},
};

void PrintHelp() {
  std::printf("kvc %s: kvcodec command-line tool (SIMD target %s)\n\n",
              kvc_version_string(), kvc_simd_target());
  for (const Command& command : kCommands) std::printf("%s\n", command.usage);
  std::printf("kvc help [COMMAND] | kvc COMMAND --help\n");
}

const Command* FindCommand(std::string_view name) {
  for (const Command& command : kCommands) {
    if (name == command.name) return &command;
  }
  return nullptr;
}

const Command& GetCommand(std::string_view name) {
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    throw Error("unknown command " + std::string(name) + " (see kvc help)");
  }
  return *command;
}

int Run(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) throw Error("no command given (see kvc help)");
  const std::string& name = args[0];
  if (name == "help" || name == "--help" || name == "-h") {
    if (args.size() > 2) throw Error("help takes at most one command");
    if (args.size() == 2) {
      std::printf("%s", GetCommand(args[1]).usage);
    } else {
      PrintHelp();
    }
    return 0;
  }
  const Command& command = GetCommand(name);
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  for (const std::string& arg : rest) {
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", command.usage);
      return 0;
    }
  }
  command.run(rest);
  return 0;
}

}  // namespace
}  // namespace kvc::tools

int main(int argc, char** argv) {
  try {
    return kvc::tools::Run(argc, argv);
  } catch (const kvc::tools::Error& e) {
    std::fprintf(stderr, "kvc: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kvc: out of memory\n");
  }
  return 1;
}
