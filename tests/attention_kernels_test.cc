// The attention kernels (simd/attention_kernels.h) against double-precision
// references on every Highway target, and the in-domain Scores / Attend of
// TurboQuant-MSE, TurboQuant-prod, the outlier split, Block-GTQ and RAW
// against decode-then-compute: |score - ref| <= 1e-5 * |q| * |k| and
// |out_i - ref_i| <= 1e-5 * sum_t |w_t| * |v_t| (issue 8). Records are laid
// out in buffers of exactly their size, so that the sanitizer builds catch
// any read past them.
#include <doctest/doctest.h>

#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "config/tensor_config.h"
#include "quant/scalars.h"
#include "quant/tensor_codec.h"
#include "simd/attention_kernels.h"
#include "simd/bitpack.h"
#include "test_util.h"

#if __has_include(<sys/mman.h>) && __has_include(<unistd.h>)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace {

constexpr double kTolerance = 1e-5;

std::vector<int64_t> Targets() {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  return std::vector<int64_t>(targets.rbegin(), targets.rend());
}

std::vector<float> Uniform(size_t n, std::mt19937* rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(*rng);
  return v;
}

double Norm(const float* x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s);
}

// Rows of random indices packed at `stride` bytes in a buffer of exactly
// count * stride bytes (the last row's padding bytes included).
struct PackedRows {
  std::vector<uint8_t> indices;  // count x dim, unpacked
  std::unique_ptr<uint8_t[]> bytes;
  size_t stride;
};

PackedRows MakeRows(size_t count, size_t dim, int bits, size_t extra_stride, std::mt19937* rng) {
  PackedRows rows;
  rows.stride = (dim * bits + 7) / 8 + extra_stride;
  rows.indices.resize(count * dim);
  rows.bytes.reset(new uint8_t[count * rows.stride]());
  std::uniform_int_distribution<int> pick(0, (1 << bits) - 1);
  for (uint8_t& i : rows.indices) i = static_cast<uint8_t>(pick(*rng));
  for (size_t n = 0; n < count; ++n) {
    kvc::PackBits(&rows.indices[n * dim], dim, bits, rows.bytes.get() + n * rows.stride);
  }
  return rows;
}

void CheckIndexRows(size_t count, size_t dim, int bits, size_t num_queries, size_t extra_stride,
                    std::mt19937* rng) {
  CAPTURE(count);
  CAPTURE(dim);
  CAPTURE(bits);
  CAPTURE(num_queries);
  const PackedRows rows = MakeRows(count, dim, bits, extra_stride, rng);
  const std::vector<float> table = Uniform(size_t{1} << bits, rng, 2.0f);
  const std::vector<float> queries = Uniform(num_queries * dim, rng);
  const std::vector<float> weights = Uniform(num_queries * count, rng);
  const kvc::simd::IndexRows view{rows.bytes.get(), rows.stride, count, dim, bits, table.data()};

  // Dots (and squared lengths), with a dot stride wider than count.
  const size_t dot_stride = count + 3;
  std::vector<float> dots(num_queries * dot_stride, -7.0f), len2(count, -7.0f);
  kvc::simd::IndexRowDots(view, queries.data(), num_queries, dots.data(), dot_stride, len2.data());
  std::vector<float> entries(dim);
  for (size_t n = 0; n < count; ++n) {
    double length2 = 0;
    for (size_t j = 0; j < dim; ++j) {
      entries[j] = table[rows.indices[n * dim + j]];
      length2 += double(entries[j]) * entries[j];
    }
    REQUIRE(std::fabs(len2[n] - length2) <= kTolerance * length2 + 1e-30);
    for (size_t q = 0; q < num_queries; ++q) {
      double ref = 0;
      for (size_t j = 0; j < dim; ++j) ref += double(entries[j]) * queries[q * dim + j];
      const double bound = kTolerance * Norm(&queries[q * dim], dim) * std::sqrt(length2);
      REQUIRE(std::fabs(dots[q * dot_stride + n] - ref) <= bound + 1e-30);
    }
  }
  // Without len2, the dots alone agree.
  std::vector<float> again(num_queries * dot_stride, -7.0f);
  kvc::simd::IndexRowDots(view, queries.data(), num_queries, again.data(), dot_stride, nullptr);
  for (size_t q = 0; q < num_queries; ++q) {
    for (size_t n = 0; n < count; ++n) {
      REQUIRE(again[q * dot_stride + n] == dots[q * dot_stride + n]);
    }
  }

  // Weighted sums, out overwritten.
  std::vector<float> out(num_queries * dim, 123.0f);
  kvc::simd::IndexRowSums(view, weights.data(), count, num_queries, out.data());
  for (size_t q = 0; q < num_queries; ++q) {
    double bound = 0;
    for (size_t n = 0; n < count; ++n) {
      double length2 = 0;
      for (size_t j = 0; j < dim; ++j) {
        const double e = table[rows.indices[n * dim + j]];
        length2 += e * e;
      }
      bound += std::fabs(weights[q * count + n]) * std::sqrt(length2);
    }
    for (size_t j = 0; j < dim; ++j) {
      double ref = 0;
      for (size_t n = 0; n < count; ++n) {
        ref += double(weights[q * count + n]) * table[rows.indices[n * dim + j]];
      }
      REQUIRE(std::fabs(out[q * dim + j] - ref) <= kTolerance * bound + 1e-30);
    }
  }
}

