// Attention on encoded blocks through the C API (kvc_block_scores2,
// kvc_block_attend2, kvc_decode_attention). Parameters come from the end of
// the input, values and splices from the rest: one layer's K and V blocks of
// two methods, split differently by tokens, then damaged or mismatched (input
// bytes spliced into a block, its section checksum recomputed or not, a
// truncation, a block dropped, repeated, relabelled or of the other kind, a
// foreign head_dim), and called with token ranges, scales, thread counts,
// query head counts and trusted blocks (checksums skipped) from the input. Never a crash, a hang or a leak; every
// failure has a message; a success is finite, and decode_attention's output
// lies within the values' range (a convex combination of value vectors),
// whenever the blocks decode to values below 1e15 (beyond that, float sums of
// valid values may overflow).
//
// The seed corpus (fuzz/corpus/attention_fuzzer/) gives every method as K
// and as V and every mutation once; it was written from the repository root
// by this deterministic step (a fixed payload, then one byte per parameter,
// the first parameter last, as DataProducer takes them):
//   python3 -c 'import os; d = "fuzz/corpus/attention_fuzzer"
//   os.makedirs(d, exist_ok=True); pay = bytes((i * 37 + 11) % 251 for i in range(96))
//   for i in range(22): open(f"{d}/seed-{i:02d}", "wb").write(pay + bytes(reversed(
//       [i % 20, (i * 7 + 3) % 20, i, i, i, 5 * i, i, i, i, i + 3, i % 11] + [i] * 8)))'
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <kvcodec/kvcodec.h>

#include "fuzz_helpers.h"

namespace {

const char* const kMethods[] = {
    "raw-f16",     "raw-f32",      "tq-mse-b1",     "tq-mse-b2:nc",    "tq-mse-b4",
    "tq-mse-b8:norm=f32",          "tq-prod-b2",    "tq-prod-b3",      "tq-prod-b5:nc",
    "tq-mse-b2.5", "tq-mse-b3.75", "polar-4222",    "polar-8444:seed=3",
    "angle-n3",    "angle-n128",   "angle-n64:radius=log4,nc",         "angle-n96:radius=exact",
    "gtq-b3",      "gtq-b2:min=0,pair=interleaved", "tq-mse-b3:rot=none,norm=bf16",
    "tq-mse-b4:nc,center", "tq-prod-b3:center", "tq-mse-b2.5:center", "polar-4222:center",
    "angle-n64:center", "gtq-b3:nc,center"};
constexpr uint32_t kMethodCount = sizeof(kMethods) / sizeof(kMethods[0]);

constexpr uint32_t kMaxHeadDim = 2048;             // FORMAT.md §4.1
constexpr uint64_t kMaxFloats = uint64_t{1} << 20;  // per output a header may ask for
constexpr float kModerate = 1e15f;                  // values whose float sums cannot overflow

enum Mutation : uint32_t {
  kNone,
  kSpliceFixed,    // input bytes into a block's payload, checksum recomputed
  kSpliceRaw,      // input bytes anywhere in a block, checksum left
  kTruncate,       // a block cut short
  kReplace,        // a block replaced by input bytes
  kDrop,           // a block missing
  kRepeat,         // a block twice
  kOtherKind,      // a value block among the keys
  kRelabel,        // a block re-encoded at another head, token or layer
  kOtherDim,       // a block of another head_dim
  kQueryHeads,     // query heads not a multiple of the KV heads
  kMutationCount
};

struct Block {
  std::vector<uint8_t> bytes;
};

// Values from the payload bytes (cycled): moderate and finite, as a cache's.
std::vector<float> MakeValues(const DataProducer& p, size_t n, float scale, size_t salt) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = p.size() ? p.data()[(i + salt) % p.size()] : 0;
    x[i] = ((static_cast<int>(b) - 128) / 16.0f + 0.01f * static_cast<float>(i % 7)) * scale;
  }
  return x;
}

// Encodes heads [0, heads) x tokens [begin, end) of x ([heads, tokens, dim]).
// An encoder failure (a method that refuses this head_dim) must be named.
bool Encode(const char* method, const std::vector<float>& x, uint32_t heads, uint32_t tokens,
            uint32_t dim, uint32_t begin, uint32_t end, uint32_t layer, kvc_kind kind,
            uint32_t head_start, uint32_t token_start, Block* out) {
  kvc_tensor_config config;
  kvc_tensor_config_init(&config);
  FUZZ_ASSERT(kvc_tensor_config_parse(method, &config, nullptr) == KVC_OK);
  kvc_tensor t = {};
  t.data = const_cast<float*>(x.data()) + size_t{begin} * dim;
  t.dtype = KVC_DTYPE_F32;
  t.ndim = 3;
  t.shape[0] = heads;
  t.shape[1] = end - begin;
  t.shape[2] = dim;
  t.strides[0] = int64_t{tokens} * dim;
  t.strides[1] = dim;
  t.strides[2] = 1;
  out->bytes.resize(std::max<size_t>(kvc_block_bound(&config, heads, end - begin, dim), 1));
  size_t size = 0;
  kvc_diagnostics diag;
  const kvc_status s = kvc_encode_block(&config, layer, kind, head_start, token_start + begin, &t,
                                        out->bytes.data(), out->bytes.size(), &size, &diag);
  FUZZ_ASSERT(s == KVC_OK || diag.message[0] != '\0');
  out->bytes.resize(size);
  return s == KVC_OK;
}

