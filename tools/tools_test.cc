// Unit tests of the kvc tools' JSON and safetensors code and eval metrics.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tools/error.h"
#include "tools/eval_metrics.h"
#include "tools/file_util.h"
#include "tools/json.h"
#include "tools/safetensors.h"

namespace kvc::tools {
namespace {

using Type = JsonValue::Type;

// The message of the Error that `parse` throws, or "" if it throws none.
template <typename F>
std::string ErrorOf(F parse) {
  try {
    parse();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string JsonError(const std::string& text) {
  return ErrorOf([&] { ParseJson(text); });
}

TEST_CASE("json: values") {
  const JsonValue v = ParseJson(
      " {\"a\": [1, -2.5e1, true, false, null], \"b\": {\"c\": \"d\"}, "
      "\"e\": [], \"f\": {}} ");
  REQUIRE(v.type == Type::kObject);
  const JsonValue* a = v.Find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->array.size() == 5);
  CHECK(a->array[0].number == 1);
  CHECK(a->array[1].number == -25);
  CHECK(a->array[2].type == Type::kBool);
  CHECK(a->array[2].boolean);
  CHECK_FALSE(a->array[3].boolean);
  CHECK(a->array[4].type == Type::kNull);
  CHECK(v.Find("b")->Find("c")->text == "d");
  CHECK(v.Find("e")->array.empty());
  CHECK(v.Find("f")->type == Type::kObject);
  CHECK(v.Find("missing") == nullptr);
  CHECK(a->Find("a") == nullptr);  // Not an object.
  CHECK(ParseJson("-0").number == 0);
  CHECK(ParseJson("0.125").number == 0.125);
  CHECK(ParseJson("1E-2").number == 0.01);
}

TEST_CASE("json: strings and escapes") {
  CHECK(ParseJson(R"("a\"b\\c\/d\b\f\n\r\t")").text == "a\"b\\c/d\b\f\n\r\t");
  CHECK(ParseJson(R"("\u00e9\u20AC")").text == "\xC3\xA9\xE2\x82\xAC");
  CHECK(ParseJson(R"("\ud83d\ude00")").text == "\xF0\x9F\x98\x80");
  CHECK(ParseJson("\"\xC3\xA9\xF0\x9F\x98\x80\"").text ==
        "\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(ParseJson(R"("\u0000")").text == std::string(1, '\0'));
}

TEST_CASE("json: exact integers") {
  uint64_t n = 0;
  CHECK(ParseJson("18446744073709551615").GetUint64(&n));
  CHECK(n == UINT64_MAX);
  CHECK(ParseJson("9007199254740993").GetUint64(&n));
  CHECK(n == 9007199254740993u);  // 2^53 + 1: not a double.
  CHECK_FALSE(ParseJson("18446744073709551616").GetUint64(&n));
  CHECK_FALSE(ParseJson("-1").GetUint64(&n));
  CHECK_FALSE(ParseJson("1.0").GetUint64(&n));
  CHECK_FALSE(ParseJson("1e3").GetUint64(&n));
  CHECK_FALSE(ParseJson("\"1\"").GetUint64(&n));
}

TEST_CASE("json: malformed input reports the byte offset") {
  CHECK(JsonError("") == "JSON: expected a value but the input ends at byte 0");
  CHECK(JsonError("[1,]") == "JSON: expected a value at byte 3");
  CHECK(JsonError("[1,") ==
        "JSON: expected a value but the input ends at byte 3");
  CHECK(JsonError("[1 2]") == "JSON: expected ']' at byte 3");
  CHECK(JsonError("{\"a\":1,}") ==
        "JSON: expected a string as object key at byte 7");
  CHECK(JsonError("{\"a\" 1}") == "JSON: expected ':' at byte 5");
  CHECK(JsonError("{1:2}") ==
        "JSON: expected a string as object key at byte 1");
  CHECK(JsonError("{\"a\":1,\"a\":2}") ==
        "JSON: duplicate key \"a\" at byte 7");
  CHECK(JsonError("1 2") ==
        "JSON: unexpected data after the JSON value at byte 2");
  CHECK(JsonError("01") == "JSON: leading zero in a number at byte 1");
  CHECK(JsonError("1.") == "JSON: expected a digit at byte 2");
  CHECK(JsonError("-") == "JSON: expected a digit at byte 1");
  CHECK(JsonError("+1") == "JSON: expected a value at byte 0");
  CHECK(JsonError("1e400") == "JSON: number out of range at byte 0");
  CHECK(JsonError("tru") == "JSON: invalid literal at byte 0");
  CHECK(JsonError("nul") == "JSON: invalid literal at byte 0");
  CHECK(JsonError("\"abc") == "JSON: unterminated string at byte 0");
  CHECK(JsonError("[\"a\\q\"]") == "JSON: invalid escape sequence at byte 3");
  CHECK(JsonError("\"\\u12G4\"") ==
        "JSON: expected 4 hex digits after \\u at byte 5");
  CHECK(JsonError("\"\\ud800\"") ==
        "JSON: unpaired high surrogate in \\u escape at byte 1");
  CHECK(JsonError("\"\\ud800\\u0041\"") ==
        "JSON: unpaired high surrogate in \\u escape at byte 1");
  CHECK(JsonError("\"\\udc00\"") ==
        "JSON: unpaired low surrogate in \\u escape at byte 1");
  CHECK(JsonError("\"a\tb\"") == "JSON: control character in string at byte 2");
  CHECK(JsonError("\"\xC0\x80\"") == "JSON: invalid UTF-8 in string at byte 1");
  CHECK(JsonError("\"\xED\xA0\x80\"") ==
        "JSON: invalid UTF-8 in string at byte 1");
  CHECK(JsonError("\"\xF4\x90\x80\x80\"") ==
        "JSON: invalid UTF-8 in string at byte 1");
  CHECK(JsonError("\"\xE2\x82\"") == "JSON: invalid UTF-8 in string at byte 1");
  CHECK(JsonError("\"\x80\"") == "JSON: invalid UTF-8 in string at byte 1");
  CHECK(JsonError(std::string("[1\0]", 4)) == "JSON: expected ']' at byte 2");
}

TEST_CASE("json: nesting depth is limited") {
  const auto nested = [](int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  CHECK(ParseJson(nested(kJsonMaxDepth)).type == Type::kArray);
  CHECK(JsonError(nested(kJsonMaxDepth + 1)) ==
        "JSON: nesting deeper than 64 levels at byte 64");
  // Far too deep input fails at the limit, without exhausting the stack.
  CHECK(JsonError(std::string(1000000, '[')) ==
        "JSON: nesting deeper than 64 levels at byte 64");
  CHECK(JsonError(std::string(100, '{')) ==
        "JSON: expected a string as object key at byte 1");
}

TEST_CASE("json: writer") {
  JsonWriter w;
  w.BeginObject();
  w.Key("s").String("a\"b\\c\n\x01");
  w.Key("n").BeginArray().Number(0.1).Number(-3).Number(1e300).EndArray();
  w.Key("bad").BeginArray().Number(NAN).Number(INFINITY).Number(-INFINITY);
  w.EndArray();
  w.Key("u").Uint(UINT64_MAX);
  w.Key("b").Bool(true).Key("z").Null();
  w.Key("o").BeginObject().EndObject();
  w.Key("a").BeginArray().BeginObject().Key("x").Uint(1).EndObject();
  w.BeginObject().EndObject().EndArray();
  w.EndObject();
  CHECK(w.text() ==
        "{\"s\":\"a\\\"b\\\\c\\n\\u0001\",\"n\":[0.1,-3,1e+300],"
        "\"bad\":[null,null,null],\"u\":18446744073709551615,\"b\":true,"
        "\"z\":null,\"o\":{},\"a\":[{\"x\":1},{}]}");
  const JsonValue v = ParseJson(w.text());
  CHECK(v.Find("s")->text == "a\"b\\c\n\x01");
  CHECK(v.Find("n")->array[0].number == 0.1);
}

// A scratch directory for files, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("kvc_tools_test_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

// A safetensors file with the given header and `data_size` zero data bytes.
std::vector<uint8_t> MakeFile(const std::string& header, size_t data_size) {
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) {
    file[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
  }
  file += header;
  file.resize(file.size() + data_size);
  return std::vector<uint8_t>(file.begin(), file.end());
}

std::string ParseError(const std::vector<uint8_t>& bytes) {
  return ErrorOf([&] { SafetensorsFile::Parse(bytes, "x.safetensors"); });
}

TEST_CASE("safetensors: write and read back") {
  TempDir dir;
  const std::string path = dir.File("a.safetensors");
  const uint16_t halves[6] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x8000, 0x3555};
  const uint16_t bfloats[2] = {0x3F80, 0xC0A0};
  const float floats[3] = {1.5f, -0.25f, 3e38f};
  const int32_t ints[1] = {-7};
  WriteSafetensors(path, {{"rope_layout", "split-half"}, {"x", "\"y\""}},
                   {{"h", "F16", {2, 3}, halves, sizeof(halves)},
                    {"b", "BF16", {2}, bfloats, sizeof(bfloats)},
                    {"f", "F32", {1, 3}, floats, sizeof(floats)},
                    {"i", "I32", {}, ints, sizeof(ints)},
                    {"empty", "F32", {0, 4}, nullptr, 0}});
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  const std::vector<uint8_t> bytes = ReadFile(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  CHECK((8 + header_size) % 8 == 0);

  const SafetensorsFile file = SafetensorsFile::Read(path);
  CHECK(file.metadata().at("rope_layout") == "split-half");
  CHECK(file.metadata().at("x") == "\"y\"");
  REQUIRE(file.tensors().size() == 5);
  CHECK(file.tensors()[0].name == "h");
  CHECK(file.tensors()[4].name == "empty");
  const SafetensorsTensor* h = file.Find("h");
  REQUIRE(h != nullptr);
  CHECK(h->dtype == "F16");
  CHECK(h->shape == std::vector<uint64_t>{2, 3});
  CHECK(h->element_count == 6);
  CHECK(std::memcmp(file.Data(*h), halves, sizeof(halves)) == 0);
  const std::vector<float> h32 = file.ReadFloat32(*h);
  CHECK(h32 == std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24), 65504.0f,
                                  -0.0f, 0.333251953125f});
  CHECK(std::signbit(h32[4]));
  CHECK(file.ReadFloat32(*file.Find("b")) == std::vector<float>{1.0f, -5.0f});
  CHECK(file.ReadFloat32(*file.Find("f")) ==
        std::vector<float>{1.5f, -0.25f, 3e38f});
  const SafetensorsTensor* i = file.Find("i");
  CHECK(i->shape.empty());
  CHECK(i->element_count == 1);
  CHECK(ErrorOf([&] { file.ReadFloat32(*i); }) ==
        path + ": tensor i has dtype I32, not F16, BF16 or F32");
  CHECK(file.Find("empty")->element_count == 0);
  CHECK(file.Find("nope") == nullptr);
}

// The format is little-endian whatever the host: on a big-endian one, kvc
// converts on reading and writing (tools/cross-test s390x runs this).
TEST_CASE("safetensors: data is little-endian in the file, host order in memory") {
  TempDir dir;
  const std::string path = dir.File("le.safetensors");
  const uint16_t half = 0x3C01;
  const float one_and_a_bit = 1.0f + std::ldexp(1.0f, -23);  // bits 0x3F800001
  const int64_t big = 0x0102030405060708;
  const uint8_t bytes[2] = {0xAB, 0xCD};
  WriteSafetensors(path, {},
                   {{"h", "F16", {1}, &half, 2},
                    {"f", "F32", {1}, &one_and_a_bit, 4},
                    {"l", "I64", {1}, &big, 8},
                    {"u", "U8", {2}, bytes, 2}});
  const std::vector<uint8_t> file_bytes = ReadFile(path);
  REQUIRE(file_bytes.size() >= 16);
  const std::vector<uint8_t> data(file_bytes.end() - 16, file_bytes.end());
  CHECK(data == std::vector<uint8_t>{0x01, 0x3C, 0x01, 0x00, 0x80, 0x3F, 8, 7, 6, 5,
                                     4, 3, 2, 1, 0xAB, 0xCD});

  const SafetensorsFile file = SafetensorsFile::Read(path);
  uint16_t h;
  std::memcpy(&h, file.Data(*file.Find("h")), 2);
  CHECK(h == half);
  int64_t l;
  std::memcpy(&l, file.Data(*file.Find("l")), 8);
  CHECK(l == big);
  CHECK(file.Data(*file.Find("u"))[0] == 0xAB);
  CHECK(file.ReadFloat32(*file.Find("f")) == std::vector<float>{one_and_a_bit});
  CHECK(file.ReadFloat32(*file.Find("h")) == std::vector<float>{HalfToFloat(half)});

  // Pieces of whole elements only: a split element could not be converted.
  SafetensorsWriter writer(dir.File("split.safetensors"), {}, {{"f", "F32", {2}}});
  writer.Write(&one_and_a_bit, 4);
  CHECK(ErrorOf([&] { writer.Write(&one_and_a_bit, 2); }) ==
        dir.File("split.safetensors") +
            ": tensor data written in pieces that split a 4-byte element");
}

TEST_CASE("safetensors: writer rejects a size that does not fit the shape") {
  TempDir dir;
  const std::string path = dir.File("bad.safetensors");
  const float data[3] = {};
  CHECK(
      ErrorOf([&] {
        WriteSafetensors(path, {}, {{"t", "F32", {2, 2}, data, sizeof(data)}});
      }) ==
      path + ": tensor t of shape [2, 2] and dtype F32 cannot hold 12 bytes");
  CHECK(ErrorOf([&] {
          WriteSafetensors(path, {}, {{"t", "Q4", {3}, data, sizeof(data)}});
        }) == path + ": tensor t: unknown dtype Q4");
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("safetensors: minimal and unusual valid files") {
  CHECK(SafetensorsFile::Parse(MakeFile("{}", 0), "x").tensors().empty());
  // Unknown dtypes are listed, unchecked; padding spaces are whitespace.
  const SafetensorsFile file = SafetensorsFile::Parse(
      MakeFile(R"({"q":{"dtype":"Q4_K","shape":[3],"data_offsets":[0,5]}}   )",
               5),
      "x");
  REQUIRE(file.tensors().size() == 1);
  CHECK(file.tensors()[0].element_size == 0);
  CHECK(file.tensors()[0].dtype == "Q4_K");
}

TEST_CASE("safetensors: malformed files give clean errors") {
  CHECK(ParseError({}) ==
        "x.safetensors: file is 0 bytes, too short for a safetensors header");
  CHECK(ParseError(std::vector<uint8_t>(7, 2)) ==
        "x.safetensors: file is 7 bytes, too short for a safetensors header");
  std::vector<uint8_t> huge(16, 0xFF);
  CHECK(ParseError(huge) ==
        "x.safetensors: header length 18446744073709551615 exceeds the file "
        "size (16 bytes): not a safetensors file, or truncated");
  std::vector<uint8_t> truncated = MakeFile("{\"a\":1}", 0);
  truncated.pop_back();
  CHECK(ParseError(truncated) ==
        "x.safetensors: header length 7 exceeds the file size (14 bytes): not "
        "a safetensors file, or truncated");
  CHECK(ParseError(MakeFile("{\"a\":", 0)) ==
        "x.safetensors: header: JSON: expected a value but the input ends at "
        "byte 5 of the header");
  CHECK(ParseError(MakeFile("[]", 0)) ==
        "x.safetensors: header is not a JSON object");
  CHECK(ParseError(MakeFile(R"({"__metadata__":{"a":1}})", 0)) ==
        "x.safetensors: __metadata__ value \"a\" is not a string");
  CHECK(ParseError(MakeFile(R"({"__metadata__":[]})", 0)) ==
        "x.safetensors: __metadata__ is not a JSON object");

  const auto tensor_error = [](const std::string& entry, size_t data_size) {
    return ParseError(MakeFile("{\"t\":" + entry + "}", data_size));
  };
  CHECK(tensor_error("[]", 0) ==
        "x.safetensors: tensor t: entry is not a JSON object");
  CHECK(tensor_error(R"({"shape":[],"data_offsets":[0,0]})", 0) ==
        "x.safetensors: tensor t: dtype is missing or not a string");
  CHECK(tensor_error(R"({"dtype":"F16","data_offsets":[0,0]})", 0) ==
        "x.safetensors: tensor t: shape is not an array");
  CHECK(
      tensor_error(R"({"dtype":"F16","shape":[-1],"data_offsets":[0,0]})", 0) ==
      "x.safetensors: tensor t: shape holds -1, not a non-negative integer");
  CHECK(tensor_error(R"({"dtype":"F16","shape":["2"],"data_offsets":[0,0]})",
                     0) ==
        "x.safetensors: tensor t: shape holds a non-number, not a "
        "non-negative integer");
  CHECK(tensor_error(R"({"dtype":"F16","shape":[1],"data_offsets":[0]})", 2) ==
        "x.safetensors: tensor t: data_offsets must hold 2 numbers");
  CHECK(tensor_error(
            R"({"dtype":"F16","shape":[1],"data_offsets":[0,2],"x":1})", 2) ==
        "x.safetensors: tensor t: unknown field \"x\"");
  CHECK(
      tensor_error(R"({"dtype":"F16","shape":[1],"data_offsets":[4,2]})", 4) ==
      "x.safetensors: tensor t: data_offsets [4, 2] are reversed");
  CHECK(
      tensor_error(R"({"dtype":"F16","shape":[2],"data_offsets":[2,6]})", 5) ==
      "x.safetensors: tensor t: data_offsets [2, 6] lie outside the data "
      "section (5 bytes)");
  CHECK(
      tensor_error(
          R"({"dtype":"F16","shape":[1],"data_offsets":[0,18446744073709551615]})",
          2) ==
      "x.safetensors: tensor t: data_offsets [0, 18446744073709551615] lie "
      "outside the data section (2 bytes)");
  CHECK(tensor_error(R"({"dtype":"F16","shape":[2,3],"data_offsets":[0,10]})",
                     12) ==
        "x.safetensors: tensor t: shape [2, 3] of F16 does not match "
        "data_offsets [0, 10] (10 bytes)");
  // The element count fits in 64 bits but its size in bytes does not.
  CHECK(
      tensor_error(
          R"({"dtype":"F32","shape":[4294967296,4294967295],"data_offsets":[0,4]})",
          4) ==
      "x.safetensors: tensor t: shape [4294967296, 4294967295] of F32 does "
      "not match data_offsets [0, 4] (4 bytes)");
  CHECK(
      tensor_error(
          R"({"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]})",
          4) ==
      "x.safetensors: tensor t: shape [4294967296, 4294967296, 2] is too "
      "large");
  CHECK(ParseError(
            MakeFile(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})",
                     5)) == "x.safetensors: tensors a and b overlap");
}

