#include "format/block.h"

#include <algorithm>
#include <vector>

#include "base/endian.h"
#include "config/tensor_config.h"

namespace kvc {
namespace {

// Vectors converted to f32 per codec call: enough to amortise the call,
// small enough to stay in L1.
constexpr uint32_t kChunkVectors = 32;

// Pointers to vector `first`'s record in each section.
std::vector<uint8_t*> SectionPointers(const TensorCodec& codec,
                                      const BlockHeader& header,
                                      uint8_t* payload, uint64_t first) {
  std::vector<uint8_t*> pointers;
  uint8_t* section = payload + kBlockHeaderSize;
  for (size_t width : codec.section_widths()) {
    pointers.push_back(section + first * width);
    section += header.num_vectors() * width;
  }
  return pointers;
}

std::string Where(const BlockHeader& h, uint32_t head, uint64_t token) {
  return StrFormat("%s head %u token %llu", h.Name().c_str(),
                   h.head_start + head,
                   static_cast<unsigned long long>(h.token_start + token));
}

// Runs `step(head, first_token, count, section_pointers)` over the block in
// chunks; on failure prefixes the message with where it happened.
template <typename Step>
Status ForEachChunk(const TensorCodec& codec, const BlockHeader& header,
                    const uint8_t* payload, const Step& step) {
  for (uint32_t head = 0; head < header.head_count; ++head) {
    for (uint32_t t0 = 0; t0 < header.token_count; t0 += kChunkVectors) {
      const uint32_t count = std::min(kChunkVectors, header.token_count - t0);
      const uint64_t first = uint64_t{head} * header.token_count + t0;
      size_t bad = 0;
      Status status = step(head, t0, count,
                           SectionPointers(codec, header,
                                           const_cast<uint8_t*>(payload), first),
                           &bad);
      if (!status.ok()) {
        return Status(status.code(),
                      Where(header, head, t0 + bad) + ": " + status.message());
      }
    }
  }
  return OkStatus();
}

}  // namespace

std::string BlockHeader::Name() const {
  return StrFormat("layer %u %s", layer, kind == KVC_KIND_KEYS ? "K" : "V");
}

Status CheckBlockHeader(const BlockHeader& h, kvc_status code) {
  auto fail = [&](const std::string& why) { return Status(code, why); };
  if (h.layer > 0xFFFF) return fail(StrFormat("layer %u exceeds 65535", h.layer));
  if (h.kind > KVC_KIND_VALUES) return fail(StrFormat("kind %u unknown", h.kind));
  Status dim = ValidateHeadDim(h.head_dim);
  if (!dim.ok()) return fail(dim.message());
  if (h.head_count == 0 || h.token_count == 0) {
    return fail("block has no heads or no tokens");
  }
  if (uint64_t{h.head_start} + h.head_count > 0xFFFF) {
    return fail("head range exceeds 65535");
  }
  if (uint64_t{h.token_start} + h.token_count > 0xFFFFFFFFull) {
    return fail("token range exceeds 2^32 - 1");
  }
  Status config = ValidateTensorConfig(h.config, h.Name());
  if (!config.ok()) return fail(config.message());
  return OkStatus();
}

Status BlockPayloadSize(const BlockHeader& h, size_t* size) {
  uint64_t bytes = 0;
  for (size_t width : TensorCodec::SectionWidths(h.config, h.head_dim)) {
    bytes += h.num_vectors() * width;  // < 2^32 * 2^16 * 2^13: no overflow
  }
  bytes += kBlockHeaderSize;
  if (bytes > kMaxSectionPayload) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%s: block of %llu bytes exceeds 4 GiB (use fewer "
                            "tokens per block)", h.Name().c_str(),
                            static_cast<unsigned long long>(bytes)));
  }
  *size = static_cast<size_t>(bytes);
  return OkStatus();
}

