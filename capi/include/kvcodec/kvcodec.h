/* kvcodec: a codec for the key/value caches of transformer inference.
 *
 * This is kvcodec's only public header. It is C99 and stable in the manner of
 * zstd and libjxl:
 *  - status values, dtype values, method values and struct layouts are pinned
 *    forever; new ones are only appended;
 *  - every struct the caller allocates starts with `struct_size`, which the
 *    caller sets with the matching *_init function, whether the library reads
 *    the struct (options, descriptors) or fills it (info, configs, runs: the
 *    library writes only the first struct_size bytes), so a program built
 *    against an older header keeps working with a newer library;
 *  - the caller owns every buffer; the library never keeps a pointer it was
 *    given after the call returns (except the callbacks and their opaque
 *    pointers given to kvc_writer, kvc_cache and kvc_reader, used until that
 *    object is destroyed), and never allocates memory the caller must
 *    free (except the objects it creates: kvc_config, kvc_writer, kvc_cache,
 *    kvc_reader, each freed with its own destroy or close function);
 *  - no C++ exception crosses this boundary; no function aborts on bad input.
 *
 * Thread safety: every function is thread-safe. Functions that take a
 * `const kvc_config*` only read it, so one config can serve many threads; a
 * config must not be modified (kvc_config_set_layer) while another thread reads
 * it. The only process-wide state is Highway's choice of SIMD target.
 *
 * Shapes. A block is one layer x (keys or values) x a range of KV heads x a
 * range of tokens; its tensor is [heads, tokens, head_dim]. A stream is a whole
 * cache: keys and values are [layers, heads, tokens, head_dim] each.
 *
 * The bitstream is specified in codec/FORMAT.md.
 */
#ifndef KVCODEC_KVCODEC_H_
#define KVCODEC_KVCODEC_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(KVC_SHARED_BUILD)
#define KVC_API __declspec(dllexport)
#elif defined(_WIN32) && defined(KVC_SHARED)
#define KVC_API __declspec(dllimport)
#elif defined(__GNUC__)
#define KVC_API __attribute__((visibility("default")))
#else
#define KVC_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */

#define KVC_VERSION_MAJOR 0 /* incompatible API changes (0.x: may change on minor) */
#define KVC_VERSION_MINOR 2 /* added functionality */
#define KVC_VERSION_PATCH 0 /* fixes */
#define KVC_VERSION_NUMBER \
  (KVC_VERSION_MAJOR * 1000000 + KVC_VERSION_MINOR * 1000 + KVC_VERSION_PATCH)

/* Newest bitstream version this library reads and writes (FORMAT.md). It
 * reads every 1.x stream whose required features it knows; writers mark a
 * stream with the lowest minor version whose features it uses (1.0 for
 * kvc_encode_stream and standalone blocks). */
#define KVC_FORMAT_MAJOR 1
#define KVC_FORMAT_MINOR 2

/* First four bytes of a stream and of a standalone block, as a little-endian
 * uint32 (bytes B5 4B 56 43 and B5 4B 56 62: "\xB5KVC" and "\xB5KVb"). */
#define KVC_STREAM_MAGIC 0x43564BB5u
#define KVC_BLOCK_MAGIC 0x62564BB5u

/* Runtime library version, KVC_VERSION_NUMBER's encoding. */
KVC_API uint32_t kvc_version(void);
/* "MAJOR.MINOR.PATCH"; static storage. */
KVC_API const char* kvc_version_string(void);
/* Name of the SIMD target in use ("AVX2", "SSE4", "SCALAR", ...); static. */
KVC_API const char* kvc_simd_target(void);

/* ------------------------------------------------------------------------ */
/* Status                                                                    */

typedef enum kvc_status {
  KVC_OK = 0,
  KVC_ERR_INVALID_ARGUMENT = 1,    /* NULL pointer, bad shape, bad config */
  KVC_ERR_DST_TOO_SMALL = 2,       /* size dst with kvc_*_bound */
  KVC_ERR_NOT_KVCODEC = 3,         /* wrong magic number */
  KVC_ERR_UNSUPPORTED_VERSION = 4, /* bitstream major version unknown */
  KVC_ERR_UNSUPPORTED_FEATURE = 5, /* required feature, section or method unknown */
  KVC_ERR_TRUNCATED = 6,           /* input ends before the structure does */
  KVC_ERR_CHECKSUM = 7,            /* a header or section checksum mismatches */
  KVC_ERR_CORRUPT = 8,             /* checksums pass but the content is invalid */
  KVC_ERR_SHAPE_MISMATCH = 9,      /* output tensor does not match the data */
  KVC_ERR_INVALID_VALUE = 10,      /* non-finite input, or a value the format
                                      cannot represent (norm beyond f16 range) */
  KVC_ERR_OUT_OF_MEMORY = 11,
  KVC_ERR_INTERNAL = 12,           /* a bug in kvcodec: please report it */
  KVC_ERR_MODEL_MISMATCH = 13,     /* the cache belongs to another model */
  KVC_ERR_IO = 14                  /* a read, write or sync callback failed */
} kvc_status;

