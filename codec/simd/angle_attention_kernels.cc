// Dot products and weighted sums over TurboAngle and PolarQuant tokens in
// the rotated domain (simd/angle_attention_kernels.h).
//
// A vector of P = lanes / 2 pairs of one token is built in registers: bins
// (and codes) widened to 64-bit lanes index a table of (cos, sin) entries,
// one gather giving the P pairs interleaved; the pair weights are spread to
// both halves of their lane. Every query of a pass (up to 4, so that their
// accumulators stay in registers) then takes it with one multiply-add.
// Dots run token by token (one reduction per token and query); weighted
// sums run P pairs at a time over every token, the accumulators of those P
// pairs held in registers throughout. HWY_SCALAR (one lane cannot hold a
// pair) and the pairs past the last whole vector use the plain loops below.
#include "simd/angle_attention_kernels.h"

#include <cstring>
#include <type_traits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/angle_attention_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

// Plain per-pair reconstructions, once for every target.
#ifndef KVCODEC_CODEC_SIMD_ANGLE_ATTENTION_SCALAR_
#define KVCODEC_CODEC_SIMD_ANGLE_ATTENTION_SCALAR_
namespace kvc {
namespace simd {
namespace angle_attention_internal {

inline void EntryPair(uint64_t entry, float w, float* y) {
  float cs[2];
  std::memcpy(cs, &entry, 8);
  y[0] = w * cs[0];
  y[1] = w * cs[1];
}

// u_n's pair j (2 floats).
inline void TaPair(const TaTokens& t, size_t n, size_t j, float* y) {
  const size_t at = n * t.pairs + j;
  const uint32_t bin = t.bins8 != nullptr ? t.bins8[at] : t.bins16[at];
  switch (t.radius) {
    case TaRadius::kLinear8: return EntryPair(t.table[bin], static_cast<float>(t.codes[at]), y);
    case TaRadius::kLog4: return EntryPair(t.table[t.codes[at] * t.bins + bin], 1.0f, y);
    default: return EntryPair(t.table[bin], t.radii[at], y);
  }
}

// y_n's pair j of group g (2 floats).
inline void PqPair(const PqTokens& t, size_t n, size_t g, uint32_t j, float* y) {
  const int* b = t.bits;
  const size_t groups = t.dim / 16, at = n * groups + g;
  const uint64_t field = t.fields[at];
  auto code = [&](int shift, int bits) {
    return static_cast<uint32_t>(field >> shift) & ((1u << bits) - 1);
  };
  const int off2 = 8 * b[0], off3 = off2 + 4 * b[1], off4 = off3 + 2 * b[2];
  const size_t index = PqFactorIndex(b, code(off2 + b[1] * static_cast<int>(j >> 1), b[1]),
                                     code(off3 + b[2] * static_cast<int>(j >> 2), b[2]),
                                     code(off4, b[3]), j);
  float factor[2];
  std::memcpy(factor, &t.factors[index], 8);
  EntryPair(t.circle[code(b[0] * static_cast<int>(j), b[0])], t.radii[at] * factor[0], y);
}

inline void TaDotsScalar(const TaTokens& t, const float* queries, size_t num_queries,
                         float* dots, size_t stride, float* sum_squares) {
  const size_t dim = 2 * t.pairs;
  for (size_t n = 0; n < t.count; ++n) {
    float sum = 0.0f;
    for (size_t q = 0; q < num_queries; ++q) {
      const float* query = queries + q * dim;
      float dot = 0.0f;
      for (size_t j = 0; j < t.pairs; ++j) {
        float y[2];
        TaPair(t, n, j, y);
        dot += y[0] * query[2 * j] + y[1] * query[2 * j + 1];
      }
      dots[q * stride + n] = dot;
    }
    for (size_t j = 0; num_queries == 0 && sum_squares != nullptr && j < t.pairs; ++j) {
      float y[2];
      TaPair(t, n, j, y);
      sum += y[0] * y[0] + y[1] * y[1];
    }
    if (num_queries == 0 && sum_squares != nullptr) sum_squares[n] = sum;
  }
}

inline void TaWeightedSumScalar(const TaTokens& t, const float* weights, size_t stride,
                                size_t num_queries, float* out) {
  const size_t dim = 2 * t.pairs;
  for (size_t n = 0; n < t.count; ++n) {
    for (size_t j = 0; j < t.pairs; ++j) {
      float y[2];
      TaPair(t, n, j, y);
      for (size_t q = 0; q < num_queries; ++q) {
        const float w = weights[q * stride + n];
        out[q * dim + 2 * j] += w * y[0];
        out[q * dim + 2 * j + 1] += w * y[1];
      }
    }
  }
}

inline void PqDotsScalar(const PqTokens& t, const float* queries, size_t num_queries,
                         float* dots, size_t stride) {
  for (size_t n = 0; n < t.count; ++n) {
    for (size_t q = 0; q < num_queries; ++q) {
      const float* query = queries + q * t.dim;
      float dot = 0.0f;
      for (size_t g = 0; g < t.dim / 16; ++g) {
        for (uint32_t j = 0; j < 8; ++j) {
          float y[2];
          PqPair(t, n, g, j, y);
          dot += y[0] * query[16 * g + 2 * j] + y[1] * query[16 * g + 2 * j + 1];
        }
      }
      dots[q * stride + n] = dot;
    }
  }
}

inline void PqWeightedSumScalar(const PqTokens& t, const float* weights, size_t stride,
                                size_t num_queries, float* out) {
  for (size_t n = 0; n < t.count; ++n) {
    for (size_t g = 0; g < t.dim / 16; ++g) {
      for (uint32_t j = 0; j < 8; ++j) {
        float y[2];
        PqPair(t, n, g, j, y);
        for (size_t q = 0; q < num_queries; ++q) {
          const float w = weights[q * stride + n];
          out[q * t.dim + 16 * g + 2 * j] += w * y[0];
          out[q * t.dim + 16 * g + 2 * j + 1] += w * y[1];
        }
      }
    }
  }
}

}  // namespace angle_attention_internal
}  // namespace simd
}  // namespace kvc
#endif  // KVCODEC_CODEC_SIMD_ANGLE_ATTENTION_SCALAR_

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace internal = angle_attention_internal;

