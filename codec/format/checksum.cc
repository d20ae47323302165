#include "format/checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvc {

uint32_t Checksum32(const void* data, size_t size) {
  return static_cast<uint32_t>(XXH64(data, size, 0));
}

static_assert(sizeof(XXH64_state_t) <= 96 && alignof(XXH64_state_t) <= 8,
              "Checksummer::state_ holds an XXH64_state_t");

Checksummer::Checksummer() {
  XXH64_reset(reinterpret_cast<XXH64_state_t*>(state_), 0);
}

void Checksummer::Update(const void* data, size_t size) {
  XXH64_update(reinterpret_cast<XXH64_state_t*>(state_), data, size);
}

uint32_t Checksummer::Finish() const {
  return static_cast<uint32_t>(XXH64_digest(reinterpret_cast<const XXH64_state_t*>(state_)));
}

uint64_t Hash64(const void* data, size_t size) { return XXH64(data, size, 0); }

}  // namespace kvc
