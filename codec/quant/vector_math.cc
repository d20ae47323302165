#include "quant/vector_math.h"

#include <cstring>

namespace kvc {

void PackBits(const uint8_t* values, size_t n, int bits, uint8_t* out) {
  std::memset(out, 0, (n * static_cast<size_t>(bits) + 7) / 8);
  size_t bit = 0;
  for (size_t k = 0; k < n; ++k, bit += static_cast<size_t>(bits)) {
    // A value of up to 8 bits spans at most two bytes.
    const uint32_t shifted = static_cast<uint32_t>(values[k]) << (bit % 8);
    out[bit / 8] |= static_cast<uint8_t>(shifted);
    if ((bit % 8) + static_cast<size_t>(bits) > 8) {
      out[bit / 8 + 1] |= static_cast<uint8_t>(shifted >> 8);
    }
  }
}

void UnpackBits(const uint8_t* in, size_t n, int bits, uint8_t* values) {
  const uint32_t mask = (1u << bits) - 1;
  size_t bit = 0;
  for (size_t k = 0; k < n; ++k, bit += static_cast<size_t>(bits)) {
    uint32_t word = in[bit / 8];
    if ((bit % 8) + static_cast<size_t>(bits) > 8) {
      word |= static_cast<uint32_t>(in[bit / 8 + 1]) << 8;
    }
    values[k] = static_cast<uint8_t>((word >> (bit % 8)) & mask);
  }
}

}  // namespace kvc