#if HWY_TARGET != HWY_SCALAR
// At most 8 pairs a vector: a PolarQuant group is 8 pairs, and a vector of
// pairs never straddles two groups.
using D = hn::CappedTag<float, 16>;
using D64 = hn::Repartition<uint64_t, D>;
using D32 = hn::Rebind<uint32_t, D64>;  // as many 32-bit lanes as pairs
using V = hn::Vec<D>;
using V64 = hn::Vec<D64>;
using V32 = hn::Vec<D32>;

HWY_INLINE V32 LoadNarrow(const uint8_t* p) {
  return hn::PromoteTo(D32(), hn::LoadU(hn::Rebind<uint8_t, D64>(), p));
}
HWY_INLINE V32 LoadNarrow(const uint16_t* p) {
  return hn::PromoteTo(D32(), hn::LoadU(hn::Rebind<uint16_t, D64>(), p));
}

// Both 32-bit halves of every lane made its low half: the pair's two floats
// get the same weight, whatever the byte order.
HWY_INLINE V64 Spread(V32 v) {
  const V64 wide = hn::PromoteTo(D64(), v);
  return hn::Or(wide, hn::ShiftLeft<32>(wide));
}

HWY_INLINE V GatherPairs(const uint64_t* table, V64 index) {
  return hn::BitCast(D(), hn::GatherIndex(D64(), table, hn::BitCast(hn::RebindToSigned<D64>(),
                                                                     index)));
}

// P pairs of u_n from pair `at` = n * pairs + j on.
template <TaRadius kRadius, typename Bin>
HWY_INLINE V TaVector(const TaTokens& t, const Bin* bins, size_t at) {
  const D d;
  const V32 bin = LoadNarrow(bins + at);
  if (kRadius == TaRadius::kLog4) {
    const V32 entry = hn::Add(hn::Mul(LoadNarrow(t.codes + at), hn::Set(D32(), t.bins)), bin);
    return GatherPairs(t.table, hn::PromoteTo(D64(), entry));
  }
  const V cos_sin = GatherPairs(t.table, hn::PromoteTo(D64(), bin));
  if (kRadius == TaRadius::kLinear8) {
    const hn::RebindToSigned<D> di;
    return hn::Mul(hn::ConvertTo(d, hn::BitCast(di, Spread(LoadNarrow(t.codes + at)))), cos_sin);
  }
  const V32 radius = hn::LoadU(D32(), reinterpret_cast<const uint32_t*>(t.radii + at));
  return hn::Mul(hn::BitCast(d, Spread(radius)), cos_sin);
}

