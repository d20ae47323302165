#include "stream/cache_writer.h"

#include <algorithm>

#include "base/endian.h"
#include "base/parallel.h"
#include "format/block.h"
#include "format/tensor_view.h"
#include "stream/zstd_stage.h"

namespace kvc {
namespace {

Status ImportLayerTensor(const kvc_tensor* tensor, const kvc_cache_desc& desc,
                         const char* name, TensorView* view) {
  KVC_RETURN_IF_ERROR(ImportTensor(tensor, 3, name, view));
  if (view->shape[0] != desc.num_kv_heads || view->shape[1] != desc.num_tokens ||
      view->shape[2] != desc.head_dim) {
    return Status(KVC_ERR_SHAPE_MISMATCH,
                  StrFormat("%s has shape [%llu, %llu, %llu], the layer is [%u, %u, %u]",
                            name, static_cast<unsigned long long>(view->shape[0]),
                            static_cast<unsigned long long>(view->shape[1]),
                            static_cast<unsigned long long>(view->shape[2]),
                            desc.num_kv_heads, desc.num_tokens, desc.head_dim));
  }
  return OkStatus();
}

// Checks the settings and resolves the zstd level: 0 takes `config_level`
// (the config's; 0 when appending), -1 is none.
Status ResolveSettings(int config_level, WriterSettings* s) {
  if (s->zstd_level < -1 || s->zstd_level > 19) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("zstd level %d: use -1 (none), 0 (the config's) or 1..19",
                            s->zstd_level));
  }
  const bool from_config = s->zstd_level == 0 && config_level > 0;
  if (s->zstd_level == 0) s->zstd_level = config_level;
  if (s->zstd_level < 0) s->zstd_level = 0;
  if (s->zstd_level > 0 && !ZstdAvailable()) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  from_config ? StrFormat("this kvcodec is built without zstd, which the config "
                                          "asks for (zstd %d): zstd_level -1 stores without it",
                                          config_level)
                              : std::string("this kvcodec is built without zstd"));
  }
  if (s->model_name.size() > kMaxModelName ||
      s->model_name.find('\0') != std::string::npos) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "model name: at most 255 bytes, no NUL");
  }
  return OkStatus();
}

}  // namespace

Status CacheWriter::Create(const CacheConfig& config, const kvc_cache_desc& desc,
                           const WriterSettings& settings, const Sink& sink,
                           std::unique_ptr<CacheWriter>* out) {
  if (sink.write == nullptr) return Status(KVC_ERR_INVALID_ARGUMENT, "write callback is NULL");
  KVC_RETURN_IF_ERROR(CheckCacheDesc(desc));
  WriterSettings resolved = settings;
  KVC_RETURN_IF_ERROR(ResolveSettings(config.zstd_level(), &resolved));
  std::unique_ptr<CacheWriter> w(new CacheWriter());
  KVC_RETURN_IF_ERROR(ResolveConfigs(config, desc, &w->configs_));
  w->desc_ = desc;
  w->settings_ = resolved;
  w->sink_ = sink;
  w->codecs_ = std::make_unique<CodecCache>(desc.head_dim);
  const uint32_t features = (resolved.zstd_level > 0 ? kFeatureZstdSections : 0) |
                            (resolved.appendable ? kFeatureSegments : 0);
  uint8_t header[kStreamHeaderSize];
  WriteStreamHeader(desc, features, w->configs_, header);
  KVC_RETURN_IF_ERROR(w->Emit(header, sizeof(header)));
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    const kvc_tensor_config& k = w->configs_[2 * layer];
    const kvc_tensor_config& v = w->configs_[2 * layer + 1];
    std::vector<uint8_t> payload(LayerConfigPayloadSize(k, v));
    WriteLayerConfigPayload(layer, k, v, payload.data());
    KVC_RETURN_IF_ERROR(w->EmitSection(kSectionLayerConfig, payload));
  }
  if (!settings.model_name.empty() || settings.model_hash != 0) {
    KVC_RETURN_IF_ERROR(w->EmitSection(
        kSectionModelIdentity, ModelIdentityPayload(settings.model_name, settings.model_hash)));
  }
  *out = std::move(w);
  return OkStatus();
}

