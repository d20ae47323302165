// kvc tune: per-layer allocation of methods and bits under a budget.
//
// 1. Every layer's K and V is encoded and decoded with every candidate
//    method (a ladder from about 2 to 16 bits), giving its exact size and
//    its decoded values.
// 2. Each (tensor, candidate) gets a cost: with the dump's queries
//    (layer{L}.q), the relative error of the attention output at a sample
//    of query positions when only that tensor is decoded (K: exact values,
//    decoded keys; V: exact keys, decoded values). That error carries both
//    the logit error of keys (through the softmax) and the value error, as
//    attention sees them. Without queries the surrogate is the tensor's own
//    relative squared error Σ‖x − x̂‖² / Σ‖x‖². Key costs are multiplied by
//    --key-weight (4): a key error moves attention between tokens, which
//    the model downstream feels more than value noise of the same size (on
//    kvlab-A, 4 to 5 times per unit of attention-output error).
// 3. Errors of different tensors add up (they are independent), so the
//    allocation is a multiple-choice knapsack: starting from every tensor's
//    cheapest candidate, repeatedly take the upgrade with the largest cost
//    decrease per added byte (on each tensor's lower convex hull) that still
//    fits.
// 4. The chosen config is encoded as a whole stream to measure its size,
//    every header included; while that exceeds the budget, the block budget
//    shrinks by the difference and step 3 runs again.
#include "tools/tune.h"

#include <kvcodec/kvcodec.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "tools/error.h"
#include "tools/file_util.h"
#include "tools/json.h"
#include "tools/safetensors.h"

namespace kvc::tools {
namespace {

// From about 2 to 16 bits per element. Norm correction (nc) everywhere: it
// costs nothing and lowers the error of every TurboQuant method. Block-GTQ
// (gtq-) candidates matter for keys, whose RoPE pairs differ in energy.
// Centered (center) candidates matter for keys too, whose per-head offset
// holds much of their energy; each costs d means per head and block.
// Candidates a head_dim cannot take (outlier splits need multiples of 16)
// are skipped.
constexpr const char* kDefaultCandidates =
    "tq-mse-b1:nc,tq-mse-b2:nc,gtq-b2:nc,tq-mse-b2.5:nc,tq-mse-b3:nc,gtq-b3:nc,"
    "tq-mse-b3.5:nc,tq-mse-b4:nc,gtq-b4:nc,tq-mse-b4.5:nc,tq-mse-b5:nc,gtq-b5:nc,"
    "tq-mse-b5.5:nc,tq-mse-b6:nc,gtq-b6:nc,tq-mse-b7:nc,tq-mse-b8:nc,raw-f16,"
    "tq-mse-b1:nc,center,tq-mse-b2:nc,center,gtq-b2:nc,center,tq-mse-b2.5:nc,center,"
    "tq-mse-b3:nc,center,gtq-b3:nc,center,tq-mse-b3.5:nc,center,tq-mse-b4:nc,center,"
    "gtq-b4:nc,center,tq-mse-b4.5:nc,center,tq-mse-b5:nc,center,gtq-b5:nc,center,"
    "tq-mse-b5.5:nc,center,tq-mse-b6:nc,center,tq-mse-b7:nc,center";

constexpr double kDefaultKeyWeight = 4.0;
constexpr uint64_t kDefaultSampleQueries = 128;

struct Candidate {
  std::string method;  // As given; the config text uses the canonical form.
  kvc_tensor_config config;
};

// One candidate for one tensor (a layer's K or V).
struct Option {
  size_t candidate;
  uint64_t bytes;
  double cost;
};

// printf into a std::string.
template <typename... T>
std::string StrPrintf(const char* format, T... values) {
  const int size = std::snprintf(nullptr, 0, format, values...);
  std::string text(static_cast<size_t>(std::max(size, 0)) + 1, '\0');
  std::snprintf(text.data(), text.size(), format, values...);
  text.pop_back();
  return text;
}

// Method strings separated by commas. Options also take commas
// ("tq-mse-b3:nc,center"), but every method string has a '-' and no option
// does: a piece without one continues the method before it.
std::vector<std::string> SplitMethods(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    if (item.find('-') == std::string::npos && !items.empty()) {
      items.back() += "," + item;
    } else {
      items.push_back(item);
    }
  }
  return items;
}

// Exact attention at a sample of query positions of one layer: the
// reference against which decoded keys or values are judged.
class AttentionProbe {
 public:
  // q [q_heads][T][d], k and v [kv_heads][T][d].
  AttentionProbe(const float* q, const float* k, const float* v,
                 uint32_t q_heads, uint32_t kv_heads, uint32_t tokens,
                 uint32_t dim, uint32_t samples)
      : q_(q), k_(k), v_(v), q_heads_(q_heads), kv_heads_(kv_heads),
        tokens_(tokens), dim_(dim) {
    // Evenly spread positions, the last token always among them, so that
    // short and long contexts are both represented.
    const uint32_t count = std::min(samples, tokens);
    for (uint32_t r = 0; r < count; ++r) {
      rows_.push_back(static_cast<uint32_t>((uint64_t{r} + 1) * tokens / count - 1));
    }
    probs_.resize(size_t{q_heads} * rows_.size() * tokens);
    outputs_.resize(size_t{q_heads} * rows_.size() * dim);
    for (uint32_t h = 0; h < q_heads_; ++h) {
      for (size_t r = 0; r < rows_.size(); ++r) {
        float* p = Probs(h, r);
        Softmax(h, rows_[r], k_, p);
        Mix(h, rows_[r], p, v_, Output(h, r));
      }
    }
    for (float x : outputs_) output_energy_ += double{x} * x;
  }

