// The f16 attention baseline (tools/bench_attention_kernels.h). Vectors are
// capped at 16 f32 lanes so that every head_dim multiple of 16 is a whole
// number of them on every target (SVE and RVV included): rows need no tail.
// Up to 4 queries share each loaded key or value row (grouped-query
// attention); their accumulators are named registers, never arrays.
#include "tools/bench_attention_kernels.h"

#include <algorithm>

#include <hwy/base.h>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tools/bench_attention_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace kvc::tools {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 16>;
using DH = hn::Rebind<hwy::float16_t, DF>;

void ConvertToF16Impl(const float* HWY_RESTRICT in, size_t count, uint16_t* HWY_RESTRICT out) {
  const DF df;
  const DH dh;
  const size_t N = hn::Lanes(df);
  auto* h = reinterpret_cast<hwy::float16_t*>(out);
  for (size_t i = 0; i < count; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, in + i)), dh, h + i);
}

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
// The sum of v's 128-bit blocks (4 floats) into out: halves added down.
template <class D>
HWY_INLINE void StoreBlockSums(D d, hn::Vec<D> v, float* HWY_RESTRICT out) {
  if constexpr (hn::MaxLanes(D()) > 4) {
    const hn::Half<D> dh;
    StoreBlockSums(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)), out);
  } else {
    hn::StoreU(v, d, out);
  }
}
#endif

// out[i] = the sum of a_i's lanes, for i < kQ. Where registers are whole
// 128-bit blocks, four at once, as the codec's kernels take them (the same
// care): two interleaving steps leave every block holding the four sums of
// its own lanes, then the blocks are added.
template <size_t kQ, class V>
HWY_INLINE void StoreSums(V a0, V a1, V a2, V a3, float* HWY_RESTRICT out) {
  const DF df;
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if constexpr (kQ > 1) {
    const hn::Repartition<uint64_t, DF> d64;
    const auto pairs01 = hn::BitCast(
        d64, hn::Add(hn::InterleaveLower(df, a0, a1), hn::InterleaveUpper(df, a0, a1)));
    const auto pairs23 = hn::BitCast(
        d64, hn::Add(hn::InterleaveLower(df, a2, a3), hn::InterleaveUpper(df, a2, a3)));
    StoreBlockSums(df, hn::Add(hn::BitCast(df, hn::InterleaveLower(d64, pairs01, pairs23)),
                               hn::BitCast(df, hn::InterleaveUpper(d64, pairs01, pairs23))),
                   out);
    return;
  }
#endif
  out[0] = hn::GetLane(hn::SumOfLanes(df, a0));
  if (kQ > 1) out[1] = hn::GetLane(hn::SumOfLanes(df, a1));
  if (kQ > 2) out[2] = hn::GetLane(hn::SumOfLanes(df, a2));
  if (kQ > 3) out[3] = hn::GetLane(hn::SumOfLanes(df, a3));
}

// kQ (1..4) queries against two key rows at a time: each query vector
// loaded serves both rows, and 2 * kQ independent FMA chains hide the FMA
// latency. Unused query slots alias query 0 and are never stored; an odd
// last row is computed twice (both halves of the pair read it) and stored
// once.
template <size_t kQ>
HWY_INLINE void ScoresGroup(const hwy::float16_t* HWY_RESTRICT keys, size_t tokens, size_t dim,
                            const float* HWY_RESTRICT q0, float* HWY_RESTRICT s0, size_t stride) {
  const DF df;
  const DH dh;
  const size_t N = hn::Lanes(df);
  const float* q1 = kQ > 1 ? q0 + dim : q0;
  const float* q2 = kQ > 2 ? q0 + 2 * dim : q0;
  const float* q3 = kQ > 3 ? q0 + 3 * dim : q0;
  HWY_ALIGN float sums[2][4];
  for (size_t t = 0; t < tokens; t += 2) {
    const bool pair = t + 1 < tokens;
    const hwy::float16_t* ra = keys + t * dim;
    const hwy::float16_t* rb = pair ? ra + dim : ra;
    auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    auto b0 = hn::Zero(df), b1 = hn::Zero(df), b2 = hn::Zero(df), b3 = hn::Zero(df);
    for (size_t j = 0; j < dim; j += N) {
      const auto ka = hn::PromoteTo(df, hn::LoadU(dh, ra + j));
      const auto kb = hn::PromoteTo(df, hn::LoadU(dh, rb + j));
      const auto x0 = hn::LoadU(df, q0 + j);
      a0 = hn::MulAdd(x0, ka, a0);
      b0 = hn::MulAdd(x0, kb, b0);
      if (kQ > 1) {
        const auto x1 = hn::LoadU(df, q1 + j);
        a1 = hn::MulAdd(x1, ka, a1);
        b1 = hn::MulAdd(x1, kb, b1);
      }
      if (kQ > 2) {
        const auto x2 = hn::LoadU(df, q2 + j);
        a2 = hn::MulAdd(x2, ka, a2);
        b2 = hn::MulAdd(x2, kb, b2);
      }
      if (kQ > 3) {
        const auto x3 = hn::LoadU(df, q3 + j);
        a3 = hn::MulAdd(x3, ka, a3);
        b3 = hn::MulAdd(x3, kb, b3);
      }
    }
    StoreSums<kQ>(a0, a1, a2, a3, sums[0]);
    StoreSums<kQ>(b0, b1, b2, b3, sums[1]);
    for (size_t r = 0; r < (pair ? 2 : 1); ++r) {
      for (size_t i = 0; i < kQ; ++i) s0[i * stride + t + r] = sums[r][i];
    }
  }
}

