#include "format/block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "base/cache_size.h"
#include "base/dtype.h"
#include "base/endian.h"
#include "config/tensor_config.h"
#include "format/checksum.h"
#include "format/section.h"
#include "quant/scalars.h"
#include "simd/convert_kernels.h"
#include "simd/reduce_kernels.h"

#include <hwy/cache_control.h>

namespace kvc {
namespace {

// Vectors converted to f32 per codec call: enough to amortise the call and
// the methods' set-up per batch (decoding at 64 runs 4-11% faster than at
// 32; encoding the same), small enough to stay in L1 at head_dim 128.
// A multiple of 8, so that every chunk starts on a byte boundary whatever
// the section widths in bits.
constexpr uint32_t kChunkVectors = 64;

std::string Where(const BlockHeader& h, uint32_t head, uint64_t token) {
  return StrFormat("%s head %u token %llu", h.Name().c_str(), h.head_start + head,
                   static_cast<unsigned long long>(h.token_start + token));
}

// Centering (FORMAT.md §5.7): a centered block's head record ends with the
// head's channel mean, head_dim values in the config's scalar format.
bool Centered(const BlockHeader& h) { return (h.config.flags & KVC_CONFIG_CENTERED) != 0; }

size_t MeanBytes(const BlockHeader& h) {
  return Centered(h) ? size_t{h.head_dim} * DtypeBytes(h.config.scalar_format) : 0;
}

size_t RecordSize(const TensorCodec& codec, const BlockHeader& h) {
  return codec.head_record_size() + MeanBytes(h);
}

// The method's part of a head's record (null for methods without one).
const uint8_t* HeadRecord(const BlockLayout& layout, uint32_t head) {
  return layout.method_record_size ? layout.records + head * layout.record_size : nullptr;
}

// A centered block's channel mean of `head`, as f32 (checked finite when
// the layout was read).
void LoadMean(const BlockHeader& h, const BlockLayout& layout, uint32_t head, float* mean) {
  LoadFiniteScalars(layout.records + head * layout.record_size + layout.method_record_size,
                    h.head_dim, h.config.scalar_format, mean);
}

// Computes widths and offsets from the records; fails past 4 GiB.
Status PlanLayout(const TensorCodec& codec, const BlockHeader& h, const uint8_t* records,
                  BlockLayout* layout) {
  layout->records = records;
  layout->record_size = RecordSize(codec, h);
  layout->method_record_size = codec.head_record_size();
  layout->widths.clear();
  for (uint32_t head = 0; head < h.head_count; ++head) {
    layout->widths.push_back(codec.SectionWidths(HeadRecord(*layout, head)));
  }
  const size_t sections = layout->widths[0].size();
  uint64_t offset = h.header_size() + uint64_t{h.head_count} * layout->record_size;
  layout->offsets.assign(h.head_count, std::vector<size_t>(sections));
  for (size_t s = 0; s < sections; ++s) {
    for (uint32_t head = 0; head < h.head_count; ++head) {
      layout->offsets[head][s] = static_cast<size_t>(offset);
      offset += (uint64_t{h.token_count} * layout->widths[head][s] + 7) / 8;
      if (offset > kMaxSectionPayload) {
        return Status(KVC_ERR_INVALID_ARGUMENT,
                      StrFormat("%s: block exceeds 4 GiB (use fewer tokens per block)",
                                h.Name().c_str()));
      }
    }
  }
  layout->payload_size = static_cast<size_t>(offset);
  return OkStatus();
}

// Pointers to the record of token t (a multiple of 8) of `head` in every
// section.
std::vector<uint8_t*> SectionPointers(const BlockLayout& layout, uint8_t* payload,
                                      uint32_t head, uint32_t t) {
  std::vector<uint8_t*> pointers;
  pointers.reserve(layout.widths[head].size());
  for (size_t s = 0; s < layout.widths[head].size(); ++s) {
    pointers.push_back(payload + layout.offsets[head][s] +
                       size_t{t} * layout.widths[head][s] / 8);
  }
  return pointers;
}

// Bytes of section s that `count` vectors of `head` from a chunk's start
// take (the last chunk's last byte may be partial).
size_t ChunkBytes(const BlockLayout& layout, uint32_t head, size_t s, uint32_t count) {
  return (size_t{count} * layout.widths[head][s] + 7) / 8;
}

// A section's checksum fed in order as the section is written or read a
// chunk at a time. Where a head has one section (InOrder), chunks follow
// each other in the payload and each is hashed while in cache (with
// whatever precedes it: the block header and head records before the
// first); other payloads are hashed whole by Finish.
class ChunkChecksum {
 public:
  explicit ChunkChecksum(const uint8_t* section) : hashed_(section) {}