  // Relative attention-output error with decoded keys and exact values.
  double KeyCost(const float* k_hat) const {
    std::vector<float> p(tokens_), o(dim_);
    double error = 0;
    for (uint32_t h = 0; h < q_heads_; ++h) {
      for (size_t r = 0; r < rows_.size(); ++r) {
        Softmax(h, rows_[r], k_hat, p.data());
        Mix(h, rows_[r], p.data(), v_, o.data());
        error += Distance(o.data(), Output(h, r));
      }
    }
    return error / output_energy_;
  }

  // Relative attention-output error with exact keys and decoded values.
  double ValueCost(const float* v_hat) const {
    std::vector<float> o(dim_);
    double error = 0;
    for (uint32_t h = 0; h < q_heads_; ++h) {
      for (size_t r = 0; r < rows_.size(); ++r) {
        Mix(h, rows_[r], Probs(h, r), v_hat, o.data());
        error += Distance(o.data(), Output(h, r));
      }
    }
    return error / output_energy_;
  }

 private:
  uint32_t KvHead(uint32_t h) const { return h / (q_heads_ / kv_heads_); }
  const float* Row(const float* x, uint32_t head, uint32_t t) const {
    return x + (size_t{head} * tokens_ + t) * dim_;
  }
  float* Probs(uint32_t h, size_t r) {
    return probs_.data() + (size_t{h} * rows_.size() + r) * tokens_;
  }
  const float* Probs(uint32_t h, size_t r) const {
    return probs_.data() + (size_t{h} * rows_.size() + r) * tokens_;
  }
  float* Output(uint32_t h, size_t r) {
    return outputs_.data() + (size_t{h} * rows_.size() + r) * dim_;
  }
  const float* Output(uint32_t h, size_t r) const {
    return outputs_.data() + (size_t{h} * rows_.size() + r) * dim_;
  }

