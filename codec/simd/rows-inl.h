// Per-target helpers of the row kernels, which hold one vector of head_dim
// floats in K registers (head_dim = K * lanes, K a power of two up to 16)
// from load to store: the rotation (simd/hadamard-inl.h) with its signs,
// and the 16-lane sum of squares of quant/vector_math.h. Included inside
// HWY_NAMESPACE once per target (Highway's -inl.h pattern).

// Per-target include guard (Highway's toggle idiom).
#if defined(KVCODEC_CODEC_SIMD_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVCODEC_CODEC_SIMD_ROWS_INL_H_
#undef KVCODEC_CODEC_SIMD_ROWS_INL_H_
#else
#define KVCODEC_CODEC_SIMD_ROWS_INL_H_
#endif

#include <cstddef>
#include <type_traits>

#include <hwy/highway.h>

#include "quant/vector_math.h"
#include "simd/hadamard-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
// kvc::FoldLanes of 16 partial sums in memory: the same additions, pairs
// of halves, on 128-bit vectors.
HWY_INLINE float FoldSums(const float* HWY_RESTRICT sums) {
  const hn::Full128<float> d4;
  const auto low = hn::Add(hn::Load(d4, sums), hn::Load(d4, sums + 8));
  const auto high = hn::Add(hn::Load(d4, sums + 4), hn::Load(d4, sums + 12));
  const auto quarter = hn::Add(low, high);                          // i + i+4
  const auto eighth = hn::Add(quarter, hn::Shuffle1032(quarter));   // i + i+2
  return hn::GetLane(hn::Add(eighth, hn::Shuffle2301(eighth)));     // i + i+1
}
#endif

// kvc::DotProduct (kSquare: kvc::SumOfSquares, b unused) of n floats in
// memory, in its order: element j into partial sum j % 16, each product
// rounded before the addition, then FoldLanes. 16 / lanes accumulators hold
// partial sums 0..15 in lane order. The last partial 16 are zero-padded: a
// product 0 * 0 = +0 leaves a partial sum unchanged (they start at +0 and so
// are never -0). Where `readable` (>= n) floats of a and b may be read, the
// padding is whole vectors read on past n with those lanes zeroed (rows of
// a batch: the next row's values); otherwise copies.
template <bool kSquare>
HWY_INLINE float OrderedDot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n,
                            size_t readable) {
#if HWY_TARGET == HWY_SCALAR
  (void)readable;
  return kSquare ? kvc::SumOfSquares(a, n) : kvc::DotProduct(a, b, n);
#else
#if HWY_HAVE_SCALABLE
  // SVE: the lane count is known at run time (a power of two from 4), so
  // at most 16 lanes and 16 / lanes accumulators, chosen at run time.
  const hn::CappedTag<float, kReductionLanes> d;
  const size_t kN = hn::Lanes(d);
  const size_t kAcc = kReductionLanes / kN;
#else
  const hn::ScalableTag<float> d;
  constexpr size_t kN = hn::MaxLanes(d);
  static_assert(kReductionLanes % kN == 0 && kReductionLanes / kN <= 4, "lanes");
  constexpr size_t kAcc = kReductionLanes / kN;
#endif
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d), acc2 = hn::Zero(d), acc3 = hn::Zero(d);
  const auto add_block = [&](const float* HWY_RESTRICT pa, const float* HWY_RESTRICT pb)
                             HWY_ATTR {
    const auto product = [&](size_t j) HWY_ATTR {
      const auto va = hn::LoadU(d, pa + j);
      return hn::Mul(va, kSquare ? va : hn::LoadU(d, pb + j));
    };
    acc0 = hn::Add(acc0, product(0));
    if (kAcc > 1) acc1 = hn::Add(acc1, product(kN));
    if (kAcc > 2) acc2 = hn::Add(acc2, product(2 * kN));
    if (kAcc > 3) acc3 = hn::Add(acc3, product(3 * kN));
  };
  size_t j = 0;
  for (; j + kReductionLanes <= n; j += kReductionLanes) add_block(a + j, b + j);
  if (j < n && readable - j >= kReductionLanes) {
    const size_t rest = n - j;
    const auto product = [&](size_t k) HWY_ATTR {
      const auto first = hn::FirstN(d, rest > k * kN ? rest - k * kN : 0);
      const auto va = hn::IfThenElseZero(first, hn::LoadU(d, a + j + k * kN));
      return hn::Mul(va, kSquare ? va : hn::IfThenElseZero(first, hn::LoadU(d, b + j + k * kN)));
    };
    acc0 = hn::Add(acc0, product(0));
    if (kAcc > 1) acc1 = hn::Add(acc1, product(1));
    if (kAcc > 2) acc2 = hn::Add(acc2, product(2));
    if (kAcc > 3) acc3 = hn::Add(acc3, product(3));
  } else if (j < n) {
    HWY_ALIGN float last_a[kReductionLanes] = {}, last_b[kReductionLanes] = {};
    for (size_t i = 0; j + i < n; ++i) {
      last_a[i] = a[j + i];
      if (!kSquare) last_b[i] = b[j + i];
    }
    add_block(last_a, last_b);
  }
  HWY_ALIGN float sums[kReductionLanes];
  hn::Store(acc0, d, sums);
  if (kAcc > 1) hn::Store(acc1, d, sums + kN);
  if (kAcc > 2) hn::Store(acc2, d, sums + 2 * kN);
  if (kAcc > 3) hn::Store(acc3, d, sums + 3 * kN);
