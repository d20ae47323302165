// Whole streams in memory (FORMAT.md, "Stream"):
//   Stream_Header | Layer_Config x Num_Layers | Block ... | End
// and, with the Segments feature, appended segments (Append | Block ... | End).
#ifndef KVCODEC_CODEC_STREAM_STREAM_H_
#define KVCODEC_CODEC_STREAM_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "format/block.h"
#include "kvcodec/kvcodec.h"
#include "stream/walker.h"

namespace kvc {

// Most bytes EncodeStream can write.
Status StreamBound(const CacheConfig& config, const kvc_cache_desc& desc,
                   uint32_t block_tokens, size_t* size);

// queries: optional sample, [layers, query_heads, tokens, head_dim].
Status EncodeStream(const CacheConfig& config, const kvc_cache_desc& desc,
                    const kvc_tensor* keys, const kvc_tensor* values,
                    const kvc_tensor* queries, uint32_t block_tokens, uint32_t threads,
                    uint8_t* dst, size_t dst_capacity, size_t* dst_size);

// The result of walking a stream's structure: every section's checksum and
// every header checked, nothing decoded.
struct StreamLayout {
  kvc_cache_desc desc{};  // num_tokens: the whole cache's, all segments
  uint32_t format_major = 0, format_minor = 0, features = 0, segments = 0;
  std::vector<kvc_tensor_config> keys_configs, values_configs;
  struct Block {
    BlockHeader header;
    BlockLayout layout;
    const uint8_t* payload;
    size_t section_size;
    const TensorCodec* codec;
    uint64_t offset;  // of the section in the stream
    // The section, where its checksum was left to the decoder (kDefer).
    const uint8_t* unverified_section;
  };
  std::vector<Block> blocks;
  std::vector<std::vector<uint8_t>> inflated;  // payloads of zstd blocks
  std::unique_ptr<StreamWalker> walker;        // owns the codecs
};

// Header only (cheap): fills desc and versions.
Status ReadStreamHeader(const uint8_t* data, size_t size, StreamLayout* layout);
// Everything: structure, checksums (those of uncompressed blocks left to
// the caller with kDefer), coverage (each layer's K and V tokens covered
// exactly once).
Status ReadStreamLayout(const uint8_t* data, size_t size, Checksums block_checksums,
                        StreamLayout* layout);

Status DecodeStream(const uint8_t* data, size_t size, const kvc_tensor* keys,
                    const kvc_tensor* values, uint32_t threads);

}  // namespace kvc

#endif  // KVCODEC_CODEC_STREAM_STREAM_H_