TEST_CASE("files: errors name the file") {
  TempDir dir;
  const std::string missing = dir.File("missing.safetensors");
  CHECK(ErrorOf([&] { SafetensorsFile::Read(missing); }) ==
        missing + ": cannot open: No such file or directory");
  const std::string unwritable = dir.File("no/such/dir/out");
  CHECK(ErrorOf([&] { AtomicFile file(unwritable); }) ==
        unwritable + ".tmp: cannot create: No such file or directory");
  {
    AtomicFile abandoned(dir.File("abandoned"));
    abandoned.Write("abc", 3);
  }
  CHECK_FALSE(std::filesystem::exists(dir.File("abandoned")));
  CHECK_FALSE(std::filesystem::exists(dir.File("abandoned.tmp")));
}

TEST_CASE("half and bfloat16 conversion") {
  CHECK(HalfToFloat(0x0000) == 0.0f);
  CHECK(HalfToFloat(0x03FF) == std::ldexp(1023.0f, -24));  // Subnormal.
  CHECK(HalfToFloat(0x0400) == std::ldexp(1.0f, -14));
  CHECK(HalfToFloat(0xFC00) == -INFINITY);
  CHECK(std::isnan(HalfToFloat(0x7E00)));
  CHECK(Bfloat16ToFloat(0x7F80) == INFINITY);
  CHECK(Bfloat16ToFloat(0x0001) == std::ldexp(1.0f, -133));
}

