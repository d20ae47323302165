// PortableAngle / AngleBin (base/portable_math.cc) lane-parallel: the same
// f32 operations in the same order (selects instead of branches, exact
// division and square root, no fused multiply-add), so the bins are those of
// the scalar reference on every target.
#include "simd/angle_kernels.h"

#include <cmath>

#include "base/portable_math.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/angle_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D, class V = hn::Vec<D>>
HWY_INLINE V Angle(D d, V x, V y) {
  const V zero = hn::Zero(d);
  const V ax = hn::Abs(x), ay = hn::Abs(y);
  const auto x_lt_y = hn::Lt(ax, ay);
  const V lo = hn::IfThenElse(x_lt_y, ax, ay);
  const V hi = hn::IfThenElse(x_lt_y, ay, ax);
  const auto hi_pos = hn::Gt(hi, zero);
  // Lanes with hi == 0 divide by a placeholder 1 and are replaced by 0.
  const V t = hn::IfThenElseZero(hi_pos, hn::Div(lo, hn::IfThenElse(hi_pos, hi, hn::Set(d, 1.0f))));
  const V one = hn::Set(d, 1.0f);
  const auto reduced = hn::Gt(t, hn::Set(d, 0.414213562f));
  const V u = hn::IfThenElse(reduced, hn::Div(hn::Sub(t, one), hn::Add(t, one)), t);
  const V s = hn::Mul(u, u);
  V p = hn::Set(d, -1.0f / 17.0f);
  p = hn::Add(hn::Mul(p, s), hn::Set(d, 1.0f / 15.0f));
  p = hn::Sub(hn::Mul(p, s), hn::Set(d, 1.0f / 13.0f));
  p = hn::Add(hn::Mul(p, s), hn::Set(d, 1.0f / 11.0f));
  p = hn::Sub(hn::Mul(p, s), hn::Set(d, 1.0f / 9.0f));
  p = hn::Add(hn::Mul(p, s), hn::Set(d, 1.0f / 7.0f));
  p = hn::Sub(hn::Mul(p, s), hn::Set(d, 1.0f / 5.0f));
  p = hn::Add(hn::Mul(p, s), hn::Set(d, 1.0f / 3.0f));
  V a = hn::Sub(u, hn::Mul(hn::Mul(u, s), p));
  a = hn::IfThenElse(reduced, hn::Add(hn::Set(d, 0.785398163f), a), a);
  a = hn::IfThenElse(hn::Gt(ay, ax), hn::Sub(hn::Set(d, 1.57079633f), a), a);
  a = hn::IfThenElse(hn::Lt(x, zero), hn::Sub(hn::Set(d, 3.14159265f), a), a);
  a = hn::IfThenElse(hn::Lt(y, zero), hn::Sub(hn::Set(d, 6.28318531f), a), a);
  return a;
}

void PairAnglesImpl(const float* HWY_RESTRICT v, size_t pairs, uint32_t n,
                    uint32_t* HWY_RESTRICT bins, float* HWY_RESTRICT radii) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t N = hn::Lanes(d);
  const float per_radian = static_cast<float>(n) * 0.159154943f;  // as AngleBin
  const auto vpr = hn::Set(d, per_radian);
  const auto last = hn::Set(di, static_cast<int32_t>(n - 1));
  size_t i = 0;
  for (; i + N <= pairs; i += N) {
    hn::Vec<decltype(d)> x, y;
    hn::LoadInterleaved2(d, v + 2 * i, x, y);
    const auto position = hn::Mul(Angle(d, x, y), vpr);
    // position > 0 ? uint32(position) : 0, then at most n - 1. Lanes are
    // zeroed before the conversion: a NaN position (an infinite rotated
    // pair, whose vector the encoder then rejects) must not be converted,
    // which is undefined on emulated targets (found by fuzzing, UBSan).
    auto bin = hn::ConvertTo(di, hn::IfThenElseZero(hn::Gt(position, hn::Zero(d)), position));
    bin = hn::IfThenElse(hn::Lt(bin, last), bin, last);
    hn::StoreU(bin, di, reinterpret_cast<int32_t*>(bins + i));
    if (radii != nullptr) {
      hn::StoreU(hn::Sqrt(hn::Add(hn::Mul(x, x), hn::Mul(y, y))), d, radii + i);
    }
  }
  for (; i < pairs; ++i) {
    const float x = v[2 * i], y = v[2 * i + 1];
    bins[i] = AngleBin(x, y, n);
    if (radii != nullptr) radii[i] = std::sqrt(x * x + y * y);
  }
}

void FoldPairsImpl(const float* HWY_RESTRICT r, size_t pairs,
                   const float* HWY_RESTRICT tan_thresholds, size_t count,
                   uint32_t* HWY_RESTRICT bins, float* HWY_RESTRICT radii) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= pairs; i += N) {
    hn::Vec<decltype(d)> e, o;
    hn::LoadInterleaved2(d, r + 2 * i, e, o);
    auto bin = hn::Zero(di);
    for (size_t k = 0; k < count; ++k) {  // mask lanes are -1
      const auto above = hn::Lt(hn::Mul(hn::Set(d, tan_thresholds[k]), e), o);
      bin = hn::Sub(bin, hn::VecFromMask(di, hn::RebindMask(di, above)));
    }
    hn::StoreU(bin, di, reinterpret_cast<int32_t*>(bins + i));
    hn::StoreU(hn::Sqrt(hn::Add(hn::Mul(e, e), hn::Mul(o, o))), d, radii + i);
  }
  for (; i < pairs; ++i) {
    const float e = r[2 * i], o = r[2 * i + 1];
    uint32_t bin = 0;
    for (size_t k = 0; k < count; ++k) bin += o > tan_thresholds[k] * e;
    bins[i] = bin;
    radii[i] = std::sqrt(e * e + o * o);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(PairAnglesImpl);
HWY_EXPORT(FoldPairsImpl);

void FoldPairs(const float* r, size_t pairs, const float* tan_thresholds, size_t count,
               uint32_t* bins, float* radii) {
  HWY_DYNAMIC_DISPATCH(FoldPairsImpl)(r, pairs, tan_thresholds, count, bins, radii);
}

void PairAngles(const float* v, size_t pairs, uint32_t n, uint32_t* bins, float* radii) {
  HWY_DYNAMIC_DISPATCH(PairAnglesImpl)(v, pairs, n, bins, radii);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
