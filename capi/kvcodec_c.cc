// The C ABI: argument checks, size-versioned structs, and the wall that keeps
// C++ exceptions and Status objects inside the library.
#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <new>
#include <string>
#include <vector>

#include <hwy/targets.h>

#include "attention/decode_attention.h"
#include "base/endian.h"
#include "base/parallel.h"
#include "base/sized_struct.h"
#include "base/status.h"
#include "config/config.h"
#include "config/tensor_config.h"
#include "format/block.h"
#include "format/checksum.h"
#include "format/section.h"
#include "kvcodec/kvcodec.h"
#include "stream/cache_reader.h"
#include "stream/cache_writer.h"
#include "stream/stream.h"

struct kvc_config {
  kvc::CacheConfig rules;
};

namespace kvc {
namespace {

kvc_status Report(const Status& status, kvc_diagnostics* diag) {
  if (diag != nullptr) {
    std::snprintf(diag->message, sizeof(diag->message), "%s",
                  status.message().c_str());
  }
  return status.code();
}

// Runs body (returning Status) behind the exception wall.
template <typename Body>
kvc_status Guard(kvc_diagnostics* diag, const Body& body) {
  try {
    return Report(body(), diag);
  } catch (const std::bad_alloc&) {
    return Report(Status(KVC_ERR_OUT_OF_MEMORY, "out of memory"), diag);
  } catch (const std::exception& e) {
    return Report(Status(KVC_ERR_INTERNAL, std::string("internal error: ") + e.what()),
                  diag);
  } catch (...) {
    return Report(Status(KVC_ERR_INTERNAL, "internal error"), diag);
  }
}

Status NotNull(const void* pointer, const char* name) {
  if (pointer == nullptr) {
    return Status(KVC_ERR_INVALID_ARGUMENT, StrFormat("%s is NULL", name));
  }
  return OkStatus();
}

kvc_encode_options DefaultEncodeOptions() {
  kvc_encode_options o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

kvc_decode_options DefaultDecodeOptions() {
  kvc_decode_options o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

Status ImportEncodeOptions(const kvc_encode_options* in, kvc_encode_options* out) {
  if (in == nullptr) {
    *out = DefaultEncodeOptions();
    return OkStatus();
  }
  return ImportSized(in, DefaultEncodeOptions(), out, "encode options");
}

// A standalone block's RoPE-dependent parameters default to HF Llama's
// split-half layout.
void ResolveStandaloneConfig(kvc_tensor_config* c) {
  if (c->method == KVC_METHOD_BLOCKGTQ && c->rope_pairing == KVC_ROPE_UNKNOWN) {
    c->rope_pairing = KVC_ROPE_SPLIT_HALF;
  }
}

// A parsed standalone block.
struct BlockFrame {
  BlockHeader header;
  SectionRef section;
  std::unique_ptr<TensorCodec> codec;
  BlockLayout layout;
};

// Locates the block section of a standalone block frame.
Status ReadBlockFrameSection(const void* src, size_t size, BlockHeader* header,
                             SectionRef* section,
                             Checksums checksums = Checksums::kVerify) {
  KVC_RETURN_IF_ERROR(NotNull(src, "src"));
  const uint8_t* p = static_cast<const uint8_t*>(src);
  const uint8_t magic[4] = {0xB5, 0x4B, 0x56, 0x62};
  if (size < 4) {
    return size > 0 && std::memcmp(p, magic, size) == 0
               ? Status(KVC_ERR_TRUNCATED, "input ends inside the block frame header")
               : Status(KVC_ERR_NOT_KVCODEC, "not a kvcodec block (too short)");
  }
  if (LoadLE32(p) != KVC_BLOCK_MAGIC) {
    return Status(KVC_ERR_NOT_KVCODEC,
                  LoadLE32(p) == KVC_STREAM_MAGIC
                      ? "this is a stream, not a standalone block"
                      : "not a kvcodec block (magic number mismatch)");
  }
  if (size < kBlockFrameHeaderSize) {
    return Status(KVC_ERR_TRUNCATED, "input ends inside the block frame header");
  }
  if (p[4] != KVC_FORMAT_MAJOR) {
    return Status(KVC_ERR_UNSUPPORTED_VERSION,
                  StrFormat("block format %u.%u; this decoder reads %u.x", p[4],
                            p[5], KVC_FORMAT_MAJOR));
  }
  if (LoadLE16(p + 6) != 0) {
    return Status(KVC_ERR_CORRUPT, "block frame reserved bytes not zero");
  }
  const uint8_t* q = p + kBlockFrameHeaderSize;
  const size_t rest = size - kBlockFrameHeaderSize;
  KVC_RETURN_IF_ERROR(ReadSection(q, rest, section, 0, checksums));
  if (section->type != kSectionBlock) {
    return Status(KVC_ERR_CORRUPT, "block frame holds no block section");
  }
  if (section->total_size != rest) {
    return Status(KVC_ERR_CORRUPT, "bytes after the block");
  }
  return ReadBlockHeader(*section, header);
}

kvc_block_options DefaultBlockOptions() {
  kvc_block_options o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  o.threads = 1;
  return o;
}

kvc_attention_options DefaultAttentionOptions() {
  kvc_attention_options o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

// Caller floats that feed scores or sums: a NaN or infinity there would
// surface as a "corrupt" result, so name it at the door.
Status CheckFinite(const float* x, size_t n, size_t row_size, const char* name) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      return Status(KVC_ERR_INVALID_VALUE,
                    StrFormat("%s row %zu, element %zu is not finite", name, i / row_size,
                              i % row_size));
    }
  }
  return OkStatus();
}

Status ReadBlockFrame(const void* src, size_t size, BlockFrame* frame,
                      Checksums checksums = Checksums::kVerify) {
  KVC_RETURN_IF_ERROR(
      ReadBlockFrameSection(src, size, &frame->header, &frame->section, checksums));
  frame->codec = TensorCodec::Create(frame->header.config, frame->header.head_dim);
  return ReadBlockLayout(*frame->codec, frame->header, frame->section, &frame->layout);
}

// The choices kvc_attention_options and kvc_block_options share: where the
// jobs run, and (flags) whether checksums are verified.
template <class Options>
Parallelism ParallelismOf(const Options& o) {
  Parallelism p;
  p.threads = o.threads;
  p.runner = o.runner;
  p.runner_opaque = o.runner_opaque;
  return p;
}
template <class Options>
Status ChecksumsOf(const Options& o, const char* name, Checksums* checksums) {
  if (o.flags & ~KVC_ATTENTION_TRUSTED_BLOCKS) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE, StrFormat("%s flags 0x%x unknown", name, o.flags));
  }
  *checksums = (o.flags & KVC_ATTENTION_TRUSTED_BLOCKS) ? Checksums::kTrust : Checksums::kVerify;
  return OkStatus();
}

