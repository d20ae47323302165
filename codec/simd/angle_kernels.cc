// Pair angle bins and radii, PolarQuant's folds and TurboAngle's rows,
// lane-parallel (simd/angle-inl.h: the same f32 operations as the scalar
// reference).
//
// TurboAngle rows repeat the reference's f32 arithmetic lane by lane:
// - encode: pairs deinterleaved from the rotated row, bin, radius
//   sqrt(x * x + y * y), u = r * inverse_rms, then u * 63.75 + 0.5 clamped
//   (LINEAR8) or the count of log thresholds below u (LOG4, a binary
//   search); digits and 4-bit codes packed as kvc::PackBits does;
// - decode: the LINEAR8 level f32(code * (4 / 255.0)) in double as the
//   reference computes it (or the LOG4 level from an in-register table),
//   times rms, times the (cos, sin) of the bin fetched as one 64-bit entry,
//   so that the pair comes out interleaved as it is stored.
#include "simd/angle_kernels.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "base/endian.h"
#include "base/portable_math.h"
#include "simd/bitpack.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/angle_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "simd/angle-inl.h"
#include "simd/bitpack-inl.h"
#include "simd/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void PairAnglesImpl(const float* HWY_RESTRICT v, size_t pairs, uint32_t n,
                    uint32_t* HWY_RESTRICT bins, float* HWY_RESTRICT radii) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t N = hn::Lanes(d);
  const float per_radian = static_cast<float>(n) * 0.159154943f;  // as AngleBin
  const auto vpr = hn::Set(d, per_radian);
  const auto last = hn::Set(di, static_cast<int32_t>(n - 1));
  size_t i = 0;
  for (; i + N <= pairs; i += N) {
    hn::Vec<decltype(d)> x, y;
    hn::LoadInterleaved2(d, v + 2 * i, x, y);
    hn::Vec<decltype(di)> bin;
    AngleBins<1>(d, &x, &y, vpr, last, &bin);
    hn::StoreU(bin, di, reinterpret_cast<int32_t*>(bins + i));
    if (radii != nullptr) {
      hn::StoreU(hn::Sqrt(hn::Add(hn::Mul(x, x), hn::Mul(y, y))), d, radii + i);
    }
  }
  for (; i < pairs; ++i) {
    const float x = v[2 * i], y = v[2 * i + 1];
    bins[i] = AngleBin(x, y, n);
    if (radii != nullptr) radii[i] = std::sqrt(x * x + y * y);
  }
}

void FoldPairsImpl(const float* HWY_RESTRICT r, size_t pairs,
                   const float* HWY_RESTRICT tan_thresholds, size_t count,
                   uint32_t* HWY_RESTRICT bins, float* HWY_RESTRICT radii) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= pairs; i += N) {
    hn::Vec<decltype(d)> e, o;
    hn::LoadInterleaved2(d, r + 2 * i, e, o);
    auto bin = hn::Zero(di);
    for (size_t k = 0; k < count; ++k) {  // mask lanes are -1
      const auto above = hn::Lt(hn::Mul(hn::Set(d, tan_thresholds[k]), e), o);
      bin = hn::Sub(bin, hn::VecFromMask(di, hn::RebindMask(di, above)));
    }
    hn::StoreU(bin, di, reinterpret_cast<int32_t*>(bins + i));
    hn::StoreU(hn::Sqrt(hn::Add(hn::Mul(e, e), hn::Mul(o, o))), d, radii + i);
  }
  for (; i < pairs; ++i) {
    const float e = r[2 * i], o = r[2 * i + 1];
    uint32_t bin = 0;
    for (size_t k = 0; k < count; ++k) bin += o > tan_thresholds[k] * e;
    bins[i] = bin;
    radii[i] = std::sqrt(e * e + o * o);
  }
}

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
using D = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<D>;
using V = hn::Vec<D>;
using VI = hn::Vec<DI>;
constexpr size_t kLanes = hn::MaxLanes(D());
constexpr size_t kMaxPairs = 1024;  // head_dim 2048
// Vectors of pairs that the angle steps interleave: 8 where a row has them,
// then 4. The series and the two divisions are a long chain of latency;
// on AVX2 at head_dim 128 eight chains encode 6-10% faster than four, the
// spills of 16 registers included.
constexpr size_t kGroup = 8;

