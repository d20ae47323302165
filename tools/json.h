// A small strict JSON reader (RFC 8259) and a compact JSON writer, enough for
// safetensors headers and the kvc CLI's machine-readable output.
#ifndef KVCODEC_TOOLS_JSON_H_
#define KVCODEC_TOOLS_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvc::tools {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  // Returns the member named `key`, or nullptr if there is none or this is
  // not an object. The parser rejects duplicate keys, so this is unambiguous.
  const JsonValue* Find(std::string_view key) const;
  // True, with *out set, if this is a number written as a non-negative
  // integer that fits in 64 bits. Exact even beyond 2^53, where `number` is
  // not (safetensors offsets may need that).
  bool GetUint64(uint64_t* out) const;

  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  // kString: the decoded string (UTF-8). kNumber: the number as written.
  std::string text;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // Input order.
};

// Deeper nesting is rejected, which bounds the parser's recursion.
constexpr int kJsonMaxDepth = 64;

// Parses one JSON value with optional surrounding whitespace. Strings must be
// valid UTF-8 and object keys unique. Throws Error("JSON: <problem> at byte
// N") on malformed input.
JsonValue ParseJson(std::string_view text);

// Builds compact JSON text. Inside an object, call Key() before each value;
// commas are inserted automatically.
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view value);
  // Shortest text that reads back as the same double; NaN and infinities,
  // which JSON cannot express, are written as null.
  JsonWriter& Number(double value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();

  const std::string& text() const { return text_; }

 private:
  void BeginValue();

  std::string text_;
  // One entry per open array or object: whether it has no element yet.
  std::vector<bool> empty_;
  bool after_key_ = false;
};

// `value` as a JSON string literal, with quotes and escapes.
std::string JsonQuote(std::string_view value);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_JSON_H_
