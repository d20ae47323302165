#include "stream/walker.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/endian.h"
#include "config/tensor_config.h"
#include "format/checksum.h"
#include "stream/zstd_stage.h"

namespace kvc {
namespace {

const char* KindName(uint32_t kind) { return kind == KVC_KIND_KEYS ? "K" : "V"; }

}  // namespace

Status AtOffset(uint64_t offset, const Status& s) {
  return Status(s.code(), StrFormat("at byte %llu: %s",
                                    static_cast<unsigned long long>(offset),
                                    s.message().c_str()));
}

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

void WriteStreamHeader(const kvc_cache_desc& d, uint32_t features,
                       const std::vector<kvc_tensor_config>& configs, uint8_t* p) {
  uint32_t minor = features != 0 ? 1 : 0;  // 1.0 describes streams without features
  for (const kvc_tensor_config& c : configs) minor = std::max(minor, FormatMinorOf(c));
  StoreLE32(KVC_STREAM_MAGIC, p);
  p[4] = KVC_FORMAT_MAJOR;
  p[5] = static_cast<uint8_t>(minor);
  StoreLE16(kStreamHeaderSize, p + 6);
  StoreLE32(features, p + 8);
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

Status ReadStreamHeader(const uint8_t* data, size_t size, StreamHeader* out) {
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
  const uint32_t features = LoadLE32(data + 8);
  if ((features & ~kKnownFeatures) != 0) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  StrFormat("stream requires features 0x%08x unknown to this "
                            "decoder", features & ~kKnownFeatures));
  }
#ifndef KVC_HAVE_ZSTD
  if ((features & kFeatureZstdSections) != 0) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  "stream has zstd-compressed sections; this kvcodec is built without zstd");
  }
#endif
  if (LoadLE32(data + 32) != 0) {
    return Status(KVC_ERR_CORRUPT, "stream header reserved bytes not zero");
  }
  kvc_cache_desc& d = out->desc;
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
  out->format_major = data[4];
  out->format_minor = data[5];
  out->features = features;
  out->header_size = header_size;
  return OkStatus();
}

size_t IndexPayloadSize(size_t entries) {
  return kIndexHeaderSize + entries * kIndexEntrySize;
}

void WriteIndexPayload(const std::vector<IndexEntry>& entries, uint32_t num_tokens,
                       uint32_t segments, uint8_t* p) {
  StoreLE32(static_cast<uint32_t>(entries.size()), p);
  StoreLE32(num_tokens, p + 4);
  StoreLE32(segments, p + 8);
  StoreLE32(0, p + 12);
  p += kIndexHeaderSize;
  for (const IndexEntry& e : entries) {
    StoreLE64(e.offset, p);
    StoreLE64(e.size, p + 8);
    StoreLE16(static_cast<uint16_t>(e.layer), p + 16);
    p[18] = static_cast<uint8_t>(e.kind);
    p[19] = 0;
    StoreLE32(e.token_start, p + 20);
    StoreLE32(e.token_count, p + 24);
    StoreLE32(0, p + 28);
    p += kIndexEntrySize;
  }
}

Status ReadIndexPayload(const SectionRef& s, const kvc_cache_desc& desc,
                        uint64_t stream_size, std::vector<IndexEntry>* entries,
                        uint32_t* num_tokens, uint32_t* segments) {
  if (s.payload_size < kIndexHeaderSize) return Status(KVC_ERR_CORRUPT, "block index too short");
  const uint32_t count = LoadLE32(s.payload);
  if (s.payload_size != IndexPayloadSize(count)) {
    return Status(KVC_ERR_CORRUPT, "block index size disagrees with its entry count");
  }
  *num_tokens = LoadLE32(s.payload + 4);
  *segments = LoadLE32(s.payload + 8);
  if (*num_tokens == 0 || *segments == 0 || LoadLE32(s.payload + 12) != 0) {
    return Status(KVC_ERR_CORRUPT, "block index header is invalid");
  }
  entries->clear();
  const uint8_t* p = s.payload + kIndexHeaderSize;
  for (uint32_t i = 0; i < count; ++i, p += kIndexEntrySize) {
    IndexEntry e;
    e.offset = LoadLE64(p);
    e.size = LoadLE64(p + 8);
    e.layer = LoadLE16(p + 16);
    e.kind = p[18];
    e.token_start = LoadLE32(p + 20);
    e.token_count = LoadLE32(p + 24);
    if (p[19] != 0 || LoadLE32(p + 28) != 0 || e.layer >= desc.num_layers ||
        e.kind > KVC_KIND_VALUES || e.token_count == 0 ||
        uint64_t{e.token_start} + e.token_count > *num_tokens || e.size < SectionSize(0) ||
        e.offset > stream_size || e.size > stream_size - e.offset) {
      return Status(KVC_ERR_CORRUPT, StrFormat("block index entry %u is invalid", i));
    }
    entries->push_back(e);
  }
  return OkStatus();
}

