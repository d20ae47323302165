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

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "base/endian.h"
#include "quant/vector_math.h"
#include "simd/bitpack.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/turboquant_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "simd/hadamard-inl.h"
#include "simd/bitpack-inl.h"
#include "simd/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
using D = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<D>;
using DU = hn::RebindToUnsigned<D>;
using V = hn::Vec<D>;
using VI = hn::Vec<DI>;
constexpr size_t kLanes = hn::MaxLanes(D());

// Registers of 8 or 16 lanes hold whole groups of 8 indices: kBits bytes,
// packed and unpacked in registers (LSB first, as kvc::PackBits).
constexpr bool kWholeBytes = kLanes == 8 || kLanes == 16;

// Per-lane shifts of one group of 8 indices: lane j by (j % 8) * kBits.
template <int kBits>
HWY_INLINE hn::Vec<DU> GroupShifts() {
  HWY_ALIGN uint32_t shifts[kLanes];
  for (size_t j = 0; j < kLanes; ++j) shifts[j] = static_cast<uint32_t>(j % 8 * kBits);
  return hn::Load(DU(), shifts);
}

// The kLanes indices of one register packed into kLanes * kBits / 8 bytes:
// every lane shifted to its place, the groups of 8 summed (their bits do not
// overlap, so the sum is their OR).
template <int kBits>
HWY_INLINE void PackRegister(VI index, hn::Vec<DU> shifts, uint8_t* out) {
  if (kBits == 4) {
    // Lanes 2i and 2i + 1 share a u64 lane: k0 | k1 << 4 in its low byte.
    const hn::Repartition<uint64_t, D> d64;
    const hn::Rebind<uint8_t, decltype(d64)> d8;
    const auto pairs = hn::BitCast(d64, index);
    hn::StoreU(hn::TruncateTo(d8, hn::Or(pairs, hn::ShiftRight<28>(pairs))), d8, out);
    return;
  }
  const DU du;
  const auto placed = hn::Shl(hn::BitCast(du, index), shifts);
  const hn::Half<DU> dh;
  uint32_t words[2];
  if (kLanes == 8) {
    words[0] = hn::GetLane(hn::SumOfLanes(du, placed));
  } else {
    words[0] = hn::GetLane(hn::SumOfLanes(dh, hn::LowerHalf(dh, placed)));
    words[1] = hn::GetLane(hn::SumOfLanes(dh, hn::UpperHalf(dh, placed)));
  }
  for (size_t w = 0; w < kLanes / 8; ++w) {
    uint8_t bytes[4];
    StoreLE32(words[w], bytes);
    std::copy(bytes, bytes + kBits, out + w * kBits);
  }
}

// The inverse: indices k * kLanes .. of a row from its packed bytes.
template <int kBits>
HWY_INLINE VI UnpackRegister(const uint8_t* packed, hn::Vec<DU> shifts) {
  const DU du;
  const hn::Half<DU> dh;
  const auto mask = hn::Set(du, (1u << kBits) - 1);
  auto word = [&](size_t w) {
    uint8_t bytes[4] = {0, 0, 0, 0};
    std::copy(packed + w * kBits, packed + (w + 1) * kBits, bytes);
    return LoadLE32(bytes);
  };
  hn::Vec<DU> words;
  if (kLanes == 8) {
    words = hn::Set(du, word(0));
  } else {
    words = hn::Combine(du, hn::Set(dh, word(1)), hn::Set(dh, word(0)));
  }
  return hn::BitCast(DI(), hn::And(hn::Shr(words, shifts), mask));
}

template <size_t K, int kBits>
void EncodeRows(const TqRows& p, const float* HWY_RESTRICT x, size_t count,
                float* HWY_RESTRICT norms, uint8_t* HWY_RESTRICT packed) {
  const D d;
  const InVectorStages<D> stages(d);
  const IndexSearch<D, kBits> search(p.book->thresholds);
  constexpr size_t kDim = K * kLanes;
  constexpr size_t kIndexBytes = kDim * kBits / 8;
  const auto shifts = GroupShifts<kBits>();
  HWY_ALIGN uint8_t idx[kDim];
  // Rows a few at a time: rotated and measured, then their scales (lane
  // parallel), then quantized, so that no row waits on its own square root
  // and division.
  constexpr size_t kRows = 8;
  HWY_ALIGN float rotated[kRows * kDim];
  HWY_ALIGN float sums[kRows], scales[kRows];
  for (size_t n0 = 0; n0 < count; n0 += kRows) {
    const size_t m = count - n0 < kRows ? count - n0 : kRows;
    for (size_t i = 0; i < m; ++i) {
      V v[K];
      LoadForward<K>(d, stages, p.signs, p.rotation_scale, x + (n0 + i) * kDim, v);
      sums[i] = SumOfSquaresRegisters<K>(d, v);
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) hn::Store(v[k], d, rotated + i * kDim + k * kLanes);
    }
    for (size_t i = 0; i < m; ++i) {
      const float norm = std::sqrt(sums[i]);
      norms[n0 + i] = norm;
      scales[i] = norm > 0 ? p.sqrt_dim / norm : 0.0f;
    }
    for (size_t i = 0; i < m; ++i) {
      const V scale = hn::Set(d, scales[i]);
      uint8_t* out = packed + (n0 + i) * kIndexBytes;
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) {
        const VI index = search.Index(hn::Mul(hn::Load(d, rotated + i * kDim + k * kLanes), scale));
        if (kWholeBytes) {
          PackRegister<kBits>(index, shifts, out + k * kLanes * kBits / 8);
        } else {
          hn::StoreU(hn::DemoteTo(hn::Rebind<uint8_t, D>(), index), hn::Rebind<uint8_t, D>(),
                     idx + k * kLanes);
        }
      }
      if (!kWholeBytes) PackFields(idx, kDim, kBits, out);
    }
  }
}

