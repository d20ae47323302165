// One decode step of attention over a layer's encoded K and V blocks
// (kvc_decode_attention): scores in each method's own domain, a stable
// softmax, weighted values accumulated in each method's own domain.
#ifndef KVCODEC_CODEC_ATTENTION_DECODE_ATTENTION_H_
#define KVCODEC_CODEC_ATTENTION_DECODE_ATTENTION_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/parallel.h"
#include "base/status.h"
#include "format/block.h"
#include "quant/tensor_codec.h"

namespace kvc {

// A parsed block whose payload the caller keeps alive.
struct EncodedBlock {
  BlockHeader header;
  const uint8_t* payload = nullptr;
  const TensorCodec* codec = nullptr;
  const BlockLayout* layout = nullptr;
};

struct AttentionParams {
  Parallelism parallelism;  // threads, or the caller's pool
  float scale = 0.0f;       // 0: 1 / sqrt(head_dim)
  uint32_t token_begin = 0;
  uint32_t token_end = 0;   // 0: the blocks' last token + 1
};

// Tokens are processed in chunks of this many (aligned to the first attended
// token): the unit of work of the threads and of the partial softmax, fixed
// so that results do not depend on the number of threads.
constexpr uint32_t kAttentionChunkTokens = 4096;

// queries: [num_query_heads][head_dim]; out: [num_query_heads][head_dim];
// lse: [num_query_heads] or nullptr. See kvc_decode_attention for the rules
// the blocks follow.
Status DecodeAttention(const std::vector<EncodedBlock>& keys,
                       const std::vector<EncodedBlock>& values, const float* queries,
                       uint32_t num_query_heads, const AttentionParams& params, float* out,
                       float* lse);

}  // namespace kvc

#endif  // KVCODEC_CODEC_ATTENTION_DECODE_ATTENTION_H_
