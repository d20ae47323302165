// QJL signs: four vectors of outputs at a time (independent accumulators
// hide the add latency) for up to three residuals at once (each load of S
// serves all of them); every lane accumulates its own output in ascending j. And
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

// out[lane] = 1 where z < 0, else 0.
template <class D>
HWY_INLINE void StoreSigns(D df, hn::Vec<D> z, uint8_t* HWY_RESTRICT out) {
  const hn::RebindToSigned<D> di;
  const auto negative = hn::RebindMask(di, hn::Lt(z, hn::Zero(df)));
  hn::StoreU(hn::DemoteTo(hn::Rebind<uint8_t, D>(), hn::IfThenElseZero(negative, hn::Set(di, 1))),
             hn::Rebind<uint8_t, D>(), out);
}

// kRows (1 or 3) residuals share each load of S^T, with four vectors of
// outputs i.. each: twelve accumulators at most, which leaves AVX2's
// sixteen registers the broadcasts and a load (the compiler folds the
// other loads into the multiplications).
template <size_t kRows, class D>
HWY_INLINE void SignsBlock(D df, const float* HWY_RESTRICT st, const float* HWY_RESTRICT r,
                           size_t d, size_t i, uint8_t* HWY_RESTRICT signs) {
  const size_t N = hn::Lanes(df);
  auto store = [&](hn::Vec<D> z, size_t row, size_t at) HWY_ATTR {
    StoreSigns(df, z, signs + row * d + at);
  };
  // Named accumulators: sizeless (SVE) vectors cannot be array elements.
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;  // row 0
  auto b0 = a0, b1 = a0, b2 = a0, b3 = a0;            // row 1
  auto c0 = a0, c1 = a0, c2 = a0, c3 = a0;            // row 2
  for (size_t j = 0; j < d; ++j) {
    const float* col = st + j * d + i;
    const auto s0 = hn::LoadU(df, col), s1 = hn::LoadU(df, col + N);
    const auto s2 = hn::LoadU(df, col + 2 * N), s3 = hn::LoadU(df, col + 3 * N);
    const auto ra = hn::Set(df, r[j]);
    a0 = hn::Add(a0, hn::Mul(s0, ra));
    a1 = hn::Add(a1, hn::Mul(s1, ra));
    a2 = hn::Add(a2, hn::Mul(s2, ra));
    a3 = hn::Add(a3, hn::Mul(s3, ra));
    if (kRows > 1) {
      const auto rb = hn::Set(df, r[d + j]);
      b0 = hn::Add(b0, hn::Mul(s0, rb));
      b1 = hn::Add(b1, hn::Mul(s1, rb));
      b2 = hn::Add(b2, hn::Mul(s2, rb));
      b3 = hn::Add(b3, hn::Mul(s3, rb));
    }
    if (kRows > 2) {
      const auto rc = hn::Set(df, r[2 * d + j]);
      c0 = hn::Add(c0, hn::Mul(s0, rc));
      c1 = hn::Add(c1, hn::Mul(s1, rc));
      c2 = hn::Add(c2, hn::Mul(s2, rc));
      c3 = hn::Add(c3, hn::Mul(s3, rc));
    }
  }
  store(a0, 0, i), store(a1, 0, i + N), store(a2, 0, i + 2 * N), store(a3, 0, i + 3 * N);
  if (kRows > 1) {
    store(b0, 1, i), store(b1, 1, i + N), store(b2, 1, i + 2 * N), store(b3, 1, i + 3 * N);
  }
  if (kRows > 2) {
    store(c0, 2, i), store(c1, 2, i + N), store(c2, 2, i + 2 * N), store(c3, 2, i + 3 * N);
  }
}