// Calls group(i, std::integral_constant<size_t, M>()) over a row's whole
// vectors of pairs, M vectors from pair i on: M = kGroup while they last,
// then kGroup / 2, then 1. Returns the pairs taken.
template <class Group>
HWY_INLINE size_t ForEachGroup(size_t pairs, const Group& group) {
  size_t i = 0;
  for (; i + kGroup * kLanes <= pairs; i += kGroup * kLanes) {
    group(i, std::integral_constant<size_t, kGroup>());
  }
  for (; i + kGroup / 2 * kLanes <= pairs; i += kGroup / 2 * kLanes) {
    group(i, std::integral_constant<size_t, kGroup / 2>());
  }
  for (; i + kLanes <= pairs; i += kLanes) group(i, std::integral_constant<size_t, 1>());
  return i;
}

// Whether the kernels take these rows on this target.
bool Applies(const TaRows& p) {
  return p.pairs % kLanes == 0 && p.pairs <= kMaxPairs && p.digit_bits >= 1 &&
         p.digit_bits <= 8 && p.pairs * static_cast<size_t>(p.digit_bits) % 8 == 0;
}

size_t RadiusBytes(const TaRows& p) { return p.log4 ? p.pairs / 2 : p.pairs; }

template <bool kLog4>
void EncodeRows(const TaRows& p, const float* HWY_RESTRICT y, size_t count,
                const float* HWY_RESTRICT inverse_rms, uint8_t* HWY_RESTRICT angles,
                uint8_t* HWY_RESTRICT radii) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  const IndexSearch<D, 4> search(p.log4_thresholds);
  const uint32_t bins = 1u << p.digit_bits;
  const V per_radian = hn::Set(d, static_cast<float>(bins) * 0.159154943f);  // as AngleBin
  const VI last = hn::Set(di, static_cast<int32_t>(bins - 1));
  const V linear_scale = hn::Set(d, 63.75f);  // 255.0f / 4.0f, exact
  const V half = hn::Set(d, 0.5f);
  const V top = hn::Set(d, 255.0f);
  const size_t angle_bytes = p.pairs * static_cast<size_t>(p.digit_bits) / 8;
  const size_t radius_bytes = RadiusBytes(p);
  HWY_ALIGN uint8_t digits[kMaxPairs];
  HWY_ALIGN uint8_t levels[kMaxPairs];
  for (size_t n = 0; n < count; ++n) {
    const float* row = y + n * 2 * p.pairs;
    const V inverse = hn::Set(d, inverse_rms[n]);
    uint8_t* radius_record = radii + n * radius_bytes;
    // kGroup vectors of pairs at once (a step of each after the other).
    auto group = [&](size_t i, auto group_size) HWY_ATTR {
      constexpr size_t kGroup = decltype(group_size)::value;
      V x0[kGroup], x1[kGroup];
      VI bin[kGroup];
      HWY_UNROLL(8)
      for (size_t m = 0; m < kGroup; ++m) {
        hn::LoadInterleaved2(d, row + 2 * (i + m * kLanes), x0[m], x1[m]);
      }
      AngleBins<kGroup>(d, x0, x1, per_radian, last, bin);
      HWY_UNROLL(8)
      for (size_t m = 0; m < kGroup; ++m) {
        const size_t at = i + m * kLanes;
        hn::StoreU(hn::DemoteTo(d8, bin[m]), d8, digits + at);
        const V u =
            hn::Mul(hn::Sqrt(hn::Add(hn::Mul(x0[m], x0[m]), hn::Mul(x1[m], x1[m]))), inverse);
        if (kLog4) {
          hn::StoreU(hn::DemoteTo(d8, search.Index(u)), d8, levels + at);
        } else {
          // u >= 0, so min(q, 255) truncated is q >= 255 ? 255 : uint32(q).
          const V q = hn::Min(hn::Add(hn::Mul(u, linear_scale), half), top);
          hn::StoreU(hn::DemoteTo(d8, hn::ConvertTo(di, q)), d8, radius_record + at);
        }
      }
    };
    ForEachGroup(p.pairs, group);  // every pair: Applies() asks for whole vectors
    PackFields(digits, p.pairs, p.digit_bits, angles + n * angle_bytes);
    if (kLog4) PackFields(levels, p.pairs, 4, radius_record);
  }
}

