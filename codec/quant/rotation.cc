#include "quant/rotation.h"

#include <algorithm>
#include <cmath>

#include "base/prng.h"
#include "kvcodec/kvcodec.h"
#include "simd/dispatch.h"
#include "simd/rotation_kernels.h"

namespace kvc {

Rotation::Rotation(uint32_t kind, uint32_t head_dim, uint64_t seed)
    : head_dim_(head_dim) {
  simd::InitDispatch();
  if (kind != KVC_ROTATION_HADAMARD) return;  // identity
  pass_size_ = 1;
  while (pass_size_ * 2 <= head_dim) pass_size_ *= 2;
  scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(pass_size_)));
  std::vector<uint32_t> offsets = {0};
  if (pass_size_ != head_dim) offsets = {0, head_dim - pass_size_, 0};

  // Signs: one SplitMix64 word per 64 coordinates of a pass, bit k % 64 set
  // meaning -1; passes draw words in order.
  SplitMix64 rng(DeriveSeed(seed, kTagRotation));
  for (uint32_t offset : offsets) {
    Pass pass{offset, std::vector<float>(pass_size_)};
    uint64_t word = 0;
    for (uint32_t k = 0; k < pass_size_; ++k) {
      if (k % 64 == 0) word = rng.Next();
      pass.signs[k] = ((word >> (k % 64)) & 1) ? -1.0f : 1.0f;
    }
    passes_.push_back(std::move(pass));
  }

}

void Rotation::ApplyHadamard(float* x) const {
  // Strides from P/2 down to 1: the order is part of the format (rounding
  // differs otherwise), chosen so SIMD does cross-register stages first.
  for (uint32_t h = pass_size_ / 2; h >= 1; h /= 2) {
    for (uint32_t i = 0; i < pass_size_; i += 2 * h) {
      for (uint32_t j = i; j < i + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  for (uint32_t j = 0; j < pass_size_; ++j) x[j] = x[j] * scale_;
}

void Rotation::ForwardReference(float* x) const {
  for (const Pass& pass : passes_) {
    float* v = x + pass.offset;
    for (uint32_t j = 0; j < pass_size_; ++j) v[j] = v[j] * pass.signs[j];
    ApplyHadamard(v);
  }
}

void Rotation::InverseReference(float* x) const {
  for (auto it = passes_.rbegin(); it != passes_.rend(); ++it) {
    float* v = x + it->offset;
    ApplyHadamard(v);
    for (uint32_t j = 0; j < pass_size_; ++j) v[j] = v[j] * it->signs[j];
  }
}

void Rotation::Forward(float* x) const {
  for (const Pass& pass : passes_) {
    simd::HadamardForward(x + pass.offset, pass.signs.data(), pass_size_, scale_);
  }
}

void Rotation::Inverse(float* x) const {
  for (auto it = passes_.rbegin(); it != passes_.rend(); ++it) {
    simd::HadamardInverse(x + it->offset, it->signs.data(), pass_size_, scale_);
  }
}

void Rotation::ForwardRows(const float* x, size_t count, float* y, float* sum_squares) const {
  const float* signs = single_pass_signs();
  if (signs != nullptr &&
      simd::RotateRows(signs, scale_, head_dim_, x, count, y, sum_squares)) {
    return;
  }
  const float* signs_of[kMaxPasses];
  uint32_t offsets[kMaxPasses];
  for (size_t k = 0; k < passes_.size(); ++k) {
    signs_of[k] = passes_[k].signs.data();
    offsets[k] = passes_[k].offset;
  }
  simd::RotatePassRows(signs_of, offsets, passes_.size(), pass_size_, scale_, head_dim_, x, count,
                       y, sum_squares);
}

void Rotation::InverseRows(float* y, size_t count) const {
  const float* signs = single_pass_signs();
  if (signs != nullptr && simd::InverseRotateRows(signs, scale_, head_dim_, y, count, y)) {
    return;
  }
  const float* signs_of[kMaxPasses];
  uint32_t offsets[kMaxPasses];
  for (size_t k = 0; k < passes_.size(); ++k) {
    signs_of[k] = passes_[k].signs.data();
    offsets[k] = passes_[k].offset;
  }
  simd::InversePassRows(signs_of, offsets, passes_.size(), pass_size_, scale_, head_dim_, y,
                        count);
}

}  // namespace kvc