// A block read for kvc_block_scores2 / kvc_block_attend2: its options (NULL:
// the defaults) checked, their threads or runner in *parallelism.
Status ReadBlockFrame(const void* src, size_t size, const kvc_block_options* options,
                      Parallelism* parallelism, BlockFrame* frame) {
  kvc_block_options o = DefaultBlockOptions();
  if (options) KVC_RETURN_IF_ERROR(ImportSized(options, o, &o, "block options"));
  Checksums checksums;
  KVC_RETURN_IF_ERROR(ChecksumsOf(o, "block", &checksums));
  *parallelism = ParallelismOf(o);
  return ReadBlockFrame(src, size, frame, checksums);
}

}  // namespace
}  // namespace kvc

using namespace kvc;  // NOLINT: this file only implements the C API

extern "C" {

uint32_t kvc_version(void) { return KVC_VERSION_NUMBER; }

const char* kvc_version_string(void) {
#define KVC_STR2(x) #x
#define KVC_STR(x) KVC_STR2(x)
  return KVC_STR(KVC_VERSION_MAJOR) "." KVC_STR(KVC_VERSION_MINOR) "." KVC_STR(
      KVC_VERSION_PATCH);
}

const char* kvc_simd_target(void) {
  // The best target compiled in and supported by this CPU: the one that
  // Highway's dynamic dispatch chooses.
  const int64_t targets = hwy::SupportedAndGeneratedTargets().empty()
                              ? 0
                              : hwy::SupportedAndGeneratedTargets().front();
  return targets == 0 ? "none" : hwy::TargetName(targets);
}

const char* kvc_status_string(kvc_status status) {
  switch (status) {
    case KVC_OK: return "ok";
    case KVC_ERR_INVALID_ARGUMENT: return "invalid argument";
    case KVC_ERR_DST_TOO_SMALL: return "destination buffer too small";
    case KVC_ERR_NOT_KVCODEC: return "not kvcodec data";
    case KVC_ERR_UNSUPPORTED_VERSION: return "unsupported format version";
    case KVC_ERR_UNSUPPORTED_FEATURE: return "unsupported format feature";
    case KVC_ERR_TRUNCATED: return "truncated input";
    case KVC_ERR_CHECKSUM: return "checksum mismatch";
    case KVC_ERR_CORRUPT: return "corrupt data";
    case KVC_ERR_SHAPE_MISMATCH: return "shape mismatch";
    case KVC_ERR_INVALID_VALUE: return "invalid value";
    case KVC_ERR_OUT_OF_MEMORY: return "out of memory";
    case KVC_ERR_INTERNAL: return "internal error";
    case KVC_ERR_MODEL_MISMATCH: return "cache belongs to another model";
    case KVC_ERR_IO: return "read, write or sync callback failed";
  }
  return "unknown status";
}

void kvc_tensor_config_init(kvc_tensor_config* config) {
  if (config) *config = DefaultTensorConfig();
}

kvc_status kvc_tensor_config_parse(const char* text, kvc_tensor_config* config,
                                   kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(text, "text"));
    kvc_tensor_config parsed;
    KVC_RETURN_IF_ERROR(ParseMethodString(text, &parsed));
    return ExportSized(parsed, config, "tensor config");
  });
}

kvc_status kvc_tensor_config_format(const kvc_tensor_config* config,
                                    char* buffer, size_t capacity,
                                    size_t* length) {
  return Guard(nullptr, [&] {
    kvc_tensor_config c;
    KVC_RETURN_IF_ERROR(ImportTensorConfig(config, &c));
    KVC_RETURN_IF_ERROR(ValidateTensorConfig(c, "tensor config"));
    const std::string text = FormatMethodString(c);
    if (length) *length = text.size();
    if (buffer == nullptr || capacity <= text.size()) {
      return Status(KVC_ERR_DST_TOO_SMALL, "buffer too small");
    }
    std::memcpy(buffer, text.c_str(), text.size() + 1);
    return OkStatus();
  });
}

uint32_t kvc_preset_count(void) {
  return static_cast<uint32_t>(Presets().size());
}

const char* kvc_preset_name(uint32_t index) {
  return index < Presets().size() ? Presets()[index].name : nullptr;
}

