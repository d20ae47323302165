// Attention kernels on encoded rows (simd/attention_kernels.h).
//
// Index rows. The fast path (registers of 4, 8 or 16 lanes, 1..4 bits,
// tables of at most two registers, dim a multiple of 8 * lanes) never
// unpacks indices to bytes: a "superblock" of 8 * lanes coordinates is
// `lanes * bits` bytes, and lane l of one register holds the 8 indices of
// coordinates 8l .. 8l+7 (bits bytes, placed by one byte shuffle). Shifting
// that register by bits * s gives, in lane l, the index of coordinate 8l + s:
// the coordinates of register s are strided, not consecutive. The kernels
// permute the queries (and un-permute the sums) once per call to match, so
// that every row costs one load, then per register a shift, a mask and one
// or two in-register table lookups (TableLookupLanes), shared by up to four
// queries' multiply-adds. Dots of 1- and 2-bit rows on 16-lane targets
// take nibble tables instead (a row per lane, one lookup and one add per
// nibble of 4 / bits indices and query; see NibbleDots). Other shapes take
// a row per lane (field rows, below) for dots, and unpack each row to bytes
// for sums.
//
// Field rows (records back to back in a bit stream, as Block-GTQ's groups
// lie in a vector's record, or index rows of any shape) put one record in
// each lane: a gather fetches each lane's next indices, and every lane's
// sums are its own record's, so that no record, however short, pays a
// reduction across lanes.
//
// Value rows: f32 loaded as is, bf16 widened by a shift, f16 by F16C where
// x86 has it and by exact integer operations elsewhere (infinities and NaNs
// stay non-finite, so that callers detect them from the results).
//
// Sums (weighted rows) run coordinates-outer over tiles of rows: registers
// of the output stay in registers while the tile's rows stream past, so that
// no row's output goes through memory. Index rows take up to four registers
// per pass (sharing each row's word load and weights); value rows take one,
// two rows at a time into separate accumulators (to halve the dependency
// chains).
#include "simd/attention_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/cache_size.h"
#include "base/endian.h"
#include "base/half.h"
#include "kvcodec/kvcodec.h"
#include "simd/bitpack.h"

// Plain C++ shared by every target (defined once: this file is compiled once
// per target): value rows on the scalar target, on big-endian hosts and in
// tails shorter than a register.
#ifndef KVCODEC_CODEC_SIMD_ATTENTION_SCALAR_
#define KVCODEC_CODEC_SIMD_ATTENTION_SCALAR_
namespace kvc {
namespace simd {
namespace attention_internal {

inline float LoadValue(const uint8_t* p, uint32_t format) {
  switch (format) {
    case KVC_DTYPE_F16: return F16ToF32(LoadLE16(p));
    case KVC_DTYPE_BF16: return BF16ToF32(LoadLE16(p));
    default: return BitsToFloat(LoadLE32(p));
  }
}

inline size_t ValueBytes(uint32_t format) { return format == KVC_DTYPE_F32 ? 4 : 2; }

inline void ValueRowDotsScalar(const ValueRows& r, const float* queries, size_t num_queries,
                               float* dots, size_t dot_stride) {
  const size_t bytes = ValueBytes(r.format);
  for (size_t n = 0; n < r.count; ++n) {
    const uint8_t* row = r.values + n * r.dim * bytes;
    for (size_t q = 0; q < num_queries; ++q) {
      float s = 0.0f;
      for (size_t j = 0; j < r.dim; ++j) s += LoadValue(row + j * bytes, r.format) * queries[q * r.dim + j];
      dots[q * dot_stride + n] = s;
    }
  }
}

inline void ValueRowSumsScalar(const ValueRows& r, const float* weights, size_t weight_stride,
                               size_t num_queries, float* out) {
  const size_t bytes = ValueBytes(r.format);
  std::fill(out, out + num_queries * r.dim, 0.0f);
  for (size_t n = 0; n < r.count; ++n) {
    const uint8_t* row = r.values + n * r.dim * bytes;
    for (size_t q = 0; q < num_queries; ++q) {
      const float w = weights[q * weight_stride + n];
      for (size_t j = 0; j < r.dim; ++j) out[q * r.dim + j] += w * LoadValue(row + j * bytes, r.format);
    }
  }
}

// Field rows on big-endian hosts (the kernels gather little-endian words):
// the entry of index j of record n.
inline float FieldEntry(const FieldRows& r, size_t n, size_t j) {
  const size_t bit = r.first_bit + n * r.record_bits + j * static_cast<size_t>(r.bits);
  const uint32_t bytes = r.stream[bit / 8] | uint32_t{r.stream[bit / 8 + 1]} << 8;
  return r.table[(bytes >> (bit % 8)) & ((1u << r.bits) - 1)];
}

inline void FieldRowDotsScalar(const FieldRows& r, const float* queries, size_t num_queries,
                               const RowGains* gains, float* dots, size_t dot_stride,
                               float* len2) {
  std::vector<float> sums(num_queries);
  for (size_t n = 0; n < r.count; ++n) {
    float length2 = 0.0f;
    std::fill(sums.begin(), sums.end(), 0.0f);
    for (size_t j = 0; j < r.dim; ++j) {
      const float c = FieldEntry(r, n, j);
      length2 += c * c;
      for (size_t q = 0; q < num_queries; ++q) sums[q] += c * queries[q * r.dim + j];
    }
    if (gains == nullptr) {
      for (size_t q = 0; q < num_queries; ++q) dots[q * dot_stride + n] = sums[q];
      if (len2 != nullptr) len2[n] = length2;
      continue;
    }
    const float length = std::sqrt(length2);
    const float gain = !gains->norm_correction ? gains->norms[n] / gains->sqrt_dim
                       : length > 0             ? gains->norms[n] / length
                                                : 0.0f;
    for (size_t q = 0; q < num_queries; ++q) dots[q * dot_stride + n] += gain * sums[q];
  }
}

inline void FieldRowSumsScalar(const FieldRows& r, const float* weights, size_t weight_stride,
                               size_t num_queries, float* out) {
  for (size_t n = 0; n < r.count; ++n) {
    for (size_t j = 0; j < r.dim; ++j) {
      const float c = FieldEntry(r, n, j);
      for (size_t q = 0; q < num_queries; ++q) {
        out[q * r.dim + j] += weights[q * weight_stride + n] * c;
      }
    }
  }
}

}  // namespace attention_internal
}  // namespace simd
}  // namespace kvc
#endif  // KVCODEC_CODEC_SIMD_ATTENTION_SCALAR_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/attention_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using D = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<D>;
using DU = hn::RebindToUnsigned<D>;
using V = hn::Vec<D>;
using VI = hn::Vec<DI>;

// Queries that share one lookup of a row's entries (GQA groups are
// typically 4 query heads per KV head; more are taken 4 at a time).
constexpr size_t kGroup = 4;
// Rows of a tile of the sums: small enough that a tile's records stay in L1
// while every output register visits them.
constexpr size_t kTileRows = 128;
// Largest head_dim (tensor_codec.h's kMaxHeadDim), for stack buffers.
constexpr size_t kMaxDim = 2048;

// Calls f(std::integral_constant<size_t, i>()) for i = 0 .. kCount-1.
template <class F, size_t... kI>
HWY_INLINE void ForEachIndex(F&& f, std::index_sequence<kI...>) {
  (f(std::integral_constant<size_t, kI>()), ...);
}
template <size_t kCount, class F>
HWY_INLINE void ForEachIndex(F&& f) {
  ForEachIndex(f, std::make_index_sequence<kCount>());
}

// Calls run(std::integral_constant<size_t, m>()) for the m = min(4, queries)
// queries of one group.
template <class Run>
HWY_INLINE void DispatchGroup(size_t queries, Run&& run) {
  switch (std::min(kGroup, queries)) {
    case 1: return run(std::integral_constant<size_t, 1>());
    case 2: return run(std::integral_constant<size_t, 2>());
    case 3: return run(std::integral_constant<size_t, 3>());
    default: return run(std::integral_constant<size_t, 4>());
  }
}

// DispatchGroup for the dot kernels, whose first group also computes the
// rows' sums of squares when asked: run(group size, std::bool_constant).
template <class Run>
HWY_INLINE void DispatchDotGroup(size_t queries, bool with_len, Run&& run) {
  DispatchGroup(queries, [&](auto queries_in_group) HWY_ATTR {
    if (with_len) {
      run(queries_in_group, std::true_type());
    } else {
      run(queries_in_group, std::false_type());
    }
  });
}

// ---------------------------------------------------------------------------
// Table lookups.

