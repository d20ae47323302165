// Caller tensors (kvc_tensor): validation and row access in f32.
#ifndef KVCODEC_CODEC_FORMAT_TENSOR_VIEW_H_
#define KVCODEC_CODEC_FORMAT_TENSOR_VIEW_H_

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"
#include "base/status.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

struct TensorView {
  uint8_t* data = nullptr;
  uint32_t dtype = KVC_DTYPE_F32;
  uint32_t ndim = 0;
  uint64_t shape[4] = {};
  int64_t strides[4] = {};  // in elements

  // The view with the first dimension fixed at `index`.
  TensorView Sub(uint64_t index) const;
  // Rows are the last dimension; (i, j) index the two before it.
  uint8_t* Row(uint64_t i, uint64_t j) const;
};

// Checks dtype, ndim and shape (each extent >= 1, total size representable)
// and fills in row-major strides when all are 0.
Status ImportTensor(const kvc_tensor* tensor, uint32_t ndim, const char* name,
                    TensorView* out);

// Converts `n` elements with element stride `stride` into f32.
void LoadRow(const uint8_t* row, uint32_t dtype, int64_t stride, size_t n,
             float* out);
// The reverse, rounding to nearest even. Fails (INVALID_VALUE) if a value
// overflows a 16-bit output format.
Status StoreRow(const float* in, size_t n, uint32_t dtype, int64_t stride,
                uint8_t* row);

}  // namespace kvc

#endif  // KVCODEC_CODEC_FORMAT_TENSOR_VIEW_H_
