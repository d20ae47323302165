#include "tools/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "codec/base/endian.h"
#include "tools/error.h"
#include "tools/file_util.h"
#include "tools/json.h"

namespace kvc::tools {
namespace {

std::string ShapeString(const std::vector<uint64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Sets *out = a * b and returns false, or returns true if that overflows.
bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (b != 0 && a > UINT64_MAX / b) return true;
  *out = a * b;
  return false;
}

std::vector<uint64_t> ParseUintArray(const JsonValue* value) {
  std::vector<uint64_t> out;
  if (value == nullptr || value->type != JsonValue::Type::kArray) {
    throw Error("is not an array");
  }
  for (const JsonValue& element : value->array) {
    uint64_t number;
    if (!element.GetUint64(&number)) {
      throw Error("holds " +
                  (element.type == JsonValue::Type::kNumber
                       ? element.text
                       : std::string("a non-number")) +
                  ", not a non-negative integer");
    }
    out.push_back(number);
  }
  return out;
}

// Reads one tensor entry of the header; the caller adds the file and tensor
// names to any error.
SafetensorsTensor ParseTensorEntry(const std::string& name,
                                   const JsonValue& entry, uint64_t data_size) {
  if (entry.type != JsonValue::Type::kObject) {
    throw Error("entry is not a JSON object");
  }
  for (const auto& [field, value] : entry.object) {
    if (field != "dtype" && field != "shape" && field != "data_offsets") {
      throw Error("unknown field \"" + field + "\"");
    }
  }
  SafetensorsTensor tensor;
  tensor.name = name;
  const JsonValue* dtype = entry.Find("dtype");
  if (dtype == nullptr || dtype->type != JsonValue::Type::kString) {
    throw Error("dtype is missing or not a string");
  }
  tensor.dtype = dtype->text;
  tensor.element_size = SafetensorsDtypeSize(tensor.dtype);
  try {
    tensor.shape = ParseUintArray(entry.Find("shape"));
  } catch (const Error& e) {
    throw Error(std::string("shape ") + e.what());
  }
  std::vector<uint64_t> offsets;
  try {
    offsets = ParseUintArray(entry.Find("data_offsets"));
  } catch (const Error& e) {
    throw Error(std::string("data_offsets ") + e.what());
  }
  if (offsets.size() != 2) throw Error("data_offsets must hold 2 numbers");
  tensor.begin = offsets[0];
  tensor.end = offsets[1];
  const std::string range = "data_offsets " + ShapeString(offsets);
  if (tensor.begin > tensor.end) throw Error(range + " are reversed");
  if (tensor.end > data_size) {
    throw Error(range + " lie outside the data section (" +
                std::to_string(data_size) + " bytes)");
  }
  tensor.element_count = 1;
  for (const uint64_t dim : tensor.shape) {
    if (MulOverflows(tensor.element_count, dim, &tensor.element_count)) {
      throw Error("shape " + ShapeString(tensor.shape) + " is too large");
    }
  }
  if (tensor.element_size != 0) {
    uint64_t size;
    if (MulOverflows(tensor.element_count, tensor.element_size, &size) ||
        size != tensor.end - tensor.begin) {
      throw Error("shape " + ShapeString(tensor.shape) + " of " + tensor.dtype +
                  " does not match " + range + " (" +
                  std::to_string(tensor.end - tensor.begin) + " bytes)");
    }
  }
  return tensor;
}

}  // namespace

size_t SafetensorsDtypeSize(std::string_view dtype) {
  static const std::pair<std::string_view, size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  for (const auto& [name, size] : kSizes) {
    if (name == dtype) return size;
  }
  return 0;
}

SafetensorsFile SafetensorsFile::Read(const std::string& path) {
  return Parse(ReadFile(path), path);
}

SafetensorsFile SafetensorsFile::Parse(std::vector<uint8_t> bytes,
                                       const std::string& name) {
  const auto fail = [&name](const std::string& what) {
    throw Error(name + ": " + what);
  };
  if (bytes.size() < 8) {
    fail("file is " + std::to_string(bytes.size()) +
         " bytes, too short for a safetensors header");
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  if (header_size > bytes.size() - 8) {
    fail("header length " + std::to_string(header_size) +
         " exceeds the file size (" + std::to_string(bytes.size()) +
         " bytes): not a safetensors file, or truncated");
  }
  if (header_size > kSafetensorsMaxHeader) {
    fail("header length " + std::to_string(header_size) +
         " exceeds the format's limit of " +
         std::to_string(kSafetensorsMaxHeader) + " bytes");
  }
  const std::string_view header(reinterpret_cast<const char*>(&bytes[8]),
                                header_size);
  JsonValue root;
  try {
    root = ParseJson(header);
  } catch (const Error& e) {
    fail(std::string("header: ") + e.what() + " of the header");
  }
  if (root.type != JsonValue::Type::kObject) {
    fail("header is not a JSON object");
  }

  SafetensorsFile file;
  file.name_ = name;
  file.data_start_ = 8 + header_size;
  const uint64_t data_size = bytes.size() - file.data_start_;
  for (const auto& [key, value] : root.object) {
    if (key == "__metadata__") {
      if (value.type != JsonValue::Type::kObject) {
        fail("__metadata__ is not a JSON object");
      }
      for (const auto& [meta_key, meta_value] : value.object) {
        if (meta_value.type != JsonValue::Type::kString) {
          fail("__metadata__ value \"" + meta_key + "\" is not a string");
        }
        file.metadata_[meta_key] = meta_value.text;
      }
      continue;
    }
    try {
      file.tensors_.push_back(ParseTensorEntry(key, value, data_size));
    } catch (const Error& e) {
      fail("tensor " + key + ": " + e.what());
    }
  }

  // Tensors must not share bytes: writing one must not change another.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const SafetensorsTensor& tensor : file.tensors_) {
    if (tensor.begin != tensor.end) by_offset.push_back(&tensor);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
              return a->begin < b->begin;
            });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      fail("tensors " + by_offset[i - 1]->name + " and " + by_offset[i]->name +
           " overlap");
    }
  }
  // Safetensors data is little-endian; Data() and kvcodec take the host's
  // order. Tensors do not overlap, so each byte is converted once.
  for (const SafetensorsTensor& tensor : file.tensors_) {
    ConvertLittleEndian(bytes.data() + file.data_start_ + tensor.begin,
                        tensor.end - tensor.begin, tensor.element_size);
  }
  file.bytes_ = std::move(bytes);
  return file;
}