// How a target looks up 2^kBits table entries: 1 or 2 registers of
// entries, or 0 (gathers: wide tables, single-lane and scalable targets).
template <int kBits>
constexpr int TableRegisters() {
#if HWY_HAVE_SCALABLE || HWY_TARGET == HWY_SCALAR
  return 0;
#else
  constexpr size_t kEntries = size_t{1} << kBits, kMaxLanes = hn::MaxLanes(D());
  return kEntries <= kMaxLanes ? 1 : kEntries <= 2 * kMaxLanes ? 2 : 0;
#endif
}

// Register `part` (0 or 1) of a table: entries part * lanes ... (zeros past
// the table's end). Unused where TableRegisters is 0.
HWY_INLINE V TablePart(const float* table, int bits, size_t part) {
  const D d;
#if HWY_HAVE_SCALABLE || HWY_TARGET == HWY_SCALAR
  (void)table, (void)bits, (void)part;
  return hn::Zero(d);
#else
  constexpr size_t kLanes = hn::MaxLanes(D());
  const size_t entries = size_t{1} << bits;
  HWY_ALIGN float lanes[kLanes] = {};
  for (size_t k = 0; k < kLanes && part * kLanes + k < entries; ++k) {
    lanes[k] = table[part * kLanes + k];
  }
  return hn::Load(d, lanes);
#endif
}

// table[k] per lane (k < 2^bits).
template <int kTables>
HWY_INLINE V Lookup(VI k, V lo, V hi, const float* HWY_RESTRICT table) {
  const D d;
  if (kTables == 0) return hn::GatherIndex(d, table, k);
#if HWY_HAVE_SCALABLE || HWY_TARGET == HWY_SCALAR
  (void)lo, (void)hi;
  return hn::GatherIndex(d, table, k);
#else
  const DI di;
  const auto last = hn::Set(di, static_cast<int32_t>(hn::MaxLanes(d) - 1));
  const auto ind = hn::IndicesFromVec(d, hn::And(k, last));
  if (kTables == 1) return hn::TableLookupLanes(lo, ind);
  return hn::IfThenElse(hn::RebindMask(d, hn::Gt(k, last)), hn::TableLookupLanes(hi, ind),
                        hn::TableLookupLanes(lo, ind));
#endif
}

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
// The sum of v's 128-bit blocks (4 floats) into out: halves added down.
template <class DF>
HWY_INLINE void StoreBlockSums(DF df, hn::Vec<DF> v, float* HWY_RESTRICT out) {
  if constexpr (hn::MaxLanes(DF()) > 4) {
    const hn::Half<DF> dh;
    StoreBlockSums(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)), out);
  } else {
    hn::StoreU(v, df, out);
  }
}

// sums[i] = the sum of a_i's lanes, for i < 4, at once: two interleaving
// steps leave every 128-bit block holding the four sums of its own lanes,
// then the blocks are added. (Four separate reductions cost a row about as
// much as its lookups.)
HWY_INLINE void SumLanes4(V a0, V a1, V a2, V a3, float* HWY_RESTRICT sums) {
  const D d;
  const hn::Repartition<uint64_t, D> d64;
  const auto pairs01 = hn::BitCast(
      d64, hn::Add(hn::InterleaveLower(d, a0, a1), hn::InterleaveUpper(d, a0, a1)));
  const auto pairs23 = hn::BitCast(
      d64, hn::Add(hn::InterleaveLower(d, a2, a3), hn::InterleaveUpper(d, a2, a3)));
  const V blocks = hn::Add(hn::BitCast(d, hn::InterleaveLower(d64, pairs01, pairs23)),
                           hn::BitCast(d, hn::InterleaveUpper(d64, pairs01, pairs23)));
  StoreBlockSums(d, blocks, sums);
}

#endif  // !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR

// dots[i] = the sum of a_i's lanes for i < kQ (four at once where registers
// have whole 128-bit blocks); dots has room for four.
template <size_t kQ>
HWY_INLINE void StoreRowDots(V a0, V a1, V a2, V a3, float* HWY_RESTRICT dots) {
  const D d;
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if constexpr (kQ > 1) {
    SumLanes4(a0, a1, a2, a3, dots);
    return;
  }
#endif
  if (kQ > 0) dots[0] = hn::GetLane(hn::SumOfLanes(d, a0));
  if (kQ > 1) dots[1] = hn::GetLane(hn::SumOfLanes(d, a1));
  if (kQ > 2) dots[2] = hn::GetLane(hn::SumOfLanes(d, a2));
  if (kQ > 3) dots[3] = hn::GetLane(hn::SumOfLanes(d, a3));
}

// The first `lanes` lanes of v to `to`: a whole vector directly, fewer
// through a buffer, so that nothing past them is written.
HWY_INLINE void StoreFirstLanes(V v, size_t lanes, float* HWY_RESTRICT to) {
  const D d;
  if (lanes == hn::Lanes(d)) return hn::StoreU(v, d, to);
  HWY_ALIGN float buffer[hn::MaxLanes(D())];
  hn::Store(v, d, buffer);
  std::copy(buffer, buffer + lanes, to);
}

// ---------------------------------------------------------------------------
// Field rows: one record per lane. A 32-bit gather at the byte of each
// lane's next index, shifted right by the index's offset in that byte (at
// most 7 bits), holds the lane's next 25 / bits indices; each of them is then
// a constant shift and a mask, one lookup and a multiply-add per query. No
// record is summed across lanes, however few indices it has.

// Per lane, the 25 bits or more from bit pos[lane] of `at` on, in the low
// bits.
HWY_INLINE hn::Vec<DU> FieldBits(const uint8_t* HWY_RESTRICT at, hn::Vec<DU> pos) {
  const DU du;
  const DI di;
  const auto bytes = hn::BitCast(di, hn::ShiftRight<3>(pos));
  const auto words = hn::GatherOffset(di, reinterpret_cast<const int32_t*>(at), bytes);
  return hn::Shr(hn::BitCast(du, words), hn::And(pos, hn::Set(du, 7)));
}

// Dots of kQ queries (and, if kSquares, squared lengths) for the records
// n0 .. n0 + lanes - 1, lanes <= Lanes(d). Lanes past them repeat the last
// record and are not stored.
// With gains: dots += gain * dot instead (len2 unused; norm correction needs
// kSquares).
template <int kBits, size_t kQ, bool kSquares>
HWY_INLINE void FieldLaneDots(const FieldRows& r, size_t n0, size_t lanes, V lo, V hi,
                              const float* HWY_RESTRICT q, const RowGains* gains,
                              float* HWY_RESTRICT dots, size_t dot_stride,
                              float* HWY_RESTRICT len2) {
  const D d;
  const DU du;
  const DI di;
  constexpr size_t kMax = hn::MaxLanes(D());
  constexpr size_t kPerWord = 25 / kBits;
  const size_t first = r.first_bit + n0 * r.record_bits;
  const uint8_t* HWY_RESTRICT at = r.stream + first / 8;
  HWY_ALIGN uint32_t start[kMax];
  for (size_t l = 0; l < hn::Lanes(d); ++l) {
    start[l] = static_cast<uint32_t>(first % 8 + std::min(l, lanes - 1) * r.record_bits);
  }
  auto pos = hn::Load(du, start);  // each lane's next index, in bits from `at`
  const auto mask = hn::Set(du, (1u << kBits) - 1);
  V a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d), sq = hn::Zero(d);
  const auto step = [&](auto word, size_t j, int shift) HWY_ATTR {
    const auto index = hn::BitCast(di, hn::And(hn::ShiftRightSame(word, shift), mask));
    const V c = Lookup<TableRegisters<kBits>()>(index, lo, hi, r.table);
    if (kQ > 0) a0 = hn::MulAdd(c, hn::Set(d, q[j]), a0);
    if (kQ > 1) a1 = hn::MulAdd(c, hn::Set(d, q[r.dim + j]), a1);
    if (kQ > 2) a2 = hn::MulAdd(c, hn::Set(d, q[2 * r.dim + j]), a2);
    if (kQ > 3) a3 = hn::MulAdd(c, hn::Set(d, q[3 * r.dim + j]), a3);
    if (kSquares) sq = hn::MulAdd(c, c, sq);
  };
  for (size_t j = 0; j < r.dim; j += kPerWord) {
    const auto word = FieldBits(at, pos);
    pos = hn::Add(pos, hn::Set(du, static_cast<uint32_t>(kPerWord * kBits)));
    if (j + kPerWord <= r.dim) {
      ForEachIndex<kPerWord>([&](auto k) HWY_ATTR {
        step(word, j + decltype(k)::value, static_cast<int>(decltype(k)::value) * kBits);
      });
    } else {
      for (size_t k = 0; j + k < r.dim; ++k) step(word, j + k, static_cast<int>(k) * kBits);
    }
  }
  // The lanes' values of memory: a whole vector directly, the last lanes
  // through a buffer (zeros past them).
  HWY_ALIGN float buffer[kMax] = {};
  const auto load = [&](const float* HWY_RESTRICT from) HWY_ATTR {
    if (lanes == hn::Lanes(d)) return hn::LoadU(d, from);
    std::copy(from, from + lanes, buffer);
    return hn::Load(d, buffer);
  };
  V gain = hn::Zero(d);
  if (gains != nullptr) {
    const V norm = load(gains->norms + n0);
    if (gains->norm_correction) {
      HWY_DASSERT(kSquares);  // FieldDots asks for them
      const V length = hn::Sqrt(sq);
      gain = hn::IfThenElseZero(hn::Gt(length, hn::Zero(d)), hn::Div(norm, length));
    } else {
      gain = hn::Div(norm, hn::Set(d, gains->sqrt_dim));
    }
  }
  const auto put = [&](V v, float* HWY_RESTRICT to) HWY_ATTR {
    StoreFirstLanes(gains != nullptr ? hn::MulAdd(gain, v, load(to)) : v, lanes, to);
  };
  if (kQ > 0) put(a0, dots + n0);
  if (kQ > 1) put(a1, dots + dot_stride + n0);
  if (kQ > 2) put(a2, dots + 2 * dot_stride + n0);
  if (kQ > 3) put(a3, dots + 3 * dot_stride + n0);
  if (kSquares && len2 != nullptr && gains == nullptr) put(sq, len2 + n0);
}