const char* kvc_preset_description(uint32_t index) {
  return index < Presets().size() ? Presets()[index].description : nullptr;
}

kvc_status kvc_config_from_preset(const char* name, kvc_config** out,
                                  kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(name, "name"));
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    *out = nullptr;
    auto config = std::make_unique<kvc_config>();
    KVC_RETURN_IF_ERROR(CacheConfig::FromPreset(name, &config->rules));
    *out = config.release();
    return OkStatus();
  });
}

kvc_status kvc_config_parse(const char* text, size_t length, kvc_config** out,
                            kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(text, "text"));
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    *out = nullptr;
    auto config = std::make_unique<kvc_config>();
    KVC_RETURN_IF_ERROR(CacheConfig::Parse(std::string(text, length), &config->rules));
    *out = config.release();
    return OkStatus();
  });
}

kvc_status kvc_config_format(const kvc_config* config, char* buffer,
                             size_t capacity, size_t* length) {
  return Guard(nullptr, [&] {
    KVC_RETURN_IF_ERROR(NotNull(config, "config"));
    const std::string text = config->rules.Format();
    if (length) *length = text.size();
    if (buffer == nullptr || capacity <= text.size()) {
      return Status(KVC_ERR_DST_TOO_SMALL, "buffer too small");
    }
    std::memcpy(buffer, text.c_str(), text.size() + 1);
    return OkStatus();
  });
}

int32_t kvc_config_zstd_level(const kvc_config* config) {
  return config == nullptr ? 0 : config->rules.zstd_level();
}

kvc_status kvc_config_set_layer(kvc_config* config, uint32_t layer,
                                kvc_kind kind, const kvc_tensor_config* tensor) {
  return Guard(nullptr, [&] {
    KVC_RETURN_IF_ERROR(NotNull(config, "config"));
    kvc_tensor_config c;
    KVC_RETURN_IF_ERROR(ImportTensorConfig(tensor, &c));
    KVC_RETURN_IF_ERROR(ValidateTensorConfig(c, "tensor config"));
    if (kind != KVC_KIND_KEYS && kind != KVC_KIND_VALUES) {
      return Status(KVC_ERR_INVALID_ARGUMENT, "kind must be keys or values");
    }
    if (layer > 0xFFFF) return Status(KVC_ERR_INVALID_ARGUMENT, "layer > 65535");
    config->rules.SetLayer(layer, kind, c);
    return OkStatus();
  });
}

kvc_status kvc_config_layer(const kvc_config* config, uint32_t layer,
                            uint32_t num_layers, kvc_kind kind,
                            kvc_tensor_config* out) {
  return Guard(nullptr, [&] {
    KVC_RETURN_IF_ERROR(NotNull(config, "config"));
    if (kind != KVC_KIND_KEYS && kind != KVC_KIND_VALUES) {
      return Status(KVC_ERR_INVALID_ARGUMENT, "kind must be keys or values");
    }
    kvc_tensor_config c;
    KVC_RETURN_IF_ERROR(config->rules.Resolve(layer, num_layers, kind, &c));
    return ExportSized(c, out, "tensor config");
  });
}

void kvc_config_destroy(kvc_config* config) { delete config; }

size_t kvc_block_bound(const kvc_tensor_config* config, uint32_t head_count,
                       uint32_t token_count, uint32_t head_dim) {
  try {
    BlockHeader h;
    h.head_dim = head_dim;
    h.head_count = head_count;
    h.token_count = token_count;
    size_t payload;
    if (!ImportTensorConfig(config, &h.config).ok()) return 0;
    ResolveStandaloneConfig(&h.config);
    if (!CheckBlockHeader(h, KVC_ERR_INVALID_ARGUMENT).ok() ||
        !BlockPayloadBound(h, *TensorCodec::Create(h.config, head_dim), &payload).ok()) {
      return 0;
    }
    return kBlockFrameHeaderSize + SectionSize(payload);
  } catch (...) {
    return 0;
  }
}

kvc_status kvc_encode_block(const kvc_tensor_config* config, uint32_t layer,
                            kvc_kind kind, uint32_t head_start,
                            uint32_t token_start, const kvc_tensor* input,
                            void* dst, size_t dst_capacity, size_t* dst_size,
                            kvc_diagnostics* diag) {
  return Guard(diag, [&]() -> Status {
    KVC_RETURN_IF_ERROR(NotNull(dst_size, "dst_size"));
    BlockHeader h;
    KVC_RETURN_IF_ERROR(ImportTensorConfig(config, &h.config));
    TensorView view;
    KVC_RETURN_IF_ERROR(ImportTensor(input, 3, "input", &view));
    h.layer = layer;
    h.kind = kind;
    h.head_start = head_start;
    h.token_start = token_start;
    h.head_count = static_cast<uint32_t>(std::min<uint64_t>(view.shape[0], 0x10000));
    h.token_count = static_cast<uint32_t>(view.shape[1]);
    h.head_dim = static_cast<uint32_t>(std::min<uint64_t>(view.shape[2], 0x10000));
    ResolveStandaloneConfig(&h.config);
    KVC_RETURN_IF_ERROR(CheckBlockHeader(h, KVC_ERR_INVALID_ARGUMENT));
    std::unique_ptr<TensorCodec> codec = TensorCodec::Create(h.config, h.head_dim);
    std::vector<uint8_t> records;
    BlockLayout layout;
    KVC_RETURN_IF_ERROR(PlanBlockPayload(*codec, h, view, nullptr, &records, &layout));
    const size_t total = kBlockFrameHeaderSize + SectionSize(layout.payload_size);
    if (dst == nullptr || dst_capacity < total) {
      return Status(KVC_ERR_DST_TOO_SMALL,
                    StrFormat("block needs %zu bytes, dst holds %zu", total,
                              dst == nullptr ? size_t{0} : dst_capacity));
    }
    uint8_t* p = static_cast<uint8_t*>(dst);
    StoreLE32(KVC_BLOCK_MAGIC, p);
    p[4] = KVC_FORMAT_MAJOR;
    p[5] = static_cast<uint8_t>(FormatMinorOf(h.config));  // 1.0 unless centered
    StoreLE16(0, p + 6);
    uint8_t* section = p + kBlockFrameHeaderSize;
    KVC_RETURN_IF_ERROR(WriteBlockSection(*codec, h, view, records, layout, section));
    *dst_size = total;
    return OkStatus();
  });
}

