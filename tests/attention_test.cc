// Attention on encoded blocks (kvc_block_scores, kvc_block_attend,
// kvc_decode_attention) against decode-then-compute in double, for every
// preset, input dtype, head_dim and GQA ratio; and the errors of malformed
// calls.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "base/half.h"
#include "kvcodec/kvcodec.h"
#include "test_util.h"

namespace {

using kvc_test::GaussianVectors;
using kvc_test::Tensor3;

// Key-like data: a per-channel offset and a few large channels, as RoPE'd
// keys have, so that methods with outlier channels and Block-GTQ see them.
std::vector<float> KeyLike(size_t count, size_t dim, uint64_t seed) {
  std::vector<float> x = GaussianVectors(count, dim, seed, false);
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = 0; j < dim; ++j) {
      x[n * dim + j] = x[n * dim + j] * (j % 7 == 0 ? 4.0f : 1.0f) + 0.3f * (j % 3);
    }
  }
  return x;
}

// Converts f32 data to the dtype's bytes, so that blocks are encoded from
// f16, bf16 or f32 input as engines hold them.
std::vector<uint8_t> AsDtype(const std::vector<float>& x, kvc_dtype dtype) {
  std::vector<uint8_t> bytes;
  if (dtype == KVC_DTYPE_F32) {
    bytes.resize(x.size() * 4);
    std::memcpy(bytes.data(), x.data(), bytes.size());
    return bytes;
  }
  bytes.resize(x.size() * 2);
  for (size_t i = 0; i < x.size(); ++i) {
    const uint16_t h = dtype == KVC_DTYPE_F16 ? kvc::F32ToF16(x[i]) : kvc::F32ToBF16(x[i]);
    std::memcpy(&bytes[i * 2], &h, 2);
  }
  return bytes;
}

struct Block {
  std::vector<uint8_t> bytes;
  std::vector<float> decoded;  // [heads][tokens][dim]
};

Block Encode(const kvc_tensor_config& config, kvc_kind kind, const std::vector<float>& x,
             kvc_dtype dtype, uint32_t head_start, uint32_t heads, uint32_t token_start,
             uint32_t tokens, uint32_t dim) {
  std::vector<uint8_t> input = AsDtype(x, dtype);
  const kvc_tensor t = Tensor3(input.data(), dtype, heads, tokens, dim);
  Block b;
  b.bytes.resize(kvc_block_bound(&config, heads, tokens, dim));
  size_t size = 0;
  kvc_diagnostics diag;
  const kvc_status s = kvc_encode_block(&config, 3, kind, head_start, token_start, &t,
                                        b.bytes.data(), b.bytes.size(), &size, &diag);
  REQUIRE_MESSAGE(s == KVC_OK, diag.message);
  b.bytes.resize(size);
  b.decoded = kvc_test::DecodeBlock(b.bytes, heads, tokens, dim);
  return b;
}

kvc_tensor_config PresetLayer(const char* name, uint32_t layer, kvc_kind kind) {
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_from_preset(name, &config, nullptr) == KVC_OK);
  kvc_tensor_config c;
  kvc_tensor_config_init(&c);
  REQUIRE(kvc_config_layer(config, layer, 4, kind, &c) == KVC_OK);
  kvc_config_destroy(config);
  return c;
}

std::string MethodName(const kvc_tensor_config& c) {
  char text[128];
  kvc_tensor_config_format(&c, text, sizeof(text), nullptr);
  return text;
}

}  // namespace