template <int kBits>
void FieldDots(const FieldRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
               const RowGains* gains, float* HWY_RESTRICT dots, size_t dot_stride,
               float* HWY_RESTRICT len2) {
  const size_t N = hn::Lanes(D());
  const V lo = TablePart(r.table, kBits, 0), hi = TablePart(r.table, kBits, 1);
  // Squared lengths cost an FMA per index: only where they are asked for
  // or norm correction's gains need them.
  const bool gain_squares = gains != nullptr && gains->norm_correction;
  for (size_t n0 = 0; n0 < r.count; n0 += N) {
    const size_t lanes = std::min(N, r.count - n0);
    if (num_queries == 0 && len2 != nullptr) {
      FieldLaneDots<kBits, 0, true>(r, n0, lanes, lo, hi, nullptr, nullptr, nullptr, 0, len2);
    }
    for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
      // The squared lengths come with the first group.
      float* group_len2 = q0 == 0 ? len2 : nullptr;
      DispatchDotGroup(num_queries - q0, gain_squares || group_len2 != nullptr,
                       [&](auto queries_in_group, auto squares) HWY_ATTR {
        FieldLaneDots<kBits, decltype(queries_in_group)::value, decltype(squares)::value>(
            r, n0, lanes, lo, hi, queries + q0 * r.dim, gains, dots + q0 * dot_stride,
            dot_stride, group_len2);
      });
    }
  }
}

// FieldRowDots, or with gains FieldRowGainedDots.
void FieldDotsOf(const FieldRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
                 const RowGains* gains, float* HWY_RESTRICT dots, size_t dot_stride,
                 float* HWY_RESTRICT len2) {
  if (r.count == 0 || r.dim == 0) {
    // Empty records: every dot and length is 0.
    if (gains != nullptr) return;
    for (size_t q = 0; q < num_queries; ++q) std::fill_n(dots + q * dot_stride, r.count, 0.0f);
    if (len2 != nullptr) std::fill_n(len2, r.count, 0.0f);
    return;
  }
  if (!kHostIsLittleEndian) {
    return attention_internal::FieldRowDotsScalar(r, queries, num_queries, gains, dots,
                                                  dot_stride, len2);
  }
  switch (r.bits) {
    case 1: return FieldDots<1>(r, queries, num_queries, gains, dots, dot_stride, len2);
    case 2: return FieldDots<2>(r, queries, num_queries, gains, dots, dot_stride, len2);
    case 3: return FieldDots<3>(r, queries, num_queries, gains, dots, dot_stride, len2);
    case 4: return FieldDots<4>(r, queries, num_queries, gains, dots, dot_stride, len2);
    case 5: return FieldDots<5>(r, queries, num_queries, gains, dots, dot_stride, len2);
    case 6: return FieldDots<6>(r, queries, num_queries, gains, dots, dot_stride, len2);
    case 7: return FieldDots<7>(r, queries, num_queries, gains, dots, dot_stride, len2);
    default: return FieldDots<8>(r, queries, num_queries, gains, dots, dot_stride, len2);
  }
}

void FieldRowDotsImpl(const FieldRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
                      float* HWY_RESTRICT dots, size_t dot_stride, float* HWY_RESTRICT len2) {
  FieldDotsOf(r, queries, num_queries, nullptr, dots, dot_stride, len2);
}

void FieldRowGainedDotsImpl(const FieldRows& r, const float* HWY_RESTRICT queries,
                            size_t num_queries, const RowGains& gains, float* HWY_RESTRICT dots,
                            size_t dot_stride) {
  FieldDotsOf(r, queries, num_queries, &gains, dots, dot_stride, nullptr);
}

// The last records (fewer than a vector) of field sums: each lane's record
// (lanes past them repeat the last one) and weights (zero past them).
struct FieldTail {
  size_t first;                   // the first record of the partial vector
  const uint32_t* offsets;        // lane l: bit of its record from record `first`'s
  const float* weights;           // [q][lane] for the group's queries
};

// out[q * dim + j] (and j + 1 if kPair) += the sum over records n of
// weights[q * weight_stride + n] * table[idx(n, j)], for kQ queries: every
// lane sums its records in registers, and the lanes are added once.
template <int kBits, size_t kQ, bool kPair>
HWY_INLINE void FieldColumnSums(const FieldRows& r, size_t j, const float* HWY_RESTRICT w,
                                size_t weight_stride, const uint32_t* HWY_RESTRICT offsets,
                                const FieldTail& tail, V lo, V hi, float* HWY_RESTRICT out) {
  const D d;
  const DU du;
  const DI di;
  const auto mask = hn::Set(du, (1u << kBits) - 1);
  V a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  V b0 = hn::Zero(d), b1 = hn::Zero(d), b2 = hn::Zero(d), b3 = hn::Zero(d);
  // The lanes' records from record n0 on, their weights w[q][lane].
  const auto add = [&](size_t n0, const uint32_t* HWY_RESTRICT lane_bits,
                       const float* HWY_RESTRICT weights, size_t stride) HWY_ATTR {
    const size_t first = r.first_bit + n0 * r.record_bits + j * kBits;
    const auto pos =
        hn::Add(hn::LoadU(du, lane_bits), hn::Set(du, static_cast<uint32_t>(first % 8)));
    const auto word = FieldBits(r.stream + first / 8, pos);
    constexpr int kT = TableRegisters<kBits>();
    const V c = Lookup<kT>(hn::BitCast(di, hn::And(word, mask)), lo, hi, r.table);
    const V c1 = kPair ? Lookup<kT>(hn::BitCast(di, hn::And(hn::ShiftRight<kBits>(word), mask)),
                                    lo, hi, r.table)
                       : c;
    const auto step = [&](size_t q, V& a, V& b) HWY_ATTR {
      const V weight = hn::LoadU(d, weights + q * stride);
      a = hn::MulAdd(c, weight, a);
      if (kPair) b = hn::MulAdd(c1, weight, b);
    };
    if (kQ > 0) step(0, a0, b0);
    if (kQ > 1) step(1, a1, b1);
    if (kQ > 2) step(2, a2, b2);
    if (kQ > 3) step(3, a3, b3);
  };
  const size_t N = hn::Lanes(d);
  for (size_t n0 = 0; n0 < tail.first; n0 += N) add(n0, offsets, w + n0, weight_stride);
  if (tail.first < r.count) add(tail.first, tail.offsets, tail.weights, N);
  const auto put = [&](size_t q, V a, V b) HWY_ATTR {
    out[q * r.dim + j] += hn::GetLane(hn::SumOfLanes(d, a));
    if (kPair) out[q * r.dim + j + 1] += hn::GetLane(hn::SumOfLanes(d, b));
  };
  if (kQ > 0) put(0, a0, b0);
  if (kQ > 1) put(1, a1, b1);
  if (kQ > 2) put(2, a2, b2);
  if (kQ > 3) put(3, a3, b3);
}