// Accumulators of kQ queries (kQ in 0..4; 0: sums of squares).
template <size_t kQ, TaRadius kRadius, typename Bin>
void TaDotsPass(const TaTokens& t, const Bin* bins, const float* HWY_RESTRICT queries,
                float* HWY_RESTRICT dots, size_t stride, float* HWY_RESTRICT sum_squares) {
  const D d;
  const size_t P = hn::Lanes(D64()), dim = 2 * t.pairs;
  const size_t whole = t.pairs / P * P;
  // kQ 0 (sums of squares only): queries is null and never offset.
  const float* q0 = queries;
  const float* q1 = kQ > 1 ? queries + dim : queries;
  const float* q2 = kQ > 2 ? queries + 2 * dim : queries;
  const float* q3 = kQ > 3 ? queries + 3 * dim : queries;
  for (size_t n = 0; n < t.count; ++n) {
    V a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (size_t j = 0; j < whole; j += P) {
      const V y = TaVector<kRadius>(t, bins, n * t.pairs + j);
      if (kQ == 0) a0 = hn::MulAdd(y, y, a0);
      if (kQ >= 1) a0 = hn::MulAdd(y, hn::LoadU(d, q0 + 2 * j), a0);
      if (kQ >= 2) a1 = hn::MulAdd(y, hn::LoadU(d, q1 + 2 * j), a1);
      if (kQ >= 3) a2 = hn::MulAdd(y, hn::LoadU(d, q2 + 2 * j), a2);
      if (kQ >= 4) a3 = hn::MulAdd(y, hn::LoadU(d, q3 + 2 * j), a3);
    }
    float s0 = hn::GetLane(hn::SumOfLanes(d, a0)), s1 = 0, s2 = 0, s3 = 0;
    if (kQ >= 2) s1 = hn::GetLane(hn::SumOfLanes(d, a1));
    if (kQ >= 3) s2 = hn::GetLane(hn::SumOfLanes(d, a2));
    if (kQ >= 4) s3 = hn::GetLane(hn::SumOfLanes(d, a3));
    for (size_t j = whole; j < t.pairs; ++j) {
      float y[2];
      internal::TaPair(t, n, j, y);
      auto dot = [&](const float* q) HWY_ATTR { return y[0] * q[2 * j] + y[1] * q[2 * j + 1]; };
      if (kQ == 0) s0 += y[0] * y[0] + y[1] * y[1];
      if (kQ >= 1) s0 += dot(q0);
      if (kQ >= 2) s1 += dot(q1);
      if (kQ >= 3) s2 += dot(q2);
      if (kQ >= 4) s3 += dot(q3);
    }
    if (kQ == 0) sum_squares[n] = s0;
    if (kQ >= 1) dots[n] = s0;
    if (kQ >= 2) dots[stride + n] = s1;
    if (kQ >= 3) dots[2 * stride + n] = s2;
    if (kQ >= 4) dots[3 * stride + n] = s3;
  }
}

template <size_t kQ, TaRadius kRadius, typename Bin>
void TaSumPass(const TaTokens& t, const Bin* bins, const float* HWY_RESTRICT weights,
               size_t stride, float* HWY_RESTRICT out) {
  const D d;
  const size_t P = hn::Lanes(D64()), dim = 2 * t.pairs;
  const size_t whole = t.pairs / P * P;
  const float* w0 = weights;
  const float* w1 = weights + stride;
  const float* w2 = weights + 2 * stride;
  const float* w3 = weights + 3 * stride;
  for (size_t j = 0; j < whole; j += P) {
    float* o = out + 2 * j;
    V a0 = hn::LoadU(d, o), a1 = a0, a2 = a0, a3 = a0;
    if (kQ >= 2) a1 = hn::LoadU(d, o + dim);
    if (kQ >= 3) a2 = hn::LoadU(d, o + 2 * dim);
    if (kQ >= 4) a3 = hn::LoadU(d, o + 3 * dim);
    for (size_t n = 0; n < t.count; ++n) {
      const V y = TaVector<kRadius>(t, bins, n * t.pairs + j);
      a0 = hn::MulAdd(hn::Set(d, w0[n]), y, a0);
      if (kQ >= 2) a1 = hn::MulAdd(hn::Set(d, w1[n]), y, a1);
      if (kQ >= 3) a2 = hn::MulAdd(hn::Set(d, w2[n]), y, a2);
      if (kQ >= 4) a3 = hn::MulAdd(hn::Set(d, w3[n]), y, a3);
    }
    hn::StoreU(a0, d, o);
    if (kQ >= 2) hn::StoreU(a1, d, o + dim);
    if (kQ >= 3) hn::StoreU(a2, d, o + 2 * dim);
    if (kQ >= 4) hn::StoreU(a3, d, o + 3 * dim);
  }
  for (size_t n = 0; n < t.count; ++n) {
    for (size_t j = whole; j < t.pairs; ++j) {
      float y[2];
      internal::TaPair(t, n, j, y);
      for (size_t q = 0; q < kQ; ++q) {
        out[q * dim + 2 * j] += weights[q * stride + n] * y[0];
        out[q * dim + 2 * j + 1] += weights[q * stride + n] * y[1];
      }
    }
  }
}

