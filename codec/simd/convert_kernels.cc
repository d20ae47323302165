// f16/bf16 <-> f32 rows. Highway's PromoteTo/DemoteTo are not used: F16C
// quiets signalling NaNs and the emulated paths differ in NaN payloads, while
// base/half.h (the format's definition) keeps them. The formulas below are
// exact integer versions of base/half.h; the only float operations are a
// multiplication by 2^112 and an addition of 0.5f, both exactly rounded on
// every target.
#include "simd/convert_kernels.h"

#include "base/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/convert_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class DF, class VI>
HWY_INLINE hn::Vec<DF> HalfBitsToF32(DF df, VI h) {
  const hn::RebindToSigned<DF> di;
  const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(di, 0x8000)));
  const auto em = hn::And(h, hn::Set(di, 0x7FFF));
  const auto shifted = hn::ShiftLeft<13>(em);
  // Normal and subnormal: reinterpret, then scale by 2^112 (exact).
  const auto finite = hn::BitCast(
      di, hn::Mul(hn::BitCast(df, shifted), hn::BitCast(df, hn::Set(di, 0x77800000))));
  const auto special = hn::Add(shifted, hn::Set(di, 0x70000000));  // inf / NaN
  const auto is_special = hn::Gt(em, hn::Set(di, 0x7BFF));
  return hn::BitCast(df, hn::Or(hn::IfThenElse(is_special, special, finite), sign));
}

void F16ToF32Impl(const uint16_t* HWY_RESTRICT in, size_t n, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
#if HWY_TARGET <= HWY_AVX2
  // F16C converts every finite value and infinity exactly; it only differs
  // on NaNs (it quiets signalling ones), which take the integer path.
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  for (; i + N <= n; i += N) {
    const auto raw = hn::LoadU(d16, in + i);
    const auto h = hn::PromoteTo(di, raw);
    const auto nan = hn::Gt(hn::And(h, hn::Set(di, 0x7FFF)), hn::Set(di, 0x7C00));
    auto f = hn::PromoteTo(df, hn::BitCast(dh, raw));
    if (HWY_UNLIKELY(!hn::AllFalse(di, nan))) {
      f = hn::IfThenElse(hn::RebindMask(df, nan), HalfBitsToF32(df, h), f);
    }
    hn::StoreU(f, df, out + i);
  }
#endif
  for (; i + N <= n; i += N) {
    const auto h = hn::PromoteTo(di, hn::LoadU(d16, in + i));
    hn::StoreU(HalfBitsToF32(df, h), df, out + i);
  }
  for (; i < n; ++i) out[i] = kvc::F16ToF32(in[i]);
}

void BF16ToF32Impl(const uint16_t* HWY_RESTRICT in, size_t n, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto h = hn::PromoteTo(du, hn::LoadU(d16, in + i));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(h)), df, out + i);
  }
  for (; i < n; ++i) out[i] = kvc::BF16ToF32(in[i]);
}

