// Sizes of the element types of the API (kvc_dtype): caller tensors and the
// scalars a stream stores (norms, radii, raw values) share them.
#ifndef KVCODEC_CODEC_BASE_DTYPE_H_
#define KVCODEC_CODEC_BASE_DTYPE_H_

#include <cstddef>
#include <cstdint>

#include "kvcodec/kvcodec.h"

namespace kvc {

inline size_t DtypeBytes(uint32_t dtype) { return dtype == KVC_DTYPE_F32 ? 4 : 2; }

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_DTYPE_H_
