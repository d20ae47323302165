#include "stream/zstd_stage.h"

#include "base/endian.h"

#ifdef KVC_HAVE_ZSTD
#include <zstd.h>
#endif

namespace kvc {

// A frame inflates to at most this many times its size (FORMAT.md §3.7): a
// decoder's allocation stays proportional to its input.
constexpr size_t kMaxZstdRatio = 255;

#ifdef KVC_HAVE_ZSTD
bool ZstdAvailable() { return true; }

bool ZstdCompressPayload(const uint8_t* payload, size_t size, int level,
                         std::vector<uint8_t>* stored) {
  stored->resize(4 + ZSTD_compressBound(size));
  const size_t n = ZSTD_compress(stored->data() + 4, stored->size() - 4, payload, size, level);
  if (ZSTD_isError(n) || 4 + n + size / 64 > size || size > kMaxZstdRatio * n ||
      size > 0xFFFFFFFFu) {
    stored->clear();
    return false;
  }
  StoreLE32(static_cast<uint32_t>(size), stored->data());
  stored->resize(4 + n);
  return true;
}

Status ZstdInflatePayload(const uint8_t* stored, size_t size, std::vector<uint8_t>* payload) {
  if (size < 4) return Status(KVC_ERR_CORRUPT, "compressed block shorter than its size field");
  const size_t raw = LoadLE32(stored);
  if (raw > kMaxZstdRatio * (size - 4)) {
    return Status(KVC_ERR_CORRUPT, "compressed block claims more than 255 times its size");
  }
  // Raw_Size bounds the allocation before a byte is inflated: the frame must
  // produce exactly that many.
  const unsigned long long declared = ZSTD_getFrameContentSize(stored + 4, size - 4);
  if (declared == ZSTD_CONTENTSIZE_ERROR ||
      (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != raw)) {
    return Status(KVC_ERR_CORRUPT, "compressed block: invalid zstd frame");
  }
  payload->resize(raw);
  const size_t n = ZSTD_decompress(payload->data(), raw, stored + 4, size - 4);
  if (ZSTD_isError(n) || n != raw) {
    payload->clear();
    return Status(KVC_ERR_CORRUPT, "compressed block: zstd frame does not inflate to its size");
  }
  return OkStatus();
}
#else
bool ZstdAvailable() { return false; }

bool ZstdCompressPayload(const uint8_t*, size_t, int, std::vector<uint8_t>* stored) {
  stored->clear();
  return false;
}

Status ZstdInflatePayload(const uint8_t*, size_t, std::vector<uint8_t>*) {
  return Status(KVC_ERR_UNSUPPORTED_FEATURE, "this kvcodec is built without zstd");
}
#endif

}  // namespace kvc
