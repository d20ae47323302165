// The fast Walsh-Hadamard transform around the register file
// (simd/hadamard-inl.h says how it stays bit-identical to the reference).
// Passes of up to 16 registers run wholly in registers; longer ones do their
// cross-register stages through memory two at a time (radix 4: four vectors
// loaded, two stages, four stored), then the in-register stages fused with
// the scale (and, inverse, the signs).
#include "simd/rotation_kernels.h"

#include <algorithm>
#include <optional>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/rotation_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "simd/hadamard-inl.h"
#include "simd/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Reference loops, used when p is below one vector.
HWY_INLINE void ScalarButterflies(float* x, size_t p, size_t h_min) {
  for (size_t h = p / 2; h >= h_min && h >= 1; h /= 2) {
    for (size_t i = 0; i < p; i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

// Cross-vector stages h = p/2 .. N (N = lanes), in pairs, with the forward
// signs fused into the first pass when `signs` is not null.
template <class D>
HWY_INLINE void CrossStages(D d, float* HWY_RESTRICT x, const float* HWY_RESTRICT signs,
                            size_t p) {
  const size_t N = hn::Lanes(d);
  size_t h = p / 2;
  if (h < N) {  // no cross-vector stage: apply signs alone
    if (signs != nullptr) {
      for (size_t j = 0; j < p; j += N) {
        hn::StoreU(hn::Mul(hn::LoadU(d, x + j), hn::LoadU(d, signs + j)), d, x + j);
      }
    }
    return;
  }
  // Number of cross stages: log2(p / N). An odd count starts with radix 2.
  size_t stages = 0;
  for (size_t s = h; s >= N; s /= 2) ++stages;
  if (stages % 2 == 1) {
    for (size_t j = 0; j < h; j += N) {
      auto a = hn::LoadU(d, x + j);
      auto b = hn::LoadU(d, x + j + h);
      if (signs != nullptr) {
        a = hn::Mul(a, hn::LoadU(d, signs + j));
        b = hn::Mul(b, hn::LoadU(d, signs + j + h));
      }
      hn::StoreU(hn::Add(a, b), d, x + j);
      hn::StoreU(hn::Sub(a, b), d, x + j + h);
    }
    signs = nullptr;
    h /= 2;
  }
  for (; h >= 2 * N; h /= 4) {
    // Stages h and h/2 on each block of 2h: x0 x1 (first half), x2 x3.
    const size_t q = h / 2;
    for (size_t i = 0; i < p; i += 2 * h) {
      for (size_t j = i; j < i + q; j += N) {
        auto x0 = hn::LoadU(d, x + j);
        auto x1 = hn::LoadU(d, x + j + q);
        auto x2 = hn::LoadU(d, x + j + h);
        auto x3 = hn::LoadU(d, x + j + h + q);
        if (signs != nullptr) {
          x0 = hn::Mul(x0, hn::LoadU(d, signs + j));
          x1 = hn::Mul(x1, hn::LoadU(d, signs + j + q));
          x2 = hn::Mul(x2, hn::LoadU(d, signs + j + h));
          x3 = hn::Mul(x3, hn::LoadU(d, signs + j + h + q));
        }
        const auto y0 = hn::Add(x0, x2), y2 = hn::Sub(x0, x2);
        const auto y1 = hn::Add(x1, x3), y3 = hn::Sub(x1, x3);
        hn::StoreU(hn::Add(y0, y1), d, x + j);
        hn::StoreU(hn::Sub(y0, y1), d, x + j + q);
        hn::StoreU(hn::Add(y2, y3), d, x + j + h);
        hn::StoreU(hn::Sub(y2, y3), d, x + j + h + q);
      }
    }
    signs = nullptr;
  }
}

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
// The whole pass in registers when it spans at most 16 vectors (p = 128 on
// AVX2 is 16 registers): all stages without touching memory in between.
template <size_t K, bool kInverse, class D>
HWY_INLINE void InRegisters(D d, const InVectorStages<D>& stages, float* HWY_RESTRICT x,
                            const float* HWY_RESTRICT signs, float scale) {
  constexpr size_t N = hn::MaxLanes(D());
  hn::Vec<D> v[K];
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    v[k] = hn::LoadU(d, x + k * N);
    if (!kInverse) v[k] = hn::Mul(v[k], hn::LoadU(d, signs + k * N));
  }
  HadamardRegisters<K>(d, stages, scale, v);
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    if (kInverse) v[k] = hn::Mul(v[k], hn::LoadU(d, signs + k * N));
    hn::StoreU(v[k], d, x + k * N);
  }
}
#endif

// One Hadamard pass of size p, its in-register tables built once for
// every row of a call (building them costs more than a small pass). Passes
// narrower than a register run on a register of p lanes (p = 4 or 8), the
// same stages in the same order; narrower still, the scalar butterflies.
template <bool kInverse>
class HadamardPass {
 public:
  // Builds only the tables its size uses.
  explicit HadamardPass(size_t p) : p_(p) {
#if HWY_TARGET != HWY_SCALAR
    const size_t N = hn::Lanes(D());
    if (p >= N) stages_.emplace(D());
#if !HWY_HAVE_SCALABLE
    if (p < N && p == hn::Lanes(D8())) stages8_.emplace(D8());
    if (p < N && p == hn::Lanes(D4())) stages4_.emplace(D4());
#endif
#endif
  }

  // The pass on `count` rows, row n at y + n * stride: the choice of kernel
  // made once, so that short rows (Block-GTQ's groups) do not pay it each.
  void Rows(float* HWY_RESTRICT y, size_t count, size_t stride, const float* HWY_RESTRICT signs,
            float scale) const {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
    const D d;
    const size_t N = hn::Lanes(d);
    const auto each_row = [&](auto&& run) HWY_ATTR {
      for (size_t n = 0; n < count; ++n) run(y + n * stride);
    };
    if (stages8_) {
      return each_row([&](float* x) HWY_ATTR {
        InRegisters<1, kInverse>(D8(), *stages8_, x, signs, scale);
      });
    }
    if (stages4_) {
      return each_row([&](float* x) HWY_ATTR {
        InRegisters<1, kInverse>(D4(), *stages4_, x, signs, scale);
      });
    }
    if (p_ >= N) {
      switch (p_ / N) {
#define KVC_IN_REGISTERS(K)                                   \
  case K:                                                     \
    return each_row([&](float* x) HWY_ATTR {                  \
      InRegisters<K, kInverse>(d, *stages_, x, signs, scale); \
    });
        KVC_IN_REGISTERS(1)
        KVC_IN_REGISTERS(2)
        KVC_IN_REGISTERS(4)
        KVC_IN_REGISTERS(8)
        KVC_IN_REGISTERS(16)
#undef KVC_IN_REGISTERS
        default: break;
      }
    }
#endif
    for (size_t n = 0; n < count; ++n) ThroughMemory(y + n * stride, signs, scale);
  }

  void Run(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, float scale) const {
    Rows(x, 1, p_, signs, scale);
  }

 private:
  // Passes narrower than a register (scalar butterflies), wider than 16
  // registers, or on scalable targets (cross-register stages through memory).
  void ThroughMemory(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, float scale) const {
    const D d;
    const size_t N = hn::Lanes(d);
    if (p_ < N || N == 1) {
      if (!kInverse) {
        for (size_t j = 0; j < p_; ++j) x[j] = x[j] * signs[j];
      }
      ScalarButterflies(x, p_, 1);
      for (size_t j = 0; j < p_; ++j) x[j] = x[j] * scale;
      if (kInverse) {
        for (size_t j = 0; j < p_; ++j) x[j] = x[j] * signs[j];
      }
      return;
    }
#if HWY_TARGET != HWY_SCALAR
    CrossStages(d, x, kInverse ? nullptr : signs, p_);
    const auto vs = hn::Set(d, scale);
    for (size_t j = 0; j < p_; j += N) {
      auto v = stages_->Apply(d, hn::LoadU(d, x + j));
      v = hn::Mul(v, vs);
      if (kInverse) v = hn::Mul(v, hn::LoadU(d, signs + j));
      hn::StoreU(v, d, x + j);
    }
#else
    (void)scale;
#endif
  }

  using D = hn::ScalableTag<float>;
  size_t p_;
#if HWY_TARGET != HWY_SCALAR
  std::optional<InVectorStages<D>> stages_;
#if !HWY_HAVE_SCALABLE
  using D8 = hn::CappedTag<float, 8>;
  using D4 = hn::CappedTag<float, 4>;
  std::optional<InVectorStages<D8>> stages8_;
  std::optional<InVectorStages<D4>> stages4_;
#endif
#endif
};

void HadamardForwardImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, size_t p,
                         float scale) {
  HadamardPass<false>(p).Run(x, signs, scale);
}
void HadamardInverseImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, size_t p,
                         float scale) {
  HadamardPass<true>(p).Run(x, signs, scale);
}