Status CacheWriter::Append(const AppendBase& base, uint32_t new_tokens,
                           const WriterSettings& settings, const Sink& sink,
                           std::unique_ptr<CacheWriter>* out) {
  if (sink.write == nullptr) return Status(KVC_ERR_INVALID_ARGUMENT, "write callback is NULL");
  WriterSettings resolved = settings;
  KVC_RETURN_IF_ERROR(ResolveSettings(0, &resolved));
  if ((base.header.features & kFeatureSegments) == 0) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  "the cache was not written appendable (writer option appendable = 0)");
  }
  if (resolved.zstd_level > 0 && (base.header.features & kFeatureZstdSections) == 0) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  "the cache was written without zstd: append with zstd_level 0");
  }
  if (new_tokens == 0 || uint64_t{base.num_tokens} + new_tokens > 0xFFFFFFFFull) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("cannot append %u tokens to %u", new_tokens, base.num_tokens));
  }
  std::unique_ptr<CacheWriter> w(new CacheWriter());
  w->desc_ = base.header.desc;
  w->desc_.num_tokens = new_tokens;
  w->segment_start_ = base.num_tokens;
  w->configs_ = base.configs;
  w->settings_ = resolved;
  w->sink_ = sink;
  w->offset_ = base.end_offset;
  w->blocks_ = base.blocks;
  w->segments_ = base.segments + 1;
  w->codecs_ = std::make_unique<CodecCache>(w->desc_.head_dim);
  std::vector<uint8_t> payload(kAppendPayload);
  StoreLE32(base.num_tokens + new_tokens, payload.data());
  StoreLE32(0, payload.data() + 4);
  KVC_RETURN_IF_ERROR(w->EmitSection(kSectionAppend, payload));
  *out = std::move(w);
  return OkStatus();
}

Status CacheWriter::Fail(const Status& s) {
  if (failed_.ok()) failed_ = s;
  return s;
}

Status CacheWriter::Emit(const uint8_t* data, size_t size) {
  if (sink_.write(sink_.opaque, data, size) != 0) {
    return Fail(Status(KVC_ERR_IO, StrFormat("write callback failed at byte %llu",
                                             static_cast<unsigned long long>(offset_))));
  }
  offset_ += size;
  return OkStatus();
}

Status CacheWriter::Sync() {
  if (sink_.sync != nullptr && sink_.sync(sink_.opaque) != 0) {
    return Fail(Status(KVC_ERR_IO, "sync callback failed"));
  }
  return OkStatus();
}

Status CacheWriter::EmitSection(uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> section(SectionSize(payload.size()));
  std::copy(payload.begin(), payload.end(), section.begin() + kSectionHeaderSize);
  SealSection(type, payload.size(), section.data());
  KVC_RETURN_IF_ERROR(Emit(section.data(), section.size()));
  ++sections_;
  return OkStatus();
}

