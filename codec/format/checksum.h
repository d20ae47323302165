// Checksums of the format: the low 32 bits of XXH64 with seed 0, as zstd's
// content checksum (FORMAT.md, "Checksums").
#ifndef KVCODEC_CODEC_FORMAT_CHECKSUM_H_
#define KVCODEC_CODEC_FORMAT_CHECKSUM_H_

#include <cstddef>
#include <cstdint>

namespace kvc {

uint32_t Checksum32(const void* data, size_t size);

// Checksum32 of bytes fed in pieces, in order: a writer hashes what it has
// just written while it is still in cache.
class Checksummer {
 public:
  Checksummer();
  void Update(const void* data, size_t size);
  uint32_t Finish() const;

 private:
  alignas(8) unsigned char state_[96];  // an XXH64_state_t (checksum.cc)
};
// XXH64 with seed 0 (kvc_hash64: model identities).
uint64_t Hash64(const void* data, size_t size);

}  // namespace kvc

#endif  // KVCODEC_CODEC_FORMAT_CHECKSUM_H_