  static bool InOrder(const BlockLayout& layout) { return layout.widths[0].size() == 1; }

  void Chunk(const BlockLayout& layout, const std::vector<uint8_t*>& sections, uint32_t head,
             uint32_t count) {
    if (InOrder(layout)) HashTo(sections[0] + ChunkBytes(layout, head, 0, count));
  }

  // The checksum of the section, whose payload ends at `end`.
  uint32_t Finish(const uint8_t* end) {
    HashTo(end);
    return checksum_.Finish();
  }

 private:
  void HashTo(const uint8_t* end) {
    checksum_.Update(hashed_, static_cast<size_t>(end - hashed_));
    hashed_ = end;
  }

  Checksummer checksum_;
  const uint8_t* hashed_;
};

// Index of the first non-finite value, or n: a vectorised pass in the usual
// case, the scan only to name the culprit.
size_t FirstNonFinite(const float* v, size_t n) {
  if (simd::AllFinite(v, n)) return n;
  size_t i = 0;
  while (i < n && std::isfinite(v[i])) ++i;
  return i;
}

// Codecs get finite vectors only: checked here once for every method.
Status CheckFiniteInput(const BlockHeader& h, uint32_t head, uint32_t t0, const float* rows,
                        uint32_t count) {
  const size_t bad = FirstNonFinite(rows, size_t{count} * h.head_dim);
  if (bad == size_t{count} * h.head_dim) return OkStatus();
  return Status(KVC_ERR_INVALID_VALUE,
                Where(h, head, t0 + bad / h.head_dim) + ": vector has a non-finite value");
}

}  // namespace

size_t BlockHeader::header_size() const {
  return kBlockFixedHeaderSize + TensorConfigWireSize(config);
}

std::string BlockHeader::Name() const {
  return StrFormat("layer %u %s", layer, kind == KVC_KIND_KEYS ? "K" : "V");
}

Status CheckBlockHeader(const BlockHeader& h, kvc_status code) {
  auto fail = [&](const std::string& why) { return Status(code, why); };
  if (h.layer > 0xFFFF) return fail(StrFormat("layer %u exceeds 65535", h.layer));
  if (h.kind > KVC_KIND_VALUES) return fail(StrFormat("kind %u unknown", h.kind));
  Status dim = ValidateHeadDim(h.head_dim);
  if (!dim.ok()) return fail(dim.message());
  if (h.head_count == 0 || h.token_count == 0) return fail("block has no heads or no tokens");
  if (uint64_t{h.head_start} + h.head_count > 0xFFFF) return fail("head range exceeds 65535");
  if (uint64_t{h.token_start} + h.token_count > 0xFFFFFFFFull) {
    return fail("token range exceeds 2^32 - 1");
  }
  Status config = ValidateTensorConfig(h.config, h.Name());
  if (config.ok()) config = ValidateForHeadDim(h.config, h.head_dim, h.Name());
  if (!config.ok()) return fail(config.message());
  return OkStatus();
}

Status BlockPayloadBound(const BlockHeader& h, const TensorCodec& codec, size_t* bound) {
  uint64_t bytes = h.header_size() + uint64_t{h.head_count} * RecordSize(codec, h);
  if (codec.head_record_size() == 0) {  // every head alike: exact
    for (size_t width : codec.SectionWidths(nullptr)) {
      bytes += h.head_count * ((uint64_t{h.token_count} * width + 7) / 8);
    }
  } else {  // plus the rounding of each head's (at most 8) sections
    bytes += (h.num_vectors() * codec.MaxBitsPerVector() + 7) / 8 + 8 * uint64_t{h.head_count};
  }
  if (bytes > kMaxSectionPayload) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%s: block of up to %llu bytes exceeds 4 GiB (use fewer "
                            "tokens per block)", h.Name().c_str(),
                            static_cast<unsigned long long>(bytes)));
  }
  *bound = static_cast<size_t>(bytes);
  return OkStatus();
}