TEST_CASE("block scores and attend match decode-then-compute for every preset") {
  const kvc_dtype dtypes[] = {KVC_DTYPE_F16, KVC_DTYPE_BF16, KVC_DTYPE_F32};
  const uint32_t heads = 2, tokens = 37;
  size_t round = 0;
  for (uint32_t p = 0; p < kvc_preset_count(); ++p) {
    for (uint32_t dim : {64u, 80u, 128u}) {
      for (uint32_t layer : {0u, 1u}) {
        for (kvc_kind kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
          const kvc_tensor_config config = PresetLayer(kvc_preset_name(p), layer, kind);
          const kvc_dtype dtype = dtypes[round % 3];
          const uint32_t per_head = round % 2 ? 4 : 1;
          ++round;
          const std::string name = kvc_preset_name(p);
          CAPTURE(name);
          CAPTURE(MethodName(config));
          CAPTURE(dim);
          CAPTURE(dtype);
          CAPTURE(per_head);
          const std::vector<float> x = KeyLike(size_t{heads} * tokens, dim, 100 + round);
          const Block b = Encode(config, kind, x, dtype, 0, heads, 0, tokens, dim);
          const std::vector<float> q =
              GaussianVectors(size_t{heads} * per_head, dim, 7 + round, false);
          std::vector<float> w = GaussianVectors(size_t{heads} * per_head, tokens, 9 + round, false);

          std::vector<float> scores(size_t{heads} * per_head * tokens);
          kvc_diagnostics diag;
          REQUIRE_MESSAGE(kvc_block_scores(b.bytes.data(), b.bytes.size(), q.data(), per_head,
                                           scores.data(), scores.size(), &diag) == KVC_OK,
                          diag.message);
          std::vector<float> out(size_t{heads} * per_head * dim);
          REQUIRE_MESSAGE(kvc_block_attend(b.bytes.data(), b.bytes.size(), w.data(), per_head,
                                           out.data(), out.size(), &diag) == KVC_OK,
                          diag.message);
          double worst_score = 0, worst_sum = 0;
          for (size_t hq = 0; hq < size_t{heads} * per_head; ++hq) {
            const float* v = &b.decoded[(hq / per_head) * tokens * dim];
            for (size_t t = 0; t < tokens; ++t) {
              double exact = 0, magnitude = 0;
              for (size_t j = 0; j < dim; ++j) {
                exact += double{q[hq * dim + j]} * v[t * dim + j];
                magnitude += std::abs(double{q[hq * dim + j]} * v[t * dim + j]);
              }
              worst_score = std::max(
                  worst_score, std::abs(scores[hq * tokens + t] - exact) / magnitude);
            }
            for (size_t j = 0; j < dim; ++j) {
              double exact = 0, magnitude = 0;
              for (size_t t = 0; t < tokens; ++t) {
                exact += double{w[hq * tokens + t]} * v[t * dim + j];
                magnitude += std::abs(double{w[hq * tokens + t]} * v[t * dim + j]);
              }
              worst_sum = std::max(worst_sum,
                                   std::abs(out[hq * dim + j] - exact) / std::max(magnitude, 1e-30));
            }
          }
          CAPTURE(worst_score);
          CAPTURE(worst_sum);
          CHECK(worst_score < 1e-5);
          CHECK(worst_sum < 1e-5);
        }
      }
    }
  }
}

namespace {

// A layer cut into blocks: K in token runs `key_cuts`, V in `value_cuts`,
// heads [0, heads) split into two head ranges for K.
struct Layer {
  uint32_t heads, tokens, dim;
  std::vector<float> keys, values;  // decoded, [heads][tokens][dim]
  std::vector<Block> key_blocks, value_blocks;

