// The benchmark behind `kvc bench --attention` (tools/bench_attention.h).
//
// One decode step of one layer: H KV heads, G query heads per KV head, a
// cache of `context` tokens. The compressed path is kvcodec's public API on
// standalone blocks of --block-tokens tokens x all H heads (an engine's cache
// that grew block by block): kvc_block_scores over every key block, and
// kvc_decode_attention over all key and value blocks. The baseline is what
// the same engine runs on an f16 cache (tools/bench_attention_kernels.h):
// scores, a stable softmax and the weighted sum of values, each key and value
// row loaded once for the G query heads, jobs of (KV head, block of tokens)
// shared by the same threads, partial softmaxes merged in a fixed order.
// With several threads, both run on one pool that outlives the calls, as an
// engine's would (kvcodec gets it as a kvc_parallel_runner); --spawn has each
// call start its own threads instead (kvcodec's built-in ones). Both
// paths run in the same process, their repetitions interleaved so that both
// see the same machine; the reported times are medians.
//
// A decode step finds a layer's cache cold: every other layer's cache has
// been read since the step before. So, unless --warm, the last-level cache
// is flushed before each timed call by reading a buffer twice its size;
// without that, a cache smaller than the LLC (one layer at 32K tokens is
// 128 MiB of f16) would be measured as if the model had one layer.
//
// The cache is real: the keys, values and queries of a dump (--kv), tiled to
// the context length. Keys (after RoPE) are rotated on to the position they
// take, so the cache keeps RoPE's structure, which Block-GTQ relies on.
#include "tools/bench_attention.h"

#include <kvcodec/kvcodec.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <hwy/targets.h>

#include "codec/base/cache_size.h"   // header-only
#include "codec/base/thread_pool.h"  // header-only
#include "tools/bench_attention_kernels.h"
#include "tools/cli.h"
#include "tools/error.h"
#include "tools/safetensors.h"

#ifndef KVC_BENCH_SAMPLE_KV
#define KVC_BENCH_SAMPLE_KV ""
#endif

namespace kvc::tools {
namespace {

using Clock = std::chrono::steady_clock;

// A preset is a per-layer table; the bench encodes the configs of a middle
// layer of a 32-layer model, where boundary rules ("first 4 ...") do not
// apply.
constexpr uint32_t kLayer = 16;
constexpr uint32_t kModelLayers = 32;

struct Options {
  std::vector<std::string> presets;
  std::vector<uint32_t> contexts;
  uint32_t threads = 1, dim = 128, group = 4, kv_heads = 8, block_tokens = 4096, reps = 5;
  bool spawn = false;  // each call starts its threads (no pool)
  std::string kv = KVC_BENCH_SAMPLE_KV;
  std::string target;  // empty: the best supported target
  bool json = false;
  bool warm = false;  // keep the caches between timed calls
};

// Real keys, values and queries: every (layer, KV head) of a dump is a
// source of `tokens` rows.
struct Sample {
  uint32_t sources = 0, tokens = 0, dim = 0;
  uint32_t queries_per_source = 0;  // 0: the dump has no queries
  std::vector<float> keys, values;  // [sources][tokens][dim]
  std::vector<float> queries;       // [sources][queries_per_source][tokens][dim]
  bool interleaved = false;         // RoPE pairs (2i, 2i+1), else (i, i + dim/2)
  double rope_base = 10000;
};

Sample LoadSample(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::Read(path);
  const Cache cache = LoadCache(file);  // checks every layer's k and v
  const kvc_cache_desc& d = cache.desc;
  Sample s;
  s.sources = d.num_layers * d.num_kv_heads;
  s.tokens = d.num_tokens;
  s.dim = d.head_dim;
  s.interleaved = d.rope_layout == KVC_ROPE_INTERLEAVED;
  if (d.rope_base > 0) s.rope_base = d.rope_base;
  // [layers][heads][tokens][dim] is [sources][tokens][dim].
  for (uint32_t layer = 0; layer < d.num_layers; ++layer) {
    for (const char* kind : {"k", "v"}) {
      const std::vector<float> x = file.ReadFloat32(*file.Find(LayerTensorName(layer, kind)));
      std::vector<float>& to = kind[0] == 'k' ? s.keys : s.values;
      to.insert(to.end(), x.begin(), x.end());
    }
  }
  if (file.Find(LayerTensorName(0, "q")) != nullptr) {
    const Queries q = LoadQueries(file, cache);  // checks every layer's q
    if (q.tensor.shape[2] != d.num_tokens) {
      throw Error(path + ": layer0.q has " + std::to_string(q.tensor.shape[2]) +
                  " tokens, layer0.k " + std::to_string(d.num_tokens));
    }
    s.queries_per_source = static_cast<uint32_t>(q.tensor.shape[1] / d.num_kv_heads);
    // Query head j reads KV head j / queries_per_source (grouped-query
    // attention), so [layers][query heads][tokens][dim] is
    // [sources][queries_per_source][tokens][dim].
    for (uint32_t layer = 0; layer < d.num_layers; ++layer) {
      const std::vector<float> x = file.ReadFloat32(*file.Find(LayerTensorName(layer, "q")));
      s.queries.insert(s.queries.end(), x.begin(), x.end());
    }
  }
  return s;
}

// RoPE by `positions` more: pair i turns by positions * base^(-2i/dim).
struct RopeShift {
  std::vector<double> cos, sin;