/* Short description of a status; static storage, never NULL. */
KVC_API const char* kvc_status_string(kvc_status status);

/* Optional detail for a failed call: pass one as the last argument of any
 * function that takes it (or NULL). On failure `message` holds one line
 * naming the problem (for example which layer, head and token); on success
 * it is set to "". */
typedef struct kvc_diagnostics {
  char message[256];
} kvc_diagnostics;

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */

typedef enum kvc_dtype {
  KVC_DTYPE_F32 = 0,
  KVC_DTYPE_F16 = 1,
  KVC_DTYPE_BF16 = 2
} kvc_dtype;

typedef enum kvc_kind { KVC_KIND_KEYS = 0, KVC_KIND_VALUES = 1 } kvc_kind;

typedef enum kvc_rope_layout {
  KVC_ROPE_UNKNOWN = 0,
  KVC_ROPE_SPLIT_HALF = 1, /* dimension i pairs with i + head_dim/2 (HF Llama) */
  KVC_ROPE_INTERLEAVED = 2 /* dimension 2i pairs with 2i + 1 */
} kvc_rope_layout;

/* A strided view of caller memory. Layout fixed forever (no struct_size).
 * shape/strides are outermost first; strides count elements, not bytes; a
 * tensor whose strides are all 0 is contiguous row-major. Inputs are only
 * read through `data`; outputs are written. */
typedef struct kvc_tensor {
  void* data;
  uint32_t dtype; /* kvc_dtype */
  uint32_t ndim;  /* 3 for blocks [heads, tokens, head_dim], 4 for streams */
  uint64_t shape[4];
  int64_t strides[4];
} kvc_tensor;

/* ------------------------------------------------------------------------ */
/* Tensor configs: one method and its parameters, for K or V of one layer    */

typedef enum kvc_method {
  KVC_METHOD_RAW = 1,        /* values stored as they are, in scalar_format */
  KVC_METHOD_TQ_MSE = 2,     /* TurboQuant-MSE: norm + rotated Lloyd-Max indices */
  KVC_METHOD_TQ_PROD = 3,    /* TurboQuant-prod: (bits-1)-bit MSE + QJL signs */
  KVC_METHOD_TQ_OUTLIER = 4, /* TurboQuant-MSE with outlier channels at bits+1 */
  KVC_METHOD_POLARQUANT = 5, /* recursive polar angles over groups of 16 */
  KVC_METHOD_TURBOANGLE = 6, /* pair angles on a uniform n-bin codebook + radii */
  KVC_METHOD_BLOCKGTQ = 7    /* RoPE-aware per-block bit allocation (keys) */
} kvc_method;

/* TurboAngle pair radii, relative to the vector norm. */
typedef enum kvc_radius_format {
  KVC_RADIUS_EXACT = 0,  /* f32 radii: for measuring angle error alone */
  KVC_RADIUS_LINEAR8 = 1, /* 8-bit linear on [0, 4] x rms radius */
  KVC_RADIUS_LOG4 = 2     /* 4-bit log-spaced levels */
} kvc_radius_format;

typedef enum kvc_rotation {
  KVC_ROTATION_NONE = 0,
  KVC_ROTATION_HADAMARD = 1 /* random signs + orthonormal Walsh-Hadamard */
} kvc_rotation;

/* Decoded vectors are rescaled to the stored norm exactly (methods.md §1.8). */
#define KVC_CONFIG_NORM_CORRECTION 0x1u
/* Each head of a block stores the mean of its vectors over the block's
 * tokens; the method codes the vectors minus that mean (format 1.2,
 * FORMAT.md "Centering"). Keys gain most: a per-head offset holds much of
 * their energy, and softmax ignores the q . mean it adds to every score. Not
 * for RAW. */
#define KVC_CONFIG_CENTERED 0x2u