#if HWY_HAVE_SCALABLE
  return FoldLanes(sums);
#else
  return FoldSums(sums);
#endif
#endif
}

// kvc::SumOfSquares, for kernels that need it without a dispatched call;
// readable as for OrderedDot.
HWY_INLINE float SumOfSquaresArray(const float* HWY_RESTRICT a, size_t n, size_t readable) {
  return OrderedDot<true>(a, a, n, readable);
}

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
// Calls run(std::integral_constant<size_t, K>()) for dim = K * lanes of D,
// K in {1, 2, 4, 8, 16}; false (nothing run) for any other dim.
template <class D, class Run>
HWY_INLINE bool DispatchRegisters(D, size_t dim, Run&& run) {
  constexpr size_t kLanes = hn::MaxLanes(D());
  if (dim % kLanes != 0) return false;
  switch (dim / kLanes) {
    case 1: run(std::integral_constant<size_t, 1>()); return true;
    case 2: run(std::integral_constant<size_t, 2>()); return true;
    case 4: run(std::integral_constant<size_t, 4>()); return true;
    case 8: run(std::integral_constant<size_t, 8>()); return true;
    case 16: run(std::integral_constant<size_t, 16>()); return true;
    default: return false;
  }
}

// The sum of squares of K registers in the reference's order: register k
// into partial sums k % (16 / lanes), folded by halves as kvc::FoldLanes
// does (lanes i and i+8, then i and i+4, ...) in 128-bit registers: four
// additions instead of fifteen dependent scalar ones.
template <size_t K, class D, class V = hn::Vec<D>>
HWY_INLINE float SumOfSquaresRegisters(D d, const V* v) {
  constexpr size_t kLanes = hn::MaxLanes(D());
  constexpr size_t kAccumulators = kReductionLanes / kLanes;
  static_assert(kReductionLanes % kLanes == 0, "at most 16 lanes");
  V acc[kAccumulators];
  for (size_t a = 0; a < kAccumulators; ++a) acc[a] = hn::Zero(d);
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    acc[k % kAccumulators] = hn::Add(acc[k % kAccumulators], hn::Mul(v[k], v[k]));
  }
  HWY_ALIGN float sums[kReductionLanes];
  for (size_t a = 0; a < kAccumulators; ++a) hn::Store(acc[a], d, sums + a * kLanes);
  return FoldSums(sums);
}

// Count of thresholds < t for a sorted table of 2^kBits - 1 thresholds
// (kBits 1..4; the count a codebook index is). NaN fails every comparison
// and counts 0, as in the reference.
template <class D, int kBits>
class IndexSearch {
 public:
  using V = hn::Vec<D>;
  using VI = hn::Vec<hn::RebindToSigned<D>>;
  static constexpr size_t kLanes = hn::MaxLanes(D());
  // Binary search needs the 2^(kBits-1) thresholds of its last level in
  // one register; narrower registers compare with every threshold.
  static constexpr bool kBinary = kLanes >= (size_t{1} << (kBits - 1));

  explicit IndexSearch(const float* thresholds) {
    const D d;
    if (kBinary) {
      // The index is built from its top bit down: after l bits it is m, and
      // bit l+1 compares t with thresholds[(2m + 1) * 2^(kBits-l-1) - 1],
      // entry m of level l's table (level 0: the middle threshold).
      level_[0] = hn::Set(d, thresholds[(1 << (kBits - 1)) - 1]);
      for (int l = 1; l < kBits; ++l) {
        HWY_ALIGN float table[kLanes] = {};
        for (size_t m = 0; m < (size_t{1} << l); ++m) {
          table[m] = thresholds[(2 * m + 1) * (size_t{1} << (kBits - l - 1)) - 1];
        }
        level_[l] = hn::Load(d, table);
      }
    } else {
      for (int k = 0; k + 1 < (1 << kBits); ++k) level_[k] = hn::Set(d, thresholds[k]);
    }
  }