const SafetensorsTensor* SafetensorsFile::Find(
    std::string_view tensor_name) const {
  for (const SafetensorsTensor& tensor : tensors_) {
    if (tensor.name == tensor_name) return &tensor;
  }
  return nullptr;
}

std::vector<float> SafetensorsFile::ReadFloat32(
    const SafetensorsTensor& tensor) const {
  if (tensor.dtype != "F32" && tensor.dtype != "F16" && tensor.dtype != "BF16") {
    // Before allocating: an unknown dtype's shape is unchecked and may hold
    // 2^64 elements (fuzz/regressions/safetensors_fuzzer/).
    throw Error(name_ + ": tensor " + tensor.name + " has dtype " +
                tensor.dtype + ", not F16, BF16 or F32");
  }
  const uint8_t* data = Data(tensor);
  std::vector<float> out(tensor.element_count);
  if (tensor.dtype == "F32") {
    // Not for no elements: out.data() may then be null, which memcpy must
    // not get even with a size of 0 (UBSan; fuzz/regressions/).
    if (!out.empty()) std::memcpy(out.data(), data, out.size() * sizeof(float));
  } else {
    const bool half = tensor.dtype == "F16";
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t bits;
      std::memcpy(&bits, data + 2 * i, 2);
      out[i] = half ? HalfToFloat(bits) : Bfloat16ToFloat(bits);
    }
  }
  return out;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path,
                                     const std::map<std::string, std::string>& metadata,
                                     const std::vector<SafetensorsTensorSpec>& tensors)
    : path_(path), file_(path) {
  JsonWriter header;
  header.BeginObject();
  if (!metadata.empty()) {
    header.Key("__metadata__").BeginObject();
    for (const auto& [key, value] : metadata) header.Key(key).String(value);
    header.EndObject();
  }
  for (const SafetensorsTensorSpec& tensor : tensors) {
    const std::string what = path + ": tensor " + tensor.name;
    uint64_t bytes = SafetensorsDtypeSize(tensor.dtype);
    if (bytes == 0) throw Error(what + ": unknown dtype " + tensor.dtype);
    bool overflow = false;
    for (const uint64_t dim : tensor.shape) overflow = overflow || MulOverflows(bytes, dim, &bytes);
    if (overflow || expected_ + bytes < expected_) {
      throw Error(what + " of shape " + ShapeString(tensor.shape) + " is too large");
    }
    header.Key(tensor.name).BeginObject();
    header.Key("dtype").String(tensor.dtype);
    header.Key("shape").BeginArray();
    for (const uint64_t dim : tensor.shape) header.Uint(dim);
    header.EndArray();
    header.Key("data_offsets").BeginArray().Uint(expected_);
    tensors_.push_back({expected_, expected_ + bytes, SafetensorsDtypeSize(tensor.dtype)});
    expected_ += bytes;
    header.Uint(expected_).EndArray();
    header.EndObject();
  }
  header.EndObject();
  std::string text = header.text();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  file_.Write(length, sizeof(length));
  file_.Write(text.data(), text.size());
}