// out[q * dim + j] += sum over records n of weights[q * weight_stride + n] *
// table[idx(n, j)]: columns two at a time (a gather serves both), queries
// four at a time.
template <int kBits>
void FieldSums(const FieldRows& r, const float* HWY_RESTRICT weights, size_t weight_stride,
               size_t num_queries, float* HWY_RESTRICT out) {
  const D d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kMax = hn::MaxLanes(D());
  const V lo = TablePart(r.table, kBits, 0), hi = TablePart(r.table, kBits, 1);
  HWY_ALIGN uint32_t offsets[kMax], tail_offsets[kMax];
  HWY_ALIGN float tail_weights[kGroup * kMax];
  const size_t first = r.count / N * N;
  for (size_t l = 0; l < N; ++l) {
    offsets[l] = static_cast<uint32_t>(l * r.record_bits);
    tail_offsets[l] = static_cast<uint32_t>(std::min(first + l, r.count - 1) - first) *
                      static_cast<uint32_t>(r.record_bits);
  }
  for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
    const float* w = weights + q0 * weight_stride;
    for (size_t q = 0; q < kGroup; ++q) {
      for (size_t l = 0; l < N; ++l) {
        tail_weights[q * N + l] =
            q0 + q < num_queries && first + l < r.count ? w[q * weight_stride + first + l] : 0.0f;
      }
    }
    const FieldTail tail{first, tail_offsets, tail_weights};
    DispatchGroup(num_queries - q0, [&](auto queries_in_group) HWY_ATTR {
      constexpr size_t kQ = decltype(queries_in_group)::value;
      float* o = out + q0 * r.dim;
      size_t j = 0;
      for (; j + 2 <= r.dim; j += 2) {
        FieldColumnSums<kBits, kQ, true>(r, j, w, weight_stride, offsets, tail, lo, hi, o);
      }
      if (j < r.dim) {
        FieldColumnSums<kBits, kQ, false>(r, j, w, weight_stride, offsets, tail, lo, hi, o);
      }
    });
  }
}

void FieldRowSumsImpl(const FieldRows& r, const float* HWY_RESTRICT weights,
                      size_t weight_stride, size_t num_queries, float* HWY_RESTRICT out) {
  if (r.count == 0 || r.dim == 0) return;
  if (!kHostIsLittleEndian) {
    return attention_internal::FieldRowSumsScalar(r, weights, weight_stride, num_queries, out);
  }
  switch (r.bits) {
    case 1: return FieldSums<1>(r, weights, weight_stride, num_queries, out);
    case 2: return FieldSums<2>(r, weights, weight_stride, num_queries, out);
    case 3: return FieldSums<3>(r, weights, weight_stride, num_queries, out);
    case 4: return FieldSums<4>(r, weights, weight_stride, num_queries, out);
    case 5: return FieldSums<5>(r, weights, weight_stride, num_queries, out);
    case 6: return FieldSums<6>(r, weights, weight_stride, num_queries, out);
    case 7: return FieldSums<7>(r, weights, weight_stride, num_queries, out);
    default: return FieldSums<8>(r, weights, weight_stride, num_queries, out);
  }
}

// Bytes the fast path's loads and the field rows' gathers read past a row.
constexpr size_t kOverread = 16;

// The rows whose loads would run past the caller's rows (those within
// kOverread bytes of the end: several when rows are short), copied with
// the same stride into a zero-padded buffer.
class PaddedTail {
 public:
  PaddedTail(const IndexRows& r, size_t row_bytes) : r_(r) {
    const size_t stride = std::max<size_t>(r.stride, 1);
    first_ = r.count - std::min(r.count, (kOverread + stride - 1) / stride);
    if (first_ < r.count) {
      const size_t bytes = (r.count - 1 - first_) * r.stride + row_bytes;
      copy_.assign(bytes + kOverread, 0);
      std::memcpy(copy_.data(), r.packed + first_ * r.stride, bytes);
    }
  }
  size_t first() const { return first_; }
  const uint8_t* Row(size_t n) const {
    return n < first_ ? r_.packed + n * r_.stride : copy_.data() + (n - first_) * r_.stride;
  }

 private:
  const IndexRows& r_;
  size_t first_;
  std::vector<uint8_t> copy_;
};

// Index rows as field rows (records 8 * stride bits apart): part(rows, n0)
// for the rows from row n0 on, the last ones from a padded copy, since the
// gathers read past a row.
template <class Part>
void AsFieldRows(const IndexRows& r, const Part& part) {
  const PaddedTail tail(r, (r.dim * static_cast<size_t>(r.bits) + 7) / 8);
  const size_t first = tail.first();
  part(FieldRows{r.packed, 0, 8 * r.stride, first, r.dim, r.bits, r.table}, 0);
  if (first == r.count) return;
  part(FieldRows{tail.Row(first), 0, 8 * r.stride, r.count - first, r.dim, r.bits, r.table},
       first);
}

void FieldIndexDots(const IndexRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
                    float* HWY_RESTRICT dots, size_t dot_stride, float* HWY_RESTRICT len2) {
  AsFieldRows(r, [&](const FieldRows& rows, size_t n0) HWY_ATTR {
    FieldRowDotsImpl(rows, queries, num_queries, num_queries > 0 ? dots + n0 : dots, dot_stride,
                     len2 != nullptr ? len2 + n0 : nullptr);
  });
}

void FieldIndexSums(const IndexRows& r, const float* HWY_RESTRICT weights, size_t weight_stride,
                    size_t num_queries, float* HWY_RESTRICT out) {
  std::fill_n(out, num_queries * r.dim, 0.0f);
  if (num_queries == 0) return;
  AsFieldRows(r, [&](const FieldRows& rows, size_t n0) HWY_ATTR {
    FieldRowSumsImpl(rows, weights + n0, weight_stride, num_queries, out);
  });
}

// ---------------------------------------------------------------------------
// Index rows, fast path (see the file comment).

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
constexpr size_t kLanes = hn::MaxLanes(D());
using D8 = hn::Repartition<uint8_t, D>;  // the bytes of one register
using VU = hn::Vec<DU>;

// Registers of 4 lanes and up, tables of at most two registers.
HWY_INLINE bool FastShape(const IndexRows& r) {
  return kHostIsLittleEndian && kLanes >= 4 && kLanes <= 16 && r.bits >= 1 && r.bits <= 4 &&
         (size_t{1} << r.bits) <= 2 * kLanes && r.dim % (8 * kLanes) == 0 && r.dim <= kMaxDim;
}

// A register whose 128-bit block k holds the 16 bytes at p + k * step.
template <class D8x>
HWY_INLINE hn::Vec<D8x> LoadBlocks(D8x d8, const uint8_t* HWY_RESTRICT p, size_t step) {
  if constexpr (hn::MaxLanes(D8x()) <= 16) {
    return hn::LoadU(d8, p);
  } else {
    const hn::Half<D8x> dh;
    constexpr size_t kHalfBlocks = hn::MaxLanes(dh) / 16;
    return hn::Combine(d8, LoadBlocks(dh, p + kHalfBlocks * step, step), LoadBlocks(dh, p, step));
  }
}

// The byte shuffle that gives lane l (of each 128-bit block) the kBits bytes
// of its 8 indices, upper bytes zero.
template <int kBits>
HWY_INLINE hn::Vec<D8> LanePattern() {
  HWY_ALIGN uint8_t pattern[4 * kLanes];
  for (size_t i = 0; i < 4 * kLanes; ++i) {
    const size_t lane = i / 4 % 4, byte = i % 4;
    pattern[i] = byte < kBits ? static_cast<uint8_t>(lane * kBits + byte) : 0x80;
  }
  return hn::Load(D8(), pattern);
}

// Lane l = the (8 * kBits)-bit group of indices 8l .. 8l+7 of a superblock
// (reads 16 - 4 * kBits bytes past the superblock for kBits < 4).
template <int kBits>
HWY_INLINE VU LaneWords(const uint8_t* HWY_RESTRICT p, hn::Vec<D8> pattern) {
  const D8 d8;
  if (kBits == 4) return hn::BitCast(DU(), hn::LoadU(d8, p));
  return hn::BitCast(DU(), hn::TableLookupBytesOr0(LoadBlocks(d8, p, 4 * kBits), pattern));
}
// Entries of the indices of register kS (coordinates 8l + kS).
template <int kBits, size_t kS>
HWY_INLINE V LookupRegister(VU words, V lo, V hi) {
  const D d;
  constexpr bool kTwo = (size_t{1} << kBits) > kLanes;
  constexpr uint32_t kMask = kTwo ? kLanes - 1 : (1u << kBits) - 1;
  const auto index = hn::BitCast(DI(), hn::And(hn::ShiftRight<kBits * kS>(words),
                                               hn::Set(DU(), kMask)));
  const auto ind = hn::IndicesFromVec(d, index);
  if (!kTwo) return hn::TableLookupLanes(lo, ind);
  // The index's bit of "second register" moved to the sign bit.
  constexpr int kSelect = kBits * static_cast<int>(kS) + (kLanes == 16 ? 4 : kLanes == 8 ? 3 : 2);
  const auto select = hn::ShiftLeft<31 - kSelect>(words);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_SSE4
  // blendv reads the sign bit alone.
  return hn::IfNegativeThenElse(hn::BitCast(d, select), hn::TableLookupLanes(hi, ind),
                                hn::TableLookupLanes(lo, ind));
#else
  // Elsewhere (Highway 1.0.3's SSSE3 IfNegativeThenElse among them) a
  // select needs whole-lane masks.
  const auto mask = hn::MaskFromVec(hn::BitCast(d, hn::BroadcastSignBit(hn::BitCast(DI(), select))));
  return hn::IfThenElse(mask, hn::TableLookupLanes(hi, ind), hn::TableLookupLanes(lo, ind));
#endif
}

