// Attention on TurboAngle and PolarQuant records in their rotated domain
// (issue 8): dot products of rotated queries with every token's rotated-
// domain reconstruction, and weighted sums of those reconstructions, without
// writing a decoded vector anywhere. A token's reconstruction is built in
// registers a vector of pairs at a time, from (cos, sin) tables fetched by
// bin, and used at once by every query of a GQA group (up to 4 per pass).
//
// Lanes are handled as 64-bit pairs: a (cos, sin) table entry is two floats
// in memory order, so a gather of pair entries yields the pairs interleaved
// exactly as the rotated query and the output lie in memory, and per-pair
// weights are spread to both floats of a pair by duplicating their 32 bits.
//
// Outputs are f32 sums with fused multiply-adds where the target has them:
// deterministic for a target, not bit-identical across targets (they are no
// bitstream).
#ifndef KVCODEC_CODEC_SIMD_ANGLE_ATTENTION_KERNELS_H_
#define KVCODEC_CODEC_SIMD_ANGLE_ATTENTION_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// ----------------------------------------------------------------- TurboAngle

// How a TurboAngle token gives each pair's weight w_j.
enum class TaRadius {
  kLinear8,  // codes[j]: w_j = code (the codec scales by rms * 4 / 255)
  kLog4,     // codes[j]: table entry code * bins + bin already holds
             // (level * cos, level * sin); w_j = 1 (the codec scales by rms)
  kExact,    // radii[j]: w_j = the stored radius
};

// `count` tokens of `pairs` pairs; pair j of token n is at n * pairs + j of
// every per-pair array. Its reconstruction up to a per-token factor is
// u[2j], u[2j+1] = w_j * table[e] as (cos, sin), e = bin (kLog4: code *
// bins + bin).
struct TaTokens {
  size_t pairs;
  size_t count;
  TaRadius radius;
  uint32_t bins;
  const uint64_t* table;  // two floats in memory order per entry
  const uint8_t* bins8;   // bins <= 256; else bins16
  const uint16_t* bins16;
  const uint8_t* codes;   // kLinear8, kLog4
  const float* radii;     // kExact
};

// For q < num_queries (queries: num_queries x 2 * pairs, rotated) and
// n < count: dots[q * stride + n] = <queries[q], u_n>. With num_queries 0
// and sum_squares not null: sum_squares[n] = <u_n, u_n> instead.
void TaDots(const TaTokens& tokens, const float* queries, size_t num_queries, float* dots,
            size_t stride, float* sum_squares);

// out[q * 2 * pairs + i] += sum over n of weights[q * stride + n] * u_n[i].
void TaWeightedSum(const TaTokens& tokens, const float* weights, size_t stride,
                   size_t num_queries, float* out);

// ----------------------------------------------------------------- PolarQuant

// A group of 16 rotated coordinates is 8 level-1 pairs; pair j's value is
// R * f2 * f3 * f4 * (cos, sin)[b_j], the f the cos or sin of the level-2..4
// angles on its path (quant/polarquant_codec.cc). Its product f2 f3 f4 is
// one entry of a table indexed by PqFactorIndex.
struct PqTokens {
  size_t dim;  // a multiple of 16
  size_t count;
  int bits[4];  // per level; 8 * bits[0] + 4 * bits[1] + 2 * bits[2] + bits[3] <= 64
  const uint64_t* circle;   // (cos, sin) of level-1 bin centres, memory order
  const uint64_t* factors;  // the product, as the same float twice
  const uint64_t* fields;   // count x dim / 16: a group's codes, LSB first
  const float* radii;       // count x dim / 16: group radii R
};

// Index of pair j's (j < 8) factor in a group whose level-2..4 codes on the
// path are c2, c3, c4: the codes with j's side at each level (j & 1, j >> 1
// & 1, j >> 2 & 1) below them, level 2's highest.
inline size_t PqFactorIndex(const int* bits, uint32_t c2, uint32_t c3, uint32_t c4,
                            uint32_t j) {
  size_t index = (size_t{c2} << 1) | (j & 1);
  index = (index << (bits[2] + 1)) | (size_t{c3} << 1) | (j >> 1 & 1);
  return (index << (bits[3] + 1)) | (size_t{c4} << 1) | (j >> 2 & 1);
}
inline size_t PqFactorCount(const int* bits) {
  return size_t{1} << (bits[1] + bits[2] + bits[3] + 3);
}

// As TaDots and TaWeightedSum, for the reconstruction y_n of PolarQuant
// tokens (out: num_queries x dim, added to).
void PqDots(const PqTokens& tokens, const float* queries, size_t num_queries, float* dots,
            size_t stride);
void PqWeightedSum(const PqTokens& tokens, const float* weights, size_t stride,
                   size_t num_queries, float* out);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_ANGLE_ATTENTION_KERNELS_H_
