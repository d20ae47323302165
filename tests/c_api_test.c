/* The public header compiles as strict C99 and the library links from C
 * (built with -std=c99 -pedantic -Wall -Wextra -Werror). Also a minimal
 * round trip, written the way a C engine would call kvcodec. */
#include <kvcodec/kvcodec.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                       \
    }                                                                 \
  } while (0)

int main(void) {
  enum { kLayers = 2, kHeads = 2, kTokens = 16, kDim = 64 };
  static float keys[kLayers * kHeads * kTokens * kDim];
  static float values[kLayers * kHeads * kTokens * kDim];
  static float decoded_keys[kLayers * kHeads * kTokens * kDim];
  static float decoded_values[kLayers * kHeads * kTokens * kDim];
  size_t i, size = 0, capacity;
  double error = 0, energy = 0;
  unsigned char* stream;
  kvc_config* config = NULL;
  kvc_cache_desc desc;
  kvc_tensor k, v, dk, dv;
  kvc_diagnostics diag;
  kvc_stream_info info;

  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); ++i) {
    keys[i] = (float)sin((double)i * 0.37);
    values[i] = (float)cos((double)i * 0.11);
  }
  CHECK(kvc_version() == KVC_VERSION_NUMBER);
  CHECK(strcmp(kvc_status_string(KVC_ERR_CHECKSUM), "checksum mismatch") == 0);
  CHECK(kvc_preset_count() > 0);
  CHECK(kvc_config_from_preset("tq-mse-b4", &config, &diag) == KVC_OK);

  kvc_cache_desc_init(&desc);
  desc.num_layers = kLayers;
  desc.num_kv_heads = kHeads;
  desc.num_tokens = kTokens;
  desc.head_dim = kDim;
  desc.dtype = KVC_DTYPE_F32;
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
  CHECK(capacity > 0);
  stream = (unsigned char*)malloc(capacity);
  CHECK(stream != NULL);
  CHECK(kvc_encode_stream(config, &desc, &k, &v, NULL, stream, capacity, &size, &diag) ==
        KVC_OK);
  kvc_config_destroy(config);

  kvc_stream_info_init(&info);
  CHECK(kvc_get_stream_info(stream, size, &info, &diag) == KVC_OK);
  CHECK(info.num_layers == kLayers && info.head_dim == kDim);

  dk = k;
  dk.data = decoded_keys;
  dv = v;
  dv.data = decoded_values;
  CHECK(kvc_decode_stream(stream, size, NULL, &dk, &dv, &diag) == KVC_OK);
  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); ++i) {
    error += (keys[i] - decoded_keys[i]) * (double)(keys[i] - decoded_keys[i]);
    energy += keys[i] * (double)keys[i];
  }
  CHECK(error / energy < 0.02);

  stream[size / 2] ^= 1;
  CHECK(kvc_decode_stream(stream, size, NULL, &dk, &dv, &diag) == KVC_ERR_CHECKSUM);
  CHECK(strlen(diag.message) > 0);
  free(stream);
  printf("c_api: ok (relative error %.4f)\n", error / energy);
  return 0;
}
