#include "tools/kvc_eval.h"

#include <kvcodec/kvcodec.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "tools/error.h"
#include "tools/eval_metrics.h"
#include "tools/json.h"
#include "tools/safetensors.h"

namespace kvc::tools {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Random queries paired with every synthetic vector by kvc_block_scores.
constexpr uint32_t kSyntheticQueries = 16;
constexpr uint64_t kDefaultSeed = 1;

// Whether every layer has a query tensor layer{L}.q; throws if one has a
// shape that does not fit the cache.
bool HasQueries(const SafetensorsFile& file, const kvc_cache_desc& desc) {
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    if (file.Find(LayerTensorName(layer, "q")) == nullptr) return false;
  }
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    const SafetensorsTensor& q = *file.Find(LayerTensorName(layer, "q"));
    if (q.shape.size() != 3 || q.shape[0] == 0 ||
        q.shape[0] % desc.num_kv_heads != 0 || q.shape[1] != desc.num_tokens ||
        q.shape[2] != desc.head_dim) {
      throw Error(file.name() + ": tensor " + q.name + " is not [q_heads, " +
                  std::to_string(desc.num_tokens) + ", " +
                  std::to_string(desc.head_dim) +
                  "] with q_heads a multiple of " +
                  std::to_string(desc.num_kv_heads));
    }
  }
  return true;
}

void WriteAttention(const AttentionError& attention, JsonWriter* json) {
  json->Key("logit_rel_mse").Number(attention.logits.Ratio());
  json->Key("attn_kl").Number(attention.kl_sum /
                              static_cast<double>(attention.kl_count));
}

void EvalCache(const Args& args) {
  for (const char* option : {"--dim", "--count", "--seed"}) {
    if (args.Has(option)) args.Fail(std::string(option) + " needs --synthetic");
  }
  const std::string& input = args.Positional("input .safetensors file");
  const LoadedConfig config = LoadConfig(args);
  const auto threads =
      static_cast<uint32_t>(args.GetUint("--threads", 0, 0, 4096));
  kvc_encode_options encode_options;
  kvc_encode_options_init(&encode_options);
  encode_options.threads = threads;
  kvc_decode_options decode_options;
  kvc_decode_options_init(&decode_options);
  decode_options.threads = threads;

  const SafetensorsFile file = SafetensorsFile::Read(input);
  const Cache cache = LoadCache(file);
  const kvc_cache_desc& desc = cache.desc;
  const bool has_queries = HasQueries(file, desc);
  // --queries lets Block-GTQ allocate bits with the dump's own queries (the
  // same ones the attention metrics use, so it measures the best case).
  Queries queries;
  if (args.Has("--queries")) {
    queries = LoadQueries(file, cache);
    encode_options.queries = &queries.tensor;
  }

  Clock::time_point start = Clock::now();
  const std::vector<uint8_t> stream =
      EncodeCache(cache, config.config.get(), encode_options, input);
  const double encode_seconds = SecondsSince(start);

  const uint64_t layer_elements = cache.ElementsPerLayer();
  std::vector<float> keys(desc.num_layers * layer_elements);
  std::vector<float> values(keys.size());
  const std::initializer_list<uint64_t> shape = {
      desc.num_layers, desc.num_kv_heads, desc.num_tokens, desc.head_dim};
  const kvc_tensor keys_out = MakeTensor(keys.data(), KVC_DTYPE_F32, shape);
  const kvc_tensor values_out = MakeTensor(values.data(), KVC_DTYPE_F32, shape);
  start = Clock::now();
  kvc_diagnostics diag = {};
  Check(kvc_decode_stream(stream.data(), stream.size(), &decode_options,
                          &keys_out, &values_out, &diag),
        diag, input + ": decoding");
  const double decode_seconds = SecondsSince(start);

  struct LayerError {
    ErrorEnergy keys;
    ErrorEnergy values;
    AttentionError attention;
  };
  std::vector<LayerError> layers(desc.num_layers);
  LayerError total;
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    const float* keys_hat = &keys[layer * layer_elements];
    const std::vector<float> k =
        file.ReadFloat32(*file.Find(LayerTensorName(layer, "k")));
    const std::vector<float> v =
        file.ReadFloat32(*file.Find(LayerTensorName(layer, "v")));
    LayerError& error = layers[layer];
    error.keys = CompareValues(k.data(), keys_hat, k.size());
    error.values =
        CompareValues(v.data(), &values[layer * layer_elements], v.size());
    total.keys.Add(error.keys);
    total.values.Add(error.values);
    if (has_queries) {
      const SafetensorsTensor& q_tensor =
          *file.Find(LayerTensorName(layer, "q"));
      const std::vector<float> q = file.ReadFloat32(q_tensor);
      error.attention = CompareAttention(q.data(), k.data(), keys_hat,
                                         {q_tensor.shape[0], desc.num_kv_heads,
                                          desc.num_tokens, desc.head_dim});
      total.attention.logits.Add(error.attention.logits);
      total.attention.kl_sum += error.attention.kl_sum;
      total.attention.kl_count += error.attention.kl_count;
    }
  }

  JsonWriter json;
  json.BeginObject();
  json.Key("input").String(input);
  json.Key(config.json_key).String(config.name);
  json.Key("num_layers").Uint(desc.num_layers);
  json.Key("num_kv_heads").Uint(desc.num_kv_heads);
  json.Key("num_tokens").Uint(desc.num_tokens);
  json.Key("head_dim").Uint(desc.head_dim);
  json.Key("dtype").String(DtypeName(desc.dtype));
  json.Key("bytes").Uint(stream.size());
  json.Key("bits_per_element")
      .Number(8.0 * static_cast<double>(stream.size()) /
              static_cast<double>(2 * keys.size()));
  json.Key("k_rel_mse").Number(total.keys.Ratio());
  json.Key("v_rel_mse").Number(total.values.Ratio());
  if (has_queries) WriteAttention(total.attention, &json);
  json.Key("encode_seconds").Number(encode_seconds);
  json.Key("decode_seconds").Number(decode_seconds);
  json.Key("layers").BeginArray();
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    json.BeginObject();
    json.Key("layer").Uint(layer);
    json.Key("k_rel_mse").Number(layers[layer].keys.Ratio());
    json.Key("v_rel_mse").Number(layers[layer].values.Ratio());
    if (has_queries) WriteAttention(layers[layer].attention, &json);
    json.EndObject();
  }
  json.EndArray().EndObject();
  std::printf("%s\n", json.text().c_str());
}

