// Fast LSB-first bit packing of 8 values at a time in 64-bit words: the same
// bytes as kvc::PackBits / UnpackBits (quant/vector_math.h), which remain the
// definition. Plain C++: eight values of `bits` bits are exactly `bits`
// bytes, merged pairwise in three shift-and-or steps.
#ifndef KVCODEC_CODEC_SIMD_BITPACK_H_
#define KVCODEC_CODEC_SIMD_BITPACK_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/endian.h"
#include "quant/vector_math.h"

namespace kvc {
namespace simd {
namespace bitpack_internal {
// Native 8-byte loads and stores on little-endian hosts (the byte-by-byte
// forms of base/endian.h are not merged into one access by every compiler).
inline uint64_t Load64(const uint8_t* p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
#else
  return LoadLE64(p);
#endif
}
inline void Store64(uint64_t v, uint8_t* p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(p, &v, 8);
#else
  StoreLE64(v, p);
#endif
}
}  // namespace bitpack_internal


namespace bitpack_internal {

// values: n entries < 2^kBits, n a multiple of 8. Groups are written as
// 8-byte words while a whole word fits in the output (the bytes past the
// group are zeros, overwritten by the next group), the last ones byte by byte.
template <int kBits>
inline void Pack(const uint8_t* values, size_t n, uint8_t* out) {
  constexpr uint64_t w = kBits;
  constexpr uint64_t m8 = 0x00FF00FF00FF00FFull, m16 = 0x0000FFFF0000FFFFull;
  const size_t out_bytes = n / 8 * kBits;
  size_t o = 0;
  for (size_t k = 0; k < n; k += 8, o += kBits) {
    uint64_t x = Load64(values + k);
    x = (x & m8) | ((x >> 8) & m8) << w;
    x = (x & m16) | ((x >> 16) & m16) << (2 * w);
    x = (x & 0xFFFFFFFFull) | (x >> 32) << (4 * w);
    if (o + 8 <= out_bytes) {
      Store64(x, out + o);
    } else {
      for (size_t i = 0; i < static_cast<size_t>(kBits); ++i) {
        out[o + i] = static_cast<uint8_t>(x >> (8 * i));
      }
    }
  }
}

template <int kBits>
inline void Unpack(const uint8_t* in, size_t n, uint8_t* values) {
  constexpr uint64_t w = kBits;
  constexpr uint64_t f1 = (uint64_t{1} << w) - 1;
  constexpr uint64_t f2 = (uint64_t{1} << (2 * w)) - 1;
  constexpr uint64_t f4 = (uint64_t{1} << (4 * w)) - 1;
  constexpr uint64_t m1 = f1 * 0x0001000100010001ull;  // per 16-bit lane
  constexpr uint64_t m2 = f2 * 0x0000000100000001ull;  // per 32-bit lane
  const size_t in_bytes = n / 8 * kBits;
  size_t i = 0;
  for (size_t k = 0; k < n; k += 8, i += kBits) {
    uint64_t x;
    if (i + 8 <= in_bytes) {
      x = Load64(in + i);  // bytes past the group are masked off below
    } else {
      x = 0;
      for (size_t b = 0; b < static_cast<size_t>(kBits); ++b) {
        x |= uint64_t{in[i + b]} << (8 * b);
      }
    }
    x = (x & f4) | ((x >> (4 * w)) & f4) << 32;
    x = (x & m2) | ((x >> (2 * w)) & m2) << 16;
    x = (x & m1) | ((x >> w) & m1) << 8;
    Store64(x, values + k);
  }
}

}  // namespace bitpack_internal

// values: n entries < 2^bits (bits 1..8). Whole groups of 8 values (whole
// bytes) here, the values after the last group by the reference.
inline void PackBits(const uint8_t* values, size_t n, int bits, uint8_t* out) {
  if (bits < 1 || bits > 8) return kvc::PackBits(values, n, bits, out);
  if (n % 8 != 0) {
    const size_t whole = n / 8 * 8;
    PackBits(values, whole, bits, out);
    return kvc::PackBits(values + whole, n - whole, bits, out + whole / 8 * bits);
  }
  switch (bits) {
    case 1: return bitpack_internal::Pack<1>(values, n, out);
    case 2: return bitpack_internal::Pack<2>(values, n, out);
    case 3: return bitpack_internal::Pack<3>(values, n, out);
    case 4: return bitpack_internal::Pack<4>(values, n, out);
    case 5: return bitpack_internal::Pack<5>(values, n, out);
    case 6: return bitpack_internal::Pack<6>(values, n, out);
    case 7: return bitpack_internal::Pack<7>(values, n, out);
    default: return bitpack_internal::Pack<8>(values, n, out);
  }
}

inline void UnpackBits(const uint8_t* in, size_t n, int bits, uint8_t* values) {
  if (bits < 1 || bits > 8) return kvc::UnpackBits(in, n, bits, values);
  if (n % 8 != 0) {
    const size_t whole = n / 8 * 8;
    UnpackBits(in, whole, bits, values);
    return kvc::UnpackBits(in + whole / 8 * bits, n - whole, bits, values + whole);
  }
  switch (bits) {
    case 1: return bitpack_internal::Unpack<1>(in, n, values);
    case 2: return bitpack_internal::Unpack<2>(in, n, values);
    case 3: return bitpack_internal::Unpack<3>(in, n, values);
    case 4: return bitpack_internal::Unpack<4>(in, n, values);
    case 5: return bitpack_internal::Unpack<5>(in, n, values);
    case 6: return bitpack_internal::Unpack<6>(in, n, values);
    case 7: return bitpack_internal::Unpack<7>(in, n, values);
    default: return bitpack_internal::Unpack<8>(in, n, values);
  }
}

// Bit streams, LSB first, 56 bits at a time (7 whole bytes of source, at
// most 7 bits of shift, one 64-bit word).
//
// BitStringWriter appends bit strings one after the other (the reference's
// kvc::BitWriter, quant/vector_math.h, puts fields of up to 8 bits into
// zeroed memory). The bits not yet in a whole byte stay in a register, and
// every append stores one 64-bit word: its whole bytes are final, and the
// partial one is rewritten by the next store, so the last store leaves the
// stream complete. It never reads what it wrote, which would stall on
// store forwarding. It writes nothing at or past `end`: its last stores
// there are byte by byte, so a stream can be written in place, up to the
// end of its buffer.
class BitStringWriter {
 public:
  BitStringWriter(uint8_t* out, uint8_t* end) : out_(out), end_(end) {}