void SafetensorsWriter::Write(const void* data, size_t size) {
  if (size > expected_ - written_) {
    throw Error(path_ + ": more tensor data than the header declares");
  }
  // Pieces end between elements, so that each element is converted to
  // little-endian whole (checked on every host, so that a caller that splits
  // elements fails where it is tested, not only on big-endian machines).
  const uint64_t end = written_ + size;
  for (const Range& tensor : tensors_) {
    if (tensor.begin < end && end < tensor.end && (end - tensor.begin) % tensor.element_size != 0) {
      throw Error(path_ + ": tensor data written in pieces that split a " +
                  std::to_string(tensor.element_size) + "-byte element");
    }
  }
  if (kHostIsLittleEndian) {
    file_.Write(data, size);
  } else {
    std::vector<uint8_t> little(static_cast<const uint8_t*>(data),
                                static_cast<const uint8_t*>(data) + size);
    for (const Range& tensor : tensors_) {
      const uint64_t from = std::max(tensor.begin, written_), to = std::min(tensor.end, end);
      if (from < to) {
        ConvertLittleEndian(little.data() + (from - written_), to - from, tensor.element_size);
      }
    }
    file_.Write(little.data(), size);
  }
  written_ = end;
}

void SafetensorsWriter::Commit() {
  if (written_ != expected_) {
    throw Error(path_ + ": " + std::to_string(written_) + " of " + std::to_string(expected_) +
                " tensor bytes written");
  }
  file_.Commit();
}

void WriteSafetensors(const std::string& path,
                      const std::map<std::string, std::string>& metadata,
                      const std::vector<SafetensorsTensorView>& tensors) {
  std::vector<SafetensorsTensorSpec> specs;
  for (const SafetensorsTensorView& tensor : tensors) {
    uint64_t expected = SafetensorsDtypeSize(tensor.dtype);
    if (expected == 0) throw Error(path + ": tensor " + tensor.name + ": unknown dtype " + tensor.dtype);
    bool overflow = false;
    for (const uint64_t dim : tensor.shape) {
      overflow = overflow || MulOverflows(expected, dim, &expected);
    }
    if (overflow || expected != tensor.size_in_bytes) {
      throw Error(path + ": tensor " + tensor.name + " of shape " +
                  ShapeString(tensor.shape) + " and dtype " + tensor.dtype +
                  " cannot hold " + std::to_string(tensor.size_in_bytes) + " bytes");
    }
    specs.push_back({tensor.name, tensor.dtype, tensor.shape});
  }
  SafetensorsWriter writer(path, metadata, specs);
  for (const SafetensorsTensorView& tensor : tensors) writer.Write(tensor.data, tensor.size_in_bytes);
  writer.Commit();
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0) {  // Zero or subnormal: mantissa * 2^-24, exact in f32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  uint32_t out;
  if (exponent == 31) {  // Infinity or NaN (payload kept).
    out = sign | 0x7F800000u | (mantissa << 13);
  } else {  // Rebias the exponent from 15 to 127.
    out = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &out, sizeof(value));
  return value;
}

float Bfloat16ToFloat(uint16_t bits) {
  const uint32_t out = uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &out, sizeof(value));
  return value;
}

}  // namespace kvc::tools