Status ReadBlockHeader(const SectionRef& section, BlockHeader* out) {
  if (section.payload_size < kBlockFixedHeaderSize) {
    return Status(KVC_ERR_CORRUPT, "block shorter than its header");
  }
  const uint8_t* p = section.payload;
  BlockHeader h;
  h.layer = LoadLE16(p);
  h.kind = p[2];
  h.head_dim = LoadLE16(p + 4);
  h.head_start = LoadLE16(p + 6);
  h.head_count = LoadLE16(p + 8);
  h.token_start = LoadLE32(p + 12);
  h.token_count = LoadLE32(p + 16);
  if (p[3] != 0) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE, StrFormat("block flags 0x%02x unknown", p[3]));
  }
  if (LoadLE16(p + 10) != 0) return Status(KVC_ERR_CORRUPT, "block reserved bytes not zero");
  size_t config_size;
  KVC_RETURN_IF_ERROR(ReadTensorConfig(p + kBlockFixedHeaderSize,
                                       section.payload_size - kBlockFixedHeaderSize,
                                       &h.config, &config_size));
  KVC_RETURN_IF_ERROR(CheckBlockHeader(h, KVC_ERR_CORRUPT));
  *out = h;
  return OkStatus();
}

Status ReadBlockLayout(const TensorCodec& codec, const BlockHeader& h,
                       const SectionRef& section, BlockLayout* layout) {
  const size_t record_size = RecordSize(codec, h);
  const uint64_t records_end = h.header_size() + uint64_t{h.head_count} * record_size;
  if (records_end > section.payload_size) {
    return Status(KVC_ERR_CORRUPT, h.Name() + ": block shorter than its head records");
  }
  const uint8_t* records = section.payload + h.header_size();
  std::vector<float> mean(Centered(h) ? h.head_dim : 0);
  for (uint32_t head = 0; head < h.head_count && record_size; ++head) {
    const uint8_t* record = records + head * record_size;
    Status status = codec.head_record_size() ? codec.CheckHeadRecord(record) : OkStatus();
    if (status.ok() && Centered(h) &&
        !LoadFiniteScalars(record + codec.head_record_size(), h.head_dim,
                           h.config.scalar_format, mean.data())) {
      status = Status(KVC_ERR_CORRUPT, "channel mean is not finite");
    }
    if (!status.ok()) {
      return Status(status.code(), StrFormat("%s head %u: %s", h.Name().c_str(),
                                             h.head_start + head, status.message().c_str()));
    }
  }
  Status plan = PlanLayout(codec, h, records, layout);
  if (!plan.ok()) return Status(KVC_ERR_CORRUPT, plan.message());
  if (layout->payload_size != section.payload_size) {
    return Status(KVC_ERR_CORRUPT,
                  StrFormat("%s: block holds %zu bytes, its header implies %zu",
                            h.Name().c_str(), section.payload_size, layout->payload_size));
  }
  // Bits after a head's last record, up to its section's byte boundary.
  for (uint32_t head = 0; head < h.head_count; ++head) {
    for (size_t s = 0; s < layout->widths[head].size(); ++s) {
      const uint64_t bits = uint64_t{h.token_count} * layout->widths[head][s];
      if (bits % 8 == 0) continue;
      const uint8_t last = section.payload[layout->offsets[head][s] + bits / 8];
      if ((last >> (bits % 8)) != 0) {
        return Status(KVC_ERR_CORRUPT, h.Name() + ": padding bits set");
      }
    }
  }
  return OkStatus();
}

