// Reading caches: random access through a read-at callback (kvc_cache) and
// sequential reading through a read callback (kvc_reader).
#ifndef KVCODEC_CODEC_STREAM_CACHE_READER_H_
#define KVCODEC_CODEC_STREAM_CACHE_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kvcodec/kvcodec.h"
#include "stream/cache_writer.h"
#include "stream/walker.h"

namespace kvc {

struct ModelCheck {
  bool allow_mismatch = false;
  std::string expect_name;  // empty: not checked
  uint64_t expect_hash = 0;  // 0: not checked
};

class CacheFile {
 public:
  static Status Open(kvc_read_at_fn read_at, void* opaque, uint64_t size,
                     const ModelCheck& check, std::unique_ptr<CacheFile>* out);

  const StreamHeader& header() const { return header_; }
  uint32_t num_tokens() const { return num_tokens_; }
  uint32_t segments() const { return segments_; }
  const std::vector<IndexEntry>& blocks() const { return blocks_; }
  uint64_t end_offset() const { return end_; }
  uint64_t ignored_bytes() const { return size_ - end_; }
  bool has_model() const { return has_model_; }
  const std::string& model_name() const { return model_name_; }
  uint64_t model_hash() const { return model_hash_; }
  const kvc_tensor_config& config(uint32_t layer, uint32_t kind) const {
    return kind == KVC_KIND_KEYS ? walker_->keys_configs()[layer]
                                 : walker_->values_configs()[layer];
  }
  AppendBase append_base() const;

  // out: [head_count, token_count, head_dim].
  Status Read(uint32_t layer, uint32_t kind, uint32_t head_start, uint32_t head_count,
              uint32_t token_start, uint32_t token_count, const kvc_tensor* out);

 private:
  CacheFile() = default;
  Status ReadAt(uint64_t offset, size_t size, std::vector<uint8_t>* out) const;
  // The last complete segment ending at or before `end`: its End, locator
  // and index. False if there is none there.
  bool FindCommit(uint64_t end);
  Status CheckTiling() const;

  kvc_read_at_fn read_at_ = nullptr;
  void* opaque_ = nullptr;
  uint64_t size_ = 0, end_ = 0;
  StreamHeader header_;
  std::unique_ptr<StreamWalker> walker_;  // layer configs, codecs
  std::vector<IndexEntry> blocks_;
  uint32_t num_tokens_ = 0, segments_ = 1;
  bool has_model_ = false;
  std::string model_name_;
  uint64_t model_hash_ = 0;
};

class StreamReader {
 public:
  static Status Open(kvc_read_fn read, void* opaque, const ModelCheck& check,
                     std::unique_ptr<StreamReader>* out);
  const StreamHeader& header() const { return walker_->header(); }
  Status Next(kvc_layer_run* run);
  Status Read(const kvc_tensor* keys, const kvc_tensor* values);

 private:
  StreamReader() = default;
  // Reads the next section into pending_ (false at a clean end of input).
  Status ReadSection(bool* got);
  Status Fail(const Status& s);

  kvc_read_fn read_ = nullptr;
  void* opaque_ = nullptr;
  uint64_t offset_ = 0;
  std::unique_ptr<StreamWalker> walker_;
  std::vector<uint8_t> buffer_;  // the pending section's bytes
  WalkedSection pending_;
  bool has_pending_ = false;
  // The current run.
  bool in_run_ = false, run_read_ = false, done_ = false;
  uint32_t layer_ = 0, segment_ = 0;
  Status failed_;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_STREAM_CACHE_READER_H_
