// The randomized Hadamard rotation (FORMAT.md, "Rotation").
//
// For a power-of-two head_dim d one pass: y = c * H (D x), D a diagonal of
// random signs, H the Walsh-Hadamard matrix, c = 1/sqrt(d). Other head dims
// (80, 96, 112, 192, ...) use three overlapping passes of size P, the largest
// power of two below d: on [0, P), on [d - P, d), on [0, P) again. The second
// pass carries the tail into the mixed head and the third spreads it back, so
// every output coordinate depends on every input one while each pass stays a
// plain power-of-two transform; nothing is padded, so no bits are wasted.
#ifndef KVCODEC_CODEC_QUANT_ROTATION_H_
#define KVCODEC_CODEC_QUANT_ROTATION_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvc {

class Rotation {
 public:
  // kind: kvc_rotation. head_dim >= 2.
  Rotation(uint32_t kind, uint32_t head_dim, uint64_t seed);

  // In place on one vector of head_dim floats (SIMD, dispatched).
  void Forward(float* x) const;
  void Inverse(float* x) const;
  // Forward on `count` rows: y + n * head_dim = Forward(x + n * head_dim)
  // (y may be x) and, if sum_squares is not null, sum_squares[n] =
  // kvc::SumOfSquares of it; the rows stay in registers from load to store
  // where a kernel exists (one power-of-two pass of up to 16 vectors).
  void ForwardRows(const float* x, size_t count, float* y, float* sum_squares) const;
  // Inverse on `count` rows in place.
  void InverseRows(float* y, size_t count) const;
  // The scalar reference that defines the rounding (FORMAT.md, "Rotation");
  // Forward/Inverse are bit-identical to it on every target.
  void ForwardReference(float* x) const;
  void InverseReference(float* x) const;

  uint32_t head_dim() const { return head_dim_; }
  // For fused kernels: the signs of the one pass of a power-of-two head dim
  // (nullptr for the identity or three passes), and its scale f32(1/sqrt(P)).
  const float* single_pass_signs() const {
    return passes_.size() == 1 ? passes_[0].signs.data() : nullptr;
  }
  float scale() const { return scale_; }

 private:
  struct Pass {
    uint32_t offset;
    std::vector<float> signs;  // +1 or -1, pass_size entries
  };
  void ApplyHadamard(float* x) const;  // unnormalised butterflies, then * scale

  uint32_t head_dim_;
  uint32_t pass_size_ = 0;  // P; 0 for the identity
  float scale_ = 1.0f;      // f32(1 / sqrt(P))
  std::vector<Pass> passes_;  // at most kMaxPasses
  static constexpr size_t kMaxPasses = 3;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_QUANT_ROTATION_H_
