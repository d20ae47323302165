#include "stream/stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "base/dtype.h"
#include "base/endian.h"
#include "base/parallel.h"
#include "config/tensor_config.h"
#include "format/checksum.h"
#include "format/tensor_view.h"

namespace kvc {
namespace {

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

}  // namespace

Status StreamBound(const CacheConfig& config, const kvc_cache_desc& desc,
                   uint32_t block_tokens, size_t* size) {
  KVC_RETURN_IF_ERROR(CheckCacheDesc(desc));
  std::vector<kvc_tensor_config> configs;
  KVC_RETURN_IF_ERROR(ResolveConfigs(config, desc, &configs));
  if (block_tokens == 0) block_tokens = desc.num_tokens;
  CodecCache codecs(desc.head_dim);
  uint64_t total = kStreamHeaderSize + SectionSize(kEndPayload);
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    total += SectionSize(LayerConfigPayloadSize(configs[2 * layer], configs[2 * layer + 1]));
  }
  for (const BlockHeader& h : PlanBlocks(desc, configs, block_tokens)) {
    size_t payload;
    KVC_RETURN_IF_ERROR(BlockPayloadBound(h, *codecs.Get(h.config), &payload));
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
  CodecCache codecs(desc.head_dim);
  std::vector<const TensorCodec*> block_codecs;
  for (const BlockHeader& h : plan) block_codecs.push_back(codecs.Get(h.config));
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
    offset += SectionSize(LayerConfigPayloadSize(configs[2 * layer], configs[2 * layer + 1]));
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
    return WriteBlockSection(*block_codecs[i], plan[i], input_of(plan[i]), records[i],
                             layouts[i], dst + block_offsets[i]);
  }));
  uint8_t* p = dst;
  WriteStreamHeader(desc, 0, configs, p);
  p += kStreamHeaderSize;
  for (uint32_t layer = 0; layer < desc.num_layers; ++layer) {
    const kvc_tensor_config& k = configs[2 * layer];
    const kvc_tensor_config& v = configs[2 * layer + 1];
    WriteLayerConfigPayload(layer, k, v, p + kSectionHeaderSize);
    SealSection(kSectionLayerConfig, LayerConfigPayloadSize(k, v), p);
    p += SectionSize(LayerConfigPayloadSize(k, v));
  }
  p = dst + end_offset;
  StoreLE32(static_cast<uint32_t>(desc.num_layers + plan.size()), p + kSectionHeaderSize);
  SealSection(kSectionEnd, kEndPayload, p);
  p += SectionSize(kEndPayload);
  *dst_size = static_cast<size_t>(p - dst);
  return OkStatus();
}

Status ReadStreamHeader(const uint8_t* data, size_t size, StreamLayout* layout) {
  StreamHeader header;
  KVC_RETURN_IF_ERROR(kvc::ReadStreamHeader(data, size, &header));
  layout->desc = header.desc;
  layout->format_major = header.format_major;
  layout->format_minor = header.format_minor;
  layout->features = header.features;
  return OkStatus();
}

Status ReadStreamLayout(const uint8_t* data, size_t size, Checksums block_checksums,
                        StreamLayout* layout) {
  StreamHeader header;
  KVC_RETURN_IF_ERROR(kvc::ReadStreamHeader(data, size, &header));
  layout->walker = std::make_unique<StreamWalker>(header);
  StreamWalker& walker = *layout->walker;
  size_t offset = header.header_size;
  while (offset < size) {
    WalkedSection s;
    KVC_RETURN_IF_ERROR(walker.Next(data + offset, size - offset, offset, &s, block_checksums));
    if (s.kind == WalkedSection::kBlock) {
      if (!s.inflated.empty()) layout->inflated.push_back(std::move(s.inflated));
      layout->blocks.push_back(
          StreamLayout::Block{s.block, s.layout, s.payload, s.ref.total_size, s.codec, offset,
                              s.ref.checksum_deferred ? data + offset : nullptr});
    }
    offset += s.ref.total_size;
  }
  KVC_RETURN_IF_ERROR(walker.Finish());
  layout->desc = header.desc;
  layout->desc.num_tokens = walker.num_tokens();
  layout->format_major = header.format_major;
  layout->format_minor = header.format_minor;
  layout->features = header.features;
  layout->segments = walker.segments();
  layout->keys_configs = walker.keys_configs();
  layout->values_configs = walker.values_configs();
  return OkStatus();
}

