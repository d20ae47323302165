/* The package works: its header compiles as C, its library links, and a
 * block survives a round trip. */
#include <kvcodec/kvcodec.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  enum { kHeads = 1, kTokens = 4, kDim = 64 };
  static float input[kHeads * kTokens * kDim], output[kHeads * kTokens * kDim];
  static unsigned char block[4096];
  kvc_tensor_config method;
  kvc_tensor in, out;
  kvc_diagnostics diag;
  size_t size = 0, i;

  for (i = 0; i < sizeof(input) / sizeof(input[0]); ++i) input[i] = (float)(i % 13) - 6.0f;
  kvc_tensor_config_init(&method);
  memset(&in, 0, sizeof(in));
  in.data = input;
  in.dtype = KVC_DTYPE_F32;
  in.ndim = 3;
  in.shape[0] = kHeads;
  in.shape[1] = kTokens;
  in.shape[2] = kDim;
  out = in;
  out.data = output;
  if (kvc_version() != KVC_VERSION_NUMBER ||
      kvc_block_bound(&method, kHeads, kTokens, kDim) > sizeof(block) ||
      kvc_encode_block(&method, 0, KVC_KIND_KEYS, 0, 0, &in, block, sizeof(block), &size,
                       &diag) != KVC_OK ||
      kvc_decode_block(block, size, &out, &diag) != KVC_OK) {
    fprintf(stderr, "kvcodec test_package failed: %s\n", diag.message);
    return 1;
  }
  printf("kvcodec %s: %zu values in %zu bytes\n", kvc_version_string(),
         sizeof(input) / sizeof(input[0]), size);
  return 0;
}