  // Causal softmax of query (h, t) over keys 0..t of `keys`, into p[0..t].
  void Softmax(uint32_t h, uint32_t t, const float* keys, float* p) const {
    const float* q = Row(q_, h, t);
    const float scale = 1.0f / std::sqrt(static_cast<float>(dim_));
    float max = -INFINITY;
    for (uint32_t s = 0; s <= t; ++s) {
      const float* k = Row(keys, KvHead(h), s);
      float dot = 0;
      for (uint32_t j = 0; j < dim_; ++j) dot += q[j] * k[j];
      p[s] = dot * scale;
      max = std::max(max, p[s]);
    }
    double sum = 0;
    for (uint32_t s = 0; s <= t; ++s) {
      p[s] = std::exp(p[s] - max);
      sum += p[s];
    }
    for (uint32_t s = 0; s <= t; ++s) p[s] = static_cast<float>(p[s] / sum);
  }

  // o = Σ_{s<=t} p[s] values[s].
  void Mix(uint32_t h, uint32_t t, const float* p, const float* values,
           float* o) const {
    std::fill(o, o + dim_, 0.0f);
    for (uint32_t s = 0; s <= t; ++s) {
      const float* v = Row(values, KvHead(h), s);
      for (uint32_t j = 0; j < dim_; ++j) o[j] += p[s] * v[j];
    }
  }

  double Distance(const float* a, const float* b) const {
    double sum = 0;
    for (uint32_t j = 0; j < dim_; ++j) {
      const double d = double{a[j]} - b[j];
      sum += d * d;
    }
    return sum;
  }

  const float *q_, *k_, *v_;
  uint32_t q_heads_, kv_heads_, tokens_, dim_;
  std::vector<uint32_t> rows_;
  std::vector<float> probs_, outputs_;
  double output_energy_ = 0;
};

double RelativeError(const std::vector<float>& x, const std::vector<float>& x_hat) {
  double error = 0, energy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double{x[i]} - x_hat[i];
    error += d * d;
    energy += double{x[i]} * x[i];
  }
  return energy > 0 ? error / energy : 0;
}

// Options on the lower convex hull of (bytes, cost), cheapest first: the
// only ones a greedy upgrade path should visit.
std::vector<Option> LowerHull(std::vector<Option> options) {
  std::sort(options.begin(), options.end(), [](const Option& a, const Option& b) {
    return a.bytes != b.bytes ? a.bytes < b.bytes : a.cost < b.cost;
  });
  std::vector<Option> hull;
  for (const Option& o : options) {
    if (!hull.empty() && o.cost >= hull.back().cost) continue;  // dominated
    if (!hull.empty() && o.bytes == hull.back().bytes) hull.pop_back();
    while (hull.size() >= 2) {
      const Option& a = hull[hull.size() - 2];
      const Option& b = hull.back();
      // b lies on or above the segment a-o: drop it.
      const double slope_ab = (a.cost - b.cost) / static_cast<double>(b.bytes - a.bytes);
      const double slope_ao = (a.cost - o.cost) / static_cast<double>(o.bytes - a.bytes);
      if (slope_ab > slope_ao) break;
      hull.pop_back();
    }
    hull.push_back(o);
  }
  return hull;
}

// Greedy multiple-choice knapsack over hulls: returns the hull index chosen
// per tensor. `budget` counts block bytes.
std::vector<size_t> Allocate(const std::vector<std::vector<Option>>& hulls,
                             uint64_t budget) {
  std::vector<size_t> choice(hulls.size(), 0);
  uint64_t spent = 0;
  for (const auto& hull : hulls) spent += hull[0].bytes;
  for (;;) {
    size_t best = hulls.size();
    double best_rate = 0;
    for (size_t i = 0; i < hulls.size(); ++i) {
      if (choice[i] + 1 >= hulls[i].size()) continue;
      const Option& now = hulls[i][choice[i]];
      const Option& next = hulls[i][choice[i] + 1];
      if (spent - now.bytes + next.bytes > budget) continue;
      const double rate = (now.cost - next.cost) / static_cast<double>(next.bytes - now.bytes);
      if (best == hulls.size() || rate > best_rate) {
        best = i;
        best_rate = rate;
      }
    }
    if (best == hulls.size()) return choice;
    spent += hulls[best][choice[best] + 1].bytes - hulls[best][choice[best]].bytes;
    ++choice[best];
  }
}