  RopeShift(const Sample& s, double positions) : cos(s.dim / 2), sin(s.dim / 2) {
    for (uint32_t i = 0; i < s.dim / 2; ++i) {
      const double angle = positions * std::pow(s.rope_base, -2.0 * i / s.dim);
      cos[i] = std::cos(angle);
      sin[i] = std::sin(angle);
    }
  }

  void Apply(const Sample& s, const float* x, float* out) const {
    const uint32_t half = s.dim / 2;
    for (uint32_t i = 0; i < half; ++i) {
      const uint32_t a = s.interleaved ? 2 * i : i, b = s.interleaved ? 2 * i + 1 : i + half;
      out[a] = static_cast<float>(x[a] * cos[i] - x[b] * sin[i]);
      out[b] = static_cast<float>(x[a] * sin[i] + x[b] * cos[i]);
    }
  }
};

// The cache of one decode step. KV head h takes source h % sources; token t
// is the source's token u = t % n moved to position t (keys rotated by t - u
// positions; values as they are). The queries are those of the source's
// last tokens (or, for a dump without queries, its last keys), moved to
// position `tokens`: the token being decoded.
struct BenchCache {
  uint32_t heads = 0, tokens = 0, dim = 0, group = 0;
  std::vector<uint16_t> keys, values;  // f16 [heads][tokens][dim]
  std::vector<float> queries;          // [heads * group][dim]
};

BenchCache BuildCache(const Sample& s, uint32_t heads, uint32_t tokens, uint32_t group) {
  BenchCache c;
  c.heads = heads;
  c.tokens = tokens;
  c.dim = s.dim;
  c.group = group;
  const size_t d = s.dim, n = s.tokens;
  c.keys.resize(size_t{heads} * tokens * d);
  c.values.resize(c.keys.size());
  c.queries.resize(size_t{heads} * group * d);
  std::vector<float> row(d);
  for (uint32_t h = 0; h < heads; ++h) {
    const size_t source = h % s.sources;
    const float* keys = s.keys.data() + source * n * d;
    const float* values = s.values.data() + source * n * d;
    for (size_t t0 = 0; t0 < tokens; t0 += n) {
      const RopeShift shift(s, static_cast<double>(t0));
      for (size_t t = t0; t < std::min<size_t>(tokens, t0 + n); ++t) {
        const size_t out = (size_t{h} * tokens + t) * d;
        shift.Apply(s, keys + (t - t0) * d, row.data());
        ConvertToF16(row.data(), d, &c.keys[out]);
        ConvertToF16(values + (t - t0) * d, d, &c.values[out]);
      }
    }
    for (uint32_t j = 0; j < group; ++j) {
      const float* x;
      size_t u;
      if (s.queries_per_source > 0) {
        u = n - 1 - (j / s.queries_per_source) % n;
        x = s.queries.data() +
            ((source * s.queries_per_source + j % s.queries_per_source) * n + u) * d;
      } else {
        u = n - 1 - j % n;
        x = keys + u * d;
      }
      RopeShift(s, static_cast<double>(tokens - u))
          .Apply(s, x, &c.queries[(size_t{h} * group + j) * d]);
    }
  }
  return c;
}

// Calls f(job, worker) for job < jobs on up to `threads` threads (worker <
// threads); each job writes only its own results, so which thread takes it
// does not change them.
template <class F>
void ParallelFor(size_t jobs, uint32_t threads, const F& f) {
  const size_t workers = std::min<size_t>(threads, jobs);
  if (workers <= 1) {
    for (size_t job = 0; job < jobs; ++job) f(job, 0);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (size_t job; (job = next.fetch_add(1)) < jobs;) f(job, w);
    });
  }
  for (std::thread& t : pool) t.join();
}

