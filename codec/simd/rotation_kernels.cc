// The fast Walsh-Hadamard transform around the register file. Stages run in
// the reference's order, h = p/2 down to 1, and every element sees exactly the
// reference's operations (x*sign, a+b or a-b per stage, x*scale), so results
// are bit-identical whatever the grouping:
// - stages with h >= lanes are butterflies between whole vectors, done two at
//   a time (radix 4: four vectors loaded, two stages, four stored);
// - stages with h < lanes pair lane j with lane j^h inside one vector:
//   p = the vector with those lanes swapped (one permute), and the result is
//   v + p in the low lanes, p + (-v) = a - b in the high lanes (the sign flip
//   is an exact XOR). These are fused with the scale (and, inverse, signs).
#include "simd/rotation_kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/rotation_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Reference loops, used when p is below one vector.
HWY_INLINE void ScalarButterflies(float* x, size_t p, size_t h_min) {
  for (size_t h = p / 2; h >= h_min && h >= 1; h /= 2) {
    for (size_t i = 0; i < p; i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

// Cross-vector stages h = p/2 .. N (N = lanes), in pairs, with the forward
// signs fused into the first pass when `signs` is not null.
template <class D>
HWY_INLINE void CrossStages(D d, float* HWY_RESTRICT x, const float* HWY_RESTRICT signs,
                            size_t p) {
  const size_t N = hn::Lanes(d);
  size_t h = p / 2;
  if (h < N) {  // no cross-vector stage: apply signs alone
    if (signs != nullptr) {
      for (size_t j = 0; j < p; j += N) {
        hn::StoreU(hn::Mul(hn::LoadU(d, x + j), hn::LoadU(d, signs + j)), d, x + j);
      }
    }
    return;
  }
  // Number of cross stages: log2(p / N). An odd count starts with radix 2.
  size_t stages = 0;
  for (size_t s = h; s >= N; s /= 2) ++stages;
  if (stages % 2 == 1) {
    for (size_t j = 0; j < h; j += N) {
      auto a = hn::LoadU(d, x + j);
      auto b = hn::LoadU(d, x + j + h);
      if (signs != nullptr) {
        a = hn::Mul(a, hn::LoadU(d, signs + j));
        b = hn::Mul(b, hn::LoadU(d, signs + j + h));
      }
      hn::StoreU(hn::Add(a, b), d, x + j);
      hn::StoreU(hn::Sub(a, b), d, x + j + h);
    }
    signs = nullptr;
    h /= 2;
  }
  for (; h >= 2 * N; h /= 4) {
    // Stages h and h/2 on each block of 2h: x0 x1 (first half), x2 x3.
    const size_t q = h / 2;
    for (size_t i = 0; i < p; i += 2 * h) {
      for (size_t j = i; j < i + q; j += N) {
        auto x0 = hn::LoadU(d, x + j);
        auto x1 = hn::LoadU(d, x + j + q);
        auto x2 = hn::LoadU(d, x + j + h);
        auto x3 = hn::LoadU(d, x + j + h + q);
        if (signs != nullptr) {
          x0 = hn::Mul(x0, hn::LoadU(d, signs + j));
          x1 = hn::Mul(x1, hn::LoadU(d, signs + j + q));
          x2 = hn::Mul(x2, hn::LoadU(d, signs + j + h));
          x3 = hn::Mul(x3, hn::LoadU(d, signs + j + h + q));
        }
        const auto y0 = hn::Add(x0, x2), y2 = hn::Sub(x0, x2);
        const auto y1 = hn::Add(x1, x3), y3 = hn::Sub(x1, x3);
        hn::StoreU(hn::Add(y0, y1), d, x + j);
        hn::StoreU(hn::Sub(y0, y1), d, x + j + q);
        hn::StoreU(hn::Add(y2, y3), d, x + j + h);
        hn::StoreU(hn::Sub(y2, y3), d, x + j + h + q);
      }
    }
    signs = nullptr;
  }
}

// One in-vector stage of stride h < N; `negate` has the sign bit in the
// lanes whose bit h is set.
// kH (when known) selects an in-block shuffle instead of the table lookup.
template <size_t kH = 0, class D, class V, class I, class VI>
HWY_INLINE V InVectorStage(D d, V v, I idx, VI negate) {
  const hn::RebindToSigned<D> di;
  V p;
#if HWY_TARGET != HWY_SCALAR
  if (kH == 1) {
    p = hn::Shuffle2301(v);
  } else if (kH == 2) {
    p = hn::Shuffle1032(v);
  } else {
    p = hn::TableLookupLanes(v, idx);
  }
#else
  p = hn::TableLookupLanes(v, idx);
#endif
  return hn::Add(p, hn::BitCast(d, hn::Xor(hn::BitCast(di, v), negate)));
}

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
template <size_t K, size_t H, class V>
HWY_INLINE void CrossRegisterStage(V* v) {
  if (H >= K) return;
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    if ((k & H) == 0) {
      const V a = v[k], b = v[k + H];
      v[k] = hn::Add(a, b);
      v[k + H] = hn::Sub(a, b);
    }
  }
}

// The whole pass in registers when it spans at most 16 vectors (p = 128 on
// AVX2 is 16 registers): all stages without touching memory in between.
template <size_t K, bool kInverse, class D, class I, class VI>
HWY_INLINE void InRegisters(D d, float* HWY_RESTRICT x, const float* HWY_RESTRICT signs,
                            float scale, size_t count, I idx0, I idx1, I idx2, I idx3,
                            VI neg0, VI neg1, VI neg2, VI neg3) {
  constexpr size_t N = hn::MaxLanes(D());
  using V = hn::Vec<D>;
  (void)idx2, (void)idx3;  // stages h = 2, 1 use in-block shuffles
  V v[K];
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    v[k] = hn::LoadU(d, x + k * N);
    if (!kInverse) v[k] = hn::Mul(v[k], hn::LoadU(d, signs + k * N));
  }
  // Cross-vector stages: vector stride H = K/2 .. 1.
  if (K >= 16) CrossRegisterStage<K, 8>(v);
  if (K >= 8) CrossRegisterStage<K, 4>(v);
  if (K >= 4) CrossRegisterStage<K, 2>(v);
  if (K >= 2) CrossRegisterStage<K, 1>(v);
  const V vs = hn::Set(d, scale);
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    // Stage s has h = N >> (s + 1); the last two (h = 2, 1) stay in blocks.
    V t = v[k];
    if (N >= 16) t = InVectorStage(d, t, idx0, neg0);
    if (N >= 8) t = InVectorStage(d, t, N >= 16 ? idx1 : idx0, N >= 16 ? neg1 : neg0);
    if (N >= 4) {
      const size_t s2 = count - 2, s1 = count - 1;
      t = InVectorStage<2>(d, t, idx0, s2 == 0 ? neg0 : s2 == 1 ? neg1 : neg2);
      t = InVectorStage<1>(d, t, idx0, s1 == 1 ? neg1 : s1 == 2 ? neg2 : neg3);
    }
    t = hn::Mul(t, vs);
    if (kInverse) t = hn::Mul(t, hn::LoadU(d, signs + k * N));
    hn::StoreU(t, d, x + k * N);
  }
}
#endif