void QjlSignsImpl(const float* HWY_RESTRICT st, const float* HWY_RESTRICT r, size_t count,
                  size_t d, uint8_t* HWY_RESTRICT signs) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  // Rows a block of kRowBlock at a time, the last ones one at a time.
  constexpr size_t kRowBlock = HWY_TARGET == HWY_SCALAR ? 1 : 3;
  for (size_t n = 0; n < count;) {
    const size_t rows = count - n >= kRowBlock ? kRowBlock : 1;
    const float* rn = r + n * d;
    uint8_t* out = signs + n * d;
    size_t i = 0;
    for (; i + 4 * N <= d; i += 4 * N) {
      if (rows == 3) {
        SignsBlock<3>(df, st, rn, d, i, out);
      } else {
        SignsBlock<1>(df, st, rn, d, i, out);
      }
    }
    for (size_t k = 0; k < rows; ++k) {
      const float* rk = rn + k * d;
      uint8_t* ok = out + k * d;
      for (size_t i1 = i; i1 + N <= d; i1 += N) {
        auto z = hn::Zero(df);
        for (size_t j = 0; j < d; ++j) {
          z = hn::Add(z, hn::Mul(hn::LoadU(df, st + j * d + i1), hn::Set(df, rk[j])));
        }
        StoreSigns(df, z, ok + i1);
      }
      for (size_t i1 = d - d % N; i1 < d; ++i1) {
        float z = 0.0f;
        for (size_t j = 0; j < d; ++j) z = z + st[j * d + i1] * rk[j];
        ok[i1] = z < 0.0f ? 1 : 0;
      }
    }
    n += rows;
  }
}

// Up to 16 vectors of columns stay in registers while every row of S is
// added to them. A set sign bit adds the row of -S instead (stored after
// S's, so the reads run forward): c + (-r) is c - r exactly, and no lane
// work is spent on the sign.
void QjlCorrectRowsImpl(const float* HWY_RESTRICT s, const uint8_t* HWY_RESTRICT signs,
                        const float* HWY_RESTRICT factors, size_t count, size_t d,
                        float* HWY_RESTRICT y) {
  using D = hn::ScalableTag<float>;
  const D df;
  const size_t N = hn::Lanes(df);
  for (size_t n = 0; n < count; ++n) {
    const uint8_t* row_signs = signs + n * (d / 8);
    float* out = y + n * d;
    const auto factor = hn::Set(df, factors[n]);
    auto signed_row = [&](size_t i) -> const float* {  // arithmetic, not a branch
      const size_t bit = (row_signs[i / 8] >> (i % 8)) & 1u;
      return s + (2 * i + bit) * d;
    };
#if HWY_HAVE_SCALABLE
    // SVE: sizeless vectors cannot be array elements, so four named
    // accumulators (kBlock = 4 or 1 vectors of columns j.. at a time).
    auto block = [&](size_t j, auto block_size) HWY_ATTR {
      constexpr size_t kBlock = decltype(block_size)::value;
      auto c0 = hn::Zero(df), c1 = c0, c2 = c0, c3 = c0;
      for (size_t i = 0; i < d; ++i) {
        const float* row = signed_row(i) + j;
        c0 = hn::Add(c0, hn::LoadU(df, row));
        if (kBlock > 1) c1 = hn::Add(c1, hn::LoadU(df, row + N));
        if (kBlock > 2) c2 = hn::Add(c2, hn::LoadU(df, row + 2 * N));
        if (kBlock > 3) c3 = hn::Add(c3, hn::LoadU(df, row + 3 * N));
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
        const float* row = signed_row(i) + j;
        HWY_UNROLL(16)
        for (size_t k = 0; k < kBlock; ++k) c[k] = hn::Add(c[k], hn::LoadU(df, row + k * N));
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
      for (size_t i = 0; i < d; ++i) c = c + signed_row(i)[j];
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

void QjlSigns(const float* st, const float* r, size_t count, size_t d, uint8_t* signs) {
  HWY_DYNAMIC_DISPATCH(QjlSignsImpl)(st, r, count, d, signs);
}

void QjlCorrectRows(const float* s, const uint8_t* signs, const float* factors, size_t count,
                    size_t d, float* y) {
  HWY_DYNAMIC_DISPATCH(QjlCorrectRowsImpl)(s, signs, factors, count, d, y);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
