// Arbitrary bytes as a cache file and as a stream arriving in pieces,
// through the C API only (kvc_cache_*, kvc_reader_*): never a crash, a hang
// or a leak; every failure has a message; what opens reads consistently.
#include <algorithm>
#include <cstring>
#include <vector>

#include <kvcodec/kvcodec.h>

#include "fuzz_helpers.h"

namespace {

constexpr uint64_t kMaxOutputFloats = uint64_t{1} << 20;

struct Input {
  const uint8_t* data;
  size_t size;
  size_t position = 0;
  size_t chunk = 1;
};

int ReadAt(void* opaque, uint64_t offset, void* out, size_t size) {
  const Input* in = static_cast<const Input*>(opaque);
  if (offset > in->size || size > in->size - offset) return 1;
  if (size > 0) std::memcpy(out, in->data + offset, size);
  return 0;
}

int64_t Read(void* opaque, void* out, size_t size) {
  Input* in = static_cast<Input*>(opaque);
  const size_t n = std::min({size, in->chunk, in->size - in->position});
  if (n > 0) std::memcpy(out, in->data + in->position, n);
  in->position += n;
  in->chunk = in->chunk * 3 % 97 + 1;  // varying piece sizes
  return static_cast<int64_t>(n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvc_diagnostics diag;
  Input input{data, size};
  // Random access: open, then read every block the index lists.
  kvc_cache* cache = nullptr;
  if (kvc_cache_open(ReadAt, &input, size, nullptr, &cache, &diag) == KVC_OK) {
    kvc_cache_info info;
    kvc_cache_info_init(&info);
    FUZZ_ASSERT(kvc_cache_get_info(cache, &info, &diag) == KVC_OK);
    FUZZ_ASSERT(info.size + info.ignored_bytes == size);
    const kvc_stream_info& s = info.stream;
    for (uint32_t i = 0; i < info.blocks && i < 16; ++i) {
      kvc_block_entry e;
      kvc_block_entry_init(&e);
      FUZZ_ASSERT(kvc_cache_block(cache, i, &e, &diag) == KVC_OK);
      FUZZ_ASSERT(e.layer < s.num_layers && e.token_start + uint64_t{e.token_count} <= s.num_tokens);
      const uint64_t floats = uint64_t{s.num_kv_heads} * e.token_count * s.head_dim;
      if (floats > kMaxOutputFloats) continue;
      std::vector<float> out(floats);
      kvc_tensor t = {};
      t.data = out.data();
      t.dtype = KVC_DTYPE_F32;
      t.ndim = 3;
      t.shape[0] = s.num_kv_heads;
      t.shape[1] = e.token_count;
      t.shape[2] = s.head_dim;
      if (kvc_cache_read(cache, e.layer, static_cast<kvc_kind>(e.kind), 0, s.num_kv_heads,
                         e.token_start, e.token_count, &t, &diag) == KVC_OK) {
        for (float f : out) FUZZ_ASSERT(f == f);
      } else {
        FUZZ_ASSERT(diag.message[0] != '\0');
      }
    }
    kvc_cache_close(cache);
  } else {
    FUZZ_ASSERT(diag.message[0] != '\0' && cache == nullptr);
  }
  // Sequential, in pieces: every run read (K only, to vary the paths).
  kvc_reader* reader = nullptr;
  kvc_status status = kvc_reader_create(Read, &input, nullptr, &reader, &diag);
  kvc_stream_info s;
  kvc_stream_info_init(&s);
  if (status == KVC_OK) FUZZ_ASSERT(kvc_reader_get_info(reader, &s, &diag) == KVC_OK);
  for (int runs = 0; status == KVC_OK && runs < 64; ++runs) {
    kvc_layer_run run;
    kvc_layer_run_init(&run);
    status = kvc_reader_next(reader, &run, &diag);
    if (status != KVC_OK || run.end) break;
    const uint64_t floats = uint64_t{s.num_kv_heads} * run.token_count * s.head_dim;
    if (floats > kMaxOutputFloats) {
      status = kvc_reader_read(reader, nullptr, nullptr, &diag);
      continue;
    }
    std::vector<float> keys(floats);
    kvc_tensor t = {};
    t.data = keys.data();
    t.dtype = KVC_DTYPE_F32;
    t.ndim = 3;
    t.shape[0] = s.num_kv_heads;
    t.shape[1] = run.token_count;
    t.shape[2] = s.head_dim;
    status = kvc_reader_read(reader, &t, nullptr, &diag);
  }
  if (status != KVC_OK) FUZZ_ASSERT(diag.message[0] != '\0');
  kvc_reader_destroy(reader);
  return 0;
}