typedef struct kvc_tensor_config {
  uint32_t struct_size;   /* sizeof(kvc_tensor_config), set by _init */
  uint32_t method;        /* kvc_method */
  uint32_t bits;          /* bits per coordinate (TQ_PROD: incl. the QJL bit;
                             TQ_OUTLIER: of the ordinary channels; BLOCKGTQ:
                             the average over the head) */
  uint32_t scalar_format; /* kvc_dtype of stored norms (RAW: of the values) */
  uint32_t flags;         /* KVC_CONFIG_* */
  uint32_t rotation;      /* kvc_rotation */
  uint64_t seed;          /* seeds every random choice (FORMAT.md, "PRNG") */
  /* Method parameters; 0 where a method does not use them. */
  uint32_t outlier_sixteenths; /* TQ_OUTLIER: channels at bits+1, in 16ths of
                                  head_dim (8: half, giving bits + 0.5) */
  uint32_t angle_bins;         /* TURBOANGLE: n, 2..4096 */
  uint32_t radius_format;      /* TURBOANGLE: kvc_radius_format */
  uint32_t level_bits;         /* POLARQUANT: bits of levels 1-4, one hex digit
                                  each, level 1 first: 0x4222 */
  uint32_t min_bits;           /* BLOCKGTQ: fewest bits of a RoPE block, 0 or 1 */
  uint32_t rope_pairing;       /* BLOCKGTQ: kvc_rope_layout of the RoPE pairs;
                                  0: the cache's (split-half if unknown) */
} kvc_tensor_config;

/* Defaults: tq-mse-b4, f16 norms, Hadamard rotation, the default seed. */
KVC_API void kvc_tensor_config_init(kvc_tensor_config* config);

/* Parses a method string such as "tq-mse-b4", "tq-prod-b3:nc,norm=f32",
 * "raw-bf16" (FORMAT.md, "Method strings"). */
KVC_API kvc_status kvc_tensor_config_parse(const char* text,
                                           kvc_tensor_config* config,
                                           kvc_diagnostics* diag);
/* Writes the canonical method string, NUL-terminated. *length (optional)
 * receives its length without the NUL. */
KVC_API kvc_status kvc_tensor_config_format(const kvc_tensor_config* config,
                                            char* buffer, size_t capacity,
                                            size_t* length);

/* ------------------------------------------------------------------------ */
/* Cache configs: a rule table giving each layer its K and V tensor config   */

typedef struct kvc_config kvc_config; /* opaque */

/* Built-in presets. Index 0 .. kvc_preset_count()-1; static strings. */
KVC_API uint32_t kvc_preset_count(void);
KVC_API const char* kvc_preset_name(uint32_t index);
KVC_API const char* kvc_preset_description(uint32_t index);

/* Creates a config from a preset name. *out receives an object the caller
 * frees with kvc_config_destroy. */
KVC_API kvc_status kvc_config_from_preset(const char* name, kvc_config** out,
                                          kvc_diagnostics* diag);
/* Creates a config from config text (FORMAT.md, "Config text"). */
KVC_API kvc_status kvc_config_parse(const char* text, size_t length,
                                    kvc_config** out, kvc_diagnostics* diag);
/* Writes the config as config text, NUL-terminated; *length (optional) gets
 * the length without the NUL, also when the capacity is too small. */
KVC_API kvc_status kvc_config_format(const kvc_config* config, char* buffer,
                                     size_t capacity, size_t* length);
/* The zstd level (1..19) a cache written with this config stores its blocks
 * with unless kvc_writer_options.zstd_level chooses (config text "zstd L",
 * e.g. the kv-3.25z preset); 0: none. Blocks (kvc_encode_block) and whole
 * streams (kvc_encode_stream) are fixed-rate whatever it says. */
KVC_API int32_t kvc_config_zstd_level(const kvc_config* config);
/* Overrides layer `layer` (K or V) with `tensor`. */
KVC_API kvc_status kvc_config_set_layer(kvc_config* config, uint32_t layer,
                                        kvc_kind kind,
                                        const kvc_tensor_config* tensor);
/* The tensor config of a layer in a cache of `num_layers` layers (rules such
 * as "first 2" and "last 2" depend on it). */
KVC_API kvc_status kvc_config_layer(const kvc_config* config, uint32_t layer,
                                    uint32_t num_layers, kvc_kind kind,
                                    kvc_tensor_config* out);
/* Accepts NULL. */
KVC_API void kvc_config_destroy(kvc_config* config);