// The threads of the timed calls: a pool of threads - 1 workers and the
// calling thread (started before the first call), or (spawn) threads
// started by each call as ParallelFor does.
class Workers {
 public:
  Workers(uint32_t threads, bool spawn)
      : count_(threads), spawn_(spawn), pool_(spawn ? 0 : threads - 1) {
    pool_.Start(threads - 1);
  }

  uint32_t count() const { return count_; }

  // f(job, worker) for every job < jobs, worker < count().
  void Run(size_t jobs, const std::function<void(size_t, size_t)>& f) {
    if (spawn_) return ParallelFor(jobs, count_, f);
    pool_.Run(jobs, f);
  }

  // kvcodec's jobs on the pool; with spawn, its own threads.
  void Attach(kvc_attention_options* options) {
    options->threads = count_;
    if (!spawn_ && count_ > 1) {
      options->runner = ThreadPool::RunJobs;
      options->runner_opaque = &pool_;
    }
  }

 private:
  const uint32_t count_;
  const bool spawn_;
  ThreadPool pool_;
};

// The f16 baseline: jobs of (KV head, block of tokens), like the compressed
// path's blocks.
class Baseline {
 public:
  Baseline(const BenchCache& c, uint32_t block_tokens, Workers& workers)
      : c_(c),
        block_(std::min(block_tokens, c.tokens)),
        blocks_((c.tokens + block_ - 1) / block_),
        workers_(workers),
        scratch_(workers.count(), std::vector<float>(size_t{c.group} * block_)),
        scaled_(c.queries.size()),
        partial_(size_t{c.heads} * blocks_ * c.group * c.dim),
        max_(size_t{c.heads} * blocks_ * c.group),
        sum_(max_.size()) {}

  // scores: [heads][group][tokens], q . k unscaled (kvc_block_scores' figure).
  void Scores(const uint16_t* keys, float* scores) {
    workers_.Run(size_t{c_.heads} * blocks_, [&](size_t job, size_t) {
      const size_t h = job / blocks_, t0 = job % blocks_ * block_;
      const size_t tb = std::min<size_t>(block_, c_.tokens - t0);
      F16Scores(keys + (h * c_.tokens + t0) * c_.dim, tb, c_.dim,
                c_.queries.data() + h * c_.group * c_.dim, c_.group,
                scores + h * c_.group * c_.tokens + t0, c_.tokens);
    });
  }

