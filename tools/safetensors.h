// Reading and writing .safetensors files: an 8-byte little-endian header
// length, a JSON header mapping tensor names to {dtype, shape, data_offsets}
// (plus an optional "__metadata__" string map), then the tensor data.
#ifndef KVCODEC_TOOLS_SAFETENSORS_H_
#define KVCODEC_TOOLS_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tools/file_util.h"

namespace kvc::tools {

// The format's own limit on the header size.
constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsTensor {
  std::string name;
  std::string dtype;    // As written: "F16", "BF16", "F32", "I32", ...
  size_t element_size;  // Bytes per element; 0 for a dtype we do not know.
  std::vector<uint64_t> shape;
  uint64_t element_count;
  uint64_t begin;  // Byte range [begin, end) within the data section.
  uint64_t end;
};

// Bytes per element of a safetensors dtype, or 0 if it is unknown.
size_t SafetensorsDtypeSize(std::string_view dtype);

class SafetensorsFile {
 public:
  // Reads and validates `path`. Throws Error("PATH: <problem>").
  static SafetensorsFile Read(const std::string& path);
  // Validates a file already in memory; `name` is used in error messages.
  static SafetensorsFile Parse(std::vector<uint8_t> bytes,
                               const std::string& name);

  const std::string& name() const { return name_; }
  // In header order. Tensors of unknown dtype are listed (element_size 0)
  // but their size could not be checked against their shape.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(std::string_view tensor_name) const;
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // The tensor's bytes, converted from the file's little-endian order to the
  // host's for dtypes of known size (Read and Parse do it on a big-endian
  // host); not necessarily aligned for its dtype.
  const uint8_t* Data(const SafetensorsTensor& tensor) const {
    return bytes_.data() + data_start_ + tensor.begin;
  }
  // The tensor's values converted to f32. Throws unless the dtype is F16,
  // BF16 or F32.
  std::vector<float> ReadFloat32(const SafetensorsTensor& tensor) const;

 private:
  SafetensorsFile() = default;

  std::string name_;
  std::vector<uint8_t> bytes_;
  size_t data_start_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: `data` holds size_in_bytes bytes in the host's byte
// order, which must equal the shape's element count times the dtype's size.
struct SafetensorsTensorView {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  const void* data;
  size_t size_in_bytes;
};

// Writes the tensors in the order given, contiguously, after a header padded
// with spaces to a multiple of 8 bytes (so the data section is 8-aligned).
// "__metadata__" is written only if `metadata` is not empty. The file is
// written atomically (see AtomicFile). Throws Error("PATH: <problem>").
// Writes a safetensors file tensor by tensor: the header first (from the
// shapes), then the data in header order through Write, then Commit (which
// checks that every declared byte came). Atomic: nothing appears at `path`
// before Commit. Data comes in the host's byte order, in pieces of whole
// elements, and is written little-endian.
struct SafetensorsTensorSpec {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
};
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::map<std::string, std::string>& metadata,
                    const std::vector<SafetensorsTensorSpec>& tensors);
  void Write(const void* data, size_t size);
  void Commit();

 private:
  // Where each tensor lies in the data section, for the byte order.
  struct Range {
    uint64_t begin, end;
    size_t element_size;
  };

  std::string path_;
  AtomicFile file_;
  std::vector<Range> tensors_;
  uint64_t expected_ = 0, written_ = 0;
};

void WriteSafetensors(const std::string& path,
                      const std::map<std::string, std::string>& metadata,
                      const std::vector<SafetensorsTensorView>& tensors);

// IEEE binary16 and bfloat16 bit patterns to f32 (exact).
float HalfToFloat(uint16_t bits);
float Bfloat16ToFloat(uint16_t bits);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_SAFETENSORS_H_
