// The input as a .safetensors file, through the kvc CLI's reader
// (tools/safetensors.h, in kvc_tools_io; the only fuzz target that is not a
// C API client, since the reader is the CLI's). Never a crash, a hang or an
// exception other than kvc::tools::Error; a file that parses describes
// tensors that lie inside its data section without overlapping, of the size
// their shape and dtype give, and reads as f32 exactly when its dtype is
// F16, BF16 or F32.
#include <algorithm>
#include <cstring>
#include <vector>

#include "codec/base/endian.h"
#include "fuzz_helpers.h"
#include "tools/error.h"
#include "tools/safetensors.h"

using kvc::tools::Error;
using kvc::tools::SafetensorsFile;
using kvc::tools::SafetensorsTensor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  try {
    const SafetensorsFile file = SafetensorsFile::Parse(std::move(bytes), "fuzz.safetensors");
    FUZZ_ASSERT(size >= 8);
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | data[i];
    FUZZ_ASSERT(header_size <= size - 8);
    const uint64_t data_size = size - 8 - header_size;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const SafetensorsTensor& tensor : file.tensors()) {
      FUZZ_ASSERT(tensor.begin <= tensor.end && tensor.end <= data_size);
      FUZZ_ASSERT(tensor.element_size == kvc::tools::SafetensorsDtypeSize(tensor.dtype));
      if (tensor.element_size != 0) {
        FUZZ_ASSERT(tensor.element_count * tensor.element_size == tensor.end - tensor.begin);
      }
      FUZZ_ASSERT(file.Find(tensor.name) == &tensor);  // names are unique
      FUZZ_ASSERT(file.Data(tensor) == file.Data(tensor));
      if (tensor.begin != tensor.end) ranges.emplace_back(tensor.begin, tensor.end);
      const bool is_float =
          tensor.dtype == "F16" || tensor.dtype == "BF16" || tensor.dtype == "F32";
      try {
        const std::vector<float> values = file.ReadFloat32(tensor);
        FUZZ_ASSERT(is_float && values.size() == tensor.element_count);
        // The f32 values are the file's little-endian ones, unchanged.
        if (tensor.dtype == "F32") {
          const uint8_t* in = data + 8 + header_size + tensor.begin;
          for (size_t j = 0; j < values.size(); ++j) {
            FUZZ_ASSERT(kvc::FloatBits(values[j]) == kvc::LoadLE32(in + 4 * j));
          }
        }
      } catch (const Error&) {
        FUZZ_ASSERT(!is_float);
      }
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) {
      FUZZ_ASSERT(ranges[i - 1].second <= ranges[i].first);
    }
    for (const auto& [key, value] : file.metadata()) {
      FUZZ_ASSERT(key.size() + value.size() <= header_size);
    }
  } catch (const Error& e) {
    FUZZ_ASSERT(e.what()[0] != '\0');
  }
  return 0;
}
