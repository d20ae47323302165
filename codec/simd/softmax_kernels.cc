// Max, shifted exponentials and scaling over a row of logits. Exp is
// Highway's (contrib/math): about 1 ulp, far inside attention's 1e-5.
#include "simd/softmax_kernels.h"

#include <algorithm>
#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/softmax_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float MaxValueImpl(const float* HWY_RESTRICT x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  float best = x[0];
  size_t i = 0;
  if (n >= N) {
    auto m = hn::LoadU(df, x);
    for (i = N; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(df, x + i));
    best = hn::GetLane(hn::MaxOfLanes(df, m));
  }
  for (; i < n; ++i) best = std::max(best, x[i]);
  return best;
}

float ExpShiftedSumImpl(float* HWY_RESTRICT x, size_t n, float shift) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  // Below about -87 Exp leaves its range; exp of such an argument is < 2^-125
  // of the largest term, nothing a float sum of at most 2^32 terms can hold.
  const auto lowest = hn::Set(df, -87.0f);
  const auto s = hn::Set(df, shift);
  auto sum = hn::Zero(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto a = hn::Sub(hn::LoadU(df, x + i), s);
    const auto e = hn::IfThenZeroElse(hn::Lt(a, lowest), hn::Exp(df, hn::Max(a, lowest)));
    hn::StoreU(e, df, x + i);
    sum = hn::Add(sum, e);
  }
  float total = hn::GetLane(hn::SumOfLanes(df, sum));
  for (; i < n; ++i) {
    const float a = x[i] - shift;
    x[i] = a < -87.0f ? 0.0f : std::exp(a);
    total += x[i];
  }
  return total;
}

void ScaleImpl(float* HWY_RESTRICT x, size_t n, float factor) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto f = hn::Set(df, factor);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), f), df, x + i);
  for (; i < n; ++i) x[i] *= factor;
}

}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(MaxValueImpl);
HWY_EXPORT(ExpShiftedSumImpl);
HWY_EXPORT(ScaleImpl);

float MaxValue(const float* x, size_t n) {
  return HWY_DYNAMIC_DISPATCH(MaxValueImpl)(x, n);
}
float ExpShiftedSum(float* x, size_t n, float shift) {
  return HWY_DYNAMIC_DISPATCH(ExpShiftedSumImpl)(x, n, shift);
}
void Scale(float* x, size_t n, float factor) {
  HWY_DYNAMIC_DISPATCH(ScaleImpl)(x, n, factor);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
