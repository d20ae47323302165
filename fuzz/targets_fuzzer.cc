// Parameters and data from the input: encode a block or a whole stream under
// every Highway target this machine supports and this build compiled
// (simdjson's "all implementations agree" fuzzer), and require the same
// status, the same bytes, the same decoded values (f32 and the input dtype)
// and block scores as under the first (lowest, scalar) target. The format
// promises byte-identical output on every target; a difference aborts.
// Scores are not bitstream: kernels may fuse and reorder their sums, so
// targets must agree within 1e-4 of |q|·|k| (each is within 1e-5 of exact).
//
// The codec is reached through the C API only; Highway's target choice is
// process-wide and shared, as kvcodec and this program use one libhwy.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <hwy/targets.h>
#include <kvcodec/kvcodec.h>

#include "fuzz_helpers.h"

namespace {

const char* const kMethods[] = {
    "raw-f16",       "raw-bf16",       "tq-mse-b1",         "tq-mse-b2:nc",
    "tq-mse-b3",     "tq-mse-b4:nc",   "tq-mse-b8:norm=f32", "tq-prod-b2",
    "tq-prod-b3",    "tq-prod-b5:nc",  "tq-mse-b2.5",       "tq-mse-b3.25",
    "tq-mse-b1.75",  "polar-4222",     "polar-8444:seed=3",      "polar-1111",
    "angle-n3",      "angle-n64:radius=log4", "angle-n128",  "angle-n4096:radius=exact,nc",
    "gtq-b2",        "gtq-b3",         "gtq-b4:min=0,pair=interleaved",
    "gtq-b1:min=0",  "tq-mse-b3:rot=none,norm=bf16",      "tq-prod-b4:rot=none,seed=7",
    "tq-mse-b4:nc,center", "tq-prod-b3:center", "tq-mse-b2.5:center", "polar-4222:center",
    "angle-n64:center", "gtq-b3:nc,center"};
constexpr size_t kMethodCount = sizeof(kMethods) / sizeof(kMethods[0]);

template <class T>
bool SameBytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// A diagnostic without the sign of NaNs: IEEE 754 leaves the sign of an
// invalid operation's NaN open, and targets differ (a vector that overflows
// f32 once rotated is rejected on all of them, its radius printed as "nan"
// or "-nan"). Statuses, bytes and values must match exactly.
std::string Message(const kvc_diagnostics& diag) {
  std::string message = diag.message;
  for (size_t at; (at = message.find("-nan")) != std::string::npos;) message.erase(at, 1);
  return message;
}

// Everything one target produced; compared field by field with the first.
struct Result {
  int encode_status = -1;
  std::string encode_message;
  std::vector<uint8_t> bytes;
  int decode_status = -1;
  std::vector<float> decoded_f32;
  std::vector<uint16_t> decoded_16;  // f16 or bf16, as the input's dtype
  int scores_status = -1;
  std::vector<float> scores;
  std::vector<double> score_scales;  // |q|·|k| of each score
  double largest_scale = 0;

  bool SameScores(const Result& ref) const {
    if (scores_status != ref.scores_status) {
      // Near f32's limit, rounding decides whether a score overflows.
      return std::max(largest_scale, ref.largest_scale) > 1e37;
    }
    if (scores.size() != ref.scores.size()) return false;
    if (scores_status != KVC_OK) return true;
    for (size_t i = 0; i < scores.size(); ++i) {
      const double scale = std::max(score_scales[i], 1e-30);
      if (std::abs(double{scores[i]} - ref.scores[i]) > 1e-4 * scale) return false;
    }
    return true;
  }