namespace {

// Converts `count` rows of a [heads, tokens, dim] view to f32 in `buffer`
// and returns them (or the view's own memory when it holds them already as
// aligned f32); *finite tells whether every value is finite, from the same
// pass where the rows are consecutive.
const float* LoadChunk(const TensorView& view, uint32_t head, uint32_t t0, uint32_t count,
                       size_t d, float* buffer, bool* finite) {
  const uint8_t* first = view.Row(head, t0);
  const size_t n = size_t{count} * d;
  if (view.strides[2] == 1 && view.strides[1] == static_cast<int64_t>(d)) {
    const auto* half = reinterpret_cast<const uint16_t*>(first);
    if (view.dtype == KVC_DTYPE_F16 && reinterpret_cast<uintptr_t>(first) % 2 == 0) {
      *finite = simd::F16ToF32Finite(half, n, buffer);
      return buffer;
    }
    if (view.dtype == KVC_DTYPE_BF16 && reinterpret_cast<uintptr_t>(first) % 2 == 0) {
      *finite = simd::BF16ToF32Finite(half, n, buffer);
      return buffer;
    }
    if (view.dtype == KVC_DTYPE_F32 && reinterpret_cast<uintptr_t>(first) % 4 == 0) {
      const auto* rows = reinterpret_cast<const float*>(first);
      *finite = simd::AllFinite(rows, n);
      return rows;
    }
    LoadRow(first, view.dtype, 1, n, buffer);
  } else {
    for (uint32_t i = 0; i < count; ++i) {
      LoadRow(view.Row(head, t0 + i), view.dtype, view.strides[2], d, &buffer[i * d]);
    }
  }
  *finite = simd::AllFinite(buffer, n);
  return buffer;
}

// Stores `n` decoded values of consecutive rows in the output's dtype; true
// if every one is finite and fits (otherwise the caller redoes it row by row
// to name the culprit).
bool StoreChunkFinite(const float* rows, size_t n, uint32_t dtype, simd::Writes writes,
                      uint8_t* out) {
  if (dtype == KVC_DTYPE_F32) {
    if (!simd::AllFinite(rows, n)) return false;
    if (reinterpret_cast<const uint8_t*>(rows) != out) std::memcpy(out, rows, n * 4);
    return true;
  }
  if (reinterpret_cast<uintptr_t>(out) % 2 != 0) return false;
  auto* half = reinterpret_cast<uint16_t*>(out);
  return dtype == KVC_DTYPE_F16 ? simd::F32ToF16Finite(rows, n, writes, half)
                                : simd::F32ToBF16Finite(rows, n, writes, half);
}

// The encoder's channel mean of a centered block's head: per channel, the
// sum of the f32 input over the block's tokens in token order, in double,
// divided by the token count, rounded to f32, then stored in the scalar
// format at `stored`; *mean receives the stored values.
Status ComputeMean(const BlockHeader& h, const TensorView& input, uint32_t head, float* rows,
                   uint8_t* stored, float* mean) {
  const size_t d = h.head_dim;
  std::vector<double> sums(d, 0.0);
  for (uint32_t t0 = 0; t0 < h.token_count; t0 += kChunkVectors) {
    const uint32_t count = std::min(kChunkVectors, h.token_count - t0);
    bool finite;
    const float* x = LoadChunk(input, head, t0, count, d, rows, &finite);
    if (!finite) KVC_RETURN_IF_ERROR(CheckFiniteInput(h, head, t0, x, count));
    simd::AccumulateColumns(x, d, count, sums.data());
  }
  const uint32_t format = h.config.scalar_format;
  for (size_t i = 0; i < d; ++i) {
    const float m = static_cast<float>(sums[i] / h.token_count);
    uint8_t* at = stored + i * DtypeBytes(format);
    if (!StoreFiniteScalar(m, format, at)) {
      return Status(KVC_ERR_INVALID_VALUE,
                    StrFormat("%s head %u: channel %zu has mean %g, beyond the scalar "
                              "format's range", h.Name().c_str(), h.head_start + head, i, m));
    }
    mean[i] = LoadScalar(at, format);
  }
  return OkStatus();
}

// out = x - mean, row by row (out may be x), given minus_mean = -mean; a
// difference that overflows is INVALID_VALUE.
Status SubtractMean(const BlockHeader& h, uint32_t head, uint32_t t0, const float* x,
                    uint32_t count, const float* minus_mean, float* out) {
  const size_t d = h.head_dim;
  simd::AddToRows(x, d, count, minus_mean, out);
  const size_t bad = FirstNonFinite(out, size_t{count} * d);
  if (bad == size_t{count} * d) return OkStatus();
  return Status(KVC_ERR_INVALID_VALUE, Where(h, head, t0 + bad / d) +
                                           ": vector minus its head's channel mean overflows");
}

// DecodeBlockPayload's work: every head's tokens, a chunk at a time (each
// fed to `checksum` first, unless it is null).
Status DecodeChunks(const TensorCodec& codec, const BlockHeader& h, const uint8_t* payload,
                    const BlockLayout& layout, const TensorView& output, simd::Writes writes,
                    ChunkChecksum* checksum) {
  const size_t d = h.head_dim;
  std::vector<float> buffer(kChunkVectors * d);
  uint8_t* p = const_cast<uint8_t*>(payload);  // sections are only read
  const bool consecutive =
      output.strides[2] == 1 && output.strides[1] == static_cast<int64_t>(d);
  std::vector<float> mean(Centered(h) ? d : 0);
  for (uint32_t head = 0; head < h.head_count; ++head) {
    // (ReadBlockLayout checked that the mean is finite.)
    if (Centered(h)) {
      LoadMean(h, layout, head, mean.data());
    }
    for (uint32_t t0 = 0; t0 < h.token_count; t0 += kChunkVectors) {
      const uint32_t count = std::min(kChunkVectors, h.token_count - t0);
      uint8_t* out = output.Row(head, t0);
      // Aligned f32 rows in place are decoded straight into the output.
      float* rows = consecutive && output.dtype == KVC_DTYPE_F32 &&
                            reinterpret_cast<uintptr_t>(out) % 4 == 0
                        ? reinterpret_cast<float*>(out)
                        : buffer.data();
      const std::vector<uint8_t*> sections = SectionPointers(layout, p, head, t0);
      if (checksum != nullptr) checksum->Chunk(layout, sections, head, count);
      size_t bad = 0;
      Status status =
          codec.Decode(HeadRecord(layout, head), sections.data(), count, rows, &bad);
      if (status.ok() && Centered(h)) simd::AddToRows(rows, d, count, mean.data(), rows);
      // The usual case: consecutive rows, every value finite and within the
      // output's range, checked while they are stored.
      if (status.ok() && consecutive &&
          StoreChunkFinite(rows, count * d, output.dtype, writes, out)) {
        continue;
      }
      // Crafted norms within their format but beyond any encoder's reach
      // could overflow a decoded value: never hand back a non-finite one.
      const size_t first_bad = status.ok() ? FirstNonFinite(rows, count * d) : 0;
      if (status.ok() && first_bad < count * d) {
        bad = first_bad / d;
        status = Status(KVC_ERR_CORRUPT, "decoded value is not finite");
      }
      // Row by row, to name the first value the output cannot hold.
      for (uint32_t i = 0; status.ok() && i < count; ++i) {
        bad = i;
        status = StoreRow(&rows[i * d], d, output.dtype, output.strides[2],
                          output.Row(head, t0 + i));
      }
      if (!status.ok()) {
        return Status(status.code(), Where(h, head, t0 + bad) + ": " + status.message());
      }
    }
  }
  return OkStatus();
}

}  // namespace

