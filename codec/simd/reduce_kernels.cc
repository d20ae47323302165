// Reductions: element j goes to partial sum j % 16 in ascending j, products
// rounded before the addition (OrderedDot, simd/rows-inl.h), so every
// target adds the same numbers in the same order.
#include "simd/reduce_kernels.h"

#include <cmath>

#include "quant/vector_math.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/reduce_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "simd/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float DotProductImpl(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  return OrderedDot<false>(a, b, n, n);
}
float SumOfSquaresImpl(const float* HWY_RESTRICT a, size_t n) {
  return OrderedDot<true>(a, a, n, n);
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

// Channel sums (kSquares: of squares) in f64 lanes (half as many as f32
// lanes): the same products and sums as the scalar loops, lane by lane.
template <bool kSquares>
HWY_INLINE void AccumulateChannels(const float* HWY_RESTRICT x, size_t d, size_t count,
                                   double* HWY_RESTRICT sums) {
  size_t j0 = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t N = hn::Lanes(dd);
  for (; j0 + N <= d; j0 += N) {
    auto s = hn::LoadU(dd, sums + j0);
    for (size_t n = 0; n < count; ++n) {
      const auto v = hn::PromoteTo(dd, hn::LoadU(df, x + n * d + j0));
      s = hn::Add(s, kSquares ? hn::Mul(v, v) : v);
    }
    hn::StoreU(s, dd, sums + j0);
  }
#endif
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = j0; j < d; ++j) {
      const double v = x[n * d + j];
      sums[j] += kSquares ? v * v : v;
    }
  }
}

void AccumulateSquaresImpl(const float* HWY_RESTRICT x, size_t d, size_t count,
                           double* HWY_RESTRICT energy) {
  AccumulateChannels<true>(x, d, count, energy);
}
void AccumulateColumnsImpl(const float* HWY_RESTRICT x, size_t d, size_t count,
                           double* HWY_RESTRICT sums) {
  AccumulateChannels<false>(x, d, count, sums);
}

void AccumulatePairEnergiesImpl(const float* HWY_RESTRICT x, size_t d, size_t count,
                                bool interleaved, double* HWY_RESTRICT energy) {
  const size_t blocks = d / 2;
  size_t i0 = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t N = hn::Lanes(dd);
  for (; i0 + N <= blocks; i0 += N) {
    auto e = hn::LoadU(dd, energy + i0);
    for (size_t n = 0; n < count; ++n) {
      const float* v = x + n * d;
      hn::Vec<decltype(df)> a, b;
      if (interleaved) {
        hn::LoadInterleaved2(df, v + 2 * i0, a, b);
      } else {
        a = hn::LoadU(df, v + i0);
        b = hn::LoadU(df, v + i0 + blocks);
      }
      const auto da = hn::PromoteTo(dd, a), db = hn::PromoteTo(dd, b);
      e = hn::Add(e, hn::Add(hn::Mul(da, da), hn::Mul(db, db)));
    }
    hn::StoreU(e, dd, energy + i0);
  }
#endif
  for (size_t n = 0; n < count; ++n) {
    const float* v = x + n * d;
    for (size_t i = i0; i < blocks; ++i) {
      const float a = interleaved ? v[2 * i] : v[i];
      const float b = interleaved ? v[2 * i + 1] : v[i + blocks];
      energy[i] += static_cast<double>(a) * a + static_cast<double>(b) * b;
    }
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

HWY_EXPORT(DotProductImpl);
HWY_EXPORT(SumOfSquaresImpl);
HWY_EXPORT(AllFiniteImpl);
HWY_EXPORT(AccumulateSquaresImpl);
HWY_EXPORT(AccumulateColumnsImpl);
HWY_EXPORT(AccumulatePairEnergiesImpl);

float DotProduct(const float* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotProductImpl)(a, b, n);
}
float SumOfSquares(const float* a, size_t n) {
  return HWY_DYNAMIC_DISPATCH(SumOfSquaresImpl)(a, n);
}
bool AllFinite(const float* a, size_t n) {
  return HWY_DYNAMIC_DISPATCH(AllFiniteImpl)(a, n);
}

void AccumulateSquares(const float* x, size_t d, size_t count, double* energy) {
  HWY_DYNAMIC_DISPATCH(AccumulateSquaresImpl)(x, d, count, energy);
}
void AccumulateColumns(const float* x, size_t d, size_t count, double* sums) {
  HWY_DYNAMIC_DISPATCH(AccumulateColumnsImpl)(x, d, count, sums);
}
void AccumulatePairEnergies(const float* x, size_t d, size_t count, bool interleaved,
                            double* energy) {
  HWY_DYNAMIC_DISPATCH(AccumulatePairEnergiesImpl)(x, d, count, interleaved, energy);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