// Queries 4, then 2, then 1 at a time.
template <class Pass>
HWY_INLINE void ByFours(size_t num_queries, Pass&& pass) {
  size_t q = 0;
  for (; q + 4 <= num_queries; q += 4) pass(q, std::integral_constant<size_t, 4>());
  if (q + 2 <= num_queries) {
    pass(q, std::integral_constant<size_t, 2>());
    q += 2;
  }
  if (q < num_queries) pass(q, std::integral_constant<size_t, 1>());
}

template <TaRadius kRadius, typename Bin>
void TaDotsTyped(const TaTokens& t, const Bin* bins, const float* queries, size_t num_queries,
                 float* dots, size_t stride, float* sum_squares) {
  const size_t dim = 2 * t.pairs;
  if (num_queries == 0) {
    if (sum_squares != nullptr) TaDotsPass<0, kRadius>(t, bins, nullptr, nullptr, 0, sum_squares);
    return;
  }
  ByFours(num_queries, [&](size_t q, auto k) HWY_ATTR {
    TaDotsPass<decltype(k)::value, kRadius>(t, bins, queries + q * dim, dots + q * stride,
                                            stride, nullptr);
  });
}

template <TaRadius kRadius, typename Bin>
void TaSumTyped(const TaTokens& t, const Bin* bins, const float* weights, size_t stride,
                size_t num_queries, float* out) {
  const size_t dim = 2 * t.pairs;
  ByFours(num_queries, [&](size_t q, auto k) HWY_ATTR {
    TaSumPass<decltype(k)::value, kRadius>(t, bins, weights + q * stride, stride,
                                           out + q * dim);
  });
}

// Calls run(radius constant, bins) for the tokens' radius kind and bin type.
template <class Run>
HWY_INLINE void TaDispatch(const TaTokens& t, Run&& run) {
  auto with_bins = [&](auto radius) HWY_ATTR {
    if (t.bins8 != nullptr) {
      run(radius, t.bins8);
    } else {
      run(radius, t.bins16);
    }
  };
  using R = TaRadius;
  switch (t.radius) {
    case R::kLinear8: return with_bins(std::integral_constant<R, R::kLinear8>());
    case R::kLog4: return with_bins(std::integral_constant<R, R::kLog4>());
    default: return with_bins(std::integral_constant<R, R::kExact>());
  }
}

// Per-lane constants of the PolarQuant index arithmetic for pair j of a
// group (j < 8), in memory for the vector of pairs [h, h + P) to load.
struct PqLanes {
  HWY_ALIGN uint64_t circle_shift[8];  // of pair j's level-1 code
  HWY_ALIGN uint64_t shift2[8];        // of its level-2 code
  HWY_ALIGN uint64_t shift3[8];        // of its level-3 code
  HWY_ALIGN uint64_t sides[8];         // its sides, in place in the index
  int shift4;                          // of the level-4 code
  int at2, at3;                        // where the level-2, -3 codes go
  uint64_t mask[4];

  explicit PqLanes(const int* b) {
    const int off2 = 8 * b[0], off3 = off2 + 4 * b[1];
    shift4 = off3 + 2 * b[2];
    at3 = b[3] + 2;
    at2 = at3 + b[2] + 1;
    for (uint32_t j = 0; j < 8; ++j) {
      circle_shift[j] = static_cast<uint64_t>(b[0]) * j;
      shift2[j] = static_cast<uint64_t>(off2 + b[1] * static_cast<int>(j >> 1));
      shift3[j] = static_cast<uint64_t>(off3 + b[2] * static_cast<int>(j >> 2));
      sides[j] = PqFactorIndex(b, 0, 0, 0, j);
    }
    for (int l = 0; l < 4; ++l) mask[l] = (uint64_t{1} << b[l]) - 1;
  }
};

