// f16/bf16 <-> f32 rows. base/half.h is the format's definition and keeps
// NaN payloads; F16C (Highway's PromoteTo/DemoteTo on AVX2 and up) agrees
// with it on every other value, so it converts rows without a NaN and the
// exact integer versions below take the rest. Their only float operations
// are a multiplication by 2^112 and an addition of 0.5f, both exactly
// rounded on every target.
#include "simd/convert_kernels.h"

#include "base/half.h"

// What F32ToF16Impl met among its outputs (defined once: this file is
// compiled once per target).
#ifndef KVCODEC_CODEC_SIMD_CONVERT_FLAGS_
#define KVCODEC_CODEC_SIMD_CONVERT_FLAGS_
namespace kvc {
namespace simd {
constexpr uint32_t kSawInfinity = 1;  // +-inf (from inf or an overflow)
constexpr uint32_t kSawNaN = 2;
}  // namespace simd
}  // namespace kvc
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/convert_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class DF, class VI>
HWY_INLINE hn::Vec<DF> HalfBitsToF32(DF df, VI h) {
  const hn::RebindToSigned<DF> di;
  const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(di, 0x8000)));
  const auto em = hn::And(h, hn::Set(di, 0x7FFF));
  const auto shifted = hn::ShiftLeft<13>(em);
  // Normal and subnormal: reinterpret, then scale by 2^112 (exact).
  const auto finite = hn::BitCast(
      di, hn::Mul(hn::BitCast(df, shifted), hn::BitCast(df, hn::Set(di, 0x77800000))));
  const auto special = hn::Add(shifted, hn::Set(di, 0x70000000));  // inf / NaN
  const auto is_special = hn::Gt(em, hn::Set(di, 0x7BFF));
  return hn::BitCast(df, hn::Or(hn::IfThenElse(is_special, special, finite), sign));
}

// Widening reads the caller's input, often from memory (a block's pass over
// a cache larger than the last-level cache). Asking for the line 2 KiB ahead
// once per 64 bytes keeps more misses in flight than the hardware prefetcher
// does alone: 9.7-9.9 -> 10.4-10.7 GB/s from memory on one core of the
// development machine (16 KiB calls over 256 MiB, three alternating runs).
HWY_INLINE void PrefetchAhead(const uint16_t* in, size_t i, size_t n) {
  constexpr size_t kAhead = 1024, kLine = 32;  // in 16-bit values
  if (i % kLine == 0 && i + kAhead < n) hwy::Prefetch(in + i + kAhead);
}

// The conversions return whether every value met is finite (inputs when
// widening, outputs when narrowing: an infinite or NaN output is exactly a
// non-finite input or an overflow), so that the block codec needs no second
// pass to check. They track the largest |h| (16-bit patterns without sign):
// specials are those at or above the all-ones exponent.
bool F16ToF32Impl(const uint16_t* HWY_RESTRICT in, size_t n, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
#if HWY_TARGET <= HWY_AVX2
  // F16C converts every finite value and infinity exactly; it only differs
  // on NaNs (it quiets signalling ones): a row holding an infinity or NaN is
  // redone by the integer path.
  {
    const hn::Rebind<hwy::float16_t, decltype(df)> dh;
    const auto abs_mask = hn::Set(d16, 0x7FFF);
    auto largest = hn::Zero(d16);
    size_t k = 0;
    for (; k + N <= n; k += N) {
      PrefetchAhead(in, k, n);
      const auto raw = hn::LoadU(d16, in + k);
      largest = hn::Max(largest, hn::And(raw, abs_mask));
      hn::StoreU(hn::PromoteTo(df, hn::BitCast(dh, raw)), df, out + k);
    }
    if (hn::AllTrue(d16, hn::Lt(largest, hn::Set(d16, 0x7C00)))) i = k;
  }
#endif
  auto largest = hn::Zero(di);
  for (; i + N <= n; i += N) {
    PrefetchAhead(in, i, n);
    const auto h = hn::PromoteTo(di, hn::LoadU(d16, in + i));
    largest = hn::Max(largest, hn::And(h, hn::Set(di, 0x7FFF)));
    hn::StoreU(HalfBitsToF32(df, h), df, out + i);
  }
  bool finite = hn::AllTrue(di, hn::Lt(largest, hn::Set(di, 0x7C00)));
  for (; i < n; ++i) {
    out[i] = kvc::F16ToF32(in[i]);
    finite = finite && (in[i] & 0x7FFF) < 0x7C00;
  }
  return finite;
}

