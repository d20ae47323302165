/* The C side of the cross-language conformance test (README.md here):
 *     conformance encode OUT
 *     conformance decode IN OUT */
#define _POSIX_C_SOURCE 200809L /* opendir */
#include <kvcodec/kvcodec.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { kLayers = 2, kHeads = 2, kTokens = 40, kDim = 64, kQueriesPerHead = 2 };
#define kCount (kLayers * kHeads * kTokens * kDim)
#define kBlockCount (kHeads * kTokens * kDim)
#define kQueryCount (kHeads * kQueriesPerHead * kDim)

static const char* const kDtypeNames[3] = {"f32", "f16", "bf16"};
static const size_t kDtypeBytes[3] = {4, 2, 2};

static int Fail(const char* what, kvc_status status, const kvc_diagnostics* diag) {
  fprintf(stderr, "conformance (C): %s: %s: %s\n", what, kvc_status_string(status),
          diag ? diag->message : "");
  return 1;
}

/* The input of README.md: SplitMix64 draws as k * 2^(e - 8). */
static void Generate(uint64_t seed, float* out, size_t count) {
  uint64_t state = seed;
  size_t i;
  for (i = 0; i < count; ++i) {
    uint64_t z;
    int k, e;
    state += 0x9E3779B97F4A7C15ull;
    z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    k = (int)(int8_t)(uint8_t)(z >> 56);
    e = (int)((z >> 53) & 7);
    out[i] = (float)k * (float)(1 << e) / 256.0f;
  }
}

static uint32_t FloatBits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, 4);
  return bits;
}

