#include "stream/stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "base/endian.h"
#include "base/parallel.h"
#include "config/tensor_config.h"
#include "format/checksum.h"
#include "format/tensor_view.h"

namespace kvc {
namespace {

constexpr size_t kEndPayload = 4;

size_t LayerConfigPayload(const kvc_tensor_config& k, const kvc_tensor_config& v) {
  return 4 + TensorConfigWireSize(k) + TensorConfigWireSize(v);
}

const char* KindName(uint32_t kind) { return kind == KVC_KIND_KEYS ? "K" : "V"; }

// The blocks an encoder writes: for each layer, K then V, all heads, tokens
// in runs of block_tokens.
std::vector<BlockHeader> PlanBlocks(const kvc_cache_desc& desc,
                                    const std::vector<kvc_tensor_config>& configs,
                                    uint32_t block_tokens) {
  std::vector<BlockHeader> plan;
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    for (uint32_t kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
      for (uint32_t t0 = 0; t0 < desc.num_tokens; t0 += block_tokens) {
        BlockHeader h;
        h.layer = layer;
        h.kind = kind;
        h.head_dim = desc.head_dim;
        h.head_count = desc.num_kv_heads;
        h.token_start = t0;
        h.token_count = std::min(block_tokens, desc.num_tokens - t0);
        h.config = configs[2 * layer + kind];
        plan.push_back(h);
      }
    }
  }
  return plan;
}

Status ResolveConfigs(const CacheConfig& config, const kvc_cache_desc& desc,
                      std::vector<kvc_tensor_config>* configs) {
  configs->resize(2 * desc.num_layers);
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    for (kvc_kind kind : {KVC_KIND_KEYS, KVC_KIND_VALUES}) {
      kvc_tensor_config& c = (*configs)[2 * layer + kind];
      KVC_RETURN_IF_ERROR(config.Resolve(layer, desc.num_layers, kind, &c));
      // Block-GTQ pairs RoPE dimensions the way the cache does.
      if (c.method == KVC_METHOD_BLOCKGTQ && c.rope_pairing == KVC_ROPE_UNKNOWN) {
        c.rope_pairing = desc.rope_layout == KVC_ROPE_INTERLEAVED ? KVC_ROPE_INTERLEAVED
                                                                   : KVC_ROPE_SPLIT_HALF;
      }
      const std::string what = StrFormat("layer %u %s", layer, KindName(kind));
      KVC_RETURN_IF_ERROR(ValidateTensorConfig(c, what));
      KVC_RETURN_IF_ERROR(ValidateForHeadDim(c, desc.head_dim, what));
    }
  }
  return OkStatus();
}

Status ImportCacheTensor(const kvc_tensor* tensor, const kvc_cache_desc& desc,
                         const char* name, TensorView* view) {
  KVC_RETURN_IF_ERROR(ImportTensor(tensor, 4, name, view));
  const uint64_t expected[4] = {desc.num_layers, desc.num_kv_heads,
                                desc.num_tokens, desc.head_dim};
  for (int i = 0; i < 4; ++i) {
    if (view->shape[i] != expected[i]) {
      return Status(KVC_ERR_SHAPE_MISMATCH,
                    StrFormat("%s has shape [%llu, %llu, %llu, %llu], the cache "
                              "is [%u, %u, %u, %u]", name,
                              static_cast<unsigned long long>(view->shape[0]),
                              static_cast<unsigned long long>(view->shape[1]),
                              static_cast<unsigned long long>(view->shape[2]),
                              static_cast<unsigned long long>(view->shape[3]),
                              desc.num_layers, desc.num_kv_heads,
                              desc.num_tokens, desc.head_dim));
    }
  }
  return OkStatus();
}

// The [heads, tokens, dim] part of a cache tensor that block h covers.
TensorView BlockView(const TensorView& cache, const BlockHeader& h) {
  TensorView v = cache.Sub(h.layer);
  v.data += static_cast<int64_t>(h.token_start) * v.strides[1] *
            static_cast<int64_t>(DtypeBytes(v.dtype));
  v.shape[1] = h.token_count;
  return v;
}