Status CacheWriter::AddLayer(const kvc_tensor* keys, const kvc_tensor* values) {
  KVC_RETURN_IF_ERROR(failed_);
  if (finished_) return Status(KVC_ERR_INVALID_ARGUMENT, "writer already finished");
  if (next_layer_ >= desc_.num_layers) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("all %u layers were added already", desc_.num_layers));
  }
  const uint32_t layer = next_layer_;
  TensorView views[2];
  KVC_RETURN_IF_ERROR(ImportLayerTensor(keys, desc_, "keys", &views[0]));
  KVC_RETURN_IF_ERROR(ImportLayerTensor(values, desc_, "values", &views[1]));
  // The layer's blocks, K then V, each a run of block_tokens tokens.
  const uint32_t run = settings_.block_tokens == 0 ? desc_.num_tokens : settings_.block_tokens;
  std::vector<BlockHeader> plan;
  for (uint32_t kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
    for (uint32_t t0 = 0; t0 < desc_.num_tokens; t0 += run) {
      BlockHeader h;
      h.layer = layer;
      h.kind = kind;
      h.head_dim = desc_.head_dim;
      h.head_count = desc_.num_kv_heads;
      h.token_start = segment_start_ + t0;
      h.token_count = std::min(run, desc_.num_tokens - t0);
      h.config = configs_[2 * layer + kind];
      plan.push_back(h);
    }
  }
  std::vector<const TensorCodec*> codecs;
  for (const BlockHeader& h : plan) codecs.push_back(codecs_->Get(h.config));
  // Encoded in parallel into one section each (then compressed where it
  // pays), written in order.
  std::vector<std::vector<uint8_t>> sections(plan.size());
  std::vector<uint8_t> flags(plan.size(), 0);
  Status encoded = ParallelFor(plan.size(), settings_.threads, [&](size_t i) {
    const BlockHeader& h = plan[i];
    TensorView input = views[h.kind];
    input.data += static_cast<int64_t>(h.token_start - segment_start_) * input.strides[1] *
                  static_cast<int64_t>(DtypeBytes(input.dtype));
    input.shape[1] = h.token_count;
    std::vector<uint8_t> records;
    BlockLayout layout;
    KVC_RETURN_IF_ERROR(PlanBlockPayload(*codecs[i], h, input, nullptr, &records, &layout));
    std::vector<uint8_t>& section = sections[i];
    section.resize(SectionSize(layout.payload_size));
    KVC_RETURN_IF_ERROR(WriteBlockPayload(*codecs[i], h, input, records, layout,
                                          section.data() + kSectionHeaderSize));
    std::vector<uint8_t> stored;
    if (settings_.zstd_level > 0 &&
        ZstdCompressPayload(section.data() + kSectionHeaderSize, layout.payload_size,
                            settings_.zstd_level, &stored)) {
      section.resize(SectionSize(stored.size()));
      std::copy(stored.begin(), stored.end(), section.begin() + kSectionHeaderSize);
      flags[i] = kSectionFlagZstd;
    }
    SealSection(kSectionBlock, section.size() - SectionSize(0), section.data(), flags[i]);
    return OkStatus();
  });
  if (!encoded.ok()) return encoded;  // the caller's input: the writer goes on
  for (size_t i = 0; i < plan.size(); ++i) {
    const BlockHeader& h = plan[i];
    blocks_.push_back(IndexEntry{offset_, sections[i].size(), h.layer, h.kind, h.token_start,
                                 h.token_count});
    KVC_RETURN_IF_ERROR(Emit(sections[i].data(), sections[i].size()));
    ++sections_;
    std::vector<uint8_t>().swap(sections[i]);
  }
  ++next_layer_;
  return OkStatus();
}

Status CacheWriter::Finish(uint64_t* total) {
  KVC_RETURN_IF_ERROR(failed_);
  if (finished_) return Status(KVC_ERR_INVALID_ARGUMENT, "writer already finished");
  if (next_layer_ != desc_.num_layers) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%u of %u layers added", next_layer_, desc_.num_layers));
  }
  const uint32_t tokens = segment_start_ + desc_.num_tokens;
  std::vector<uint8_t> index(IndexPayloadSize(blocks_.size()));
  WriteIndexPayload(blocks_, tokens, segments_, index.data());
  const uint64_t index_offset = offset_;
  KVC_RETURN_IF_ERROR(EmitSection(kSectionBlockIndex, index));
  // The commit record: locator and End go out only after everything before
  // them is durable, so a crash leaves either the old state or the new one.
  KVC_RETURN_IF_ERROR(Sync());
  uint8_t commit[SectionSize(kIndexLocatorPayload) + SectionSize(kEndPayload)];
  StoreLE64(index_offset, commit + kSectionHeaderSize);
  SealSection(kSectionIndexLocator, kIndexLocatorPayload, commit);
  ++sections_;
  uint8_t* end = commit + SectionSize(kIndexLocatorPayload);
  StoreLE32(sections_, end + kSectionHeaderSize);
  SealSection(kSectionEnd, kEndPayload, end);
  KVC_RETURN_IF_ERROR(Emit(commit, sizeof(commit)));
  KVC_RETURN_IF_ERROR(Sync());
  finished_ = true;
  if (total != nullptr) *total = offset_;
  return OkStatus();
}

}  // namespace kvc
