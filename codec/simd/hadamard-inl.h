// The Walsh-Hadamard pass on vectors held in registers, shared by the
// rotation kernels and the fused TurboQuant row kernels (Highway's -inl.h
// pattern: included inside HWY_NAMESPACE once per target).
//
// Stages run in the reference's order, h = p/2 down to 1, and every element
// sees exactly the reference's operations (x*sign, a+b or a-b per stage,
// x*scale), so results are bit-identical whatever the grouping:
// - stages with h >= lanes are butterflies between whole registers;
// - stages with h < lanes pair lane j with lane j^h inside one register:
//   p = the register with those lanes swapped (one permute), and the result
//   is v + p in the low lanes, p + (-v) = a - b in the high lanes (the sign
//   flip is an exact XOR).

// Per-target include guard (Highway's toggle idiom).
#if defined(KVCODEC_CODEC_SIMD_HADAMARD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVCODEC_CODEC_SIMD_HADAMARD_INL_H_
#undef KVCODEC_CODEC_SIMD_HADAMARD_INL_H_
#else
#define KVCODEC_CODEC_SIMD_HADAMARD_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One in-register stage of stride h < lanes; `negate` has the sign bit in
// the lanes whose bit h is set. kH (when known) selects an in-block shuffle
// instead of the table lookup.
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

#if HWY_TARGET != HWY_SCALAR
#if HWY_HAVE_SCALABLE
// SVE: sizeless vectors cannot be members, so each in-register stage's
// permutation j ^ h and sign mask (the lanes whose bit h is set) are made
// from the lane indices where the stage runs, a few integer operations.
template <class D>
struct InVectorStages {
  explicit InVectorStages(D d) : lanes(hn::Lanes(d)) {}

  template <class V>
  HWY_INLINE V Apply(D d, V v) const {
    const hn::RebindToSigned<D> di;
    const auto iota = hn::Iota(di, 0);
    const auto sign_bit = hn::Set(di, static_cast<int32_t>(0x80000000u));
    for (size_t h = lanes / 2; h >= 1; h /= 2) {
      const auto bit = hn::Set(di, static_cast<int32_t>(h));
      const auto high = hn::IfThenElseZero(hn::TestBit(iota, bit), sign_bit);
      v = InVectorStage(d, v, hn::IndicesFromVec(d, hn::Xor(iota, bit)), high);
    }
    return v;
  }

  size_t lanes;
};
#else
// The lane permutations j ^ h and high-lane sign masks of the in-register
// stages h = lanes/2 .. 1, built once per call.
template <class D>
struct InVectorStages {
  static constexpr size_t kMaxStages = 8;  // up to 256 lanes
  using VI = hn::Vec<hn::RebindToSigned<D>>;
  using I = decltype(hn::SetTableIndices(D(), static_cast<const int32_t*>(nullptr)));
  size_t count = 0;  // log2(lanes)
  I idx[kMaxStages];
  VI high[kMaxStages];

  explicit InVectorStages(D d) {
    const hn::RebindToSigned<D> di;
    const size_t N = hn::Lanes(d);
    HWY_ALIGN int32_t lanes[hn::MaxLanes(di)];
    HWY_ALIGN int32_t perm[hn::MaxLanes(di)];
    for (size_t j = 0; j < N; ++j) lanes[j] = static_cast<int32_t>(j);
    const auto iota = hn::Load(di, lanes);
    const auto sign_bit = hn::Set(di, static_cast<int32_t>(0x80000000u));
    for (size_t h = N / 2; h >= 1 && count < kMaxStages; h /= 2, ++count) {
      for (size_t j = 0; j < N; ++j) perm[j] = static_cast<int32_t>(j ^ h);
      idx[count] = hn::SetTableIndices(d, perm);
      // Lane j is high in this stage if its bit h is set: perm[j] < j.
      high[count] = hn::IfThenElseZero(hn::Lt(hn::Load(di, perm), iota), sign_bit);
    }
  }

  // Every in-register stage on one register, in order; the last two
  // (h = 2, 1) with in-block shuffles where registers have 4+ lanes.
  template <class V>
  HWY_INLINE V Apply(D d, V v) const {
    const size_t table_stages = hn::Lanes(d) >= 4 ? count - 2 : count;
    for (size_t s = 0; s < table_stages; ++s) v = InVectorStage(d, v, idx[s], high[s]);
    if (hn::Lanes(d) >= 4) {
      v = InVectorStage<2>(d, v, idx[count - 2], high[count - 2]);
      v = InVectorStage<1>(d, v, idx[count - 1], high[count - 1]);
    }
    return v;
  }
};
#endif  // HWY_HAVE_SCALABLE

#if !HWY_HAVE_SCALABLE
// Butterflies between registers k and k + H of K registers.
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

// The unnormalised butterflies and the final x * scale on a pass of K
// registers (K <= 16, a power of two), without touching memory. Signs are
// the caller's (before, forward; after, inverse).
template <size_t K, class D, class V = hn::Vec<D>>
HWY_INLINE void HadamardRegisters(D d, const InVectorStages<D>& stages, float scale, V* v) {
  if (K >= 16) CrossRegisterStage<K, 8>(v);
  if (K >= 8) CrossRegisterStage<K, 4>(v);
  if (K >= 4) CrossRegisterStage<K, 2>(v);
  if (K >= 2) CrossRegisterStage<K, 1>(v);
  const V vs = hn::Set(d, scale);
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) v[k] = hn::Mul(stages.Apply(d, v[k]), vs);
}
#endif  // !HWY_HAVE_SCALABLE
#endif  // HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#endif  // KVCODEC_CODEC_SIMD_HADAMARD_INL_H_ toggle