// The largest |value| and vector norm of a block, or false if it does not
// decode (or is too large to decode here).
bool Extent(const Block& block, float* max_abs, float* max_norm) {
  kvc_block_info info;
  kvc_block_info_init(&info);
  kvc_diagnostics diag;
  if (kvc_get_block_info(block.bytes.data(), block.bytes.size(), &info, nullptr, &diag) !=
      KVC_OK) {
    FUZZ_ASSERT(diag.message[0] != '\0');
    return false;
  }
  const uint64_t n = uint64_t{info.head_count} * info.token_count * info.head_dim;
  if (n > kMaxFloats) return false;
  std::vector<float> x(n);
  kvc_tensor t = {};
  t.data = x.data();
  t.dtype = KVC_DTYPE_F32;
  t.ndim = 3;
  t.shape[0] = info.head_count;
  t.shape[1] = info.token_count;
  t.shape[2] = info.head_dim;
  if (kvc_decode_block(block.bytes.data(), block.bytes.size(), &t, &diag) != KVC_OK) {
    FUZZ_ASSERT(diag.message[0] != '\0');
    return false;
  }
  for (size_t row = 0; row < n; row += info.head_dim) {
    double sum = 0;
    for (size_t i = row; i < row + info.head_dim; ++i) {
      *max_abs = std::max(*max_abs, std::fabs(x[i]));
      sum += double{x[i]} * x[i];
    }
    *max_norm = std::max(*max_norm, static_cast<float>(std::sqrt(sum)));
  }
  return true;
}

