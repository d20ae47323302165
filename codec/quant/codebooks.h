// Lloyd-Max codebooks of TurboQuant (FORMAT.md, "Codebooks").
#ifndef KVCODEC_CODEC_QUANT_CODEBOOKS_H_
#define KVCODEC_CODEC_QUANT_CODEBOOKS_H_

#include <cstdint>

namespace kvc {

constexpr int kMaxCodebookBits = 8;

// The quantizer of one rotated coordinate scaled to unit variance
// (t = sqrt(d) * u_j for a unit vector u): 2^bits centroids of N(0,1),
// ascending, and the 2^bits - 1 decision thresholds between them. The index
// of t is the number of thresholds strictly below t.
struct Codebook {
  int bits;
  int size;                 // 2^bits
  const float* centroids;   // size entries
  const float* thresholds;  // size - 1 entries
};

// bits in 1..kMaxCodebookBits.
const Codebook& GaussianCodebook(int bits);

// Index of t in the codebook (count of thresholds < t). NaN maps to 0.
inline uint32_t QuantizeToCodebook(const Codebook& book, float t) {
  // Binary search for the first threshold >= t; identical to a linear count.
  uint32_t lo = 0, hi = static_cast<uint32_t>(book.size - 1);
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (book.thresholds[mid] < t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_CODEBOOKS_H_