// Field rows: records of `dim` random indices `record_bits` apart from bit
// `first_bit` of a stream with exactly the 8 bytes of room past them that
// FieldRowDots may read, the other bits of the stream random.
void CheckFieldRows(size_t count, size_t dim, int bits, size_t num_queries, size_t first_bit,
                    size_t record_bits, std::mt19937* rng) {
  CAPTURE(count);
  CAPTURE(dim);
  CAPTURE(bits);
  CAPTURE(num_queries);
  CAPTURE(first_bit);
  CAPTURE(record_bits);
  const size_t end_bit = first_bit + (count - 1) * record_bits + dim * bits;
  const size_t size = (end_bit + 7) / 8 + 8;
  std::unique_ptr<uint8_t[]> stream(new uint8_t[size]);
  for (size_t i = 0; i < size; ++i) stream[i] = static_cast<uint8_t>((*rng)());
  std::vector<uint8_t> indices(count * dim);
  std::uniform_int_distribution<int> pick(0, (1 << bits) - 1);
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = 0; j < dim; ++j) {
      const uint8_t index = static_cast<uint8_t>(pick(*rng));
      indices[n * dim + j] = index;
      for (int b = 0; b < bits; ++b) {
        const size_t bit = first_bit + n * record_bits + j * bits + b;
        stream[bit / 8] = static_cast<uint8_t>((stream[bit / 8] & ~(1u << (bit % 8))) |
                                               ((index >> b) & 1u) << (bit % 8));
      }
    }
  }
  const std::vector<float> table = Uniform(size_t{1} << bits, rng, 2.0f);
  const std::vector<float> queries = Uniform(num_queries * dim, rng);
  const kvc::simd::FieldRows view{stream.get(), first_bit, record_bits, count, dim, bits,
                                  table.data()};
  const size_t dot_stride = count + 3;
  std::vector<float> dots(num_queries * dot_stride, -7.0f), len2(count, -7.0f);
  kvc::simd::FieldRowDots(view, queries.data(), num_queries, dots.data(), dot_stride,
                          len2.data());
  for (size_t n = 0; n < count; ++n) {
    double length2 = 0;
    for (size_t j = 0; j < dim; ++j) {
      const double e = table[indices[n * dim + j]];
      length2 += e * e;
    }
    REQUIRE(std::fabs(len2[n] - length2) <= kTolerance * length2 + 1e-30);
    for (size_t q = 0; q < num_queries; ++q) {
      double ref = 0;
      for (size_t j = 0; j < dim; ++j) {
        ref += double(table[indices[n * dim + j]]) * queries[q * dim + j];
      }
      const double bound = kTolerance * Norm(&queries[q * dim], dim) * std::sqrt(length2);
      REQUIRE(std::fabs(dots[q * dot_stride + n] - ref) <= bound + 1e-30);
    }
  }
  // Nothing written past the rows, and without len2 the same dots.
  for (size_t q = 0; q < num_queries; ++q) {
    for (size_t n = count; n < dot_stride; ++n) REQUIRE(dots[q * dot_stride + n] == -7.0f);
  }
  std::vector<float> again(num_queries * dot_stride, -7.0f);
  kvc::simd::FieldRowDots(view, queries.data(), num_queries, again.data(), dot_stride, nullptr);
  REQUIRE(again == dots);

  // Gained dots, added in place: gain = norm / |row| with norm correction
  // (0 for a zero norm), else norm / sqrt(dim).
  std::vector<float> norms = Uniform(count, rng, 3.0f);
  for (float& norm : norms) norm = std::fabs(norm);
  norms[0] = 0.0f;
  for (bool norm_correction : {true, false}) {
    CAPTURE(norm_correction);
    const float sqrt_dim = std::sqrt(static_cast<float>(dim));
    std::vector<float> added = Uniform(num_queries * dot_stride, rng);
    const std::vector<float> before = added;
    kvc::simd::FieldRowGainedDots(view, queries.data(), num_queries,
                                  {norms.data(), norm_correction, sqrt_dim}, added.data(),
                                  dot_stride);
    for (size_t n = 0; n < count; ++n) {
      const double length = std::sqrt(double(len2[n]));
      const double gain = norm_correction ? (length > 0 ? norms[n] / length : 0.0)
                                          : norms[n] / double(sqrt_dim);
      for (size_t q = 0; q < num_queries; ++q) {
        const size_t at = q * dot_stride + n;
        const double bound = kTolerance * std::fabs(gain) * Norm(&queries[q * dim], dim) * length;
        REQUIRE(std::fabs(added[at] - (before[at] + gain * dots[at])) <=
                bound + 1e-6 * std::fabs(before[at]) + 1e-30);
      }
    }
    for (size_t q = 0; q < num_queries; ++q) {
      for (size_t n = count; n < dot_stride; ++n) {
        REQUIRE(added[q * dot_stride + n] == before[q * dot_stride + n]);
      }
    }
  }
}