  // out: [heads * group][dim], softmax(scale * q . k) . v over every token.
  void DecodeAttention(const uint16_t* keys, const uint16_t* values, float scale, float* out) {
    for (size_t i = 0; i < scaled_.size(); ++i) scaled_[i] = c_.queries[i] * scale;
    const size_t g = c_.group, d = c_.dim;
    workers_.Run(size_t{c_.heads} * blocks_, [&](size_t job, size_t worker) {
      const size_t h = job / blocks_, t0 = job % blocks_ * block_;
      const size_t tb = std::min<size_t>(block_, c_.tokens - t0);
      float* s = scratch_[worker].data();
      F16Scores(keys + (h * c_.tokens + t0) * d, tb, d, scaled_.data() + h * g * d, g, s, tb);
      for (size_t q = 0; q < g; ++q) sum_[job * g + q] = ExpShiftedSum(s + q * tb, tb, &max_[job * g + q]);
      F16WeightedSum(values + (h * c_.tokens + t0) * d, tb, d, s, tb, g, &partial_[job * g * d]);
    });
    // Merged block by block in order: out = sum_b e^(m_b - m) o_b / sum_b e^(m_b - m) l_b.
    for (size_t h = 0; h < c_.heads; ++h) {
      for (size_t q = 0; q < g; ++q) {
        float m = max_[h * blocks_ * g + q];
        for (size_t b = 1; b < blocks_; ++b) m = std::max(m, max_[(h * blocks_ + b) * g + q]);
        float* o = out + (h * g + q) * d;
        std::fill(o, o + d, 0.0f);
        float l = 0;
        for (size_t b = 0; b < blocks_; ++b) {
          const size_t job = h * blocks_ + b;
          const float w = std::exp(max_[job * g + q] - m);
          l += w * sum_[job * g + q];
          const float* p = &partial_[(job * g + q) * d];
          for (size_t i = 0; i < d; ++i) o[i] += w * p[i];
        }
        for (size_t i = 0; i < d; ++i) o[i] /= l;
      }
    }
  }

 private:
  const BenchCache& c_;
  const uint32_t block_, blocks_;
  Workers& workers_;
  std::vector<std::vector<float>> scratch_;  // per worker: [group][block] weights
  std::vector<float> scaled_;                // the queries times the scale
  std::vector<float> partial_;               // per job: [group][dim] unnormalised
  std::vector<float> max_, sum_;             // per job: [group] softmax max and sum
};

// The cache encoded as standalone blocks of block_tokens tokens x all heads.
struct Encoded {
  std::vector<std::vector<uint8_t>> keys, values;
  std::vector<kvc_buffer> key_buffers, value_buffers;
  uint64_t bytes = 0;
};

kvc_tensor BlockView(const std::vector<uint16_t>& data, const BenchCache& c, uint32_t t0,
                     uint32_t tb) {
  kvc_tensor t = {};
  t.data = const_cast<uint16_t*>(data.data() + size_t{t0} * c.dim);
  t.dtype = KVC_DTYPE_F16;
  t.ndim = 3;
  t.shape[0] = c.heads;
  t.shape[1] = tb;
  t.shape[2] = c.dim;
  t.strides[0] = static_cast<int64_t>(c.tokens) * c.dim;
  t.strides[1] = c.dim;
  t.strides[2] = 1;
  return t;
}

// Encodes every block on every core (not measured). Returns "" or an error.
std::string Encode(const kvc_config* config, const BenchCache& c, uint32_t block_tokens,
                   Encoded* e) {
  const uint32_t blocks = (c.tokens + block_tokens - 1) / block_tokens;
  e->keys.assign(blocks, {});
  e->values.assign(blocks, {});
  std::vector<std::string> errors(2 * blocks);
  ParallelFor(2 * blocks, std::max(1u, std::thread::hardware_concurrency()),
              [&](size_t job, size_t) {
    const kvc_kind kind = job % 2 == 0 ? KVC_KIND_KEYS : KVC_KIND_VALUES;
    const uint32_t t0 = static_cast<uint32_t>(job / 2) * block_tokens;
    const uint32_t tb = std::min(block_tokens, c.tokens - t0);
    kvc_tensor_config tc;
    kvc_tensor_config_init(&tc);
    kvc_diagnostics diag;
    if (kvc_config_layer(config, kLayer, kModelLayers, kind, &tc) != KVC_OK) {
      errors[job] = "no tensor config for layer 16";
      return;
    }
    std::vector<uint8_t>& out = (kind == KVC_KIND_KEYS ? e->keys : e->values)[job / 2];
    out.resize(kvc_block_bound(&tc, c.heads, tb, c.dim));
    const kvc_tensor input = BlockView(kind == KVC_KIND_KEYS ? c.keys : c.values, c, t0, tb);
    size_t size = 0;
    if (kvc_encode_block(&tc, kLayer, kind, 0, t0, &input, out.data(), out.size(), &size,
                         &diag) != KVC_OK) {
      errors[job] = std::string("encode: ") + diag.message;
      return;
    }
    out.resize(size);
  });
  for (const std::string& error : errors) {
    if (!error.empty()) return error;
  }
  e->key_buffers.clear();
  e->value_buffers.clear();
  e->bytes = 0;
  for (uint32_t b = 0; b < blocks; ++b) {
    e->key_buffers.push_back({e->keys[b].data(), e->keys[b].size()});
    e->value_buffers.push_back({e->values[b].data(), e->values[b].size()});
    e->bytes += e->keys[b].size() + e->values[b].size();
  }
  return "";
}

