// `kvc bench`: encode/decode throughput of presets against memcpy, a plain
// int8 absmax quantizer and the HWY_SCALAR build of the same code.
#ifndef KVCODEC_TOOLS_BENCH_H_
#define KVCODEC_TOOLS_BENCH_H_

namespace kvc::tools {

// argv[0] is "bench" (or the program name); returns a process exit code.
//   --preset NAME | --all   which presets (several --preset allowed)
//   --dim D                 head_dim (128)
//   --tokens N              tokens per layer (default: >= 256 MiB of f16 K+V)
//   --heads H               KV heads (8)
//   --block-tokens B        tokens per block (4096; 0: one block per layer)
//   --threads T             encoder/decoder threads (1)
//   --reps R                repetitions, the median is reported (5)
//   --target NAME           measure this Highway target (AVX2, SSE4, ...)
//   --no-scalar             skip the HWY_SCALAR measurement
//   --json                  one JSON object per preset (default: a table)
int RunBench(int argc, char** argv);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_BENCH_H_
