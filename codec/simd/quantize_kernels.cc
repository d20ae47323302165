// Quantization: t = y * scale (one rounded product), index = number of
// thresholds < t, counted with one compare per threshold against broadcast
// values or by a binary search (in-register tables up to 4 bits; from 5
// bits the levels past a register's width gather their thresholds), which
// gives the same count. Dequantization: a table gather and one rounded
// product.
#include "simd/quantize_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd/bitpack.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/quantize_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "simd/bitpack-inl.h"
#include "simd/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <size_t kCount>
HWY_INLINE void CountBelowN(const float* HWY_RESTRICT thresholds, const float* HWY_RESTRICT in,
                            size_t n, float scale, uint8_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::Rebind<uint8_t, decltype(d)> d8;
  const size_t N = hn::Lanes(d);
  const auto vs = hn::Set(d, scale);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto t = hn::Mul(hn::LoadU(d, in + j), vs);
    auto count = hn::Zero(di);
    for (size_t k = 0; k < kCount; ++k) {  // mask lanes are -1
      count = hn::Sub(count, hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(hn::Set(d, thresholds[k]), t))));
    }
    hn::StoreU(hn::DemoteTo(d8, count), d8, out + j);
  }
  for (; j < n; ++j) {
    const float t = in[j] * scale;
    uint8_t count = 0;
    for (size_t k = 0; k < kCount; ++k) count += thresholds[k] < t;
    out[j] = count;
  }
}

#if HWY_TARGET != HWY_SCALAR
// Binary search over the 2^kBits - 1 thresholds with in-register tables:
// step l compares t with thresholds[(2m+1) * 2^(kBits-l) - 1] where m is the
// index so far; the result equals the count of thresholds < t (ascending
// thresholds; NaN fails every compare and gives 0). Needs 2^(kBits-1) lanes.
template <int kBits>
HWY_INLINE void BinarySearch(const float* HWY_RESTRICT thresholds, const float* HWY_RESTRICT in,
                             size_t n, float scale, uint8_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::Rebind<uint8_t, decltype(d)> d8;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float table[kBits][hn::MaxLanes(d)];
  for (int l = 1; l <= kBits; ++l) {
    for (size_t m = 0; m < N; ++m) {
      table[l - 1][m] = m < (size_t{1} << (l - 1))
                            ? thresholds[(2 * m + 1) * (size_t{1} << (kBits - l)) - 1]
                            : 0.0f;
    }
  }
  const auto first = hn::Set(d, thresholds[(1 << (kBits - 1)) - 1]);
  const auto t2 = hn::Load(d, table[1 % kBits]);
  const auto t3 = hn::Load(d, table[2 % kBits]);
  const auto t4 = hn::Load(d, table[3 % kBits]);
  const auto vs = hn::Set(d, scale);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto t = hn::Mul(hn::LoadU(d, in + j), vs);
    auto k = hn::And(hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(first, t))),
                     hn::Set(di, 1 << (kBits - 1)));
    if (kBits >= 2) {
      const auto thr = hn::TableLookupLanes(t2, hn::IndicesFromVec(d, hn::ShiftRight<kBits - 1>(k)));
      k = hn::Add(k, hn::And(hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(thr, t))),
                             hn::Set(di, 1 << (kBits >= 2 ? kBits - 2 : 0))));
    }
    if (kBits >= 3) {
      const auto thr = hn::TableLookupLanes(
          t3, hn::IndicesFromVec(d, hn::ShiftRight<(kBits >= 3 ? kBits - 2 : 0)>(k)));
      k = hn::Add(k, hn::And(hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(thr, t))),
                             hn::Set(di, 1 << (kBits >= 3 ? kBits - 3 : 0))));
    }
    if (kBits >= 4) {
      const auto thr = hn::TableLookupLanes(
          t4, hn::IndicesFromVec(d, hn::ShiftRight<(kBits >= 4 ? kBits - 3 : 0)>(k)));
      k = hn::Add(k, hn::And(hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(thr, t))),
                             hn::Set(di, 1)));
    }
    hn::StoreU(hn::DemoteTo(d8, k), d8, out + j);
  }
  for (; j < n; ++j) {
    const float t = in[j] * scale;
    uint8_t c = 0;
    for (int q = 0; q + 1 < (1 << kBits); ++q) c += thresholds[q] < t;
    out[j] = c;
  }
}
#endif