// `count` random unit vectors of dimension `dim`, [count][dim]: Gaussian
// draws normalised in double. (The draws depend on the C++ library's
// normal_distribution, so they are reproducible per standard library.)
std::vector<float> RandomUnitVectors(size_t count, size_t dim,
                                     std::mt19937_64* rng) {
  std::normal_distribution<double> normal;
  std::vector<float> out(count * dim);
  std::vector<double> x(dim);
  for (size_t i = 0; i < count; ++i) {
    double norm2 = 0;
    for (double& value : x) {
      value = normal(*rng);
      norm2 += value * value;
    }
    const double inv_norm = 1 / std::sqrt(norm2);
    for (size_t d = 0; d < dim; ++d) {
      out[i * dim + d] = static_cast<float>(x[d] * inv_norm);
    }
  }
  return out;
}

void EvalSynthetic(const Args& args) {
  if (args.Get("--synthetic") != "gaussian") {
    args.Fail("--synthetic supports only gaussian");
  }
  if (!args.positional().empty()) {
    args.Fail("--synthetic takes no input file, got " + args.positional()[0]);
  }
  if (args.Has("--threads"))
    args.Fail("--threads is not used with --synthetic");
  if (args.Has("--queries"))
    args.Fail("--queries is not used with --synthetic");
  if (!args.Has("--dim") || !args.Has("--count")) {
    args.Fail("--synthetic needs --dim D and --count N");
  }
  // Bounded so that count x dim floats cannot overflow a size computation.
  const auto dim = static_cast<uint32_t>(args.GetUint("--dim", 0, 1, 1 << 16));
  const auto count =
      static_cast<uint32_t>(args.GetUint("--count", 0, 1, 1 << 24));
  const uint64_t seed = args.GetUint("--seed", kDefaultSeed, 0, UINT64_MAX);
  const LoadedConfig config = LoadConfig(args);
  const std::string context = config.json_key + " " + config.name;

  kvc_tensor_config method;
  kvc_tensor_config_init(&method);
  kvc_diagnostics diag = {};
  Check(kvc_config_layer(config.config.get(), 0, 1, KVC_KIND_KEYS, &method),
        diag, context + ": layer 0 keys");
  const std::string method_name = MethodString(method);

  std::mt19937_64 rng(seed);
  const std::vector<float> x = RandomUnitVectors(count, dim, &rng);
  const std::vector<float> queries =
      RandomUnitVectors(kSyntheticQueries, dim, &rng);

  const size_t bound = kvc_block_bound(&method, 1, count, dim);
  if (bound == 0) {
    throw Error(context + ": method " + method_name + " cannot encode " +
                std::to_string(count) + " vectors of dimension " +
                std::to_string(dim));
  }
  std::vector<uint8_t> block(bound);
  size_t block_size = 0;
  const kvc_tensor input = MakeTensor(x.data(), KVC_DTYPE_F32, {1, count, dim});
  Clock::time_point start = Clock::now();
  Check(kvc_encode_block(&method, 0, KVC_KIND_KEYS, 0, 0, &input, block.data(),
                         block.size(), &block_size, &diag),
        diag, context + ": encoding the block");
  const double encode_seconds = SecondsSince(start);
  block.resize(block_size);

  std::vector<float> x_hat(x.size());
  const kvc_tensor output =
      MakeTensor(x_hat.data(), KVC_DTYPE_F32, {1, count, dim});
  start = Clock::now();
  Check(kvc_decode_block(block.data(), block.size(), &output, &diag), diag,
        context + ": decoding the block");
  const double decode_seconds = SecondsSince(start);

  std::vector<float> scores(size_t{kSyntheticQueries} * count);
  Check(
      kvc_block_scores(block.data(), block.size(), queries.data(),
                       kSyntheticQueries, scores.data(), scores.size(), &diag),
      diag, context + ": scoring the block");

  // Mean squared error; the vectors have unit norm, so it is also relative.
  const double mse =
      CompareValues(x.data(), x_hat.data(), x.size()).error / count;

  // The estimates against the true inner products, over all pairs.
  const size_t pairs = scores.size();
  std::vector<double> truth(pairs);
  double mean_truth = 0;
  double mean_error = 0;
  for (size_t j = 0; j < kSyntheticQueries; ++j) {
    for (size_t i = 0; i < count; ++i) {
      double dot = 0;
      for (size_t d = 0; d < dim; ++d) {
        dot += double{queries[j * dim + d]} * x[i * dim + d];
      }
      truth[j * count + i] = dot;
      mean_truth += dot;
      mean_error += scores[j * count + i] - dot;
    }
  }
  mean_truth /= static_cast<double>(pairs);
  mean_error /= static_cast<double>(pairs);
  double error_var = 0;   // Σ (e − ē)²
  double truth_var = 0;   // Σ (t − t̄)²
  double covariance = 0;  // Σ (t − t̄)(est − mean est)
  const double mean_estimate = mean_truth + mean_error;
  for (size_t p = 0; p < pairs; ++p) {
    const double error = scores[p] - truth[p] - mean_error;
    const double centred_truth = truth[p] - mean_truth;
    error_var += error * error;
    truth_var += centred_truth * centred_truth;
    covariance += centred_truth * (scores[p] - mean_estimate);
  }
  const double ip_var = error_var / static_cast<double>(pairs - 1);

  JsonWriter json;
  json.BeginObject();
  json.Key("synthetic").String("gaussian");
  json.Key("dim").Uint(dim);
  json.Key("count").Uint(count);
  json.Key("seed").Uint(seed);
  json.Key("queries").Uint(kSyntheticQueries);
  json.Key(config.json_key).String(config.name);
  json.Key("method").String(method_name);
  json.Key("bytes").Uint(block.size());
  json.Key("bits_per_element")
      .Number(8.0 * static_cast<double>(block.size()) /
              (static_cast<double>(count) * dim));
  json.Key("rel_mse").Number(mse);
  json.Key("ip_bias").Number(mean_error);
  json.Key("ip_bias_stderr")
      .Number(std::sqrt(ip_var / static_cast<double>(pairs)));
  json.Key("ip_var").Number(ip_var);
  // E<q,x>² = 1/dim for independent random unit vectors.
  json.Key("ip_rel_var").Number(ip_var * dim);
  json.Key("ip_scale").Number(covariance / truth_var);
  json.Key("encode_seconds").Number(encode_seconds);
  json.Key("decode_seconds").Number(decode_seconds);
  json.EndObject();
  std::printf("%s\n", json.text().c_str());
}

}  // namespace

void EvalCommand(const std::vector<std::string>& argv) {
  const Args args("eval", argv,
                  {{"--preset", true},
                   {"--config", true},
                   {"--threads", true},
                   {"--json", false},
                   {"--synthetic", true},
                   {"--dim", true},
                   {"--count", true},
                   {"--seed", true},
                   {"--queries", false}});
  if (!args.Has("--json")) args.Fail("eval prints JSON only: add --json");
  if (args.Has("--synthetic")) {
    EvalSynthetic(args);
  } else {
    EvalCache(args);
  }
}

}  // namespace kvc::tools