namespace {

// The layout, with block checksums left to the jobs that decode the blocks
// (in parallel, and each just before its block is decoded, while the
// payload is in cache). A stream that fails this walk is walked again
// verifying every checksum, whose error is the one to report: a verifying
// walk stops at the first bad checksum.
Status ReadLayoutForDecoding(const uint8_t* data, size_t size, StreamLayout* layout) {
  const Status walked = ReadStreamLayout(data, size, Checksums::kDefer, layout);
  if (walked.ok()) return walked;
  StreamLayout verified;
  const Status verifying = ReadStreamLayout(data, size, Checksums::kVerify, &verified);
  return verifying.ok() ? walked : verifying;
}

}  // namespace

Status DecodeStream(const uint8_t* data, size_t size, const kvc_tensor* keys,
                    const kvc_tensor* values, uint32_t threads) {
  if (keys == nullptr && values == nullptr) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "neither keys nor values requested");
  }
  StreamLayout layout;
  KVC_RETURN_IF_ERROR(ReadStreamHeader(data, size, &layout));
  // Appended segments grow the cache past the header's token count.
  if ((layout.features & kFeatureSegments) != 0) {
    KVC_RETURN_IF_ERROR(ReadLayoutForDecoding(data, size, &layout));
  }
  TensorView views[2];
  if (keys) KVC_RETURN_IF_ERROR(ImportCacheTensor(keys, layout.desc, "keys", &views[0]));
  if (values) {
    KVC_RETURN_IF_ERROR(ImportCacheTensor(values, layout.desc, "values", &views[1]));
  }
  // Only now, with outputs as large as the header claims, walk the stream.
  if (layout.walker == nullptr) KVC_RETURN_IF_ERROR(ReadLayoutForDecoding(data, size, &layout));
  auto wanted = [&](const StreamLayout::Block& b) {
    return (b.header.kind == KVC_KIND_KEYS ? keys : values) != nullptr;
  };
  uint64_t output_bytes = 0;
  for (const StreamLayout::Block& b : layout.blocks) {
    if (!wanted(b)) continue;
    output_bytes += uint64_t{b.header.head_count} * b.header.token_count * b.header.head_dim *
                    DtypeBytes(views[b.header.kind].dtype);
  }
  const simd::Writes writes = WritesForOutput(output_bytes);
  auto verify = [&](const StreamLayout::Block& b) {
    if (b.unverified_section == nullptr) return OkStatus();
    const Status verified = VerifySection(
        b.unverified_section, b.section_size - kSectionHeaderSize - kSectionChecksumSize);
    return verified.ok() ? verified : AtOffset(b.offset, verified);
  };
  // Every block is verified, those not decoded included, so that the
  // error is the first bad block's, as a verifying walk would report it.
  // Decoded blocks are verified as they are decoded.
  const Status decoded = ParallelFor(layout.blocks.size(), threads, [&](size_t i) {
    const StreamLayout::Block& b = layout.blocks[i];
    if (!wanted(b)) return verify(b);
    const Status status =
        DecodeBlockPayload(*b.codec, b.header, b.payload, b.layout,
                           BlockView(views[b.header.kind], b.header), writes,
                           b.unverified_section);
    return status.code() == KVC_ERR_CHECKSUM ? AtOffset(b.offset, status) : status;
  });
  if (decoded.ok() || decoded.code() == KVC_ERR_CHECKSUM) return decoded;
  // The format checks every checksum before it decodes a vector (FORMAT.md
  // §2.3): a bad checksum in a later block outranks a decoding error.
  for (const StreamLayout::Block& b : layout.blocks) KVC_RETURN_IF_ERROR(verify(b));
  return decoded;
}

}  // namespace kvc