/* ------------------------------------------------------------------------ */
/* Blocks                                                                    */

/* Most bytes a standalone block of this shape can take (methods with
 * per-head side information use less), or 0 if the arguments are invalid.
 * Usable to size `dst` for kvc_encode_block. */
KVC_API size_t kvc_block_bound(const kvc_tensor_config* config,
                               uint32_t head_count, uint32_t token_count,
                               uint32_t head_dim);

/* Encodes input [heads, tokens, head_dim] (f32, f16 or bf16) as a standalone,
 * self-describing block that records its layer, kind and first head and
 * token. Deterministic: the same input and config give the same bytes on
 * every platform and SIMD target. */
KVC_API kvc_status kvc_encode_block(const kvc_tensor_config* config,
                                    uint32_t layer, kvc_kind kind,
                                    uint32_t head_start, uint32_t token_start,
                                    const kvc_tensor* input, void* dst,
                                    size_t dst_capacity, size_t* dst_size,
                                    kvc_diagnostics* diag);

typedef struct kvc_block_info {
  uint32_t struct_size; /* sizeof(kvc_block_info) */
  uint32_t layer;
  uint32_t kind; /* kvc_kind */
  uint32_t head_dim;
  uint32_t head_start;
  uint32_t head_count;
  uint32_t token_start;
  uint32_t token_count;
} kvc_block_info;

KVC_API void kvc_block_info_init(kvc_block_info* info);

/* Reads a block's header (and, if `config` is not NULL, its tensor config)
 * after checking its checksum. */
KVC_API kvc_status kvc_get_block_info(const void* src, size_t src_size,
                                      kvc_block_info* info,
                                      kvc_tensor_config* config,
                                      kvc_diagnostics* diag);

/* Decodes a block into output [head_count, token_count, head_dim] of any
 * dtype. Nothing is reported as success unless every value was decoded. */
KVC_API kvc_status kvc_decode_block(const void* src, size_t src_size,
                                    const kvc_tensor* output,
                                    kvc_diagnostics* diag);

/* Inner products of queries with the block's decoded vectors. TQ_MSE and
 * TQ_PROD compute them in the codec's rotated domain without materialising
 * the vectors (for TQ_PROD this is TurboQuant's unbiased estimator); other
 * methods decode a few vectors at a time. queries: f32, contiguous
 * [head_count][queries_per_head][head_dim] (GQA: several query heads per KV
 * head). scores: f32 [head_count][queries_per_head][token_count]. */
KVC_API kvc_status kvc_block_scores(const void* src, size_t src_size,
                                    const float* queries,
                                    uint32_t queries_per_head, float* scores,
                                    size_t scores_capacity,
                                    kvc_diagnostics* diag);

/* ------------------------------------------------------------------------ */
/* Attention on encoded blocks, without decoding them                        */

/* Weighted sums of the block's decoded vectors:
 * out[h][q][:] = sum over t of weights[h][q][t] * v[h][t][:]. weights: f32
 * [head_count][queries_per_head][token_count] (the layout of
 * kvc_block_scores' scores); out: f32 [head_count][queries_per_head][head_dim],
 * overwritten. Rotation-based methods accumulate in their rotated domain and
 * rotate back once per output row, not once per token. */
KVC_API kvc_status kvc_block_attend(const void* src, size_t src_size,
                                    const float* weights,
                                    uint32_t queries_per_head, float* out,
                                    size_t out_capacity, kvc_diagnostics* diag);

/* A caller's thread pool, for calls short enough that starting threads of
 * their own would cost more than the work (a decode step: starting 16
 * threads took 0.45 ms on a 16-core Xeon). runner(runner_opaque, job_opaque,
 * job, count) must call job(job_opaque, i) exactly once for every i in
 * [0, count), on any of its threads (the calling one included) in any order,
 * and return once every call has returned. Jobs never throw, never call the
 * runner again, and may run concurrently. As libjxl's JxlParallelRunner or
 * XNNPACK's pthreadpool; kvcodec keeps no threads of its own. */
typedef void (*kvc_job_fn)(void* job_opaque, size_t index);
typedef void (*kvc_parallel_runner)(void* runner_opaque, void* job_opaque,
                                    kvc_job_fn job, size_t count);