std::vector<uint8_t> ModelIdentityPayload(const std::string& name, uint64_t hash) {
  std::vector<uint8_t> p(12 + name.size());
  StoreLE64(hash, p.data());
  StoreLE16(static_cast<uint16_t>(name.size()), p.data() + 8);
  StoreLE16(0, p.data() + 10);
  std::memcpy(p.data() + 12, name.data(), name.size());
  return p;
}

Status ReadModelIdentity(const SectionRef& s, std::string* name, uint64_t* hash) {
  if (s.payload_size < 12 || s.payload_size != 12u + LoadLE16(s.payload + 8) ||
      LoadLE16(s.payload + 10) != 0 || s.payload_size - 12 > kMaxModelName) {
    return Status(KVC_ERR_CORRUPT, "model identity section is malformed");
  }
  *hash = LoadLE64(s.payload);
  name->assign(reinterpret_cast<const char*>(s.payload + 12), s.payload_size - 12);
  if (name->find('\0') != std::string::npos) {
    return Status(KVC_ERR_CORRUPT, "model name holds a NUL byte");
  }
  return OkStatus();
}

size_t LayerConfigPayloadSize(const kvc_tensor_config& k, const kvc_tensor_config& v) {
  return 4 + TensorConfigWireSize(k) + TensorConfigWireSize(v);
}