template <bool kLog4>
void DecodeRows(const TaRows& p, const uint8_t* HWY_RESTRICT angles,
                const uint8_t* HWY_RESTRICT radii, const float* HWY_RESTRICT rms, size_t count,
                float* HWY_RESTRICT y) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  const hn::Half<DI> dih;
  const hn::Repartition<double, D> dd;            // kLanes / 2 doubles
  const hn::Rebind<float, decltype(dd)> dfh;      // and as many floats
  const hn::Repartition<uint64_t, D> d64;
  const hn::RebindToSigned<decltype(d64)> di64;
  const SmallTable<D, 4> log_levels(p.log4_levels);
  const auto code_scale = hn::Set(dd, 4.0 / 255.0);  // the reference's double
  // Lane j of the two outputs takes the radius of pair j / 2.
  HWY_ALIGN int32_t spread[2 * kLanes];
  for (size_t j = 0; j < 2 * kLanes; ++j) spread[j] = static_cast<int32_t>(j / 2);
  const auto spread_low = hn::SetTableIndices(d, spread);
  const auto spread_high = hn::SetTableIndices(d, spread + kLanes);
  const size_t angle_bytes = p.pairs * static_cast<size_t>(p.digit_bits) / 8;
  const size_t radius_bytes = RadiusBytes(p);
  HWY_ALIGN uint8_t digits[kMaxPairs];
  HWY_ALIGN uint8_t levels[kMaxPairs];
  for (size_t n = 0; n < count; ++n) {
    UnpackFields(angles + n * angle_bytes, p.pairs, p.digit_bits, digits);
    const uint8_t* codes = radii + n * radius_bytes;
    if (kLog4) {
      UnpackFields(codes, p.pairs, 4, levels);
      codes = levels;
    }
    const V scale = hn::Set(d, rms[n]);
    float* row = y + n * 2 * p.pairs;
    for (size_t i = 0; i < p.pairs; i += kLanes) {
      const VI code = hn::PromoteTo(di, hn::LoadU(d8, codes + i));
      V level;
      if (kLog4) {
        level = log_levels.Lookup(code);
      } else {
        const auto low = hn::DemoteTo(dfh, hn::Mul(hn::PromoteTo(dd, hn::LowerHalf(dih, code)),
                                                   code_scale));
        const auto high = hn::DemoteTo(dfh, hn::Mul(hn::PromoteTo(dd, hn::UpperHalf(dih, code)),
                                                    code_scale));
        level = hn::Combine(d, high, low);
      }
      const V r = hn::Mul(level, scale);
      const VI bin = hn::PromoteTo(di, hn::LoadU(d8, digits + i));
      const auto cs_low = hn::BitCast(
          d, hn::GatherIndex(d64, p.cos_sin, hn::PromoteTo(di64, hn::LowerHalf(dih, bin))));
      const auto cs_high = hn::BitCast(
          d, hn::GatherIndex(d64, p.cos_sin, hn::PromoteTo(di64, hn::UpperHalf(dih, bin))));
      hn::StoreU(hn::Mul(hn::TableLookupLanes(r, spread_low), cs_low), d, row + 2 * i);
      hn::StoreU(hn::Mul(hn::TableLookupLanes(r, spread_high), cs_high), d,
                 row + 2 * i + kLanes);
    }
  }
}
// ---------------------------------------------------------------- PolarQuant

constexpr size_t kMaxGroups = kMaxPairs / 8;  // head_dim 2048

size_t GroupBits(const PqRows& p) {
  return static_cast<size_t>(8 * p.bits[0] + 4 * p.bits[1] + 2 * p.bits[2] + p.bits[3]);
}
size_t RecordBytes(const PqRows& p) { return (p.dim / 16 * GroupBits(p) + 7) / 8; }

// A group's codes are read and written as one 64-bit word at its first
// byte, so they must fit in 64 bits after a shift of up to 7.
bool Applies(const PqRows& p) {
  if (p.dim % 16 != 0 || p.dim / 16 > kMaxGroups || p.bits[0] < 1 || p.bits[0] > 8) {
    return false;
  }
  for (int level = 1; level < 4; ++level) {
    if (p.bits[level] < 1 || p.bits[level] > 4) return false;
  }
  return GroupBits(p) + 7 <= 64;
}

// A group's codes as one field: its 8, 4, 2 and 1 codes of levels 1-4
// packed LSB first, the levels after one another. Codes come one a byte; the
// bytes of a level are merged pairwise (as simd/bitpack.h does), 16, 32 then
// 64 bits wide, for every group of a register at once (u64 lanes), or one
// group at a time in plain integers for the groups left over.
using D64 = hn::Repartition<uint64_t, D>;
using V64 = hn::Vec<D64>;
constexpr size_t kFieldLanes = hn::MaxLanes(D64());

