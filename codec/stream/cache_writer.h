// Writing a cache through a callback, one layer at a time (kvc_writer):
// memory stays within one layer's encoded blocks whatever the cache's size.
// A writer either starts a stream (header, Layer_Configs, Model_Identity)
// or continues one with an appended segment (Append); either way it ends
// with the cumulative Block_Index, the Index_Locator and the End section,
// the last two written after a sync so that a crash never leaves a tail
// that looks complete (FORMAT.md §2.5).
#ifndef KVCODEC_CODEC_STREAM_CACHE_WRITER_H_
#define KVCODEC_CODEC_STREAM_CACHE_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "kvcodec/kvcodec.h"
#include "stream/walker.h"

namespace kvc {

struct Sink {
  kvc_write_fn write = nullptr;
  kvc_sync_fn sync = nullptr;  // optional
  void* opaque = nullptr;
};

struct WriterSettings {
  uint32_t threads = 0;
  uint32_t block_tokens = 4096;  // 0: one block per layer and kind
  int zstd_level = 0;            // 0: the config's (none when appending); -1: none
  bool appendable = true;
  std::string model_name;
  uint64_t model_hash = 0;
};

// What an appended segment continues (from an opened cache).
struct AppendBase {
  StreamHeader header;  // features fixed at creation
  std::vector<kvc_tensor_config> configs;  // [2 * layer + kind]
  std::vector<IndexEntry> blocks;
  uint32_t num_tokens = 0;  // the cache's so far
  uint32_t segments = 1;
  uint64_t end_offset = 0;  // where the segment starts
};

class CacheWriter {
 public:
  // A new cache of desc (num_tokens per layer).
  static Status Create(const CacheConfig& config, const kvc_cache_desc& desc,
                       const WriterSettings& settings, const Sink& sink,
                       std::unique_ptr<CacheWriter>* out);
  // A segment of new_tokens more tokens after `base`.
  static Status Append(const AppendBase& base, uint32_t new_tokens,
                       const WriterSettings& settings, const Sink& sink,
                       std::unique_ptr<CacheWriter>* out);

  // The next layer's keys and values, [heads, tokens of this segment, dim].
  Status AddLayer(const kvc_tensor* keys, const kvc_tensor* values);
  // Index, locator, End; total: bytes of the whole stream.
  Status Finish(uint64_t* total);

  uint64_t bytes_written() const { return offset_; }

 private:
  CacheWriter() = default;
  Status Emit(const uint8_t* data, size_t size);
  Status Sync();
  Status EmitSection(uint8_t type, const std::vector<uint8_t>& payload);
  Status Fail(const Status& s);

  kvc_cache_desc desc_{};  // num_tokens: this segment's
  uint32_t segment_start_ = 0;
  std::vector<kvc_tensor_config> configs_;
  WriterSettings settings_;
  Sink sink_;
  uint64_t offset_ = 0;
  uint32_t next_layer_ = 0;
  uint32_t sections_ = 0;  // in this segment
  uint32_t segments_ = 1;  // of the stream, this one included
  std::vector<IndexEntry> blocks_;
  std::unique_ptr<CodecCache> codecs_;
  Status failed_;
  bool finished_ = false;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_STREAM_CACHE_WRITER_H_