// Coordinate (sb, s, l) <-> natural 8 * kLanes * sb + 8l + s.
HWY_INLINE void Permute(const float* HWY_RESTRICT x, size_t dim, float* HWY_RESTRICT y) {
  for (size_t sb = 0; sb < dim; sb += 8 * kLanes) {
    for (size_t s = 0; s < 8; ++s) {
      for (size_t l = 0; l < kLanes; ++l) y[sb + s * kLanes + l] = x[sb + 8 * l + s];
    }
  }
}
HWY_INLINE void Unpermute(const float* HWY_RESTRICT y, size_t dim, float* HWY_RESTRICT x) {
  for (size_t sb = 0; sb < dim; sb += 8 * kLanes) {
    for (size_t s = 0; s < 8; ++s) {
      for (size_t l = 0; l < kLanes; ++l) x[sb + 8 * l + s] = y[sb + s * kLanes + l];
    }
  }
}

// Rows whose dots one step of the row loop computes together: their
// dependency chains interleave, each query register loaded serves them all,
// and no row waits on its own reduction. (One row at a time left the core
// waiting on each row's chain of multiply-adds and lane sums.) Their
// accumulators fill half the registers: 4 rows x 4 queries of 32 registers
// where registers have 16 lanes, 2 x 4 of 16 elsewhere.
constexpr size_t kStepRows = kLanes == 16 ? 4 : 2;

// The dots of kRows rows (row[r]) with kQ permuted queries (rows of dim
// floats) into dots[r * kGroup + i] and, if kLen, their sums of squares.
template <int kBits, size_t kQ, bool kLen, size_t kRows>
HWY_INLINE void FastStepDots(const uint8_t* const* HWY_RESTRICT row, size_t dim,
                             hn::Vec<D8> pattern, V lo, V hi, const float* HWY_RESTRICT q,
                             float* HWY_RESTRICT dots, float* HWY_RESTRICT len2) {
  const D d;
  // Accumulators of queries past kQ stay zero and unused.
  V acc[kRows][kGroup];
  V len[kRows];
  ForEachIndex<kRows>([&](auto r) HWY_ATTR {
    ForEachIndex<kGroup>([&](auto i) HWY_ATTR { acc[r][i] = hn::Zero(d); });
    len[r] = hn::Zero(d);
  });
  for (size_t sb = 0; sb < dim; sb += 8 * kLanes) {
    VU words[kRows];
    ForEachIndex<kRows>([&](auto r) HWY_ATTR {
      words[r] = LaneWords<kBits>(row[r] + sb / 8 * kBits, pattern);
    });
    ForEachIndex<8>([&](auto s) HWY_ATTR {
      constexpr size_t kS = decltype(s)::value;
      V query[kGroup];
      // No queries (kQ 0: lengths only): q is null and never read.
      ForEachIndex<kQ>([&](auto i) HWY_ATTR {
        query[i] = hn::LoadU(d, q + decltype(i)::value * dim + sb + kS * kLanes);
      });
      ForEachIndex<kRows>([&](auto r) HWY_ATTR {
        const V c = LookupRegister<kBits, kS>(words[r], lo, hi);
        ForEachIndex<kQ>([&](auto i) HWY_ATTR {
          acc[r][i] = hn::MulAdd(c, query[i], acc[r][i]);
        });
        if (kLen) len[r] = hn::MulAdd(c, c, len[r]);
      });
    });
  }
  ForEachIndex<kRows>([&](auto r) HWY_ATTR {
    StoreRowDots<kQ>(acc[r][0], acc[r][1], acc[r][2], acc[r][3], dots + r * kGroup);
    if (kLen) len2[r] = hn::GetLane(hn::SumOfLanes(d, len[r]));
  });
}

// Every row's dots with kQ permuted queries (and lengths if kLen): the row
// loop innermost, free of branches on the shape, kStepRows rows a step.
template <int kBits, size_t kQ, bool kLen>
HWY_NOINLINE void FastRowsDots(const PaddedTail& tail, size_t count, size_t dim,
                               hn::Vec<D8> pattern, V lo, V hi, const float* HWY_RESTRICT q,
                               float* HWY_RESTRICT dots, size_t dot_stride,
                               float* HWY_RESTRICT len2) {
  HWY_ALIGN float step[kStepRows * kGroup];
  const auto store = [&](size_t n, size_t rows) {
    for (size_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < kQ; ++i) dots[i * dot_stride + n + r] = step[r * kGroup + i];
    }
  };
  size_t n = 0;
  for (; n + kStepRows <= count; n += kStepRows) {
    const uint8_t* rows[kStepRows];
    for (size_t r = 0; r < kStepRows; ++r) rows[r] = tail.Row(n + r);
    FastStepDots<kBits, kQ, kLen, kStepRows>(rows, dim, pattern, lo, hi, q, step,
                                             kLen ? len2 + n : nullptr);
    store(n, kStepRows);
  }
  for (; n < count; ++n) {
    const uint8_t* rows[1] = {tail.Row(n)};
    FastStepDots<kBits, kQ, kLen, 1>(rows, dim, pattern, lo, hi, q, step,
                                     kLen ? len2 + n : nullptr);
    store(n, 1);
  }
}

template <int kBits>
void FastDots(const IndexRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
              float* HWY_RESTRICT dots, size_t dot_stride, float* HWY_RESTRICT len2) {
  const size_t dim = r.dim;
  const auto pattern = LanePattern<kBits>();
  const V lo = TablePart(r.table, kBits, 0), hi = TablePart(r.table, kBits, 1);
  // The queries permuted once; the last rows read from a padded copy, since
  // the lane loads run past a row's end.
  std::vector<float> permuted(num_queries * dim);
  for (size_t q = 0; q < num_queries; ++q) Permute(queries + q * dim, dim, &permuted[q * dim]);
  const PaddedTail tail(r, dim * kBits / 8);
  if (len2 != nullptr && num_queries == 0) {
    FastRowsDots<kBits, 0, true>(tail, r.count, dim, pattern, lo, hi, nullptr, nullptr, 0, len2);
  }
  for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
    const float* q = permuted.data() + q0 * dim;
    float* out = dots + q0 * dot_stride;
    // The sum of squares rides along with the first group.
    DispatchDotGroup(num_queries - q0, len2 != nullptr && q0 == 0,
                     [&](auto queries_in_group, auto with_len) HWY_ATTR {
      FastRowsDots<kBits, decltype(queries_in_group)::value, decltype(with_len)::value>(
          tail, r.count, dim, pattern, lo, hi, q, out, dot_stride, len2);
    });
  }
}

// Registers of a superblock whose sums one pass over a tile keeps in
// registers: all of a row's lookups of them share its word load and its
// weights. Four on 16-lane targets (16 accumulators of 32 registers); one
// where registers are fewer (16 on AVX2).
constexpr size_t kSumRegisters = kLanes == 16 ? 4 : 1;

// For kQ queries: out[q][registers kS0 .. kS0 + kSumRegisters - 1 of
// superblock sb] += sum over the tile's rows of w[q][n] * entries.
template <int kBits, size_t kS0, size_t kQ>
HWY_INLINE void FastRegisterSums(const uint8_t* const* HWY_RESTRICT rows, size_t count,
                                 size_t offset, hn::Vec<D8> pattern, V lo, V hi,
                                 const float* HWY_RESTRICT w, size_t weight_stride,
                                 float* HWY_RESTRICT out, size_t dim) {
  const D d;
  V sums[kSumRegisters][kQ];
  ForEachIndex<kSumRegisters>([&](auto r) HWY_ATTR {
    ForEachIndex<kQ>([&](auto q) HWY_ATTR { sums[r][q] = hn::Zero(d); });
  });
  for (size_t n = 0; n < count; ++n) {
    const VU words = LaneWords<kBits>(rows[n] + offset, pattern);
    V weight[kQ];
    ForEachIndex<kQ>([&](auto q) HWY_ATTR { weight[q] = hn::Set(d, w[q * weight_stride + n]); });
    ForEachIndex<kSumRegisters>([&](auto r) HWY_ATTR {
      const V c = LookupRegister<kBits, kS0 + decltype(r)::value>(words, lo, hi);
      ForEachIndex<kQ>([&](auto q) HWY_ATTR {
        sums[r][q] = hn::MulAdd(c, weight[q], sums[r][q]);
      });
    });
  }
  ForEachIndex<kSumRegisters>([&](auto r) HWY_ATTR {
    float* HWY_RESTRICT o = out + offset * 8 / kBits + (kS0 + decltype(r)::value) * kLanes;
    ForEachIndex<kQ>([&](auto q) HWY_ATTR {
      float* HWY_RESTRICT to = o + decltype(q)::value * dim;
      hn::StoreU(hn::Add(hn::LoadU(d, to), sums[r][q]), d, to);
    });
  });
}