bool RotateRowsImpl(const float* HWY_RESTRICT signs, float scale, size_t dim,
                    const float* x, size_t count, float* y,
                    float* HWY_RESTRICT sum_squares) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  using D = hn::ScalableTag<float>;
  const D d;
  const InVectorStages<D> stages(d);
  return DispatchRegisters(d, dim, [&](auto registers) HWY_ATTR {
    constexpr size_t K = decltype(registers)::value;
    constexpr size_t kLanes = hn::MaxLanes(D());
    for (size_t n = 0; n < count; ++n) {
      hn::Vec<D> v[K];
      LoadForward<K>(d, stages, signs, scale, x + n * dim, v);
      if (sum_squares != nullptr) sum_squares[n] = SumOfSquaresRegisters<K>(d, v);
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) hn::StoreU(v[k], d, y + n * dim + k * kLanes);
    }
  });
#else
  (void)signs, (void)scale, (void)dim, (void)x, (void)count, (void)y, (void)sum_squares;
  return false;
#endif
}

bool InverseRotateRowsImpl(const float* HWY_RESTRICT signs, float scale, size_t dim,
                           const float* y, size_t count, float* out) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  using D = hn::ScalableTag<float>;
  const D d;
  const InVectorStages<D> stages(d);
  return DispatchRegisters(d, dim, [&](auto registers) HWY_ATTR {
    constexpr size_t K = decltype(registers)::value;
    constexpr size_t kLanes = hn::MaxLanes(D());
    for (size_t n = 0; n < count; ++n) {
      hn::Vec<D> v[K];
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) v[k] = hn::LoadU(d, y + n * dim + k * kLanes);
      InverseStore<K>(d, stages, signs, scale, v, out + n * dim);
    }
  });