void kvc_block_info_init(kvc_block_info* info) {
  if (info) {
    std::memset(info, 0, sizeof(*info));
    info->struct_size = sizeof(*info);
  }
}

kvc_status kvc_get_block_info(const void* src, size_t src_size,
                              kvc_block_info* info, kvc_tensor_config* config,
                              kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    BlockFrame frame;
    KVC_RETURN_IF_ERROR(ReadBlockFrame(src, src_size, &frame));
    const BlockHeader& h = frame.header;
    kvc_block_info out;
    kvc_block_info_init(&out);
    out.layer = h.layer;
    out.kind = h.kind;
    out.head_dim = h.head_dim;
    out.head_start = h.head_start;
    out.head_count = h.head_count;
    out.token_start = h.token_start;
    out.token_count = h.token_count;
    KVC_RETURN_IF_ERROR(ExportSized(out, info, "block info"));
    if (config) KVC_RETURN_IF_ERROR(ExportSized(h.config, config, "tensor config"));
    return OkStatus();
  });
}

kvc_status kvc_decode_block(const void* src, size_t src_size,
                            const kvc_tensor* output, kvc_diagnostics* diag) {
  return Guard(diag, [&]() -> Status {
    BlockFrame frame;
    KVC_RETURN_IF_ERROR(ReadBlockFrame(src, src_size, &frame));
    const BlockHeader& h = frame.header;
    TensorView view;
    KVC_RETURN_IF_ERROR(ImportTensor(output, 3, "output", &view));
    if (view.shape[0] != h.head_count || view.shape[1] != h.token_count ||
        view.shape[2] != h.head_dim) {
      return Status(KVC_ERR_SHAPE_MISMATCH,
                    StrFormat("output is [%llu, %llu, %llu], the block [%u, %u, %u]",
                              static_cast<unsigned long long>(view.shape[0]),
                              static_cast<unsigned long long>(view.shape[1]),
                              static_cast<unsigned long long>(view.shape[2]),
                              h.head_count, h.token_count, h.head_dim));
    }
    return DecodeBlockPayload(*frame.codec, h, frame.section.payload, frame.layout, view,
                              simd::Writes::kCached);
  });
}

kvc_status kvc_block_scores(const void* src, size_t src_size,
                            const float* queries, uint32_t queries_per_head,
                            float* scores, size_t scores_capacity,
                            kvc_diagnostics* diag) {
  return kvc_block_scores2(src, src_size, queries, queries_per_head, nullptr, scores,
                           scores_capacity, diag);
}

kvc_status kvc_block_attend(const void* src, size_t src_size, const float* weights,
                            uint32_t queries_per_head, float* out, size_t out_capacity,
                            kvc_diagnostics* diag) {
  return kvc_block_attend2(src, src_size, weights, queries_per_head, nullptr, out, out_capacity,
                           diag);
}

void kvc_block_options_init(kvc_block_options* options) {
  if (options) *options = DefaultBlockOptions();
}

kvc_status kvc_block_scores2(const void* src, size_t src_size, const float* queries,
                             uint32_t queries_per_head, const kvc_block_options* options,
                             float* scores, size_t scores_capacity, kvc_diagnostics* diag) {
  return Guard(diag, [&]() -> Status {
    KVC_RETURN_IF_ERROR(NotNull(queries, "queries"));
    KVC_RETURN_IF_ERROR(NotNull(scores, "scores"));
    Parallelism parallelism;
    BlockFrame frame;
    KVC_RETURN_IF_ERROR(ReadBlockFrame(src, src_size, options, &parallelism, &frame));
    const BlockHeader& h = frame.header;
    if (queries_per_head == 0) {
      return Status(KVC_ERR_INVALID_ARGUMENT, "queries_per_head is 0");
    }
    const uint64_t needed = uint64_t{h.head_count} * queries_per_head * h.token_count;
    if (scores_capacity < needed) {
      return Status(KVC_ERR_DST_TOO_SMALL,
                    StrFormat("scores need %llu floats, capacity is %zu",
                              static_cast<unsigned long long>(needed),
                              scores_capacity));
    }
    KVC_RETURN_IF_ERROR(CheckFinite(queries, size_t{h.head_count} * queries_per_head * h.head_dim,
                                    h.head_dim, "queries"));
    return ScoreBlockPayload(*frame.codec, h, frame.section.payload, frame.layout, queries,
                             queries_per_head, parallelism, scores);
  });
}

