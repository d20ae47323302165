#include "format/section.h"

#include "base/endian.h"
#include "format/checksum.h"

namespace kvc {

void WriteSectionHeader(uint8_t type, size_t payload_size, uint8_t* out, uint8_t flags) {
  out[0] = type;
  out[1] = flags;
  StoreLE16(0, out + 2);
  StoreLE32(static_cast<uint32_t>(payload_size), out + 4);
}

void SealSection(uint8_t type, size_t payload_size, uint8_t* out, uint8_t flags) {
  WriteSectionHeader(type, payload_size, out, flags);
  const size_t checked = kSectionHeaderSize + payload_size;
  StoreLE32(Checksum32(out, checked), out + checked);
}

Status VerifySection(const uint8_t* section, size_t payload_size) {
  return CheckSectionChecksum(section, payload_size,
                              Checksum32(section, kSectionHeaderSize + payload_size));
}

Status CheckSectionChecksum(const uint8_t* section, size_t payload_size, uint32_t checksum) {
  if (checksum != LoadLE32(section + kSectionHeaderSize + payload_size)) {
    return Status(KVC_ERR_CHECKSUM,
                  StrFormat("section (type 0x%02x) checksum mismatch", section[0]));
  }
  return OkStatus();
}

Status ReadSection(const uint8_t* data, size_t size, SectionRef* out,
                   uint8_t allowed_flags, Checksums checksums) {
  if (size < kSectionHeaderSize) {
    return Status(KVC_ERR_TRUNCATED, "input ends inside a section header");
  }
  const size_t payload_size = LoadLE32(data + 4);
  if (payload_size > size - kSectionHeaderSize - kSectionChecksumSize ||
      size < kSectionHeaderSize + kSectionChecksumSize) {
    return Status(KVC_ERR_TRUNCATED,
                  StrFormat("section of %zu bytes extends past the input's end",
                            payload_size));
  }
  const bool defer = checksums == Checksums::kDefer && data[0] == kSectionBlock && data[1] == 0;
  if (checksums != Checksums::kTrust && !defer) {
    KVC_RETURN_IF_ERROR(VerifySection(data, payload_size));
  }
  if ((data[1] & ~allowed_flags) != 0) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  StrFormat("section flags 0x%02x unknown", data[1]));
  }
  if (LoadLE16(data + 2) != 0) {
    return Status(KVC_ERR_CORRUPT, "section reserved bytes not zero");
  }
  out->type = data[0];
  out->flags = data[1];
  out->payload = data + kSectionHeaderSize;
  out->payload_size = payload_size;
  out->total_size = SectionSize(payload_size);
  out->checksum_deferred = defer;
  return OkStatus();
}

}  // namespace kvc