template <class T>
HWY_INLINE T MergeStep(T x, T mask, int width, int shift) {
  return hn::Or(hn::And(x, mask), hn::ShiftLeftSame(hn::And(hn::ShiftRightSame(x, width), mask),
                                                       shift));
}
HWY_INLINE uint64_t MergeStep(uint64_t x, uint64_t mask, int width, int shift) {
  return (x & mask) | ((x >> width) & mask) << shift;
}
template <class T>
HWY_INLINE T SplitStep(T x, T mask, int shift, int width) {
  return hn::Or(hn::And(x, mask), hn::ShiftLeftSame(hn::And(hn::ShiftRightSame(x, shift), mask),
                                                       width));
}
HWY_INLINE uint64_t SplitStep(uint64_t x, uint64_t mask, int shift, int width) {
  return (x & mask) | ((x >> shift) & mask) << width;
}

// `count` codes of b bits, one a byte in the low bytes of x -> packed.
template <class T, class Splat>
HWY_INLINE T MergeCodes(T x, int count, int b, Splat splat) {
  if (count >= 2) x = MergeStep(x, splat(0x00FF00FF00FF00FFull), 8, b);
  if (count >= 4) x = MergeStep(x, splat(0x0000FFFF0000FFFFull), 16, 2 * b);
  if (count >= 8) x = MergeStep(x, splat(0x00000000FFFFFFFFull), 32, 4 * b);
  return x;
}

// The inverse: `count` packed codes of b bits (nothing above them) -> one a
// byte.
template <class T, class Splat>
HWY_INLINE T SplitCodes(T x, int count, int b, Splat splat) {
  const uint64_t ub = static_cast<uint64_t>(b);
  if (count >= 8) x = SplitStep(x, splat((uint64_t{1} << (4 * ub)) - 1), 4 * b, 32);
  if (count >= 4) {
    x = SplitStep(x, splat(((uint64_t{1} << (2 * ub)) - 1) * 0x0000000100000001ull), 2 * b, 16);
  }
  if (count >= 2) {
    x = SplitStep(x, splat(((uint64_t{1} << ub) - 1) * 0x0001000100010001ull), b, 8);
  }
  return x;
}

HWY_INLINE uint64_t Mask(int bits) { return (uint64_t{1} << bits) - 1; }

// Fields of groups [g, g + kFieldLanes) from the code arrays c[level]
// (level l holds 8 >> l codes a group).
HWY_INLINE V64 GroupFields(const PqRows& p, uint8_t (*c)[kMaxPairs], size_t g) {
  const D64 d64;
  const hn::Rebind<uint32_t, D64> d32;
  const hn::Rebind<uint16_t, D64> d16;
  const hn::Rebind<uint8_t, D64> d8;
  const hn::Repartition<uint8_t, D64> d8x8;
  const hn::Repartition<uint8_t, decltype(d32)> d8x4;
  const hn::Repartition<uint8_t, decltype(d16)> d8x2;
  auto splat = [&](uint64_t v) HWY_ATTR { return hn::Set(d64, v); };
  const V64 level[4] = {
      hn::BitCast(d64, hn::LoadU(d8x8, c[0] + 8 * g)),
      hn::PromoteTo(d64, hn::BitCast(d32, hn::LoadU(d8x4, c[1] + 4 * g))),
      hn::PromoteTo(d64, hn::PromoteTo(d32, hn::BitCast(d16, hn::LoadU(d8x2, c[2] + 2 * g)))),
      hn::PromoteTo(d64, hn::PromoteTo(d32, hn::LoadU(d8, c[3] + g)))};
  V64 field = hn::Zero(d64);
  for (int l = 0, shift = 0; l < 4; shift += (8 >> l) * p.bits[l], ++l) {
    field = hn::Or(field, hn::ShiftLeftSame(MergeCodes(level[l], 8 >> l, p.bits[l], splat), shift));
  }
  return field;
}

HWY_INLINE uint64_t GroupField(const PqRows& p, uint8_t (*c)[kMaxPairs], size_t g) {
  auto splat = [](uint64_t v) { return v; };
  uint64_t field = 0;
  for (int l = 0, shift = 0; l < 4; shift += (8 >> l) * p.bits[l], ++l) {
    const size_t m = size_t{8} >> l;
    uint64_t codes = 0;
    for (size_t j = 0; j < m; ++j) codes |= uint64_t{c[l][g * m + j]} << (8 * j);
    field |= MergeCodes(codes, static_cast<int>(m), p.bits[l], splat) << shift;
  }
  return field;
}