  // Whether everything matches; names the first difference on stderr.
  bool Same(const Result& ref) const {
    const char* difference =
        encode_status != ref.encode_status        ? "encode status"
        : encode_message != ref.encode_message    ? "encode diagnostic"
        : bytes != ref.bytes                      ? "encoded bytes"
        : decode_status != ref.decode_status      ? "decode status"
        : !SameBytes(decoded_f32, ref.decoded_f32) ? "values decoded to f32"
        : decoded_16 != ref.decoded_16            ? "values decoded to f16/bf16"
        : !SameScores(ref)                        ? "scores"
                                                  : nullptr;
    if (difference == nullptr) return true;
    std::fprintf(stderr, "%s differ (diagnostics: '%s', '%s')\n", difference,
                 ref.encode_message.c_str(), encode_message.c_str());
    return false;
  }
};

// The input values: moderate numbers from the payload bytes (as the
// roundtrip fuzzer makes them) or, for f16/bf16/f32 inputs, the payload's
// bytes taken as bit patterns (subnormals, huge values, infinities, NaN).
std::vector<uint8_t> MakeValues(DataProducer* producer, kvc_dtype dtype, size_t n) {
  const bool raw_bits = producer->Range(0, 3) == 0;
  const float scale = static_cast<float>(1u << producer->Range(0, 12)) / 256.0f;
  const size_t element = dtype == KVC_DTYPE_F32 ? 4 : 2;
  std::vector<uint8_t> out(n * element);
  const uint8_t* payload = producer->data();
  const size_t payload_size = producer->size();
  if (raw_bits) {
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = payload_size ? payload[i % payload_size] : 0;
    }
    return out;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = payload_size ? payload[i % payload_size] : 0;
    const float x = ((static_cast<int>(b) - 128) / 16.0f + 0.01f * static_cast<float>(i % 7)) *
                    scale;
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if (dtype == KVC_DTYPE_F32) {
      std::memcpy(&out[4 * i], &x, 4);
    } else if (dtype == KVC_DTYPE_BF16) {  // truncation is fine: any value is input
      const uint16_t h = static_cast<uint16_t>(bits >> 16);
      std::memcpy(&out[2 * i], &h, 2);
    } else {  // f16 of moderate magnitude: rebias, truncating the mantissa
      const int exponent = static_cast<int>((bits >> 23) & 0xFF) - 127 + 15;
      uint16_t h = static_cast<uint16_t>((bits >> 16) & 0x8000);
      if (exponent >= 31) {
        h |= 0x7BFF;  // largest finite
      } else if (exponent > 0) {
        h |= static_cast<uint16_t>((exponent << 10) | ((bits >> 13) & 0x3FF));
      }
      std::memcpy(&out[2 * i], &h, 2);
    }
  }
  return out;
}

kvc_tensor Tensor(void* data, kvc_dtype dtype, uint32_t ndim, const uint64_t* shape) {
  kvc_tensor t = {};
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  for (uint32_t i = 0; i < ndim; ++i) t.shape[i] = shape[i];
  return t;
}

struct BlockCase {
  kvc_tensor_config config;
  uint32_t heads, tokens, dim;
  kvc_dtype dtype;
  std::vector<uint8_t> values;
  uint32_t queries_per_head;
  std::vector<float> queries;
};

Result RunBlock(const BlockCase& c) {
  Result r;
  const uint64_t shape[3] = {c.heads, c.tokens, c.dim};
  const kvc_tensor input =
      Tensor(const_cast<uint8_t*>(c.values.data()), c.dtype, 3, shape);
  r.bytes.resize(kvc_block_bound(&c.config, c.heads, c.tokens, c.dim));
  size_t size = 0;
  kvc_diagnostics diag;
  r.encode_status = kvc_encode_block(&c.config, 2, KVC_KIND_KEYS, 1, 5, &input, r.bytes.data(),
                                     r.bytes.size(), &size, &diag);
  r.encode_message = Message(diag);
  if (r.encode_status != KVC_OK) {
    r.bytes.clear();
    return r;
  }
  r.bytes.resize(size);
  const size_t n = size_t{c.heads} * c.tokens * c.dim;
  r.decoded_f32.resize(n);
  const kvc_tensor out32 = Tensor(r.decoded_f32.data(), KVC_DTYPE_F32, 3, shape);
  r.decode_status = kvc_decode_block(r.bytes.data(), size, &out32, &diag);
  FUZZ_ASSERT(r.decode_status == KVC_OK);
  if (c.dtype != KVC_DTYPE_F32) {
    r.decoded_16.resize(n);
    const kvc_tensor out16 = Tensor(r.decoded_16.data(), c.dtype, 3, shape);
    FUZZ_ASSERT(kvc_decode_block(r.bytes.data(), size, &out16, &diag) == KVC_OK);
  }
  r.scores.resize(size_t{c.heads} * c.queries_per_head * c.tokens);
  r.scores_status = kvc_block_scores(r.bytes.data(), size, c.queries.data(),
                                     c.queries_per_head, r.scores.data(), r.scores.size(), &diag);
  r.score_scales.resize(r.scores.size());
  auto norm = [&](const float* x) {
    double sum = 0;
    for (size_t j = 0; j < c.dim; ++j) sum += double{x[j]} * x[j];
    return std::sqrt(sum);
  };
  for (size_t h = 0; h < c.heads; ++h) {
    for (size_t q = 0; q < c.queries_per_head; ++q) {
      const double qn = norm(&c.queries[(h * c.queries_per_head + q) * c.dim]);
      for (size_t t = 0; t < c.tokens; ++t) {
        const double scale = qn * norm(&r.decoded_f32[(h * c.tokens + t) * c.dim]);
        r.score_scales[(h * c.queries_per_head + q) * c.tokens + t] = scale;
        r.largest_scale = std::max(r.largest_scale, scale);
      }
    }
  }
  return r;
}

