// Fused TurboQuant-MSE rows (simd/turboquant_kernels.h). A row of K
// registers (K = dim / lanes, at most 16) stays in registers from load to
// packed indices; each step repeats the reference's arithmetic exactly:
// - rotation: x * sign, the butterflies and * scale (simd/hadamard-inl.h);
// - norm: squares added into 16 partial sums (register k into accumulator
//   k % (16 / lanes)), folded as kvc::FoldLanes, then sqrt;
// - index: the count of thresholds below t = y * (sqrt_dim / norm), by a
//   binary search over in-register threshold tables (or one compare per
//   threshold where registers are too narrow for the tables);
// - decode: centroid lookup, the gain (norm / sqrt_dim, or norm / the
//   centroids' length with norm correction), one product, the inverse pass.
#include "simd/turboquant_kernels.h"

#include <cmath>
#include <type_traits>

#include "quant/vector_math.h"
#include "simd/bitpack.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/turboquant_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "simd/hadamard-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
using D = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<D>;
using V = hn::Vec<D>;
using VI = hn::Vec<DI>;
constexpr size_t kLanes = hn::MaxLanes(D());
// Registers holding the 16 partial sums of a reduction.
constexpr size_t kAccumulators = kReductionLanes / kLanes;

// Count of thresholds < t for a codebook of kBits bits.
template <int kBits>
class IndexSearch {
 public:
  // Binary search needs a table of 2^(kBits-1) entries in one register.
  static constexpr bool kBinary = kLanes >= (size_t{1} << (kBits - 1));

  explicit IndexSearch(const float* thresholds) {
    const D d;
    if (kBinary) {
      // Level l compares t with thresholds[(2m + 1) * 2^(kBits-l) - 1], m
      // the index so far >> (kBits - l + 1).
      level_[0] = hn::Set(d, thresholds[(1 << (kBits - 1)) - 1]);
      for (int l = 2; l <= kBits; ++l) {
        HWY_ALIGN float table[kLanes] = {};
        for (size_t m = 0; m < (size_t{1} << (l - 1)); ++m) {
          table[m] = thresholds[(2 * m + 1) * (size_t{1} << (kBits - l)) - 1];
        }
        level_[l - 1] = hn::Load(d, table);
      }
    } else {
      for (int k = 0; k + 1 < (1 << kBits); ++k) level_[k] = hn::Set(d, thresholds[k]);
    }
  }

  // NaN fails every compare and gives 0, as in the reference.
  HWY_INLINE VI Index(V t) const {
    const D d;
    const DI di;
    if (!kBinary) {
      VI count = hn::Zero(di);
      for (int k = 0; k + 1 < (1 << kBits); ++k) {  // mask lanes are -1
        count = hn::Sub(count, hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(level_[k], t))));
      }
      return count;
    }
    VI k = Bit(level_[0], t, kBits - 1);
    for (int l = 2; l <= kBits; ++l) {
      const V thr = hn::TableLookupLanes(
          level_[l - 1], hn::IndicesFromVec(d, hn::ShiftRightSame(k, kBits - l + 1)));
      k = hn::Add(k, Bit(thr, t, kBits - l));
    }
    return k;
  }

 private:
  static HWY_INLINE VI Bit(V thr, V t, int shift) {
    const DI di;
    return hn::And(hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(thr, t))),
                   hn::Set(di, 1 << shift));
  }

  V level_[(1 << kBits) > kBits ? (1 << kBits) : kBits];
};

// 16 partial sums of squares of K registers, folded by halves as
// kvc::FoldLanes does (lanes i and i+8, then i and i+4, ...), in 128-bit
// registers: four additions instead of fifteen dependent scalar ones.
template <size_t K>
HWY_INLINE float SumOfSquaresRegisters(const V* v) {
  const D d;
  V acc[kAccumulators];
  for (size_t a = 0; a < kAccumulators; ++a) acc[a] = hn::Zero(d);
  HWY_UNROLL(16)
  for (size_t k = 0; k < K; ++k) {
    acc[k % kAccumulators] = hn::Add(acc[k % kAccumulators], hn::Mul(v[k], v[k]));
  }
  HWY_ALIGN float sums[kReductionLanes];
  for (size_t a = 0; a < kAccumulators; ++a) hn::Store(acc[a], d, sums + a * kLanes);
  const hn::Full128<float> d4;
  const auto low = hn::Add(hn::Load(d4, sums), hn::Load(d4, sums + 8));
  const auto high = hn::Add(hn::Load(d4, sums + 4), hn::Load(d4, sums + 12));
  const auto quarter = hn::Add(low, high);                          // i + i+4
  const auto eighth = hn::Add(quarter, hn::Shuffle1032(quarter));   // i + i+2
  return hn::GetLane(hn::Add(eighth, hn::Shuffle2301(eighth)));     // i + i+1
}