/* Exact for the generated values (zero or normal in f16). */
static uint16_t HalfBits(float f) {
  const uint32_t bits = FloatBits(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  if ((bits & 0x7FFFFFFFu) == 0) return (uint16_t)sign;
  return (uint16_t)(sign | ((((bits >> 23) & 0xFF) + 15 - 127) << 10) |
                    ((bits >> 13) & 0x3FF));
}

/* The values in dtype d: a buffer of count elements. */
static void* Convert(const float* values, size_t count, int d) {
  unsigned char* out = (unsigned char*)malloc(count * kDtypeBytes[d]);
  size_t i;
  if (!out) return NULL;
  for (i = 0; i < count; ++i) {
    if (d == KVC_DTYPE_F32) {
      memcpy(out + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = d == KVC_DTYPE_F16 ? HalfBits(values[i])
                                             : (uint16_t)(FloatBits(values[i]) >> 16);
      memcpy(out + 2 * i, &h, 2);
    }
  }
  return out;
}

static kvc_tensor Tensor(void* data, int dtype, uint32_t ndim, const uint64_t* shape) {
  kvc_tensor t;
  memset(&t, 0, sizeof(t));
  t.data = data;
  t.dtype = (uint32_t)dtype;
  t.ndim = ndim;
  memcpy(t.shape, shape, ndim * sizeof(uint64_t));
  return t;
}

static int WriteFile(const char* path, const void* a, size_t a_size, const void* b,
                     size_t b_size) {
  FILE* f = fopen(path, "wb");
  int ok = f != NULL && fwrite(a, 1, a_size, f) == a_size &&
           (b_size == 0 || fwrite(b, 1, b_size, f) == b_size);
  if (f && fclose(f) != 0) ok = 0;
  if (!ok) fprintf(stderr, "conformance (C): cannot write %s\n", path);
  return ok ? 0 : 1;
}

static unsigned char* ReadFile(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* data = NULL;
  long length;
  if (f && fseek(f, 0, SEEK_END) == 0 && (length = ftell(f)) > 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (data = (unsigned char*)malloc((size_t)length)) &&
      fread(data, 1, (size_t)length, f) == (size_t)length) {
    *size = (size_t)length;
  } else {
    free(data);
    data = NULL;
    fprintf(stderr, "conformance (C): cannot read %s\n", path);
  }
  if (f) fclose(f);
  return data;
}

/* Writes OUT/PRESET.DTYPE.kvc (the cache) and .kvcb (layer 1's keys). */
static int EncodeOne(const char* preset, int d, const float* keys, const float* values,
                     const char* out) {
  const uint64_t cache_shape[4] = {kLayers, kHeads, kTokens, kDim};
  const uint64_t block_shape[3] = {kHeads, kTokens, kDim};
  kvc_config* config = NULL;
  kvc_cache_desc desc;
  kvc_encode_options options;
  kvc_tensor_config method;
  kvc_diagnostics diag;
  kvc_tensor k, v, block_in;
  unsigned char* k_data = (unsigned char*)Convert(keys, kCount, d);
  unsigned char* v_data = (unsigned char*)Convert(values, kCount, d);
  unsigned char* stream = NULL;
  unsigned char* block = NULL;
  size_t capacity, size = 0;
  char path[4096];
  kvc_status status;
  int failed = 1;

  if (!k_data || !v_data) {
    Fail(preset, KVC_ERR_OUT_OF_MEMORY, NULL);
    goto done;
  }
  if ((status = kvc_config_from_preset(preset, &config, &diag)) != KVC_OK) {
    Fail(preset, status, &diag);
    goto done;
  }
  kvc_cache_desc_init(&desc);
  desc.num_layers = kLayers;
  desc.num_kv_heads = kHeads;
  desc.num_tokens = kTokens;
  desc.head_dim = kDim;
  desc.dtype = (uint32_t)d;
  desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  desc.rope_base = 10000.0f;
  kvc_encode_options_init(&options);
  options.threads = 2;
  options.block_tokens = 16;
  k = Tensor(k_data, d, 4, cache_shape);
  v = Tensor(v_data, d, 4, cache_shape);
  capacity = kvc_stream_bound(config, &desc, &options);
  if (capacity == 0 || !(stream = (unsigned char*)malloc(capacity))) {
    Fail(preset, KVC_ERR_INTERNAL, NULL);
    goto done;
  }
  status = kvc_encode_stream(config, &desc, &k, &v, &options, stream, capacity, &size, &diag);
  if (status != KVC_OK) {
    Fail(preset, status, &diag);
    goto done;
  }
  snprintf(path, sizeof(path), "%s/%s.%s.kvc", out, preset, kDtypeNames[d]);
  if (WriteFile(path, stream, size, NULL, 0)) goto done;

  kvc_tensor_config_init(&method);
  if ((status = kvc_config_layer(config, 1, kLayers, KVC_KIND_KEYS, &method)) != KVC_OK) {
    Fail(preset, status, NULL);
    goto done;
  }
  /* Layer 1's keys: the second half of the keys. */
  block_in = Tensor(k_data + kBlockCount * kDtypeBytes[d], d, 3, block_shape);
  capacity = kvc_block_bound(&method, kHeads, kTokens, kDim);
  if (capacity == 0 || !(block = (unsigned char*)malloc(capacity))) {
    Fail(preset, KVC_ERR_INTERNAL, NULL);
    goto done;
  }
  status = kvc_encode_block(&method, 1, KVC_KIND_KEYS, 0, 0, &block_in, block, capacity, &size,
                            &diag);
  if (status != KVC_OK) {
    Fail(preset, status, &diag);
    goto done;
  }
  snprintf(path, sizeof(path), "%s/%s.%s.kvcb", out, preset, kDtypeNames[d]);
  failed = WriteFile(path, block, size, NULL, 0);
done:
  free(block);
  free(stream);
  free(k_data);
  free(v_data);
  kvc_config_destroy(config);
  return failed;
}

static int Encode(const char* out) {
  static float keys[kCount], values[kCount];
  uint32_t p;
  int d;
  Generate(1, keys, kCount);
  Generate(2, values, kCount);
  for (p = 0; p < kvc_preset_count(); ++p) {
    for (d = 0; d < 3; ++d) {
      if (EncodeOne(kvc_preset_name(p), d, keys, values, out)) return 1;
    }
  }
  return 0;
}

static int EndsWith(const char* s, const char* suffix) {
  const size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int DecodeStream(const unsigned char* data, size_t size, const char* out_base) {
  static unsigned char keys[kCount * 4], values[kCount * 4];
  const uint64_t shape[4] = {kLayers, kHeads, kTokens, kDim};
  kvc_diagnostics diag;
  char path[4096];
  int d;
  for (d = 0; d < 3; ++d) {
    const kvc_tensor k = Tensor(keys, d, 4, shape), v = Tensor(values, d, 4, shape);
    const kvc_status status = kvc_decode_stream(data, size, NULL, &k, &v, &diag);
    if (status != KVC_OK) return Fail(out_base, status, &diag);
    snprintf(path, sizeof(path), "%s.%s.raw", out_base, kDtypeNames[d]);
    if (WriteFile(path, keys, kCount * kDtypeBytes[d], values, kCount * kDtypeBytes[d])) {
      return 1;
    }
  }
  return 0;
}

static int DecodeBlock(const unsigned char* data, size_t size, const char* out_base) {
  static unsigned char decoded[kBlockCount * 4];
  static float queries[kQueryCount], scores[kHeads * kQueriesPerHead * kTokens];
  const uint64_t shape[3] = {kHeads, kTokens, kDim};
  kvc_diagnostics diag;
  kvc_status status;
  char path[4096];
  int d;
  for (d = 0; d < 3; ++d) {
    const kvc_tensor t = Tensor(decoded, d, 3, shape);
    if ((status = kvc_decode_block(data, size, &t, &diag)) != KVC_OK) {
      return Fail(out_base, status, &diag);
    }
    snprintf(path, sizeof(path), "%s.%s.raw", out_base, kDtypeNames[d]);
    if (WriteFile(path, decoded, kBlockCount * kDtypeBytes[d], NULL, 0)) return 1;
  }
  Generate(3, queries, kQueryCount);
  status = kvc_block_scores(data, size, queries, kQueriesPerHead, scores,
                            sizeof(scores) / sizeof(scores[0]), &diag);
  if (status != KVC_OK) return Fail(out_base, status, &diag);
  snprintf(path, sizeof(path), "%s.scores.raw", out_base);
  return WriteFile(path, scores, sizeof(scores), NULL, 0);
}

static int Decode(const char* in, const char* out) {
  DIR* dir = opendir(in);
  struct dirent* entry;
  int failed = 0;
  if (!dir) {
    fprintf(stderr, "conformance (C): cannot open %s\n", in);
    return 1;
  }
  while (!failed && (entry = readdir(dir)) != NULL) {
    const int stream = EndsWith(entry->d_name, ".kvc");
    char path[4096], base[4096];
    unsigned char* data;
    size_t size = 0;
    if (!stream && !EndsWith(entry->d_name, ".kvcb")) continue;
    snprintf(path, sizeof(path), "%s/%s", in, entry->d_name);
    snprintf(base, sizeof(base), "%s/%s", out, entry->d_name);
    if (!(data = ReadFile(path, &size))) {
      failed = 1;
      break;
    }
    failed = stream ? DecodeStream(data, size, base) : DecodeBlock(data, size, base);
    free(data);
  }
  closedir(dir);
  return failed;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "encode") == 0) return Encode(argv[2]);
  if (argc == 4 && strcmp(argv[1], "decode") == 0) return Decode(argv[2], argv[3]);
  fprintf(stderr, "usage: conformance encode OUT | conformance decode IN OUT\n");
  return 2;
}