// The codes of groups [g, g + kFieldLanes) from their fields, into c[level].
HWY_INLINE void SplitFields(const PqRows& p, V64 field, size_t g, uint8_t (*c)[kMaxPairs]) {
  const D64 d64;
  const hn::Rebind<uint32_t, D64> d32;
  const hn::Rebind<uint16_t, D64> d16;
  const hn::Rebind<uint8_t, D64> d8;
  const hn::Repartition<uint8_t, D64> d8x8;
  const hn::Repartition<uint8_t, decltype(d32)> d8x4;
  const hn::Repartition<uint8_t, decltype(d16)> d8x2;
  auto splat = [&](uint64_t v) HWY_ATTR { return hn::Set(d64, v); };
  V64 level[4];
  for (int l = 0; l < 4; ++l) {
    const int width = (8 >> l) * p.bits[l];
    level[l] = SplitCodes(hn::And(field, splat(Mask(width))), 8 >> l, p.bits[l], splat);
    field = hn::ShiftRightSame(field, width);
  }
  hn::StoreU(hn::BitCast(d8x8, level[0]), d8x8, c[0] + 8 * g);
  hn::StoreU(hn::BitCast(d8x4, hn::TruncateTo(d32, level[1])), d8x4, c[1] + 4 * g);
  hn::StoreU(hn::BitCast(d8x2, hn::TruncateTo(d16, level[2])), d8x2, c[2] + 2 * g);
  hn::StoreU(hn::TruncateTo(d8, level[3]), d8, c[3] + g);
}

HWY_INLINE void SplitField(const PqRows& p, uint64_t field, size_t g, uint8_t (*c)[kMaxPairs]) {
  auto splat = [](uint64_t v) { return v; };
  for (int l = 0; l < 4; ++l) {
    const int width = (8 >> l) * p.bits[l];
    const size_t m = size_t{8} >> l;
    const uint64_t codes = SplitCodes(field & Mask(width), static_cast<int>(m), p.bits[l], splat);
    for (size_t j = 0; j < m; ++j) c[l][g * m + j] = static_cast<uint8_t>(codes >> (8 * j));
    field >>= width;
  }
}

// out[2i] = a[i], out[2i+1] = b[i]. On AVX2 the pairs are interleaved
// within 128-bit blocks and stored a half at a time: the two cross-block
// shuffles of StoreInterleaved2 (on the one shuffle port, which the table
// lookups also use) become stores.
HWY_INLINE void StorePairs(V a, V b, float* HWY_RESTRICT out) {
  const D d;
#if HWY_TARGET == HWY_AVX2
  const hn::Half<D> dh;
  const V low = hn::InterleaveLower(d, a, b), high = hn::InterleaveUpper(d, a, b);
  hn::StoreU(hn::LowerHalf(dh, low), dh, out);
  hn::StoreU(hn::LowerHalf(dh, high), dh, out + kLanes / 2);
  hn::StoreU(hn::UpperHalf(dh, low), dh, out + kLanes);
  hn::StoreU(hn::UpperHalf(dh, high), dh, out + 3 * kLanes / 2);
#else
  hn::StoreInterleaved2(a, b, d, out);
#endif
}

// PolarQuant's fold of radii (as FoldPairs): for the pairs (e, o) = (r[2i],
// r[2i+1]), bins[i] = the count of k < count with o > tan[k] * e, and
// radii[i] = sqrt(e * e + o * o).
void FoldLevel(const float* HWY_RESTRICT r, size_t pairs, const float* HWY_RESTRICT tan,
               size_t count, uint8_t* HWY_RESTRICT bins, float* HWY_RESTRICT radii) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  size_t i = 0;
  for (; i + kLanes <= pairs; i += kLanes) {
    V e, o;
    hn::LoadInterleaved2(d, r + 2 * i, e, o);
    VI bin = hn::Zero(di);
    for (size_t k = 0; k < count; ++k) {  // mask lanes are -1
      const auto above = hn::Lt(hn::Mul(hn::Set(d, tan[k]), e), o);
      bin = hn::Sub(bin, hn::VecFromMask(di, hn::RebindMask(di, above)));
    }
    hn::StoreU(hn::DemoteTo(d8, bin), d8, bins + i);
    hn::StoreU(hn::Sqrt(hn::Add(hn::Mul(e, e), hn::Mul(o, o))), d, radii + i);
  }
  for (; i < pairs; ++i) {
    const float e = r[2 * i], o = r[2 * i + 1];
    uint8_t bin = 0;
    for (size_t k = 0; k < count; ++k) bin = static_cast<uint8_t>(bin + (o > tan[k] * e));
    bins[i] = bin;
    radii[i] = std::sqrt(e * e + o * o);
  }
}