kvc_status kvc_block_attend2(const void* src, size_t src_size, const float* weights,
                             uint32_t queries_per_head, const kvc_block_options* options,
                             float* out, size_t out_capacity, kvc_diagnostics* diag) {
  return Guard(diag, [&]() -> Status {
    KVC_RETURN_IF_ERROR(NotNull(weights, "weights"));
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    Parallelism parallelism;
    BlockFrame frame;
    KVC_RETURN_IF_ERROR(ReadBlockFrame(src, src_size, options, &parallelism, &frame));
    const BlockHeader& h = frame.header;
    if (queries_per_head == 0) {
      return Status(KVC_ERR_INVALID_ARGUMENT, "queries_per_head is 0");
    }
    const uint64_t needed = uint64_t{h.head_count} * queries_per_head * h.head_dim;
    if (out_capacity < needed) {
      return Status(KVC_ERR_DST_TOO_SMALL,
                    StrFormat("out needs %llu floats, capacity is %zu",
                              static_cast<unsigned long long>(needed), out_capacity));
    }
    KVC_RETURN_IF_ERROR(CheckFinite(weights,
                                    size_t{h.head_count} * queries_per_head * h.token_count,
                                    h.token_count, "weights"));
    return AttendBlockPayload(*frame.codec, h, frame.section.payload, frame.layout, weights,
                              queries_per_head, parallelism, out);
  });
}

void kvc_attention_options_init(kvc_attention_options* options) {
  if (options) *options = DefaultAttentionOptions();
}

kvc_status kvc_decode_attention(const kvc_buffer* key_blocks, size_t key_block_count,
                                const kvc_buffer* value_blocks, size_t value_block_count,
                                const float* queries, uint32_t num_query_heads,
                                const kvc_attention_options* options, float* out,
                                size_t out_capacity, float* lse, kvc_diagnostics* diag) {
  return Guard(diag, [&]() -> Status {
    KVC_RETURN_IF_ERROR(NotNull(key_blocks, "key_blocks"));
    KVC_RETURN_IF_ERROR(NotNull(value_blocks, "value_blocks"));
    KVC_RETURN_IF_ERROR(NotNull(queries, "queries"));
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    kvc_attention_options o = DefaultAttentionOptions();
    // API 0.1's struct ended before `runner`.
    constexpr size_t kFirstSize = offsetof(kvc_attention_options, runner);
    if (options) {
      KVC_RETURN_IF_ERROR(
          (ImportSized<kvc_attention_options, kFirstSize>(options, o, &o, "attention options")));
    }
    Checksums checksums;
    KVC_RETURN_IF_ERROR(ChecksumsOf(o, "attention", &checksums));
    // Without the caller's pool, threads started once serve both rounds of
    // jobs below (checksums, then attention); trusted blocks leave one round,
    // whose threads start working as they are started.
    Parallelism parallelism = ParallelismOf(o);
    std::optional<CallThreads> call_threads;
    if (o.runner == nullptr && o.threads != 1 && checksums == Checksums::kVerify) {
      call_threads.emplace(o.threads);
      parallelism = call_threads->parallelism();
    }
    // Every block's frame and checksum, on the threads of the call: at long
    // contexts this pass reads as many bytes as the attention itself. Trusted
    // blocks' frames are only parsed, too little work to share out.
    const size_t total = key_block_count + value_block_count;
    auto buffer_of = [&](size_t i) -> const kvc_buffer& {
      return i < key_block_count ? key_blocks[i] : value_blocks[i - key_block_count];
    };
    auto name_of = [&](size_t i) {
      return i < key_block_count ? StrFormat("key block %zu: ", i)
                                 : StrFormat("value block %zu: ", i - key_block_count);
    };
    std::vector<EncodedBlock> blocks(total);
    std::vector<SectionRef> sections(total);
    Parallelism frames = parallelism;
    if (checksums == Checksums::kTrust) frames = Parallelism{1, nullptr, nullptr};
    KVC_RETURN_IF_ERROR(ParallelFor(total, frames, [&](size_t i) -> Status {
      const kvc_buffer& buffer = buffer_of(i);
      Status status = ReadBlockFrameSection(buffer.data, buffer.size, &blocks[i].header,
                                            &sections[i], checksums);
      if (!status.ok()) return Status(status.code(), name_of(i) + status.message());
      return OkStatus();
    }));
    // Blocks with the same tensor config and head_dim (all of a layer's K
    // blocks, as a rule) share one codec, whose tables (rotation signs, the
    // QJL matrix) cost more than a small block's scores.
    std::vector<BlockLayout> layouts(total);
    std::vector<std::pair<std::vector<uint8_t>, std::unique_ptr<TensorCodec>>> codecs;
    std::vector<EncodedBlock> keys, values;
    for (size_t i = 0; i < total; ++i) {
      EncodedBlock& b = blocks[i];
      const SectionRef& section = sections[i];
      std::vector<uint8_t> id(section.payload + kBlockFixedHeaderSize,
                              section.payload + b.header.header_size());
      id.push_back(static_cast<uint8_t>(b.header.head_dim));
      id.push_back(static_cast<uint8_t>(b.header.head_dim >> 8));
      auto same = std::find_if(codecs.begin(), codecs.end(),
                               [&](const auto& c) { return c.first == id; });
      if (same == codecs.end()) {
        codecs.emplace_back(std::move(id), TensorCodec::Create(b.header.config, b.header.head_dim));
        same = codecs.end() - 1;
      }
      b.codec = same->second.get();
      b.payload = section.payload;
      b.layout = &layouts[i];
      Status status = ReadBlockLayout(*b.codec, b.header, section, &layouts[i]);
      if (!status.ok()) return Status(status.code(), name_of(i) + status.message());
      (i < key_block_count ? keys : values).push_back(b);
    }
    if (keys.empty()) return Status(KVC_ERR_INVALID_ARGUMENT, "no key blocks");
    const uint64_t needed = uint64_t{num_query_heads} * keys[0].header.head_dim;
    if (out_capacity < needed) {
      return Status(KVC_ERR_DST_TOO_SMALL,
                    StrFormat("out needs %llu floats, capacity is %zu",
                              static_cast<unsigned long long>(needed), out_capacity));
    }
    AttentionParams params;
    params.parallelism = parallelism;
    params.scale = o.scale;
    params.token_begin = o.token_begin;
    params.token_end = o.token_end;
    return DecodeAttention(keys, values, queries, num_query_heads, params, out, lse);
  });
}

