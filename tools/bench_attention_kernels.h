// The f16 attention baseline of `kvc bench --attention` (tools/bench_attention.cc):
// what an engine without kvcodec runs for one decode step over an f16 KV
// cache, written with the care of the codec's own kernels (Highway, dynamic
// dispatch). Rows are head_dim values; head_dim must be a multiple of 16.
#ifndef KVCODEC_TOOLS_BENCH_ATTENTION_KERNELS_H_
#define KVCODEC_TOOLS_BENCH_ATTENTION_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc::tools {

// out[i] = in[i] rounded to f16 (IEEE binary16 bits), count a multiple of 16.
void ConvertToF16(const float* in, size_t count, uint16_t* out);

// scores[q * scores_stride + t] = queries[q] . keys[t] for q < num_queries
// (queries: f32 [num_queries][dim]) and t < tokens (keys: f16 [tokens][dim]).
// Each key row is loaded once for up to 4 queries.
void F16Scores(const uint16_t* keys, size_t tokens, size_t dim, const float* queries,
               size_t num_queries, float* scores, size_t scores_stride);

// The numerators of a numerically stable softmax, in place: x[i] becomes
// exp(x[i] - max) with max the largest x[i] (returned in *max); returns
// their sum. n > 0.
float ExpShiftedSum(float* x, size_t n, float* max);

// out[q][:] = sum over t < tokens of weights[q * weights_stride + t] *
// values[t][:] for q < num_queries (values: f16 [tokens][dim]; out: f32
// [num_queries][dim], overwritten). Each value row is loaded once for up to
// 4 queries.
void F16WeightedSum(const uint16_t* values, size_t tokens, size_t dim, const float* weights,
                    size_t weights_stride, size_t num_queries, float* out);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_BENCH_ATTENTION_KERNELS_H_