void F16ScoresImpl(const uint16_t* HWY_RESTRICT keys, size_t tokens, size_t dim,
                   const float* HWY_RESTRICT queries, size_t num_queries,
                   float* HWY_RESTRICT scores, size_t stride) {
  const auto* k = reinterpret_cast<const hwy::float16_t*>(keys);
  size_t q = 0;
  for (; q + 4 <= num_queries; q += 4) {
    ScoresGroup<4>(k, tokens, dim, queries + q * dim, scores + q * stride, stride);
  }
  const float* rest = queries + q * dim;
  float* out = scores + q * stride;
  switch (num_queries - q) {
    case 3: ScoresGroup<3>(k, tokens, dim, rest, out, stride); break;
    case 2: ScoresGroup<2>(k, tokens, dim, rest, out, stride); break;
    case 1: ScoresGroup<1>(k, tokens, dim, rest, out, stride); break;
    default: break;
  }
}

// exp(x - max) of the vectors of tag d from x + i on, stored in place, their
// sum added to *sum. The tail of a row goes through the same arithmetic in
// vectors of one lane.
template <class D>
HWY_INLINE size_t ExpShifted(D d, float* HWY_RESTRICT x, size_t i, size_t n, float max,
                             float* sum) {
  const size_t N = hn::Lanes(d);
  // Below -87, Exp leaves its domain; such a term is under 2^-125 of the
  // largest one (which is 1), nothing a float sum can hold.
  const auto lowest = hn::Set(d, -87.0f);
  const auto m = hn::Set(d, max);
  auto total = hn::Zero(d);
  for (; i + N <= n; i += N) {
    const auto a = hn::Sub(hn::LoadU(d, x + i), m);
    const auto e = hn::IfThenZeroElse(hn::Lt(a, lowest), hn::Exp(d, hn::Max(a, lowest)));
    hn::StoreU(e, d, x + i);
    total = hn::Add(total, e);
  }
  *sum += hn::GetLane(hn::SumOfLanes(d, total));
  return i;
}

float ExpShiftedSumImpl(float* HWY_RESTRICT x, size_t n, float* HWY_RESTRICT max) {
  const DF df;
  const size_t N = hn::Lanes(df);
  float best = x[0];
  size_t i = 0;
  if (n >= N) {
    auto m = hn::LoadU(df, x);
    for (i = N; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(df, x + i));
    best = hn::GetLane(hn::MaxOfLanes(df, m));
  }
  for (; i < n; ++i) best = std::max(best, x[i]);
  *max = best;
  float sum = 0.0f;
  const size_t done = ExpShifted(df, x, 0, n, best, &sum);
  ExpShifted(hn::CappedTag<float, 1>(), x, done, n, best, &sum);
  return sum;
}

