// The rules of a stream's section sequence (FORMAT.md §2.3, and the 1.1
// segments of §2.5), checked one section at a time. Every reader walks with
// it: whole streams in memory (kvc_decode_stream), streams arriving through
// a callback (kvc_reader), the random-access cache's open and block reads
// (kvc_cache) and `kvc verify`.
#ifndef KVCODEC_CODEC_STREAM_WALKER_H_
#define KVCODEC_CODEC_STREAM_WALKER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "format/block.h"
#include "format/section.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

constexpr size_t kStreamHeaderSize = 40;
constexpr size_t kEndPayload = 4;
constexpr size_t kAppendPayload = 8;
constexpr size_t kIndexLocatorPayload = 8;
constexpr size_t kIndexEntrySize = 32;
constexpr size_t kIndexHeaderSize = 16;
constexpr size_t kMaxModelName = 255;

// The fixed part of a stream: the header's fields.
struct StreamHeader {
  kvc_cache_desc desc{};  // num_tokens: the first segment's
  uint32_t format_major = 0, format_minor = 0;
  uint32_t features = 0;  // Required_Features
  size_t header_size = 0;
};

kvc_cache_desc DefaultCacheDesc();
// Validates a cache descriptor (INVALID_ARGUMENT).
Status CheckCacheDesc(const kvc_cache_desc& desc);
// Writes a 40-byte header; desc.num_tokens is the first segment's. The
// minor version is the lowest that describes the features and the configs
// ([2 * layer + kind]).
void WriteStreamHeader(const kvc_cache_desc& desc, uint32_t features,
                       const std::vector<kvc_tensor_config>& configs, uint8_t* out);
// Reads and checks the header (FORMAT.md §2.2).
Status ReadStreamHeader(const uint8_t* data, size_t size, StreamHeader* header);

// One entry of a Block_Index section.
struct IndexEntry {
  uint64_t offset = 0;  // of the Block section, from the stream's start
  uint64_t size = 0;    // of the whole section
  uint32_t layer = 0, kind = 0, token_start = 0, token_count = 0;
};
size_t IndexPayloadSize(size_t entries);
// The index's header: Entry_Count, Num_Tokens (the cache's at this point),
// Segments (1 + Append sections before it), Reserved.
void WriteIndexPayload(const std::vector<IndexEntry>& entries, uint32_t num_tokens,
                       uint32_t segments, uint8_t* out);
// Parses an index payload and checks it against the cache's shape.
Status ReadIndexPayload(const SectionRef& section, const kvc_cache_desc& desc,
                        uint64_t stream_size, std::vector<IndexEntry>* entries,
                        uint32_t* num_tokens, uint32_t* segments);

// A Model_Identity payload: u64 Config_Hash, u16 Name_Size, u16 Reserved,
// the name.
std::vector<uint8_t> ModelIdentityPayload(const std::string& name, uint64_t hash);
Status ReadModelIdentity(const SectionRef& section, std::string* name, uint64_t* hash);

// Layer_Config payload of one layer.
size_t LayerConfigPayloadSize(const kvc_tensor_config& k, const kvc_tensor_config& v);
void WriteLayerConfigPayload(uint32_t layer, const kvc_tensor_config& k,
                             const kvc_tensor_config& v, uint8_t* out);

// Validates the configs of every layer for a cache; resolves Block-GTQ's
// pairing from the cache's RoPE layout.
Status ResolveConfigs(const CacheConfig& config, const kvc_cache_desc& desc,
                      std::vector<kvc_tensor_config>* configs);

// Prepared codecs, one per distinct tensor config (the QJL matrix is costly).
class CodecCache {
 public:
  explicit CodecCache(uint32_t head_dim) : head_dim_(head_dim) {}
  const TensorCodec* Get(const kvc_tensor_config& config);

 private:
  uint32_t head_dim_;
  std::vector<std::pair<kvc_tensor_config, std::unique_ptr<TensorCodec>>> codecs_;
};

// What one section was, once checked.
struct WalkedSection {
  enum Kind { kLayerConfig, kBlock, kAppend, kEnd, kAncillary } kind = kAncillary;
  SectionRef ref;             // as stored (compressed blocks stay compressed)
  uint8_t type = 0;
  // Blocks: the parsed header and layout over `payload`, which is ref's or,
  // for a zstd block, `inflated`'s.
  BlockHeader block;
  BlockLayout layout;
  const uint8_t* payload = nullptr;
  std::vector<uint8_t> inflated;
  const TensorCodec* codec = nullptr;
};

// Prefixes the message of s with the stream offset it concerns.
Status AtOffset(uint64_t offset, const Status& s);

class StreamWalker {
 public:
  // header: from ReadStreamHeader.
  explicit StreamWalker(const StreamHeader& header);

  // Checks the section at data (available bytes from it; the section may be
  // followed by others) found at stream offset `offset`, in sequence.
  // Messages name the offset. block_checksums: kDefer leaves the checksums
  // of uncompressed blocks to the caller (ReadSection).
  Status Next(const uint8_t* data, size_t available, uint64_t offset, WalkedSection* out,
              Checksums block_checksums = Checksums::kVerify);

  // After the End section of a segment: more may follow only in streams with
  // the Segments feature (an Append section).
  bool at_segment_end() const { return at_segment_end_; }
  uint32_t segments() const { return segments_; }
  // Tokens of the cache so far (the last Append's, else the header's).
  uint32_t num_tokens() const { return segment_end_; }
  uint32_t segment_start() const { return segment_start_; }
  bool configs_complete() const { return keys_configs_.size() == header_.desc.num_layers; }
  const std::vector<kvc_tensor_config>& keys_configs() const { return keys_configs_; }
  const std::vector<kvc_tensor_config>& values_configs() const { return values_configs_; }
  const StreamHeader& header() const { return header_; }
  CodecCache& codecs() { return codecs_; }
  // Every Block section walked so far, in stream order.
  const std::vector<IndexEntry>& blocks() const { return blocks_; }
  // A Model_Identity seen so far.
  bool has_model() const { return has_model_; }
  const std::string& model_name() const { return model_name_; }
  uint64_t model_hash() const { return model_hash_; }
  // Call when the input ended: TRUNCATED unless the last section was an End.
  Status Finish() const;

  // A Block section read on its own (random access): checked against the
  // layer configs and the cache's num_tokens, not against the sequence.
  Status ParseBlock(const uint8_t* data, size_t size, uint64_t offset, uint32_t num_tokens,
                    WalkedSection* out);

 private:
  Status CheckSegmentTiling() const;
  Status Block(const SectionRef& s, uint64_t offset, uint32_t token_begin,
               uint32_t token_end, WalkedSection* out);

  StreamHeader header_;
  CodecCache codecs_;
  std::vector<kvc_tensor_config> keys_configs_, values_configs_;
  uint32_t segment_start_ = 0, segment_end_ = 0, segments_ = 1;
  uint32_t sections_in_segment_ = 0;
  bool at_segment_end_ = false, seen_block_ = false;
  // Token runs of the current segment per (layer, kind).
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> runs_;
  // Every Block section so far, for checking Block_Index sections.
  std::vector<IndexEntry> blocks_;
  uint64_t last_index_offset_ = UINT64_MAX;
  bool has_model_ = false;
  std::string model_name_;
  uint64_t model_hash_ = 0;
};

// The [heads, tokens, dim] part of a [layers, heads, tokens, dim] cache view
// that block h covers.
TensorView BlockView(const TensorView& cache, const BlockHeader& h);

}  // namespace kvc

#endif  // KVCODEC_CODEC_STREAM_WALKER_H_