#if HWY_TARGET != HWY_SCALAR
// 4-bit quantization straight into packed nibbles: the binary search above,
// then lanes 2i and 2i+1 (one u64 lane) merged as k0 | k1 << 4 and truncated
// to a byte. Same bytes as CountBelow + PackBits(.., 4, ..).
HWY_INLINE void QuantizePack4(const float* HWY_RESTRICT thresholds, const float* HWY_RESTRICT in,
                              size_t n, float scale, uint8_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::Repartition<uint64_t, decltype(d)> d64;
  const hn::Rebind<uint8_t, decltype(d64)> d8;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float table[4][hn::MaxLanes(d)];
  for (int l = 1; l <= 4; ++l) {
    for (size_t m = 0; m < N; ++m) {
      table[l - 1][m] =
          m < (size_t{1} << (l - 1)) ? thresholds[(2 * m + 1) * (size_t{1} << (4 - l)) - 1] : 0.0f;
    }
  }
  const auto first = hn::Set(d, thresholds[7]);
  const auto t2 = hn::Load(d, table[1]);
  const auto t3 = hn::Load(d, table[2]);
  const auto t4 = hn::Load(d, table[3]);
  const auto vs = hn::Set(d, scale);
  const auto bit = [&](auto thr, auto t, int value) HWY_ATTR {
    return hn::And(hn::VecFromMask(di, hn::RebindMask(di, hn::Lt(thr, t))), hn::Set(di, value));
  };
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto t = hn::Mul(hn::LoadU(d, in + j), vs);
    auto k = bit(first, t, 8);
    k = hn::Add(k, bit(hn::TableLookupLanes(t2, hn::IndicesFromVec(d, hn::ShiftRight<3>(k))), t, 4));
    k = hn::Add(k, bit(hn::TableLookupLanes(t3, hn::IndicesFromVec(d, hn::ShiftRight<2>(k))), t, 2));
    k = hn::Add(k, bit(hn::TableLookupLanes(t4, hn::IndicesFromVec(d, hn::ShiftRight<1>(k))), t, 1));
    const auto pairs = hn::BitCast(d64, k);
    hn::StoreU(hn::TruncateTo(d8, hn::Or(pairs, hn::ShiftRight<28>(pairs))), d8, out + j / 2);
  }
  for (; j + 2 <= n; j += 2) {
    uint8_t k[2];
    for (int e = 0; e < 2; ++e) {
      const float t = in[j + e] * scale;
      k[e] = 0;
      for (int q = 0; q < 15; ++q) k[e] = static_cast<uint8_t>(k[e] + (thresholds[q] < t));
    }
    out[j / 2] = static_cast<uint8_t>(k[0] | (k[1] << 4));
  }
}
#endif

// Up to four registers of table entries (N lanes each; a third one is
// looked up as four, the entries past the table's end zero): entry k is
// lane k mod N of register k / N, picked by k's bits above the lane's, a
// select per bit. The value a gather would load, without the gather.
constexpr size_t kMaxTableRegs = 4;

template <class D, class VI>
HWY_INLINE hn::Vec<D> LookupRegs(D d, const float* HWY_RESTRICT table, size_t regs, VI k) {
  const hn::RebindToSigned<D> di;
  const size_t N = hn::Lanes(d);
  const auto ind = hn::IndicesFromVec(d, hn::And(k, hn::Set(di, static_cast<int32_t>(N - 1))));
  const auto entry = [&](size_t r) HWY_ATTR {
    return hn::TableLookupLanes(hn::Load(d, table + r * N), ind);
  };
  const auto low = entry(0);
  if (regs == 1) return low;
  const auto second = hn::RebindMask(d, hn::TestBit(k, hn::Set(di, static_cast<int32_t>(N))));
  const auto pair01 = hn::IfThenElse(second, entry(1), low);
  if (regs == 2) return pair01;
  const auto pair23 = hn::IfThenElse(second, entry(3), entry(2));
  const auto upper = hn::RebindMask(d, hn::TestBit(k, hn::Set(di, static_cast<int32_t>(2 * N))));
  return hn::IfThenElse(upper, pair23, pair01);
}