/* Options of kvc_block_scores2 and kvc_block_attend2 (API 0.2). */
typedef struct kvc_block_options {
  uint32_t struct_size; /* sizeof(kvc_block_options) */
  /* The block's heads shared out: 1 (the default) runs them on the calling
   * thread, as kvc_block_scores does; 0: one thread per core. Ignored when
   * runner is set. */
  uint32_t threads;
  uint32_t flags; /* KVC_ATTENTION_TRUSTED_BLOCKS: the checksum is skipped */
  kvc_parallel_runner runner;
  void* runner_opaque;
} kvc_block_options;

KVC_API void kvc_block_options_init(kvc_block_options* options);

/* kvc_block_scores and kvc_block_attend with options (NULL: the defaults,
 * which are what those two do). Results do not depend on the threads. */
KVC_API kvc_status kvc_block_scores2(const void* src, size_t src_size,
                                     const float* queries,
                                     uint32_t queries_per_head,
                                     const kvc_block_options* options,
                                     float* scores, size_t scores_capacity,
                                     kvc_diagnostics* diag);
KVC_API kvc_status kvc_block_attend2(const void* src, size_t src_size,
                                     const float* weights,
                                     uint32_t queries_per_head,
                                     const kvc_block_options* options,
                                     float* out, size_t out_capacity,
                                     kvc_diagnostics* diag);

/* A caller's buffer. Layout fixed forever (no struct_size). */
typedef struct kvc_buffer {
  const void* data;
  size_t size;
} kvc_buffer;

typedef struct kvc_attention_options {
  uint32_t struct_size; /* sizeof(kvc_attention_options) */
  uint32_t threads;     /* 0: one per core; ignored when runner is set */
  float scale;          /* logits are scale * q.k; 0: 1/sqrt(head_dim) */
  /* Tokens attended, as the blocks number them: [token_begin, token_end).
   * token_end 0: through the last token the blocks hold (a decode step's
   * causal range is every cached token); token_begin > the first token gives
   * a sliding window. The range is clipped to the tokens the blocks hold; an
   * empty result is an error. */
  uint32_t token_begin;
  uint32_t token_end;
  uint32_t flags; /* KVC_ATTENTION_* */
  /* Since API 0.2: if not NULL, the call's jobs run on the caller's pool
   * (kvc_parallel_runner) instead of threads started for the call. */
  kvc_parallel_runner runner;
  void* runner_opaque;
} kvc_attention_options;

/* Skip the blocks' checksums: for blocks checked once when they were loaded
 * (kvc_get_block_info verifies a block's checksum), so that a decode step
 * reads each block once. Their structure and every record are still
 * checked; damage after loading then gives a wrong result, not an error. */
#define KVC_ATTENTION_TRUSTED_BLOCKS 0x1u

KVC_API void kvc_attention_options_init(kvc_attention_options* options);

/* One decode step of attention for one layer, on its encoded K and V
 * blocks (standalone blocks of one layer, e.g. one per block of tokens of a
 * cache that grew block by block, in any order): for every query head j,
 * out[j] = softmax(scale * q_j . k_t) . v_t over the attended tokens t.
 * The key blocks must cover KV heads [h0, h0 + H) and, for each, one
 * contiguous token range exactly once; the value blocks the same heads and
 * tokens. queries: f32 [num_query_heads][head_dim], num_query_heads a
 * multiple of H; query head j reads KV head h0 + j / (num_query_heads / H)
 * (grouped-query attention). out: f32 [num_query_heads][head_dim]. lse
 * (optional, NULL): f32 [num_query_heads], the natural log of each head's
 * softmax denominator sum over t of exp(scale * q_j . k_t), for merging with
 * attention over other tokens (e.g. a recent uncompressed tail). The softmax
 * subtracts each head's maximum logit first. options may be NULL. */
KVC_API kvc_status kvc_decode_attention(const kvc_buffer* key_blocks,
                                        size_t key_block_count,
                                        const kvc_buffer* value_blocks,
                                        size_t value_block_count,
                                        const float* queries,
                                        uint32_t num_query_heads,
                                        const kvc_attention_options* options,
                                        float* out, size_t out_capacity,
                                        float* lse, kvc_diagnostics* diag);

/* ------------------------------------------------------------------------ */
/* Streams: a whole cache                                                    */

typedef struct kvc_cache_desc {
  uint32_t struct_size; /* sizeof(kvc_cache_desc) */
  uint32_t num_layers;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t num_tokens;
  uint32_t dtype;           /* kvc_dtype of the source cache, recorded */
  uint32_t rope_layout;     /* kvc_rope_layout */
  uint32_t position_offset; /* RoPE position of token 0 */
  float rope_base;          /* RoPE theta; 0 if unknown */
} kvc_cache_desc;

