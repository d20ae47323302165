// Scalar reference arithmetic whose exact order is part of the format
// (FORMAT.md, "Arithmetic"): SIMD kernels must reproduce these bit for bit.
#ifndef KVCODEC_CODEC_QUANT_VECTOR_MATH_H_
#define KVCODEC_CODEC_QUANT_VECTOR_MATH_H_

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace kvc {

// Number of interleaved partial sums in every reduction. Sixteen fits one
// AVX-512 register, two AVX2 or four SSE/NEON registers, so every target can
// keep the same association order as this reference.
constexpr size_t kReductionLanes = 16;

// Folds 16 partial sums by halves: lanes i and i+8, then i and i+4, ...
inline float FoldLanes(float* acc) {
  for (size_t width = kReductionLanes / 2; width >= 1; width /= 2) {
    for (size_t i = 0; i < width; ++i) acc[i] = acc[i] + acc[i + width];
  }
  return acc[0];
}

// sum_j a[j] * b[j]: element j is added to lane j % 16 in ascending j, each
// product rounded before the addition (no fused multiply-add).
inline float DotProduct(const float* a, const float* b, size_t n) {
  float acc[kReductionLanes] = {};
  for (size_t j = 0; j < n; ++j) {
    const float product = a[j] * b[j];
    acc[j % kReductionLanes] = acc[j % kReductionLanes] + product;
  }
  return FoldLanes(acc);
}

inline float SumOfSquares(const float* a, size_t n) {
  return DotProduct(a, a, n);
}

inline bool AllFinite(const float* a, size_t n) {
  for (size_t j = 0; j < n; ++j) {
    if (!std::isfinite(a[j])) return false;
  }
  return true;
}

// Bit packing, LSB first: value k of width `bits` occupies stream bits
// [k*bits, (k+1)*bits), bit i of the stream being bit (i % 8) of byte i / 8.
// `out` must hold ceil(n * bits / 8) bytes and is overwritten.
void PackBits(const uint8_t* values, size_t n, int bits, uint8_t* out);
void UnpackBits(const uint8_t* in, size_t n, int bits, uint8_t* values);

// The same bit order for fields of varying widths (up to 8 bits each). The
// writer expects zeroed output.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void Put(uint32_t value, int bits) {
    const uint32_t shifted = value << (bit_ % 8);
    out_[bit_ / 8] |= static_cast<uint8_t>(shifted);
    if ((bit_ % 8) + static_cast<size_t>(bits) > 8) {
      out_[bit_ / 8 + 1] |= static_cast<uint8_t>(shifted >> 8);
    }
    bit_ += static_cast<size_t>(bits);
  }
  size_t bits_written() const { return bit_; }

 private:
  uint8_t* out_;
  size_t bit_ = 0;
};

class BitReader {
 public:
  explicit BitReader(const uint8_t* in) : in_(in) {}
  uint32_t Get(int bits) {
    uint32_t word = in_[bit_ / 8];
    if ((bit_ % 8) + static_cast<size_t>(bits) > 8) {
      word |= static_cast<uint32_t>(in_[bit_ / 8 + 1]) << 8;
    }
    const uint32_t value = (word >> (bit_ % 8)) & ((1u << bits) - 1);
    bit_ += static_cast<size_t>(bits);
    return value;
  }
  // True if the bits after the last one read, up to the byte boundary, are 0.
  bool PaddingIsZero() const {
    return bit_ % 8 == 0 || (in_[bit_ / 8] >> (bit_ % 8)) == 0;
  }

 private:
  const uint8_t* in_;
  size_t bit_ = 0;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_VECTOR_MATH_H_
