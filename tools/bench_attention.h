// `kvc bench --attention`: one decode step of attention over encoded KV
// blocks (kvc_block_scores, kvc_decode_attention) against a Highway f16
// baseline over the same cache in the same run.
#ifndef KVCODEC_TOOLS_BENCH_ATTENTION_H_
#define KVCODEC_TOOLS_BENCH_ATTENTION_H_

namespace kvc::tools {

// argv[0] is "bench" (or the program name); "--attention" may appear among
// the options. Returns a process exit code (2: usage, 1: a preset failed).
//   --preset NAME | --all   which presets (several --preset allowed)
//   --context N             tokens in the cache (several allowed; default
//                           4096, 32768 and 131072)
//   --threads T             threads of both paths (1; 0: one per core)
//   --dim D                 head_dim (128; the sample's)
//   --group G               query heads per KV head (4)
//   --kv-heads H            KV heads (8)
//   --block-tokens B        tokens per encoded block (4096)
//   --reps R                repetitions, medians reported (5)
//   --kv FILE               the sample KV cache (safetensors, layer{L}.k/.v
//                           and optionally layer{L}.q; default: the bundled
//                           tests/data fixture)
//   --target NAME           measure this Highway target (AVX2, SSE4, ...)
//   --warm                  do not flush the last-level cache before each
//                           timed call (a one-layer model; default: cold,
//                           as a decode step finds each layer's cache)
//   --json                  one JSON object per preset and context
int RunBenchAttention(int argc, char** argv);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_BENCH_ATTENTION_H_
