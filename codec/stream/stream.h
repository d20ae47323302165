// Streams: a whole cache (FORMAT.md, "Stream").
//   Stream_Header | Layer_Config x Num_Layers | Block ... | End
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

namespace kvc {

constexpr size_t kStreamHeaderSize = 40;

kvc_cache_desc DefaultCacheDesc();
// Validates a cache descriptor (INVALID_ARGUMENT).
Status CheckCacheDesc(const kvc_cache_desc& desc);

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
  kvc_cache_desc desc{};
  uint32_t format_major = 0, format_minor = 0;
  std::vector<kvc_tensor_config> keys_configs, values_configs;
  struct Block {
    BlockHeader header;
    BlockLayout layout;
    const uint8_t* payload;
    size_t section_size;
    const TensorCodec* codec;
  };
  std::vector<Block> blocks;
  // One prepared codec per distinct tensor config (the QJL matrix is costly).
  std::vector<std::pair<kvc_tensor_config, std::unique_ptr<TensorCodec>>> codecs;
  const TensorCodec* Codec(const kvc_tensor_config& config);
};

// Header only (cheap): fills desc and versions.
Status ReadStreamHeader(const uint8_t* data, size_t size, StreamLayout* layout);
// Everything: structure, checksums, coverage (each layer's K and V tokens
// covered exactly once).
Status ReadStreamLayout(const uint8_t* data, size_t size, StreamLayout* layout);

Status DecodeStream(const uint8_t* data, size_t size, const kvc_tensor* keys,
                    const kvc_tensor* values, uint32_t threads);

}  // namespace kvc

#endif  // KVCODEC_CODEC_STREAM_STREAM_H_