template <bool kInverse>
void HadamardImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, size_t p,
                  float scale) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  if (p < N || N == 1) {
    if (!kInverse) {
      for (size_t j = 0; j < p; ++j) x[j] = x[j] * signs[j];
    }
    ScalarButterflies(x, p, 1);
    for (size_t j = 0; j < p; ++j) x[j] = x[j] * scale;
    if (kInverse) {
      for (size_t j = 0; j < p; ++j) x[j] = x[j] * signs[j];
    }
    return;
  }
  // In-vector stages h = N/2 .. 1: lane permutations j ^ h and high-lane masks.
#if HWY_TARGET != HWY_SCALAR
  const hn::RebindToSigned<decltype(d)> di;
  HWY_ALIGN int32_t lanes[hn::MaxLanes(di)];
  for (size_t j = 0; j < N; ++j) lanes[j] = static_cast<int32_t>(j);
  const auto iota = hn::Load(di, lanes);
  const auto vs = hn::Set(d, scale);
  // At most 4 in-vector stages (16 lanes); unused ones are skipped.
  size_t count = 0;
  for (size_t h = N / 2; h >= 1; h /= 2) ++count;
  HWY_ALIGN int32_t perm[4][hn::MaxLanes(di)];
  for (size_t s = 0; s < 4; ++s) {
    const size_t h = s < count ? N >> (s + 1) : 0;
    for (size_t j = 0; j < N; ++j) perm[s][j] = static_cast<int32_t>(j ^ h);
  }
  const auto idx0 = hn::SetTableIndices(d, perm[0]);
  const auto idx1 = hn::SetTableIndices(d, perm[1]);
  const auto idx2 = hn::SetTableIndices(d, perm[2]);
  const auto idx3 = hn::SetTableIndices(d, perm[3]);
  const auto sign_bit = hn::Set(di, static_cast<int32_t>(0x80000000u));
  // Lane j is high in stage s if its bit h is set: perm[s][j] < j.
  const auto high0 = hn::IfThenElseZero(hn::Lt(hn::Load(di, perm[0]), iota), sign_bit);
  const auto high1 = hn::IfThenElseZero(hn::Lt(hn::Load(di, perm[1]), iota), sign_bit);
  const auto high2 = hn::IfThenElseZero(hn::Lt(hn::Load(di, perm[2]), iota), sign_bit);
  const auto high3 = hn::IfThenElseZero(hn::Lt(hn::Load(di, perm[3]), iota), sign_bit);
