// QJL signs: four vectors of rows at a time (independent accumulators hide
// the add latency); every lane accumulates its own row in ascending j. And
// the decoder's correction S^T s, every lane a column in ascending rows.
#include "simd/qjl_kernels.h"

#include <type_traits>

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

// Up to 16 vectors of columns stay in registers while every row of S is
// added to them; c - r is computed as c + (-r), which is exact.
void QjlCorrectRowsImpl(const float* HWY_RESTRICT s, const uint8_t* HWY_RESTRICT signs,
                        const float* HWY_RESTRICT factors, size_t count, size_t d,
                        float* HWY_RESTRICT y) {
  using D = hn::ScalableTag<float>;
  const D df;
  const hn::RebindToUnsigned<D> du;
  const size_t N = hn::Lanes(df);
  for (size_t n = 0; n < count; ++n) {
    const uint8_t* row_signs = signs + n * (d / 8);
    float* out = y + n * d;
    const auto factor = hn::Set(df, factors[n]);
#if HWY_HAVE_SCALABLE
    // SVE: sizeless vectors cannot be array elements, so four named
    // accumulators (kBlock = 4 or 1 vectors of columns j.. at a time).
    auto block = [&](size_t j, auto block_size) HWY_ATTR {
      constexpr size_t kBlock = decltype(block_size)::value;
      auto c0 = hn::Zero(df), c1 = c0, c2 = c0, c3 = c0;
      for (size_t i = 0; i < d; ++i) {
        const uint32_t bit = (row_signs[i / 8] >> (i % 8)) & 1u;
        const auto flip = hn::BitCast(df, hn::Set(du, bit << 31));
        const float* row = s + i * d + j;
        c0 = hn::Add(c0, hn::Xor(hn::LoadU(df, row), flip));
        if (kBlock > 1) c1 = hn::Add(c1, hn::Xor(hn::LoadU(df, row + N), flip));
        if (kBlock > 2) c2 = hn::Add(c2, hn::Xor(hn::LoadU(df, row + 2 * N), flip));
        if (kBlock > 3) c3 = hn::Add(c3, hn::Xor(hn::LoadU(df, row + 3 * N), flip));
      }
      auto add = [&](hn::Vec<D> c, size_t k) HWY_ATTR {
        float* at = out + j + k * N;
        hn::StoreU(hn::Add(hn::LoadU(df, at), hn::Mul(c, factor)), df, at);
      };
      add(c0, 0);
      if (kBlock > 1) add(c1, 1);
      if (kBlock > 2) add(c2, 2);
      if (kBlock > 3) add(c3, 3);
    };
    size_t j = 0;
    for (; j + 4 * N <= d; j += 4 * N) block(j, std::integral_constant<size_t, 4>());
#else
    // kBlock vectors of columns j.. at a time, in registers.
    auto block = [&](size_t j, auto block_size) HWY_ATTR {
      constexpr size_t kBlock = decltype(block_size)::value;
      hn::Vec<D> c[kBlock];
      HWY_UNROLL(16)
      for (size_t k = 0; k < kBlock; ++k) c[k] = hn::Zero(df);
      for (size_t i = 0; i < d; ++i) {
        const uint32_t bit = (row_signs[i / 8] >> (i % 8)) & 1u;
        const auto flip = hn::BitCast(df, hn::Set(du, bit << 31));
        const float* row = s + i * d + j;
        HWY_UNROLL(16)
        for (size_t k = 0; k < kBlock; ++k) {
          c[k] = hn::Add(c[k], hn::Xor(hn::LoadU(df, row + k * N), flip));
        }
      }
      HWY_UNROLL(16)
      for (size_t k = 0; k < kBlock; ++k) {
        float* at = out + j + k * N;
        hn::StoreU(hn::Add(hn::LoadU(df, at), hn::Mul(c[k], factor)), df, at);
      }
    };
    size_t j = 0;
    for (; j + 16 * N <= d; j += 16 * N) block(j, std::integral_constant<size_t, 16>());
    for (; j + 8 * N <= d; j += 8 * N) block(j, std::integral_constant<size_t, 8>());
    for (; j + 4 * N <= d; j += 4 * N) block(j, std::integral_constant<size_t, 4>());
#endif
    for (; j + N <= d; j += N) block(j, std::integral_constant<size_t, 1>());
    for (; j < d; ++j) {
      float c = 0.0f;
      for (size_t i = 0; i < d; ++i) {
        c = (row_signs[i / 8] >> (i % 8)) & 1 ? c - s[i * d + j] : c + s[i * d + j];
      }
      out[j] = out[j] + c * factors[n];
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

HWY_EXPORT(QjlSignsImpl);
HWY_EXPORT(QjlCorrectRowsImpl);

void QjlSigns(const float* st, const float* r, size_t d, uint8_t* signs) {
  HWY_DYNAMIC_DISPATCH(QjlSignsImpl)(st, r, d, signs);
}

void QjlCorrectRows(const float* s, const uint8_t* signs, const float* factors, size_t count,
                    size_t d, float* y) {
  HWY_DYNAMIC_DISPATCH(QjlCorrectRowsImpl)(s, signs, factors, count, d, y);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
