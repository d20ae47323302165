#include "format/checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvc {

uint32_t Checksum32(const void* data, size_t size) {
  return static_cast<uint32_t>(XXH64(data, size, 0));
}

uint64_t Hash64(const void* data, size_t size) { return XXH64(data, size, 0); }

}  // namespace kvc
