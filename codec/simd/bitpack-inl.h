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
#include <algorithm>
#include <cstdint>

#include <hwy/highway.h>

#include "simd/bitpack.h"

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
// Groups of 8 fields of kBits (1..7) bits, a group per 128-bit block.
template <int kBits>
class FieldUnpacker {
  static_assert(kBits >= 1 && kBits <= 7, "a field's two bytes stay inside its block");
  using D16 = hn::CappedTag<uint16_t, 16>;  // at most two blocks: 2 * kBits < 16 bytes
  using D8 = hn::Repartition<uint8_t, D16>;

 public:
  FieldUnpacker() {
    const size_t lanes = hn::Lanes(D16());
    // Block k holds group k: its bytes start at k * kBits of the 16 loaded.
    HWY_ALIGN uint8_t shuffle[32];
    HWY_ALIGN uint16_t scale[16];
    for (size_t lane = 0; lane < lanes; ++lane) {
      const size_t k = lane / 8, j = lane % 8;
      const size_t byte = k * kBits + j * kBits / 8, bit = j * kBits % 8;
      shuffle[2 * lane] = static_cast<uint8_t>(byte);
      shuffle[2 * lane + 1] = static_cast<uint8_t>(byte + 1);
      scale[lane] = static_cast<uint16_t>(1u << (16 - bit - kBits));
    }
    indices_ = hn::Load(D8(), shuffle);
    to_top_ = hn::Load(D16(), scale);
  }

  // The first of `groups` groups from `in`, where `readable` bytes may be
  // read: as many as whole vectors take without reading past them (a
  // vector reads 16 bytes). Returns the number of groups unpacked.
  HWY_INLINE size_t Groups(const uint8_t* HWY_RESTRICT in, size_t groups, size_t readable,
                           uint8_t* HWY_RESTRICT values) const {
    const D16 d16;
    const D8 d8;
    const hn::RebindToSigned<D16> di16;
    const hn::Rebind<uint8_t, D16> d8_out;
    const size_t per_vector = hn::Lanes(d16) / 8;
    size_t g = 0;
    for (; g + per_vector <= groups && g * kBits + 16 <= readable; g += per_vector) {
      const auto bytes = hn::LoadDup128(d8, in + g * kBits);
      const auto pairs = hn::BitCast(d16, hn::TableLookupBytes(bytes, indices_));
      const auto fields = hn::ShiftRight<16 - kBits>(hn::Mul(pairs, to_top_));
      hn::StoreU(hn::DemoteTo(d8_out, hn::BitCast(di16, fields)), d8_out, values + g * 8);
    }
    return g;
  }

 private:
  hn::Vec<D8> indices_;
  hn::Vec<D16> to_top_;
};

template <int kBits>
HWY_INLINE void UnpackFieldsOf(const uint8_t* HWY_RESTRICT in, size_t n,
                               uint8_t* HWY_RESTRICT values) {
  const size_t in_bytes = (n * kBits + 7) / 8;
  const size_t done = FieldUnpacker<kBits>().Groups(in, n / 8, in_bytes, values);
  UnpackBits(in + done * kBits, n - done * 8, kBits, values + done * 8);
}

// Row r's groups from in + r * record, written from values + r * n on. A
// row's last group may be partial: unpacked whole, it reads on into the
// padding and the next row (readable, but for the last rows') and writes up
// to 7 values into the next row's place, which that row then overwrites.
template <int kBits>
HWY_INLINE void UnpackFieldRowsOf(const uint8_t* HWY_RESTRICT in, size_t n, size_t record,
                                  size_t count, uint8_t* HWY_RESTRICT values) {
  const FieldUnpacker<kBits> unpacker;
  for (size_t r = 0; r < count; ++r) {
    const uint8_t* row = in + r * record;
    uint8_t* out = values + r * n;
    const size_t done = unpacker.Groups(row, (n + 7) / 8, (count - r) * record, out);
    const size_t exact = std::min(done * 8, n);  // a partial group done is the whole row
    UnpackBits(row + exact / 8 * kBits, n - exact, kBits, out + exact);
  }
}
#endif

// kvc::UnpackBits(in, n, bits, values): the same bytes.
HWY_INLINE void UnpackFields(const uint8_t* HWY_RESTRICT in, size_t n, int bits,
                             uint8_t* HWY_RESTRICT values) {
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
  switch (bits) {
    case 1: return UnpackFieldsOf<1>(in, n, values);
    case 2: return UnpackFieldsOf<2>(in, n, values);
    case 3: return UnpackFieldsOf<3>(in, n, values);
    case 4: return UnpackFieldsOf<4>(in, n, values);
    case 5: return UnpackFieldsOf<5>(in, n, values);
    case 6: return UnpackFieldsOf<6>(in, n, values);
    case 7: return UnpackFieldsOf<7>(in, n, values);
    default: break;  // 8 bits: whole bytes, which the word form copies
  }
#endif
  UnpackBits(in, n, bits, values);
}

// kvc::UnpackBits of `count` rows of n fields, row r from in + r * record
// (record >= ceil(n * bits / 8)) to values + r * n. values has room for 8
// entries past the count * n.
HWY_INLINE void UnpackFieldRows(const uint8_t* HWY_RESTRICT in, size_t n, size_t record,
                                size_t count, int bits, uint8_t* HWY_RESTRICT values) {
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
  switch (bits) {
    case 1: return UnpackFieldRowsOf<1>(in, n, record, count, values);
    case 2: return UnpackFieldRowsOf<2>(in, n, record, count, values);
    case 3: return UnpackFieldRowsOf<3>(in, n, record, count, values);
    case 4: return UnpackFieldRowsOf<4>(in, n, record, count, values);
    case 5: return UnpackFieldRowsOf<5>(in, n, record, count, values);
    case 6: return UnpackFieldRowsOf<6>(in, n, record, count, values);
    case 7: return UnpackFieldRowsOf<7>(in, n, record, count, values);
    default: break;
  }
#endif
  for (size_t r = 0; r < count; ++r) UnpackBits(in + r * record, n, bits, values + r * n);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace simd
}  // namespace kvc
HWY_AFTER_NAMESPACE();

#endif  // KVCODEC_CODEC_SIMD_BITPACK_INL_H_ toggle