KVC_API void kvc_cache_desc_init(kvc_cache_desc* desc);

typedef struct kvc_encode_options {
  uint32_t struct_size;  /* sizeof(kvc_encode_options) */
  uint32_t threads;      /* 0: one per core */
  uint32_t block_tokens; /* tokens per block; 0: all tokens in one block */
  /* Optional sample of post-RoPE queries, [num_layers, query_heads, tokens,
   * head_dim] with query_heads a multiple of num_kv_heads (GQA), or NULL.
   * Block-GTQ adds their energy to the keys' when it allocates bits. */
  const kvc_tensor* queries;
} kvc_encode_options;

KVC_API void kvc_encode_options_init(kvc_encode_options* options);

typedef struct kvc_decode_options {
  uint32_t struct_size; /* sizeof(kvc_decode_options) */
  uint32_t threads;     /* 0: one per core */
} kvc_decode_options;

KVC_API void kvc_decode_options_init(kvc_decode_options* options);

/* Most bytes kvc_encode_stream can write for this cache (exact for methods
 * without per-head side information), or 0 if the arguments are invalid.
 * options may be NULL (defaults). */
KVC_API size_t kvc_stream_bound(const kvc_config* config,
                                const kvc_cache_desc* desc,
                                const kvc_encode_options* options);

/* Encodes a whole cache. keys and values: [num_layers, num_kv_heads,
 * num_tokens, head_dim] views of any dtype. options may be NULL. */
KVC_API kvc_status kvc_encode_stream(const kvc_config* config,
                                     const kvc_cache_desc* desc,
                                     const kvc_tensor* keys,
                                     const kvc_tensor* values,
                                     const kvc_encode_options* options,
                                     void* dst, size_t dst_capacity,
                                     size_t* dst_size, kvc_diagnostics* diag);

typedef struct kvc_stream_info {
  uint32_t struct_size; /* sizeof(kvc_stream_info) */
  uint32_t format_major;
  uint32_t format_minor;
  uint32_t num_layers;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t num_tokens;
  uint32_t dtype;
  uint32_t rope_layout;
  uint32_t position_offset;
  float rope_base;
} kvc_stream_info;

KVC_API void kvc_stream_info_init(kvc_stream_info* info);

/* Reads and checks the stream header without decoding anything else. */
KVC_API kvc_status kvc_get_stream_info(const void* src, size_t src_size,
                                       kvc_stream_info* info,
                                       kvc_diagnostics* diag);

/* The tensor configs of one layer and the bytes its K and V blocks take
 * (any output may be NULL). Walks and checks the stream's structure. */
KVC_API kvc_status kvc_get_stream_layer(const void* src, size_t src_size,
                                        uint32_t layer,
                                        kvc_tensor_config* keys_config,
                                        kvc_tensor_config* values_config,
                                        uint64_t* keys_bytes,
                                        uint64_t* values_bytes,
                                        kvc_diagnostics* diag);

/* Decodes a whole stream. keys and values: [num_layers, num_kv_heads,
 * num_tokens, head_dim] outputs of any dtype; either may be NULL to skip it
 * (its blocks' checksums and structure are still checked, their values are
 * not decoded). KVC_OK means every checksum matched, every block was present
 * once and every requested value was decoded; after any other status the
 * outputs' contents are unspecified (blocks are decoded in parallel, some
 * checked as they are decoded). options may be NULL. */
KVC_API kvc_status kvc_decode_stream(const void* src, size_t src_size,
                                     const kvc_decode_options* options,
                                     const kvc_tensor* keys,
                                     const kvc_tensor* values,
                                     kvc_diagnostics* diag);


/* ------------------------------------------------------------------------
 * Caches on disk and on the wire (format 1.1, FORMAT.md §2.5): written and
 * read through callbacks, one layer at a time, with a block index at the
 * end for random access, appended segments, and an optional zstd stage.
 * ---------------------------------------------------------------------- */

/* Writes all `size` bytes; returns 0 on success, anything else on failure. */
typedef int (*kvc_write_fn)(void* opaque, const void* data, size_t size);
/* Makes everything written so far durable (fsync); 0 on success. */
typedef int (*kvc_sync_fn)(void* opaque);
/* Reads up to `size` bytes (blocking until at least one is available):
 * returns the number read, 0 at the end of the input, negative on error. */