bool AllFinite(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

// Overwrites bytes of a block with input bytes; with fix_checksum, only in
// its section payload, whose checksum (FORMAT.md §3.3, §4.5: the frame's 8
// bytes, then the section's 8-byte header, payload, 4-byte checksum over
// header and payload) is then recomputed, so that the content reaches the
// method's own checks.
void Splice(DataProducer* p, bool fix_checksum, Block* block) {
  std::vector<uint8_t>& b = block->bytes;
  const size_t first = fix_checksum ? 16 : 0;
  const size_t last = fix_checksum ? b.size() - 4 : b.size();  // exclusive
  if (b.size() < 21 || last <= first) return;
  // Half the splices land in the block and method headers, the rest anywhere.
  const size_t span = p->Range(0, 1) ? std::min<size_t>(last - first, 64) : last - first;
  const size_t at = first + p->Range(0, static_cast<uint32_t>(span - 1));
  const size_t length = std::min<size_t>(p->Range(1, 8), last - at);
  const uint32_t from = p->Range(0, 1u << 20);
  if (p->size() == 0) return;
  for (size_t i = 0; i < length; ++i) b[at + i] = p->data()[(from + i) % p->size()];
  if (fix_checksum) {
    const uint32_t sum = static_cast<uint32_t>(kvc_hash64(b.data() + 8, b.size() - 12));
    for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = static_cast<uint8_t>(sum >> (8 * i));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DataProducer p(data, size);
  const char* k_method = kMethods[p.Range(0, kMethodCount - 1)];
  const char* v_method = kMethods[p.Range(0, kMethodCount - 1)];
  const uint32_t dim = 16 * p.Range(1, 10);
  const uint32_t heads = p.Range(1, 3);
  const uint32_t group = p.Range(1, 4);  // query heads per KV head
  const uint32_t tokens = p.Range(1, 48);
  const uint32_t layer = p.Range(0, 2);
  const uint32_t head_start = p.Range(0, 2);
  const uint32_t token_start = 1000 * p.Range(0, 3);
  const float value_scale = static_cast<float>(1u << p.Range(0, 12)) / 64.0f;
  const Mutation mutation = static_cast<Mutation>(p.Range(0, kMutationCount - 1));
  const uint32_t target = p.Range(0, 7);  // which block a mutation hits
  const uint32_t threads = p.Range(1, 2);
  const uint32_t scale_choice = p.Range(0, 6);
  const uint32_t range_choice = p.Range(0, 3);
  const uint32_t range_a = p.Range(0, tokens + 1), range_b = p.Range(0, tokens + 1);
  const bool bad_query = p.Range(0, 7) == 0;  // a NaN or infinity among the queries
  const bool short_output = p.Range(0, 7) == 0;
  const bool with_lse = p.Range(0, 1) == 1;
  const bool trusted = p.Range(0, 1) == 1;  // checksums skipped: damage reaches the codecs

  // Token splits: K and V blocks cut at different places.
  auto cuts = [&](uint32_t count) {
    std::vector<uint32_t> at = {0, tokens};
    for (uint32_t i = 1; i < count && tokens > 1; ++i) at.push_back(p.Range(1, tokens - 1));
    std::sort(at.begin(), at.end());
    at.erase(std::unique(at.begin(), at.end()), at.end());
    return at;
  };
  const std::vector<uint32_t> k_cuts = cuts(p.Range(1, 3)), v_cuts = cuts(p.Range(1, 3));

  const size_t n = size_t{heads} * tokens * dim;
  const std::vector<float> k = MakeValues(p, n, value_scale, 0);
  const std::vector<float> v = MakeValues(p, n, value_scale, 977);
  std::vector<Block> keys, values;
  for (size_t i = 0; i + 1 < k_cuts.size(); ++i) {
    keys.emplace_back();
    if (!Encode(k_method, k, heads, tokens, dim, k_cuts[i], k_cuts[i + 1], layer, KVC_KIND_KEYS,
                head_start, token_start, &keys.back())) {
      return 0;
    }
  }
  for (size_t i = 0; i + 1 < v_cuts.size(); ++i) {
    values.emplace_back();
    if (!Encode(v_method, v, heads, tokens, dim, v_cuts[i], v_cuts[i + 1], layer,
                KVC_KIND_VALUES, head_start, token_start, &values.back())) {
      return 0;
    }
  }

  // The mutation hits a key block for even targets, a value block for odd.
  std::vector<Block>& list = target % 2 == 0 ? keys : values;
  Block& hit = list[target / 2 % list.size()];
  uint32_t query_heads = heads * group;
  switch (mutation) {
    case kNone:
    case kMutationCount:
      break;
    case kSpliceFixed:
    case kSpliceRaw:
      Splice(&p, mutation == kSpliceFixed, &hit);
      break;
    case kTruncate:
      hit.bytes.resize(p.Range(0, static_cast<uint32_t>(hit.bytes.size() - 1)));
      break;
    case kReplace:
      hit.bytes.assign(p.data(), p.data() + std::min<size_t>(p.size(), 4096));
      break;
    case kDrop:
      list.erase(list.begin() + (&hit - list.data()));
      break;
    case kRepeat: {
      const Block copy = hit;
      list.push_back(copy);
      break;
    }
    case kOtherKind:
      keys.push_back(values[target % values.size()]);
      break;
    case kRelabel:
      Encode(target % 2 == 0 ? k_method : v_method, target % 2 == 0 ? k : v, heads, tokens, dim,
             0, tokens / 2 + 1, layer + p.Range(0, 1),
             target % 2 == 0 ? KVC_KIND_KEYS : KVC_KIND_VALUES, head_start + p.Range(0, 1),
             token_start + p.Range(0, 3), &hit);
      break;
    case kOtherDim: {
      const uint32_t other = dim == 16 ? 32 : dim - 16;
      const std::vector<float> x = MakeValues(p, size_t{heads} * tokens * other, 1.0f, 5);
      Encode(target % 2 == 0 ? k_method : v_method, x, heads, tokens, other, 0, tokens, layer,
             target % 2 == 0 ? KVC_KIND_KEYS : KVC_KIND_VALUES, head_start, token_start, &hit);
      break;
    }
    case kQueryHeads:
      query_heads += 1;
      break;
  }

  // Queries of up to the format's largest head_dim: a damaged first key
  // block may claim any, and the C API reads num_query_heads x its head_dim
  // floats (a caller sizes queries by the blocks it holds).
  std::vector<float> queries = MakeValues(p, size_t{query_heads} * kMaxHeadDim, 0.25f, 31);
  if (bad_query) {
    queries[p.Range(0, query_heads * dim - 1)] =
        p.Range(0, 1) ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  }

  // Whether float results are bounded: every block decodes to values below
  // kModerate (a dropped or relabelled block still decodes: the bound holds).
  float k_abs = 0, k_norm = 0, v_abs = 0, v_norm = 0;
  bool moderate = true;
  for (const Block& b : keys) moderate = Extent(b, &k_abs, &k_norm) && moderate;
  for (const Block& b : values) moderate = Extent(b, &v_abs, &v_norm) && moderate;
  moderate = moderate && k_abs < kModerate && v_abs < kModerate;

  kvc_diagnostics diag;
  // Scores and weighted sums of every block on its own (damaged ones
  // included; the kind does not matter to either call).
  for (const std::vector<Block>* blocks : {&keys, &values}) {
    for (const Block& b : *blocks) {
      float b_abs = 0, b_norm = 0;
      const bool b_moderate = Extent(b, &b_abs, &b_norm) && b_abs < kModerate;
      kvc_block_info info;
      kvc_block_info_init(&info);
      if (kvc_get_block_info(b.bytes.data(), b.bytes.size(), &info, nullptr, &diag) != KVC_OK) {
        FUZZ_ASSERT(diag.message[0] != '\0');
        continue;
      }
      const uint64_t rows = uint64_t{info.head_count} * group;
      if (rows * std::max(info.token_count, info.head_dim) > kMaxFloats) continue;
      const std::vector<float> q = MakeValues(p, rows * info.head_dim, 0.25f, 7);
      std::vector<float> scores(rows * info.token_count);
      const size_t capacity = scores.size() - (short_output ? 1 : 0);
      // The options' calls: trusted blocks skip the checksum, so that damage
      // reaches the parsers and kernels (which must still reject it cleanly).
      kvc_block_options block_options;
      kvc_block_options_init(&block_options);
      block_options.threads = threads;
      block_options.flags = trusted ? KVC_ATTENTION_TRUSTED_BLOCKS : 0;
      kvc_status s = kvc_block_scores2(b.bytes.data(), b.bytes.size(), q.data(), group,
                                       &block_options, scores.data(), capacity, &diag);
      FUZZ_ASSERT(s == KVC_OK || diag.message[0] != '\0');
      FUZZ_ASSERT(!(s == KVC_OK && short_output));
      if (s == KVC_OK && b_moderate) FUZZ_ASSERT(AllFinite(scores.data(), scores.size()));

      const std::vector<float> w = MakeValues(p, rows * info.token_count, 1.0f / 64, 11);
      std::vector<float> out(rows * info.head_dim);
      s = kvc_block_attend2(b.bytes.data(), b.bytes.size(), w.data(), group, &block_options,
                            out.data(), out.size() - (short_output ? 1 : 0), &diag);
      FUZZ_ASSERT(s == KVC_OK || diag.message[0] != '\0');
      FUZZ_ASSERT(!(s == KVC_OK && short_output));
      if (s == KVC_OK && b_moderate) FUZZ_ASSERT(AllFinite(out.data(), out.size()));
    }
  }

  // One decode step over all the blocks.
  std::vector<kvc_buffer> key_buffers, value_buffers;
  for (const Block& b : keys) key_buffers.push_back({b.bytes.data(), b.bytes.size()});
  for (const Block& b : values) value_buffers.push_back({b.bytes.data(), b.bytes.size()});
  kvc_attention_options options;
  kvc_attention_options_init(&options);
  options.threads = threads;
  options.flags = trusted ? KVC_ATTENTION_TRUSTED_BLOCKS : 0;
  const float scales[] = {0.0f, 1.0f, 0.05f, -0.3f, 1e36f,
                          std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity()};
  options.scale = scales[scale_choice];
  switch (range_choice) {
    case 0:
      break;  // every token
    case 1:   // a window, maybe empty, reversed or past the end
      options.token_begin = token_start + range_a;
      options.token_end = token_start + range_b;
      break;
    case 2:  // from a token to the end
      options.token_begin = token_start + range_a;
      break;
    default:  // anywhere
      options.token_begin = range_a * 997;
      options.token_end = range_b * 1009;
      break;
  }
  std::vector<float> out(size_t{query_heads} * dim), lse(query_heads);
  const kvc_status s = kvc_decode_attention(
      key_buffers.data(), key_buffers.size(), value_buffers.data(), value_buffers.size(),
      queries.data(), query_heads, &options, out.data(), out.size() - (short_output ? 1 : 0),
      with_lse ? lse.data() : nullptr, &diag);
  FUZZ_ASSERT(s == KVC_OK || diag.message[0] != '\0');
  FUZZ_ASSERT(!(s == KVC_OK && short_output));
  if (s == KVC_OK && moderate) {
    FUZZ_ASSERT(AllFinite(out.data(), out.size()));
    if (with_lse) FUZZ_ASSERT(AllFinite(lse.data(), lse.size()));
    // A convex combination of value vectors: no coordinate beyond the
    // values' largest, but for rounding (relative to a vector's norm).
    for (float o : out) FUZZ_ASSERT(std::fabs(o) <= v_abs + 1e-3f * v_norm);
  }
  return 0;
}