// Decodes the blocks back into an f16 cache shaped like c's.
std::string Decode(const Encoded& e, const BenchCache& c, uint32_t block_tokens,
                   std::vector<uint16_t>* keys, std::vector<uint16_t>* values) {
  keys->resize(c.keys.size());
  values->resize(c.values.size());
  kvc_diagnostics diag;
  for (size_t b = 0; b < e.keys.size(); ++b) {
    const uint32_t t0 = static_cast<uint32_t>(b) * block_tokens;
    const uint32_t tb = std::min(block_tokens, c.tokens - t0);
    const kvc_tensor k = BlockView(*keys, c, t0, tb), v = BlockView(*values, c, t0, tb);
    if (kvc_decode_block(e.keys[b].data(), e.keys[b].size(), &k, &diag) != KVC_OK ||
        kvc_decode_block(e.values[b].data(), e.values[b].size(), &v, &diag) != KVC_OK) {
      return std::string("decode: ") + diag.message;
    }
  }
  return "";
}

// The largest over rows of max|x - ref| / max|ref| (rows of `row` values).
double MaxRelError(const float* x, const float* ref, size_t rows, size_t row) {
  double worst = 0;
  for (size_t r = 0; r < rows; ++r) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < row; ++i) {
      err = std::max(err, std::fabs(double{x[r * row + i]} - ref[r * row + i]));
      scale = std::max(scale, std::fabs(double{ref[r * row + i]}));
    }
    worst = std::max(worst, scale > 0 ? err / scale : err);
  }
  return worst;
}

double Median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Times one call. Cold (the default), it first reads a buffer of twice the
// last-level cache, which leaves none of the data of the call before in it
// (the reads keep its lines clean, so the timed call pays no write-backs of
// them).
class CallTimer {
 public:
  explicit CallTimer(bool cold)
      : lines_(cold ? 2 * LastLevelCacheBytes() / sizeof(uint64_t) : 0, 1) {}

