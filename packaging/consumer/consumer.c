/* A C program that uses an installed kvcodec the way an engine would: built
 * by tools/test_bindings.sh against a temporary prefix, once through CMake's
 * find_package (CMakeLists.txt here) and once through pkg-config, for the
 * shared and the static library. It encodes and decodes a block and a whole
 * cache, and checks that errors come back with their diagnostics. */
#include <kvcodec/kvcodec.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
      return 1;                                                                \
    }                                                                          \
  } while (0)

enum { kLayers = 2, kHeads = 2, kTokens = 32, kDim = 128 };
#define kCount (kLayers * kHeads * kTokens * kDim)

static float keys[kCount], values[kCount], out_keys[kCount], out_values[kCount];

static double RelativeError(const float* a, const float* b, size_t n) {
  double error = 0, energy = 0;
  size_t i;
  for (i = 0; i < n; ++i) {
    error += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    energy += (double)a[i] * a[i];
  }
  return error / energy;
}

int main(void) {
  kvc_tensor_config method;
  kvc_config* config = NULL;
  kvc_cache_desc desc;
  kvc_tensor k, v, ok, ov, block_in, block_out;
  kvc_diagnostics diag;
  kvc_block_info info;
  unsigned char* stream;
  unsigned char* block;
  size_t i, capacity, size = 0, block_size = 0;

  /* The header and the library installed together are one version. */
  CHECK(kvc_version() == KVC_VERSION_NUMBER);
  for (i = 0; i < kCount; ++i) {
    keys[i] = (float)sin(0.37 * (double)i) * (float)(1 + i % 7);
    values[i] = (float)cos(0.11 * (double)i);
  }

  /* One block: layer 0's keys, through a method string. */
  kvc_tensor_config_init(&method);
  CHECK(kvc_tensor_config_parse("tq-mse-b4", &method, &diag) == KVC_OK);
  memset(&block_in, 0, sizeof(block_in));
  block_in.data = keys;
  block_in.dtype = KVC_DTYPE_F32;
  block_in.ndim = 3;
  block_in.shape[0] = kHeads;
  block_in.shape[1] = kTokens;
  block_in.shape[2] = kDim;
  capacity = kvc_block_bound(&method, kHeads, kTokens, kDim);
  CHECK(capacity > 0 && (block = (unsigned char*)malloc(capacity)) != NULL);
  CHECK(kvc_encode_block(&method, 0, KVC_KIND_KEYS, 0, 0, &block_in, block, capacity,
                         &block_size, &diag) == KVC_OK);
  kvc_block_info_init(&info);
  CHECK(kvc_get_block_info(block, block_size, &info, NULL, &diag) == KVC_OK);
  CHECK(info.head_count == kHeads && info.token_count == kTokens && info.head_dim == kDim);
  block_out = block_in;
  block_out.data = out_keys;
  CHECK(kvc_decode_block(block, block_size, &block_out, &diag) == KVC_OK);
  CHECK(RelativeError(keys, out_keys, kHeads * kTokens * kDim) < 0.02);
  /* A damaged block fails with its status and a diagnostic. */
  block[block_size / 2] ^= 0x40;
  CHECK(kvc_decode_block(block, block_size, &block_out, &diag) == KVC_ERR_CHECKSUM);
  CHECK(diag.message[0] != '\0');
  free(block);

  /* The whole cache, through a preset. */
  CHECK(kvc_config_from_preset("blockgtq-k3v3", &config, &diag) == KVC_OK);
  kvc_cache_desc_init(&desc);
  desc.num_layers = kLayers;
  desc.num_kv_heads = kHeads;
  desc.num_tokens = kTokens;
  desc.head_dim = kDim;
  desc.dtype = KVC_DTYPE_F32;
  desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  memset(&k, 0, sizeof(k));
  k.data = keys;
  k.dtype = KVC_DTYPE_F32;
  k.ndim = 4;
  k.shape[0] = kLayers;
  k.shape[1] = kHeads;
  k.shape[2] = kTokens;
  k.shape[3] = kDim;
  v = k;
  v.data = values;
  capacity = kvc_stream_bound(config, &desc, NULL);
  CHECK(capacity > 0 && (stream = (unsigned char*)malloc(capacity)) != NULL);
  CHECK(kvc_encode_stream(config, &desc, &k, &v, NULL, stream, capacity, &size, &diag) ==
        KVC_OK);
  kvc_config_destroy(config);
  ok = k;
  ok.data = out_keys;
  ov = v;
  ov.data = out_values;
  CHECK(kvc_decode_stream(stream, size, NULL, &ok, &ov, &diag) == KVC_OK);
  CHECK(RelativeError(keys, out_keys, kCount) < 0.1);
  CHECK(RelativeError(values, out_values, kCount) < 0.1);
  CHECK(kvc_decode_stream(stream, size - 1, NULL, &ok, &ov, &diag) == KVC_ERR_TRUNCATED);
  free(stream);

  printf("kvcodec %s (%s): block %zu bytes, stream %zu bytes for %d values\n",
         kvc_version_string(), kvc_simd_target(), block_size, size, 2 * kCount);
  return 0;
}
