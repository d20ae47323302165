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

  /* One decode-attention step on layer 0, encoded as standalone K and V
   * blocks, two query heads per KV head; checked against the decoded cache. */
  {
    enum { kGroup = 2, kQueries = kHeads * kGroup };
    static unsigned char kblock[1 << 16], vblock[1 << 16];
    static float kdec[kHeads * kTokens * kDim], vdec[kHeads * kTokens * kDim];
    float queries[kQueries * kDim], out[kQueries * kDim], lse[kQueries];
    size_t ksize = 0, vsize = 0, j, t, h;
    kvc_tensor_config tc;
    kvc_tensor layer0 = k;
    kvc_buffer kb, vb;
    kvc_attention_options options;
    double worst = 0;
    kvc_tensor_config_init(&tc); /* tq-mse-b4, as the stream above */
    layer0.ndim = 3;
    layer0.shape[0] = kHeads;
    layer0.shape[1] = kTokens;
    layer0.shape[2] = kDim;
    CHECK(kvc_encode_block(&tc, 0, KVC_KIND_KEYS, 0, 0, &layer0, kblock, sizeof(kblock),
                           &ksize, &diag) == KVC_OK);
    layer0.data = values;
    CHECK(kvc_encode_block(&tc, 0, KVC_KIND_VALUES, 0, 0, &layer0, vblock, sizeof(vblock),
                           &vsize, &diag) == KVC_OK);
    layer0.data = kdec;
    CHECK(kvc_decode_block(kblock, ksize, &layer0, &diag) == KVC_OK);
    layer0.data = vdec;
    CHECK(kvc_decode_block(vblock, vsize, &layer0, &diag) == KVC_OK);
    for (i = 0; i < kQueries * kDim; ++i) queries[i] = (float)sin((double)i * 0.05);
    kb.data = kblock;
    kb.size = ksize;
    vb.data = vblock;
    vb.size = vsize;
    kvc_attention_options_init(&options);
    options.threads = 1;
    CHECK(kvc_decode_attention(&kb, 1, &vb, 1, queries, kQueries, &options, out,
                               kQueries * kDim, lse, &diag) == KVC_OK);
    for (h = 0; h < kQueries; ++h) {
      const float* kv = kdec + (h / kGroup) * kTokens * kDim;
      const float* vv = vdec + (h / kGroup) * kTokens * kDim;
      double logits[kTokens], top = -1e300, total = 0;
      for (t = 0; t < kTokens; ++t) {
        double s = 0;
        for (j = 0; j < kDim; ++j) s += (double)queries[h * kDim + j] * kv[t * kDim + j];
        logits[t] = s / sqrt((double)kDim);
        if (logits[t] > top) top = logits[t];
      }
      for (t = 0; t < kTokens; ++t) total += exp(logits[t] - top);
      for (j = 0; j < kDim; ++j) {
        double o = 0;
        for (t = 0; t < kTokens; ++t) o += exp(logits[t] - top) / total * vv[t * kDim + j];
        if (fabs(o - out[h * kDim + j]) > worst) worst = fabs(o - out[h * kDim + j]);
      }
      CHECK(fabs(top + log(total) - lse[h]) < 1e-4);
    }
    CHECK(worst < 1e-5);
    CHECK(kvc_decode_attention(&kb, 1, &vb, 1, queries, 3, &options, out, kQueries * kDim,
                               NULL, &diag) == KVC_ERR_SHAPE_MISMATCH);
    CHECK(strlen(diag.message) > 0);
  }

  stream[size / 2] ^= 1;
  CHECK(kvc_decode_stream(stream, size, NULL, &dk, &dv, &diag) == KVC_ERR_CHECKSUM);
  CHECK(strlen(diag.message) > 0);
  free(stream);
  printf("c_api: ok (relative error %.4f)\n", error / energy);
  return 0;
}