  std::vector<kvc_buffer> Buffers(const std::vector<Block>& blocks) const {
    std::vector<kvc_buffer> out;
    for (const Block& b : blocks) out.push_back({b.bytes.data(), b.bytes.size()});
    return out;
  }
};

Layer MakeLayer(const char* preset, uint32_t heads, uint32_t tokens, uint32_t dim,
                kvc_dtype dtype, const std::vector<uint32_t>& key_cuts,
                const std::vector<uint32_t>& value_cuts, uint64_t seed) {
  Layer l{heads, tokens, dim, {}, {}, {}, {}};
  const std::vector<float> keys = KeyLike(size_t{heads} * tokens, dim, seed);
  const std::vector<float> values = GaussianVectors(size_t{heads} * tokens, dim, seed + 1, false);
  l.keys.resize(keys.size());
  l.values.resize(values.size());
  auto cut = [&](kvc_kind kind, const std::vector<float>& x, const std::vector<uint32_t>& cuts,
                 uint32_t head_split, std::vector<Block>* blocks, std::vector<float>* decoded) {
    const kvc_tensor_config config = PresetLayer(preset, 1, kind);
    for (uint32_t h0 = 0, h1 = 0; h0 < heads; h0 = h1) {
      h1 = h0 == 0 ? head_split : heads;
      uint32_t t0 = 0;
      for (size_t i = 0; i <= cuts.size(); ++i) {
        const uint32_t t1 = i < cuts.size() ? cuts[i] : tokens;
        std::vector<float> part;
        for (uint32_t h = h0; h < h1; ++h) {
          part.insert(part.end(), x.begin() + (size_t{h} * tokens + t0) * dim,
                      x.begin() + (size_t{h} * tokens + t1) * dim);
        }
        blocks->push_back(Encode(config, kind, part, dtype, h0, h1 - h0, t0, t1 - t0, dim));
        for (uint32_t h = h0; h < h1; ++h) {
          std::copy(blocks->back().decoded.begin() + size_t{h - h0} * (t1 - t0) * dim,
                    blocks->back().decoded.begin() + size_t{h - h0 + 1} * (t1 - t0) * dim,
                    decoded->begin() + (size_t{h} * tokens + t0) * dim);
        }
        t0 = t1;
      }
    }
  };
  cut(KVC_KIND_KEYS, keys, key_cuts, heads > 1 ? heads / 2 : heads, &l.key_blocks, &l.keys);
  cut(KVC_KIND_VALUES, values, value_cuts, heads, &l.value_blocks, &l.values);
  // Blocks in an order an engine might keep them: newest first.
  std::reverse(l.key_blocks.begin(), l.key_blocks.end());
  return l;
}

// Decode attention in double over the decoded cache: the reference.
void Reference(const Layer& l, const std::vector<float>& q, uint32_t query_heads, double scale,
               uint32_t begin, uint32_t end, std::vector<double>* out,
               std::vector<double>* lse) {
  const uint32_t group = query_heads / l.heads;
  out->assign(size_t{query_heads} * l.dim, 0.0);
  lse->assign(query_heads, 0.0);
  for (uint32_t j = 0; j < query_heads; ++j) {
    const uint32_t h = j / group;
    std::vector<double> logit(end - begin);
    double top = -std::numeric_limits<double>::infinity();
    for (uint32_t t = begin; t < end; ++t) {
      double s = 0;
      for (uint32_t i = 0; i < l.dim; ++i) {
        s += double{q[size_t{j} * l.dim + i]} * l.keys[(size_t{h} * l.tokens + t) * l.dim + i];
      }
      logit[t - begin] = s * scale;
      top = std::max(top, logit[t - begin]);
    }
    double total = 0;
    for (uint32_t t = begin; t < end; ++t) {
      const double p = std::exp(logit[t - begin] - top);
      total += p;
      for (uint32_t i = 0; i < l.dim; ++i) {
        (*out)[size_t{j} * l.dim + i] += p * l.values[(size_t{h} * l.tokens + t) * l.dim + i];
      }
    }
    for (uint32_t i = 0; i < l.dim; ++i) (*out)[size_t{j} * l.dim + i] /= total;
    (*lse)[j] = top + std::log(total);
  }
}

// Largest error relative to the largest |value| of the attended tokens.
double CompareAttention(const Layer& l, const std::vector<float>& q, uint32_t query_heads,
                        const kvc_attention_options& options, uint32_t threads_other) {
  std::vector<float> out(size_t{query_heads} * l.dim), lse(query_heads);
  const std::vector<kvc_buffer> kb = l.Buffers(l.key_blocks), vb = l.Buffers(l.value_blocks);
  kvc_diagnostics diag;
  REQUIRE_MESSAGE(kvc_decode_attention(kb.data(), kb.size(), vb.data(), vb.size(), q.data(),
                                       query_heads, &options, out.data(), out.size(),
                                       lse.data(), &diag) == KVC_OK,
                  diag.message);
  kvc_attention_options other = options;
  other.threads = threads_other;
  std::vector<float> out2(out.size()), lse2(lse.size());
  REQUIRE(kvc_decode_attention(kb.data(), kb.size(), vb.data(), vb.size(), q.data(),
                               query_heads, &other, out2.data(), out2.size(), lse2.data(),
                               nullptr) == KVC_OK);
  // The same bits with another number of threads, and with checksums
  // trusted rather than verified.
  CHECK(std::memcmp(out.data(), out2.data(), out.size() * 4) == 0);
  other.flags = KVC_ATTENTION_TRUSTED_BLOCKS;
  REQUIRE(kvc_decode_attention(kb.data(), kb.size(), vb.data(), vb.size(), q.data(),
                               query_heads, &other, out2.data(), out2.size(), lse2.data(),
                               nullptr) == KVC_OK);
  CHECK(std::memcmp(out.data(), out2.data(), out.size() * 4) == 0);
  CHECK(std::memcmp(lse.data(), lse2.data(), lse.size() * 4) == 0);

  const double scale = options.scale != 0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(l.dim));
  const uint32_t begin = options.token_begin;
  const uint32_t end = options.token_end ? std::min(options.token_end, l.tokens) : l.tokens;
  std::vector<double> ref, ref_lse;
  Reference(l, q, query_heads, scale, begin, end, &ref, &ref_lse);
  double largest = 0;
  for (uint32_t h = 0; h < l.heads; ++h) {
    for (uint32_t t = begin; t < end; ++t) {
      for (uint32_t i = 0; i < l.dim; ++i) {
        largest = std::max(largest,
                           double{std::abs(l.values[(size_t{h} * l.tokens + t) * l.dim + i])});
      }
    }
  }
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    worst = std::max(worst, std::abs(out[i] - ref[i]) / largest);
  }
  for (uint32_t j = 0; j < query_heads; ++j) {
    worst = std::max(worst, std::abs(lse[j] - ref_lse[j]) / (1.0 + std::abs(ref_lse[j])));
  }
  return worst;
}

}  // namespace