void kvc_cache_desc_init(kvc_cache_desc* desc) {
  if (desc) *desc = DefaultCacheDesc();
}

void kvc_encode_options_init(kvc_encode_options* options) {
  if (options) *options = DefaultEncodeOptions();
}

void kvc_decode_options_init(kvc_decode_options* options) {
  if (options) *options = DefaultDecodeOptions();
}

size_t kvc_stream_bound(const kvc_config* config, const kvc_cache_desc* desc,
                        const kvc_encode_options* options) {
  try {
    kvc_cache_desc d;
    kvc_encode_options o;
    size_t size;
    if (config == nullptr ||
        !ImportSized(desc, DefaultCacheDesc(), &d, "cache descriptor").ok() ||
        !ImportEncodeOptions(options, &o).ok() ||
        !StreamBound(config->rules, d, o.block_tokens, &size).ok()) {
      return 0;
    }
    return size;
  } catch (...) {
    return 0;
  }
}

kvc_status kvc_encode_stream(const kvc_config* config, const kvc_cache_desc* desc,
                             const kvc_tensor* keys, const kvc_tensor* values,
                             const kvc_encode_options* options, void* dst,
                             size_t dst_capacity, size_t* dst_size,
                             kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(config, "config"));
    KVC_RETURN_IF_ERROR(NotNull(dst_size, "dst_size"));
    kvc_cache_desc d;
    KVC_RETURN_IF_ERROR(ImportSized(desc, DefaultCacheDesc(), &d, "cache descriptor"));
    kvc_encode_options o;
    KVC_RETURN_IF_ERROR(ImportEncodeOptions(options, &o));
    return EncodeStream(config->rules, d, keys, values, o.queries, o.block_tokens,
                        o.threads, static_cast<uint8_t*>(dst), dst_capacity, dst_size);
  });
}

void kvc_stream_info_init(kvc_stream_info* info) {
  if (info) {
    std::memset(info, 0, sizeof(*info));
    info->struct_size = sizeof(*info);
  }
}

kvc_status kvc_get_stream_info(const void* src, size_t src_size,
                               kvc_stream_info* info, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(src, "src"));
    StreamLayout layout;
    KVC_RETURN_IF_ERROR(
        ReadStreamHeader(static_cast<const uint8_t*>(src), src_size, &layout));
    // Appended segments grow the cache past the header's token count.
    if ((layout.features & kFeatureSegments) != 0) {
      KVC_RETURN_IF_ERROR(ReadStreamLayout(static_cast<const uint8_t*>(src), src_size,
                                           Checksums::kVerify, &layout));
    }
    kvc_stream_info out;
    kvc_stream_info_init(&out);
    const kvc_cache_desc& d = layout.desc;
    out.format_major = layout.format_major;
    out.format_minor = layout.format_minor;
    out.num_layers = d.num_layers;
    out.num_kv_heads = d.num_kv_heads;
    out.head_dim = d.head_dim;
    out.num_tokens = d.num_tokens;
    out.dtype = d.dtype;
    out.rope_layout = d.rope_layout;
    out.position_offset = d.position_offset;
    out.rope_base = d.rope_base;
    return ExportSized(out, info, "stream info");
  });
}

kvc_status kvc_get_stream_layer(const void* src, size_t src_size, uint32_t layer,
                                kvc_tensor_config* keys_config,
                                kvc_tensor_config* values_config,
                                uint64_t* keys_bytes, uint64_t* values_bytes,
                                kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(src, "src"));
    StreamLayout layout;
    KVC_RETURN_IF_ERROR(ReadStreamLayout(static_cast<const uint8_t*>(src), src_size,
                                         Checksums::kVerify, &layout));
    if (layer >= layout.desc.num_layers) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("layer %u out of range (%u layers)", layer,
                              layout.desc.num_layers));
    }
    uint64_t bytes[2] = {0, 0};
    for (const StreamLayout::Block& b : layout.blocks) {
      if (b.header.layer == layer) bytes[b.header.kind] += b.section_size;
    }
    if (keys_bytes) *keys_bytes = bytes[0];
    if (values_bytes) *values_bytes = bytes[1];
    if (keys_config) {
      KVC_RETURN_IF_ERROR(
          ExportSized(layout.keys_configs[layer], keys_config, "keys config"));
    }
    if (values_config) {
      KVC_RETURN_IF_ERROR(
          ExportSized(layout.values_configs[layer], values_config, "values config"));
    }
    return OkStatus();
  });
}

kvc_status kvc_decode_stream(const void* src, size_t src_size,
                             const kvc_decode_options* options,
                             const kvc_tensor* keys, const kvc_tensor* values,
                             kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(src, "src"));
    kvc_decode_options o = DefaultDecodeOptions();
    if (options) {
      KVC_RETURN_IF_ERROR(ImportSized(options, DefaultDecodeOptions(), &o,
                                      "decode options"));
    }
    return DecodeStream(static_cast<const uint8_t*>(src), src_size, keys, values,
                        o.threads);
  });
}

}  // extern "C"