template <int kBits, size_t kQ>
HWY_INLINE void FastTileSums(const uint8_t* const* HWY_RESTRICT rows, size_t count, size_t dim,
                             hn::Vec<D8> pattern, V lo, V hi, const float* HWY_RESTRICT w,
                             size_t weight_stride, float* HWY_RESTRICT out) {
  for (size_t sb = 0; sb < dim; sb += 8 * kLanes) {
    ForEachIndex<8 / kSumRegisters>([&](auto pass) HWY_ATTR {
      FastRegisterSums<kBits, decltype(pass)::value * kSumRegisters, kQ>(
          rows, count, sb / 8 * kBits, pattern, lo, hi, w, weight_stride, out, dim);
    });
  }
}

template <int kBits>
void FastSums(const IndexRows& r, const float* HWY_RESTRICT weights, size_t weight_stride,
              size_t num_queries, float* HWY_RESTRICT out) {
  const size_t dim = r.dim;
  const auto pattern = LanePattern<kBits>();
  const V lo = TablePart(r.table, kBits, 0), hi = TablePart(r.table, kBits, 1);
  const PaddedTail tail(r, dim * kBits / 8);
  std::vector<float> permuted(num_queries * dim, 0.0f);
  const uint8_t* rows[kTileRows];
  for (size_t n0 = 0; n0 < r.count; n0 += kTileRows) {
    const size_t m = std::min(kTileRows, r.count - n0);
    for (size_t i = 0; i < m; ++i) {
      rows[i] = tail.Row(n0 + i);
    }
    // The sums read a tile's rows in several passes: asking for the next
    // tile's as a tile starts took a cold 32K-token decode-attention step of
    // tq-mse-b2 from 9.7 to 8.5 ms (one AVX-512 thread, trusted blocks).
    const size_t next_end = std::min(r.count, n0 + m + kTileRows);
    PrefetchLines(r.packed + (n0 + m) * r.stride, r.packed + next_end * r.stride);
    for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
      const float* w = weights + q0 * weight_stride + n0;
      float* o = permuted.data() + q0 * dim;
      DispatchGroup(num_queries - q0, [&](auto queries_in_group) HWY_ATTR {
        FastTileSums<kBits, decltype(queries_in_group)::value>(rows, m, dim, pattern, lo, hi, w,
                                                               weight_stride, o);
      });
    }
  }
  for (size_t q = 0; q < num_queries; ++q) Unpermute(&permuted[q * dim], dim, out + q * dim);
}

// ---------------------------------------------------------------------------
// Index rows of 1 or 2 bits, dots, on 16-lane targets: nibble tables, a row
// per lane. A nibble of a row holds 4 / bits indices, so its share of a
// query's dot takes one of 16 values, which fill one register. The tables
// of every nibble are built once per call (two or four multiply-adds each),
// then 16 rows cost one lookup and one add per nibble and query: a quarter
// (1 bit) or half (2 bits) of the fast path's multiply-adds, one per index
// and query. A gather fetches each lane's row a 32-bit word at a time.

constexpr size_t kNibbleEntries = 16;

HWY_INLINE bool NibbleShape(const IndexRows& r) {
  return kHostIsLittleEndian && kLanes == kNibbleEntries && (r.bits == 1 || r.bits == 2) &&
         r.dim * static_cast<size_t>(r.bits) % 32 == 0 &&
         r.count * r.stride <= size_t{INT32_MAX};  // gather offsets are int32
}

// The dots of kQ queries whose nibble tables are tables[(i * nibbles + k) *
// 16 + m] (and, if kLen, the rows' sums of squares, whose table is the same
// for every nibble), 16 rows at a time.
template <size_t kQ, bool kLen>
HWY_NOINLINE void NibbleRowsDots(const IndexRows& r, size_t nibbles,
                                 const float* HWY_RESTRICT tables, V squares,
                                 float* HWY_RESTRICT dots, size_t dot_stride,
                                 float* HWY_RESTRICT len2) {
  const D d;
  const DU du;
  const DI di;
  const size_t words = nibbles / 8;
  const auto row_offsets = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(r.stride)));
  const auto base = [&](size_t n0) {
    return reinterpret_cast<const int32_t*>(r.packed + n0 * r.stride);
  };
  // Each gather is issued a word ahead of the lookups that use it (the next
  // rows' first one during the last word), which would otherwise wait on
  // its latency.
  // (Gathers are not seen by AddressSanitizer: tests/attention_kernels_test.cc
  // puts rows against a guard page instead.)
  const size_t whole = r.count / kLanes * kLanes;
  auto next = hn::Zero(di);
  if (whole > 0) next = hn::GatherOffset(di, base(0), row_offsets);
  // Rows n0 .. n0 + lanes - 1; lanes past them read row n0 (offsets 0) and
  // are not stored.
  const auto rows = [&](size_t n0, size_t lanes, hn::Vec<DI> offsets) HWY_ATTR {
    // Two accumulators a query (even and odd nibbles), to halve the chains.
    V acc[2][kGroup + 1];
    ForEachIndex<2>([&](auto a) HWY_ATTR {
      ForEachIndex<kGroup + 1>([&](auto i) HWY_ATTR { acc[a][i] = hn::Zero(d); });
    });
    for (size_t w = 0; w < words; ++w) {
      const auto word = hn::BitCast(du, next);
      if (w + 1 < words) {
        next = hn::GatherOffset(di, base(n0) + w + 1, offsets);
      } else if (n0 + kLanes < whole) {
        next = hn::GatherOffset(di, base(n0 + kLanes), row_offsets);
      }
      ForEachIndex<8>([&](auto s) HWY_ATTR {
        constexpr size_t kS = decltype(s)::value;
        const auto nibble = hn::And(hn::ShiftRight<4 * kS>(word), hn::Set(du, 15));
        const auto ind = hn::IndicesFromVec(d, hn::BitCast(di, nibble));
        ForEachIndex<kQ>([&](auto i) HWY_ATTR {
          constexpr size_t kI = decltype(i)::value;
          const float* HWY_RESTRICT t = tables + (kI * nibbles + w * 8 + kS) * kNibbleEntries;
          const V entry = hn::TableLookupLanes(hn::LoadU(d, t), ind);
          acc[kS % 2][kI] = hn::Add(acc[kS % 2][kI], entry);
        });
        if (kLen) {
          acc[kS % 2][kGroup] = hn::Add(acc[kS % 2][kGroup], hn::TableLookupLanes(squares, ind));
        }
      });
    }
    ForEachIndex<kQ>([&](auto i) HWY_ATTR {
      constexpr size_t kI = decltype(i)::value;
      StoreFirstLanes(hn::Add(acc[0][kI], acc[1][kI]), lanes, dots + kI * dot_stride + n0);
    });
    if (kLen) StoreFirstLanes(hn::Add(acc[0][kGroup], acc[1][kGroup]), lanes, len2 + n0);
  };
  for (size_t n0 = 0; n0 < whole; n0 += kLanes) rows(n0, kLanes, row_offsets);
  if (whole < r.count) {
    const auto offsets = hn::IfThenElseZero(hn::FirstN(di, r.count - whole), row_offsets);
    next = hn::GatherOffset(di, base(whole), offsets);
    rows(whole, r.count - whole, offsets);
  }
}