// The inverse of a fold: out[2i] = r[i] * cos[k], out[2i+1] = r[i] * sin[k]
// for k = codes[i] (16-entry tables, made once per call of PqDecode: their
// set-up costs more than a level of one row).
HWY_INLINE void UnfoldLevel(const float* HWY_RESTRICT r, size_t m,
                            const uint8_t* HWY_RESTRICT codes, const SmallTable<D, 4>& cosines,
                            const SmallTable<D, 4>& sines, float* HWY_RESTRICT out) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  size_t i = 0;
  for (; i + kLanes <= m; i += kLanes) {
    const VI k = hn::PromoteTo(di, hn::LoadU(d8, codes + i));
    const V radius = hn::LoadU(d, r + i);
    StorePairs(hn::Mul(radius, cosines.Lookup(k)), hn::Mul(radius, sines.Lookup(k)),
               out + 2 * i);
  }
  for (; i < m; ++i) {
    out[2 * i] = r[i] * cosines.Entry(codes[i]);
    out[2 * i + 1] = r[i] * sines.Entry(codes[i]);
  }
}

void PqEncode(const PqRows& p, const float* HWY_RESTRICT y, size_t count,
              uint8_t* HWY_RESTRICT angles, float* HWY_RESTRICT radii) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  const size_t groups = p.dim / 16, pairs = p.dim / 2;
  const size_t group_bits = GroupBits(p), record_bytes = RecordBytes(p);
  const uint32_t bins = 1u << p.bits[0];
  const V per_radian = hn::Set(d, static_cast<float>(bins) * 0.159154943f);  // as AngleBin
  const VI last = hn::Set(di, static_cast<int32_t>(bins - 1));
  // Per level l: codes c[l] and radii r[l] of dim / 2^(l+1) pairs.
  HWY_ALIGN uint8_t c[4][kMaxPairs];
  HWY_ALIGN float r[4][kMaxPairs];
  uint8_t record[kMaxPairs + 8];
  for (size_t n = 0; n < count; ++n) {
    const float* row = y + n * p.dim;
    auto group = [&](size_t i, auto group_size) HWY_ATTR {
      constexpr size_t kSize = decltype(group_size)::value;
      V x0[kSize], x1[kSize];
      VI bin[kSize];
      HWY_UNROLL(8)
      for (size_t m = 0; m < kSize; ++m) {
        hn::LoadInterleaved2(d, row + 2 * (i + m * kLanes), x0[m], x1[m]);
      }
      AngleBins<kSize>(d, x0, x1, per_radian, last, bin);
      HWY_UNROLL(8)
      for (size_t m = 0; m < kSize; ++m) {
        hn::StoreU(hn::DemoteTo(d8, bin[m]), d8, c[0] + i + m * kLanes);
        hn::StoreU(hn::Sqrt(hn::Add(hn::Mul(x0[m], x0[m]), hn::Mul(x1[m], x1[m]))), d,
                   r[0] + i + m * kLanes);
      }
    };
    for (size_t i = ForEachGroup(pairs, group); i < pairs; ++i) {
      const float x0 = row[2 * i], x1 = row[2 * i + 1];
      c[0][i] = static_cast<uint8_t>(AngleBin(x0, x1, bins));
      r[0][i] = std::sqrt(x0 * x0 + x1 * x1);
    }
    for (int level = 1; level < 4; ++level) {
      FoldLevel(r[level - 1], pairs >> level, p.tan_thresholds[level - 1],
                (size_t{1} << p.bits[level]) - 1, c[level], r[level]);
    }
    // Group g's field at bit g * group_bits of the record (the writer
    // stores every byte of it).
    HWY_ALIGN uint64_t fields[kMaxGroups];
    size_t g = 0;
    for (; g + kFieldLanes <= groups; g += kFieldLanes) {
      hn::Store(GroupFields(p, c, g), D64(), fields + g);
    }
    for (; g < groups; ++g) fields[g] = GroupField(p, c, g);
    BitStringWriter writer(record, record + sizeof(record));
    for (g = 0; g < groups; ++g) writer.AppendValue(fields[g], group_bits);
    std::copy(record, record + record_bytes, angles + n * record_bytes);
    std::copy(r[3], r[3] + groups, radii + n * groups);
  }
}