  HWY_INLINE VI Index(V t) const {
    const D d;
    const hn::RebindToSigned<D> di;
    VI k = hn::Zero(di);
    if (!kBinary) {
      for (int j = 0; j + 1 < (1 << kBits); ++j) k = AddBit(k, hn::Lt(level_[j], t));
      return k;
    }
    k = AddBit(k, hn::Lt(level_[0], t));
    for (int l = 1; l < kBits; ++l) {
      const V threshold = hn::TableLookupLanes(level_[l], hn::IndicesFromVec(d, k));
      k = AddBit(hn::Add(k, k), hn::Lt(threshold, t));
    }
    return k;
  }

 private:
  // k + 1 in the lanes of m: AVX2 and below subtract the all-ones mask
  // lanes; AVX-512 masks are not vectors, so a masked constant is cheaper.
  template <class M>
  static HWY_INLINE VI AddBit(VI k, M m) {
    const hn::RebindToSigned<D> di;
#if HWY_TARGET <= HWY_AVX3
    return hn::Add(k, hn::IfThenElseZero(hn::RebindMask(di, m), hn::Set(di, 1)));
#else
    return hn::Sub(k, hn::VecFromMask(di, hn::RebindMask(di, m)));
#endif
  }

  V level_[(1 << kBits) - 1 > kBits ? (1 << kBits) - 1 : kBits];
};

// Entry k of a table of 2^kBits floats (kBits 1..4): in-register tables of
// up to two registers of entries, a gather beyond.
template <class D, int kBits>
class SmallTable {
 public:
  using V = hn::Vec<D>;
  using VI = hn::Vec<hn::RebindToSigned<D>>;
  static constexpr size_t kLanes = hn::MaxLanes(D());
  static constexpr size_t kSize = size_t{1} << kBits;
  static constexpr bool kInRegisters = kSize <= 2 * kLanes;

  explicit SmallTable(const float* entries) : entries_(entries) {
    const D d;
    HWY_ALIGN float lo[kLanes] = {}, hi[kLanes] = {};
    for (size_t k = 0; k < kSize && kInRegisters; ++k) {
      (k < kLanes ? lo[k] : hi[k - kLanes]) = entries[k];
    }
    lo_ = hn::Load(d, lo);
    hi_ = hn::Load(d, hi);
  }

  // The entries times gain (in registers only): a lookup then gives
  // entry * gain, the product the reference rounds.
  HWY_INLINE SmallTable Scaled(V gain) const {
    SmallTable scaled = *this;
    scaled.lo_ = hn::Mul(lo_, gain);
    scaled.hi_ = hn::Mul(hi_, gain);
    return scaled;
  }

  // entries[k], for lanes a register does not fill.
  float Entry(size_t k) const { return entries_[k]; }

  HWY_INLINE V Lookup(VI k) const {
    const D d;
    const hn::RebindToSigned<D> di;
    if (!kInRegisters) return hn::GatherIndex(d, entries_, k);
    const auto below = hn::Set(di, static_cast<int32_t>(kLanes - 1));
    const auto ind = hn::IndicesFromVec(d, hn::And(k, below));
    if (kSize <= kLanes) return hn::TableLookupLanes(lo_, ind);
    return hn::IfThenElse(hn::RebindMask(d, hn::Lt(below, k)), hn::TableLookupLanes(hi_, ind),
                          hn::TableLookupLanes(lo_, ind));
  }

 private:
  const float* entries_;
  V lo_, hi_;
};

// v = the forward rotation of row: x * sign, the butterflies, * scale.
template <size_t K, class D, class V = hn::Vec<D>>
HWY_INLINE void LoadForward(D d, const InVectorStages<D>& stages, const float* HWY_RESTRICT signs,
                            float scale, const float* HWY_RESTRICT row, V* v) {
  constexpr size_t kLanes = hn::MaxLanes(D());
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    v[k] = hn::Mul(hn::LoadU(d, row + k * kLanes), hn::LoadU(d, signs + k * kLanes));
  }
  HadamardRegisters<K>(d, stages, scale, v);
}

// row = the inverse rotation of v: the butterflies, * scale, * sign.
template <size_t K, class D, class V = hn::Vec<D>>
HWY_INLINE void InverseStore(D d, const InVectorStages<D>& stages, const float* HWY_RESTRICT signs,
                             float scale, V* v, float* HWY_RESTRICT row) {
  constexpr size_t kLanes = hn::MaxLanes(D());
  HadamardRegisters<K>(d, stages, scale, v);
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    hn::StoreU(hn::Mul(v[k], hn::LoadU(d, signs + k * kLanes)), d, row + k * kLanes);
  }
}
#endif  // !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#endif  // KVCODEC_CODEC_SIMD_ROWS_INL_H_ toggle
