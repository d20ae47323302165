// Shared by the fuzz targets: carving parameters off the end of the input
// (zstd's FUZZ_dataProducer idea) and a hard check that crashes on purpose.
#ifndef KVCODEC_FUZZ_FUZZ_HELPERS_H_
#define KVCODEC_FUZZ_FUZZ_HELPERS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define FUZZ_ASSERT(cond)                                                    \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: FUZZ_ASSERT(%s) failed\n", __FILE__,      \
                   __LINE__, #cond);                                         \
      std::abort();                                                          \
    }                                                                        \
  } while (0)

// Takes bytes from the end of the input; the rest stays the payload.
class DataProducer {
 public:
  DataProducer(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t Range(uint32_t lo, uint32_t hi) {  // inclusive
    uint32_t value = 0;
    for (uint64_t span = uint64_t{hi} - lo; span > 0 && size_ > 0; span >>= 8) {
      value = (value << 8) | data_[--size_];
    }
    return lo + static_cast<uint32_t>(value % (uint64_t{hi} - lo + 1));
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_;
  size_t size_;
};

#endif  // KVCODEC_FUZZ_FUZZ_HELPERS_H_
