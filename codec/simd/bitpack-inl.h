// Unpacking of b-bit fields (LSB first, as kvc::UnpackBits) inside the
// kernels' targets, one 128-bit block per group of 8 fields: a group is b
// bytes, so field j sits in the two bytes from byte j * b / 8 on, at bit
// (j * b) % 8. One byte shuffle gathers each field's two bytes into a 16-bit
// lane, one multiply by a power of two moves the field to the lane's top and
// one shift brings it down, for all 8 fields of each block at once. The
// 64-bit word form of simd/bitpack.h takes the last groups (a block reads 16
// bytes) and the targets without blocks of bytes to shuffle (HWY_SCALAR,
// whose form it stays as the reference's speed; SVE and RVV, not measured).
// Included inside HWY_NAMESPACE once per target (Highway's -inl.h pattern).

// Per-target include guard (Highway's toggle idiom).
#if defined(KVCODEC_CODEC_SIMD_BITPACK_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVCODEC_CODEC_SIMD_BITPACK_INL_H_
#undef KVCODEC_CODEC_SIMD_BITPACK_INL_H_
#else
#define KVCODEC_CODEC_SIMD_BITPACK_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include <hwy/highway.h>

#include "simd/bitpack.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
// The first groups of 8 fields of kBits (1..7) bits from `in`, which holds
// `in_bytes` bytes: as many groups as whole vectors take without reading
// past them. Returns the number of groups unpacked.
template <int kBits>
HWY_INLINE size_t UnpackGroups(const uint8_t* HWY_RESTRICT in, size_t groups, size_t in_bytes,
                               uint8_t* HWY_RESTRICT values) {
  static_assert(kBits >= 1 && kBits <= 7, "a field's two bytes stay inside its block");
  const hn::CappedTag<uint16_t, 16> d16;  // a group per 128-bit block, at most two
  const hn::Repartition<uint8_t, decltype(d16)> d8;
  const hn::RebindToSigned<decltype(d16)> di16;
  const hn::Rebind<uint8_t, decltype(d16)> d8_out;
  const size_t lanes = hn::Lanes(d16), per_vector = lanes / 8;
  // Block k holds group k: its bytes start at k * kBits of the 16 loaded.
  HWY_ALIGN uint8_t shuffle[32];
  HWY_ALIGN uint16_t scale[16];
  for (size_t lane = 0; lane < lanes; ++lane) {
    const size_t k = lane / 8, j = lane % 8;
    const size_t byte = k * kBits + j * kBits / 8, bit = j * kBits % 8;
    shuffle[2 * lane] = static_cast<uint8_t>(byte);
    shuffle[2 * lane + 1] = static_cast<uint8_t>(byte + 1);  // <= 2 * kBits < 16
    scale[lane] = static_cast<uint16_t>(1u << (16 - bit - kBits));
  }
  const auto indices = hn::Load(d8, shuffle);
  const auto to_top = hn::Load(d16, scale);
  size_t g = 0;
  for (; g + per_vector <= groups && g * kBits + 16 <= in_bytes; g += per_vector) {
    const auto bytes = hn::LoadDup128(d8, in + g * kBits);
    const auto pairs = hn::BitCast(d16, hn::TableLookupBytes(bytes, indices));
    const auto fields = hn::ShiftRight<16 - kBits>(hn::Mul(pairs, to_top));
    hn::StoreU(hn::DemoteTo(d8_out, hn::BitCast(di16, fields)), d8_out, values + g * 8);
  }
  return g;
}
#endif

// kvc::UnpackBits(in, n, bits, values): the same bytes.
HWY_INLINE void UnpackFields(const uint8_t* HWY_RESTRICT in, size_t n, int bits,
                             uint8_t* HWY_RESTRICT values) {
  size_t done = 0;  // groups
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
  const size_t groups = n / 8, in_bytes = (n * static_cast<size_t>(bits) + 7) / 8;
  switch (bits) {
    case 1: done = UnpackGroups<1>(in, groups, in_bytes, values); break;
    case 2: done = UnpackGroups<2>(in, groups, in_bytes, values); break;
    case 3: done = UnpackGroups<3>(in, groups, in_bytes, values); break;
    case 4: done = UnpackGroups<4>(in, groups, in_bytes, values); break;
    case 5: done = UnpackGroups<5>(in, groups, in_bytes, values); break;
    case 6: done = UnpackGroups<6>(in, groups, in_bytes, values); break;
    case 7: done = UnpackGroups<7>(in, groups, in_bytes, values); break;
    default: break;  // 8 bits: whole bytes, which the word form copies
  }
#endif
  const size_t skip = done * static_cast<size_t>(bits);  // whole groups: whole bytes
  UnpackBits(in + skip, n - done * 8, bits, values + done * 8);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#endif  // KVCODEC_CODEC_SIMD_BITPACK_INL_H_ toggle