// The level's code of every lane from its group's field.
HWY_INLINE V64 PqCode(V64 field, const uint64_t* shifts, uint64_t mask) {
  const D64 d64;
  return hn::And(hn::Shr(field, hn::LoadU(d64, shifts)), hn::Set(d64, mask));
}

// Pairs [h, h + P) of a group with codes `field` and radius R.
HWY_INLINE V PqVector(const PqTokens& t, const PqLanes& lanes, V64 field, V radius, size_t h) {
  const D64 d64;
  const V64 bin = PqCode(field, lanes.circle_shift + h, lanes.mask[0]);
  const V64 c2 = hn::ShiftLeftSame(PqCode(field, lanes.shift2 + h, lanes.mask[1]), lanes.at2);
  const V64 c3 = hn::ShiftLeftSame(PqCode(field, lanes.shift3 + h, lanes.mask[2]), lanes.at3);
  const V64 c4 = hn::ShiftLeftSame(
      hn::And(hn::ShiftRightSame(field, lanes.shift4), hn::Set(d64, lanes.mask[3])), 1);
  const V64 index = hn::Or(hn::Or(c2, c3), hn::Or(c4, hn::LoadU(d64, lanes.sides + h)));
  return hn::Mul(hn::Mul(radius, GatherPairs(t.factors, index)), GatherPairs(t.circle, bin));
}

template <size_t kQ>
void PqDotsPass(const PqTokens& t, const PqLanes& lanes, const float* HWY_RESTRICT queries,
                float* HWY_RESTRICT dots, size_t stride) {
  const D d;
  const D64 d64;
  const size_t P = hn::Lanes(d64), groups = t.dim / 16;
  const float* q0 = queries;
  const float* q1 = queries + t.dim;
  const float* q2 = queries + 2 * t.dim;
  const float* q3 = queries + 3 * t.dim;
  for (size_t n = 0; n < t.count; ++n) {
    V a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (size_t g = 0; g < groups; ++g) {
      const V64 field = hn::Set(d64, t.fields[n * groups + g]);
      const V radius = hn::Set(d, t.radii[n * groups + g]);
      for (size_t h = 0; h < 8; h += P) {
        const V y = PqVector(t, lanes, field, radius, h);
        const size_t i = 16 * g + 2 * h;
        a0 = hn::MulAdd(y, hn::LoadU(d, q0 + i), a0);
        if (kQ >= 2) a1 = hn::MulAdd(y, hn::LoadU(d, q1 + i), a1);
        if (kQ >= 3) a2 = hn::MulAdd(y, hn::LoadU(d, q2 + i), a2);
        if (kQ >= 4) a3 = hn::MulAdd(y, hn::LoadU(d, q3 + i), a3);
      }
    }
    dots[n] = hn::GetLane(hn::SumOfLanes(d, a0));
    if (kQ >= 2) dots[stride + n] = hn::GetLane(hn::SumOfLanes(d, a1));
    if (kQ >= 3) dots[2 * stride + n] = hn::GetLane(hn::SumOfLanes(d, a2));
    if (kQ >= 4) dots[3 * stride + n] = hn::GetLane(hn::SumOfLanes(d, a3));
  }
}