// Codebooks of 5 to 8 bits: the binary search from the index's top bit down
// (after l bits the index is k, and the next compares t with thresholds[k *
// 2^(bits-l) + 2^(bits-l-1) - 1]), levels of up to four registers of
// entries from in-register tables, the deeper ones gathered. The tables
// are built once for every row of a call; a row's last partial vector is
// searched in a padded copy, so every value takes the same path.
class WideSearch {
 public:
  WideSearch(const float* HWY_RESTRICT thresholds, int bits)
      : thresholds_(thresholds), bits_(bits) {
#if HWY_TARGET != HWY_SCALAR
    const size_t N = hn::Lanes(D());
    while (table_levels_ < bits && (size_t{1} << table_levels_) <= kMaxTableRegs * N) {
      ++table_levels_;
    }
    for (int l = 1; l < table_levels_; ++l) {
      for (size_t m = 0; m < (size_t{1} << l); ++m) {
        table_[l][m] = thresholds[(m << (bits - l)) + (size_t{1} << (bits - l - 1)) - 1];
      }
    }
#endif
  }

  void Row(const float* HWY_RESTRICT in, size_t n, float scale, uint8_t* HWY_RESTRICT out) const {
#if HWY_TARGET != HWY_SCALAR
    const D d;
    const hn::Rebind<uint8_t, D> d8;
    const size_t N = hn::Lanes(d);
    size_t j = 0;
    for (; j + N <= n; j += N) {
      hn::StoreU(hn::DemoteTo(d8, Search(hn::LoadU(d, in + j), scale)), d8, out + j);
    }
    if (j < n) {
      HWY_ALIGN float last[hn::MaxLanes(D())] = {};
      HWY_ALIGN uint8_t k[hn::MaxLanes(D())];
      std::copy(in + j, in + n, last);
      hn::Store(hn::DemoteTo(d8, Search(hn::Load(d, last), scale)), d8, k);
      std::copy(k, k + (n - j), out + j);
    }
#else
    // The reference binary search (quant/codebooks.h).
    const uint32_t top = (1u << bits_) - 1;
    for (size_t j = 0; j < n; ++j) {
      const float t = in[j] * scale;
      uint32_t lo = 0, hi = top;
      while (lo < hi) {
        const uint32_t mid = (lo + hi) / 2;
        if (thresholds_[mid] < t) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      out[j] = static_cast<uint8_t>(lo);
    }
#endif
  }

 private:
  using D = hn::ScalableTag<float>;
  static constexpr int kMaxLevels = 8;

#if HWY_TARGET != HWY_SCALAR
  hn::Vec<hn::RebindToSigned<D>> Search(hn::Vec<D> x, float scale) const {
    const D d;
    const hn::RebindToSigned<D> di;
    const auto t = hn::Mul(x, hn::Set(d, scale));
    const auto one = hn::Set(di, 1);
    auto k = hn::IfThenElseZero(
        hn::RebindMask(di, hn::Lt(hn::Set(d, thresholds_[(1 << (bits_ - 1)) - 1]), t)), one);
    for (int l = 1; l < table_levels_; ++l) {
      const size_t regs = ((size_t{1} << l) + hn::Lanes(d) - 1) / hn::Lanes(d);
      const auto threshold = LookupRegs(d, table_[l], regs, k);
      k = hn::Add(hn::Add(k, k), hn::IfThenElseZero(hn::RebindMask(di, hn::Lt(threshold, t)), one));
    }
    for (int l = table_levels_; l < bits_; ++l) {
      const auto at = hn::Add(hn::ShiftLeftSame(k, bits_ - l),
                              hn::Set(di, (1 << (bits_ - l - 1)) - 1));
      const auto threshold = hn::GatherIndex(d, thresholds_, at);
      k = hn::Add(hn::Add(k, k), hn::IfThenElseZero(hn::RebindMask(di, hn::Lt(threshold, t)), one));
    }
    return k;
  }

  // Levels 1 .. table_levels_ - 1 hold at most kMaxTableRegs * N entries.
  int table_levels_ = 1;
  HWY_ALIGN float table_[kMaxLevels][kMaxTableRegs * hn::MaxLanes(D())] = {};
#endif
  const float* thresholds_;
  int bits_;
};

void WideSearchImpl(const float* HWY_RESTRICT thresholds, int bits, const float* HWY_RESTRICT in,
                    size_t n, float scale, uint8_t* HWY_RESTRICT out) {
  WideSearch(thresholds, bits).Row(in, n, scale, out);
}

// Returns false (nothing written) where the packed kernel does not apply.
bool QuantizePack4Impl(const float* HWY_RESTRICT thresholds, const float* HWY_RESTRICT in,
                       size_t n, float scale, uint8_t* HWY_RESTRICT out) {
#if HWY_TARGET != HWY_SCALAR
  if (n % 2 == 0 && hn::Lanes(hn::ScalableTag<float>()) >= 8) {
    QuantizePack4(thresholds, in, n, scale, out);
    return true;
  }
#endif
  (void)thresholds, (void)in, (void)n, (void)scale, (void)out;
  return false;
}

void CountBelowImpl(const float* HWY_RESTRICT thresholds, size_t count,
                    const float* HWY_RESTRICT in, size_t n, float scale,
                    uint8_t* HWY_RESTRICT out) {
#if HWY_TARGET != HWY_SCALAR
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  if (count == 3 && lanes >= 2) return BinarySearch<2>(thresholds, in, n, scale, out);
  if (count == 7 && lanes >= 4) return BinarySearch<3>(thresholds, in, n, scale, out);
  if (count == 15 && lanes >= 8) return BinarySearch<4>(thresholds, in, n, scale, out);
#endif
  switch (count) {
    case 1: return CountBelowN<1>(thresholds, in, n, scale, out);
    case 3: return CountBelowN<3>(thresholds, in, n, scale, out);
    case 7: return CountBelowN<7>(thresholds, in, n, scale, out);
    case 15: return CountBelowN<15>(thresholds, in, n, scale, out);
    default: break;
  }
  for (size_t j = 0; j < n; ++j) {
    const float t = in[j] * scale;
    uint8_t c = 0;
    for (size_t k = 0; k < count; ++k) c += thresholds[k] < t;
    out[j] = c;
  }
}

// out[j] = in[j] * scale, one rounded product each (out may be in).
HWY_INLINE void ScaleRow(const float* in, size_t n, float scale, float* out) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto vs = hn::Set(d, scale);
  size_t j = 0;
  for (; j + N <= n; j += N) hn::StoreU(hn::Mul(hn::LoadU(d, in + j), vs), d, out + j);
  for (; j < n; ++j) out[j] = in[j] * scale;
}

