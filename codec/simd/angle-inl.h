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

// PortableAngle(x, y) in [0, 2pi] of M vectors of pairs, one step at a time
// across the M vectors: two divisions and an 8-term polynomial make a long
// chain of latency, which the other vectors' steps hide.
template <size_t M, class D, class V = hn::Vec<D>>
HWY_INLINE void Angles(D d, const V* x, const V* y, V* a) {
  const V zero = hn::Zero(d), one = hn::Set(d, 1.0f);
  const V tan_pi_8 = hn::Set(d, 0.414213562f);
  V t[M], u[M], s[M], p[M];
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) {
    // lo = ax < ay ? ax : ay and hi = the other: Min and Max agree with them
    // on all but NaN, and an angle is kept only for finite pairs (a vector
    // with a non-finite coordinate is rejected by every encoder).
    const V ax = hn::Abs(x[m]), ay = hn::Abs(y[m]);
    const V lo = hn::Min(ax, ay), hi = hn::Max(ax, ay);
    // Lanes with hi == 0 divide 0 by a placeholder 1 and are replaced by 0.
    const auto hi_pos = hn::Gt(hi, zero);
    t[m] = hn::IfThenElseZero(hi_pos, hn::Div(lo, hn::IfThenElse(hi_pos, hi, one)));
  }
  // atan(t) = pi/4 + atan((t - 1) / (t + 1)) keeps the series argument small.
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) {
    u[m] = hn::IfThenElse(hn::Gt(t[m], tan_pi_8), hn::Div(hn::Sub(t[m], one), hn::Add(t[m], one)),
                          t[m]);
    s[m] = hn::Mul(u[m], u[m]);
    p[m] = hn::Set(d, -1.0f / 17.0f);
  }
  // p = p * s + c or p * s - c, as the reference writes each term.
  auto term = [&](float c, bool subtract) HWY_ATTR {
    const V vc = hn::Set(d, c);
    HWY_UNROLL(8)
    for (size_t m = 0; m < M; ++m) {
      const V ps = hn::Mul(p[m], s[m]);
      p[m] = subtract ? hn::Sub(ps, vc) : hn::Add(ps, vc);
    }
  };
  term(1.0f / 15.0f, false);
  term(1.0f / 13.0f, true);
  term(1.0f / 11.0f, false);
  term(1.0f / 9.0f, true);
  term(1.0f / 7.0f, false);
  term(1.0f / 5.0f, true);
  term(1.0f / 3.0f, false);
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) {
    V r = hn::Sub(u[m], hn::Mul(hn::Mul(u[m], s[m]), p[m]));  // u - u^3/3 + u^5/5 - ...
    r = hn::IfThenElse(hn::Gt(t[m], tan_pi_8), hn::Add(hn::Set(d, 0.785398163f), r), r);
    r = hn::IfThenElse(hn::Gt(hn::Abs(y[m]), hn::Abs(x[m])), hn::Sub(hn::Set(d, 1.57079633f), r),
                       r);
    r = hn::IfThenElse(hn::Lt(x[m], zero), hn::Sub(hn::Set(d, 3.14159265f), r), r);
    a[m] = hn::IfThenElse(hn::Lt(y[m], zero), hn::Sub(hn::Set(d, 6.28318531f), r), r);
  }
}

// AngleBin(x, y, n) of M vectors of pairs, given per_radian = f32(n) *
// 0.159154943f and last = n - 1: position > 0 ? uint32(position) : 0, then
// at most n - 1. Lanes are zeroed before the conversion: a NaN position (an
// infinite rotated pair, whose vector the encoder then rejects) must not be
// converted, which is undefined on emulated targets (found by fuzzing, UBSan).
template <size_t M, class D, class V = hn::Vec<D>, class VI = hn::Vec<hn::RebindToSigned<D>>>
HWY_INLINE void AngleBins(D d, const V* x, const V* y, V per_radian, VI last, VI* bins) {
  const hn::RebindToSigned<D> di;
  V a[M];
  Angles<M>(d, x, y, a);
  HWY_UNROLL(8)
  for (size_t m = 0; m < M; ++m) {
    const V position = hn::Mul(a[m], per_radian);
    const VI bin =
        hn::ConvertTo(di, hn::IfThenElseZero(hn::Gt(position, hn::Zero(d)), position));
    bins[m] = hn::IfThenElse(hn::Lt(bin, last), bin, last);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#endif  // KVCODEC_CODEC_SIMD_ANGLE_INL_H_ toggle
