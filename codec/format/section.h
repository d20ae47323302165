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
  kSectionAppend = 0x03,  // 1.1, streams with the Segments feature
  kSectionEnd = 0x0F,
  // Ancillary sections of 1.1 (a 1.0 decoder skips them); 0x80-0x8F are
  // left to applications.
  kSectionBlockIndex = 0x90,
  kSectionIndexLocator = 0x91,
  kSectionModelIdentity = 0x92,
};
// Section_Flags (1.1): the payload is a zstd frame (Block sections of
// streams with the Zstd_Sections feature).
constexpr uint8_t kSectionFlagZstd = 0x01;
// Required_Features bits of the stream header (1.1). Bit 0 stays unassigned
// (the golden error streams use it as the feature no decoder knows).
constexpr uint32_t kFeatureZstdSections = 0x2;
constexpr uint32_t kFeatureSegments = 0x4;
constexpr uint32_t kKnownFeatures = kFeatureZstdSections | kFeatureSegments;
// Types with this bit set are ancillary: decoders that do not know them
// check their checksum and skip them.
constexpr uint8_t kSectionAncillary = 0x80;

constexpr size_t SectionSize(size_t payload_size) {
  return kSectionHeaderSize + payload_size + kSectionChecksumSize;
}

// Writes the header before, and the checksum after, a payload already at
// out + kSectionHeaderSize.
void SealSection(uint8_t type, size_t payload_size, uint8_t* out,
                 uint8_t flags = 0);
// The header alone, for writers that hash the section as they write it
// (WriteBlockSection); the checksum then goes at out + kSectionHeaderSize +
// payload_size, little-endian.
void WriteSectionHeader(uint8_t type, size_t payload_size, uint8_t* out,
                        uint8_t flags = 0);

struct SectionRef {
  uint8_t type = 0;
  uint8_t flags = 0;
  const uint8_t* payload = nullptr;
  size_t payload_size = 0;
  size_t total_size = 0;
  bool checksum_deferred = false;  // read with kDefer and left to the caller
};

// kVerify: checked where the section is read. kTrust: the caller checked it
// before. kDefer (uncompressed Block sections only): the caller checks it
// with VerifySection before it decodes the block, which it may then do on
// another thread and while the payload is still in cache.
enum class Checksums { kVerify, kTrust, kDefer };

// CHECKSUM unless the checksum that follows the section's header and
// payload (of payload_size bytes) matches them.
Status VerifySection(const uint8_t* section, size_t payload_size);
// The same check against a checksum of header and payload computed already.
Status CheckSectionChecksum(const uint8_t* section, size_t payload_size, uint32_t checksum);

// Reads the section at `data` (size bytes available) and checks its
// checksum (as `checksums` says): TRUNCATED,
// CHECKSUM, UNSUPPORTED_FEATURE (flags other than allowed_flags) or CORRUPT
// (reserved bits) on failure.
Status ReadSection(const uint8_t* data, size_t size, SectionRef* out,
                   uint8_t allowed_flags = 0, Checksums checksums = Checksums::kVerify);

}  // namespace kvc

#endif  // KVCODEC_CODEC_FORMAT_SECTION_H_