TEST_CASE("decode attention matches the reference for every preset and GQA ratio") {
  const kvc_dtype dtypes[] = {KVC_DTYPE_F16, KVC_DTYPE_BF16, KVC_DTYPE_F32};
  size_t round = 0;
  for (uint32_t p = 0; p < kvc_preset_count(); ++p) {
    for (uint32_t dim : {64u, 128u}) {
      for (uint32_t group : {1u, 4u}) {
        ++round;
        const char* preset = kvc_preset_name(p);
        const std::string name = preset;
        CAPTURE(name);
        CAPTURE(dim);
        CAPTURE(group);
        const uint32_t heads = 2, tokens = 100;
        const Layer l = MakeLayer(preset, heads, tokens, dim, dtypes[round % 3], {40, 80},
                                  {64}, 300 + round);
        // Queries scaled so that the softmax is neither flat nor one-hot.
        std::vector<float> q = GaussianVectors(size_t{heads} * group, dim, 500 + round, true);
        for (float& v : q) v *= 3.0f;
        kvc_attention_options options;
        kvc_attention_options_init(&options);
        options.threads = 1;
        CHECK(CompareAttention(l, q, heads * group, options, 3) < 1e-5);
        // A window: tokens 13..70, so pieces start inside blocks.
        options.token_begin = 13;
        options.token_end = 71;
        options.scale = 0.05f;
        CHECK(CompareAttention(l, q, heads * group, options, 2) < 1e-5);
      }
    }
  }
}

TEST_CASE("decode attention over long contexts in chunks") {
  // More tokens than a chunk, blocks not aligned with chunks, a window whose
  // first token is not a multiple of 8.
  for (const char* preset : {"tq-mse-b4", "turboangle", "raw-f16"}) {
    const std::string name = preset;
    CAPTURE(name);
    const Layer l = MakeLayer(preset, 1, 9000, 64, KVC_DTYPE_F16, {1000, 5000, 5003},
                              {4096, 8192}, 42);
    std::vector<float> q = GaussianVectors(4, 64, 43, true);
    for (float& v : q) v *= 4.0f;
    kvc_attention_options options;
    kvc_attention_options_init(&options);
    CHECK(CompareAttention(l, q, 4, options, 1) < 1e-5);
    options.token_begin = 13;
    options.token_end = 8999;
    CHECK(CompareAttention(l, q, 4, options, 1) < 1e-5);
  }
}