void WriteStreamHeader(const kvc_cache_desc& d, uint8_t* p) {
  StoreLE32(KVC_STREAM_MAGIC, p);
  p[4] = KVC_FORMAT_MAJOR;
  p[5] = KVC_FORMAT_MINOR;
  StoreLE16(kStreamHeaderSize, p + 6);
  StoreLE32(0, p + 8);  // Required_Features
  StoreLE16(static_cast<uint16_t>(d.num_layers), p + 12);
  StoreLE16(static_cast<uint16_t>(d.num_kv_heads), p + 14);
  StoreLE16(static_cast<uint16_t>(d.head_dim), p + 16);
  p[18] = static_cast<uint8_t>(d.dtype);
  p[19] = static_cast<uint8_t>(d.rope_layout);
  StoreLE32(d.num_tokens, p + 20);
  StoreLE32(d.position_offset, p + 24);
  StoreLE32(FloatBits(d.rope_base), p + 28);
  StoreLE32(0, p + 32);  // Reserved
  StoreLE32(Checksum32(p, kStreamHeaderSize - 4), p + kStreamHeaderSize - 4);
}

Status CheckTokenCoverage(const StreamLayout& layout) {
  const kvc_cache_desc& d = layout.desc;
  // Token runs per (layer, kind), then sorted: they must tile [0, tokens).
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> runs(2 * d.num_layers);
  for (const StreamLayout::Block& b : layout.blocks) {
    runs[2 * b.header.layer + b.header.kind].emplace_back(b.header.token_start,
                                                          b.header.token_count);
  }
  for (uint32_t i = 0; i < runs.size(); ++i) {
    std::sort(runs[i].begin(), runs[i].end());
    uint64_t covered = 0;
    for (const auto& run : runs[i]) {
      if (run.first != covered) {
        return Status(KVC_ERR_CORRUPT,
                      StrFormat("layer %u %s: tokens %llu..%u %s", i / 2,
                                KindName(i % 2),
                                static_cast<unsigned long long>(
                                    std::min<uint64_t>(covered, run.first)),
                                std::max<uint32_t>(run.first, covered) - 1,
                                run.first > covered ? "are missing"
                                                    : "appear in two blocks"));
      }
      covered += run.second;
    }
    if (covered != d.num_tokens) {
      return Status(KVC_ERR_CORRUPT,
                    StrFormat("layer %u %s: tokens %llu..%u are missing", i / 2,
                              KindName(i % 2),
                              static_cast<unsigned long long>(covered),
                              d.num_tokens - 1));
    }
  }
  return OkStatus();
}

}  // namespace

kvc_cache_desc DefaultCacheDesc() {
  kvc_cache_desc d;
  std::memset(&d, 0, sizeof(d));
  d.struct_size = sizeof(d);
  d.dtype = KVC_DTYPE_F16;
  return d;
}

Status CheckCacheDesc(const kvc_cache_desc& d) {
  auto bad = [](const std::string& why) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "cache descriptor: " + why);
  };
  if (d.num_layers < 1 || d.num_layers > 0xFFFF) return bad("layers must be 1..65535");
  if (d.num_kv_heads < 1 || d.num_kv_heads > 0xFFFF) return bad("heads must be 1..65535");
  if (d.num_tokens < 1) return bad("no tokens");
  Status dim = ValidateHeadDim(d.head_dim);
  if (!dim.ok()) return bad(dim.message());
  if (d.dtype > KVC_DTYPE_BF16) return bad(StrFormat("dtype %u unknown", d.dtype));
  if (d.rope_layout > KVC_ROPE_INTERLEAVED) {
    return bad(StrFormat("rope layout %u unknown", d.rope_layout));
  }
  if (!std::isfinite(d.rope_base) || d.rope_base < 0) return bad("rope_base invalid");
  return OkStatus();
}

const TensorCodec* StreamLayout::Codec(const kvc_tensor_config& c) {
  for (auto& entry : codecs) {
    if (SameTensorConfig(entry.first, c)) return entry.second.get();
  }
  codecs.emplace_back(c, TensorCodec::Create(c, desc.head_dim));
  return codecs.back().second.get();
}

Status StreamBound(const CacheConfig& config, const kvc_cache_desc& desc,
                   uint32_t block_tokens, size_t* size) {
  KVC_RETURN_IF_ERROR(CheckCacheDesc(desc));
  std::vector<kvc_tensor_config> configs;
  KVC_RETURN_IF_ERROR(ResolveConfigs(config, desc, &configs));
  if (block_tokens == 0) block_tokens = desc.num_tokens;
  StreamLayout codecs;
  codecs.desc = desc;
  uint64_t total = kStreamHeaderSize + SectionSize(kEndPayload);
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    total += SectionSize(LayerConfigPayload(configs[2 * layer], configs[2 * layer + 1]));
  }
  for (const BlockHeader& h : PlanBlocks(desc, configs, block_tokens)) {
    size_t payload;
    KVC_RETURN_IF_ERROR(BlockPayloadBound(h, *codecs.Codec(h.config), &payload));
    total += SectionSize(payload);
  }
  if (total > SIZE_MAX) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "stream exceeds addressable memory");
  }
  *size = static_cast<size_t>(total);
  return OkStatus();
}

