// Blocks: one layer x (K or V) x a range of heads x a range of tokens
// (FORMAT.md, "Block"). The payload is a 36-byte header, the tensor config
// included, then the method's sections, each holding one record per vector in
// head-major order (vector n = head * Token_Count + token).
#ifndef KVCODEC_CODEC_FORMAT_BLOCK_H_
#define KVCODEC_CODEC_FORMAT_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/status.h"
#include "format/section.h"
#include "format/tensor_view.h"
#include "kvcodec/kvcodec.h"
#include "quant/tensor_codec.h"

namespace kvc {

constexpr size_t kBlockHeaderSize = 36;
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
  // "layer 3 K" for messages.
  std::string Name() const;
};

// Checks every field against the format's limits; the failure status is
// `code` (INVALID_ARGUMENT when encoding, CORRUPT when decoding).
Status CheckBlockHeader(const BlockHeader& header, kvc_status code);

// Payload bytes of a block (header included); fails if it exceeds a
// section's 4 GiB limit. The header must have passed CheckBlockHeader.
Status BlockPayloadSize(const BlockHeader& header, size_t* size);

void WriteBlockHeader(const BlockHeader& header, uint8_t* payload);
// Parses and checks a block section's payload, its size included.
Status ReadBlockHeader(const SectionRef& section, BlockHeader* header);

// input: [head_count, token_count, head_dim] view of this block's vectors.
Status EncodeBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                          const TensorView& input, uint8_t* payload);
// output: [head_count, token_count, head_dim].
Status DecodeBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                          const uint8_t* payload, const TensorView& output);
// queries: [head_count][queries_per_head][head_dim]; scores:
// [head_count][queries_per_head][token_count].
Status ScoreBlockPayload(const TensorCodec& codec, const BlockHeader& header,
                         const uint8_t* payload, const float* queries,
                         uint32_t queries_per_head, float* scores);

}  // namespace kvc

#endif  // KVCODEC_CODEC_FORMAT_BLOCK_H_