// Dequantization y = centroids[k] * gain (one rounded product), the
// centroids held in registers when they fit in kMaxTableRegs of them,
// gathered otherwise. Built once for every row of a call; a row's last
// partial vector goes through a padded copy, so every value takes the
// same path.
class CentroidTable {
 public:
  CentroidTable(const float* HWY_RESTRICT centroids, size_t size) : centroids_(centroids) {
#if HWY_TARGET != HWY_SCALAR
    const size_t N = hn::Lanes(D());
    if (size <= kMaxTableRegs * N) {
      regs_ = (size + N - 1) / N;
      std::copy(centroids, centroids + size, table_);
    }
#else
    (void)size;
#endif
  }

  void Row(const uint8_t* HWY_RESTRICT idx, size_t n, float gain, float* HWY_RESTRICT y) const {
    const D d;
    const hn::RebindToSigned<D> di;
    const hn::Rebind<uint8_t, D> d8;
    const size_t N = hn::Lanes(d);
    const auto vg = hn::Set(d, gain);
    size_t j = 0;
    for (; j + N <= n; j += N) {
      hn::StoreU(hn::Mul(Lookup(hn::PromoteTo(di, hn::LoadU(d8, idx + j))), vg), d, y + j);
    }
    if (j < n) {
      HWY_ALIGN uint8_t k[hn::MaxLanes(D())] = {};
      HWY_ALIGN float v[hn::MaxLanes(D())];
      std::copy(idx + j, idx + n, k);
      hn::Store(hn::Mul(Lookup(hn::PromoteTo(di, hn::Load(d8, k))), vg), d, v);
      std::copy(v, v + (n - j), y + j);
    }
  }