template <size_t K, int kBits>
void EncodeRows(const TqRows& p, const float* HWY_RESTRICT x, size_t count,
                float* HWY_RESTRICT norms, uint8_t* HWY_RESTRICT packed) {
  const D d;
  const DI di;
  const InVectorStages<D> stages(d);
  const IndexSearch<kBits> search(p.book->thresholds);
  constexpr size_t kDim = K * kLanes;
  constexpr size_t kIndexBytes = kDim * kBits / 8;
  // 4-bit indices pack in registers: lanes 2i, 2i+1 (one u64) -> one byte.
  constexpr bool kPackInRegisters = kBits == 4 && kLanes >= 2;
  const hn::Repartition<uint64_t, D> d64;
  const hn::Rebind<uint8_t, decltype(d64)> d8_pairs;
  const hn::Rebind<uint8_t, D> d8;
  HWY_ALIGN uint8_t idx[kDim];
  for (size_t n = 0; n < count; ++n) {
    const float* row = x + n * kDim;
    V v[K];
    HWY_UNROLL(16)
    for (size_t k = 0; k < K; ++k) {
      v[k] = hn::Mul(hn::LoadU(d, row + k * kLanes), hn::LoadU(d, p.signs + k * kLanes));
    }
    HadamardRegisters<K>(d, stages, p.rotation_scale, v);
    const float norm = std::sqrt(SumOfSquaresRegisters<K>(v));
    norms[n] = norm;
    const V scale = hn::Set(d, norm > 0 ? p.sqrt_dim / norm : 0.0f);
    uint8_t* out = packed + n * kIndexBytes;
    HWY_UNROLL(16)
    for (size_t k = 0; k < K; ++k) {
      const VI index = search.Index(hn::Mul(v[k], scale));
      if (kPackInRegisters) {
        const auto pairs = hn::BitCast(d64, index);
        hn::StoreU(hn::TruncateTo(d8_pairs, hn::Or(pairs, hn::ShiftRight<28>(pairs))),
                   d8_pairs, out + k * kLanes / 2);
      } else {
        hn::StoreU(hn::DemoteTo(d8, index), d8, idx + k * kLanes);
      }
    }
    if (!kPackInRegisters) PackBits(idx, kDim, kBits, out);
    (void)di;
  }
}

// Centroid of each index: in-register tables up to 2 registers of entries,
// a gather beyond.
template <int kBits>
class CentroidLookup {
 public:
  static constexpr size_t kSize = size_t{1} << kBits;
  static constexpr bool kTables = kSize <= 2 * kLanes;

  explicit CentroidLookup(const float* centroids) : centroids_(centroids) {
    const D d;
    HWY_ALIGN float lo[kLanes] = {}, hi[kLanes] = {};
    for (size_t k = 0; k < kSize && kTables; ++k) (k < kLanes ? lo[k] : hi[k - kLanes]) = centroids[k];
    lo_ = hn::Load(d, lo);
    hi_ = hn::Load(d, hi);
  }

  HWY_INLINE V Lookup(VI k) const {
    const D d;
    const DI di;
    if (!kTables) return hn::GatherIndex(d, centroids_, k);
    const auto below = hn::Set(di, static_cast<int32_t>(kLanes - 1));
    const auto ind = hn::IndicesFromVec(d, hn::And(k, below));
    if (kSize <= kLanes) return hn::TableLookupLanes(lo_, ind);
    return hn::IfThenElse(hn::RebindMask(d, hn::Lt(below, k)), hn::TableLookupLanes(hi_, ind),
                          hn::TableLookupLanes(lo_, ind));
  }

 private:
  const float* centroids_;
  V lo_, hi_;
};