// ---------------------------------------------------------------------------
// Caches on disk and on the wire (codec/stream/cache_writer.h, cache_reader.h)

struct kvc_writer {
  std::unique_ptr<kvc::CacheWriter> writer;
};
struct kvc_cache {
  std::unique_ptr<kvc::CacheFile> file;
};
struct kvc_reader {
  std::unique_ptr<kvc::StreamReader> reader;
};

namespace kvc {
namespace {

kvc_writer_options DefaultWriterOptions() {
  kvc_writer_options o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  o.block_tokens = 4096;
  o.appendable = 1;
  return o;
}

kvc_open_options DefaultOpenOptions() {
  kvc_open_options o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

Status ImportWriterOptions(const kvc_writer_options* in, WriterSettings* out) {
  kvc_writer_options o = DefaultWriterOptions();
  if (in != nullptr) KVC_RETURN_IF_ERROR(ImportSized(in, DefaultWriterOptions(), &o, "writer options"));
  out->threads = o.threads;
  out->block_tokens = o.block_tokens;
  out->zstd_level = o.zstd_level;
  out->appendable = o.appendable != 0;
  if (o.model_name != nullptr) {
    const size_t n = strnlen(o.model_name, kMaxModelName + 1);
    if (n > kMaxModelName) {
      return Status(KVC_ERR_INVALID_ARGUMENT, "model name longer than 255 bytes");
    }
    out->model_name.assign(o.model_name, n);
  }
  out->model_hash = o.model_config_hash;
  return OkStatus();
}

Status ImportOpenOptions(const kvc_open_options* in, ModelCheck* out) {
  kvc_open_options o = DefaultOpenOptions();
  if (in != nullptr) KVC_RETURN_IF_ERROR(ImportSized(in, DefaultOpenOptions(), &o, "open options"));
  out->allow_mismatch = o.allow_model_mismatch != 0;
  if (o.expect_model_name != nullptr) out->expect_name = o.expect_model_name;
  out->expect_hash = o.expect_model_config_hash;
  return OkStatus();
}

kvc_stream_info StreamInfo(const StreamHeader& h, uint32_t num_tokens) {
  kvc_stream_info out;
  kvc_stream_info_init(&out);
  const kvc_cache_desc& d = h.desc;
  out.format_major = h.format_major;
  out.format_minor = h.format_minor;
  out.num_layers = d.num_layers;
  out.num_kv_heads = d.num_kv_heads;
  out.head_dim = d.head_dim;
  out.num_tokens = num_tokens;
  out.dtype = d.dtype;
  out.rope_layout = d.rope_layout;
  out.position_offset = d.position_offset;
  out.rope_base = d.rope_base;
  return out;
}

}  // namespace
}  // namespace kvc

extern "C" {

using namespace kvc;  // NOLINT: the shims below are thin

void kvc_writer_options_init(kvc_writer_options* options) {
  if (options) *options = DefaultWriterOptions();
}

void kvc_open_options_init(kvc_open_options* options) {
  if (options) *options = DefaultOpenOptions();
}

void kvc_cache_info_init(kvc_cache_info* info) {
  if (info) {
    std::memset(info, 0, sizeof(*info));
    info->struct_size = sizeof(*info);
    kvc_stream_info_init(&info->stream);
  }
}

void kvc_layer_run_init(kvc_layer_run* run) {
  if (run) {
    std::memset(run, 0, sizeof(*run));
    run->struct_size = sizeof(*run);
  }
}

uint64_t kvc_hash64(const void* data, size_t size) {
  return data == nullptr && size > 0 ? 0 : Hash64(data, size);
}

kvc_status kvc_writer_create(const kvc_config* config, const kvc_cache_desc* desc,
                            const kvc_writer_options* options, kvc_write_fn write,
                            void* opaque, kvc_writer** out, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(config, "config"));
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    *out = nullptr;
    kvc_cache_desc d;
    KVC_RETURN_IF_ERROR(ImportSized(desc, DefaultCacheDesc(), &d, "cache descriptor"));
    WriterSettings settings;
    KVC_RETURN_IF_ERROR(ImportWriterOptions(options, &settings));
    std::unique_ptr<kvc_writer> w(new kvc_writer);
    KVC_RETURN_IF_ERROR(CacheWriter::Create(config->rules, d, settings,
                                            Sink{write, options ? options->sync : nullptr, opaque},
                                            &w->writer));
    *out = w.release();
    return OkStatus();
  });
}

kvc_status kvc_writer_add_layer(kvc_writer* writer, const kvc_tensor* keys,
                                const kvc_tensor* values, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(writer, "writer"));
    return writer->writer->AddLayer(keys, values);
  });
}

kvc_status kvc_writer_finish(kvc_writer* writer, uint64_t* total_size, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(writer, "writer"));
    return writer->writer->Finish(total_size);
  });
}

void kvc_writer_destroy(kvc_writer* writer) { delete writer; }

kvc_status kvc_cache_open(kvc_read_at_fn read_at, void* opaque, uint64_t size,
                          const kvc_open_options* options, kvc_cache** out,
                          kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    *out = nullptr;
    ModelCheck check;
    KVC_RETURN_IF_ERROR(ImportOpenOptions(options, &check));
    std::unique_ptr<kvc_cache> c(new kvc_cache);
    KVC_RETURN_IF_ERROR(CacheFile::Open(read_at, opaque, size, check, &c->file));
    *out = c.release();
    return OkStatus();
  });
}