bool BF16ToF32Impl(const uint16_t* HWY_RESTRICT in, size_t n, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  auto largest = hn::Zero(di);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    PrefetchAhead(in, i, n);
    const auto h = hn::PromoteTo(di, hn::LoadU(d16, in + i));
    largest = hn::Max(largest, hn::And(h, hn::Set(di, 0x7FFF)));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(h)), df, out + i);
  }
  bool finite = hn::AllTrue(di, hn::Lt(largest, hn::Set(di, 0x7F80)));
  for (; i < n; ++i) {
    out[i] = kvc::BF16ToF32(in[i]);
    finite = finite && (in[i] & 0x7FFF) < 0x7F80;
  }
  return finite;
}

// Stores the vectors make(k) that cover an n-element output and returns how
// many elements they cover. Cached: the whole vectors from 0, leaving the
// tail to the caller. Around the cache: every element, the vectors that
// start aligned streamed and an unaligned one at either end; those overlap
// their neighbours, so make must be idempotent (its reductions max or or).
// Only whole 16-byte vectors are streamed: x86 stores a partial one as 16
// bytes, beyond its lanes.
template <class D, class Make>
HWY_INLINE size_t StoreVectors(D d, size_t n, bool around_cache, hn::TFromD<D>* HWY_RESTRICT out,
                               Make&& make) {
  using T = hn::TFromD<D>;
  const size_t N = hn::Lanes(d), bytes = N * sizeof(T);
  size_t k = 0;
  if (!around_cache || bytes < 16 || n < N || reinterpret_cast<uintptr_t>(out) % sizeof(T)) {
    for (; k + N <= n; k += N) hn::StoreU(make(k), d, out + k);
    return k;
  }
  k = (bytes - reinterpret_cast<uintptr_t>(out) % bytes) % bytes / sizeof(T);
  if (k != 0) hn::StoreU(make(0), d, out);
  for (; k + N <= n; k += N) hn::Stream(make(k), d, out + k);
  if (k < n) hn::StoreU(make(n - N), d, out + n - N);
  return n;
}

uint32_t F32ToF16Impl(const float* HWY_RESTRICT in, size_t n, bool around_cache,
                      uint16_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  size_t i = 0;  // elements converted
  bool converted = false;  // every whole vector
#if HWY_TARGET <= HWY_AVX2
  // F16C with round-to-nearest-even (Highway passes _MM_FROUND_NO_EXC, so
  // the immediate's RNE is used, not MXCSR) matches F32ToF16 on every
  // non-NaN input, subnormals and overflow to infinity included. A row with
  // an infinite or NaN output is redone by the integer path, which keeps
  // NaN payloads as the reference does and tells infinities from NaNs.
  {
    const hn::Rebind<hwy::float16_t, decltype(df)> dh;
    const auto abs_mask = hn::Set(d16, 0x7FFF);
    auto largest = hn::Zero(d16);
    const size_t k = StoreVectors(d16, n, around_cache, out, [&](size_t at) HWY_ATTR {
      const auto h = hn::BitCast(d16, hn::DemoteTo(dh, hn::LoadU(df, in + at)));
      largest = hn::Max(largest, hn::And(h, abs_mask));
      return h;
    });
    if (hn::AllTrue(d16, hn::Lt(largest, hn::Set(d16, 0x7C00)))) {
      i = k;
      converted = true;
    }
  }
#endif
  auto infinity = hn::Zero(di), largest = hn::Zero(di);
  // The integer path, on every target but those above and on the rows
  // they leave.
  if (!converted) i = StoreVectors(d16, n, around_cache, out, [&](size_t at) HWY_ATTR {
    const auto bits = hn::BitCast(di, hn::LoadU(df, in + at));
    const auto sign = hn::And(hn::ShiftRight<16>(bits), hn::Set(di, 0x8000));
    const auto abs = hn::And(bits, hn::Set(di, 0x7FFFFFFF));
    // Normal: drop 13 mantissa bits rounding to nearest even, rebias.
    const auto lsb = hn::And(hn::ShiftRight<13>(abs), hn::Set(di, 1));
    const auto normal = hn::Sub(
        hn::ShiftRight<13>(hn::Add(hn::Add(abs, hn::Set(di, 0xFFF)), lsb)),
        hn::Set(di, 112 << 10));
    // Subnormal (and zero): 0.5f + |x| rounds |x| to a multiple of 2^-24.
    const auto sub = hn::Sub(
        hn::BitCast(di, hn::Add(hn::BitCast(df, abs), hn::Set(df, 0.5f))),
        hn::Set(di, 0x3F000000));
    auto h = hn::IfThenElse(hn::Lt(abs, hn::Set(di, 0x38800000)), sub, normal);
    h = hn::IfThenElse(hn::Gt(abs, hn::Set(di, 0x477FEFFF)), hn::Set(di, 0x7C00), h);
    h = hn::IfThenElse(hn::Gt(abs, hn::Set(di, 0x7F800000)), hn::Set(di, 0x7E00), h);
    infinity = hn::Or(infinity, hn::VecFromMask(di, hn::Eq(h, hn::Set(di, 0x7C00))));
    largest = hn::Max(largest, h);
    return hn::DemoteTo(d16, hn::Or(h, sign));
  });
  uint32_t seen = (hn::AllTrue(di, hn::Eq(infinity, hn::Zero(di))) ? 0 : kSawInfinity) |
                  (hn::AllTrue(di, hn::Lt(largest, hn::Set(di, 0x7C01))) ? 0 : kSawNaN);
  for (; i < n; ++i) {
    out[i] = kvc::F32ToF16(in[i]);
    const uint32_t abs = out[i] & 0x7FFFu;
    seen |= (abs == 0x7C00 ? kSawInfinity : 0) | (abs > 0x7C00 ? kSawNaN : 0);
  }
  return seen;
}