Status PlanBlockPayload(const TensorCodec& codec, const BlockHeader& h,
                        const TensorView& input, const TensorView* queries,
                        std::vector<uint8_t>* records, BlockLayout* layout) {
  const size_t d = h.head_dim;
  // Head records first: they decide the sizes of everything after them.
  const size_t record_size = RecordSize(codec, h);
  const size_t method_record_size = codec.head_record_size();
  records->assign(size_t{h.head_count} * record_size, 0);
  if (record_size > 0) {
    std::vector<float> rows(kChunkVectors * d), minus_mean(Centered(h) ? d : 0);
    std::vector<double> stats(codec.head_stats_size());
    for (uint32_t head = 0; head < h.head_count; ++head) {
      uint8_t* record = &(*records)[head * record_size];
      // The mean first: the method's record describes the centered vectors.
      if (Centered(h)) {
        KVC_RETURN_IF_ERROR(ComputeMean(h, input, head, rows.data(),
                                        record + method_record_size, minus_mean.data()));
        for (float& m : minus_mean) m = -m;
      }
      if (method_record_size == 0) continue;
      std::fill(stats.begin(), stats.end(), 0.0);
      for (uint32_t t0 = 0; t0 < h.token_count; t0 += kChunkVectors) {
        const uint32_t count = std::min(kChunkVectors, h.token_count - t0);
        bool finite;
        const float* x = LoadChunk(input, head, t0, count, d, rows.data(), &finite);
        if (!finite) KVC_RETURN_IF_ERROR(CheckFiniteInput(h, head, t0, x, count));
        if (Centered(h)) {
          KVC_RETURN_IF_ERROR(
              SubtractMean(h, head, t0, x, count, minus_mean.data(), rows.data()));
          x = rows.data();
        }
        codec.ObserveHead(x, count, stats.data());
      }
      if (queries != nullptr) {
        const uint64_t group = queries->shape[0] / h.head_count;
        const uint32_t tokens = static_cast<uint32_t>(queries->shape[1]);
        for (uint64_t q = head * group; q < (head + 1) * group; ++q) {
          for (uint32_t t0 = 0; t0 < tokens; t0 += kChunkVectors) {
            const uint32_t count = std::min(kChunkVectors, tokens - t0);
            bool finite;  // not used: queries only feed statistics
            const float* x = LoadChunk(*queries, static_cast<uint32_t>(q), t0, count, d,
                                       rows.data(), &finite);
            codec.ObserveQueries(x, count, stats.data());
          }
        }
      }
      codec.FinishHead(stats.data(), record);
    }
  }
  return PlanLayout(codec, h, records->data(), layout);
}