namespace {

// Caller pools for kvc_parallel_runner. TestPool runs the jobs on three
// threads of its own, last index first; the faulty ones skip a job, or run
// one twice.
struct TestPool {
  std::atomic<int> calls{0};
  static void Run(void* runner_opaque, void* job_opaque, kvc_job_fn job, size_t count) {
    static_cast<TestPool*>(runner_opaque)->calls++;
    std::atomic<size_t> left{count};
    auto work = [&] {
      for (size_t n; (n = left.fetch_sub(1)) > 0 && n <= count;) job(job_opaque, n - 1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) threads.emplace_back(work);
    for (std::thread& t : threads) t.join();
  }
};
void SkipLastJob(void*, void* job_opaque, kvc_job_fn job, size_t count) {
  for (size_t i = 0; i + 1 < count; ++i) job(job_opaque, i);
}
void RunFirstJobTwice(void*, void* job_opaque, kvc_job_fn job, size_t count) {
  job(job_opaque, 0);
  for (size_t i = 0; i < count; ++i) job(job_opaque, i);
}

}  // namespace

TEST_CASE("decode attention runs its jobs on a caller's pool") {
  // 9000 tokens: three chunks per head, so several jobs per phase.
  const Layer l = MakeLayer("tq-mse-b2", 2, 9000, 64, KVC_DTYPE_F16, {1000, 5000}, {4096}, 11);
  const std::vector<kvc_buffer> kb = l.Buffers(l.key_blocks), vb = l.Buffers(l.value_blocks);
  const std::vector<float> q = GaussianVectors(8, 64, 12, true);
  kvc_diagnostics diag;
  auto run = [&](const kvc_attention_options& options, std::vector<float>* out,
                 std::vector<float>* lse) {
    out->assign(8 * 64, 0.0f);
    lse->assign(8, 0.0f);
    return kvc_decode_attention(kb.data(), kb.size(), vb.data(), vb.size(), q.data(), 8,
                                &options, out->data(), out->size(), lse->data(), &diag);
  };
  kvc_attention_options options;
  kvc_attention_options_init(&options);
  CHECK(options.runner_opaque == nullptr);
  const bool no_runner = options.runner == nullptr;
  CHECK(no_runner);
  options.threads = 1;
  std::vector<float> out, lse, pool_out, pool_lse;
  REQUIRE(run(options, &out, &lse) == KVC_OK);
  TestPool pool;
  options.runner = TestPool::Run;
  options.runner_opaque = &pool;
  for (uint32_t flags : {0u, KVC_ATTENTION_TRUSTED_BLOCKS}) {
    CAPTURE(flags);
    options.flags = flags;
    pool.calls = 0;
    REQUIRE_MESSAGE(run(options, &pool_out, &pool_lse) == KVC_OK, diag.message);
    // Checksums, then attention; trusted blocks skip the first.
    CHECK(pool.calls == (flags ? 1 : 2));
    CHECK(std::memcmp(out.data(), pool_out.data(), out.size() * 4) == 0);
    CHECK(std::memcmp(lse.data(), pool_lse.data(), lse.size() * 4) == 0);
  }
  options.flags = 0;
  // A runner that runs a job twice still gives the same result; one that
  // skips a job is an error, not a partial result.
  options.runner = RunFirstJobTwice;
  REQUIRE(run(options, &pool_out, &pool_lse) == KVC_OK);
  CHECK(std::memcmp(out.data(), pool_out.data(), out.size() * 4) == 0);
  options.runner = SkipLastJob;
  CHECK(run(options, &pool_out, &pool_lse) == KVC_ERR_INVALID_ARGUMENT);
  CHECK(std::string(diag.message).find("parallel runner returned without running job") !=
        std::string::npos);
  // A caller built against API 0.1 passes the shorter struct: whatever
  // follows it is not read.
  options.struct_size = offsetof(kvc_attention_options, runner);
  REQUIRE_MESSAGE(run(options, &pool_out, &pool_lse) == KVC_OK, diag.message);
  CHECK(std::memcmp(out.data(), pool_out.data(), out.size() * 4) == 0);
}

TEST_CASE("block scores and attend with options: threads, a caller's pool, trusted blocks") {
  const uint32_t heads = 5, tokens = 300, dim = 64, per_head = 2;
  TestPool pool;
  size_t round = 0;
  for (const char* preset : {"tq-mse-b4", "tq-prod-b3", "kv-3.25", "turboangle", "raw-f16"}) {
    for (kvc_kind kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
      ++round;
      const std::string name = preset;
      CAPTURE(name);
      CAPTURE(kind);
      const kvc_tensor_config config = PresetLayer(preset, 1, kind);
      const std::vector<float> x = KeyLike(size_t{heads} * tokens, dim, 40 + round);
      Block b = Encode(config, kind, x, KVC_DTYPE_F16, 0, heads, 0, tokens, dim);
      const std::vector<float> q = GaussianVectors(size_t{heads} * per_head, dim, 50 + round, false);
      const std::vector<float> w =
          GaussianVectors(size_t{heads} * per_head, tokens, 60 + round, false);
      kvc_diagnostics diag;
      std::vector<float> scores(size_t{heads} * per_head * tokens), out(size_t{heads} * per_head * dim);
      REQUIRE(kvc_block_scores(b.bytes.data(), b.bytes.size(), q.data(), per_head, scores.data(),
                               scores.size(), &diag) == KVC_OK);
      REQUIRE(kvc_block_attend(b.bytes.data(), b.bytes.size(), w.data(), per_head, out.data(),
                               out.size(), &diag) == KVC_OK);
      auto same = [&](const kvc_block_options* options) {
        std::vector<float> s2(scores.size()), o2(out.size());
        REQUIRE_MESSAGE(kvc_block_scores2(b.bytes.data(), b.bytes.size(), q.data(), per_head,
                                          options, s2.data(), s2.size(), &diag) == KVC_OK,
                        diag.message);
        REQUIRE_MESSAGE(kvc_block_attend2(b.bytes.data(), b.bytes.size(), w.data(), per_head,
                                          options, o2.data(), o2.size(), &diag) == KVC_OK,
                        diag.message);
        CHECK(std::memcmp(s2.data(), scores.data(), scores.size() * 4) == 0);
        CHECK(std::memcmp(o2.data(), out.data(), out.size() * 4) == 0);
      };
      same(nullptr);
      kvc_block_options options;
      kvc_block_options_init(&options);
      CHECK(options.threads == 1);
      options.threads = 3;
      same(&options);
      options.runner = TestPool::Run;
      options.runner_opaque = &pool;
      pool.calls = 0;
      same(&options);
      CHECK(pool.calls == 2);
      // A damaged checksum: an error unless the block is trusted.
      b.bytes.back() ^= 0x40;
      std::vector<float> s2(scores.size());
      CHECK(kvc_block_scores2(b.bytes.data(), b.bytes.size(), q.data(), per_head, &options,
                              s2.data(), s2.size(), &diag) == KVC_ERR_CHECKSUM);
      options.flags = KVC_ATTENTION_TRUSTED_BLOCKS;
      same(&options);
      options.flags = 0x2;
      CHECK(kvc_block_scores2(b.bytes.data(), b.bytes.size(), q.data(), per_head, &options,
                              s2.data(), s2.size(), &diag) == KVC_ERR_UNSUPPORTED_FEATURE);
      options.flags = 0;
      b.bytes.back() ^= 0x40;
      options.runner = SkipLastJob;
      CHECK(kvc_block_attend2(b.bytes.data(), b.bytes.size(), w.data(), per_head, &options,
                              s2.data(), s2.size(), &diag) == KVC_ERR_INVALID_ARGUMENT);
    }
  }
}

TEST_CASE("decode attention rejects malformed calls with a message") {
  const Layer l = MakeLayer("tq-mse-b4", 2, 40, 64, KVC_DTYPE_F16, {16}, {24}, 7);
  std::vector<kvc_buffer> kb = l.Buffers(l.key_blocks), vb = l.Buffers(l.value_blocks);
  std::vector<float> q = GaussianVectors(4, 64, 1, true);
  std::vector<float> out(4 * 64), lse(4);
  kvc_diagnostics diag;
  auto run = [&](const std::vector<kvc_buffer>& k, const std::vector<kvc_buffer>& v,
                 uint32_t query_heads, const kvc_attention_options* options,
                 size_t capacity) {
    const kvc_status s = kvc_decode_attention(k.data(), k.size(), v.data(), v.size(), q.data(),
                                              query_heads, options, out.data(), capacity,
                                              lse.data(), &diag);
    if (s != KVC_OK) CHECK(std::strlen(diag.message) > 0);
    return s;
  };
  CHECK(run(kb, vb, 4, nullptr, out.size()) == KVC_OK);
  CHECK(run(kb, vb, 3, nullptr, out.size()) == KVC_ERR_SHAPE_MISMATCH);
  CHECK(run(kb, vb, 4, nullptr, out.size() - 1) == KVC_ERR_DST_TOO_SMALL);
  CHECK(run(vb, kb, 4, nullptr, out.size()) == KVC_ERR_INVALID_ARGUMENT);  // kinds swapped
  CHECK(std::string(diag.message).find("holds values") != std::string::npos);
  CHECK(run({}, vb, 4, nullptr, out.size()) == KVC_ERR_INVALID_ARGUMENT);
  // A missing block leaves a gap; a repeated one holds tokens twice.
  std::vector<kvc_buffer> gap(kb.begin() + 1, kb.end());
  CHECK(run(gap, vb, 4, nullptr, out.size()) == KVC_ERR_INVALID_ARGUMENT);
  std::vector<kvc_buffer> twice = kb;
  twice.push_back(kb[0]);
  CHECK(run(twice, vb, 4, nullptr, out.size()) == KVC_ERR_INVALID_ARGUMENT);
  CHECK(std::string(diag.message).find("twice") != std::string::npos);
  // No token in the range.
  kvc_attention_options options;
  kvc_attention_options_init(&options);
  options.token_begin = 40;
  CHECK(run(kb, vb, 4, &options, out.size()) == KVC_ERR_INVALID_ARGUMENT);
  options.token_begin = 0;
  options.scale = std::numeric_limits<float>::infinity();
  CHECK(run(kb, vb, 4, &options, out.size()) == KVC_ERR_INVALID_ARGUMENT);
  // Finite scores times a finite scale can overflow: refused, not NaN.
  options.scale = 1e37f;
  for (float& v : q) v *= 1000.0f;
  CHECK(run(kb, vb, 4, &options, out.size()) == KVC_ERR_INVALID_VALUE);
  CHECK(std::string(diag.message).find("overflows") != std::string::npos);
  for (float& v : q) v /= 1000.0f;
  options.scale = 0;
  options.struct_size = 4;
  CHECK(run(kb, vb, 4, &options, out.size()) == KVC_ERR_INVALID_ARGUMENT);
  // A truncated block is named.
  std::vector<kvc_buffer> cut = kb;
  cut[1].size -= 5;
  CHECK(run(cut, vb, 4, nullptr, out.size()) != KVC_OK);
  CHECK(std::string(diag.message).find("key block 1") != std::string::npos);
  // A flipped payload byte fails its checksum.
  std::vector<uint8_t> bad = l.value_blocks[0].bytes;
  bad[bad.size() / 2] ^= 0x10;
  std::vector<kvc_buffer> vbad = vb;
  vbad[0] = {bad.data(), bad.size()};
  CHECK(run(kb, vbad, 4, nullptr, out.size()) == KVC_ERR_CHECKSUM);
  CHECK(std::string(diag.message).find("value block 0") != std::string::npos);
  // Trusted blocks skip the checksum (the same damage is then not noticed
  // unless a record turns invalid); unknown flags are refused.
  options.struct_size = sizeof(options);
  options.flags = KVC_ATTENTION_TRUSTED_BLOCKS;
  const kvc_status trusted = run(kb, vbad, 4, &options, out.size());
  CHECK((trusted == KVC_OK || trusted == KVC_ERR_CORRUPT));
  CHECK(run(kb, vb, 4, &options, out.size()) == KVC_OK);
  options.flags = 0x80;
  CHECK(run(kb, vb, 4, &options, out.size()) == KVC_ERR_UNSUPPORTED_FEATURE);
  options.flags = 0;
  // Non-finite queries and weights are the caller's, named as such.
  q[70] = std::numeric_limits<float>::quiet_NaN();
  CHECK(run(kb, vb, 4, nullptr, out.size()) == KVC_ERR_INVALID_VALUE);
  std::vector<float> w(2 * 24, 1.0f);
  w[3] = std::numeric_limits<float>::infinity();
  std::vector<float> sums(2 * 64);
  CHECK(kvc_block_attend(l.value_blocks[0].bytes.data(), l.value_blocks[0].bytes.size(),
                         w.data(), 1, sums.data(), sums.size(), &diag) == KVC_ERR_INVALID_VALUE);
  CHECK(kvc_block_attend(l.value_blocks[0].bytes.data(), l.value_blocks[0].bytes.size(),
                         nullptr, 1, sums.data(), sums.size(), &diag) ==
        KVC_ERR_INVALID_ARGUMENT);
  w[3] = 1.0f;
  CHECK(kvc_block_attend(l.value_blocks[0].bytes.data(), l.value_blocks[0].bytes.size(),
                         w.data(), 1, sums.data(), sums.size() - 1, &diag) ==
        KVC_ERR_DST_TOO_SMALL);
}