 private:
  using D = hn::ScalableTag<float>;

  hn::Vec<D> Lookup(hn::Vec<hn::RebindToSigned<D>> k) const {
#if HWY_TARGET != HWY_SCALAR
    if (regs_ != 0) return LookupRegs(D(), table_, regs_, k);
#endif
    return hn::GatherIndex(D(), centroids_, k);
  }

  const float* centroids_;
#if HWY_TARGET != HWY_SCALAR
  size_t regs_ = 0;  // 0: gathered
  HWY_ALIGN float table_[kMaxTableRegs * hn::MaxLanes(D())] = {};
#endif
};

void DequantizeImpl(const float* HWY_RESTRICT centroids, size_t size,
                    const uint8_t* HWY_RESTRICT idx, size_t n, float gain,
                    float* HWY_RESTRICT y) {
  CentroidTable(centroids, size).Row(idx, n, gain, y);
}

void QuantizeRowsImpl(const float* HWY_RESTRICT thresholds, int bits, size_t n, size_t count,
                      const float* HWY_RESTRICT y, const float* HWY_RESTRICT scales,
                      uint8_t* HWY_RESTRICT packed) {
  const size_t record = (n * static_cast<size_t>(bits) + 7) / 8;
  std::vector<uint8_t> idx(n);
  const size_t N = hn::Lanes(hn::ScalableTag<float>());
  if (n % N != 0 && count > 1) {
    // Rows that do not fill whole vectors (Block-GTQ's groups): the whole
    // batch scaled into one array (the same products) and searched in one
    // pass at scale 1 (exact), so that the rows' tails do not each take the
    // scalar loop.
    std::vector<float> t(count * n);
    for (size_t r = 0; r < count; ++r) ScaleRow(y + r * n, n, scales[r], &t[r * n]);
    idx.resize(count * n);
    if (bits > 4) {
      WideSearch(thresholds, bits).Row(t.data(), count * n, 1.0f, idx.data());
    } else {
      CountBelowImpl(thresholds, (size_t{1} << bits) - 1, t.data(), count * n, 1.0f, idx.data());
    }
    PackFieldRows(idx.data(), n, record, count, bits, packed);
    return;
  }
  if (bits > 4) {
    const WideSearch search(thresholds, bits);
    for (size_t r = 0; r < count; ++r) {
      search.Row(y + r * n, n, scales[r], idx.data());
      PackFields(idx.data(), n, bits, packed + r * record);
    }
    return;
  }
  for (size_t r = 0; r < count; ++r) {
    const float* row = y + r * n;
    uint8_t* out = packed + r * record;
    if (bits == 4 && QuantizePack4Impl(thresholds, row, n, scales[r], out)) continue;
    CountBelowImpl(thresholds, (size_t{1} << bits) - 1, row, n, scales[r], idx.data());
    PackFields(idx.data(), n, bits, out);
  }
}

