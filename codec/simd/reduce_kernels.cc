// Reductions: element j goes to partial sum j % 16 in ascending j, products
// rounded before the addition; 16 / lanes accumulators hold partial sums
// 0..15 in lane order, so every target adds the same numbers in the same
// order. The tail is zero-padded: a product 0 * 0 = +0 leaves a partial sum
// unchanged (partial sums start at +0 and so are never -0).
#include "simd/reduce_kernels.h"

#include <cmath>

#include "quant/vector_math.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/reduce_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <bool kSquare>
float DotImpl(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
#if HWY_TARGET == HWY_SCALAR
  return kSquare ? kvc::SumOfSquares(a, n) : kvc::DotProduct(a, b, n);
#else
  const hn::ScalableTag<float> d;
  constexpr size_t kN = hn::MaxLanes(d);
  static_assert(kReductionLanes % kN == 0 && kReductionLanes / kN <= 4, "lanes");
  constexpr size_t kAcc = kReductionLanes / kN;
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d), acc2 = hn::Zero(d), acc3 = hn::Zero(d);
  auto product = [&](size_t j) HWY_ATTR {
    const auto va = hn::LoadU(d, a + j);
    return hn::Mul(va, kSquare ? va : hn::LoadU(d, b + j));
  };
  size_t j = 0;
  for (; j + kReductionLanes <= n; j += kReductionLanes) {
    acc0 = hn::Add(acc0, product(j));
    if (kAcc > 1) acc1 = hn::Add(acc1, product(j + kN));
    if (kAcc > 2) acc2 = hn::Add(acc2, product(j + 2 * kN));
    if (kAcc > 3) acc3 = hn::Add(acc3, product(j + 3 * kN));
  }
  HWY_ALIGN float sums[kReductionLanes];
  hn::Store(acc0, d, sums);
  if (kAcc > 1) hn::Store(acc1, d, sums + kN);
  if (kAcc > 2) hn::Store(acc2, d, sums + 2 * kN);
  if (kAcc > 3) hn::Store(acc3, d, sums + 3 * kN);
  for (size_t lane = 0; j < n; ++j, ++lane) {
    sums[lane] = sums[lane] + a[j] * (kSquare ? a[j] : b[j]);
  }
  return FoldLanes(sums);
#endif
}

float DotProductImpl(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  return DotImpl<false>(a, b, n);
}
float SumOfSquaresImpl(const float* HWY_RESTRICT a, size_t n) {
  return DotImpl<true>(a, a, n);
}

bool AllFiniteImpl(const float* HWY_RESTRICT a, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t N = hn::Lanes(d);
  // Finite iff the exponent field is not all ones.
  const auto exp_mask = hn::Set(di, 0x7F800000);
  auto bad = hn::Zero(di);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto e = hn::And(hn::BitCast(di, hn::LoadU(d, a + j)), exp_mask);
    bad = hn::Or(bad, hn::VecFromMask(di, hn::Eq(e, exp_mask)));
  }
  if (!hn::AllTrue(di, hn::Eq(bad, hn::Zero(di)))) return false;
  for (; j < n; ++j) {
    if (!std::isfinite(a[j])) return false;
  }
  return true;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(DotProductImpl);
HWY_EXPORT(SumOfSquaresImpl);
HWY_EXPORT(AllFiniteImpl);

float DotProduct(const float* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotProductImpl)(a, b, n);
}
float SumOfSquares(const float* a, size_t n) {
  return HWY_DYNAMIC_DISPATCH(SumOfSquaresImpl)(a, n);
}
bool AllFinite(const float* a, size_t n) {
  return HWY_DYNAMIC_DISPATCH(AllFiniteImpl)(a, n);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
