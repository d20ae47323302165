// The last-level cache's size, the rule for outputs too large to keep in
// it, and prefetching. Header-only and free of the library's other internals, so that
// `kvc bench` gives its int8 baseline the same rule as kvcodec's decoder.
#ifndef KVCODEC_CODEC_BASE_CACHE_SIZE_H_
#define KVCODEC_CODEC_BASE_CACHE_SIZE_H_

#include <cstddef>
#include <cstdint>

#include <hwy/cache_control.h>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace kvc {

// As the C library reports it (L3, else L2), 32 MiB where it does not.
inline size_t LastLevelCacheBytes() {
#if defined(_SC_LEVEL3_CACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  for (const int level : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(level);
    if (bytes > 0) return static_cast<size_t>(bytes);
  }
#endif
  return size_t{32} << 20;
}

// Whether an output of `bytes` should be written around the cache: more
// than half of it, which such an output would only evict the caller's data
// from without staying there itself (memcpy writes large copies so too).
inline bool WriteAroundCache(uint64_t bytes) { return bytes > LastLevelCacheBytes() / 2; }

// Asks for the cache lines of [begin, end) to be brought in (a hint: never
// faults, reads nothing).
inline void PrefetchLines(const uint8_t* begin, const uint8_t* end) {
  constexpr size_t kLineBytes = 64;
  for (const uint8_t* line = begin; line < end; line += kLineBytes) hwy::Prefetch(line);
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_CACHE_SIZE_H_
