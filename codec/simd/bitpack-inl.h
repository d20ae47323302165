// Packing and unpacking of b-bit fields (LSB first, as kvc::PackBits and
// kvc::UnpackBits) inside the kernels' targets, a group of 8 fields (b
// bytes) at a time in 128-bit blocks:
// - unpacking: field j sits in the two bytes from byte j * b / 8 on, at bit
//   (j * b) % 8. One byte shuffle gathers each field's two bytes into a
//   16-bit lane, one multiply by a power of two moves the field to the
//   lane's top and one shift brings it down, for the 8 fields of each block;
// - packing: the 64-bit word merges of simd/bitpack.h on two groups per
//   block, then one byte shuffle puts the two groups' b bytes side by side.
// The word forms of simd/bitpack.h take the last groups (a block reads or
// writes 16 bytes), big-endian hosts, and the targets without blocks of
// bytes to shuffle: HWY_SCALAR (the scalar reference keeps its speed) and
// SVE and RVV (not measured). Included inside HWY_NAMESPACE once per target
// (Highway's -inl.h pattern).

// Per-target include guard (Highway's toggle idiom).
#if defined(KVCODEC_CODEC_SIMD_BITPACK_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVCODEC_CODEC_SIMD_BITPACK_INL_H_
#undef KVCODEC_CODEC_SIMD_BITPACK_INL_H_
#else
#define KVCODEC_CODEC_SIMD_BITPACK_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <hwy/highway.h>

#include "simd/bitpack.h"

// Whether this target has the block forms. They take 16- and 64-bit lanes
// as little-endian words: big-endian hosts (which Highway 1.0.3 serves with
// EMU128 or HWY_SCALAR) keep the word forms, which read bytes.
#undef KVC_BITPACK_BLOCKS
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE && \
    !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
#define KVC_BITPACK_BLOCKS 1
#else
#define KVC_BITPACK_BLOCKS 0
#endif

HWY_BEFORE_NAMESPACE();
namespace kvc {
namespace simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if KVC_BITPACK_BLOCKS
// The unpacker's tables, fixed at compile time, for two blocks: block k
// holds group k, whose bytes start at k * kBits of the 16 loaded (a target
// with one block per vector loads the first half). Per field: the two bytes
// it sits in, and the power of two that moves it to its 16-bit lane's top.
template <int kBits>
struct UnpackTables {
  constexpr UnpackTables() : shuffle(), scale() {
    for (size_t lane = 0; lane < 16; ++lane) {
      const size_t k = lane / 8, j = lane % 8;
      const size_t byte = k * kBits + j * kBits / 8, bit = j * kBits % 8;
      shuffle[2 * lane] = static_cast<uint8_t>(byte);
      shuffle[2 * lane + 1] = static_cast<uint8_t>(byte + 1);  // <= 2 * kBits < 16
      scale[lane] = static_cast<uint16_t>(1u << (16 - bit - kBits));
    }
  }
  uint8_t shuffle[32];
  uint16_t scale[16];
};

// Groups of 8 fields of kBits (1..7) bits, a group per 128-bit block.
template <int kBits>
class FieldUnpacker {
  static_assert(kBits >= 1 && kBits <= 7, "a field's two bytes stay inside its block");
  using D16 = hn::CappedTag<uint16_t, 16>;  // at most two blocks
  using D8 = hn::Repartition<uint8_t, D16>;