namespace {

// WriteBlockPayload's work, each chunk fed to `checksum` once written,
// unless it is null.
Status WriteChunks(const TensorCodec& codec, const BlockHeader& h, const TensorView& input,
                   const std::vector<uint8_t>& records, BlockLayout layout, uint8_t* p,
                   ChunkChecksum* checksum) {
  // The header is zeroed here (the records are copied whole), each chunk's
  // section bytes just before it is encoded (codecs write bit by bit into
  // zeroed memory): one pass over the payload while it is in cache, not a
  // second one.
  std::fill(p, p + h.header_size(), 0);
  StoreLE16(static_cast<uint16_t>(h.layer), p);
  p[2] = static_cast<uint8_t>(h.kind);
  p[3] = 0;  // Block_Flags
  StoreLE16(static_cast<uint16_t>(h.head_dim), p + 4);
  StoreLE16(static_cast<uint16_t>(h.head_start), p + 6);
  StoreLE16(static_cast<uint16_t>(h.head_count), p + 8);
  StoreLE16(0, p + 10);
  StoreLE32(h.token_start, p + 12);
  StoreLE32(h.token_count, p + 16);
  WriteTensorConfig(h.config, p + kBlockFixedHeaderSize);
  std::copy(records.begin(), records.end(), p + h.header_size());
  layout.records = p + h.header_size();

  const size_t d = h.head_dim;
  std::vector<float> rows(kChunkVectors * d), minus_mean(Centered(h) ? d : 0);
  for (uint32_t head = 0; head < h.head_count; ++head) {
    if (Centered(h)) {
      LoadMean(h, layout, head, minus_mean.data());
      for (float& m : minus_mean) m = -m;
    }
    for (uint32_t t0 = 0; t0 < h.token_count; t0 += kChunkVectors) {
      const uint32_t count = std::min(kChunkVectors, h.token_count - t0);
      bool finite;
      const float* x = LoadChunk(input, head, t0, count, d, rows.data(), &finite);
      if (!finite) KVC_RETURN_IF_ERROR(CheckFiniteInput(h, head, t0, x, count));
      if (Centered(h)) {
        KVC_RETURN_IF_ERROR(SubtractMean(h, head, t0, x, count, minus_mean.data(), rows.data()));
        x = rows.data();
      }
      const std::vector<uint8_t*> sections = SectionPointers(layout, p, head, t0);
      for (size_t s = 0; s < sections.size(); ++s) {
        std::memset(sections[s], 0, ChunkBytes(layout, head, s, count));
      }
      size_t bad = 0;
      Status status = codec.Encode(HeadRecord(layout, head), x, count, sections.data(), &bad);
      if (!status.ok()) {
        return Status(status.code(), Where(h, head, t0 + bad) + ": " + status.message());
      }
      if (checksum != nullptr) checksum->Chunk(layout, sections, head, count);
    }
  }
  return OkStatus();
}

}  // namespace