void CheckValueRows(uint32_t format, size_t count, size_t dim, size_t num_queries,
                    std::mt19937* rng) {
  CAPTURE(format);
  CAPTURE(count);
  CAPTURE(dim);
  CAPTURE(num_queries);
  const size_t bytes = kvc::DtypeBytes(format);
  std::vector<float> values = Uniform(count * dim, rng, 4.0f);
  std::unique_ptr<uint8_t[]> stored(new uint8_t[count * dim * bytes]);
  for (size_t i = 0; i < values.size(); ++i) {
    kvc::StoreScalar(values[i], format, stored.get() + i * bytes);
    values[i] = kvc::LoadScalar(stored.get() + i * bytes, format);  // what is stored
  }
  const std::vector<float> queries = Uniform(num_queries * dim, rng);
  const std::vector<float> weights = Uniform(num_queries * count, rng);
  const kvc::simd::ValueRows view{stored.get(), format, count, dim};
  std::vector<float> dots(num_queries * count), out(num_queries * dim, 5.0f);
  kvc::simd::ValueRowDots(view, queries.data(), num_queries, dots.data(), count);
  kvc::simd::ValueRowSums(view, weights.data(), count, num_queries, out.data());
  for (size_t q = 0; q < num_queries; ++q) {
    for (size_t n = 0; n < count; ++n) {
      double ref = 0;
      for (size_t j = 0; j < dim; ++j) ref += double(values[n * dim + j]) * queries[q * dim + j];
      const double bound = kTolerance * Norm(&queries[q * dim], dim) * Norm(&values[n * dim], dim);
      REQUIRE(std::fabs(dots[q * count + n] - ref) <= bound + 1e-30);
    }
    double bound = 0;
    for (size_t n = 0; n < count; ++n) {
      bound += std::fabs(weights[q * count + n]) * Norm(&values[n * dim], dim);
    }
    for (size_t j = 0; j < dim; ++j) {
      double ref = 0;
      for (size_t n = 0; n < count; ++n) ref += double(weights[q * count + n]) * values[n * dim + j];
      REQUIRE(std::fabs(out[q * dim + j] - ref) <= kTolerance * bound + 1e-30);
    }
  }
  // A stored infinity or NaN never yields a finite result.
  if (count == 0 || num_queries == 0) return;
  for (float special : {INFINITY, -INFINITY, NAN}) {
    const size_t at = (count / 2) * dim + dim - 1;
    std::vector<uint8_t> saved(stored.get() + at * bytes, stored.get() + (at + 1) * bytes);
    kvc::StoreScalar(special, format, stored.get() + at * bytes);
    std::vector<float> w(num_queries * count, 0.0f);  // 0 * inf is NaN too
    kvc::simd::ValueRowDots(view, queries.data(), num_queries, dots.data(), count);
    kvc::simd::ValueRowSums(view, w.data(), count, num_queries, out.data());
    REQUIRE(!std::isfinite(dots[count / 2]));
    REQUIRE(!std::isfinite(out[dim - 1]));
    std::memcpy(stored.get() + at * bytes, saved.data(), bytes);
  }
}