// Reference for CompareAttention: every product in double, no tiling.
AttentionError NaiveAttention(const std::vector<float>& q,
                              const std::vector<float>& k,
                              const std::vector<float>& k_hat,
                              const AttentionShape& shape) {
  const size_t n = shape.tokens;
  const size_t dim = shape.head_dim;
  const auto dot = [dim](const float* a, const float* b) {
    double sum = 0;
    for (size_t d = 0; d < dim; ++d) sum += double{a[d]} * b[d];
    return sum;
  };
  AttentionError out;
  for (size_t h = 0; h < shape.q_heads; ++h) {
    const size_t g = h / (shape.q_heads / shape.kv_heads);
    for (size_t t = 0; t < n; ++t) {
      const float* qt = &q[(h * n + t) * dim];
      std::vector<double> x(n), y(n);
      for (size_t s = 0; s < n; ++s) {
        x[s] = dot(qt, &k[(g * n + s) * dim]);
        y[s] = dot(qt, &k_hat[(g * n + s) * dim]);
        out.logits.error += (x[s] - y[s]) * (x[s] - y[s]);
        out.logits.reference += x[s] * x[s];
      }
      double zx = 0, zy = 0;
      for (size_t s = 0; s <= t; ++s) {
        zx += std::exp(x[s] / std::sqrt(double(dim)));
        zy += std::exp(y[s] / std::sqrt(double(dim)));
      }
      for (size_t s = 0; s <= t; ++s) {
        const double p = std::exp(x[s] / std::sqrt(double(dim))) / zx;
        const double p_hat = std::exp(y[s] / std::sqrt(double(dim))) / zy;
        out.kl_sum += p * std::log(p / p_hat);
      }
      ++out.kl_count;
    }
  }
  return out;
}