Status EncodeStream(const CacheConfig& config, const kvc_cache_desc& desc,
                    const kvc_tensor* keys, const kvc_tensor* values,
                    const kvc_tensor* queries, uint32_t block_tokens, uint32_t threads,
                    uint8_t* dst, size_t dst_capacity, size_t* dst_size) {
  KVC_RETURN_IF_ERROR(CheckCacheDesc(desc));
  std::vector<kvc_tensor_config> configs;
  KVC_RETURN_IF_ERROR(ResolveConfigs(config, desc, &configs));
  TensorView key_view, value_view, query_view;
  KVC_RETURN_IF_ERROR(ImportCacheTensor(keys, desc, "keys", &key_view));
  KVC_RETURN_IF_ERROR(ImportCacheTensor(values, desc, "values", &value_view));
  if (queries != nullptr) {
    KVC_RETURN_IF_ERROR(ImportTensor(queries, 4, "queries", &query_view));
    if (query_view.shape[0] != desc.num_layers || query_view.shape[3] != desc.head_dim ||
        query_view.shape[1] % desc.num_kv_heads != 0) {
      return Status(KVC_ERR_SHAPE_MISMATCH,
                    "queries must be [layers, a multiple of kv heads, tokens, head_dim]");
    }
  }
  if (dst == nullptr) return Status(KVC_ERR_INVALID_ARGUMENT, "dst is NULL");
  if (block_tokens == 0) block_tokens = desc.num_tokens;

  // Blocks are planned in parallel (their head records fix their sizes, which
  // can depend on the data), laid out in order, then written in parallel
  // straight into dst.
  const std::vector<BlockHeader> plan = PlanBlocks(desc, configs, block_tokens);
  StreamLayout codecs;
  codecs.desc = desc;
  std::vector<const TensorCodec*> block_codecs;
  for (const BlockHeader& h : plan) block_codecs.push_back(codecs.Codec(h.config));
  auto input_of = [&](const BlockHeader& h) {
    return BlockView(h.kind == KVC_KIND_KEYS ? key_view : value_view, h);
  };
  std::vector<std::vector<uint8_t>> records(plan.size());
  std::vector<BlockLayout> layouts(plan.size());
  KVC_RETURN_IF_ERROR(ParallelFor(plan.size(), threads, [&](size_t i) {
    const BlockHeader& h = plan[i];
    TensorView layer_queries;
    const bool use_queries = queries != nullptr && h.kind == KVC_KIND_KEYS;
    if (use_queries) layer_queries = query_view.Sub(h.layer);
    return PlanBlockPayload(*block_codecs[i], h, input_of(h),
                            use_queries ? &layer_queries : nullptr, &records[i], &layouts[i]);
  }));

  size_t offset = kStreamHeaderSize;
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    offset += SectionSize(LayerConfigPayload(configs[2 * layer], configs[2 * layer + 1]));
  }
  std::vector<size_t> block_offsets(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    block_offsets[i] = offset;
    offset += SectionSize(layouts[i].payload_size);
  }
  const size_t end_offset = offset;
  const size_t size = end_offset + SectionSize(kEndPayload);
  if (dst_capacity < size) {
    return Status(KVC_ERR_DST_TOO_SMALL,
                  StrFormat("stream needs %zu bytes, dst holds %zu", size, dst_capacity));
  }
  KVC_RETURN_IF_ERROR(ParallelFor(plan.size(), threads, [&](size_t i) {
    uint8_t* section = dst + block_offsets[i];
    KVC_RETURN_IF_ERROR(WriteBlockPayload(*block_codecs[i], plan[i], input_of(plan[i]),
                                          records[i], layouts[i],
                                          section + kSectionHeaderSize));
    SealSection(kSectionBlock, layouts[i].payload_size, section);
    return OkStatus();
  }));
  uint8_t* p = dst;
  WriteStreamHeader(desc, p);
  p += kStreamHeaderSize;
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    const kvc_tensor_config& k = configs[2 * layer];
    const kvc_tensor_config& v = configs[2 * layer + 1];
    uint8_t* payload = p + kSectionHeaderSize;
    StoreLE16(static_cast<uint16_t>(layer), payload);
    StoreLE16(0, payload + 2);
    WriteTensorConfig(k, payload + 4);
    WriteTensorConfig(v, payload + 4 + TensorConfigWireSize(k));
    SealSection(kSectionLayerConfig, LayerConfigPayload(k, v), p);
    p += SectionSize(LayerConfigPayload(k, v));
  }
  p = dst + end_offset;
  StoreLE32(static_cast<uint32_t>(desc.num_layers + plan.size()), p + kSectionHeaderSize);
  SealSection(kSectionEnd, kEndPayload, p);
  p += SectionSize(kEndPayload);
  *dst_size = static_cast<size_t>(p - dst);
  return OkStatus();
}