// The whole batch at once, so that short rows (Block-GTQ's groups) do not
// pay a call and a partial vector each: every row's indices unpacked into
// one array, their centroids looked up in one pass (times 1, exact), then
// each row multiplied by its gain (the same single rounding as centroid *
// gain). With norm correction the gains are norm / length of the rows'
// centroids, computed kRows at a time in lanes (the same correctly rounded
// square roots and quotients): no row waits on its own square root and
// division.
void DequantizeRowsImpl(const float* HWY_RESTRICT centroids, int bits, const uint8_t* packed,
                        size_t n, size_t count, const float* HWY_RESTRICT norms, float sqrt_dim,
                        bool norm_correction, float* HWY_RESTRICT y) {
  const size_t record = (n * static_cast<size_t>(bits) + 7) / 8;
  std::vector<uint8_t> idx(count * n + 8);  // + the room UnpackFieldRows asks
  if (record * 8 == n * static_cast<size_t>(bits)) {  // rows back to back
    UnpackFields(packed, count * n, bits, idx.data());
  } else {
    UnpackFieldRows(packed, n, record, count, bits, idx.data());
  }
  CentroidTable(centroids, size_t{1} << bits).Row(idx.data(), count * n, 1.0f, y);
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kRows = 16;
  HWY_ALIGN float gains[kRows];
  for (size_t r0 = 0; r0 < count; r0 += kRows) {
    const size_t m = std::min(kRows, count - r0);
    if (norm_correction) {
      HWY_ALIGN float sums[kRows] = {}, row_norms[kRows] = {};
      for (size_t i = 0; i < m; ++i) {
        sums[i] = SumOfSquaresArray(y + (r0 + i) * n, n, (count - r0 - i) * n);
        row_norms[i] = norms[r0 + i];
      }
      for (size_t i = 0; i < kRows; i += N) {
        const auto length = hn::Sqrt(hn::Load(d, sums + i));
        const auto positive = hn::Gt(length, hn::Zero(d));
        const auto divisor = hn::IfThenElse(positive, length, hn::Set(d, 1.0f));
        const auto gain = hn::Div(hn::Load(d, row_norms + i), divisor);
        hn::Store(hn::IfThenElseZero(positive, gain), d, gains + i);
      }
    } else {
      for (size_t i = 0; i < m; ++i) gains[i] = norms[r0 + i] / sqrt_dim;
    }
    for (size_t i = 0; i < m; ++i) ScaleRow(y + (r0 + i) * n, n, gains[i], y + (r0 + i) * n);
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

HWY_EXPORT(CountBelowImpl);
HWY_EXPORT(QuantizePack4Impl);
HWY_EXPORT(WideSearchImpl);
HWY_EXPORT(QuantizeRowsImpl);
HWY_EXPORT(DequantizeRowsImpl);
HWY_EXPORT(DequantizeImpl);
HWY_EXPORT(PackFields);
HWY_EXPORT(UnpackFields);

void CountBelow(const float* thresholds, size_t count, const float* in, size_t n,
                float scale, uint8_t* out) {
  HWY_DYNAMIC_DISPATCH(CountBelowImpl)(thresholds, count, in, n, scale, out);
}

bool QuantizePacked(const Codebook& book, const float* y, size_t n, float scale,
                    uint8_t* packed) {
  if (book.bits != 4) return false;
  return HWY_DYNAMIC_DISPATCH(QuantizePack4Impl)(book.thresholds, y, n, scale, packed);
}

void Quantize(const Codebook& book, const float* y, size_t n, float scale, uint8_t* idx) {
  if (book.bits <= 4) {
    HWY_DYNAMIC_DISPATCH(CountBelowImpl)(book.thresholds, static_cast<size_t>(book.size - 1),
                                         y, n, scale, idx);
    return;
  }
  HWY_DYNAMIC_DISPATCH(WideSearchImpl)(book.thresholds, book.bits, y, n, scale, idx);
}

void QuantizeRows(const Codebook& book, const float* y, size_t n, size_t count,
                  const float* scales, uint8_t* packed) {
  HWY_DYNAMIC_DISPATCH(QuantizeRowsImpl)(book.thresholds, book.bits, n, count, y, scales, packed);
}

void DequantizeRows(const Codebook& book, const uint8_t* packed, size_t n, size_t count,
                    const float* norms, float sqrt_dim, bool norm_correction, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeRowsImpl)(book.centroids, book.bits, packed, n, count, norms,
                                           sqrt_dim, norm_correction, y);
}

void PackIndices(const uint8_t* idx, size_t n, int bits, uint8_t* packed) {
  HWY_DYNAMIC_DISPATCH(PackFields)(idx, n, bits, packed);
}

void UnpackIndices(const uint8_t* packed, size_t n, int bits, uint8_t* idx) {
  HWY_DYNAMIC_DISPATCH(UnpackFields)(packed, n, bits, idx);
}

void Dequantize(const Codebook& book, const uint8_t* idx, size_t n, float gain, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeImpl)(book.centroids, static_cast<size_t>(book.size), idx, n,
                                       gain, y);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