struct StreamCase {
  kvc_config* config = nullptr;
  kvc_cache_desc desc;
  kvc_encode_options options;
  std::vector<uint8_t> keys, values;
  std::vector<float> queries;
  kvc_tensor queries_tensor;
};

Result RunStream(const StreamCase& c) {
  Result r;
  const kvc_cache_desc& d = c.desc;
  const uint64_t shape[4] = {d.num_layers, d.num_kv_heads, d.num_tokens, d.head_dim};
  const kvc_dtype dtype = static_cast<kvc_dtype>(d.dtype);
  const kvc_tensor keys = Tensor(const_cast<uint8_t*>(c.keys.data()), dtype, 4, shape);
  const kvc_tensor values = Tensor(const_cast<uint8_t*>(c.values.data()), dtype, 4, shape);
  r.bytes.resize(kvc_stream_bound(c.config, &d, &c.options));
  size_t size = 0;
  kvc_diagnostics diag;
  r.encode_status = kvc_encode_stream(c.config, &d, &keys, &values, &c.options, r.bytes.data(),
                                      r.bytes.size(), &size, &diag);
  r.encode_message = Message(diag);
  if (r.encode_status != KVC_OK) {
    r.bytes.clear();
    return r;
  }
  r.bytes.resize(size);
  const size_t n = size_t{d.num_layers} * d.num_kv_heads * d.num_tokens * d.head_dim;
  kvc_decode_options dopt;
  kvc_decode_options_init(&dopt);
  dopt.threads = 1;
  r.decoded_f32.resize(2 * n);
  const kvc_tensor k32 = Tensor(r.decoded_f32.data(), KVC_DTYPE_F32, 4, shape);
  const kvc_tensor v32 = Tensor(r.decoded_f32.data() + n, KVC_DTYPE_F32, 4, shape);
  r.decode_status = kvc_decode_stream(r.bytes.data(), size, &dopt, &k32, &v32, &diag);
  FUZZ_ASSERT(r.decode_status == KVC_OK);
  if (dtype != KVC_DTYPE_F32) {
    r.decoded_16.resize(2 * n);
    const kvc_tensor k16 = Tensor(r.decoded_16.data(), dtype, 4, shape);
    const kvc_tensor v16 = Tensor(r.decoded_16.data() + n, dtype, 4, shape);
    FUZZ_ASSERT(kvc_decode_stream(r.bytes.data(), size, &dopt, &k16, &v16, &diag) == KVC_OK);
  }
  return r;
}

std::vector<int64_t> Targets() {
  hwy::SetSupportedTargetsForTest(0);
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  // Lowest (scalar or emulated) first: the reference.
  return std::vector<int64_t>(targets.rbegin(), targets.rend());
}