Status ReadStreamHeader(const uint8_t* data, size_t size, StreamLayout* layout) {
  const uint8_t magic[4] = {0xB5, 0x4B, 0x56, 0x43};
  if (size < 4) {
    return size > 0 && std::memcmp(data, magic, size) == 0
               ? Status(KVC_ERR_TRUNCATED, "input ends inside the stream header")
               : Status(KVC_ERR_NOT_KVCODEC, "not a kvcodec stream (too short)");
  }
  if (LoadLE32(data) != KVC_STREAM_MAGIC) {
    return Status(KVC_ERR_NOT_KVCODEC,
                  LoadLE32(data) == KVC_BLOCK_MAGIC
                      ? "this is a standalone block, not a stream"
                      : "not a kvcodec stream (magic number mismatch)");
  }
  if (size < 8) return Status(KVC_ERR_TRUNCATED, "input ends inside the stream header");
  if (data[4] != KVC_FORMAT_MAJOR) {
    return Status(KVC_ERR_UNSUPPORTED_VERSION,
                  StrFormat("stream format %u.%u; this decoder reads %u.x",
                            data[4], data[5], KVC_FORMAT_MAJOR));
  }
  const size_t header_size = LoadLE16(data + 6);
  if (header_size < kStreamHeaderSize) {
    return Status(KVC_ERR_CORRUPT,
                  StrFormat("stream header size %zu < %zu", header_size,
                            kStreamHeaderSize));
  }
  if (size < header_size) {
    return Status(KVC_ERR_TRUNCATED, "input ends inside the stream header");
  }
  if (Checksum32(data, header_size - 4) != LoadLE32(data + header_size - 4)) {
    return Status(KVC_ERR_CHECKSUM, "stream header checksum mismatch");
  }
  if (LoadLE32(data + 8) != 0) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  StrFormat("stream requires features 0x%08x unknown to this "
                            "decoder", LoadLE32(data + 8)));
  }
  if (LoadLE32(data + 32) != 0) {
    return Status(KVC_ERR_CORRUPT, "stream header reserved bytes not zero");
  }
  kvc_cache_desc& d = layout->desc;
  d = DefaultCacheDesc();
  d.num_layers = LoadLE16(data + 12);
  d.num_kv_heads = LoadLE16(data + 14);
  d.head_dim = LoadLE16(data + 16);
  d.dtype = data[18];
  d.rope_layout = data[19];
  d.num_tokens = LoadLE32(data + 20);
  d.position_offset = LoadLE32(data + 24);
  d.rope_base = BitsToFloat(LoadLE32(data + 28));
  Status valid = CheckCacheDesc(d);
  if (!valid.ok()) return Status(KVC_ERR_CORRUPT, "stream " + valid.message());
  layout->format_major = data[4];
  layout->format_minor = data[5];
  return OkStatus();
}