void CheckKernels() {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t dim : {2, 6, 8, 24, 64, 80, 128, 256}) {
      for (size_t num_queries : {0, 1, 3, 4, 5, 8}) {
        for (size_t count : {1, 2, 37}) {
          CheckIndexRows(count, dim, bits, num_queries, count == 2 ? 3 : 0, &rng);
        }
      }
    }
  }
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t dim : {2, 6, 20, 64, 128}) {
      for (size_t num_queries : {0, 1, 4, 5}) {
        for (size_t count : {1, 8, 37}) {
          // Records of their own length and longer ones (a group among
          // others), from every bit of a byte.
          const size_t record_bits = dim * bits + (count % 2 == 0 ? 0 : 3 * count + 1);
          CheckFieldRows(count, dim, bits, num_queries, count % 8, record_bits, &rng);
        }
      }
    }
  }
  CheckIndexRows(300, 128, 4, 4, 0, &rng);  // several tiles of the sums
  CheckIndexRows(300, 128, 3, 4, 0, &rng);
  for (uint32_t format : {KVC_DTYPE_F32, KVC_DTYPE_F16, KVC_DTYPE_BF16}) {
    for (size_t dim : {8, 24, 64, 128}) {
      for (size_t num_queries : {1, 4, 6}) {
        for (size_t count : {1, 3, 150}) CheckValueRows(format, count, dim, num_queries, &rng);
      }
    }
  }
}

// The head record the encoder picks for x (empty for methods without one).
std::vector<uint8_t> HeadRecord(const kvc::TensorCodec& codec, const std::vector<float>& x,
                                size_t count) {
  std::vector<uint8_t> record(codec.head_record_size());
  if (!record.empty()) {
    std::vector<double> stats(codec.head_stats_size(), 0.0);
    codec.ObserveHead(x.data(), count, stats.data());
    codec.FinishHead(stats.data(), record.data());
    REQUIRE(codec.CheckHeadRecord(record.data()).ok());
  }
  return record;
}

// In-domain Scores and Attend of a method against decode-then-compute in
// double, on `count` random vectors of one head.
void CheckMethod(const std::string& method, uint32_t dim, size_t count, size_t num_queries) {
  CAPTURE(method);
  CAPTURE(dim);
  CAPTURE(count);
  CAPTURE(num_queries);
  const kvc_tensor_config config = kvc_test::MethodConfig(method.c_str());
  REQUIRE(kvc::ValidateForHeadDim(config, dim, "test").ok());
  const std::unique_ptr<kvc::TensorCodec> codec = kvc::TensorCodec::Create(config, dim);
  std::mt19937 rng(static_cast<uint32_t>(dim * 131 + count));
  const std::vector<float> x = kvc_test::GaussianVectors(count, dim, dim + count, false);
  const std::vector<uint8_t> record = HeadRecord(*codec, x, count);
  const uint8_t* rec = record.empty() ? nullptr : record.data();
  const std::vector<size_t> widths = codec->SectionWidths(rec);
  std::vector<std::unique_ptr<uint8_t[]>> storage;
  std::vector<uint8_t*> sections;
  for (size_t w : widths) {
    const size_t size = (count * w + 7) / 8;
    storage.emplace_back(new uint8_t[size]());
    sections.push_back(storage.back().get());
  }
  size_t bad = 0;
  REQUIRE(codec->Encode(rec, x.data(), count, sections.data(), &bad).ok());
  std::vector<float> decoded(count * dim);
  REQUIRE(codec->Decode(rec, sections.data(), count, decoded.data(), &bad).ok());

  const std::vector<float> queries = Uniform(num_queries * dim, &rng);
  std::vector<float> weights = Uniform(num_queries * count, &rng);
  std::vector<float> scores(num_queries * count), out(num_queries * dim, 9.0f);
  REQUIRE(codec->Scores(rec, sections.data(), count, queries.data(), num_queries, scores.data(),
                        &bad).ok());
  REQUIRE(codec->Attend(rec, sections.data(), count, weights.data(), num_queries, out.data(),
                        &bad).ok());
  for (size_t q = 0; q < num_queries; ++q) {
    double bound = 0;
    for (size_t n = 0; n < count; ++n) {
      const float* v = &decoded[n * dim];
      double ref = 0;
      for (size_t j = 0; j < dim; ++j) ref += double(queries[q * dim + j]) * v[j];
      const double tol = kTolerance * Norm(&queries[q * dim], dim) * Norm(v, dim);
      REQUIRE(std::fabs(scores[q * count + n] - ref) <= tol + 1e-30);
      bound += std::fabs(weights[q * count + n]) * Norm(v, dim);
    }
    for (size_t j = 0; j < dim; ++j) {
      double ref = 0;
      for (size_t n = 0; n < count; ++n) {
        ref += double(weights[q * count + n]) * decoded[n * dim + j];
      }
      REQUIRE(std::fabs(out[q * dim + j] - ref) <= kTolerance * bound + 1e-30);
    }
  }
}