typedef int64_t (*kvc_read_fn)(void* opaque, void* data, size_t size);
/* Reads exactly `size` bytes at `offset`; 0 on success. */
typedef int (*kvc_read_at_fn)(void* opaque, uint64_t offset, void* data, size_t size);

typedef struct kvc_writer_options {
  uint32_t struct_size;  /* sizeof(kvc_writer_options) */
  uint32_t threads;      /* 0: one per core */
  uint32_t block_tokens; /* tokens per block (default 4096); 0: one block */
  int32_t zstd_level;    /* 0 (default): the config's (kvc_config_zstd_level;
                            none when appending); -1: none; 1..19: zstd per
                            block, kept only where it saves 1/64 or more */
  uint32_t appendable;   /* 1 (default): later segments may be appended
                            (kvc_cache_append). 0 without zstd gives a
                            stream every 1.0 decoder reads */
  uint32_t reserved;
  const char* model_name;     /* optional (NULL): up to 255 bytes of UTF-8 */
  uint64_t model_config_hash; /* optional (0): kvc_hash64 of the model's
                                 config, e.g. its config.json bytes */
  kvc_sync_fn sync;           /* optional: called before and after the
                                 final index is committed (same opaque as
                                 the write callback) */
} kvc_writer_options;

KVC_API void kvc_writer_options_init(kvc_writer_options* options);

/* XXH64 (seed 0) of bytes: the model identity's config hash. */
KVC_API uint64_t kvc_hash64(const void* data, size_t size);

typedef struct kvc_writer kvc_writer;

/* Starts a cache of desc->num_layers layers of desc->num_tokens tokens;
 * the header and layer configs are written at once. options may be NULL. */
KVC_API kvc_status kvc_writer_create(const kvc_config* config,
                                     const kvc_cache_desc* desc,
                                     const kvc_writer_options* options,
                                     kvc_write_fn write, void* opaque,
                                     kvc_writer** out, kvc_diagnostics* diag);
/* The next layer (0, 1, ... in order): keys and values [num_kv_heads,
 * tokens, head_dim] of any dtype, tokens = this segment's. */
KVC_API kvc_status kvc_writer_add_layer(kvc_writer* writer, const kvc_tensor* keys,
                                        const kvc_tensor* values,
                                        kvc_diagnostics* diag);
/* Writes the index and the End section once every layer was added;
 * total_size (may be NULL): bytes of the whole stream. */
KVC_API kvc_status kvc_writer_finish(kvc_writer* writer, uint64_t* total_size,
                                     kvc_diagnostics* diag);
/* Frees the writer (NULL is fine); an unfinished stream stays incomplete. */
KVC_API void kvc_writer_destroy(kvc_writer* writer);

typedef struct kvc_open_options {
  uint32_t struct_size;        /* sizeof(kvc_open_options) */
  uint32_t allow_model_mismatch; /* 1: skip the model identity check */
  const char* expect_model_name; /* NULL: not checked */
  uint64_t expect_model_config_hash; /* 0: not checked */
} kvc_open_options;

KVC_API void kvc_open_options_init(kvc_open_options* options);

typedef struct kvc_cache_info {
  uint32_t struct_size;   /* sizeof(kvc_cache_info) */
  uint32_t features;      /* Required_Features of the header */
  kvc_stream_info stream; /* num_tokens: the whole cache's */
  uint32_t segments;      /* 1 + appended segments */
  uint32_t blocks;
  uint64_t size;          /* bytes of the complete cache */
  uint64_t ignored_bytes; /* bytes after it: an interrupted append */
  uint32_t has_model;     /* 1 if the cache names its model */
  uint32_t reserved;
  uint64_t model_config_hash;
  char model_name[256];   /* NUL-terminated */
} kvc_cache_info;

KVC_API void kvc_cache_info_init(kvc_cache_info* info);

/* Random access to a cache of `size` bytes read through read_at: opens it
 * from its header, layer configs and final index (a stream without index,
 * e.g. from kvc_encode_stream, is walked once). If the end holds an
 * interrupted append, the cache opens as it was before it (see
 * ignored_bytes). A cache naming another model than options expect fails
 * with KVC_ERR_MODEL_MISMATCH. Blocks are read, and their checksums
 * checked, only when asked for. */
typedef struct kvc_cache kvc_cache;
KVC_API kvc_status kvc_cache_open(kvc_read_at_fn read_at, void* opaque, uint64_t size,
                                  const kvc_open_options* options, kvc_cache** out,
                                  kvc_diagnostics* diag);
