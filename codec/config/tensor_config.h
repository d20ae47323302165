// Tensor configs (kvc_tensor_config): validation, their 16-byte wire form
// (FORMAT.md, "Tensor_Config") and method strings ("tq-mse-b4:nc").
#ifndef KVCODEC_CODEC_CONFIG_TENSOR_CONFIG_H_
#define KVCODEC_CODEC_CONFIG_TENSOR_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/dtype.h"
#include "base/status.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

constexpr uint64_t kDefaultSeed = 0x6B76636F64656331ull;  // "kvcodec1"
// Tensor_Config on the wire: 16 fixed bytes, then Param_Size bytes of method
// parameters (0 for RAW and the TQ methods, 4 for the others).
constexpr size_t kTensorConfigFixedSize = 16;
constexpr size_t kMaxTensorConfigWireSize = 20;
size_t TensorConfigWireSize(const kvc_tensor_config& config);

kvc_tensor_config DefaultTensorConfig();

// Copies a caller's size-versioned struct: the fields it has, defaults for the
// rest. A newer caller's extra fields must be zero (we would ignore them).
Status ImportTensorConfig(const kvc_tensor_config* in, kvc_tensor_config* out);

// Checks that a config is one this library implements. `what` prefixes the
// message ("layer 3 K").
Status ValidateTensorConfig(const kvc_tensor_config& config,
                            const std::string& what);


// Checks what depends on the head dim (group sizes, channel splits).
Status ValidateForHeadDim(const kvc_tensor_config& config, uint32_t head_dim,
                          const std::string& what);

// Writes TensorConfigWireSize(config) bytes.
void WriteTensorConfig(const kvc_tensor_config& config, uint8_t* out);
// Reads and validates a config from `size` available bytes, setting
// *wire_size; UNSUPPORTED_FEATURE for a method this library does not know,
// CORRUPT for invalid fields or too few bytes.
Status ReadTensorConfig(const uint8_t* in, size_t size, kvc_tensor_config* config,
                        size_t* wire_size);

Status ParseMethodString(const std::string& text, kvc_tensor_config* config);
std::string FormatMethodString(const kvc_tensor_config& config);

// The lowest format minor version that describes the config (2 if
// centered, else 0).
uint32_t FormatMinorOf(const kvc_tensor_config& config);

bool SameTensorConfig(const kvc_tensor_config& a, const kvc_tensor_config& b);

}  // namespace kvc

#endif  // KVCODEC_CODEC_CONFIG_TENSOR_CONFIG_H_