std::string ConfigText(const std::vector<std::string>& keys,
                       const std::vector<std::string>& values,
                       const std::string& comment) {
  // The most common K and V methods form an "all" rule, so that the config
  // also runs on a cache of another depth; the layers that differ follow.
  auto most_common = [](const std::vector<std::string>& methods) {
    std::map<std::string, size_t> count;
    for (const std::string& m : methods) ++count[m];
    return std::max_element(count.begin(), count.end(), [](const auto& a, const auto& b) {
             return a.second < b.second;
           })->first;
  };
  const std::string all_k = most_common(keys), all_v = most_common(values);
  std::string text = "kvcodec-config 1\n" + comment;
  text += all_k == all_v ? "all kv=" + all_k + "\n" : "all k=" + all_k + " v=" + all_v + "\n";
  for (size_t layer = 0; layer < keys.size(); ++layer) {
    const bool k = keys[layer] != all_k, v = values[layer] != all_v;
    if (!k && !v) continue;
    text += "layer " + std::to_string(layer);
    if (k && v && keys[layer] == values[layer]) {
      text += " kv=" + keys[layer];
    } else {
      if (k) text += " k=" + keys[layer];
      if (v) text += " v=" + values[layer];
    }
    text += "\n";
  }
  return text;
}

ConfigPtr ParseConfig(const std::string& text) {
  kvc_config* config = nullptr;
  kvc_diagnostics diag = {};
  Check(kvc_config_parse(text.data(), text.size(), &config, &diag), diag,
        "tuned config");
  return ConfigPtr(config);
}

}  // namespace