Status ReadStreamLayout(const uint8_t* data, size_t size, StreamLayout* layout) {
  KVC_RETURN_IF_ERROR(ReadStreamHeader(data, size, layout));
  const kvc_cache_desc& d = layout->desc;
  size_t offset = LoadLE16(data + 6);
  uint32_t sections = 0;
  for (;;) {
    if (offset == size) {
      return Status(KVC_ERR_TRUNCATED, "stream ends before its End section");
    }
    SectionRef s;
    Status read = ReadSection(data + offset, size - offset, &s);
    if (!read.ok()) {
      return Status(read.code(), StrFormat("at byte %zu: %s", offset,
                                           read.message().c_str()));
    }
    auto corrupt = [&](const std::string& why) {
      return Status(KVC_ERR_CORRUPT, StrFormat("at byte %zu: %s", offset, why.c_str()));
    };
    const uint32_t layers_seen = static_cast<uint32_t>(layout->keys_configs.size());
    if (s.type == kSectionLayerConfig) {
      if (s.payload_size < 4) return corrupt("layer config size");
      const uint32_t layer = LoadLE16(s.payload);
      if (layer != layers_seen || layer >= d.num_layers || !layout->blocks.empty()) {
        return corrupt(StrFormat("layer config %u out of order", layer));
      }
      if (LoadLE16(s.payload + 2) != 0) return corrupt("layer config reserved bytes");
      kvc_tensor_config k, v;
      size_t k_size, v_size;
      KVC_RETURN_IF_ERROR(ReadTensorConfig(s.payload + 4, s.payload_size - 4, &k, &k_size));
      KVC_RETURN_IF_ERROR(ReadTensorConfig(s.payload + 4 + k_size,
                                           s.payload_size - 4 - k_size, &v, &v_size));
      if (4 + k_size + v_size != s.payload_size) return corrupt("layer config size");
      for (const kvc_tensor_config* c : {&k, &v}) {
        Status fits = ValidateForHeadDim(*c, d.head_dim, StrFormat("layer %u", layer));
        if (!fits.ok()) return corrupt(fits.message());
      }
      layout->keys_configs.push_back(k);
      layout->values_configs.push_back(v);
    } else if (s.type == kSectionBlock) {
      if (layers_seen != d.num_layers) return corrupt("block before all layer configs");
      StreamLayout::Block b{BlockHeader{}, BlockLayout{}, s.payload, s.total_size, nullptr};
      Status header = ReadBlockHeader(s, &b.header);
      if (!header.ok()) {
        return Status(header.code(), StrFormat("at byte %zu: %s", offset,
                                               header.message().c_str()));
      }
      const BlockHeader& h = b.header;
      if (h.layer >= d.num_layers || h.head_dim != d.head_dim ||
          h.head_start != 0 || h.head_count != d.num_kv_heads ||
          uint64_t{h.token_start} + h.token_count > d.num_tokens) {
        return corrupt(h.Name() + ": block does not fit the cache");
      }
      const auto& expected = h.kind == KVC_KIND_KEYS ? layout->keys_configs
                                                     : layout->values_configs;
      if (!SameTensorConfig(h.config, expected[h.layer])) {
        return corrupt(h.Name() + ": block config differs from its layer's");
      }
      b.codec = layout->Codec(h.config);
      Status block = ReadBlockLayout(*b.codec, h, s, &b.layout);
      if (!block.ok()) {
        return Status(block.code(), StrFormat("at byte %zu: %s", offset,
                                              block.message().c_str()));
      }
      layout->blocks.push_back(std::move(b));
    } else if (s.type == kSectionEnd) {
      if (s.payload_size != kEndPayload || LoadLE32(s.payload) != sections) {
        return corrupt("End section does not match the sections before it");
      }
      if (offset + s.total_size != size) return corrupt("bytes after the End section");
      break;
    } else if ((s.type & kSectionAncillary) == 0) {
      return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                    StrFormat("at byte %zu: section type 0x%02x unknown", offset,
                              s.type));
    }
    offset += s.total_size;
    ++sections;
  }
  if (layout->keys_configs.size() != d.num_layers) {
    return Status(KVC_ERR_CORRUPT, "stream lacks layer configs");
  }
  return CheckTokenCoverage(*layout);
}

Status DecodeStream(const uint8_t* data, size_t size, const kvc_tensor* keys,
                    const kvc_tensor* values, uint32_t threads) {
  if (keys == nullptr && values == nullptr) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "neither keys nor values requested");
  }
  StreamLayout layout;
  KVC_RETURN_IF_ERROR(ReadStreamHeader(data, size, &layout));
  TensorView views[2];
  if (keys) KVC_RETURN_IF_ERROR(ImportCacheTensor(keys, layout.desc, "keys", &views[0]));
  if (values) {
    KVC_RETURN_IF_ERROR(ImportCacheTensor(values, layout.desc, "values", &views[1]));
  }
  // Only now, with outputs as large as the header claims, walk the stream.
  KVC_RETURN_IF_ERROR(ReadStreamLayout(data, size, &layout));
  std::vector<const StreamLayout::Block*> work;
  for (const StreamLayout::Block& b : layout.blocks) {
    if ((b.header.kind == KVC_KIND_KEYS ? keys : values) != nullptr) work.push_back(&b);
  }
  return ParallelFor(work.size(), threads, [&](size_t i) {
    const StreamLayout::Block& b = *work[i];
    return DecodeBlockPayload(*b.codec, b.header, b.payload, b.layout,
                              BlockView(views[b.header.kind], b.header));
  });
}

}  // namespace kvc
