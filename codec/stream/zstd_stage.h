// The optional lossless stage (FORMAT.md §3.7): a Block payload stored as
// u32 Raw_Size then one zstd frame of exactly Raw_Size bytes.
#ifndef KVCODEC_CODEC_STREAM_ZSTD_STAGE_H_
#define KVCODEC_CODEC_STREAM_ZSTD_STAGE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/status.h"

namespace kvc {

// Whether this build has zstd.
bool ZstdAvailable();

// Compresses a payload at `level` (1..22) into the stored form. Returns
// false, leaving *stored empty, when that would not save at least 1/64 of
// the payload: the writer then stores the payload as it is.
bool ZstdCompressPayload(const uint8_t* payload, size_t size, int level,
                         std::vector<uint8_t>* stored);

// The payload of a stored form; CORRUPT if the frame is invalid or its size
// is not Raw_Size.
Status ZstdInflatePayload(const uint8_t* stored, size_t size, std::vector<uint8_t>* payload);

}  // namespace kvc

#endif  // KVCODEC_CODEC_STREAM_ZSTD_STAGE_H_