  // The first `bits` bits of src; reads up to 8 bytes past the last byte
  // it uses.
  void Append(const uint8_t* src, size_t bits) {
    for (size_t i = 0; i < bits; i += 56) {
      const size_t take = bits - i < 56 ? bits - i : 56;
      AppendValue(bitpack_internal::Load64(src + i / 8) & ((uint64_t{1} << take) - 1), take);
    }
  }

  // The `bits` (at most 57) low bits of v, whose other bits are zero. The
  // bits waiting for a whole byte stay in a register: each call stores 8
  // bytes and never reads them back (a load of bytes just stored at
  // another offset would wait for the store).
  void AppendValue(uint64_t v, size_t bits) {  // pending_bits_ < 8
    pending_ |= v << pending_bits_;
    pending_bits_ += bits;
    if (end_ - out_ >= 8) {
      bitpack_internal::Store64(pending_, out_);
    } else {
      for (ptrdiff_t i = 0; i < end_ - out_; ++i) {
        out_[i] = static_cast<uint8_t>(pending_ >> (8 * i));
      }
    }
    const size_t whole = pending_bits_ / 8;  // at most 8
    out_ += whole;
    pending_ = whole == 8 ? 0 : pending_ >> (8 * whole);
    pending_bits_ -= 8 * whole;
  }

 private:
  uint8_t* out_;
  uint8_t* const end_;
  uint64_t pending_ = 0;
  size_t pending_bits_ = 0;
};

// Copies `bits` bits from bit src_bit of src into dst, ceil(bits / 8)
// bytes, the unused bits of the last one zero. Reads up to 8 bytes past
// the last byte it uses (src must have that room); writes only dst's
// ceil(bits / 8) bytes.
inline void ExtractBits(const uint8_t* src, size_t src_bit, size_t bits, uint8_t* dst) {
  using bitpack_internal::Load64;
  using bitpack_internal::Store64;
  size_t i = 0;
  // Whole chunks while another one follows: 8 bytes stored, the 8th
  // overwritten by the next chunk.
  for (; i + 56 < bits; i += 56) {
    const size_t at = src_bit + i;
    Store64((Load64(src + at / 8) >> (at % 8)) & ((uint64_t{1} << 56) - 1), dst + i / 8);
  }
  const size_t take = bits - i, at = src_bit + i;
  const uint64_t v = (Load64(src + at / 8) >> (at % 8)) & ((uint64_t{1} << take) - 1);
  for (size_t b = 0; b < (take + 7) / 8; ++b) dst[i / 8 + b] = static_cast<uint8_t>(v >> (8 * b));
}

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_BITPACK_H_