void NibbleDots(const IndexRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
                float* HWY_RESTRICT dots, size_t dot_stride, float* HWY_RESTRICT len2) {
  const D d;
  const size_t per_nibble = 4 / static_cast<size_t>(r.bits);
  const size_t nibbles = r.dim / per_nibble;
  const uint32_t mask = (1u << r.bits) - 1;
  // terms[j][m]: the entry of index j of nibble value m.
  HWY_ALIGN float terms[4][kNibbleEntries];
  HWY_ALIGN float squares[kNibbleEntries] = {};
  for (size_t m = 0; m < kNibbleEntries; ++m) {
    for (size_t j = 0; j < per_nibble; ++j) {
      terms[j][m] = r.table[(m >> (j * static_cast<size_t>(r.bits))) & mask];
      squares[m] += terms[j][m] * terms[j][m];
    }
  }
  const V squares_table = hn::Load(d, squares);
  if (len2 != nullptr && num_queries == 0) {
    NibbleRowsDots<0, true>(r, nibbles, nullptr, squares_table, nullptr, 0, len2);
    return;
  }
  std::vector<float> tables(kGroup * nibbles * kNibbleEntries);
  for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
    const size_t group = std::min(kGroup, num_queries - q0);
    for (size_t i = 0; i < group; ++i) {
      const float* HWY_RESTRICT q = queries + (q0 + i) * r.dim;
      for (size_t k = 0; k < nibbles; ++k) {
        V t = hn::Mul(hn::Load(d, terms[0]), hn::Set(d, q[k * per_nibble]));
        for (size_t j = 1; j < per_nibble; ++j) {
          t = hn::MulAdd(hn::Load(d, terms[j]), hn::Set(d, q[k * per_nibble + j]), t);
        }
        hn::StoreU(t, d, &tables[(i * nibbles + k) * kNibbleEntries]);
      }
    }
    // The sum of squares rides along with the first group.
    DispatchDotGroup(group, len2 != nullptr && q0 == 0,
                     [&](auto queries_in_group, auto with_len) HWY_ATTR {
      NibbleRowsDots<decltype(queries_in_group)::value, decltype(with_len)::value>(
          r, nibbles, tables.data(), squares_table, dots + q0 * dot_stride, dot_stride, len2);
    });
  }
}

template <class Run>
HWY_INLINE void DispatchBits(int bits, Run&& run) {
  switch (bits) {
    case 1: return run(std::integral_constant<int, 1>());
    case 2: return run(std::integral_constant<int, 2>());
    case 3: return run(std::integral_constant<int, 3>());
    default: return run(std::integral_constant<int, 4>());
  }
}
#endif  // !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR

void IndexRowDotsImpl(const IndexRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
                      float* HWY_RESTRICT dots, size_t dot_stride, float* HWY_RESTRICT len2) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if (NibbleShape(r)) return NibbleDots(r, queries, num_queries, dots, dot_stride, len2);
  if (FastShape(r)) {
    return DispatchBits(r.bits, [&](auto bits) HWY_ATTR {
      FastDots<decltype(bits)::value>(r, queries, num_queries, dots, dot_stride, len2);
    });
  }
#endif
  FieldIndexDots(r, queries, num_queries, dots, dot_stride, len2);
}

void IndexRowSumsImpl(const IndexRows& r, const float* HWY_RESTRICT weights,
                      size_t weight_stride, size_t num_queries, float* HWY_RESTRICT out) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  if (FastShape(r)) {
    return DispatchBits(r.bits, [&](auto bits) HWY_ATTR {
      FastSums<decltype(bits)::value>(r, weights, weight_stride, num_queries, out);
    });
  }
#endif
  FieldIndexSums(r, weights, weight_stride, num_queries, out);
}

// ---------------------------------------------------------------------------
// Value rows.

#if HWY_TARGET != HWY_SCALAR
// kLanes values of a row from p (little-endian host), widened exactly to f32.
template <uint32_t kFormat>
HWY_INLINE V LoadValues(const uint8_t* HWY_RESTRICT p) {
  const D d;
  if constexpr (kFormat == KVC_DTYPE_F32) {
    return hn::BitCast(d, hn::LoadU(hn::Repartition<uint8_t, D>(), p));
  } else {
    const hn::Rebind<uint16_t, D> d16;
    const auto halves = hn::BitCast(d16, hn::LoadU(hn::Repartition<uint8_t, decltype(d16)>(), p));
    const DU du;
    if constexpr (kFormat == KVC_DTYPE_BF16) {
      return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du, halves)));
    } else {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
      return hn::PromoteTo(d, hn::BitCast(hn::Rebind<hwy::float16_t, D>(), halves));
#else
      // Sign moved to bit 31; exponent and mantissa shifted into place and
      // scaled by 2^112 (exact for normals and subnormals); infinities and
      // NaNs get the all-ones exponent instead.
      const DI di;
      const auto h = hn::BitCast(di, hn::PromoteTo(du, halves));
      const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(di, 0x8000)));
      const auto em = hn::And(h, hn::Set(di, 0x7FFF));
      const auto shifted = hn::ShiftLeft<13>(em);
      const auto finite = hn::BitCast(
          di, hn::Mul(hn::BitCast(d, shifted), hn::BitCast(d, hn::Set(di, 0x77800000))));
      const auto special = hn::Add(shifted, hn::Set(di, 0x70000000));
      const auto is_special = hn::Gt(em, hn::Set(di, 0x7BFF));
      return hn::BitCast(d, hn::Or(hn::IfThenElse(is_special, special, finite), sign));
#endif
    }
  }
}

template <uint32_t kFormat, size_t kQ>
HWY_INLINE void ValueRowDotsOf(const uint8_t* HWY_RESTRICT row, size_t dim,
                               const float* HWY_RESTRICT q, float* HWY_RESTRICT dots) {
  const D d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kBytes = kFormat == KVC_DTYPE_F32 ? 4 : 2;
  V e0 = hn::Zero(d), e1 = hn::Zero(d), e2 = hn::Zero(d), e3 = hn::Zero(d);
  V o0 = hn::Zero(d), o1 = hn::Zero(d), o2 = hn::Zero(d), o3 = hn::Zero(d);
  size_t j = 0;
  for (; j + 2 * N <= dim; j += 2 * N) {
    const V v = LoadValues<kFormat>(row + j * kBytes);
    const V u = LoadValues<kFormat>(row + (j + N) * kBytes);
    if (kQ > 0) e0 = hn::MulAdd(v, hn::LoadU(d, q + j), e0);
    if (kQ > 1) e1 = hn::MulAdd(v, hn::LoadU(d, q + dim + j), e1);
    if (kQ > 2) e2 = hn::MulAdd(v, hn::LoadU(d, q + 2 * dim + j), e2);
    if (kQ > 3) e3 = hn::MulAdd(v, hn::LoadU(d, q + 3 * dim + j), e3);
    if (kQ > 0) o0 = hn::MulAdd(u, hn::LoadU(d, q + j + N), o0);
    if (kQ > 1) o1 = hn::MulAdd(u, hn::LoadU(d, q + dim + j + N), o1);
    if (kQ > 2) o2 = hn::MulAdd(u, hn::LoadU(d, q + 2 * dim + j + N), o2);
    if (kQ > 3) o3 = hn::MulAdd(u, hn::LoadU(d, q + 3 * dim + j + N), o3);
  }
  for (; j + N <= dim; j += N) {
    const V v = LoadValues<kFormat>(row + j * kBytes);
    if (kQ > 0) e0 = hn::MulAdd(v, hn::LoadU(d, q + j), e0);
    if (kQ > 1) e1 = hn::MulAdd(v, hn::LoadU(d, q + dim + j), e1);
    if (kQ > 2) e2 = hn::MulAdd(v, hn::LoadU(d, q + 2 * dim + j), e2);
    if (kQ > 3) e3 = hn::MulAdd(v, hn::LoadU(d, q + 3 * dim + j), e3);
  }
  float s[kGroup] = {hn::GetLane(hn::SumOfLanes(d, hn::Add(e0, o0))),
                     hn::GetLane(hn::SumOfLanes(d, hn::Add(e1, o1))),
                     hn::GetLane(hn::SumOfLanes(d, hn::Add(e2, o2))),
                     hn::GetLane(hn::SumOfLanes(d, hn::Add(e3, o3)))};
  for (; j < dim; ++j) {
    const float x = attention_internal::LoadValue(row + j * kBytes, kFormat);
    for (size_t i = 0; i < kQ; ++i) s[i] += x * q[i * dim + j];
  }
  for (size_t i = 0; i < kQ; ++i) dots[i] = s[i];
}
// For kQ queries: out[q][j] += sum over the tile's rows of w[q][n] *
// row n [j], a register of coordinates at a time, two rows at a time.
template <uint32_t kFormat, size_t kQ>
HWY_INLINE void ValueTileSums(const uint8_t* HWY_RESTRICT rows, size_t count, size_t dim,
                              const float* HWY_RESTRICT w, size_t weight_stride,
                              float* HWY_RESTRICT out) {
  const D d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kBytes = kFormat == KVC_DTYPE_F32 ? 4 : 2;
  const size_t row_bytes = dim * kBytes;
  size_t j = 0;
  for (; j + N <= dim; j += N) {
    V a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    V b0 = hn::Zero(d), b1 = hn::Zero(d), b2 = hn::Zero(d), b3 = hn::Zero(d);
    const uint8_t* HWY_RESTRICT p = rows + j * kBytes;
    size_t n = 0;
    for (; n + 2 <= count; n += 2, p += 2 * row_bytes) {
      const V v = LoadValues<kFormat>(p);
      const V u = LoadValues<kFormat>(p + row_bytes);
      const float* HWY_RESTRICT wn = w + n;
      if (kQ > 0) a0 = hn::MulAdd(v, hn::Set(d, wn[0]), a0);
      if (kQ > 1) a1 = hn::MulAdd(v, hn::Set(d, wn[weight_stride]), a1);
      if (kQ > 2) a2 = hn::MulAdd(v, hn::Set(d, wn[2 * weight_stride]), a2);
      if (kQ > 3) a3 = hn::MulAdd(v, hn::Set(d, wn[3 * weight_stride]), a3);
      if (kQ > 0) b0 = hn::MulAdd(u, hn::Set(d, wn[1]), b0);
      if (kQ > 1) b1 = hn::MulAdd(u, hn::Set(d, wn[weight_stride + 1]), b1);
      if (kQ > 2) b2 = hn::MulAdd(u, hn::Set(d, wn[2 * weight_stride + 1]), b2);
      if (kQ > 3) b3 = hn::MulAdd(u, hn::Set(d, wn[3 * weight_stride + 1]), b3);
    }
    if (n < count) {
      const V v = LoadValues<kFormat>(p);
      const float* HWY_RESTRICT wn = w + n;
      if (kQ > 0) a0 = hn::MulAdd(v, hn::Set(d, wn[0]), a0);
      if (kQ > 1) a1 = hn::MulAdd(v, hn::Set(d, wn[weight_stride]), a1);
      if (kQ > 2) a2 = hn::MulAdd(v, hn::Set(d, wn[2 * weight_stride]), a2);
      if (kQ > 3) a3 = hn::MulAdd(v, hn::Set(d, wn[3 * weight_stride]), a3);
    }
    float* HWY_RESTRICT o = out + j;
    if (kQ > 0) hn::StoreU(hn::Add(hn::LoadU(d, o), hn::Add(a0, b0)), d, o);
    if (kQ > 1) hn::StoreU(hn::Add(hn::LoadU(d, o + dim), hn::Add(a1, b1)), d, o + dim);
    if (kQ > 2) hn::StoreU(hn::Add(hn::LoadU(d, o + 2 * dim), hn::Add(a2, b2)), d, o + 2 * dim);
    if (kQ > 3) hn::StoreU(hn::Add(hn::LoadU(d, o + 3 * dim), hn::Add(a3, b3)), d, o + 3 * dim);
  }
  for (; j < dim; ++j) {
    for (size_t n = 0; n < count; ++n) {
      const float x = attention_internal::LoadValue(rows + n * row_bytes + j * kBytes, kFormat);
      for (size_t i = 0; i < kQ; ++i) out[i * dim + j] += w[i * weight_stride + n] * x;
    }
  }
}