void PqDecode(const PqRows& p, const uint8_t* HWY_RESTRICT angles,
              const float* HWY_RESTRICT radii, size_t count, float* HWY_RESTRICT y) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  const hn::Half<DI> dih;
  const hn::Repartition<uint64_t, D> d64;
  const hn::RebindToSigned<decltype(d64)> di64;
  const size_t groups = p.dim / 16, pairs = p.dim / 2;
  const int group_bits = static_cast<int>(GroupBits(p));
  const size_t record_bytes = RecordBytes(p);
  const bool small_circle = p.bits[0] <= 4;
  const SmallTable<D, 4> circle_cos(p.circle_cos), circle_sin(p.circle_sin);
  // Levels 2, 3 and 4.
  const SmallTable<D, 4> level_cos[3] = {SmallTable<D, 4>(p.cosines[0]),
                                         SmallTable<D, 4>(p.cosines[1]),
                                         SmallTable<D, 4>(p.cosines[2])};
  const SmallTable<D, 4> level_sin[3] = {SmallTable<D, 4>(p.sines[0]),
                                         SmallTable<D, 4>(p.sines[1]),
                                         SmallTable<D, 4>(p.sines[2])};
  HWY_ALIGN int32_t spread[2 * kLanes];
  for (size_t j = 0; j < 2 * kLanes; ++j) spread[j] = static_cast<int32_t>(j / 2);
  const auto spread_low = hn::SetTableIndices(d, spread);
  const auto spread_high = hn::SetTableIndices(d, spread + kLanes);
  // Rows go through each step a batch at a time: a row's codes and radii
  // follow the row before's, and every step treats its elements alike, so
  // a batch is one long row (a row of head_dim 128 alone would leave each
  // level a vector or two and a tail).
  const size_t batch_rows = std::max<size_t>(1, kMaxPairs / pairs);
  HWY_ALIGN uint8_t c[4][kMaxPairs];
  HWY_ALIGN float r[3][kMaxPairs];
  HWY_ALIGN uint64_t fields[kMaxGroups];
  uint8_t copied_record[kMaxPairs + 8];
  for (size_t n0 = 0; n0 < count; n0 += batch_rows) {
    const size_t m = std::min(batch_rows, count - n0);
    // A group's field is read as 8 bytes at its first byte: in place but
    // for the records within 8 bytes of the input's end, which are copied
    // to have room after them.
    for (size_t n = n0; n < n0 + m; ++n) {
      const uint8_t* record = angles + n * record_bytes;
      if ((n + 1) * record_bytes + 7 > count * record_bytes) {
        std::copy(record, record + record_bytes, copied_record);
        std::fill(copied_record + record_bytes, copied_record + record_bytes + 8, 0);
        record = copied_record;
      }
      for (size_t g = 0; g < groups; ++g) {
        const size_t bit = g * group_bits;
        fields[(n - n0) * groups + g] =
            (bitpack_internal::Load64(record + bit / 8) >> (bit % 8)) & Mask(group_bits);
      }
    }
    const size_t batch_groups = m * groups;
    size_t g = 0;
    for (; g + kFieldLanes <= batch_groups; g += kFieldLanes) {
      SplitFields(p, hn::Load(D64(), fields + g), g, c);
    }
    for (; g < batch_groups; ++g) SplitField(p, fields[g], g, c);
    // Unfold from the group radii: level 4 (one pair a group) down to
    // level 2 (four), then level 1's circle.
    UnfoldLevel(radii + n0 * groups, batch_groups, c[3], level_cos[2], level_sin[2], r[2]);
    UnfoldLevel(r[2], 2 * batch_groups, c[2], level_cos[1], level_sin[1], r[1]);
    UnfoldLevel(r[1], 4 * batch_groups, c[1], level_cos[0], level_sin[0], r[0]);
    float* row = y + n0 * p.dim;
    const size_t batch_pairs = m * pairs;
    size_t i = 0;
    for (; i + kLanes <= batch_pairs; i += kLanes) {
      const VI bin = hn::PromoteTo(di, hn::LoadU(d8, c[0] + i));
      const V radius = hn::LoadU(d, r[0] + i);
      if (small_circle) {
        StorePairs(hn::Mul(radius, circle_cos.Lookup(bin)), hn::Mul(radius, circle_sin.Lookup(bin)),
                   row + 2 * i);
        continue;
      }
      const auto cs_low = hn::BitCast(
          d, hn::GatherIndex(d64, p.circle_cos_sin, hn::PromoteTo(di64, hn::LowerHalf(dih, bin))));
      const auto cs_high = hn::BitCast(
          d, hn::GatherIndex(d64, p.circle_cos_sin, hn::PromoteTo(di64, hn::UpperHalf(dih, bin))));
      hn::StoreU(hn::Mul(hn::TableLookupLanes(radius, spread_low), cs_low), d, row + 2 * i);
      hn::StoreU(hn::Mul(hn::TableLookupLanes(radius, spread_high), cs_high), d,
                 row + 2 * i + kLanes);
    }
    for (; i < batch_pairs; ++i) {
      const uint64_t cs = p.circle_cos_sin[c[0][i]];
      row[2 * i] = r[0][i] * BitsToFloat(static_cast<uint32_t>(cs));
      row[2 * i + 1] = r[0][i] * BitsToFloat(static_cast<uint32_t>(cs >> 32));
    }
  }
}
#endif  // !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR

