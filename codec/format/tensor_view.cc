#include "format/tensor_view.h"

#include <cmath>
#include <cstring>

#include "base/half.h"
#include "simd/convert_kernels.h"

namespace kvc {

TensorView TensorView::Sub(uint64_t index) const {
  TensorView sub;
  sub.data = data + static_cast<int64_t>(index) * strides[0] *
                        static_cast<int64_t>(DtypeBytes(dtype));
  sub.dtype = dtype;
  sub.ndim = ndim - 1;
  for (uint32_t i = 1; i < ndim; ++i) {
    sub.shape[i - 1] = shape[i];
    sub.strides[i - 1] = strides[i];
  }
  return sub;
}

uint8_t* TensorView::Row(uint64_t i, uint64_t j) const {
  const int64_t offset = static_cast<int64_t>(i) * strides[ndim - 3] +
                         static_cast<int64_t>(j) * strides[ndim - 2];
  return data + offset * static_cast<int64_t>(DtypeBytes(dtype));
}

Status ImportTensor(const kvc_tensor* tensor, uint32_t ndim, const char* name,
                    TensorView* out) {
  if (tensor == nullptr || tensor->data == nullptr) {
    return Status(KVC_ERR_INVALID_ARGUMENT, StrFormat("%s is NULL", name));
  }
  if (tensor->dtype > KVC_DTYPE_BF16) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%s: dtype %u unknown", name, tensor->dtype));
  }
  if (tensor->ndim != ndim) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("%s: expected %u dimensions, got %u", name, ndim,
                            tensor->ndim));
  }
  TensorView v;
  v.data = static_cast<uint8_t*>(tensor->data);
  v.dtype = tensor->dtype;
  v.ndim = ndim;
  bool all_zero = true;
  uint64_t elements = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    v.shape[i] = tensor->shape[i];
    v.strides[i] = tensor->strides[i];
    all_zero = all_zero && v.strides[i] == 0;
    // Extents fit the format's fields (u32 at most); products fit int64.
    if (v.shape[i] == 0 || v.shape[i] > 0xFFFFFFFFull ||
        elements > (uint64_t{1} << 62) / v.shape[i]) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("%s: dimension %u has invalid extent %llu", name,
                              i, static_cast<unsigned long long>(v.shape[i])));
    }
    elements *= v.shape[i];
  }
  if (all_zero) {
    int64_t stride = 1;
    for (uint32_t i = ndim; i-- > 0;) {
      v.strides[i] = stride;
      stride *= static_cast<int64_t>(v.shape[i]);
    }
  }
  *out = v;
  return OkStatus();
}

void LoadRow(const uint8_t* row, uint32_t dtype, int64_t stride, size_t n,
             float* out) {
  if (stride == 1 && reinterpret_cast<uintptr_t>(row) % 2 == 0) {
    switch (dtype) {
      case KVC_DTYPE_F16:
        return simd::F16ToF32(reinterpret_cast<const uint16_t*>(row), n, out);
      case KVC_DTYPE_BF16:
        return simd::BF16ToF32(reinterpret_cast<const uint16_t*>(row), n, out);
      default: std::memcpy(out, row, n * 4); return;
    }
  }
  const int64_t step = stride * static_cast<int64_t>(DtypeBytes(dtype));
  for (size_t j = 0; j < n; ++j, row += step) {
    uint16_t h;
    switch (dtype) {
      case KVC_DTYPE_F16:
        std::memcpy(&h, row, 2);
        out[j] = F16ToF32(h);
        break;
      case KVC_DTYPE_BF16:
        std::memcpy(&h, row, 2);
        out[j] = BF16ToF32(h);
        break;
      default:
        std::memcpy(&out[j], row, 4);
    }
  }
}

Status StoreRow(const float* in, size_t n, uint32_t dtype, int64_t stride,
                uint8_t* row) {
  if (stride == 1 && reinterpret_cast<uintptr_t>(row) % 2 == 0) {
    switch (dtype) {
      case KVC_DTYPE_F16:
        // On overflow, the reference loop below names the value.
        if (simd::F32ToF16(in, n, reinterpret_cast<uint16_t*>(row))) return OkStatus();
        break;
      case KVC_DTYPE_BF16:
        simd::F32ToBF16(in, n, reinterpret_cast<uint16_t*>(row));
        return OkStatus();
      default: std::memcpy(row, in, n * 4); return OkStatus();
    }
  }
  const int64_t step = stride * static_cast<int64_t>(DtypeBytes(dtype));
  for (size_t j = 0; j < n; ++j, row += step) {
    uint16_t h;
    switch (dtype) {
      case KVC_DTYPE_F16:
        h = F32ToF16(in[j]);
        if ((h & 0x7FFF) == 0x7C00) {
          return Status(KVC_ERR_INVALID_VALUE,
                        StrFormat("decoded value %g overflows f16 (decode to "
                                  "f32)", static_cast<double>(in[j])));
        }
        std::memcpy(row, &h, 2);
        break;
      case KVC_DTYPE_BF16:
        h = F32ToBF16(in[j]);
        std::memcpy(row, &h, 2);
        break;
      default:
        std::memcpy(row, &in[j], 4);
    }
  }
  return OkStatus();
}

}  // namespace kvc
