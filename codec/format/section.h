// Sections: the framing unit of a stream (FORMAT.md, "Sections").
//   Section_Type u8 | Section_Flags u8 | Reserved u16 | Payload_Size u32 |
//   Payload | Section_Checksum u32 (of everything before it in the section)
#ifndef KVCODEC_CODEC_FORMAT_SECTION_H_
#define KVCODEC_CODEC_FORMAT_SECTION_H_

#include <cstddef>
#include <cstdint>

#include "base/status.h"

namespace kvc {

constexpr size_t kSectionHeaderSize = 8;
constexpr size_t kSectionChecksumSize = 4;
constexpr size_t kMaxSectionPayload = 0xFFFFFFFFu;

enum SectionType : uint8_t {
  kSectionLayerConfig = 0x01,
  kSectionBlock = 0x02,
  kSectionEnd = 0x0F,
};
// Types with this bit set are ancillary: decoders that do not know them
// check their checksum and skip them.
constexpr uint8_t kSectionAncillary = 0x80;

inline size_t SectionSize(size_t payload_size) {
  return kSectionHeaderSize + payload_size + kSectionChecksumSize;
}

// Writes the header before, and the checksum after, a payload already at
// out + kSectionHeaderSize.
void SealSection(uint8_t type, size_t payload_size, uint8_t* out);

struct SectionRef {
  uint8_t type = 0;
  const uint8_t* payload = nullptr;
  size_t payload_size = 0;
  size_t total_size = 0;
};

// Reads the section at `data` (size bytes available) and checks its
// checksum: TRUNCATED, CHECKSUM, UNSUPPORTED_FEATURE (unknown flags) or
// CORRUPT (reserved bits) on failure.
Status ReadSection(const uint8_t* data, size_t size, SectionRef* out);

}  // namespace kvc

#endif  // KVCODEC_CODEC_FORMAT_SECTION_H_