Status WriteBlockPayload(const TensorCodec& codec, const BlockHeader& h,
                         const TensorView& input, const std::vector<uint8_t>& records,
                         const BlockLayout& layout, uint8_t* payload) {
  return WriteChunks(codec, h, input, records, layout, payload, nullptr);
}

Status WriteBlockSection(const TensorCodec& codec, const BlockHeader& h,
                         const TensorView& input, const std::vector<uint8_t>& records,
                         const BlockLayout& layout, uint8_t* section) {
  WriteSectionHeader(kSectionBlock, layout.payload_size, section);
  uint8_t* payload = section + kSectionHeaderSize;
  ChunkChecksum checksum(section);
  KVC_RETURN_IF_ERROR(WriteChunks(codec, h, input, records, layout, payload, &checksum));
  StoreLE32(checksum.Finish(payload + layout.payload_size), payload + layout.payload_size);
  return OkStatus();
}

simd::Writes WritesForOutput(uint64_t bytes) {
  return WriteAroundCache(bytes) ? simd::Writes::kAroundCache : simd::Writes::kCached;
}

Status DecodeBlockPayload(const TensorCodec& codec, const BlockHeader& h,
                          const uint8_t* payload, const BlockLayout& layout,
                          const TensorView& output, simd::Writes writes,
                          const uint8_t* unverified_section) {
  std::optional<ChunkChecksum> checksum;
  if (unverified_section != nullptr) {
    if (ChunkChecksum::InOrder(layout)) {
      checksum.emplace(unverified_section);
    } else {
      KVC_RETURN_IF_ERROR(VerifySection(unverified_section, layout.payload_size));
    }
  }
  Status status = DecodeChunks(codec, h, payload, layout, output, writes,
                               checksum ? &*checksum : nullptr);
  if (status.ok() && checksum) {
    status = CheckSectionChecksum(unverified_section, layout.payload_size,
                                  checksum->Finish(payload + layout.payload_size));
  }
  // Non-temporal stores are ordered before the output is handed on.
  if (writes == simd::Writes::kAroundCache) hwy::FlushStream();
  return status;
}