template <uint32_t kFormat>
void ValueDots(const ValueRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
               float* HWY_RESTRICT dots, size_t dot_stride) {
  constexpr size_t kBytes = kFormat == KVC_DTYPE_F32 ? 4 : 2;
  float group[kGroup];
  for (size_t n = 0; n < r.count; ++n) {
    const uint8_t* row = r.values + n * r.dim * kBytes;
    for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
      const size_t m = std::min(kGroup, num_queries - q0);
      const float* q = queries + q0 * r.dim;
      DispatchGroup(m, [&](auto queries_in_group) HWY_ATTR {
        ValueRowDotsOf<kFormat, decltype(queries_in_group)::value>(row, r.dim, q, group);
      });
      for (size_t i = 0; i < m; ++i) dots[(q0 + i) * dot_stride + n] = group[i];
    }
  }
}

template <uint32_t kFormat>
void ValueSums(const ValueRows& r, const float* HWY_RESTRICT weights, size_t weight_stride,
               size_t num_queries, float* HWY_RESTRICT out) {
  constexpr size_t kBytes = kFormat == KVC_DTYPE_F32 ? 4 : 2;
  std::fill(out, out + num_queries * r.dim, 0.0f);
  for (size_t n0 = 0; n0 < r.count; n0 += kTileRows) {
    const size_t m = std::min(kTileRows, r.count - n0);
    const uint8_t* rows = r.values + n0 * r.dim * kBytes;
    for (size_t q0 = 0; q0 < num_queries; q0 += kGroup) {
      const float* w = weights + q0 * weight_stride + n0;
      float* o = out + q0 * r.dim;
      DispatchGroup(num_queries - q0, [&](auto queries_in_group) HWY_ATTR {
        ValueTileSums<kFormat, decltype(queries_in_group)::value>(rows, m, r.dim, w,
                                                                  weight_stride, o);
      });
    }
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

void ValueRowDotsImpl(const ValueRows& r, const float* HWY_RESTRICT queries, size_t num_queries,
                      float* HWY_RESTRICT dots, size_t dot_stride) {
#if HWY_TARGET != HWY_SCALAR
  if (kHostIsLittleEndian) {
    switch (r.format) {
      case KVC_DTYPE_F16: return ValueDots<KVC_DTYPE_F16>(r, queries, num_queries, dots, dot_stride);
      case KVC_DTYPE_BF16: return ValueDots<KVC_DTYPE_BF16>(r, queries, num_queries, dots, dot_stride);
      default: return ValueDots<KVC_DTYPE_F32>(r, queries, num_queries, dots, dot_stride);
    }
  }
#endif
  attention_internal::ValueRowDotsScalar(r, queries, num_queries, dots, dot_stride);
}

void ValueRowSumsImpl(const ValueRows& r, const float* HWY_RESTRICT weights, size_t weight_stride,
                      size_t num_queries, float* HWY_RESTRICT out) {
#if HWY_TARGET != HWY_SCALAR
  if (kHostIsLittleEndian) {
    switch (r.format) {
      case KVC_DTYPE_F16: return ValueSums<KVC_DTYPE_F16>(r, weights, weight_stride, num_queries, out);
      case KVC_DTYPE_BF16: return ValueSums<KVC_DTYPE_BF16>(r, weights, weight_stride, num_queries, out);
      default: return ValueSums<KVC_DTYPE_F32>(r, weights, weight_stride, num_queries, out);
    }
  }
#endif
  attention_internal::ValueRowSumsScalar(r, weights, weight_stride, num_queries, out);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc {
namespace simd {

HWY_EXPORT(IndexRowDotsImpl);
HWY_EXPORT(IndexRowSumsImpl);
HWY_EXPORT(FieldRowDotsImpl);
HWY_EXPORT(FieldRowGainedDotsImpl);
HWY_EXPORT(ValueRowDotsImpl);
HWY_EXPORT(ValueRowSumsImpl);

void IndexRowDots(const IndexRows& rows, const float* queries, size_t num_queries, float* dots,
                  size_t dot_stride, float* len2) {
  HWY_DYNAMIC_DISPATCH(IndexRowDotsImpl)(rows, queries, num_queries, dots, dot_stride, len2);
}

void IndexRowSums(const IndexRows& rows, const float* weights, size_t weight_stride,
                  size_t num_queries, float* out) {
  HWY_DYNAMIC_DISPATCH(IndexRowSumsImpl)(rows, weights, weight_stride, num_queries, out);
}

void FieldRowDots(const FieldRows& rows, const float* queries, size_t num_queries, float* dots,
                  size_t dot_stride, float* len2) {
  HWY_DYNAMIC_DISPATCH(FieldRowDotsImpl)(rows, queries, num_queries, dots, dot_stride, len2);
}

void FieldRowGainedDots(const FieldRows& rows, const float* queries, size_t num_queries,
                        const RowGains& gains, float* dots, size_t dot_stride) {
  HWY_DYNAMIC_DISPATCH(FieldRowGainedDotsImpl)(rows, queries, num_queries, gains, dots,
                                               dot_stride);
}

void ValueRowDots(const ValueRows& rows, const float* queries, size_t num_queries, float* dots,
                  size_t dot_stride) {
  HWY_DYNAMIC_DISPATCH(ValueRowDotsImpl)(rows, queries, num_queries, dots, dot_stride);
}

void ValueRowSums(const ValueRows& rows, const float* weights, size_t weight_stride,
                  size_t num_queries, float* out) {
  HWY_DYNAMIC_DISPATCH(ValueRowSumsImpl)(rows, weights, weight_stride, num_queries, out);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