// kQ (1..4) weight rows against every value row, a tile of tokens at a
// time: the tile's rows (16 KiB for head_dim 128) come from memory once and
// are then read from L1 for each pair of output vectors. Two output vectors
// per pass give 2 * kQ independent FMA chains (one chain per query would
// wait on the FMA latency). An odd last vector is computed twice (both
// halves of the pair read it) and stored once.
template <size_t kQ>
HWY_INLINE void WeightedGroup(const hwy::float16_t* HWY_RESTRICT values, size_t tokens,
                              size_t dim, const float* HWY_RESTRICT w0, size_t stride,
                              float* HWY_RESTRICT o0) {
  const DF df;
  const DH dh;
  const size_t N = hn::Lanes(df);
  constexpr size_t kTile = 64;
  const float* w1 = kQ > 1 ? w0 + stride : w0;
  const float* w2 = kQ > 2 ? w0 + 2 * stride : w0;
  const float* w3 = kQ > 3 ? w0 + 3 * stride : w0;
  float* o1 = kQ > 1 ? o0 + dim : o0;
  float* o2 = kQ > 2 ? o0 + 2 * dim : o0;
  float* o3 = kQ > 3 ? o0 + 3 * dim : o0;
  for (size_t j = 0; j < kQ * dim; ++j) o0[j] = 0.0f;
  for (size_t t0 = 0; t0 < tokens; t0 += kTile) {
    const size_t t1 = std::min(tokens, t0 + kTile);
    for (size_t j = 0; j < dim; j += 2 * N) {
      const bool pair = j + N < dim;
      const size_t jb = pair ? j + N : j;
      auto a0 = hn::LoadU(df, o0 + j), b0 = hn::LoadU(df, o0 + jb);
      auto a1 = a0, b1 = b0, a2 = a0, b2 = b0, a3 = a0, b3 = b0;
      if (kQ > 1) a1 = hn::LoadU(df, o1 + j), b1 = hn::LoadU(df, o1 + jb);
      if (kQ > 2) a2 = hn::LoadU(df, o2 + j), b2 = hn::LoadU(df, o2 + jb);
      if (kQ > 3) a3 = hn::LoadU(df, o3 + j), b3 = hn::LoadU(df, o3 + jb);
      for (size_t t = t0; t < t1; ++t) {
        const hwy::float16_t* row = values + t * dim;
        const auto va = hn::PromoteTo(df, hn::LoadU(dh, row + j));
        const auto vb = hn::PromoteTo(df, hn::LoadU(dh, row + jb));
        const auto x0 = hn::Set(df, w0[t]);
        a0 = hn::MulAdd(x0, va, a0);
        b0 = hn::MulAdd(x0, vb, b0);
        if (kQ > 1) {
          const auto x1 = hn::Set(df, w1[t]);
          a1 = hn::MulAdd(x1, va, a1);
          b1 = hn::MulAdd(x1, vb, b1);
        }
        if (kQ > 2) {
          const auto x2 = hn::Set(df, w2[t]);
          a2 = hn::MulAdd(x2, va, a2);
          b2 = hn::MulAdd(x2, vb, b2);
        }
        if (kQ > 3) {
          const auto x3 = hn::Set(df, w3[t]);
          a3 = hn::MulAdd(x3, va, a3);
          b3 = hn::MulAdd(x3, vb, b3);
        }
      }
      hn::StoreU(a0, df, o0 + j);
      if (kQ > 1) hn::StoreU(a1, df, o1 + j);
      if (kQ > 2) hn::StoreU(a2, df, o2 + j);
      if (kQ > 3) hn::StoreU(a3, df, o3 + j);
      if (pair) {
        hn::StoreU(b0, df, o0 + jb);
        if (kQ > 1) hn::StoreU(b1, df, o1 + jb);
        if (kQ > 2) hn::StoreU(b2, df, o2 + jb);
        if (kQ > 3) hn::StoreU(b3, df, o3 + jb);
      }
    }
  }
}

void F16WeightedSumImpl(const uint16_t* HWY_RESTRICT values, size_t tokens, size_t dim,
                        const float* HWY_RESTRICT weights, size_t stride, size_t num_queries,
                        float* HWY_RESTRICT out) {
  const auto* v = reinterpret_cast<const hwy::float16_t*>(values);
  size_t q = 0;
  for (; q + 4 <= num_queries; q += 4) {
    WeightedGroup<4>(v, tokens, dim, weights + q * stride, stride, out + q * dim);
  }
  const float* rest = weights + q * stride;
  float* o = out + q * dim;
  switch (num_queries - q) {
    case 3: WeightedGroup<3>(v, tokens, dim, rest, stride, o); break;
    case 2: WeightedGroup<2>(v, tokens, dim, rest, stride, o); break;
    case 1: WeightedGroup<1>(v, tokens, dim, rest, stride, o); break;
    default: break;
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace kvc::tools
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc::tools {

HWY_EXPORT(ConvertToF16Impl);
HWY_EXPORT(F16ScoresImpl);
HWY_EXPORT(ExpShiftedSumImpl);
HWY_EXPORT(F16WeightedSumImpl);

void ConvertToF16(const float* in, size_t count, uint16_t* out) {
  HWY_DYNAMIC_DISPATCH(ConvertToF16Impl)(in, count, out);
}

void F16Scores(const uint16_t* keys, size_t tokens, size_t dim, const float* queries,
               size_t num_queries, float* scores, size_t scores_stride) {
  HWY_DYNAMIC_DISPATCH(F16ScoresImpl)(keys, tokens, dim, queries, num_queries, scores,
                                      scores_stride);
}

float ExpShiftedSum(float* x, size_t n, float* max) {
  return HWY_DYNAMIC_DISPATCH(ExpShiftedSumImpl)(x, n, max);
}

void F16WeightedSum(const uint16_t* values, size_t tokens, size_t dim, const float* weights,
                    size_t weights_stride, size_t num_queries, float* out) {
  HWY_DYNAMIC_DISPATCH(F16WeightedSumImpl)(values, tokens, dim, weights, weights_stride,
                                           num_queries, out);
}

}  // namespace kvc::tools
#endif  // HWY_ONCE