#else
  (void)signs, (void)scale, (void)dim, (void)y, (void)count, (void)out;
  return false;
#endif
}

void RotatePassRowsImpl(const float* const* HWY_RESTRICT signs,
                        const uint32_t* HWY_RESTRICT offsets, size_t passes, size_t p,
                        float scale, size_t dim, const float* x, size_t count, float* y,
                        float* HWY_RESTRICT sum_squares) {
  const HadamardPass<false> pass(p);
  if (y != x) std::copy(x, x + count * dim, y);
  // Pass after pass over all rows, not row after row: a row's passes
  // overlap, and a pass loading what the previous one just stored at another
  // alignment would stall on store forwarding.
  for (size_t k = 0; k < passes; ++k) pass.Rows(y + offsets[k], count, dim, signs[k], scale);
  for (size_t n = 0; sum_squares != nullptr && n < count; ++n) {
    sum_squares[n] = SumOfSquaresArray(y + n * dim, dim, (count - n) * dim);
  }
}

void InversePassRowsImpl(const float* const* HWY_RESTRICT signs,
                         const uint32_t* HWY_RESTRICT offsets, size_t passes, size_t p,
                         float scale, size_t dim, float* HWY_RESTRICT y, size_t count) {
  const HadamardPass<true> pass(p);
  // Pass after pass over all rows (RotatePassRowsImpl says why).
  for (size_t k = passes; k-- > 0;) pass.Rows(y + offsets[k], count, dim, signs[k], scale);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(HadamardForwardImpl);
HWY_EXPORT(HadamardInverseImpl);
HWY_EXPORT(RotateRowsImpl);
HWY_EXPORT(InverseRotateRowsImpl);
HWY_EXPORT(RotatePassRowsImpl);
HWY_EXPORT(InversePassRowsImpl);

void HadamardForward(float* x, const float* signs, size_t p, float scale) {
  HWY_DYNAMIC_DISPATCH(HadamardForwardImpl)(x, signs, p, scale);
}
void HadamardInverse(float* x, const float* signs, size_t p, float scale) {
  HWY_DYNAMIC_DISPATCH(HadamardInverseImpl)(x, signs, p, scale);
}
bool RotateRows(const float* signs, float scale, size_t dim, const float* x, size_t count,
                float* y, float* sum_squares) {
  return HWY_DYNAMIC_DISPATCH(RotateRowsImpl)(signs, scale, dim, x, count, y, sum_squares);
}
bool InverseRotateRows(const float* signs, float scale, size_t dim, const float* y,
                       size_t count, float* out) {
  return HWY_DYNAMIC_DISPATCH(InverseRotateRowsImpl)(signs, scale, dim, y, count, out);
}

void RotatePassRows(const float* const* signs, const uint32_t* offsets, size_t passes, size_t p,
                    float scale, size_t dim, const float* x, size_t count, float* y,
                    float* sum_squares) {
  HWY_DYNAMIC_DISPATCH(RotatePassRowsImpl)(signs, offsets, passes, p, scale, dim, x, count, y,
                                           sum_squares);
}
void InversePassRows(const float* const* signs, const uint32_t* offsets, size_t passes, size_t p,
                     float scale, size_t dim, float* y, size_t count) {
  HWY_DYNAMIC_DISPATCH(InversePassRowsImpl)(signs, offsets, passes, p, scale, dim, y, count);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