TEST_CASE("eval metrics match a naive reference (GQA, several tiles)") {
  const AttentionShape shape{/*q_heads=*/6, /*kv_heads=*/2, /*tokens=*/300,
                             /*head_dim=*/16};
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> q(shape.q_heads * shape.tokens * shape.head_dim);
  std::vector<float> k(shape.kv_heads * shape.tokens * shape.head_dim);
  std::vector<float> k_hat(k.size());
  for (float& x : q) x = 2 * normal(rng);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = normal(rng);
    k_hat[i] = k[i] + 0.1f * normal(rng);
  }
  const AttentionError fast =
      CompareAttention(q.data(), k.data(), k_hat.data(), shape);
  const AttentionError naive = NaiveAttention(q, k, k_hat, shape);
  CHECK(fast.kl_count == shape.q_heads * shape.tokens);
  CHECK(fast.kl_count == naive.kl_count);
  CHECK(fast.logits.error == doctest::Approx(naive.logits.error).epsilon(1e-5));
  CHECK(fast.logits.reference ==
        doctest::Approx(naive.logits.reference).epsilon(1e-5));
  CHECK(fast.kl_sum == doctest::Approx(naive.kl_sum).epsilon(1e-4));
  CHECK(fast.kl_sum > 0);

  // Identical keys: exactly no error.
  const AttentionError same =
      CompareAttention(q.data(), k.data(), k.data(), shape);
  CHECK(same.logits.error == 0);
  CHECK(same.kl_sum == 0);

  const ErrorEnergy values = CompareValues(k.data(), k_hat.data(), k.size());
  CHECK(values.Ratio() == doctest::Approx(0.01).epsilon(0.1));
  const float zero[2] = {0, 0};
  CHECK(std::isnan(CompareValues(zero, zero, 2).Ratio()));
}

}  // namespace
}  // namespace kvc::tools