bool F32ToBF16Impl(const float* HWY_RESTRICT in, size_t n, bool around_cache,
                   uint16_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  auto largest = hn::Zero(di);
  size_t i = StoreVectors(d16, n, around_cache, out, [&](size_t at) HWY_ATTR {
    const auto bits = hn::BitCast(du, hn::LoadU(df, in + at));
    const auto rounded = hn::ShiftRight<16>(hn::Add(
        bits, hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u)))));
    const auto nan = hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40u));
    const auto abs = hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7FFFFFFFu)));
    const auto is_nan = hn::RebindMask(du, hn::Gt(abs, hn::Set(di, 0x7F800000)));
    const auto h = hn::BitCast(di, hn::IfThenElse(is_nan, nan, rounded));
    largest = hn::Max(largest, hn::And(h, hn::Set(di, 0x7FFF)));
    return hn::DemoteTo(d16, h);
  });
  bool finite = hn::AllTrue(di, hn::Lt(largest, hn::Set(di, 0x7F80)));
  for (; i < n; ++i) {
    out[i] = kvc::F32ToBF16(in[i]);
    finite = finite && (out[i] & 0x7FFF) < 0x7F80;
  }
  return finite;
}

void GatherColumnsImpl(const float* HWY_RESTRICT in, size_t stride, size_t count,
                       const int32_t* HWY_RESTRICT columns, size_t m, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t N = hn::Lanes(df);
  for (size_t n = 0; n < count; ++n) {
    const float* row = in + n * stride;
    float* to = out + n * m;
    size_t k = 0;
    for (; k + N <= m; k += N) {
      hn::StoreU(hn::GatherIndex(df, row, hn::LoadU(di, columns + k)), df, to + k);
    }
    for (; k < m; ++k) to[k] = row[columns[k]];
  }
}

void AddToRowsImpl(const float* x, size_t d, size_t count, const float* HWY_RESTRICT v,
                   float* out) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  for (size_t n = 0; n < count; ++n) {
    const float* row = x + n * d;
    float* to = out + n * d;
    size_t j = 0;
    for (; j + N <= d; j += N) {
      hn::StoreU(hn::Add(hn::LoadU(df, row + j), hn::LoadU(df, v + j)), df, to + j);
    }
    for (; j < d; ++j) to[j] = row[j] + v[j];
  }
}

// Rows of d channels split by a channel mask: a vector of channels and its
// byte(s) of the mask at a time (vectors of 8 lanes or more, so that they
// start on a byte of the mask), each side compressed and stored. Whole
// vectors are stored where they fit in the output (the lanes past the ones
// taken are overwritten by the next store), only the lanes taken near its
// end. False, nothing written, for other shapes, and on AVX2, which keeps
// the gathers: Highway 1.0.3's AVX2 Compress copies its table to the stack
// at every call (GCC: rep movsq), 3x slower than the gathers, and a table
// built once was no faster than they are. (AVX-512: 10% faster encoding of
// tq-2.5 and tq-3.5.)
bool SplitColumnsImpl(const float* HWY_RESTRICT in, size_t d, size_t count,
                      const uint8_t* HWY_RESTRICT mask, size_t m_high, float* HWY_RESTRICT high,
                      float* HWY_RESTRICT low) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  if (HWY_TARGET == HWY_AVX2 || N % 8 != 0 || d % N != 0) return false;
  const float* high_end = high + count * m_high;
  const float* low_end = low + count * (d - m_high);
  // Stores the first `taken` lanes of `packed` at *to and advances it.
  auto put = [&](hn::Vec<decltype(df)> packed, size_t taken, const float* end, float** to)
      HWY_ATTR {
    if (*to + N <= end) {
      hn::StoreU(packed, df, *to);
    } else {
      hn::BlendedStore(packed, hn::FirstN(df, taken), df, *to);
    }
    *to += taken;
  };
  for (size_t n = 0; n < count; ++n) {
    const float* row = in + n * d;
    float* to_high = high + n * m_high;
    float* to_low = low + n * (d - m_high);
    for (size_t k = 0; k < d; k += N) {
      const auto v = hn::LoadU(df, row + k);
      const auto is_high = hn::LoadMaskBits(df, mask + k / 8);
      put(hn::Compress(v, is_high), hn::CountTrue(df, is_high), high_end, &to_high);
      const auto is_low = hn::Not(is_high);
      put(hn::Compress(v, is_low), hn::CountTrue(df, is_low), low_end, &to_low);
    }
  }
  return true;
}

