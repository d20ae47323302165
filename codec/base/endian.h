// Little-endian loads and stores, independent of the host's byte order: the
// bitstream is little-endian by specification (FORMAT.md).
#ifndef KVCODEC_CODEC_BASE_ENDIAN_H_
#define KVCODEC_CODEC_BASE_ENDIAN_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kvc {

// The host's byte order. GCC and clang define __BYTE_ORDER__; the compilers
// that do not (MSVC) only target little-endian machines.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
inline constexpr bool kHostIsLittleEndian = false;
#else
inline constexpr bool kHostIsLittleEndian = true;
#endif

// Converts `size` bytes of consecutive `element_size`-byte values between
// little-endian and the host's order (either way: the same reversal). Nothing
// to do on a little-endian host; `size` is a multiple of `element_size`.
inline void ConvertLittleEndian(uint8_t* data, size_t size, size_t element_size) {
  if (kHostIsLittleEndian || element_size < 2) return;
  for (size_t i = 0; i + element_size <= size; i += element_size) {
    std::reverse(data + i, data + i + element_size);
  }
}

inline uint16_t LoadLE16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t LoadLE32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t LoadLE64(const uint8_t* p) {
  return static_cast<uint64_t>(LoadLE32(p)) |
         (static_cast<uint64_t>(LoadLE32(p + 4)) << 32);
}
inline void StoreLE16(uint16_t v, uint8_t* p) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void StoreLE32(uint32_t v, uint8_t* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void StoreLE64(uint64_t v, uint8_t* p) {
  StoreLE32(static_cast<uint32_t>(v), p);
  StoreLE32(static_cast<uint32_t>(v >> 32), p + 4);
}

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_ENDIAN_H_
