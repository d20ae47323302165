#include "stream/cache_reader.h"

#include <algorithm>
#include <cstring>

#include "base/endian.h"
#include "format/block.h"
#include "format/tensor_view.h"

namespace kvc {
namespace {

constexpr size_t kCommitSize = SectionSize(kIndexLocatorPayload) + SectionSize(kEndPayload);
// Sequential reads grow their buffer by at most this much per read, so a
// section header claiming gigabytes costs memory only as bytes arrive.
constexpr size_t kReadChunk = size_t{1} << 20;

Status CheckModel(const ModelCheck& check, bool has_model, const std::string& name,
                  uint64_t hash) {
  if (check.allow_mismatch || !has_model) return OkStatus();
  const bool name_differs = !check.expect_name.empty() && check.expect_name != name;
  const bool hash_differs = check.expect_hash != 0 && check.expect_hash != hash;
  if (!name_differs && !hash_differs) return OkStatus();
  return Status(KVC_ERR_MODEL_MISMATCH,
                StrFormat("the cache was made by model \"%s\" (config hash %016llx), not "
                          "\"%s\" (%016llx); open with allow_model_mismatch to override",
                          name.c_str(), static_cast<unsigned long long>(hash),
                          check.expect_name.c_str(),
                          static_cast<unsigned long long>(check.expect_hash)));
}

// The [0, 8) bytes of a section header: is it `type` with this payload size?
bool IsSectionHeader(const uint8_t* p, uint8_t type, uint32_t payload) {
  return p[0] == type && p[1] == 0 && LoadLE16(p + 2) == 0 && LoadLE32(p + 4) == payload;
}

// Token runs that must tile [0, tokens) exactly (FORMAT.md §2.3 rule 7).
Status CheckRuns(std::vector<std::pair<uint32_t, uint32_t>> runs, uint32_t tokens,
                 const std::string& what) {
  std::sort(runs.begin(), runs.end());
  uint64_t covered = 0;
  for (const auto& run : runs) {
    if (run.first != covered) {
      return Status(KVC_ERR_CORRUPT, what + (run.first > covered ? ": tokens are missing"
                                                                  : ": tokens appear twice"));
    }
    covered += run.second;
  }
  if (covered != tokens) return Status(KVC_ERR_CORRUPT, what + ": tokens are missing");
  return OkStatus();
}

// Decodes heads [head_start, +count) of a parsed block into f32 rows
// [count, block tokens, dim].
Status DecodeHeads(const WalkedSection& b, uint32_t head_start, uint32_t count,
                   std::vector<float>* rows) {
  BlockHeader h = b.block;
  BlockLayout layout = b.layout;
  h.head_start += head_start;
  h.head_count = count;
  if (layout.record_size != 0) layout.records += size_t{head_start} * layout.record_size;
  layout.widths.assign(b.layout.widths.begin() + head_start,
                       b.layout.widths.begin() + head_start + count);
  layout.offsets.assign(b.layout.offsets.begin() + head_start,
                        b.layout.offsets.begin() + head_start + count);
  rows->resize(size_t{count} * h.token_count * h.head_dim);
  kvc_tensor t = {};
  t.data = rows->data();
  t.dtype = KVC_DTYPE_F32;
  t.ndim = 3;
  t.shape[0] = count;
  t.shape[1] = h.token_count;
  t.shape[2] = h.head_dim;
  TensorView view;
  KVC_RETURN_IF_ERROR(ImportTensor(&t, 3, "block", &view));
  return DecodeBlockPayload(*b.codec, h, b.payload, layout, view, simd::Writes::kCached);
}

}  // namespace

// ---------------------------------------------------------------------------
// Random access

Status CacheFile::ReadAt(uint64_t offset, size_t size, std::vector<uint8_t>* out) const {
  if (offset > size_ || size > size_ - offset) {
    return Status(KVC_ERR_TRUNCATED,
                  StrFormat("bytes %llu..%llu lie past the end of the cache",
                            static_cast<unsigned long long>(offset),
                            static_cast<unsigned long long>(offset + size)));
  }
  out->resize(size);
  if (size > 0 && read_at_(opaque_, offset, out->data(), size) != 0) {
    return Status(KVC_ERR_IO, StrFormat("read callback failed at byte %llu",
                                        static_cast<unsigned long long>(offset)));
  }
  return OkStatus();
}

bool CacheFile::FindCommit(uint64_t end) {
  std::vector<uint8_t> tail, index;
  if (end < header_.header_size + kCommitSize || !ReadAt(end - kCommitSize, kCommitSize, &tail).ok()) {
    return false;
  }
  SectionRef locator, end_section;
  if (!ReadSection(tail.data(), SectionSize(kIndexLocatorPayload), &locator).ok() ||
      locator.type != kSectionIndexLocator || locator.payload_size != kIndexLocatorPayload ||
      !ReadSection(tail.data() + SectionSize(kIndexLocatorPayload), SectionSize(kEndPayload),
                   &end_section).ok() ||
      end_section.type != kSectionEnd || end_section.payload_size != kEndPayload) {
    return false;
  }
  const uint64_t index_offset = LoadLE64(locator.payload);
  const uint64_t index_end = end - kCommitSize;
  if (index_offset < header_.header_size || index_offset >= index_end ||
      !ReadAt(index_offset, static_cast<size_t>(index_end - index_offset), &index).ok()) {
    return false;
  }
  SectionRef s;
  std::vector<IndexEntry> entries;
  uint32_t tokens = 0, segments = 0;
  if (!ReadSection(index.data(), index.size(), &s).ok() || s.type != kSectionBlockIndex ||
      s.total_size != index.size() ||
      !ReadIndexPayload(s, header_.desc, index_offset, &entries, &tokens, &segments).ok()) {
    return false;
  }
  blocks_ = std::move(entries);
  num_tokens_ = tokens;
  segments_ = segments;
  end_ = end;
  return true;
}

Status CacheFile::CheckTiling() const {
  const uint32_t layers = header_.desc.num_layers;
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> runs(2 * size_t{layers});
  for (const IndexEntry& e : blocks_) runs[2 * e.layer + e.kind].emplace_back(e.token_start, e.token_count);
  for (uint32_t i = 0; i < runs.size(); ++i) {
    KVC_RETURN_IF_ERROR(CheckRuns(runs[i], num_tokens_,
                                  StrFormat("layer %u %s", i / 2, i % 2 ? "V" : "K")));
  }
  return OkStatus();
}

Status CacheFile::Open(kvc_read_at_fn read_at, void* opaque, uint64_t size,
                       const ModelCheck& check, std::unique_ptr<CacheFile>* out) {
  if (read_at == nullptr) return Status(KVC_ERR_INVALID_ARGUMENT, "read callback is NULL");
  std::unique_ptr<CacheFile> c(new CacheFile());
  c->read_at_ = read_at;
  c->opaque_ = opaque;
  c->size_ = size;
  std::vector<uint8_t> bytes;
  KVC_RETURN_IF_ERROR(c->ReadAt(0, static_cast<size_t>(std::min<uint64_t>(size, 8)), &bytes));
  if (bytes.size() >= 8) {
    KVC_RETURN_IF_ERROR(c->ReadAt(0, std::min<size_t>(static_cast<size_t>(size),
                                                      LoadLE16(bytes.data() + 6)), &bytes));
  }
  KVC_RETURN_IF_ERROR(ReadStreamHeader(bytes.data(), bytes.size(), &c->header_));
  c->walker_ = std::make_unique<StreamWalker>(c->header_);
  // Layer configs and the model identity: the sections before the first
  // block.
  uint64_t offset = c->header_.header_size;
  while (offset + kSectionHeaderSize <= size) {
    KVC_RETURN_IF_ERROR(c->ReadAt(offset, kSectionHeaderSize, &bytes));
    if (bytes[0] != kSectionLayerConfig && bytes[0] != kSectionModelIdentity) break;
    KVC_RETURN_IF_ERROR(c->ReadAt(offset, SectionSize(LoadLE32(bytes.data() + 4)), &bytes));
    WalkedSection s;
    KVC_RETURN_IF_ERROR(c->walker_->Next(bytes.data(), bytes.size(), offset, &s));
    offset += s.ref.total_size;
  }
  if (!c->walker_->configs_complete()) {
    return Status(KVC_ERR_CORRUPT, "stream lacks layer configs");
  }
  c->has_model_ = c->walker_->has_model();
  c->model_name_ = c->walker_->model_name();
  c->model_hash_ = c->walker_->model_hash();
  KVC_RETURN_IF_ERROR(CheckModel(check, c->has_model_, c->model_name_, c->model_hash_));

  // The commit at the end; else, after an interrupted append, the last one
  // before it (searched backwards for the locator + End byte pattern).
  bool found = c->FindCommit(size);
  // A stream that ends with a valid End but no locator has no index: walk it.
  bool indexless = false;
  if (!found && size >= c->header_.header_size + SectionSize(kEndPayload)) {
    KVC_RETURN_IF_ERROR(c->ReadAt(size - SectionSize(kEndPayload), SectionSize(kEndPayload), &bytes));
    SectionRef end;
    indexless = ReadSection(bytes.data(), bytes.size(), &end).ok() && end.type == kSectionEnd;
  }
  const uint64_t first = c->header_.header_size;
  for (uint64_t hi = size; !found && !indexless && hi >= first + kCommitSize;) {
    const uint64_t lo = std::max<uint64_t>(first, hi > kReadChunk ? hi - kReadChunk : 0);
    KVC_RETURN_IF_ERROR(c->ReadAt(lo, static_cast<size_t>(hi - lo), &bytes));
    for (size_t p = bytes.size(); !found && p >= kCommitSize; --p) {
      const uint8_t* commit = bytes.data() + p - kCommitSize;
      if (IsSectionHeader(commit, kSectionIndexLocator, kIndexLocatorPayload) &&
          IsSectionHeader(commit + SectionSize(kIndexLocatorPayload), kSectionEnd, kEndPayload)) {
        found = c->FindCommit(lo + p);
      }
    }
    if (lo == first) break;
    hi = lo + kCommitSize - 1;  // windows overlap: a commit across two is seen
  }
  if (!found) {
    // No index (a stream of kvc_encode_stream, or damaged): walk it all once.
    StreamWalker walker(c->header_);
    offset = c->header_.header_size;
    while (offset < size) {
      KVC_RETURN_IF_ERROR(c->ReadAt(offset, std::min<size_t>(static_cast<size_t>(size - offset), kSectionHeaderSize), &bytes));
      const uint64_t section = bytes.size() < kSectionHeaderSize
                                   ? bytes.size()
                                   : SectionSize(LoadLE32(bytes.data() + 4));
      KVC_RETURN_IF_ERROR(c->ReadAt(offset, static_cast<size_t>(std::min<uint64_t>(section, size - offset)), &bytes));
      WalkedSection s;
      KVC_RETURN_IF_ERROR(walker.Next(bytes.data(), bytes.size(), offset, &s));
      offset += s.ref.total_size;
    }
    KVC_RETURN_IF_ERROR(walker.Finish());
    c->blocks_ = walker.blocks();
    c->num_tokens_ = walker.num_tokens();
    c->segments_ = walker.segments();
    c->end_ = size;
  }
  KVC_RETURN_IF_ERROR(c->CheckTiling());
  *out = std::move(c);
  return OkStatus();
}

AppendBase CacheFile::append_base() const {
  AppendBase base;
  base.header = header_;
  for (uint32_t layer = 0; layer < header_.desc.num_layers; ++layer) {
    base.configs.push_back(config(layer, KVC_KIND_KEYS));
    base.configs.push_back(config(layer, KVC_KIND_VALUES));
  }
  base.blocks = blocks_;
  base.num_tokens = num_tokens_;
  base.segments = segments_;
  base.end_offset = end_;
  return base;
}

Status CacheFile::Read(uint32_t layer, uint32_t kind, uint32_t head_start, uint32_t head_count,
                       uint32_t token_start, uint32_t token_count, const kvc_tensor* out) {
  const kvc_cache_desc& d = header_.desc;
  if (layer >= d.num_layers || kind > KVC_KIND_VALUES || head_count == 0 ||
      uint64_t{head_start} + head_count > d.num_kv_heads || token_count == 0 ||
      uint64_t{token_start} + token_count > num_tokens_) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("layer %u kind %u heads %u+%u tokens %u+%u lie outside the cache "
                            "(%u layers, %u heads, %u tokens)", layer, kind, head_start,
                            head_count, token_start, token_count, d.num_layers,
                            d.num_kv_heads, num_tokens_));
  }
  TensorView view;
  KVC_RETURN_IF_ERROR(ImportTensor(out, 3, "out", &view));
  if (view.shape[0] != head_count || view.shape[1] != token_count ||
      view.shape[2] != d.head_dim) {
    return Status(KVC_ERR_SHAPE_MISMATCH,
                  StrFormat("out must be [%u, %u, %u]", head_count, token_count, d.head_dim));
  }
  const uint64_t lo = token_start, hi = uint64_t{token_start} + token_count;
  std::vector<uint8_t> bytes;
  std::vector<float> rows;
  for (const IndexEntry& e : blocks_) {
    if (e.layer != layer || e.kind != kind || e.token_start >= hi ||
        uint64_t{e.token_start} + e.token_count <= lo) {
      continue;
    }
    KVC_RETURN_IF_ERROR(ReadAt(e.offset, static_cast<size_t>(e.size), &bytes));
    WalkedSection b;
    KVC_RETURN_IF_ERROR(walker_->ParseBlock(bytes.data(), bytes.size(), e.offset, num_tokens_, &b));
    if (b.ref.total_size != e.size || b.block.layer != e.layer || b.block.kind != e.kind ||
        b.block.token_start != e.token_start || b.block.token_count != e.token_count) {
      return Status(KVC_ERR_CORRUPT,
                    StrFormat("at byte %llu: the block is not the one the index names",
                              static_cast<unsigned long long>(e.offset)));
    }
    KVC_RETURN_IF_ERROR(DecodeHeads(b, head_start, head_count, &rows));
    const uint32_t first = static_cast<uint32_t>(std::max<uint64_t>(lo, e.token_start));
    const uint32_t last =
        static_cast<uint32_t>(std::min<uint64_t>(hi, uint64_t{e.token_start} + e.token_count));
    for (uint32_t head = 0; head < head_count; ++head) {
      for (uint32_t t = first; t < last; ++t) {
        const float* row = rows.data() + (size_t{head} * e.token_count + (t - e.token_start)) * d.head_dim;
        Status stored = StoreRow(row, d.head_dim, view.dtype, view.strides[2],
                                 view.Row(head, t - token_start));
        if (!stored.ok()) {
          return Status(stored.code(), StrFormat("layer %u head %u token %u: %s", layer,
                                                 head_start + head, t, stored.message().c_str()));
        }
      }
    }
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Sequential

Status StreamReader::Fail(const Status& s) {
  if (failed_.ok()) failed_ = s;
  return s;
}

Status StreamReader::ReadSection(bool* got) {
  *got = false;
  buffer_.clear();
  // The 8-byte section header, then the rest as it arrives.
  size_t want = kSectionHeaderSize;
  while (buffer_.size() < want) {
    const size_t before = buffer_.size();
    buffer_.resize(std::min(want, before + kReadChunk));
    const int64_t n = read_(opaque_, buffer_.data() + before, buffer_.size() - before);
    if (n < 0) return Status(KVC_ERR_IO, "read callback failed");
    buffer_.resize(before + static_cast<size_t>(n));
    if (n == 0) {
      if (buffer_.empty()) return OkStatus();  // a clean end between sections
      return Status(KVC_ERR_TRUNCATED, StrFormat("stream ends inside a section at byte %llu",
                                                 static_cast<unsigned long long>(offset_)));
    }
    if (buffer_.size() >= kSectionHeaderSize && want == kSectionHeaderSize) {
      want = SectionSize(LoadLE32(buffer_.data() + 4));
    }
  }
  KVC_RETURN_IF_ERROR(walker_->Next(buffer_.data(), buffer_.size(), offset_, &pending_));
  offset_ += buffer_.size();
  has_pending_ = true;
  *got = true;
  return OkStatus();
}

Status StreamReader::Open(kvc_read_fn read, void* opaque, const ModelCheck& check,
                          std::unique_ptr<StreamReader>* out) {
  if (read == nullptr) return Status(KVC_ERR_INVALID_ARGUMENT, "read callback is NULL");
  std::unique_ptr<StreamReader> r(new StreamReader());
  r->read_ = read;
  r->opaque_ = opaque;
  // The header: 8 bytes, then the rest of Header_Size.
  std::vector<uint8_t> header;
  size_t want = 8;
  while (header.size() < want) {
    const size_t before = header.size();
    header.resize(want);
    const int64_t n = read(opaque, header.data() + before, want - before);
    if (n < 0) return Status(KVC_ERR_IO, "read callback failed");
    header.resize(before + static_cast<size_t>(n));
    if (n == 0) break;
    if (header.size() == 8 && want == 8 && LoadLE32(header.data()) == KVC_STREAM_MAGIC) {
      want = std::max<size_t>(8, LoadLE16(header.data() + 6));
    }
  }
  StreamHeader h;
  KVC_RETURN_IF_ERROR(ReadStreamHeader(header.data(), header.size(), &h));
  r->offset_ = h.header_size;
  r->walker_ = std::make_unique<StreamWalker>(h);
  // Layer configs and ancillary sections up to the first block.
  for (;;) {
    bool got = false;
    KVC_RETURN_IF_ERROR(r->ReadSection(&got));
    if (!got) return Status(KVC_ERR_TRUNCATED, "stream ends before its first block");
    if (r->pending_.kind == WalkedSection::kBlock) break;
    if (r->pending_.kind == WalkedSection::kEnd) {
      return Status(KVC_ERR_CORRUPT, "stream ends before its first block");
    }
    r->has_pending_ = false;
  }
  KVC_RETURN_IF_ERROR(CheckModel(check, r->walker_->has_model(), r->walker_->model_name(),
                                 r->walker_->model_hash()));
  *out = std::move(r);
  return OkStatus();
}

Status StreamReader::Next(kvc_layer_run* run) {
  KVC_RETURN_IF_ERROR(failed_);
  if (in_run_ && !run_read_) KVC_RETURN_IF_ERROR(Read(nullptr, nullptr));
  run->end = 0;
  if (done_) {
    run->end = 1;
    return OkStatus();
  }
  const uint32_t layers = walker_->header().desc.num_layers;
  if (!in_run_) {
    layer_ = 0;  // the first run of the stream
  } else if (layer_ + 1 < layers) {
    ++layer_;
  } else {
    // The segment's last layer is done: its End, then an Append or the end.
    while (!walker_->at_segment_end()) {
      bool got = false;
      Status read = ReadSection(&got);
      if (!read.ok()) return Fail(read);
      if (!got) return Fail(walker_->Finish());
      if (pending_.kind == WalkedSection::kBlock) {
        return Fail(Status(KVC_ERR_CORRUPT,
                           pending_.block.Name() + ": block after its segment was complete"));
      }
      has_pending_ = false;
    }
    bool got = false;
    Status read = ReadSection(&got);
    if (!read.ok()) return Fail(read);
    has_pending_ = false;
    if (!got) {
      done_ = true;
      run->end = 1;
      return OkStatus();
    }
    layer_ = 0;  // the walker accepted an Append: a new segment
    ++segment_;
  }
  in_run_ = true;
  run_read_ = false;
  run->layer = layer_;
  run->token_start = walker_->segment_start();
  run->token_count = walker_->num_tokens() - walker_->segment_start();
  run->segment = segment_;
  return OkStatus();
}

Status StreamReader::Read(const kvc_tensor* keys, const kvc_tensor* values) {
  KVC_RETURN_IF_ERROR(failed_);
  if (!in_run_ || run_read_) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "no run to read: call kvc_reader_next first");
  }
  const kvc_cache_desc& d = walker_->header().desc;
  const uint32_t start = walker_->segment_start();
  const uint32_t tokens = walker_->num_tokens() - start;
  TensorView views[2];
  const kvc_tensor* outs[2] = {keys, values};
  for (int kind = 0; kind < 2; ++kind) {
    if (outs[kind] == nullptr) continue;
    KVC_RETURN_IF_ERROR(ImportTensor(outs[kind], 3, kind ? "values" : "keys", &views[kind]));
    if (views[kind].shape[0] != d.num_kv_heads || views[kind].shape[1] != tokens ||
        views[kind].shape[2] != d.head_dim) {
      return Status(KVC_ERR_SHAPE_MISMATCH, StrFormat("%s must be [%u, %u, %u]",
                                                      kind ? "values" : "keys",
                                                      d.num_kv_heads, tokens, d.head_dim));
    }
  }
  uint64_t output_bytes = 0;
  for (int kind = 0; kind < 2; ++kind) {
    if (outs[kind] != nullptr) {
      output_bytes +=
          uint64_t{d.num_kv_heads} * tokens * d.head_dim * DtypeBytes(views[kind].dtype);
    }
  }
  const simd::Writes writes = WritesForOutput(output_bytes);
  run_read_ = true;  // whatever happens next, this run is consumed
  std::vector<std::pair<uint32_t, uint32_t>> covered[2];
  auto complete = [&](int kind) {
    uint64_t sum = 0;
    for (const auto& r : covered[kind]) sum += r.second;
    return sum == tokens;
  };
  while (!complete(0) || !complete(1)) {
    if (!has_pending_) {
      bool got = false;
      Status read = ReadSection(&got);
      if (!read.ok()) return Fail(read);
      if (!got) {
        return Fail(Status(KVC_ERR_TRUNCATED,
                           StrFormat("stream ends inside layer %u", layer_)));
      }
    }
    has_pending_ = false;
    if (pending_.kind != WalkedSection::kBlock) continue;  // ancillary
    const BlockHeader& h = pending_.block;
    if (h.layer > layer_) {
      return Fail(Status(KVC_ERR_UNSUPPORTED_FEATURE,
                         StrFormat("blocks of layer %u arrive before layer %u is complete: "
                                   "the stream is not layer-ordered (decode it whole)",
                                   h.layer, layer_)));
    }
    // Coverage so far is disjoint and inside the run; a block overlapping it
    // (or of an earlier layer) is a duplicate.
    bool overlaps = h.layer < layer_;
    for (const auto& r : covered[h.kind]) {
      overlaps |= h.token_start < r.first + r.second && r.first < h.token_start + h.token_count;
    }
    if (overlaps) {
      return Fail(Status(KVC_ERR_CORRUPT, h.Name() + StrFormat(": tokens %u..%u appear in two blocks",
                                                                h.token_start,
                                                                h.token_start + h.token_count - 1)));
    }
    covered[h.kind].emplace_back(h.token_start, h.token_count);
    if (outs[h.kind] != nullptr) {
      TensorView layer_view = views[h.kind];
      layer_view.data += static_cast<int64_t>(h.token_start - start) * layer_view.strides[1] *
                         static_cast<int64_t>(DtypeBytes(layer_view.dtype));
      layer_view.shape[1] = h.token_count;
      Status decoded = DecodeBlockPayload(*pending_.codec, h, pending_.payload, pending_.layout,
                                          layer_view, writes);
      if (!decoded.ok()) return Fail(decoded);
    }
  }
  return OkStatus();
}

}  // namespace kvc