  template <class F>
  double Seconds(const F& f) {
    uint64_t sum = 0;
    for (size_t i = 0; i < lines_.size(); i += 8) sum += lines_[i];
    sink_ += sum;
    const auto start = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

 private:
  std::vector<uint64_t> lines_;  // empty when warm
  volatile uint64_t sink_ = 0;
};

struct Result {
  std::string error;  // empty: measured
  double bits = 0;
  double f16_scores = 0, scores = 0, f16_attention = 0, attention = 0;  // seconds
  double trusted_scores = 0, trusted_attention = 0;  // KVC_ATTENTION_TRUSTED_BLOCKS
  double scores_error = 0, attention_error = 0;
};

Result Measure(const kvc_config* config, const BenchCache& c, const Options& o,
               Workers& workers, CallTimer* timer) {
  Result r;
  Encoded e;
  r.error = Encode(config, c, o.block_tokens, &e);
  if (!r.error.empty()) return r;
  r.bits = 8.0 * e.bytes / (2.0 * c.keys.size());
  const size_t g = c.group, d = c.dim, blocks = e.keys.size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  kvc_attention_options ao;
  kvc_attention_options_init(&ao);
  workers.Attach(&ao);
  ao.scale = scale;

  Baseline baseline(c, o.block_tokens, workers);
  std::vector<float> f16_scores(size_t{c.heads} * g * c.tokens), f16_out(c.queries.size());
  std::vector<std::vector<float>> scores(blocks);
  for (size_t b = 0; b < blocks; ++b) {
    const size_t t0 = b * o.block_tokens;
    scores[b].resize(size_t{c.heads} * g * std::min<size_t>(o.block_tokens, c.tokens - t0));
  }
  std::vector<float> out(c.queries.size());
  std::vector<std::string> errors(blocks);
  kvc_diagnostics diag;
  kvc_status status = KVC_OK;
  std::vector<double> t_f16_scores, t_scores, t_trusted_scores, t_f16_attention, t_attention,
      t_trusted;
  kvc_block_options trusted_blocks;
  kvc_block_options_init(&trusted_blocks);
  trusted_blocks.flags = KVC_ATTENTION_TRUSTED_BLOCKS;
  kvc_attention_options trusted = ao;
  trusted.flags = KVC_ATTENTION_TRUSTED_BLOCKS;
  // Every key block's scores, timed. kvc_block_scores has no threads of its
  // own: blocks are shared out. options: NULL (kvc_block_scores: checksums
  // verified) or trusted blocks (checked when they were loaded).
  const auto all_scores = [&](const kvc_block_options* options) {
    return timer->Seconds([&] {
      workers.Run(blocks, [&](size_t b, size_t) {
        kvc_diagnostics block_diag;
        if (kvc_block_scores2(e.keys[b].data(), e.keys[b].size(), c.queries.data(), c.group,
                              options, scores[b].data(), scores[b].size(),
                              &block_diag) != KVC_OK) {
          errors[b] = std::string("kvc_block_scores2: ") + block_diag.message;
        }
      });
    });
  };
  for (uint32_t rep = 0; rep < o.reps; ++rep) {
    t_f16_scores.push_back(
        timer->Seconds([&] { baseline.Scores(c.keys.data(), f16_scores.data()); }));
    t_scores.push_back(all_scores(nullptr));
    t_trusted_scores.push_back(all_scores(&trusted_blocks));
    for (const std::string& error : errors) {
      if (!error.empty()) {
        r.error = error;
        return r;
      }
    }
    t_f16_attention.push_back(timer->Seconds(
        [&] { baseline.DecodeAttention(c.keys.data(), c.values.data(), scale, f16_out.data()); }));
    t_attention.push_back(timer->Seconds([&] {
      status = kvc_decode_attention(e.key_buffers.data(), blocks, e.value_buffers.data(), blocks,
                                    c.queries.data(), c.heads * c.group, &ao, out.data(),
                                    out.size(), nullptr, &diag);
    }));
    if (status != KVC_OK) {
      r.error = std::string("kvc_decode_attention: ") + diag.message;
      return r;
    }
    t_trusted.push_back(timer->Seconds([&] {
      status = kvc_decode_attention(e.key_buffers.data(), blocks, e.value_buffers.data(), blocks,
                                    c.queries.data(), c.heads * c.group, &trusted, out.data(),
                                    out.size(), nullptr, &diag);
    }));
    if (status != KVC_OK) {
      r.error = std::string("kvc_decode_attention (trusted blocks): ") + diag.message;
      return r;
    }
  }
  r.f16_scores = Median(t_f16_scores);
  r.scores = Median(t_scores);
  r.trusted_scores = Median(t_trusted_scores);
  r.f16_attention = Median(t_f16_attention);
  r.attention = Median(t_attention);
  r.trusted_attention = Median(t_trusted);

  // Sanity: the baseline on the decoded cache (rounded to f16) against the
  // compressed path's last results.
  std::vector<uint16_t> keys, values;
  r.error = Decode(e, c, o.block_tokens, &keys, &values);
  if (!r.error.empty()) return r;
  baseline.Scores(keys.data(), f16_scores.data());
  std::vector<float> gathered(f16_scores.size());  // the blocks' scores as [heads][group][tokens]
  for (size_t b = 0; b < blocks; ++b) {
    const size_t t0 = b * o.block_tokens, tb = scores[b].size() / (c.heads * g);
    for (size_t row = 0; row < c.heads * g; ++row) {
      std::copy_n(&scores[b][row * tb], tb, &gathered[row * c.tokens + t0]);
    }
  }
  r.scores_error = MaxRelError(gathered.data(), f16_scores.data(), c.heads * g, c.tokens);
  baseline.DecodeAttention(keys.data(), values.data(), scale, f16_out.data());
  r.attention_error = MaxRelError(out.data(), f16_out.data(), c.heads * g, d);
  return r;
}

int Usage(const char* problem) {
  std::fprintf(stderr,
               "bench --attention: %s (usage: kvc bench --attention (--preset NAME ... | --all) "
               "[--context N ...] [--threads T] [--dim 128] [--group 4] [--kv-heads 8] "
               "[--block-tokens 4096] [--reps 5] [--kv FILE] [--target NAME] [--warm] [--spawn] "
               "[--json])\n",
               problem);
  return 2;
}

}  // namespace