// A corrupt record: Scores and Attend fail as Decode does, naming the same
// vector.
void CheckCorrupt(const std::string& method, uint32_t dim, size_t section, size_t byte_in_record,
                  uint8_t value) {
  CAPTURE(method);
  const kvc_tensor_config config = kvc_test::MethodConfig(method.c_str());
  const std::unique_ptr<kvc::TensorCodec> codec = kvc::TensorCodec::Create(config, dim);
  const size_t count = 40, bad_at = 23;
  const std::vector<float> x = kvc_test::GaussianVectors(count, dim, 3, false);
  const std::vector<uint8_t> record = HeadRecord(*codec, x, count);
  const uint8_t* rec = record.empty() ? nullptr : record.data();
  const std::vector<size_t> widths = codec->SectionWidths(rec);
  std::vector<std::vector<uint8_t>> storage;
  std::vector<uint8_t*> sections;
  for (size_t w : widths) storage.emplace_back((count * w + 7) / 8, 0);
  for (auto& s : storage) sections.push_back(s.data());
  size_t bad = 0;
  REQUIRE(codec->Encode(rec, x.data(), count, sections.data(), &bad).ok());
  sections[section][bad_at * widths[section] / 8 + byte_in_record] = value;
  std::vector<float> out(count * dim), queries(2 * dim, 0.5f), weights(2 * count, 0.25f);
  size_t decode_bad = 0, scores_bad = 0, attend_bad = 0;
  const kvc::Status d = codec->Decode(rec, sections.data(), count, out.data(), &decode_bad);
  const kvc::Status s = codec->Scores(rec, sections.data(), count, queries.data(), 2, out.data(),
                                      &scores_bad);
  const kvc::Status a = codec->Attend(rec, sections.data(), count, weights.data(), 2, out.data(),
                                      &attend_bad);
  REQUIRE(d.code() == KVC_ERR_CORRUPT);
  REQUIRE(s.code() == KVC_ERR_CORRUPT);
  REQUIRE(a.code() == KVC_ERR_CORRUPT);
  REQUIRE(decode_bad == bad_at);
  REQUIRE(scores_bad == bad_at);
  REQUIRE(attend_bad == bad_at);
}

}  // namespace