void WriteLayerConfigPayload(uint32_t layer, const kvc_tensor_config& k,
                             const kvc_tensor_config& v, uint8_t* payload) {
  StoreLE16(static_cast<uint16_t>(layer), payload);
  StoreLE16(0, payload + 2);
  WriteTensorConfig(k, payload + 4);
  WriteTensorConfig(v, payload + 4 + TensorConfigWireSize(k));
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

const TensorCodec* CodecCache::Get(const kvc_tensor_config& c) {
  for (auto& entry : codecs_) {
    if (SameTensorConfig(entry.first, c)) return entry.second.get();
  }
  codecs_.emplace_back(c, TensorCodec::Create(c, head_dim_));
  return codecs_.back().second.get();
}

TensorView BlockView(const TensorView& cache, const BlockHeader& h) {
  TensorView v = cache.Sub(h.layer);
  v.data += static_cast<int64_t>(h.token_start) * v.strides[1] *
            static_cast<int64_t>(DtypeBytes(v.dtype));
  v.shape[1] = h.token_count;
  return v;
}

StreamWalker::StreamWalker(const StreamHeader& header)
    : header_(header),
      codecs_(header.desc.head_dim),
      segment_end_(header.desc.num_tokens),
      runs_(2 * size_t{header.desc.num_layers}) {}

Status StreamWalker::Next(const uint8_t* data, size_t available, uint64_t offset,
                          WalkedSection* out, Checksums block_checksums) {
  const bool segments = (header_.features & kFeatureSegments) != 0;
  auto corrupt = [&](const std::string& why) {
    return AtOffset(offset, Status(KVC_ERR_CORRUPT, why));
  };
  if (at_segment_end_ && !segments) return corrupt("bytes after the End section");
  const uint8_t allowed =
      (header_.features & kFeatureZstdSections) != 0 ? kSectionFlagZstd : 0;
  SectionRef& s = out->ref;
  Status read = ReadSection(data, available, &s, allowed, block_checksums);
  if (!read.ok()) return AtOffset(offset, read);
  out->type = s.type;
  out->payload = s.payload;
  out->inflated.clear();
  if (s.flags != 0 && s.type != kSectionBlock) {
    return corrupt("only Block sections may be compressed");
  }
  if (at_segment_end_ && s.type != kSectionAppend) {
    return corrupt("after an End section only an Append section may follow");
  }
  const uint32_t layers = header_.desc.num_layers;
  const uint32_t layers_seen = static_cast<uint32_t>(keys_configs_.size());
  switch (s.type) {
    case kSectionLayerConfig: {
      out->kind = WalkedSection::kLayerConfig;
      if (s.payload_size < 4) return corrupt("layer config size");
      const uint32_t layer = LoadLE16(s.payload);
      if (layer != layers_seen || layer >= layers || seen_block_ || segments_ > 1) {
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
        Status fits = ValidateForHeadDim(*c, header_.desc.head_dim,
                                         StrFormat("layer %u", layer));
        if (!fits.ok()) return corrupt(fits.message());
      }
      keys_configs_.push_back(k);
      values_configs_.push_back(v);
      break;
    }
    case kSectionBlock:
      KVC_RETURN_IF_ERROR(Block(s, offset, segment_start_, segment_end_, out));
      runs_[2 * out->block.layer + out->block.kind].emplace_back(out->block.token_start,
                                                                 out->block.token_count);
      blocks_.push_back(IndexEntry{offset, s.total_size, out->block.layer, out->block.kind,
                                   out->block.token_start, out->block.token_count});
      break;
    case kSectionAppend: {
      out->kind = WalkedSection::kAppend;
      if (!segments) return corrupt("Append section in a stream without the Segments feature");
      if (!at_segment_end_) return corrupt("Append section not after an End section");
      if (s.payload_size != kAppendPayload || LoadLE32(s.payload + 4) != 0) {
        return corrupt("Append section is malformed");
      }
      const uint32_t tokens = LoadLE32(s.payload);
      if (tokens <= segment_end_) {
        return corrupt(StrFormat("Append to %u tokens, the cache has %u already", tokens,
                                 segment_end_));
      }
      segment_start_ = segment_end_;
      segment_end_ = tokens;
      for (auto& r : runs_) r.clear();
      sections_in_segment_ = 0;
      at_segment_end_ = false;
      ++segments_;
      break;
    }
    case kSectionEnd: {
      out->kind = WalkedSection::kEnd;
      if (s.payload_size != kEndPayload || LoadLE32(s.payload) != sections_in_segment_) {
        return corrupt("End section does not match the sections before it");
      }
      if (!configs_complete()) {
        return Status(KVC_ERR_CORRUPT, "stream lacks layer configs");
      }
      KVC_RETURN_IF_ERROR(CheckSegmentTiling());
      at_segment_end_ = true;
      return OkStatus();  // the next segment counts its own sections
    }
    case kSectionBlockIndex: {
      out->kind = WalkedSection::kAncillary;
      std::vector<IndexEntry> entries;
      uint32_t tokens = 0, segments = 0;
      Status index = ReadIndexPayload(s, header_.desc, UINT64_MAX, &entries, &tokens, &segments);
      if (!index.ok()) return AtOffset(offset, index);
      bool same = entries.size() == blocks_.size() && tokens == segment_end_ &&
                  segments == segments_;
      for (size_t i = 0; same && i < entries.size(); ++i) {
        const IndexEntry &a = entries[i], &b = blocks_[i];
        same = a.offset == b.offset && a.size == b.size && a.layer == b.layer &&
               a.kind == b.kind && a.token_start == b.token_start &&
               a.token_count == b.token_count;
      }
      if (!same) return corrupt("block index disagrees with the blocks before it");
      last_index_offset_ = offset;
      break;
    }
    case kSectionIndexLocator:
      out->kind = WalkedSection::kAncillary;
      if (s.payload_size != kIndexLocatorPayload ||
          LoadLE64(s.payload) != last_index_offset_) {
        return corrupt("index locator does not point to the last block index");
      }
      break;
    case kSectionModelIdentity: {
      out->kind = WalkedSection::kAncillary;
      Status identity = ReadModelIdentity(s, &model_name_, &model_hash_);
      if (!identity.ok()) return AtOffset(offset, identity);
      has_model_ = true;
      break;
    }
    default:
      if ((s.type & kSectionAncillary) == 0) {
        return AtOffset(offset, Status(KVC_ERR_UNSUPPORTED_FEATURE,
                                 StrFormat("section type 0x%02x unknown", s.type)));
      }
      out->kind = WalkedSection::kAncillary;
      break;
  }
  ++sections_in_segment_;
  return OkStatus();
}

Status StreamWalker::ParseBlock(const uint8_t* data, size_t size, uint64_t offset,
                                uint32_t num_tokens, WalkedSection* out) {
  const uint8_t allowed =
      (header_.features & kFeatureZstdSections) != 0 ? kSectionFlagZstd : 0;
  Status read = ReadSection(data, size, &out->ref, allowed);
  if (!read.ok()) return AtOffset(offset, read);
  out->type = out->ref.type;
  if (out->ref.type != kSectionBlock) {
    return AtOffset(offset,
                    Status(KVC_ERR_CORRUPT, "the index points to a section that is no block"));
  }
  return Block(out->ref, offset, 0, num_tokens, out);
}

Status StreamWalker::Block(const SectionRef& s, uint64_t offset, uint32_t token_begin,
                           uint32_t token_end, WalkedSection* out) {
  auto at = [&](const Status& st) { return AtOffset(offset, st); };
  auto corrupt = [&](const std::string& why) { return at(Status(KVC_ERR_CORRUPT, why)); };
  out->kind = WalkedSection::kBlock;
  if (!configs_complete()) return corrupt("block before all layer configs");
  seen_block_ = true;
  SectionRef raw = s;
  if ((s.flags & kSectionFlagZstd) != 0) {
    Status inflate = ZstdInflatePayload(s.payload, s.payload_size, &out->inflated);
    if (!inflate.ok()) return at(inflate);
    raw.payload = out->inflated.data();
    raw.payload_size = out->inflated.size();
  }
  out->payload = raw.payload;
  Status header = ReadBlockHeader(raw, &out->block);
  if (!header.ok()) return at(header);
  const BlockHeader& h = out->block;
  if (h.layer >= header_.desc.num_layers || h.head_dim != header_.desc.head_dim ||
      h.head_start != 0 || h.head_count != header_.desc.num_kv_heads ||
      h.token_start < token_begin || uint64_t{h.token_start} + h.token_count > token_end) {
    return corrupt(h.Name() + ": block does not fit the cache");
  }
  const auto& expected = h.kind == KVC_KIND_KEYS ? keys_configs_ : values_configs_;
  if (!SameTensorConfig(h.config, expected[h.layer])) {
    return corrupt(h.Name() + ": block config differs from its layer's");
  }
  out->codec = codecs_.Get(h.config);
  Status layout = ReadBlockLayout(*out->codec, h, raw, &out->layout);
  if (!layout.ok()) return at(layout);
  return OkStatus();
}

Status StreamWalker::CheckSegmentTiling() const {
  for (uint32_t i = 0; i < runs_.size(); ++i) {
    std::vector<std::pair<uint32_t, uint32_t>> runs = runs_[i];
    std::sort(runs.begin(), runs.end());
    uint64_t covered = segment_start_;
    for (const auto& run : runs) {
      if (run.first != covered) {
        return Status(KVC_ERR_CORRUPT,
                      StrFormat("layer %u %s: tokens %llu..%u %s", i / 2, KindName(i % 2),
                                static_cast<unsigned long long>(
                                    std::min<uint64_t>(covered, run.first)),
                                std::max<uint32_t>(run.first, static_cast<uint32_t>(covered)) - 1,
                                run.first > covered ? "are missing" : "appear in two blocks"));
      }
      covered += run.second;
    }
    if (covered != segment_end_) {
      return Status(KVC_ERR_CORRUPT,
                    StrFormat("layer %u %s: tokens %llu..%u are missing", i / 2,
                              KindName(i % 2), static_cast<unsigned long long>(covered),
                              segment_end_ - 1));
    }
  }
  return OkStatus();
}

Status StreamWalker::Finish() const {
  if (!at_segment_end_) {
    return Status(KVC_ERR_TRUNCATED, "stream ends before its End section");
  }
  return OkStatus();
}

}  // namespace kvc