void WriteBlockHeader(const BlockHeader& h, uint8_t* p) {
  StoreLE16(static_cast<uint16_t>(h.layer), p);
  p[2] = static_cast<uint8_t>(h.kind);
  p[3] = 0;  // Block_Flags
  StoreLE16(static_cast<uint16_t>(h.head_dim), p + 4);
  StoreLE16(static_cast<uint16_t>(h.head_start), p + 6);
  StoreLE16(static_cast<uint16_t>(h.head_count), p + 8);
  StoreLE16(0, p + 10);
  StoreLE32(h.token_start, p + 12);
  StoreLE32(h.token_count, p + 16);
  WriteTensorConfig(h.config, p + 20);
}

Status ReadBlockHeader(const SectionRef& section, BlockHeader* out) {
  if (section.payload_size < kBlockHeaderSize) {
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
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  StrFormat("block flags 0x%02x unknown", p[3]));
  }
  if (LoadLE16(p + 10) != 0) {
    return Status(KVC_ERR_CORRUPT, "block reserved bytes not zero");
  }
  KVC_RETURN_IF_ERROR(ReadTensorConfig(p + 20, &h.config));
  KVC_RETURN_IF_ERROR(CheckBlockHeader(h, KVC_ERR_CORRUPT));
  size_t expected;
  Status size = BlockPayloadSize(h, &expected);
  if (!size.ok()) return Status(KVC_ERR_CORRUPT, size.message());
  if (expected != section.payload_size) {
    return Status(KVC_ERR_CORRUPT,
                  StrFormat("%s: block holds %zu bytes, its header implies %zu",
                            h.Name().c_str(), section.payload_size, expected));
  }
  *out = h;
  return OkStatus();
}

Status EncodeBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                          const TensorView& input, uint8_t* payload) {
  WriteBlockHeader(header, payload);
  const size_t d = header.head_dim;
  std::vector<float> rows(kChunkVectors * d);
  return ForEachChunk(
      codec, header, payload,
      [&](uint32_t head, uint32_t t0, uint32_t count,
          const std::vector<uint8_t*>& sections, size_t* bad) {
        for (uint32_t i = 0; i < count; ++i) {
          LoadRow(input.Row(head, t0 + i), input.dtype, input.strides[2], d,
                  &rows[i * d]);
        }
        return codec.Encode(rows.data(), count, sections.data(), bad);
      });
}

Status DecodeBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                          const uint8_t* payload, const TensorView& output) {
  const size_t d = header.head_dim;
  std::vector<float> rows(kChunkVectors * d);
  return ForEachChunk(
      codec, header, payload,
      [&](uint32_t head, uint32_t t0, uint32_t count,
          const std::vector<uint8_t*>& sections, size_t* bad) {
        KVC_RETURN_IF_ERROR(codec.Decode(sections.data(), count, rows.data(), bad));
        for (uint32_t i = 0; i < count; ++i) {
          *bad = i;
          KVC_RETURN_IF_ERROR(StoreRow(&rows[i * d], d, output.dtype,
                                       output.strides[2],
                                       output.Row(head, t0 + i)));
        }
        return OkStatus();
      });
}

Status ScoreBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                         const uint8_t* payload, const float* queries,
                         uint32_t queries_per_head, float* scores) {
  const size_t d = header.head_dim;
  const size_t tokens = header.token_count;
  for (uint32_t head = 0; head < header.head_count; ++head) {
    const uint64_t first = uint64_t{head} * tokens;
    size_t bad = 0;
    Status status = codec.Scores(
        SectionPointers(codec, header, const_cast<uint8_t*>(payload), first)
            .data(),
        tokens, queries + size_t{head} * queries_per_head * d,
        queries_per_head, scores + size_t{head} * queries_per_head * tokens,
        &bad);
    if (!status.ok()) {
      return Status(status.code(),
                    Where(header, head, bad) + ": " + status.message());
    }
  }
  return OkStatus();
}

}  // namespace kvc