Status ScoreHeadRange(const TensorCodec& codec, const BlockHeader& h,
                      const uint8_t* payload, const BlockLayout& layout, uint32_t head,
                      uint32_t t0, uint32_t count, const float* queries,
                      size_t num_queries, float* scores) {
  uint8_t* p = const_cast<uint8_t*>(payload);
  size_t bad = 0;
  Status status = codec.Scores(HeadRecord(layout, head),
                               SectionPointers(layout, p, head, t0).data(), count, queries,
                               num_queries, scores, &bad);
  // Centered: every score of a query also gets q . mean.
  if (status.ok() && Centered(h)) {
    const size_t d = h.head_dim;
    std::vector<float> mean(d);
    LoadMean(h, layout, head, mean.data());
    for (size_t q = 0; q < num_queries; ++q) {
      double dot = 0.0;
      for (size_t i = 0; i < d; ++i) dot += double{queries[q * d + i]} * mean[i];
      for (uint32_t n = 0; n < count; ++n) scores[q * count + n] += static_cast<float>(dot);
    }
  }
  // Crafted norms could overflow a score: never hand back a non-finite one.
  const size_t n = num_queries * count;
  const size_t first_bad = status.ok() ? FirstNonFinite(scores, n) : 0;
  if (status.ok() && first_bad < n) {
    bad = first_bad % count;
    status = Status(KVC_ERR_CORRUPT, "score is not finite");
  }
  if (!status.ok()) {
    return Status(status.code(), Where(h, head, t0 + bad) + ": " + status.message());
  }
  return OkStatus();
}

Status AttendHeadRange(const TensorCodec& codec, const BlockHeader& h,
                       const uint8_t* payload, const BlockLayout& layout, uint32_t head,
                       uint32_t t0, uint32_t count, const float* weights,
                       size_t num_queries, float* out) {
  uint8_t* p = const_cast<uint8_t*>(payload);
  size_t bad = 0;
  Status status = codec.Attend(HeadRecord(layout, head),
                               SectionPointers(layout, p, head, t0).data(), count, weights,
                               num_queries, out, &bad);
  if (!status.ok()) {
    return Status(status.code(), Where(h, head, t0 + bad) + ": " + status.message());
  }
  // Centered: each output also gets (sum of its weights) x mean.
  if (Centered(h)) {
    const size_t d = h.head_dim;
    std::vector<float> mean(d);
    LoadMean(h, layout, head, mean.data());
    for (size_t q = 0; q < num_queries; ++q) {
      double total = 0.0;
      for (uint32_t t = 0; t < count; ++t) total += weights[q * count + t];
      for (size_t i = 0; i < d; ++i) out[q * d + i] += static_cast<float>(total * mean[i]);
    }
  }
  const size_t n = num_queries * h.head_dim;
  if (FirstNonFinite(out, n) < n) {
    return Status(KVC_ERR_CORRUPT,
                  StrFormat("%s head %u, tokens %u..%u: weighted sum is not finite",
                            h.Name().c_str(), h.head_start + head, h.token_start + t0,
                            h.token_start + t0 + count - 1));
  }
  return OkStatus();
}

Status ScoreBlockPayload(const TensorCodec& codec, const BlockHeader& h,
                         const uint8_t* payload, const BlockLayout& layout,
                         const float* queries, uint32_t queries_per_head,
                         const Parallelism& parallelism, float* scores) {
  const size_t d = h.head_dim;
  const size_t tokens = h.token_count;
  return ParallelFor(h.head_count, parallelism, [&](size_t job) {
    const uint32_t head = static_cast<uint32_t>(job);
    return ScoreHeadRange(codec, h, payload, layout, head, 0, h.token_count,
                          queries + size_t{head} * queries_per_head * d, queries_per_head,
                          scores + size_t{head} * queries_per_head * tokens);
  });
}

Status AttendBlockPayload(const TensorCodec& codec, const BlockHeader& h,
                          const uint8_t* payload, const BlockLayout& layout,
                          const float* weights, uint32_t queries_per_head,
                          const Parallelism& parallelism, float* out) {
  const size_t d = h.head_dim;
  const size_t tokens = h.token_count;
  return ParallelFor(h.head_count, parallelism, [&](size_t job) {
    const uint32_t head = static_cast<uint32_t>(job);
    return AttendHeadRange(codec, h, payload, layout, head, 0, h.token_count,
                           weights + size_t{head} * queries_per_head * tokens, queries_per_head,
                           out + size_t{head} * queries_per_head * d);
  });
}

}  // namespace kvc
