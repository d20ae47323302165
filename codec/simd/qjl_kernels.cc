// QJL signs: four vectors of rows at a time (independent accumulators hide
// the add latency); every lane accumulates its own row in ascending j.
#include "simd/qjl_kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/qjl_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void QjlSignsImpl(const float* HWY_RESTRICT st, const float* HWY_RESTRICT r, size_t d,
                  uint8_t* HWY_RESTRICT signs) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const size_t N = hn::Lanes(df);
  const auto one = hn::Set(di, 1);
  auto store = [&](decltype(hn::Zero(df)) z, size_t i) HWY_ATTR {
    const auto neg = hn::RebindMask(di, hn::Lt(z, hn::Zero(df)));
    hn::StoreU(hn::DemoteTo(d8, hn::IfThenElseZero(neg, one)), d8, signs + i);
  };
  size_t i = 0;
  for (; i + 4 * N <= d; i += 4 * N) {
    auto z0 = hn::Zero(df), z1 = hn::Zero(df), z2 = hn::Zero(df), z3 = hn::Zero(df);
    for (size_t j = 0; j < d; ++j) {
      const float* col = st + j * d + i;
      const auto rj = hn::Set(df, r[j]);
      z0 = hn::Add(z0, hn::Mul(hn::LoadU(df, col), rj));
      z1 = hn::Add(z1, hn::Mul(hn::LoadU(df, col + N), rj));
      z2 = hn::Add(z2, hn::Mul(hn::LoadU(df, col + 2 * N), rj));
      z3 = hn::Add(z3, hn::Mul(hn::LoadU(df, col + 3 * N), rj));
    }
    store(z0, i);
    store(z1, i + N);
    store(z2, i + 2 * N);
    store(z3, i + 3 * N);
  }
  for (; i + N <= d; i += N) {
    auto z = hn::Zero(df);
    for (size_t j = 0; j < d; ++j) {
      z = hn::Add(z, hn::Mul(hn::LoadU(df, st + j * d + i), hn::Set(df, r[j])));
    }
    store(z, i);
  }
  for (; i < d; ++i) {
    float z = 0.0f;
    for (size_t j = 0; j < d; ++j) z = z + st[j * d + i] * r[j];
    signs[i] = z < 0.0f ? 1 : 0;
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

HWY_EXPORT(QjlSignsImpl);

void QjlSigns(const float* st, const float* r, size_t d, uint8_t* signs) {
  HWY_DYNAMIC_DISPATCH(QjlSignsImpl)(st, r, d, signs);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