bool F32ToF16Impl(const float* HWY_RESTRICT in, size_t n, uint16_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  auto overflow = hn::Zero(di);
  size_t i = 0;
#if HWY_TARGET <= HWY_AVX2
  // F16C with round-to-nearest-even (Highway passes _MM_FROUND_NO_EXC, so
  // the immediate's RNE is used, not MXCSR) matches F32ToF16 on every
  // non-NaN input, subnormals and overflow to infinity included: |x| >= 65520
  // (0x477FF000) rounds to infinity. A row holding a NaN is redone by the
  // integer path below.
  {
    const hn::Rebind<hwy::float16_t, decltype(df)> dh;
    const auto limit = hn::Set(df, 65520.0f);
    // Eq is false for NaN (Ne is "ordered" on x86: also false for NaN).
    auto big = hn::Zero(df), ordered = hn::VecFromMask(df, hn::Eq(limit, limit));
    size_t k = 0;
    for (; k + N <= n; k += N) {
      const auto v = hn::LoadU(df, in + k);
      big = hn::Or(big, hn::VecFromMask(df, hn::Ge(hn::Abs(v), limit)));
      ordered = hn::And(ordered, hn::VecFromMask(df, hn::Eq(v, v)));
      hn::StoreU(hn::BitCast(d16, hn::DemoteTo(dh, v)), d16, out + k);
    }
    if (hn::AllTrue(di, hn::Eq(hn::BitCast(di, ordered), hn::Set(di, -1)))) {
      i = k;
      overflow = hn::BitCast(di, big);
    }
  }
#endif
  for (; i + N <= n; i += N) {
    const auto bits = hn::BitCast(di, hn::LoadU(df, in + i));
    const auto sign = hn::And(hn::ShiftRight<16>(bits), hn::Set(di, 0x8000));
    const auto abs = hn::And(bits, hn::Set(di, 0x7FFFFFFF));
    // Normal: drop 13 mantissa bits rounding to nearest even, rebias.
    const auto lsb = hn::And(hn::ShiftRight<13>(abs), hn::Set(di, 1));
    const auto normal = hn::Sub(
        hn::ShiftRight<13>(hn::Add(hn::Add(abs, hn::Set(di, 0xFFF)), lsb)),
        hn::Set(di, 112 << 10));
    // Subnormal (and zero): 0.5f + |x| rounds |x| to a multiple of 2^-24.
    const auto sub = hn::Sub(
        hn::BitCast(di, hn::Add(hn::BitCast(df, abs), hn::Set(df, 0.5f))),
        hn::Set(di, 0x3F000000));
    auto h = hn::IfThenElse(hn::Lt(abs, hn::Set(di, 0x38800000)), sub, normal);
    const auto is_inf = hn::Gt(abs, hn::Set(di, 0x477FEFFF));
    h = hn::IfThenElse(is_inf, hn::Set(di, 0x7C00), h);
    h = hn::IfThenElse(hn::Gt(abs, hn::Set(di, 0x7F800000)), hn::Set(di, 0x7E00), h);
    overflow = hn::Or(overflow, hn::IfThenElseZero(
                                    hn::And(is_inf, hn::Lt(abs, hn::Set(di, 0x7F800001))),
                                    hn::Set(di, 1)));
    hn::StoreU(hn::DemoteTo(d16, hn::Or(h, sign)), d16, out + i);
  }
  bool ok = hn::AllTrue(di, hn::Eq(overflow, hn::Zero(di)));
  for (; i < n; ++i) {
    out[i] = kvc::F32ToF16(in[i]);
    if ((out[i] & 0x7FFF) == 0x7C00) ok = false;
  }
  return ok;
}

void F32ToBF16Impl(const float* HWY_RESTRICT in, size_t n, uint16_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto bits = hn::BitCast(du, hn::LoadU(df, in + i));
    const auto rounded = hn::ShiftRight<16>(hn::Add(
        bits, hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u)))));
    const auto nan = hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40u));
    const auto abs = hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7FFFFFFFu)));
    const auto is_nan = hn::RebindMask(du, hn::Gt(abs, hn::Set(di, 0x7F800000)));
    const auto h = hn::IfThenElse(is_nan, nan, rounded);
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(di, h)), d16, out + i);
  }
  for (; i < n; ++i) out[i] = kvc::F32ToBF16(in[i]);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(F16ToF32Impl);
HWY_EXPORT(BF16ToF32Impl);
HWY_EXPORT(F32ToF16Impl);
HWY_EXPORT(F32ToBF16Impl);

void F16ToF32(const uint16_t* in, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(F16ToF32Impl)(in, n, out);
}
void BF16ToF32(const uint16_t* in, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(BF16ToF32Impl)(in, n, out);
}
bool F32ToF16(const float* in, size_t n, uint16_t* out) {
  return HWY_DYNAMIC_DISPATCH(F32ToF16Impl)(in, n, out);
}
void F32ToBF16(const float* in, size_t n, uint16_t* out) {
  HWY_DYNAMIC_DISPATCH(F32ToBF16Impl)(in, n, out);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