KVC_API kvc_status kvc_cache_get_info(const kvc_cache* cache, kvc_cache_info* info,
                                      kvc_diagnostics* diag);
/* The tensor configs of one layer (either output may be NULL). */
KVC_API kvc_status kvc_cache_layer_config(const kvc_cache* cache, uint32_t layer,
                                          kvc_tensor_config* keys_config,
                                          kvc_tensor_config* values_config,
                                          kvc_diagnostics* diag);
/* Where block `index` (0 .. info.blocks - 1, stream order) lies. */
typedef struct kvc_block_entry {
  uint32_t struct_size; /* sizeof(kvc_block_entry) */
  uint32_t layer;
  uint32_t kind;        /* kvc_kind */
  uint32_t token_start;
  uint32_t token_count;
  uint32_t reserved;
  uint64_t offset;      /* of its section, from the start of the stream */
  uint64_t size;        /* of its section */
} kvc_block_entry;

KVC_API void kvc_block_entry_init(kvc_block_entry* entry);
KVC_API kvc_status kvc_cache_block(const kvc_cache* cache, uint32_t index,
                                   kvc_block_entry* entry, kvc_diagnostics* diag);

/* Decodes heads [head_start, +head_count) x tokens [token_start,
 * +token_count) of one layer's K or V into out, [head_count, token_count,
 * head_dim]; reads only the blocks that hold them. */
KVC_API kvc_status kvc_cache_read(kvc_cache* cache, uint32_t layer, kvc_kind kind,
                                  uint32_t head_start, uint32_t head_count,
                                  uint32_t token_start, uint32_t token_count,
                                  const kvc_tensor* out, kvc_diagnostics* diag);
/* A writer for new_tokens more tokens per layer, continuing the cache: the
 * caller's write callback must write at offset info.size (truncating what
 * follows: an interrupted append). Needs a cache made appendable; the
 * layer configs are the cache's; options->zstd_level needs a cache made
 * with zstd. Until kvc_writer_finish commits, the cache reads as before. */
KVC_API kvc_status kvc_cache_append(const kvc_cache* cache, uint32_t new_tokens,
                                    const kvc_writer_options* options,
                                    kvc_write_fn write, void* opaque,
                                    kvc_writer** out, kvc_diagnostics* diag);
KVC_API void kvc_cache_close(kvc_cache* cache);

/* Sequential reading through a read callback with memory bounded by one
 * block: a receiver uses layer 0 while later layers are still arriving.
 * The stream is delivered as layer runs: every layer of the first segment
 * ([0, num_tokens)), then every layer of each appended segment. Needs
 * layer-ordered streams (all a layer's blocks before the next layer's, as
 * every kvcodec writer writes). */
typedef struct kvc_reader kvc_reader;

typedef struct kvc_layer_run {
  uint32_t struct_size; /* sizeof(kvc_layer_run) */
  uint32_t end;         /* 1: the stream is complete, no run */
  uint32_t layer;
  uint32_t token_start;
  uint32_t token_count;
  uint32_t segment;     /* 0 for the first */
} kvc_layer_run;

KVC_API void kvc_layer_run_init(kvc_layer_run* run);

/* Reads the header and layer configs. options may be NULL. */
KVC_API kvc_status kvc_reader_create(kvc_read_fn read, void* opaque,
                                     const kvc_open_options* options,
                                     kvc_reader** out, kvc_diagnostics* diag);
/* Header fields; num_tokens is the first segment's. */
KVC_API kvc_status kvc_reader_get_info(const kvc_reader* reader, kvc_stream_info* info,
                                       kvc_diagnostics* diag);
/* The next run (reads the End of a segment and the next Append as needed). */
KVC_API kvc_status kvc_reader_next(kvc_reader* reader, kvc_layer_run* run,
                                   kvc_diagnostics* diag);
/* Decodes the current run into keys and values, [num_kv_heads,
 * run.token_count, head_dim] of any dtype; either may be NULL to skip it
 * (its blocks are still checked). KVC_OK means every block of the run
 * passed its checksum and the run's tokens are covered exactly once. */
KVC_API kvc_status kvc_reader_read(kvc_reader* reader, const kvc_tensor* keys,
                                   const kvc_tensor* values, kvc_diagnostics* diag);
KVC_API void kvc_reader_destroy(kvc_reader* reader);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVCODEC_KVCODEC_H_ */
