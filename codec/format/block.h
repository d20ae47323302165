// Blocks: one layer x (K or V) x a range of heads x a range of tokens
// (FORMAT.md, "Block"). Payload:
//   Block_Header (20 bytes) | Tensor_Config | Head_Records | Sections
// Section s holds, head after head, that head's Token_Count records of the
// width the method gives for the head's record.
#ifndef KVCODEC_CODEC_FORMAT_BLOCK_H_
#define KVCODEC_CODEC_FORMAT_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "base/status.h"
#include "format/section.h"
#include "format/tensor_view.h"
#include "kvcodec/kvcodec.h"
#include "quant/tensor_codec.h"
#include "simd/convert_kernels.h"

namespace kvc {

constexpr size_t kBlockFixedHeaderSize = 20;
// Standalone blocks: Block_Magic u32 | Version_Major u8 | Version_Minor u8 |
// Reserved u16, then the block section.
constexpr size_t kBlockFrameHeaderSize = 8;

struct BlockHeader {
  uint32_t layer = 0;
  uint32_t kind = KVC_KIND_KEYS;
  uint32_t head_dim = 0;
  uint32_t head_start = 0;
  uint32_t head_count = 0;
  uint32_t token_start = 0;
  uint32_t token_count = 0;
  kvc_tensor_config config{};

  uint64_t num_vectors() const { return uint64_t{head_count} * token_count; }
  size_t header_size() const;  // fixed header + tensor config
  std::string Name() const;    // "layer 3 K", for messages
};

// Where everything of a block's payload is.
struct BlockLayout {
  const uint8_t* records = nullptr;        // head_count records
  size_t record_size = 0;                  // per head: the method's part, then
  size_t method_record_size = 0;           // a centered block's channel mean
  std::vector<std::vector<size_t>> widths;   // [head][section] bytes per vector
  std::vector<std::vector<size_t>> offsets;  // [head][section] payload offset
  size_t payload_size = 0;
};

// Checks every field against the format's limits; the failure status is
// `code` (INVALID_ARGUMENT when encoding, CORRUPT when decoding).
Status CheckBlockHeader(const BlockHeader& header, kvc_status code);

// Most bytes the payload of such a block can take.
Status BlockPayloadBound(const BlockHeader& header, const TensorCodec& codec,
                         size_t* bound);

// Parses a block section's header and tensor config.
Status ReadBlockHeader(const SectionRef& section, BlockHeader* header);
// Locates records and sections, checks the records and that the payload has
// exactly the size they imply.
Status ReadBlockLayout(const TensorCodec& codec, const BlockHeader& header,
                       const SectionRef& section, BlockLayout* layout);

// Encoding is two steps, so that callers can place payloads before writing
// them. First the head records (from statistics of the input, [head_count,
// token_count, head_dim] of this block; queries, optional, [head_count *
// group, tokens, head_dim], a sample some methods use) and the layout they
// imply: layout->payload_size is the payload's exact size.
Status PlanBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                        const TensorView& input, const TensorView* queries,
                        std::vector<uint8_t>* records, BlockLayout* layout);
// Then the whole Block section at `section`, SectionSize(layout.payload_size)
// bytes: header, payload and checksum (sealed as SealSection does, flags 0),
// the checksum fed the payload as it is written.
Status WriteBlockSection(const TensorCodec& codec, const BlockHeader& header,
                         const TensorView& input, const std::vector<uint8_t>& records,
                         const BlockLayout& layout, uint8_t* section);
// Or the payload alone, layout.payload_size bytes at `payload`, for writers
// that may store it compressed and seal the section then.
Status WriteBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                         const TensorView& input, const std::vector<uint8_t>& records,
                         const BlockLayout& layout, uint8_t* payload);
// How a decode whose outputs total `bytes` should store them
// (base/cache_size.h's WriteAroundCache).
simd::Writes WritesForOutput(uint64_t bytes);

// output: [head_count, token_count, head_dim]; f16 and bf16 outputs are
// stored as `writes` says (f32 rows are decoded in place).
// unverified_section, if not null: the payload's section, whose checksum is
// checked here (ReadSection's kDefer). Where a head has one section, chunk
// by chunk as they are decoded (the payload read once, in cache): a
// mismatch is then CHECKSUM after the output was written, which holds
// nothing to use. Otherwise before anything is decoded.
Status DecodeBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                          const uint8_t* payload, const BlockLayout& layout,
                          const TensorView& output, simd::Writes writes,
                          const uint8_t* unverified_section = nullptr);
// queries: [head_count][queries_per_head][head_dim]; scores:
// [head_count][queries_per_head][token_count]. A job per head; the error
// reported is the first head's.
Status ScoreBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                         const uint8_t* payload, const BlockLayout& layout,
                         const float* queries, uint32_t queries_per_head,
                         const Parallelism& parallelism, float* scores);
// weights: [head_count][queries_per_head][token_count]; out:
// [head_count][queries_per_head][head_dim], overwritten.
Status AttendBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                          const uint8_t* payload, const BlockLayout& layout,
                          const float* weights, uint32_t queries_per_head,
                          const Parallelism& parallelism, float* out);

// The same for tokens [t0, t0 + count) of one head (t0 a multiple of 8,
// relative to the block's first token): scores [num_queries][count], weights
// [num_queries][count], out [num_queries][head_dim]. Errors name the block,
// head and token; a non-finite result (crafted norms) is CORRUPT.
Status ScoreHeadRange(const TensorCodec& codec, const BlockHeader& header,
                      const uint8_t* payload, const BlockLayout& layout, uint32_t head,
                      uint32_t t0, uint32_t count, const float* queries,
                      size_t num_queries, float* scores);
Status AttendHeadRange(const TensorCodec& codec, const BlockHeader& header,
                       const uint8_t* payload, const BlockLayout& layout, uint32_t head,
                       uint32_t t0, uint32_t count, const float* weights,
                       size_t num_queries, float* out);

}  // namespace kvc

#endif  // KVCODEC_CODEC_FORMAT_BLOCK_H_