#if !HWY_HAVE_SCALABLE
  switch (p / N) {
#define KVC_IN_REGISTERS(K)                                                       \
  case K:                                                                         \
    return InRegisters<K, kInverse>(d, x, signs, scale, count, idx0, idx1, idx2, \
                                    idx3, high0, high1, high2, high3);
    KVC_IN_REGISTERS(1)
    KVC_IN_REGISTERS(2)
    KVC_IN_REGISTERS(4)
    KVC_IN_REGISTERS(8)
    KVC_IN_REGISTERS(16)
#undef KVC_IN_REGISTERS
    default: break;
  }
#endif
  CrossStages(d, x, kInverse ? nullptr : signs, p);
  for (size_t j = 0; j < p; j += N) {
    auto v = hn::LoadU(d, x + j);
    v = InVectorStage(d, v, idx0, high0);
    if (count > 1) v = InVectorStage(d, v, idx1, high1);
    if (count > 2) v = InVectorStage(d, v, idx2, high2);
    if (count > 3) v = InVectorStage(d, v, idx3, high3);
    v = hn::Mul(v, vs);
    if (kInverse) v = hn::Mul(v, hn::LoadU(d, signs + j));
    hn::StoreU(v, d, x + j);
  }
#else
  (void)scale;
#endif
}

void HadamardForwardImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, size_t p,
                         float scale) {
  HadamardImpl<false>(x, signs, p, scale);
}
void HadamardInverseImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT signs, size_t p,
                         float scale) {
  HadamardImpl<true>(x, signs, p, scale);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(HadamardForwardImpl);
HWY_EXPORT(HadamardInverseImpl);

void HadamardForward(float* x, const float* signs, size_t p, float scale) {
  HWY_DYNAMIC_DISPATCH(HadamardForwardImpl)(x, signs, p, scale);
}
void HadamardInverse(float* x, const float* signs, size_t p, float scale) {
  HWY_DYNAMIC_DISPATCH(HadamardInverseImpl)(x, signs, p, scale);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