template <size_t kQ>
void PqSumPass(const PqTokens& t, const PqLanes& lanes, const float* HWY_RESTRICT weights,
               size_t stride, float* HWY_RESTRICT out) {
  const D d;
  const D64 d64;
  const size_t P = hn::Lanes(d64), groups = t.dim / 16;
  const float* w0 = weights;
  const float* w1 = weights + stride;
  const float* w2 = weights + 2 * stride;
  const float* w3 = weights + 3 * stride;
  for (size_t g = 0; g < groups; ++g) {
    for (size_t h = 0; h < 8; h += P) {
      float* o = out + 16 * g + 2 * h;
      V a0 = hn::LoadU(d, o), a1 = a0, a2 = a0, a3 = a0;
      if (kQ >= 2) a1 = hn::LoadU(d, o + t.dim);
      if (kQ >= 3) a2 = hn::LoadU(d, o + 2 * t.dim);
      if (kQ >= 4) a3 = hn::LoadU(d, o + 3 * t.dim);
      for (size_t n = 0; n < t.count; ++n) {
        const V64 field = hn::Set(d64, t.fields[n * groups + g]);
        const V y = PqVector(t, lanes, field, hn::Set(d, t.radii[n * groups + g]), h);
        a0 = hn::MulAdd(hn::Set(d, w0[n]), y, a0);
        if (kQ >= 2) a1 = hn::MulAdd(hn::Set(d, w1[n]), y, a1);
        if (kQ >= 3) a2 = hn::MulAdd(hn::Set(d, w2[n]), y, a2);
        if (kQ >= 4) a3 = hn::MulAdd(hn::Set(d, w3[n]), y, a3);
      }
      hn::StoreU(a0, d, o);
      if (kQ >= 2) hn::StoreU(a1, d, o + t.dim);
      if (kQ >= 3) hn::StoreU(a2, d, o + 2 * t.dim);
      if (kQ >= 4) hn::StoreU(a3, d, o + 3 * t.dim);
    }
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

void TaDotsImpl(const TaTokens& t, const float* queries, size_t num_queries, float* dots,
                size_t stride, float* sum_squares) {
#if HWY_TARGET == HWY_SCALAR
  internal::TaDotsScalar(t, queries, num_queries, dots, stride, sum_squares);
#else
  TaDispatch(t, [&](auto radius, const auto* bins) HWY_ATTR {
    TaDotsTyped<decltype(radius)::value>(t, bins, queries, num_queries, dots, stride,
                                         sum_squares);
  });
#endif
}

void TaWeightedSumImpl(const TaTokens& t, const float* weights, size_t stride,
                       size_t num_queries, float* out) {
#if HWY_TARGET == HWY_SCALAR
  internal::TaWeightedSumScalar(t, weights, stride, num_queries, out);
#else
  TaDispatch(t, [&](auto radius, const auto* bins) HWY_ATTR {
    TaSumTyped<decltype(radius)::value>(t, bins, weights, stride, num_queries, out);
  });
#endif
}

void PqDotsImpl(const PqTokens& t, const float* queries, size_t num_queries, float* dots,
                size_t stride) {
#if HWY_TARGET == HWY_SCALAR
  internal::PqDotsScalar(t, queries, num_queries, dots, stride);
#else
  const PqLanes lanes(t.bits);
  ByFours(num_queries, [&](size_t q, auto k) HWY_ATTR {
    PqDotsPass<decltype(k)::value>(t, lanes, queries + q * t.dim, dots + q * stride, stride);
  });
#endif
}

void PqWeightedSumImpl(const PqTokens& t, const float* weights, size_t stride,
                       size_t num_queries, float* out) {
#if HWY_TARGET == HWY_SCALAR
  internal::PqWeightedSumScalar(t, weights, stride, num_queries, out);
#else
  const PqLanes lanes(t.bits);
  ByFours(num_queries, [&](size_t q, auto k) HWY_ATTR {
    PqSumPass<decltype(k)::value>(t, lanes, weights + q * stride, stride, out + q * t.dim);
  });
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

HWY_EXPORT(TaDotsImpl);
HWY_EXPORT(TaWeightedSumImpl);
HWY_EXPORT(PqDotsImpl);
HWY_EXPORT(PqWeightedSumImpl);

void TaDots(const TaTokens& tokens, const float* queries, size_t num_queries, float* dots,
            size_t stride, float* sum_squares) {
  HWY_DYNAMIC_DISPATCH(TaDotsImpl)(tokens, queries, num_queries, dots, stride, sum_squares);
}

void TaWeightedSum(const TaTokens& tokens, const float* weights, size_t stride,
                   size_t num_queries, float* out) {
  HWY_DYNAMIC_DISPATCH(TaWeightedSumImpl)(tokens, weights, stride, num_queries, out);
}

void PqDots(const PqTokens& tokens, const float* queries, size_t num_queries, float* dots,
            size_t stride) {
  HWY_DYNAMIC_DISPATCH(PqDotsImpl)(tokens, queries, num_queries, dots, stride);
}

void PqWeightedSum(const PqTokens& tokens, const float* weights, size_t stride,
                   size_t num_queries, float* out) {
  HWY_DYNAMIC_DISPATCH(PqWeightedSumImpl)(tokens, weights, stride, num_queries, out);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