template <size_t K, int kBits>
void DecodeRows(const TqRows& p, const uint8_t* HWY_RESTRICT packed,
                const float* HWY_RESTRICT norms, size_t count, float* HWY_RESTRICT out) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  const InVectorStages<D> stages(d);
  const CentroidLookup<kBits> lookup(p.book->centroids);
  constexpr size_t kDim = K * kLanes;
  constexpr size_t kIndexBytes = kDim * kBits / 8;
  HWY_ALIGN uint8_t idx[kDim];
  for (size_t n = 0; n < count; ++n) {
    UnpackBits(packed + n * kIndexBytes, kDim, kBits, idx);
    V v[K];
    HWY_UNROLL(16)
    for (size_t k = 0; k < K; ++k) {
      v[k] = lookup.Lookup(hn::PromoteTo(di, hn::LoadU(d8, idx + k * kLanes)));
    }
    float gain = norms[n] / p.sqrt_dim;
    if (p.norm_correction) {
      const float length = std::sqrt(SumOfSquaresRegisters<K>(v));
      gain = length > 0 ? norms[n] / length : 0.0f;
    }
    const V vg = hn::Set(d, gain);
    HWY_UNROLL(16)
    for (size_t k = 0; k < K; ++k) v[k] = hn::Mul(v[k], vg);
    HadamardRegisters<K>(d, stages, p.rotation_scale, v);
    float* row = out + n * kDim;
    HWY_UNROLL(16)
    for (size_t k = 0; k < K; ++k) {
      hn::StoreU(hn::Mul(v[k], hn::LoadU(d, p.signs + k * kLanes)), d, row + k * kLanes);
    }
  }
}

// The (K, bits) instantiation for a row shape; false if there is none.
template <class EncodeOrDecode>
HWY_INLINE bool Dispatch(const TqRows& p, EncodeOrDecode&& run) {
  if (p.dim % kLanes != 0 || p.dim < kLanes || p.book->bits < 1 || p.book->bits > 4) {
    return false;
  }
  // kDim * bits must be whole bytes for the packed record stride.
  if (p.dim * p.book->bits % 8 != 0) return false;
#define KVC_TQ_BITS(K)                                                  \
  switch (p.book->bits) {                                               \
    case 1: run(std::integral_constant<size_t, K>(), std::integral_constant<int, 1>()); \
      return true;                                                      \
    case 2: run(std::integral_constant<size_t, K>(), std::integral_constant<int, 2>()); \
      return true;                                                      \
    case 3: run(std::integral_constant<size_t, K>(), std::integral_constant<int, 3>()); \
      return true;                                                      \
    default: run(std::integral_constant<size_t, K>(), std::integral_constant<int, 4>()); \
      return true;                                                      \
  }
  switch (p.dim / kLanes) {
    case 1: KVC_TQ_BITS(1)
    case 2: KVC_TQ_BITS(2)
    case 4: KVC_TQ_BITS(4)
    case 8: KVC_TQ_BITS(8)
    case 16: KVC_TQ_BITS(16)
    default: return false;
  }
#undef KVC_TQ_BITS
}
#endif  // !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR

bool TqEncodeRowsImpl(const TqRows& p, const float* HWY_RESTRICT x, size_t count,
                      float* HWY_RESTRICT norms, uint8_t* HWY_RESTRICT packed) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  return Dispatch(p, [&](auto k, auto bits) HWY_ATTR {
    EncodeRows<decltype(k)::value, decltype(bits)::value>(p, x, count, norms, packed);
  });
#else
  (void)p, (void)x, (void)count, (void)norms, (void)packed;
  return false;
#endif
}

bool TqDecodeRowsImpl(const TqRows& p, const uint8_t* HWY_RESTRICT packed,
                      const float* HWY_RESTRICT norms, size_t count, float* HWY_RESTRICT out) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  return Dispatch(p, [&](auto k, auto bits) HWY_ATTR {
    DecodeRows<decltype(k)::value, decltype(bits)::value>(p, packed, norms, count, out);
  });
#else
  (void)p, (void)packed, (void)norms, (void)count, (void)out;
  return false;
#endif
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(TqEncodeRowsImpl);
HWY_EXPORT(TqDecodeRowsImpl);

bool TqEncodeRows(const TqRows& rows, const float* x, size_t count, float* norms,
                  uint8_t* packed) {
  return HWY_DYNAMIC_DISPATCH(TqEncodeRowsImpl)(rows, x, count, norms, packed);
}

bool TqDecodeRows(const TqRows& rows, const uint8_t* packed, const float* norms,
                  size_t count, float* out) {
  return HWY_DYNAMIC_DISPATCH(TqDecodeRowsImpl)(rows, packed, norms, count, out);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