bool TaEncodeRowsImpl(const TaRows& p, const float* HWY_RESTRICT y, size_t count,
                      const float* HWY_RESTRICT inverse_rms, uint8_t* HWY_RESTRICT angles,
                      uint8_t* HWY_RESTRICT radii) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if (!Applies(p)) return false;
  if (p.log4) {
    EncodeRows<true>(p, y, count, inverse_rms, angles, radii);
  } else {
    EncodeRows<false>(p, y, count, inverse_rms, angles, radii);
  }
  return true;
#else
  (void)p, (void)y, (void)count, (void)inverse_rms, (void)angles, (void)radii;
  return false;
#endif
}

bool TaDecodeRowsImpl(const TaRows& p, const uint8_t* HWY_RESTRICT angles,
                      const uint8_t* HWY_RESTRICT radii, const float* HWY_RESTRICT rms,
                      size_t count, float* HWY_RESTRICT y) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if (!Applies(p)) return false;
  if (p.log4) {
    DecodeRows<true>(p, angles, radii, rms, count, y);
  } else {
    DecodeRows<false>(p, angles, radii, rms, count, y);
  }
  return true;
#else
  (void)p, (void)angles, (void)radii, (void)rms, (void)count, (void)y;
  return false;
#endif
}

bool PqEncodeRowsImpl(const PqRows& p, const float* HWY_RESTRICT y, size_t count,
                      uint8_t* HWY_RESTRICT angles, float* HWY_RESTRICT radii) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if (!Applies(p)) return false;
  PqEncode(p, y, count, angles, radii);
  return true;
#else
  (void)p, (void)y, (void)count, (void)angles, (void)radii;
  return false;
#endif
}

bool PqDecodeRowsImpl(const PqRows& p, const uint8_t* HWY_RESTRICT angles,
                      const float* HWY_RESTRICT radii, size_t count, float* HWY_RESTRICT y) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if (!Applies(p)) return false;
  PqDecode(p, angles, radii, count, y);
  return true;
#else
  (void)p, (void)angles, (void)radii, (void)count, (void)y;
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

HWY_EXPORT(PairAnglesImpl);
HWY_EXPORT(FoldPairsImpl);

void FoldPairs(const float* r, size_t pairs, const float* tan_thresholds, size_t count,
               uint32_t* bins, float* radii) {
  HWY_DYNAMIC_DISPATCH(FoldPairsImpl)(r, pairs, tan_thresholds, count, bins, radii);
}

void PairAngles(const float* v, size_t pairs, uint32_t n, uint32_t* bins, float* radii) {
  HWY_DYNAMIC_DISPATCH(PairAnglesImpl)(v, pairs, n, bins, radii);
}

HWY_EXPORT(TaEncodeRowsImpl);
HWY_EXPORT(TaDecodeRowsImpl);
HWY_EXPORT(PqEncodeRowsImpl);
HWY_EXPORT(PqDecodeRowsImpl);

bool TaEncodeRows(const TaRows& rows, const float* y, size_t count, const float* inverse_rms,
                  uint8_t* angles, uint8_t* radii) {
  return HWY_DYNAMIC_DISPATCH(TaEncodeRowsImpl)(rows, y, count, inverse_rms, angles, radii);
}

bool TaDecodeRows(const TaRows& rows, const uint8_t* angles, const uint8_t* radii,
                  const float* rms, size_t count, float* y) {
  return HWY_DYNAMIC_DISPATCH(TaDecodeRowsImpl)(rows, angles, radii, rms, count, y);
}

bool PqEncodeRows(const PqRows& rows, const float* y, size_t count, uint8_t* angles,
                  float* radii) {
  return HWY_DYNAMIC_DISPATCH(PqEncodeRowsImpl)(rows, y, count, angles, radii);
}

bool PqDecodeRows(const PqRows& rows, const uint8_t* angles, const float* radii, size_t count,
                  float* y) {
  return HWY_DYNAMIC_DISPATCH(PqDecodeRowsImpl)(rows, angles, radii, count, y);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
