// Size-versioned structs of the C API (kvc_tensor_config, kvc_cache_desc,
// options, infos) start with `uint32_t struct_size`. A caller built against an
// older header passes a smaller size: the library reads the fields it has and
// defaults the rest. A caller built against a newer header passes a larger
// size: the fields this library does not know must be zero.
#ifndef KVCODEC_CODEC_BASE_SIZED_STRUCT_H_
#define KVCODEC_CODEC_BASE_SIZED_STRUCT_H_

#include <cstdint>
#include <cstring>

#include "base/status.h"

namespace kvc {

// kMinSize: the size of the struct's first public version.
template <typename T, size_t kMinSize = sizeof(T)>
Status ImportSized(const T* in, const T& defaults, T* out, const char* name) {
  if (in == nullptr) {
    return Status(KVC_ERR_INVALID_ARGUMENT, StrFormat("%s is NULL", name));
  }
  const uint32_t size = in->struct_size;
  if (size < kMinSize) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%s: struct_size %u is too small (call its _init "
                            "function first)", name, size));
  }
  *out = defaults;
  std::memcpy(out, in, size < sizeof(T) ? size : sizeof(T));
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(in);
  for (size_t i = sizeof(T); i < size; ++i) {
    if (bytes[i] != 0) {
      return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                    StrFormat("%s sets fields newer than this library", name));
    }
  }
  out->struct_size = sizeof(T);
  return OkStatus();
}

// Writes an output struct: only the first struct_size bytes the caller has.
template <typename T>
Status ExportSized(const T& value, T* out, const char* name) {
  if (out == nullptr) {
    return Status(KVC_ERR_INVALID_ARGUMENT, StrFormat("%s is NULL", name));
  }
  const uint32_t size = out->struct_size;
  if (size < sizeof(uint32_t)) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%s: struct_size %u is too small (call its _init "
                            "function first)", name, size));
  }
  T copy = value;
  copy.struct_size = size < sizeof(T) ? size : static_cast<uint32_t>(sizeof(T));
  std::memcpy(out, &copy, copy.struct_size);
  return OkStatus();
}

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_SIZED_STRUCT_H_