template <size_t K, int kBits, bool kRotate>
void DecodeRows(const TqRows& p, const uint8_t* HWY_RESTRICT packed,
                const float* HWY_RESTRICT norms, size_t count, float* HWY_RESTRICT out) {
  const D d;
  const DI di;
  const hn::Rebind<uint8_t, D> d8;
  const InVectorStages<D> stages(d);
  const SmallTable<D, kBits> lookup(p.book->centroids);
  constexpr size_t kDim = K * kLanes;
  constexpr size_t kIndexBytes = kDim * kBits / 8;
  const auto shifts = GroupShifts<kBits>();
  HWY_ALIGN uint8_t idx[kDim];
  for (size_t n = 0; n < count; ++n) {
    const uint8_t* row = packed + n * kIndexBytes;
    if (!kWholeBytes) UnpackFields(row, kDim, kBits, idx);
    const auto index = [&](size_t k) HWY_ATTR {
      return kWholeBytes ? UnpackRegister<kBits>(row + k * kLanes * kBits / 8, shifts)
                         : hn::PromoteTo(di, hn::LoadU(d8, idx + k * kLanes));
    };
    V v[K];
    if (!p.norm_correction && decltype(lookup)::kInRegisters) {
      // The gain is known first: the table scaled once, not every value.
      const auto scaled = lookup.Scaled(hn::Set(d, norms[n] / p.sqrt_dim));
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) v[k] = scaled.Lookup(index(k));
    } else {
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) v[k] = lookup.Lookup(index(k));
      float gain = norms[n] / p.sqrt_dim;
      if (p.norm_correction) {
        const float length = std::sqrt(SumOfSquaresRegisters<K>(d, v));
        gain = length > 0 ? norms[n] / length : 0.0f;
      }
      const V vg = hn::Set(d, gain);
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) v[k] = hn::Mul(v[k], vg);
    }
    if (kRotate) {
      InverseStore<K>(d, stages, p.signs, p.rotation_scale, v, out + n * kDim);
    } else {
      HWY_UNROLL(16)
      for (size_t k = 0; k < K; ++k) hn::StoreU(v[k], d, out + n * kDim + k * kLanes);
    }
  }
}

// The (K, bits) instantiation for a row shape; false if there is none.
template <class EncodeOrDecode>
HWY_INLINE bool Dispatch(const TqRows& p, EncodeOrDecode&& run) {
  if (p.book->bits < 1 || p.book->bits > 4) return false;
  // kDim * bits must be whole bytes for the packed record stride.
  if (p.dim * p.book->bits % 8 != 0) return false;
  return DispatchRegisters(D(), p.dim, [&](auto registers) HWY_ATTR {
    switch (p.book->bits) {
      case 1: return run(registers, std::integral_constant<int, 1>());
      case 2: return run(registers, std::integral_constant<int, 2>());
      case 3: return run(registers, std::integral_constant<int, 3>());
      default: return run(registers, std::integral_constant<int, 4>());
    }
  });
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

template <bool kRotate>
bool DecodeRowsImpl(const TqRows& p, const uint8_t* HWY_RESTRICT packed,
                    const float* HWY_RESTRICT norms, size_t count, float* HWY_RESTRICT out) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  return Dispatch(p, [&](auto k, auto bits) HWY_ATTR {
    DecodeRows<decltype(k)::value, decltype(bits)::value, kRotate>(p, packed, norms, count, out);
  });
#else
  (void)p, (void)packed, (void)norms, (void)count, (void)out;
  return false;
#endif
}

bool TqDecodeRowsImpl(const TqRows& p, const uint8_t* HWY_RESTRICT packed,
                      const float* HWY_RESTRICT norms, size_t count, float* HWY_RESTRICT out) {
  return DecodeRowsImpl<true>(p, packed, norms, count, out);
}

bool TqDequantizeRowsImpl(const TqRows& p, const uint8_t* HWY_RESTRICT packed,
                          const float* HWY_RESTRICT norms, size_t count, float* HWY_RESTRICT y) {
  return DecodeRowsImpl<false>(p, packed, norms, count, y);
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
HWY_EXPORT(TqDequantizeRowsImpl);

bool TqEncodeRows(const TqRows& rows, const float* x, size_t count, float* norms,
                  uint8_t* packed) {
  return HWY_DYNAMIC_DISPATCH(TqEncodeRowsImpl)(rows, x, count, norms, packed);
}

bool TqDecodeRows(const TqRows& rows, const uint8_t* packed, const float* norms,
                  size_t count, float* out) {
  return HWY_DYNAMIC_DISPATCH(TqDecodeRowsImpl)(rows, packed, norms, count, out);
}

bool TqDequantizeRows(const TqRows& rows, const uint8_t* packed, const float* norms,
                      size_t count, float* y) {
  return HWY_DYNAMIC_DISPATCH(TqDequantizeRowsImpl)(rows, packed, norms, count, y);
}

}  // namespace simd
}  // namespace kvc
#endif  // HWY_ONCE
