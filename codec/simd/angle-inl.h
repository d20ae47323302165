// PortableAngle / AngleBin (base/portable_math.cc) lane-parallel, shared by
// the angle kernels: the same f32 operations in the same order (selects
// instead of branches, exact division and square root, no fused
// multiply-add), so the bins are those of the scalar reference on every
// target. Included inside HWY_NAMESPACE once per target.

// Per-target include guard (Highway's toggle idiom).
#if defined(KVCODEC_CODEC_SIMD_ANGLE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVCODEC_CODEC_SIMD_ANGLE_INL_H_
#undef KVCODEC_CODEC_SIMD_ANGLE_INL_H_
#else
#define KVCODEC_CODEC_SIMD_ANGLE_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The steps of PortableAngle on one vector of pairs, shared by the forms
// below (inlined: the same instructions as if written out in each).
//
// t = lo / hi of |x| and |y|. lo = ax < ay ? ax : ay and hi = the other: Min
// and Max agree with them on all but NaN, and an angle is kept only for
// finite pairs (a vector with a non-finite coordinate is rejected by every
// encoder). Lanes with hi == 0 divide 0 by a placeholder 1 and are replaced
// by 0.
template <class D, class V>
HWY_INLINE V AngleRatio(D d, V x, V y) {
  const V ax = hn::Abs(x), ay = hn::Abs(y);
  const V lo = hn::Min(ax, ay), hi = hn::Max(ax, ay);
  const auto hi_pos = hn::Gt(hi, hn::Zero(d));
  return hn::IfThenElseZero(hi_pos, hn::Div(lo, hn::IfThenElse(hi_pos, hi, hn::Set(d, 1.0f))));
}

// atan(t) = pi/4 + atan((t - 1) / (t + 1)) keeps the series argument small.
template <class D, class V>
HWY_INLINE V AtanArgument(D d, V t) {
  const V one = hn::Set(d, 1.0f);
  return hn::IfThenElse(hn::Gt(t, hn::Set(d, 0.414213562f)),
                        hn::Div(hn::Sub(t, one), hn::Add(t, one)), t);
}

// The series' terms after the first, -1/17: p = p * s + c or p * s - c, as
// the reference writes each; term(c, subtract) applies one.
template <class Term>
HWY_INLINE void AtanTerms(Term&& term) {
  term(1.0f / 15.0f, false);
  term(1.0f / 13.0f, true);
  term(1.0f / 11.0f, false);
  term(1.0f / 9.0f, true);
  term(1.0f / 7.0f, false);
  term(1.0f / 5.0f, true);
  term(1.0f / 3.0f, false);
}

// The angle in [0, 2pi] from the series p of u (s = u * u) and the octant.
template <class D, class V>
HWY_INLINE V AngleFromSeries(D d, V x, V y, V t, V u, V s, V p) {
  V r = hn::Sub(u, hn::Mul(hn::Mul(u, s), p));  // u - u^3/3 + u^5/5 - ...
  r = hn::IfThenElse(hn::Gt(t, hn::Set(d, 0.414213562f)), hn::Add(hn::Set(d, 0.785398163f), r),
                     r);
  r = hn::IfThenElse(hn::Gt(hn::Abs(y), hn::Abs(x)), hn::Sub(hn::Set(d, 1.57079633f), r), r);
  const V zero = hn::Zero(d);
  r = hn::IfThenElse(hn::Lt(x, zero), hn::Sub(hn::Set(d, 3.14159265f), r), r);
  return hn::IfThenElse(hn::Lt(y, zero), hn::Sub(hn::Set(d, 6.28318531f), r), r);
}

// AngleBin's position > 0 ? uint32(position) : 0, then at most n - 1, given
// per_radian = f32(n) * 0.159154943f and last = n - 1. Lanes are zeroed
// before the conversion: a NaN position (an infinite rotated pair, whose
// vector the encoder then rejects) must not be converted, which is undefined
// on emulated targets (found by fuzzing, UBSan).
template <class D, class V, class VI>
HWY_INLINE VI BinOfAngle(D d, V a, V per_radian, VI last) {
  const hn::RebindToSigned<D> di;
  const V position = hn::Mul(a, per_radian);
  const VI bin = hn::ConvertTo(di, hn::IfThenElseZero(hn::Gt(position, hn::Zero(d)), position));
  return hn::IfThenElse(hn::Lt(bin, last), bin, last);
}

#if HWY_HAVE_SCALABLE
// SVE: sizeless vectors cannot be array elements or be indexed through a
// pointer, so one vector at a time (M = 1), the steps in the same order.
template <size_t M, class D, class V = hn::Vec<D>, class VI = hn::Vec<hn::RebindToSigned<D>>>
HWY_INLINE void AngleBins(D d, const V* x, const V* y, V per_radian, VI last, VI* bins) {
  static_assert(M == 1, "one vector at a time on scalable targets");
  const V t = AngleRatio(d, *x, *y);
  const V u = AtanArgument(d, t);
  const V s = hn::Mul(u, u);
  V p = hn::Set(d, -1.0f / 17.0f);
  AtanTerms([&](float c, bool subtract) HWY_ATTR {
    const V ps = hn::Mul(p, s);
    p = subtract ? hn::Sub(ps, hn::Set(d, c)) : hn::Add(ps, hn::Set(d, c));
  });
  *bins = BinOfAngle(d, AngleFromSeries(d, *x, *y, t, u, s, p), per_radian, last);
}
#else
// PortableAngle(x, y) in [0, 2pi] of M vectors of pairs, one step at a time
// across the M vectors: two divisions and an 8-term polynomial make a long
// chain of latency, which the other vectors' steps hide.
template <size_t M, class D, class V = hn::Vec<D>>
HWY_INLINE void Angles(D d, const V* x, const V* y, V* a) {
  V t[M], u[M], s[M], p[M];
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) t[m] = AngleRatio(d, x[m], y[m]);
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) {
    u[m] = AtanArgument(d, t[m]);
    s[m] = hn::Mul(u[m], u[m]);
    p[m] = hn::Set(d, -1.0f / 17.0f);
  }
  AtanTerms([&](float c, bool subtract) HWY_ATTR {
    const V vc = hn::Set(d, c);
    HWY_UNROLL(8)
    for (size_t m = 0; m < M; ++m) {
      const V ps = hn::Mul(p[m], s[m]);
      p[m] = subtract ? hn::Sub(ps, vc) : hn::Add(ps, vc);
    }
  });
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) a[m] = AngleFromSeries(d, x[m], y[m], t[m], u[m], s[m], p[m]);
}

// AngleBin(x, y, n) of M vectors of pairs (BinOfAngle).
template <size_t M, class D, class V = hn::Vec<D>, class VI = hn::Vec<hn::RebindToSigned<D>>>
HWY_INLINE void AngleBins(D d, const V* x, const V* y, V per_radian, VI last, VI* bins) {
  V a[M];
  Angles<M>(d, x, y, a);
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) bins[m] = BinOfAngle(d, a[m], per_radian, last);
}
#endif  // HWY_HAVE_SCALABLE

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#endif  // KVCODEC_CODEC_SIMD_ANGLE_INL_H_ toggle