 public:
  FieldUnpacker() {
    static constexpr UnpackTables<kBits> kTables;
    indices_ = hn::LoadU(D8(), kTables.shuffle);
    to_top_ = hn::LoadU(D16(), kTables.scale);
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

// The packer's byte shuffle, fixed at compile time: the low kBits bytes of
// each 64-bit lane side by side, zeros after them.
template <int kBits>
struct PackTable {
  constexpr PackTable() : shuffle() {
    for (size_t i = 0; i < 16; ++i) {
      shuffle[i] = static_cast<uint8_t>(i < kBits ? i : i < 2 * kBits ? 8 + i - kBits : 0x80);
    }
  }
  uint8_t shuffle[16];
};

// Pairs of groups of 8 values (< 2^kBits, kBits 1..7) packed in a 128-bit
// block: each 64-bit lane merges its 8 bytes pairwise (8 fields of kBits
// bits in its low kBits bytes), then the lanes' bytes are put side by side.
template <int kBits>
class FieldPacker {
  static_assert(kBits >= 1 && kBits <= 7, "two groups fit in a block's 16 bytes");
  using D8 = hn::Full128<uint8_t>;
  using D64 = hn::Full128<uint64_t>;

 public:
  FieldPacker() {
    static constexpr PackTable<kBits> kTable;
    side_by_side_ = hn::LoadU(D8(), kTable.shuffle);
  }

  // The first of `groups` groups of `values` packed at `out`, where
  // `writable` bytes may be written: pairs of groups while a block's 16
  // bytes fit. The bytes past a pair's 2 * kBits are written as zeros and
  // rewritten by the next pair or by the word form after the last. Returns
  // the number of groups packed.
  HWY_INLINE size_t Groups(const uint8_t* HWY_RESTRICT values, size_t groups, size_t writable,
                           uint8_t* HWY_RESTRICT out) const {
    const D8 d8;
    const D64 d64;
    const auto m8 = hn::Set(d64, 0x00FF00FF00FF00FFull);
    const auto m16 = hn::Set(d64, 0x0000FFFF0000FFFFull);
    const auto m32 = hn::Set(d64, 0x00000000FFFFFFFFull);
    size_t g = 0;
    for (; g + 2 <= groups && g * kBits + 16 <= writable; g += 2) {
      auto x = hn::BitCast(d64, hn::LoadU(d8, values + g * 8));
      x = hn::Or(hn::And(x, m8), hn::ShiftLeft<kBits>(hn::And(hn::ShiftRight<8>(x), m8)));
      x = hn::Or(hn::And(x, m16), hn::ShiftLeft<2 * kBits>(hn::And(hn::ShiftRight<16>(x), m16)));
      x = hn::Or(hn::And(x, m32), hn::ShiftLeft<4 * kBits>(hn::ShiftRight<32>(x)));
      hn::StoreU(hn::TableLookupBytesOr0(hn::BitCast(d8, x), side_by_side_), d8, out + g * kBits);
    }
    return g;
  }

 private:
  hn::Vec<D8> side_by_side_;
};

// One row of n values: whole groups only, the rest by the word forms.
// (PackFieldRowsOf of one row gives the same bytes but copies the row's
// last values to pad them first, work per row that a lone row, with no next
// row to write into, can rarely use.)
template <int kBits>
HWY_INLINE void PackFieldsOf(const uint8_t* HWY_RESTRICT values, size_t n,
                             uint8_t* HWY_RESTRICT out) {
  const size_t out_bytes = (n * kBits + 7) / 8;
  const size_t done = FieldPacker<kBits>().Groups(values, n / 8, out_bytes, out);
  PackBits(values + done * 8, n - done * 8, kBits, out + done * kBits);
}

// Row r's n values (from values + r * n) packed at out + r * record. The
// row's last values (fewer than two groups) are packed as a pair from a copy
// padded with zeros: the pair's bytes past the row's record, zeros, go into
// the next row's place, which that row then rewrites.
template <int kBits>
HWY_INLINE void PackFieldRowsOf(const uint8_t* HWY_RESTRICT values, size_t n, size_t record,
                                size_t count, uint8_t* HWY_RESTRICT out) {
  const FieldPacker<kBits> packer;
  HWY_ALIGN uint8_t padded[16];
  for (size_t r = 0; r < count; ++r) {
    const uint8_t* row = values + r * n;
    uint8_t* to = out + r * record;
    const size_t writable = (count - r) * record;
    size_t done = packer.Groups(row, n / 8, writable, to) * 8;  // values
    const size_t at = done / 8 * kBits;
    // The padded pair, where its block fits (rows near the end may also have
    // stopped earlier, with more than two groups left).
    if (done < n && n - done <= 16 && at + 16 <= writable) {
      std::fill(std::copy(row + done, row + n, padded), padded + 16, uint8_t{0});
      packer.Groups(padded, 2, writable - at, to + at);
      done = n;
    }
    PackBits(row + done, n - done, kBits, to + done / 8 * kBits);
  }
}

template <int kBits>
HWY_INLINE void UnpackFieldsOf(const uint8_t* HWY_RESTRICT in, size_t n,
                               uint8_t* HWY_RESTRICT values) {
  const size_t in_bytes = (n * kBits + 7) / 8;
  const size_t done = FieldUnpacker<kBits>().Groups(in, n / 8, in_bytes, values);
  UnpackBits(in + done * kBits, n - done * 8, kBits, values + done * 8);
}

// Row r's groups from in + r * record, written from values + r * n on. A
// row's last group may be partial: unpacked whole, it reads on into the
// padding and the next row (only within the count rows: near their end the
// word forms take over) and writes up to 7 values into the next row's
// place, which that row then overwrites.
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

#if KVC_BITPACK_BLOCKS
// Calls f(std::integral_constant<int, bits>()) and returns true for the
// widths the block forms take, 1..7; false for the others (8 bits are whole
// bytes, which the word forms copy).
template <class F>
HWY_INLINE bool WithBlockBits(int bits, const F& f) {
  switch (bits) {
    case 1: f(std::integral_constant<int, 1>()); return true;
    case 2: f(std::integral_constant<int, 2>()); return true;
    case 3: f(std::integral_constant<int, 3>()); return true;
    case 4: f(std::integral_constant<int, 4>()); return true;
    case 5: f(std::integral_constant<int, 5>()); return true;
    case 6: f(std::integral_constant<int, 6>()); return true;
    case 7: f(std::integral_constant<int, 7>()); return true;
    default: return false;
  }
}
#endif

// kvc::PackBits(values, n, bits, out): the same bytes.
HWY_INLINE void PackFields(const uint8_t* HWY_RESTRICT values, size_t n, int bits,
                           uint8_t* HWY_RESTRICT out) {
#if KVC_BITPACK_BLOCKS
  if (WithBlockBits(bits, [&](auto b) HWY_ATTR { PackFieldsOf<b()>(values, n, out); })) return;
#endif
  PackBits(values, n, bits, out);
}

// kvc::PackBits of `count` rows of n values, row r from values + r * n to
// out + r * record (record = ceil(n * bits / 8)).
HWY_INLINE void PackFieldRows(const uint8_t* HWY_RESTRICT values, size_t n, size_t record,
                              size_t count, int bits, uint8_t* HWY_RESTRICT out) {
#if KVC_BITPACK_BLOCKS
  if (WithBlockBits(bits, [&](auto b) HWY_ATTR {
        PackFieldRowsOf<b()>(values, n, record, count, out);
      })) {
    return;
  }
#endif
  for (size_t r = 0; r < count; ++r) PackBits(values + r * n, n, bits, out + r * record);
}

// kvc::UnpackBits(in, n, bits, values): the same bytes.
HWY_INLINE void UnpackFields(const uint8_t* HWY_RESTRICT in, size_t n, int bits,
                             uint8_t* HWY_RESTRICT values) {
#if KVC_BITPACK_BLOCKS
  if (WithBlockBits(bits, [&](auto b) HWY_ATTR { UnpackFieldsOf<b()>(in, n, values); })) return;
#endif
  UnpackBits(in, n, bits, values);
}

// kvc::UnpackBits of `count` rows of n fields, row r from in + r * record
// (record >= ceil(n * bits / 8)) to values + r * n. values has room for 8
// entries past the count * n.
HWY_INLINE void UnpackFieldRows(const uint8_t* HWY_RESTRICT in, size_t n, size_t record,
                                size_t count, int bits, uint8_t* HWY_RESTRICT values) {
#if KVC_BITPACK_BLOCKS
  if (WithBlockBits(bits, [&](auto b) HWY_ATTR {
        UnpackFieldRowsOf<b()>(in, n, record, count, values);
      })) {
    return;
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