kvc_status kvc_cache_get_info(const kvc_cache* cache, kvc_cache_info* info,
                              kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(cache, "cache"));
    const CacheFile& f = *cache->file;
    kvc_cache_info out;
    kvc_cache_info_init(&out);
    out.features = f.header().features;
    out.stream = StreamInfo(f.header(), f.num_tokens());
    out.segments = f.segments();
    out.blocks = static_cast<uint32_t>(f.blocks().size());
    out.size = f.end_offset();
    out.ignored_bytes = f.ignored_bytes();
    out.has_model = f.has_model() ? 1 : 0;
    out.model_config_hash = f.model_hash();
    std::snprintf(out.model_name, sizeof(out.model_name), "%s", f.model_name().c_str());
    return ExportSized(out, info, "cache info");
  });
}

kvc_status kvc_cache_layer_config(const kvc_cache* cache, uint32_t layer,
                                  kvc_tensor_config* keys_config,
                                  kvc_tensor_config* values_config, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(cache, "cache"));
    const CacheFile& f = *cache->file;
    if (layer >= f.header().desc.num_layers) {
      return Status(KVC_ERR_INVALID_ARGUMENT, StrFormat("layer %u out of range (%u layers)",
                                                        layer, f.header().desc.num_layers));
    }
    if (keys_config) {
      KVC_RETURN_IF_ERROR(ExportSized(f.config(layer, KVC_KIND_KEYS), keys_config, "keys config"));
    }
    if (values_config) {
      KVC_RETURN_IF_ERROR(
          ExportSized(f.config(layer, KVC_KIND_VALUES), values_config, "values config"));
    }
    return OkStatus();
  });
}

kvc_status kvc_cache_read(kvc_cache* cache, uint32_t layer, kvc_kind kind, uint32_t head_start,
                          uint32_t head_count, uint32_t token_start, uint32_t token_count,
                          const kvc_tensor* out, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(cache, "cache"));
    return cache->file->Read(layer, static_cast<uint32_t>(kind), head_start, head_count,
                             token_start, token_count, out);
  });
}

kvc_status kvc_cache_append(const kvc_cache* cache, uint32_t new_tokens,
                            const kvc_writer_options* options, kvc_write_fn write,
                            void* opaque, kvc_writer** out, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(cache, "cache"));
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    *out = nullptr;
    WriterSettings settings;
    KVC_RETURN_IF_ERROR(ImportWriterOptions(options, &settings));
    std::unique_ptr<kvc_writer> w(new kvc_writer);
    KVC_RETURN_IF_ERROR(CacheWriter::Append(cache->file->append_base(), new_tokens, settings,
                                            Sink{write, options ? options->sync : nullptr, opaque},
                                            &w->writer));
    *out = w.release();
    return OkStatus();
  });
}

void kvc_block_entry_init(kvc_block_entry* entry) {
  if (entry) {
    std::memset(entry, 0, sizeof(*entry));
    entry->struct_size = sizeof(*entry);
  }
}

kvc_status kvc_cache_block(const kvc_cache* cache, uint32_t index, kvc_block_entry* entry,
                           kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(cache, "cache"));
    const std::vector<IndexEntry>& blocks = cache->file->blocks();
    if (index >= blocks.size()) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("block %u out of range (%zu blocks)", index, blocks.size()));
    }
    const IndexEntry& e = blocks[index];
    kvc_block_entry out;
    kvc_block_entry_init(&out);
    out.layer = e.layer;
    out.kind = e.kind;
    out.token_start = e.token_start;
    out.token_count = e.token_count;
    out.offset = e.offset;
    out.size = e.size;
    return ExportSized(out, entry, "block entry");
  });
}

void kvc_cache_close(kvc_cache* cache) { delete cache; }

kvc_status kvc_reader_create(kvc_read_fn read, void* opaque, const kvc_open_options* options,
                             kvc_reader** out, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(out, "out"));
    *out = nullptr;
    ModelCheck check;
    KVC_RETURN_IF_ERROR(ImportOpenOptions(options, &check));
    std::unique_ptr<kvc_reader> r(new kvc_reader);
    KVC_RETURN_IF_ERROR(StreamReader::Open(read, opaque, check, &r->reader));
    *out = r.release();
    return OkStatus();
  });
}

kvc_status kvc_reader_get_info(const kvc_reader* reader, kvc_stream_info* info,
                               kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(reader, "reader"));
    const StreamHeader& h = reader->reader->header();
    return ExportSized(StreamInfo(h, h.desc.num_tokens), info, "stream info");
  });
}

kvc_status kvc_reader_next(kvc_reader* reader, kvc_layer_run* run, kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(reader, "reader"));
    KVC_RETURN_IF_ERROR(NotNull(run, "run"));
    kvc_layer_run r;
    kvc_layer_run_init(&r);
    KVC_RETURN_IF_ERROR(reader->reader->Next(&r));
    return ExportSized(r, run, "layer run");
  });
}

kvc_status kvc_reader_read(kvc_reader* reader, const kvc_tensor* keys, const kvc_tensor* values,
                           kvc_diagnostics* diag) {
  return Guard(diag, [&] {
    KVC_RETURN_IF_ERROR(NotNull(reader, "reader"));
    return reader->reader->Read(keys, values);
  });
}

void kvc_reader_destroy(kvc_reader* reader) { delete reader; }

}  // extern "C"