void TuneCommand(const std::vector<std::string>& argv) {
  const auto start = std::chrono::steady_clock::now();
  const Args args("tune", argv,
                  {{"-o", true},
                   {"--budget", true},
                   {"--candidates", true},
                   {"--key-weight", true},
                   {"--sample-queries", true},
                   {"--no-queries", false},
                   {"--json", false}});
  const std::string& input = args.Positional("input .safetensors file");
  const std::string& output = args.Get("-o");
  const std::string& budget_text = args.Get("--budget");
  char* end = nullptr;
  const double budget = std::strtod(budget_text.c_str(), &end);
  if (budget_text.empty() || *end != '\0' || !(budget > 0 && budget <= 64)) {
    args.Fail("--budget must be bits per element, a number in (0, 64], not '" +
              budget_text + "'");
  }
  double key_weight = kDefaultKeyWeight;
  if (args.Has("--key-weight")) {
    const std::string& text = args.Get("--key-weight");
    key_weight = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !(key_weight > 0 && key_weight < 1e6)) {
      args.Fail("--key-weight must be a positive number, not '" + text + "'");
    }
  }
  const uint32_t samples = static_cast<uint32_t>(
      args.GetUint("--sample-queries", kDefaultSampleQueries, 1, 1u << 20));

  const SafetensorsFile file = SafetensorsFile::Read(input);
  const Cache cache = LoadCache(file);
  const kvc_cache_desc& desc = cache.desc;
  const uint32_t layers = desc.num_layers, heads = desc.num_kv_heads;
  const uint32_t tokens = desc.num_tokens, dim = desc.head_dim;
  const uint64_t per_layer = cache.ElementsPerLayer();
  const uint64_t elements = 2 * uint64_t{layers} * per_layer;

  // Queries: used when every layer has them (LoadQueries checks their
  // shapes and throws on a malformed one), unless --no-queries.
  bool has_queries = !args.Has("--no-queries");
  for (uint32_t layer = 0; has_queries && layer < layers; ++layer) {
    has_queries = file.Find(LayerTensorName(layer, "q")) != nullptr;
  }
  uint32_t q_heads = 0;
  if (has_queries) q_heads = static_cast<uint32_t>(LoadQueries(file, cache).tensor.shape[1]);

  std::vector<Candidate> candidates;
  for (const std::string& method :
       SplitMethods(args.Has("--candidates") ? args.Get("--candidates") : kDefaultCandidates)) {
    Candidate c{method, {}};
    kvc_tensor_config_init(&c.config);
    kvc_diagnostics diag = {};
    Check(kvc_tensor_config_parse(method.c_str(), &c.config, &diag), diag,
          "--candidates " + method);
    // Block-GTQ pairs the cache's RoPE dimensions; an interleaved cache
    // says so in its metadata, and the config must then say it too.
    if (c.config.method == KVC_METHOD_BLOCKGTQ && c.config.rope_pairing == KVC_ROPE_UNKNOWN &&
        desc.rope_layout == KVC_ROPE_INTERLEAVED) {
      c.config.rope_pairing = KVC_ROPE_INTERLEAVED;
    }
    candidates.push_back(c);
  }
  if (candidates.empty()) args.Fail("--candidates lists no method");

  // Steps 1-2: sizes and costs of every candidate on every tensor.
  std::vector<std::vector<Option>> hulls;  // Index 2 * layer + (0: K, 1: V).
  std::vector<uint8_t> block;
  std::vector<float> decoded(per_layer);
  for (uint32_t layer = 0; layer < layers; ++layer) {
    const std::vector<float> k = file.ReadFloat32(*file.Find(LayerTensorName(layer, "k")));
    const std::vector<float> v = file.ReadFloat32(*file.Find(LayerTensorName(layer, "v")));
    std::vector<float> q;
    std::unique_ptr<AttentionProbe> probe;
    if (has_queries) {
      q = file.ReadFloat32(*file.Find(LayerTensorName(layer, "q")));
      probe = std::make_unique<AttentionProbe>(q.data(), k.data(), v.data(), q_heads,
                                               heads, tokens, dim, samples);
    }
    for (const kvc_kind kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
      const uint8_t* source = (kind == KVC_KIND_KEYS ? cache.keys : cache.values).data() +
                              layer * per_layer * DtypeSize(desc.dtype);
      const kvc_tensor in = MakeTensor(source, desc.dtype, {heads, tokens, dim});
      const kvc_tensor out = MakeTensor(decoded.data(), KVC_DTYPE_F32, {heads, tokens, dim});
      std::vector<Option> options;
      for (size_t c = 0; c < candidates.size(); ++c) {
        const size_t bound = kvc_block_bound(&candidates[c].config, heads, tokens, dim);
        if (bound == 0) continue;  // Not for this head_dim (or too large).
        block.resize(bound);
        size_t size = 0;
        kvc_diagnostics diag = {};
        const kvc_status status = kvc_encode_block(&candidates[c].config, layer, kind, 0, 0,
                                                   &in, block.data(), block.size(), &size, &diag);
        if (status == KVC_ERR_INVALID_ARGUMENT) continue;  // Head_dim rules (§5.1).
        Check(status, diag, input + ": layer " + std::to_string(layer) + " " +
                                candidates[c].method);
        Check(kvc_decode_block(block.data(), size, &out, &diag), diag,
              input + ": decoding layer " + std::to_string(layer));
        const bool keys = kind == KVC_KIND_KEYS;
        double cost = probe ? (keys ? probe->KeyCost(decoded.data())
                                    : probe->ValueCost(decoded.data()))
                            : RelativeError(keys ? k : v, decoded);
        if (keys) cost *= key_weight;
        options.push_back({c, size, cost});
      }
      if (options.empty()) {
        throw Error("no candidate method can encode layer " + std::to_string(layer) +
                    " (head_dim " + std::to_string(dim) + ")");
      }
      hulls.push_back(LowerHull(options));
    }
  }

  // Steps 3-4: allocate, measure the whole stream, shrink until it fits.
  const double target_bytes = budget * static_cast<double>(elements) / 8;
  uint64_t least = 0;
  for (const auto& hull : hulls) least += hull[0].bytes;
  double block_budget = target_bytes;
  std::vector<size_t> choice;
  std::string text;
  size_t stream_bytes = 0;
  for (int attempt = 0;; ++attempt) {
    if (block_budget < static_cast<double>(least) || attempt == 16) {
      throw Error(StrPrintf("a budget of %g bits per element is below what the cheapest "
                            "candidates take (%.4f bits per element with every header)",
                            budget, 8.0 * static_cast<double>(least) /
                                        static_cast<double>(elements)));
    }
    choice = Allocate(hulls, static_cast<uint64_t>(block_budget));
    std::vector<std::string> keys, values;
    for (uint32_t layer = 0; layer < layers; ++layer) {
      for (int kind = 0; kind < 2; ++kind) {
        const Option& o = hulls[2 * layer + kind][choice[2 * layer + kind]];
        (kind == 0 ? keys : values).push_back(MethodString(candidates[o.candidate].config));
      }
    }
    text = ConfigText(keys, values, "");
    const ConfigPtr config = ParseConfig(text);
    kvc_encode_options options;
    kvc_encode_options_init(&options);
    stream_bytes = EncodeCache(cache, config.get(), options, input).size();
    if (static_cast<double>(stream_bytes) <= target_bytes) break;
    block_budget -= static_cast<double>(stream_bytes) - target_bytes;
  }
  const double bits = 8.0 * static_cast<double>(stream_bytes) / static_cast<double>(elements);
  double total_cost = 0;
  for (size_t i = 0; i < hulls.size(); ++i) total_cost += hulls[i][choice[i]].cost;
  const std::string measure =
      has_queries ? StrPrintf("relative attention-output error at %u query positions per "
                              "layer (keys x %g)", std::min(samples, tokens), key_weight)
                  : StrPrintf("relative squared error of K and V (keys x %g); the dump has "
                              "no queries", key_weight);
  const std::string comment =
      StrPrintf("# kvc tune --budget %g: %.4f bits per element on %s\n# cost: %s\n",
                budget, bits, input.c_str(), measure.c_str());
  text.insert(text.find('\n') + 1, comment);
  ParseConfig(text);  // The comment must not break it.
  AtomicFile out_file(output);
  out_file.Write(text.data(), text.size());
  out_file.Commit();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (args.Has("--json")) {
    JsonWriter json;
    json.BeginObject();
    json.Key("input").String(input);
    json.Key("output").String(output);
    json.Key("budget").Number(budget);
    json.Key("bits_per_element").Number(bits);
    json.Key("bytes").Uint(stream_bytes);
    json.Key("queries").Bool(has_queries);
    json.Key("cost_measure").String(measure);
    json.Key("total_cost").Number(total_cost);
    json.Key("seconds").Number(seconds);
    json.Key("layers").BeginArray();
    for (uint32_t layer = 0; layer < layers; ++layer) {
      json.BeginObject();
      json.Key("layer").Uint(layer);
      for (int kind = 0; kind < 2; ++kind) {
        const Option& o = hulls[2 * layer + kind][choice[2 * layer + kind]];
        const char* prefix = kind == 0 ? "k_" : "v_";
        json.Key(std::string(prefix) + "method")
            .String(MethodString(candidates[o.candidate].config));
        json.Key(std::string(prefix) + "bits")
            .Number(8.0 * static_cast<double>(o.bytes) / static_cast<double>(per_layer));
        json.Key(std::string(prefix) + "cost").Number(o.cost);
      }
      json.EndObject();
    }
    json.EndArray();
    json.Key("config").String(text);
    json.EndObject();
    std::printf("%s\n", json.text().c_str());
    return;
  }
  std::printf("%s", text.c_str());
  std::printf("# %s: %zu bytes, %.4f bits per element (budget %g), cost %.4g, %.1f s\n",
              output.c_str(), stream_bytes, bits, budget, total_cost, seconds);
}

}  // namespace kvc::tools