void GatherStridedColumnsImpl(const float* HWY_RESTRICT in, size_t count,
                              const int32_t* HWY_RESTRICT columns,
                              const int32_t* HWY_RESTRICT strides, size_t m,
                              float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t N = hn::Lanes(df);
  for (size_t n = 0; n < count; ++n) {
    const auto row = hn::Set(di, static_cast<int32_t>(n));
    float* to = out + n * m;
    size_t k = 0;
    for (; k + N <= m; k += N) {
      const auto at = hn::Add(hn::LoadU(di, columns + k), hn::Mul(row, hn::LoadU(di, strides + k)));
      hn::StoreU(hn::GatherIndex(df, in, at), df, to + k);
    }
    for (; k < m; ++k) to[k] = in[columns[k] + static_cast<int64_t>(n) * strides[k]];
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

HWY_EXPORT(F16ToF32Impl);
HWY_EXPORT(BF16ToF32Impl);
HWY_EXPORT(F32ToF16Impl);
HWY_EXPORT(F32ToBF16Impl);
HWY_EXPORT(GatherColumnsImpl);
HWY_EXPORT(SplitColumnsImpl);
HWY_EXPORT(GatherStridedColumnsImpl);
HWY_EXPORT(AddToRowsImpl);

void F16ToF32(const uint16_t* in, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(F16ToF32Impl)(in, n, out);
}
void BF16ToF32(const uint16_t* in, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(BF16ToF32Impl)(in, n, out);
}
bool F32ToF16(const float* in, size_t n, uint16_t* out) {
  return (HWY_DYNAMIC_DISPATCH(F32ToF16Impl)(in, n, false, out) & kSawInfinity) == 0;
}
void F32ToBF16(const float* in, size_t n, uint16_t* out) {
  HWY_DYNAMIC_DISPATCH(F32ToBF16Impl)(in, n, false, out);
}

bool F16ToF32Finite(const uint16_t* in, size_t n, float* out) {
  return HWY_DYNAMIC_DISPATCH(F16ToF32Impl)(in, n, out);
}
bool BF16ToF32Finite(const uint16_t* in, size_t n, float* out) {
  return HWY_DYNAMIC_DISPATCH(BF16ToF32Impl)(in, n, out);
}
bool F32ToF16Finite(const float* in, size_t n, Writes writes, uint16_t* out) {
  return HWY_DYNAMIC_DISPATCH(F32ToF16Impl)(in, n, writes == Writes::kAroundCache, out) == 0;
}
bool F32ToBF16Finite(const float* in, size_t n, Writes writes, uint16_t* out) {
  return HWY_DYNAMIC_DISPATCH(F32ToBF16Impl)(in, n, writes == Writes::kAroundCache, out);
}

void GatherColumns(const float* in, size_t stride, size_t count, const int32_t* columns, size_t m,
                   float* out) {
  HWY_DYNAMIC_DISPATCH(GatherColumnsImpl)(in, stride, count, columns, m, out);
}
void SplitColumns(const float* in, size_t d, size_t count, const uint8_t* mask,
                  const int32_t* high_columns, size_t m_high, const int32_t* low_columns,
                  float* high, float* low) {
  if (HWY_DYNAMIC_DISPATCH(SplitColumnsImpl)(in, d, count, mask, m_high, high, low)) return;
  GatherColumns(in, d, count, high_columns, m_high, high);
  GatherColumns(in, d, count, low_columns, d - m_high, low);
}
void GatherStridedColumns(const float* in, size_t count, const int32_t* columns,
                          const int32_t* strides, size_t m, float* out) {
  HWY_DYNAMIC_DISPATCH(GatherStridedColumnsImpl)(in, count, columns, strides, m, out);
}

void AddToRows(const float* x, size_t d, size_t count, const float* v, float* out) {
  HWY_DYNAMIC_DISPATCH(AddToRowsImpl)(x, d, count, v, out);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