template <class Case, class Run>
void CompareTargets(const Case& c, Run run) {
  static const std::vector<int64_t> targets = Targets();
  Result reference;
  for (size_t t = 0; t < targets.size(); ++t) {
    hwy::SetSupportedTargetsForTest(targets[t]);
    Result result = run(c);
    if (t == 0) {
      reference = std::move(result);
    } else if (!result.Same(reference)) {
      std::fprintf(stderr, "target %s differs from %s\n", hwy::TargetName(targets[t]),
                   hwy::TargetName(targets[0]));
      FUZZ_ASSERT(false);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DataProducer producer(data, size);
  const bool stream = producer.Range(0, 1) == 1;
  const kvc_dtype dtype = static_cast<kvc_dtype>(producer.Range(0, 2));
  if (!stream) {
    BlockCase c;
    kvc_tensor_config_init(&c.config);
    FUZZ_ASSERT(kvc_tensor_config_parse(kMethods[producer.Range(0, kMethodCount - 1)],
                                        &c.config, nullptr) == KVC_OK);
    if (c.config.method != KVC_METHOD_RAW) c.config.seed = producer.Range(0, 0xFFFF);
    c.dim = 8 * producer.Range(1, 32);
    c.heads = producer.Range(1, 3);
    c.tokens = producer.Range(1, 24);
    c.dtype = dtype;
    c.queries_per_head = producer.Range(1, 2);
    if (kvc_block_bound(&c.config, c.heads, c.tokens, c.dim) == 0) return 0;
    c.queries.resize(size_t{c.heads} * c.queries_per_head * c.dim);
    for (size_t i = 0; i < c.queries.size(); ++i) {
      c.queries[i] = static_cast<float>(static_cast<int>((i * 37) % 17) - 8) / 4.0f;
    }
    c.values = MakeValues(&producer, dtype, size_t{c.heads} * c.tokens * c.dim);
    CompareTargets(c, RunBlock);
    return 0;
  }

  StreamCase c;
  kvc_cache_desc_init(&c.desc);
  c.desc.num_layers = producer.Range(1, 3);
  c.desc.num_kv_heads = producer.Range(1, 2);
  c.desc.num_tokens = producer.Range(1, 20);
  c.desc.head_dim = 16 * producer.Range(1, 8);
  c.desc.dtype = dtype;
  c.desc.rope_layout = producer.Range(0, 2);
  c.desc.rope_base = producer.Range(0, 1) ? 10000.0f : 0.0f;
  kvc_encode_options_init(&c.options);
  c.options.threads = producer.Range(1, 2);
  c.options.block_tokens = producer.Range(0, c.desc.num_tokens);
  const std::string text =
      std::string("kvcodec-config 1\nall k=") + kMethods[producer.Range(0, kMethodCount - 1)] +
      " v=" + kMethods[producer.Range(0, kMethodCount - 1)] + "\nlast 1 k=" +
      kMethods[producer.Range(0, kMethodCount - 1)] + "\n";
  if (kvc_config_parse(text.data(), text.size(), &c.config, nullptr) != KVC_OK) return 0;
  const size_t n =
      size_t{c.desc.num_layers} * c.desc.num_kv_heads * c.desc.num_tokens * c.desc.head_dim;
  if (producer.Range(0, 1)) {  // a query sample for Block-GTQ's allocation
    const uint32_t query_heads = c.desc.num_kv_heads * producer.Range(1, 2);
    c.queries.resize(n / c.desc.num_kv_heads * query_heads);
    for (size_t i = 0; i < c.queries.size(); ++i) {
      const uint8_t b = producer.size() ? producer.data()[(7 * i) % producer.size()] : 0;
      c.queries[i] = (static_cast<int>(b) - 128) / 32.0f;
    }
    const uint64_t shape[4] = {c.desc.num_layers, query_heads, c.desc.num_tokens,
                               c.desc.head_dim};
    c.queries_tensor = Tensor(c.queries.data(), KVC_DTYPE_F32, 4, shape);
    c.options.queries = &c.queries_tensor;
  }
  c.keys = MakeValues(&producer, dtype, 2 * n);  // keys, then values
  c.values.assign(c.keys.begin() + c.keys.size() / 2, c.keys.end());
  c.keys.resize(c.keys.size() / 2);
  if (kvc_stream_bound(c.config, &c.desc, &c.options) != 0) CompareTargets(c, RunStream);
  kvc_config_destroy(c.config);
  return 0;
}
