// Arbitrary bytes into kvcodec's decoders, through the C API only. Never a
// crash, a hang or a leak; a success must describe output of consistent
// shape; memory is allocated from what the header claims only up to a cap,
// as a caller sizing its buffers would.
#include <cstring>
#include <vector>

#include <kvcodec/kvcodec.h>

#include "fuzz_helpers.h"

namespace {
constexpr uint64_t kMaxOutputFloats = uint64_t{1} << 22;  // 16 MiB of f32
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvc_diagnostics diag;
  // As a stream.
  kvc_stream_info info;
  kvc_stream_info_init(&info);
  if (kvc_get_stream_info(data, size, &info, &diag) == KVC_OK) {
    FUZZ_ASSERT(info.num_layers > 0 && info.num_kv_heads > 0 && info.head_dim > 0);
    const uint64_t per_kind =
        uint64_t{info.num_layers} * info.num_kv_heads * info.num_tokens * info.head_dim;
    if (per_kind <= kMaxOutputFloats) {
      std::vector<float> keys(per_kind), values(per_kind);
      kvc_tensor k = {};
      k.data = keys.data();
      k.dtype = KVC_DTYPE_F32;
      k.ndim = 4;
      k.shape[0] = info.num_layers;
      k.shape[1] = info.num_kv_heads;
      k.shape[2] = info.num_tokens;
      k.shape[3] = info.head_dim;
      kvc_tensor v = k;
      v.data = values.data();
      if (kvc_decode_stream(data, size, nullptr, &k, &v, &diag) == KVC_OK) {
        for (float f : keys) FUZZ_ASSERT(f == f);  // decoded values are numbers
      } else {
        FUZZ_ASSERT(diag.message[0] != '\0');
      }
      for (uint32_t layer = 0; layer < info.num_layers && layer < 4; ++layer) {
        (void)kvc_get_stream_layer(data, size, layer, nullptr, nullptr, nullptr, nullptr,
                                   &diag);
      }
    }
  }
  // As a standalone block.
  kvc_block_info block;
  kvc_block_info_init(&block);
  if (kvc_get_block_info(data, size, &block, nullptr, &diag) == KVC_OK) {
    const uint64_t floats = uint64_t{block.head_count} * block.token_count * block.head_dim;
    if (floats <= kMaxOutputFloats) {
      std::vector<uint16_t> out(floats);
      kvc_tensor t = {};
      t.data = out.data();
      t.dtype = KVC_DTYPE_BF16;
      t.ndim = 3;
      t.shape[0] = block.head_count;
      t.shape[1] = block.token_count;
      t.shape[2] = block.head_dim;
      const kvc_status s = kvc_decode_block(data, size, &t, &diag);
      FUZZ_ASSERT(s == KVC_OK || diag.message[0] != '\0');
      std::vector<float> queries(uint64_t{block.head_count} * block.head_dim, 0.5f);
      std::vector<float> scores(uint64_t{block.head_count} * block.token_count);
      (void)kvc_block_scores(data, size, queries.data(), 1, scores.data(), scores.size(),
                             &diag);
    }
  }
  // As config text.
  kvc_config* config = nullptr;
  if (kvc_config_parse(reinterpret_cast<const char*>(data), size, &config, &diag) == KVC_OK) {
    char text[4096];
    size_t length = 0;
    (void)kvc_config_format(config, text, sizeof(text), &length);
    kvc_config_destroy(config);
  }
  return 0;
}