#if __has_include(<sys/mman.h>) && __has_include(<unistd.h>)
// Index rows whose last byte is the last before a page that may not be
// read: the kernels' gathers and wide loads are not seen by
// AddressSanitizer, a read past the rows faults here.
void CheckRowsAgainstGuardPage() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  constexpr size_t kPages = 4;
  void* map = mmap(nullptr, (kPages + 1) * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(map != MAP_FAILED);
  auto* region = static_cast<uint8_t*>(map);
  REQUIRE(mprotect(region + kPages * page, page, PROT_NONE) == 0);
  uint8_t* guard = region + kPages * page;
  std::mt19937 rng(11);
  for (int bits = 1; bits <= 4; ++bits) {
    for (size_t dim : {64, 128, 256}) {
      for (size_t count : {0, 1, 5, 16, 17, 37}) {
        for (size_t num_queries : {0, 1, 4, 5}) {
          CAPTURE(bits);
          CAPTURE(dim);
          CAPTURE(count);
          CAPTURE(num_queries);
          const PackedRows rows = MakeRows(count, dim, bits, 0, &rng);
          const size_t bytes = count * rows.stride;
          REQUIRE(bytes <= kPages * page);
          uint8_t* at = guard - bytes;
          if (bytes > 0) std::memcpy(at, rows.bytes.get(), bytes);
          const std::vector<float> table = Uniform(size_t{1} << bits, &rng, 2.0f);
          const std::vector<float> queries = Uniform(num_queries * dim, &rng);
          const std::vector<float> weights = Uniform(num_queries * count, &rng);
          const kvc::simd::IndexRows view{at, rows.stride, count, dim, bits, table.data()};
          std::vector<float> dots(num_queries * count + 1), len2(count + 1);
          kvc::simd::IndexRowDots(view, queries.data(), num_queries, dots.data(), count,
                                  len2.data());
          std::vector<float> out(num_queries * dim + 1);
          kvc::simd::IndexRowSums(view, weights.data(), count, num_queries, out.data());
          // One dot checked, so that the calls cannot be dropped.
          if (count > 0 && num_queries > 0) {
            double ref = 0;
            for (size_t j = 0; j < dim; ++j) {
              ref += double(table[rows.indices[j]]) * queries[j];
            }
            REQUIRE(std::fabs(dots[0] - ref) <= 1e-4 * (std::fabs(ref) + 1));
          }
        }
      }
    }
  }
  munmap(map, (kPages + 1) * page);
}
#else
void CheckRowsAgainstGuardPage() {}
#endif

TEST_CASE("Attention kernels read nothing past index rows on every target") {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    CAPTURE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    CheckRowsAgainstGuardPage();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("Attention kernels match double references on every target") {
  for (int64_t target : Targets()) {
    const std::string name = hwy::TargetName(target);
    CAPTURE(name);
    hwy::SetSupportedTargetsForTest(target);
    CheckKernels();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("In-domain scores and attend match decode-then-compute") {
  std::vector<std::string> methods = {"raw-f32", "raw-f16", "raw-bf16", "tq-mse-b4:rot=none",
                                      "tq-mse-b3:norm=f32", "tq-mse-b2.5", "tq-mse-b3.5:nc",
                                      "gtq-b3", "gtq-b4:nc", "gtq-b2", "gtq-b5:min=0"};
  for (int bits = 1; bits <= 8; ++bits) {
    methods.push_back("tq-mse-b" + std::to_string(bits));
    methods.push_back("tq-mse-b" + std::to_string(bits) + ":nc");
    if (bits >= 2) methods.push_back("tq-prod-b" + std::to_string(bits));
  }
  methods.push_back("tq-prod-b3:nc");
  for (int64_t target : Targets()) {
    const std::string name = hwy::TargetName(target);
    CAPTURE(name);
    hwy::SetSupportedTargetsForTest(target);
    for (const std::string& method : methods) {
      for (uint32_t dim : {64u, 80u, 128u}) {
        const kvc_tensor_config config = kvc_test::MethodConfig(method.c_str());
        if (!kvc::ValidateForHeadDim(config, dim, "test").ok()) continue;
        for (size_t num_queries : {1, 4, 5}) CheckMethod(method, dim, 37, num_queries);
      }
    }
    CheckMethod("tq-mse-b4", 128, 1100, 4);  // several tiles
    CheckMethod("gtq-b3", 128, 600, 4);
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("In-domain scores and attend reject what decoding rejects") {
  CheckCorrupt("tq-mse-b4", 128, 0, 1, 0x80);  // f16 norm with its sign set
  CheckCorrupt("tq-mse-b3:nc", 64, 0, 1, 0x7C);  // f16 infinity
  CheckCorrupt("tq-prod-b3", 128, 2, 1, 0xFC);   // residual norm -inf
  CheckCorrupt("tq-prod-b3", 128, 0, 1, 0xFC);   // MSE norm
  CheckCorrupt("tq-mse-b2.5", 128, 2, 1, 0x80);  // the low part's norm
  CheckCorrupt("raw-f16", 64, 0, 7, 0x7E);       // a NaN value
  CheckCorrupt("gtq-b3", 128, 0, 1, 0x80);       // a group's norm
}