int RunBenchAttention(int argc, char** argv) {
  Options o;
  bool kv_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    // A decimal value in [min, 2^32 - 1].
    auto value = [&](uint32_t min, uint32_t* out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      const char* text = argv[++i];
      const unsigned long long v = std::strtoull(text, &end, 10);
      if (*text < '0' || *text > '9' || *end != '\0' || v < min || v > 0xFFFFFFFFull) {
        return false;
      }
      *out = static_cast<uint32_t>(v);
      return true;
    };
    uint32_t context = 0;
    if (a == "--attention") {
    } else if (a == "--preset" && i + 1 < argc) {
      o.presets.push_back(argv[++i]);
    } else if (a == "--all") {
      for (uint32_t p = 0; p < kvc_preset_count(); ++p) o.presets.push_back(kvc_preset_name(p));
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--warm") {
      o.warm = true;
    } else if (a == "--spawn") {
      o.spawn = true;
    } else if ((a == "--kv" || a == "--target") && i + 1 < argc) {
      (a == "--kv" ? o.kv : o.target) = argv[++i];
      kv_given = kv_given || a == "--kv";
    } else if (a == "--context" && value(1, &context)) {
      o.contexts.push_back(context);
    } else if ((a == "--threads" && value(0, &o.threads)) || (a == "--dim" && value(1, &o.dim)) ||
               (a == "--group" && value(1, &o.group)) ||
               (a == "--kv-heads" && value(1, &o.kv_heads)) ||
               (a == "--block-tokens" && value(1, &o.block_tokens)) ||
               (a == "--reps" && value(1, &o.reps))) {
    } else {
      return Usage(("bad option " + a).c_str());
    }
  }
  if (o.presets.empty()) return Usage("no preset given");
  if (o.contexts.empty()) o.contexts = {4096, 32768, 131072};
  if (o.dim % 16 != 0) return Usage("--dim must be a multiple of 16");
  if (o.kv.empty()) return Usage("no sample KV cache: give --kv FILE");
  const uint32_t threads =
      o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());

  hwy::SetSupportedTargetsForTest(0);
  int64_t forced = 0;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    if (o.target == hwy::TargetName(t)) forced = t;
  }
  if (!o.target.empty() && forced == 0) {
    std::fprintf(stderr, "bench --attention: target %s is not compiled in or not supported\n",
                 o.target.c_str());
    return 2;
  }

  if (!kv_given && !std::ifstream(o.kv)) {
    // An installed kvc: the source tree's sample is not beside it.
    std::fprintf(stderr, "bench --attention: the bundled sample KV %s is missing: give --kv FILE\n",
                 o.kv.c_str());
    return 2;
  }
  const Sample sample = LoadSample(o.kv);
  if (sample.dim != o.dim) {
    std::fprintf(stderr, "bench --attention: %s has head_dim %u, not --dim %u\n", o.kv.c_str(),
                 sample.dim, o.dim);
    return 2;
  }
  hwy::SetSupportedTargetsForTest(forced);
  const std::string target = kvc_simd_target();
  if (!o.json) {
    std::printf("%-14s %-7s %7s %3s %6s %10s %10s %6s %10s %10s %6s %9s\n", "preset", "target",
                "context", "thr", "bits", "f16 sc ms", "scores ms", "x f16", "f16 att ms",
                "attend ms", "x f16", "att err");
  }
  CallTimer timer(!o.warm);
  Workers workers(threads, o.spawn);
  const char* runner = threads == 1 ? "none" : o.spawn ? "spawn" : "pool";
  int exit_code = 0;
  for (const uint32_t context : o.contexts) {
    const BenchCache cache = BuildCache(sample, o.kv_heads, context, o.group);
    for (const std::string& preset : o.presets) {
      kvc_config* config = nullptr;
      kvc_diagnostics diag;
      if (kvc_config_from_preset(preset.c_str(), &config, &diag) != KVC_OK) {
        std::fprintf(stderr, "bench --attention: %s\n", diag.message);
        exit_code = 1;
        continue;
      }
      const Result r = Measure(config, cache, o, workers, &timer);
      kvc_config_destroy(config);
      if (!r.error.empty()) {
        std::fprintf(stderr, "bench --attention: %s, context %u: %s\n", preset.c_str(), context,
                     r.error.c_str());
        exit_code = 1;
        continue;
      }
      if (o.json) {
        std::printf(
            "{\"preset\":\"%s\",\"target\":\"%s\",\"context\":%u,\"threads\":%u,"
            "\"runner\":\"%s\",\"cache\":\"%s\","
            "\"kv_heads\":%u,\"group\":%u,\"head_dim\":%u,\"block_tokens\":%u,\"reps\":%u,"
            "\"bits_per_element\":%.4f,\"f16_scores_ms\":%.6g,\"scores_ms\":%.6g,"
            "\"scores_speedup_vs_f16\":%.4f,\"trusted_scores_ms\":%.6g,"
            "\"trusted_scores_speedup_vs_f16\":%.4f,\"f16_decode_attention_ms\":%.6g,"
            "\"decode_attention_ms\":%.6g,\"decode_attention_speedup_vs_f16\":%.4f,"
            "\"trusted_decode_attention_ms\":%.6g,"
            "\"trusted_decode_attention_speedup_vs_f16\":%.4f,"
            "\"scores_max_rel_error\":%.3g,\"decode_attention_max_rel_error\":%.3g}\n",
            preset.c_str(), target.c_str(), context, threads, runner, o.warm ? "warm" : "cold",
            o.kv_heads, o.group, o.dim,
            o.block_tokens, o.reps, r.bits, 1e3 * r.f16_scores, 1e3 * r.scores,
            r.f16_scores / r.scores, 1e3 * r.trusted_scores, r.f16_scores / r.trusted_scores,
            1e3 * r.f16_attention, 1e3 * r.attention,
            r.f16_attention / r.attention, 1e3 * r.trusted_attention,
            r.f16_attention / r.trusted_attention, r.scores_error, r.attention_error);
      } else {
        std::printf("%-14s %-7s %7u %3u %6.3f %10.3f %10.3f %6.2f %10.3f %10.3f %6.2f %9.2e\n",
                    preset.c_str(), target.c_str(), context, threads, r.bits,
                    1e3 * r.f16_scores, 1e3 * r.scores, r.f16_scores / r.scores,
                    1e3 * r.f16_attention, 1e3 * r.attention, r.f16_attention / r.attention,
                    r.attention_error);
      }
      std::fflush(stdout);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  return exit_code;
}

}  // namespace kvc::tools
