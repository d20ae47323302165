#include "tools/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>

#include "tools/error.h"

namespace kvc::tools {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    *out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    *out += static_cast<char>(0xC0 | (code_point >> 6));
    *out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    *out += static_cast<char>(0xE0 | (code_point >> 12));
    *out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (code_point >> 18));
    *out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

// Recursive descent over the input; pos_ is the byte offset reported in
// errors, so it always points at the offending byte.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  JsonValue ParseDocument() {
    SkipWhitespace();
    JsonValue value = ParseValue(0);
    SkipWhitespace();
    if (pos_ != text_.size()) Fail("unexpected data after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw Error("JSON: " + what + " at byte " + std::to_string(pos_));
  }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }

  void SkipWhitespace() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' ||
                        Peek() == '\r')) {
      ++pos_;
    }
  }

  void Expect(char c) {
    if (AtEnd()) Fail(std::string("expected '") + c + "' but the input ends");
    if (Peek() != c) Fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  JsonValue ParseValue(int depth) {
    if (AtEnd()) Fail("expected a value but the input ends");
    JsonValue value;
    switch (Peek()) {
      case '{':
        ParseObject(depth + 1, &value);
        break;
      case '[':
        ParseArray(depth + 1, &value);
        break;
      case '"':
        value.type = JsonValue::Type::kString;
        value.text = ParseString();
        break;
      case 't':
        ParseLiteral("true");
        value.type = JsonValue::Type::kBool;
        value.boolean = true;
        break;
      case 'f':
        ParseLiteral("false");
        value.type = JsonValue::Type::kBool;
        break;
      case 'n':
        ParseLiteral("null");
        break;
      default:
        if (Peek() != '-' && !IsDigit(Peek())) Fail("expected a value");
        ParseNumber(&value);
    }
    return value;
  }

  void CheckDepth(int depth) const {
    if (depth > kJsonMaxDepth) {
      Fail("nesting deeper than " + std::to_string(kJsonMaxDepth) + " levels");
    }
  }

  void ParseObject(int depth, JsonValue* value) {
    CheckDepth(depth);
    value->type = JsonValue::Type::kObject;
    ++pos_;  // '{'
    SkipWhitespace();
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      SkipWhitespace();
      if (AtEnd() || Peek() != '"') Fail("expected a string as object key");
      const size_t key_pos = pos_;
      std::string key = ParseString();
      if (value->Find(key) != nullptr) {
        pos_ = key_pos;
        Fail("duplicate key " + JsonQuote(key));
      }
      SkipWhitespace();
      Expect(':');
      SkipWhitespace();
      JsonValue member = ParseValue(depth);
      value->object.emplace_back(std::move(key), std::move(member));
      SkipWhitespace();
      if (!AtEnd() && Peek() == ',') {
        ++pos_;
        continue;
      }
      Expect('}');
      return;
    }
  }

  void ParseArray(int depth, JsonValue* value) {
    CheckDepth(depth);
    value->type = JsonValue::Type::kArray;
    ++pos_;  // '['
    SkipWhitespace();
    if (!AtEnd() && Peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      SkipWhitespace();
      value->array.push_back(ParseValue(depth));
      SkipWhitespace();
      if (!AtEnd() && Peek() == ',') {
        ++pos_;
        continue;
      }
      Expect(']');
      return;
    }
  }

  void ParseLiteral(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal) Fail("invalid literal");
    pos_ += literal.size();
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  void ParseNumber(JsonValue* value) {
    const size_t start = pos_;
    auto digits = [this] {
      if (AtEnd() || !IsDigit(Peek())) Fail("expected a digit");
      while (!AtEnd() && IsDigit(Peek())) ++pos_;
    };
    if (Peek() == '-') ++pos_;
    if (!AtEnd() && Peek() == '0') {
      ++pos_;
      if (!AtEnd() && IsDigit(Peek())) Fail("leading zero in a number");
    } else {
      digits();
    }
    if (!AtEnd() && Peek() == '.') {
      ++pos_;
      digits();
    }
    if (!AtEnd() && (Peek() == 'e' || Peek() == 'E')) {
      ++pos_;
      if (!AtEnd() && (Peek() == '+' || Peek() == '-')) ++pos_;
      digits();
    }
    value->type = JsonValue::Type::kNumber;
    value->text = std::string(text_.substr(start, pos_ - start));
    const char* first = text_.data() + start;
    const auto [end, error] =
        std::from_chars(first, text_.data() + pos_, value->number);
    if (error == std::errc::result_out_of_range) {
      pos_ = start;
      Fail("number out of range");
    }
    if (error != std::errc() || end != text_.data() + pos_) {
      pos_ = start;
      Fail("invalid number");
    }
  }

  uint32_t ParseHex4() {
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const int digit = AtEnd() ? -1 : HexDigit(Peek());
      if (digit < 0) Fail("expected 4 hex digits after \\u");
      code = code * 16 + static_cast<uint32_t>(digit);
      ++pos_;
    }
    return code;
  }

  // At a backslash: appends the escaped character.
  void ParseEscape(std::string* out) {
    const size_t start = pos_;
    ++pos_;  // '\\'
    if (AtEnd()) Fail("unterminated string");
    const char c = Peek();
    ++pos_;
    switch (c) {
      case '"':
        *out += '"';
        return;
      case '\\':
        *out += '\\';
        return;
      case '/':
        *out += '/';
        return;
      case 'b':
        *out += '\b';
        return;
      case 'f':
        *out += '\f';
        return;
      case 'n':
        *out += '\n';
        return;
      case 'r':
        *out += '\r';
        return;
      case 't':
        *out += '\t';
        return;
      case 'u':
        break;
      default:
        pos_ = start;
        Fail("invalid escape sequence");
    }
    uint32_t code = ParseHex4();
    if (code >= 0xDC00 && code <= 0xDFFF) {
      pos_ = start;
      Fail("unpaired low surrogate in \\u escape");
    }
    if (code >= 0xD800 && code <= 0xDBFF) {
      // A UTF-16 surrogate pair spells one code point beyond U+FFFF.
      if (text_.substr(pos_, 2) != "\\u") {
        pos_ = start;
        Fail("unpaired high surrogate in \\u escape");
      }
      pos_ += 2;
      const uint32_t low = ParseHex4();
      if (low < 0xDC00 || low > 0xDFFF) {
        pos_ = start;
        Fail("unpaired high surrogate in \\u escape");
      }
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    }
    AppendUtf8(code, out);
  }

  // At a byte >= 0x80: checks one UTF-8 sequence (no overlong forms, no
  // surrogates, nothing beyond U+10FFFF) and appends it.
  void ParseUtf8(std::string* out) {
    const auto byte = [this](size_t i) {
      return static_cast<uint8_t>(text_[pos_ + i]);
    };
    const uint8_t lead = byte(0);
    size_t length;
    uint32_t code;
    uint32_t min;
    if ((lead & 0xE0) == 0xC0) {
      length = 2, code = lead & 0x1F, min = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code = lead & 0x0F, min = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code = lead & 0x07, min = 0x10000;
    } else {
      Fail("invalid UTF-8 in string");
    }
    if (text_.size() - pos_ < length) Fail("invalid UTF-8 in string");
    for (size_t i = 1; i < length; ++i) {
      if ((byte(i) & 0xC0) != 0x80) Fail("invalid UTF-8 in string");
      code = (code << 6) | (byte(i) & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      Fail("invalid UTF-8 in string");
    }
    out->append(text_.substr(pos_, length));
    pos_ += length;
  }

  std::string ParseString() {
    const size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (AtEnd()) {
        pos_ = start;
        Fail("unterminated string");
      }
      const auto c = static_cast<uint8_t>(Peek());
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '\\') {
        ParseEscape(&out);
      } else if (c < 0x20) {
        Fail("control character in string");
      } else if (c >= 0x80) {
        ParseUtf8(&out);
      } else {
        out += static_cast<char>(c);
        ++pos_;
      }
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

const JsonValue* JsonValue::Find(std::string_view key) const {
  for (const auto& [name, value] : object) {
    if (name == key) return &value;
  }
  return nullptr;
}

bool JsonValue::GetUint64(uint64_t* out) const {
  if (type != Type::kNumber || text.empty() || !IsDigit(text[0])) return false;
  const char* end = text.data() + text.size();
  const auto [ptr, error] = std::from_chars(text.data(), end, *out);
  return error == std::errc() && ptr == end;
}

JsonValue ParseJson(std::string_view text) {
  return Parser(text).ParseDocument();
}

std::string JsonQuote(std::string_view value) {
  std::string out = "\"";
  for (const char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<uint8_t>(c) < 0x20) {
          char escape[8];
          std::snprintf(escape, sizeof(escape), "\\u%04x", c);
          out += escape;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void JsonWriter::BeginValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!empty_.empty()) {
    if (!empty_.back()) text_ += ',';
    empty_.back() = false;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  BeginValue();
  text_ += '{';
  empty_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  text_ += '}';
  empty_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  BeginValue();
  text_ += '[';
  empty_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  text_ += ']';
  empty_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  BeginValue();
  text_ += JsonQuote(key);
  text_ += ':';
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view value) {
  BeginValue();
  text_ += JsonQuote(value);
  return *this;
}

JsonWriter& JsonWriter::Number(double value) {
  if (!std::isfinite(value)) return Null();
  BeginValue();
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  text_.append(buffer, result.ptr);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t value) {
  BeginValue();
  text_ += std::to_string(value);
  return *this;
}

JsonWriter& JsonWriter::Bool(bool value) {
  BeginValue();
  text_ += value ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::Null() {
  BeginValue();
  text_ += "null";
  return *this;
}

}  // namespace kvc::tools
