// Every SIMD kernel against its scalar reference, on every Highway target
// compiled in and supported here, and every preset's stream bytes and decoded
// values identical to the lowest target's (HWY_SCALAR with GCC, EMU128 with
// clang), which runs the reference loops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <hwy/targets.h>

#include "base/half.h"
#include "base/portable_math.h"
#include "base/prng.h"
#include "kvcodec/kvcodec.h"
#include "quant/codebooks.h"
#include "quant/rotation.h"
#include "quant/vector_math.h"
#include "simd/angle_kernels.h"
#include "simd/bitpack.h"
#include "simd/convert_kernels.h"
#include "simd/qjl_kernels.h"
#include "simd/quantize_kernels.h"
#include "simd/reduce_kernels.h"
#include "simd/rotation_kernels.h"
#include "simd/turboquant_kernels.h"
#include "test_util.h"

namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Random floats over all magnitudes plus the edge cases.
std::vector<float> NastyFloats(size_t n, uint64_t seed, bool finite_only) {
  kvc::SplitMix64 rng(seed);
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f,
                          -65520.0f, 5.96046448e-8f, 2.98023224e-8f, 2.98023259e-8f,
                          6.1035156e-5f, 6.1031e-5f, 1e-40f, -1e-45f,
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::min(), 3.0e38f, -3.0e38f};
  if (!finite_only) {
    v.push_back(std::numeric_limits<float>::infinity());
    v.push_back(-std::numeric_limits<float>::infinity());
    v.push_back(FromBits(0x7FC00000u));
    v.push_back(FromBits(0xFF800001u));  // signalling NaN
    v.push_back(FromBits(0x7FBFFFFFu));
  }
  while (v.size() < n) {
    const uint64_t r = rng.Next();
    float f;
    switch (r % 4) {
      case 0: f = FromBits(static_cast<uint32_t>(r >> 32)); break;  // any pattern
      case 1: f = static_cast<float>(static_cast<int32_t>(r >> 40)) * 1e-3f; break;
      case 2:  // around the f16 range and rounding boundaries
        f = FromBits(0x33000000u + static_cast<uint32_t>((r >> 32) % 0x14800000u)) *
            ((r >> 20) & 1 ? -1.0f : 1.0f);
        break;
      default: f = FromBits(static_cast<uint32_t>(r >> 32) & 0x807FFFFFu); break;  // tiny
    }
    if (finite_only && !std::isfinite(f)) f = 1.5f;
    v.push_back(f);
  }
  v.resize(n);
  return v;
}

void CheckConversions() {
  // Every f16 and bf16 pattern.
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> f(65536);
  kvc::simd::F16ToF32(all.data(), all.size(), f.data());
  for (uint32_t i = 0; i < 65536; ++i) {
    REQUIRE(Bits(f[i]) == Bits(kvc::F16ToF32(all[i])));
  }
  kvc::simd::BF16ToF32(all.data(), all.size(), f.data());
  for (uint32_t i = 0; i < 65536; ++i) {
    REQUIRE(Bits(f[i]) == Bits(kvc::BF16ToF32(all[i])));
  }
  // f32 -> 16 bits, rows of every length up to 40 and one long row.
  const std::vector<float> in = NastyFloats(20000, 7, false);
  std::vector<uint16_t> out(in.size());
  kvc::simd::F32ToBF16(in.data(), in.size(), out.data());
  for (size_t i = 0; i < in.size(); ++i) REQUIRE(out[i] == kvc::F32ToBF16(in[i]));
  kvc::simd::F32ToF16(in.data(), in.size(), out.data());
  for (size_t i = 0; i < in.size(); ++i) {
    CAPTURE(Bits(in[i]));
    REQUIRE(out[i] == kvc::F32ToF16(in[i]));
  }
  for (size_t start = 0; start + 40 < in.size(); start += 97) {
    for (size_t n = 0; n <= 40; n += 3) {
      bool ok = true;
      for (size_t i = 0; i < n; ++i) ok = ok && (kvc::F32ToF16(in[start + i]) & 0x7FFF) != 0x7C00;
      REQUIRE(kvc::simd::F32ToF16(&in[start], n, out.data()) == ok);
      for (size_t i = 0; i < n; ++i) REQUIRE(out[i] == kvc::F32ToF16(in[start + i]));
    }
  }
  // The checked forms: the same values where they succeed, and success
  // exactly when every input (widening) or output (narrowing) is finite.
  // Rows of finite values with at most one special (or overflowing) value
  // at every position, as the block codec meets them.
  std::vector<float> finite = kvc_test::GaussianVectors(1, 300, 31, false);
  for (float& x : finite) x *= 100.0f;
  const float specials[] = {std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::nanf(""),
                            FromBits(0xFF800001u), 65520.0f, -65519.99f, 3e38f, 0.0f};
  // Vector-aligned (and one element past), so that kAroundCache takes its
  // non-temporal stores (and its unaligned first and last vectors).
  alignas(64) uint16_t h_buffer[302], b_buffer[302];
  std::vector<uint16_t> ref(300);
  std::vector<float> back(300);
  for (size_t n : {0, 1, 7, 8, 9, 16, 33, 128, 300}) {
    for (size_t pos = 0; pos <= n; pos += 1 + n / 5) {
      for (float special : specials) {
        CAPTURE(n);
        CAPTURE(pos);
        CAPTURE(Bits(special));
        std::vector<float> x(finite.begin(), finite.begin() + n);
        if (pos < n) x[pos] = special;
        bool f16_ok = true, bf16_ok = true;
        for (size_t i = 0; i < n; ++i) {
          f16_ok = f16_ok && (kvc::F32ToF16(x[i]) & 0x7C00) != 0x7C00;
          bf16_ok = bf16_ok && (kvc::F32ToBF16(x[i]) & 0x7F80) != 0x7F80;
        }
        for (const auto writes : {kvc::simd::Writes::kCached, kvc::simd::Writes::kAroundCache}) {
          for (size_t offset : {0, 1}) {
            uint16_t* h = h_buffer + offset;
            uint16_t* b = b_buffer + offset;
            h[n] = b[n] = 0xA5A5;  // nothing is stored past n
            const bool f16_got = kvc::simd::F32ToF16Finite(x.data(), n, writes, h);
            REQUIRE(f16_got == f16_ok);
            for (size_t i = 0; f16_ok && i < n; ++i) REQUIRE(h[i] == kvc::F32ToF16(x[i]));
            const bool bf16_got = kvc::simd::F32ToBF16Finite(x.data(), n, writes, b);
            REQUIRE(bf16_got == bf16_ok);
            for (size_t i = 0; i < n; ++i) REQUIRE(b[i] == kvc::F32ToBF16(x[i]));
            REQUIRE(h[n] == 0xA5A5);
            REQUIRE(b[n] == 0xA5A5);
          }
        }
        // And back: the 16-bit patterns of the references, specials kept.
        for (size_t i = 0; i < n; ++i) ref[i] = kvc::F32ToF16(x[i]);
        bool wide_ok = true;
        for (size_t i = 0; i < n; ++i) wide_ok = wide_ok && (ref[i] & 0x7C00) != 0x7C00;
        REQUIRE(kvc::simd::F16ToF32Finite(ref.data(), n, back.data()) == wide_ok);
        for (size_t i = 0; i < n; ++i) REQUIRE(Bits(back[i]) == Bits(kvc::F16ToF32(ref[i])));
        for (size_t i = 0; i < n; ++i) ref[i] = kvc::F32ToBF16(x[i]);
        wide_ok = true;
        for (size_t i = 0; i < n; ++i) wide_ok = wide_ok && (ref[i] & 0x7F80) != 0x7F80;
        REQUIRE(kvc::simd::BF16ToF32Finite(ref.data(), n, back.data()) == wide_ok);
        for (size_t i = 0; i < n; ++i) REQUIRE(Bits(back[i]) == Bits(kvc::BF16ToF32(ref[i])));
      }
    }
  }
  // Every 16-bit pattern, in rows of 64: a row is finite iff none of its
  // patterns has the all-ones exponent.
  for (size_t start = 0; start < 65536; start += 64) {
    bool f16_ok = true, bf16_ok = true;
    for (size_t i = start; i < start + 64; ++i) {
      f16_ok = f16_ok && (i & 0x7C00) != 0x7C00;
      bf16_ok = bf16_ok && (i & 0x7F80) != 0x7F80;
    }
    REQUIRE(kvc::simd::F16ToF32Finite(&all[start], 64, f.data()) == f16_ok);
    for (size_t i = 0; i < 64; ++i) REQUIRE(Bits(f[i]) == Bits(kvc::F16ToF32(all[start + i])));
    REQUIRE(kvc::simd::BF16ToF32Finite(&all[start], 64, f.data()) == bf16_ok);
    for (size_t i = 0; i < 64; ++i) REQUIRE(Bits(f[i]) == Bits(kvc::BF16ToF32(all[start + i])));
  }
}

void CheckReductions() {
  const std::vector<float> a = NastyFloats(700, 11, false);
  std::vector<float> g = kvc_test::GaussianVectors(1, 700, 5, false);
  for (size_t n : {0, 1, 5, 8, 15, 16, 17, 31, 64, 80, 96, 112, 127, 128, 192, 333, 700}) {
    CAPTURE(n);
    // Gaussian data (reassociation would show) and nasty data (inf, NaN).
    for (const float* x : std::vector<const float*>{g.data(), a.data()}) {
      const float ref = kvc::DotProduct(x, g.data(), n);
      const float got = kvc::simd::DotProduct(x, g.data(), n);
      REQUIRE((Bits(ref) == Bits(got) || (std::isnan(ref) && std::isnan(got))));
      const float ref2 = kvc::SumOfSquares(x, n);
      const float got2 = kvc::simd::SumOfSquares(x, n);
      REQUIRE((Bits(ref2) == Bits(got2) || (std::isnan(ref2) && std::isnan(got2))));
      REQUIRE(kvc::simd::AllFinite(x, n) == kvc::AllFinite(x, n));
    }
  }
  std::vector<float> b = g;
  for (size_t pos : {0, 7, 8, 15, 16, 130}) {
    b = g;
    b[pos] = std::numeric_limits<float>::infinity();
    REQUIRE(!kvc::simd::AllFinite(b.data(), 131));
    b[pos] = std::nanf("");
    REQUIRE(!kvc::simd::AllFinite(b.data(), 131));
  }
}

// Bit streams: strings of every length up to 200 bits appended one after
// the other and extracted back, against bit-by-bit references.
void CheckBitStreams() {
  kvc::SplitMix64 rng(77);
  std::vector<size_t> lengths;
  for (size_t bits = 0; bits <= 200; ++bits) lengths.push_back(bits);
  for (size_t k = 0; k < 100; ++k) lengths.push_back(rng.Next() % 700);
  size_t total = 0;
  for (size_t bits : lengths) total += bits;
  std::vector<std::vector<uint8_t>> strings;
  std::vector<uint8_t> expected((total + 7) / 8, 0);
  size_t at = 0;
  for (size_t bits : lengths) {
    std::vector<uint8_t> s((bits + 7) / 8 + 8);
    for (uint8_t& byte : s) byte = static_cast<uint8_t>(rng.Next());  // bits past the string too
    for (size_t b = 0; b < bits; ++b, ++at) {
      if ((s[b / 8] >> (b % 8)) & 1) {
        expected[at / 8] = static_cast<uint8_t>(expected[at / 8] | 1u << (at % 8));
      }
    }
    strings.push_back(std::move(s));
  }
  std::vector<uint8_t> stream(expected.size() + 8, 0xEE);
  kvc::simd::BitStringWriter writer(stream.data(), stream.data() + expected.size());
  for (size_t k = 0; k < lengths.size(); ++k) writer.Append(strings[k].data(), lengths[k]);
  REQUIRE(std::memcmp(stream.data(), expected.data(), expected.size()) == 0);
  for (size_t i = expected.size(); i < stream.size(); ++i) REQUIRE(stream[i] == 0xEE);
  at = 0;
  for (size_t k = 0; k < lengths.size(); ++k) {
    const size_t bits = lengths[k], bytes = (bits + 7) / 8;
    std::vector<uint8_t> got(bytes + 1, 0xCD);
    kvc::simd::ExtractBits(stream.data(), at, bits, got.data());
    for (size_t b = 0; b < bits; ++b) {
      REQUIRE(((got[b / 8] >> (b % 8)) & 1) == ((strings[k][b / 8] >> (b % 8)) & 1));
    }
    if (bits % 8 != 0) REQUIRE((got[bytes - 1] >> (bits % 8)) == 0);
    REQUIRE(got[bytes] == 0xCD);  // nothing past its bytes
    at += bits;
  }
}

void CheckRotation() {
  // Small dims too: Block-GTQ rotates groups of any even size, whose
  // passes (4, 8) can be narrower than a register.
  for (uint32_t dim : {2u, 4u, 6u, 8u, 10u, 12u, 14u, 16u, 20u, 24u, 32u, 64u, 80u, 96u, 112u,
                       128u, 192u, 256u, 1024u, 2048u}) {
    CAPTURE(dim);
    const kvc::Rotation rot(KVC_ROTATION_HADAMARD, dim, 0x5EEDull + dim);
    std::vector<float> x = kvc_test::GaussianVectors(4, dim, dim, false);
    const std::vector<float> nasty = NastyFloats(dim, dim, true);
    for (size_t j = 0; j < dim; ++j) x[3 * dim + j] = nasty[j] * 1e-30f;
    for (size_t j = 0; j < dim; ++j) x[2 * dim + j] = j % 3 ? 0.0f : -0.0f;
    for (size_t v = 0; v < 4; ++v) {
      std::vector<float> ref(x.begin() + v * dim, x.begin() + (v + 1) * dim), got = ref;
      rot.ForwardReference(ref.data());
      rot.Forward(got.data());
      for (size_t j = 0; j < dim; ++j) REQUIRE(Bits(ref[j]) == Bits(got[j]));
      rot.InverseReference(ref.data());
      rot.Inverse(got.data());
      for (size_t j = 0; j < dim; ++j) REQUIRE(Bits(ref[j]) == Bits(got[j]));
    }
    // The row kernels (tables built once per call) on the same 4 vectors.
    std::vector<float> rows(4 * dim), sums(4);
    rot.ForwardRows(x.data(), 4, rows.data(), sums.data());
    for (size_t v = 0; v < 4; ++v) {
      std::vector<float> ref(x.begin() + v * dim, x.begin() + (v + 1) * dim);
      rot.ForwardReference(ref.data());
      for (size_t j = 0; j < dim; ++j) REQUIRE(Bits(ref[j]) == Bits(rows[v * dim + j]));
      REQUIRE(Bits(sums[v]) == Bits(kvc::SumOfSquares(ref.data(), dim)));
    }
    rot.InverseRows(rows.data(), 4);
    for (size_t v = 0; v < 4; ++v) {
      std::vector<float> ref(x.begin() + v * dim, x.begin() + (v + 1) * dim);
      rot.ForwardReference(ref.data());
      rot.InverseReference(ref.data());
      for (size_t j = 0; j < dim; ++j) REQUIRE(Bits(ref[j]) == Bits(rows[v * dim + j]));
    }
  }
}

void CheckQuantizers() {
  const std::vector<float> y = kvc_test::GaussianVectors(1, 1000, 3, false);
  std::vector<float> y2 = y;
  y2[5] = std::nanf("");
  y2[6] = 0.0f;
  y2[7] = -0.0f;
  for (int bits = 1; bits <= 8; ++bits) {
    CAPTURE(bits);
    const kvc::Codebook& book = kvc::GaussianCodebook(bits);
    // Exact thresholds as inputs (ties go to the lower index).
    for (int k = 0; k + 1 < book.size && k < 1000; ++k) y2[100 + k] = book.thresholds[k];
    std::vector<uint8_t> idx(1000), packed(1000), unpacked(1000), ref_packed(1000);
    for (size_t n : {8, 13, 64, 80, 128, 1000}) {
      for (float scale : {1.0f, 0.37f, 11.3137085f}) {
        kvc::simd::Quantize(book, y2.data(), n, scale, idx.data());
        for (size_t j = 0; j < n; ++j) {
          REQUIRE(idx[j] == kvc::QuantizeToCodebook(book, y2[j] * scale));
        }
        std::vector<float> ref(n), got(n);
        kvc::simd::Dequantize(book, idx.data(), n, scale, got.data());
        for (size_t j = 0; j < n; ++j) {
          REQUIRE(Bits(got[j]) == Bits(book.centroids[idx[j]] * scale));
        }
        kvc::PackBits(idx.data(), n, bits, ref_packed.data());
        if (kvc::simd::QuantizePacked(book, y2.data(), n, scale, packed.data())) {
          REQUIRE(std::memcmp(packed.data(), ref_packed.data(), (n * bits + 7) / 8) == 0);
        }
        kvc::simd::PackBits(idx.data(), n, bits, packed.data());
        REQUIRE(std::memcmp(packed.data(), ref_packed.data(), (n * bits + 7) / 8) == 0);
        kvc::simd::UnpackBits(packed.data(), n, bits, unpacked.data());
        REQUIRE(std::memcmp(unpacked.data(), idx.data(), n) == 0);
      }
    }
  }
}

// Packing and unpacking in blocks (simd/bitpack-inl.h) against the
// reference, for every width, counts around whole groups and whole vectors,
// at every offset within 8 bytes: nothing written past the n values or
// their ceil(n * bits / 8) bytes.
void CheckPackIndices() {
  std::vector<uint8_t> stream(2100);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (uint8_t& b : stream) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    b = static_cast<uint8_t>(state >> 56);
  }
  for (int bits = 1; bits <= 8; ++bits) {
    CAPTURE(bits);
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 40, 48, 63, 64, 100, 128, 1000, 2048}) {
      CAPTURE(n);
      for (size_t offset = 0; offset < 8; ++offset) {
        const uint8_t* in = stream.data() + offset;
        std::vector<uint8_t> ref(n + 16, 0xEE), got(n + 16, 0xEE);
        kvc::UnpackBits(in, n, bits, ref.data());
        kvc::simd::UnpackIndices(in, n, bits, got.data());
        REQUIRE(ref == got);
        // The fields back, packed: the bytes they came from, padding bits
        // cleared.
        const size_t bytes = (n * bits + 7) / 8;
        std::vector<uint8_t> ref_packed(offset + bytes + 16, 0xEE), packed = ref_packed;
        kvc::PackBits(ref.data(), n, bits, ref_packed.data() + offset);
        kvc::simd::PackIndices(ref.data(), n, bits, packed.data() + offset);
        REQUIRE(ref_packed == packed);
        if (bytes > 0) {
          REQUIRE(std::memcmp(packed.data() + offset, in, bytes - 1) == 0);
          const int used = static_cast<int>(n * bits - (bytes - 1) * 8);
          REQUIRE(packed[offset + bytes - 1] == (in[bytes - 1] & ((1 << used) - 1)));
        }
      }
    }
  }
}

// The fused row kernels hold a row in an array of registers: every target
// but HWY_SCALAR and the SVE ones (sizeless vectors) has them.
bool HasFusedRowKernels() {
  const std::string target = kvc_simd_target();
  return target != "SCALAR" && target.rfind("SVE", 0) != 0;
}

// The fused TurboQuant rows against the reference steps (rotation, 16-lane
// sum of squares, codebook search, LSB-first packing; and back).
void CheckFusedTurboQuant() {
  size_t applied = 0;
  for (uint32_t dim : {8u, 16u, 32u, 64u, 128u, 256u}) {
    const kvc::Rotation rotation(KVC_ROTATION_HADAMARD, dim, 77);
    const float sqrt_dim = static_cast<float>(std::sqrt(static_cast<double>(dim)));
    std::vector<float> x = kvc_test::GaussianVectors(dim, 9, 5, false);
    std::fill(x.begin(), x.begin() + dim, 0.0f);  // the zero vector
    x[dim + 3] = 3e17f;                           // a huge coordinate
    const size_t count = x.size() / dim;
    for (int bits = 1; bits <= 4; ++bits) {
      for (bool correction : {false, true}) {
        CAPTURE(dim);
        CAPTURE(bits);
        CAPTURE(correction);
        const kvc::Codebook& book = kvc::GaussianCodebook(bits);
        const kvc::simd::TqRows rows{dim, rotation.single_pass_signs(), rotation.scale(), &book,
                                     sqrt_dim, correction};
        const size_t index_bytes = dim * bits / 8;
        std::vector<float> norms(count);
        std::vector<uint8_t> packed(count * index_bytes);
        if (!kvc::simd::TqEncodeRows(rows, x.data(), count, norms.data(), packed.data())) continue;
        ++applied;
        std::vector<float> decoded(x.size());
        REQUIRE(kvc::simd::TqDecodeRows(rows, packed.data(), norms.data(), count,
                                        decoded.data()));
        for (size_t n = 0; n < count; ++n) {
          std::vector<float> y(x.begin() + n * dim, x.begin() + (n + 1) * dim);
          rotation.ForwardReference(y.data());
          const float norm = std::sqrt(kvc::SumOfSquares(y.data(), dim));
          REQUIRE(Bits(norms[n]) == Bits(norm));
          const float scale = norm > 0 ? sqrt_dim / norm : 0.0f;
          std::vector<uint8_t> idx(dim), ref(index_bytes);
          for (uint32_t j = 0; j < dim; ++j) {
            idx[j] = static_cast<uint8_t>(kvc::QuantizeToCodebook(book, y[j] * scale));
          }
          kvc::PackBits(idx.data(), dim, bits, ref.data());
          REQUIRE(std::memcmp(ref.data(), &packed[n * index_bytes], index_bytes) == 0);
          std::vector<float> c(dim);
          for (uint32_t j = 0; j < dim; ++j) c[j] = book.centroids[idx[j]];
          float gain = norm / sqrt_dim;
          if (correction) {
            const float length = std::sqrt(kvc::SumOfSquares(c.data(), dim));
            gain = length > 0 ? norm / length : 0.0f;
          }
          for (uint32_t j = 0; j < dim; ++j) c[j] = c[j] * gain;
          rotation.InverseReference(c.data());
          for (uint32_t j = 0; j < dim; ++j) REQUIRE(Bits(decoded[n * dim + j]) == Bits(c[j]));
        }
      }
    }
  }
  // Every target but HWY_SCALAR has the fused kernels.
  if (HasFusedRowKernels()) REQUIRE(applied > 0);
}

void CheckAngles() {
  std::vector<float> v = kvc_test::GaussianVectors(1, 2 * 300, 9, false);
  // Axes, diagonals, zeros and signed zeros, tiny and huge values.
  const float special[][2] = {{0.0f, 0.0f},   {-0.0f, 0.0f}, {0.0f, -0.0f}, {-0.0f, -0.0f},
                              {1.0f, 0.0f},   {0.0f, 1.0f},  {-1.0f, 0.0f}, {0.0f, -1.0f},
                              {1.0f, 1.0f},   {-1.0f, 1.0f}, {1.0f, -1.0f}, {-1.0f, -1.0f},
                              {1e-38f, 3e-39f}, {3e38f, -1e38f}, {0.414213562f, 1.0f},
                              {1.0f, 0.414213562f}};
  for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); ++k) {
    v[2 * k] = special[k][0];
    v[2 * k + 1] = special[k][1];
  }
  std::vector<uint32_t> bins(300);
  std::vector<float> radii(300);
  for (uint32_t n : {2u, 3u, 16u, 64u, 96u, 128u, 256u, 4095u, 4096u}) {
    CAPTURE(n);
    for (size_t pairs : {1, 7, 8, 64, 300}) {
      kvc::simd::PairAngles(v.data(), pairs, n, bins.data(), radii.data());
      for (size_t i = 0; i < pairs; ++i) {
        const float x = v[2 * i], y = v[2 * i + 1];
        REQUIRE(bins[i] == kvc::AngleBin(x, y, n));
        if (std::isfinite(x * x + y * y)) REQUIRE(Bits(radii[i]) == Bits(std::sqrt(x * x + y * y)));
      }
    }
  }
}

void CheckFolds() {
  std::vector<float> r = kvc_test::GaussianVectors(1, 2 * 100, 23, false);
  for (float& x : r) x = std::fabs(x);
  r[0] = 0.0f;
  r[1] = 0.0f;
  r[2] = 0.0f;
  r[5] = 0.0f;
  r[6] = 1.0f;
  r[7] = 1.0f;  // on the threshold tan = 1
  const float tans[15] = {0.172088712f, 0.283914834f, 0.389105588f, 0.494493008f, 0.604216218f,
                          0.722010076f, 0.852104843f, 1.0f,         1.17356455f,  1.38502216f,
                          1.65503657f,  2.0222733f,   2.56999636f,  3.52218294f,  5.81095648f};
  std::vector<uint32_t> bins(100);
  std::vector<float> radii(100);
  for (size_t count : {1, 3, 7, 15}) {
    for (size_t pairs : {1, 5, 8, 16, 100}) {
      kvc::simd::FoldPairs(r.data(), pairs, tans + (15 - count) / 2, count, bins.data(),
                           radii.data());
      for (size_t i = 0; i < pairs; ++i) {
        const float e = r[2 * i], o = r[2 * i + 1];
        uint32_t bin = 0;
        for (size_t k = 0; k < count; ++k) bin += o > tans[(15 - count) / 2 + k] * e;
        REQUIRE(bins[i] == bin);
        REQUIRE(Bits(radii[i]) == Bits(std::sqrt(e * e + o * o)));
      }
    }
  }
}

void CheckQjl() {
  for (size_t d : {8, 24, 64, 96, 128}) {
    CAPTURE(d);
    const std::vector<float> s = kvc_test::GaussianVectors(d, d, 17, false);
    std::vector<float> st(d * d);
    for (size_t i = 0; i < d; ++i) {
      for (size_t j = 0; j < d; ++j) st[j * d + i] = s[i * d + j];
    }
    // Residuals in blocks of three and one at a time: 1, 3, 4 and 5 rows,
    // one of them all zero (z = +0, sign 0).
    for (size_t rows : {1, 3, 4, 5}) {
      CAPTURE(rows);
      std::vector<float> r = kvc_test::GaussianVectors(rows, d, 18, false);
      r[1] = 0.0f;
      if (rows > 1) std::fill(r.begin() + d, r.begin() + 2 * d, 0.0f);
      std::vector<uint8_t> signs(rows * d);
      kvc::simd::QjlSigns(st.data(), r.data(), rows, d, signs.data());
      for (size_t n = 0; n < rows; ++n) {
        for (size_t i = 0; i < d; ++i) {
          float z = 0.0f;
          for (size_t j = 0; j < d; ++j) z = z + s[i * d + j] * r[n * d + j];
          REQUIRE(signs[n * d + i] == (z < 0.0f ? 1 : 0));
        }
      }
    }
    // The decoder's correction y += (S^T s) * factor, rows in ascending
    // order, for rows of random signs (and all signs clear, all set).
    const size_t count = 4;
    std::vector<uint8_t> packed(count * d / 8);
    kvc::SplitMix64 rng(d);
    for (size_t k = 0; k < packed.size(); ++k) packed[k] = static_cast<uint8_t>(rng.Next());
    std::fill(packed.begin(), packed.begin() + d / 8, 0);
    std::fill(packed.begin() + d / 8, packed.begin() + 2 * d / 8, 0xFF);
    const std::vector<float> factors = {0.37f, 0.0f, 1e-3f, 2.5f};
    std::vector<float> y = kvc_test::GaussianVectors(count, d, 19, false), got = y;
    std::vector<float> s_and_negated;  // rows of S and -S interleaved
    for (size_t i = 0; i < d; ++i) {
      for (size_t j = 0; j < d; ++j) s_and_negated.push_back(s[i * d + j]);
      for (size_t j = 0; j < d; ++j) s_and_negated.push_back(-s[i * d + j]);
    }
    kvc::simd::QjlCorrectRows(s_and_negated.data(), packed.data(), factors.data(), count, d,
                              got.data());
    for (size_t n = 0; n < count; ++n) {
      for (size_t j = 0; j < d; ++j) {
        float c = 0.0f;
        for (size_t i = 0; i < d; ++i) {
          const bool negative = (packed[n * d / 8 + i / 8] >> (i % 8)) & 1;
          c = negative ? c - s[i * d + j] : c + s[i * d + j];
        }
        REQUIRE(Bits(got[n * d + j]) == Bits(y[n * d + j] + c * factors[n]));
      }
    }
  }
}

// Rows rotated (and measured) in registers against the reference passes.
void CheckRotateRows() {
  size_t applied = 0;
  for (uint32_t dim : {8u, 16u, 32u, 64u, 96u, 128u, 256u}) {
    CAPTURE(dim);
    const kvc::Rotation rotation(KVC_ROTATION_HADAMARD, dim, 91);
    std::vector<float> x = kvc_test::GaussianVectors(7, dim, 13, false);
    std::fill(x.begin(), x.begin() + dim, 0.0f);
    const std::vector<float> nasty = NastyFloats(dim, 3, true);
    for (size_t j = 0; j < dim; ++j) x[dim + j] = nasty[j] * 1e-30f;
    x[2 * dim + 1] = 3e20f;  // a sum of squares that overflows
    const size_t count = x.size() / dim;
    std::vector<float> y(x.size()), sums(count);
    // Through Rotation (which takes the kernel where one applies), and the
    // kernel itself where it applies.
    rotation.ForwardRows(x.data(), count, y.data(), sums.data());
    std::vector<float> direct(x.size()), direct_sums(count);
    const bool kernel = rotation.single_pass_signs() != nullptr &&
                        kvc::simd::RotateRows(rotation.single_pass_signs(), rotation.scale(), dim,
                                              x.data(), count, direct.data(), direct_sums.data());
    applied += kernel;
    for (size_t n = 0; n < count; ++n) {
      std::vector<float> ref(x.begin() + n * dim, x.begin() + (n + 1) * dim);
      rotation.ForwardReference(ref.data());
      const float sum = kvc::SumOfSquares(ref.data(), dim);
      for (size_t j = 0; j < dim; ++j) REQUIRE(Bits(y[n * dim + j]) == Bits(ref[j]));
      REQUIRE(Bits(sums[n]) == Bits(sum));
      if (kernel) {
        for (size_t j = 0; j < dim; ++j) REQUIRE(Bits(direct[n * dim + j]) == Bits(ref[j]));
        REQUIRE(Bits(direct_sums[n]) == Bits(sum));
      }
      rotation.InverseReference(ref.data());
      std::copy(ref.begin(), ref.end(), direct.begin() + n * dim);  // expected inverse
    }
    rotation.InverseRows(y.data(), count);
    for (size_t i = 0; i < y.size(); ++i) REQUIRE(Bits(y[i]) == Bits(direct[i]));
  }
  // The identity: rows copied and measured.
  const kvc::Rotation identity(KVC_ROTATION_NONE, 40, 1);
  const std::vector<float> x = kvc_test::GaussianVectors(3, 40, 29, false);
  std::vector<float> y(x.size()), sums(3);
  identity.ForwardRows(x.data(), 3, y.data(), sums.data());
  REQUIRE(std::memcmp(x.data(), y.data(), x.size() * 4) == 0);
  for (size_t n = 0; n < 3; ++n) REQUIRE(Bits(sums[n]) == Bits(kvc::SumOfSquares(&x[n * 40], 40)));
  identity.InverseRows(y.data(), 3);
  REQUIRE(std::memcmp(x.data(), y.data(), x.size() * 4) == 0);
  if (HasFusedRowKernels()) REQUIRE(applied > 0);
}

// Batched quantization (rows of any length, 1-8 bits) against Quantize +
// PackBits, and back against centroid * gain (MseQuantizer's Gain).
void CheckQuantizeRows() {
  const std::vector<float> y = kvc_test::GaussianVectors(5, 128, 41, false);
  const std::vector<float> scales = {1.0f, 0.0f, 11.3137085f, 0.37f, 3.0f};
  const std::vector<float> norms = {1.0f, 0.0f, 7.5f, 1e-20f, 3e10f};
  for (int bits = 1; bits <= 8; ++bits) {
    const kvc::Codebook& book = kvc::GaussianCodebook(bits);
    for (size_t n : {8, 13, 38, 64, 96, 128}) {
      CAPTURE(bits);
      CAPTURE(n);
      const size_t count = 5, record = (n * bits + 7) / 8;
      std::vector<float> rows(count * n);
      for (size_t r = 0; r < count; ++r) std::copy(&y[r * 128], &y[r * 128] + n, &rows[r * n]);
      std::vector<uint8_t> packed(count * record, 0xAA);
      kvc::simd::QuantizeRows(book, rows.data(), n, count, scales.data(), packed.data());
      for (size_t r = 0; r < count; ++r) {
        std::vector<uint8_t> idx(n), ref(record);
        for (size_t j = 0; j < n; ++j) {
          idx[j] = static_cast<uint8_t>(kvc::QuantizeToCodebook(book, rows[r * n + j] * scales[r]));
        }
        kvc::PackBits(idx.data(), n, bits, ref.data());
        REQUIRE(std::memcmp(ref.data(), &packed[r * record], record) == 0);
        for (bool correction : {false, true}) {
          std::vector<float> got(n);
          kvc::simd::DequantizeRows(book, &packed[r * record], n, 1, &norms[r], 4.0f, correction,
                                    got.data());
          std::vector<float> c(n);
          for (size_t j = 0; j < n; ++j) c[j] = book.centroids[idx[j]];
          float gain = norms[r] / 4.0f;
          if (correction) {
            const float length = std::sqrt(kvc::SumOfSquares(c.data(), n));
            gain = length > 0 ? norms[r] / length : 0.0f;
          }
          for (size_t j = 0; j < n; ++j) REQUIRE(Bits(got[j]) == Bits(c[j] * gain));
        }
      }
      // All the rows in one call (their indices unpacked together, rows that
      // end inside a byte read on into the next one): as one at a time.
      for (bool correction : {false, true}) {
        std::vector<float> batch(count * n), single(n);
        kvc::simd::DequantizeRows(book, packed.data(), n, count, norms.data(), 4.0f, correction,
                                  batch.data());
        for (size_t r = 0; r < count; ++r) {
          kvc::simd::DequantizeRows(book, &packed[r * record], n, 1, &norms[r], 4.0f, correction,
                                    single.data());
          for (size_t j = 0; j < n; ++j) REQUIRE(Bits(batch[r * n + j]) == Bits(single[j]));
        }
      }
    }
  }
}

// Column gathers and the head statistics (energies in double).
void CheckGathersAndEnergies() {
  const size_t d = 96, count = 7;
  const std::vector<float> x = kvc_test::GaussianVectors(count, d, 43, false);
  std::vector<int32_t> columns;
  for (int32_t j = 0; j < static_cast<int32_t>(d); j += 3) columns.push_back(j);
  for (int32_t j = 95; j > 0; j -= 7) columns.push_back(j);
  std::vector<float> out(count * columns.size());
  kvc::simd::GatherColumns(x.data(), d, count, columns.data(), columns.size(), out.data());
  for (size_t n = 0; n < count; ++n) {
    for (size_t k = 0; k < columns.size(); ++k) {
      REQUIRE(Bits(out[n * columns.size() + k]) == Bits(x[n * d + columns[k]]));
    }
  }
  // Strided: column k of row n at columns[k] + n * strides[k] (groups of
  // rows one after the other, a shared 0 at stride 0).
  std::vector<int32_t> strides(columns.size());
  for (size_t k = 0; k < columns.size(); ++k) strides[k] = static_cast<int32_t>(k % 3 == 2 ? 0 : d);
  kvc::simd::GatherStridedColumns(x.data(), count, columns.data(), strides.data(), columns.size(),
                                  out.data());
  for (size_t n = 0; n < count; ++n) {
    for (size_t k = 0; k < columns.size(); ++k) {
      REQUIRE(Bits(out[n * columns.size() + k]) == Bits(x[columns[k] + n * strides[k]]));
    }
  }
  // Rows split by a channel mask, as the outlier codec splits them: random
  // masks, none and all set, at widths from one vector of 8 lanes up.
  kvc::SplitMix64 rng(44);
  for (size_t width : {8, 16, 24, 48, 64, 96}) {
    for (int kind = 0; kind < 4; ++kind) {
      CAPTURE(width);
      CAPTURE(kind);
      std::vector<uint8_t> mask(width / 8);
      for (uint8_t& b : mask) {
        b = kind == 0 ? 0 : kind == 1 ? 0xFF : static_cast<uint8_t>(rng.Next());
      }
      std::vector<int32_t> high_columns, low_columns;
      for (int32_t j = 0; j < static_cast<int32_t>(width); ++j) {
        ((mask[j / 8] >> (j % 8)) & 1 ? high_columns : low_columns).push_back(j);
      }
      // Guards past each output catch a store beyond its lanes.
      const size_t highs = high_columns.size(), lows = low_columns.size();
      std::vector<float> high(count * highs + 16, -7.0f), low(count * lows + 16, -7.0f);
      kvc::simd::SplitColumns(x.data(), width, count, mask.data(), high_columns.data(), highs,
                              low_columns.data(), high.data(), low.data());
      for (size_t n = 0; n < count; ++n) {
        for (size_t k = 0; k < highs; ++k) {
          REQUIRE(Bits(high[n * highs + k]) == Bits(x[n * width + high_columns[k]]));
        }
        for (size_t k = 0; k < lows; ++k) {
          REQUIRE(Bits(low[n * lows + k]) == Bits(x[n * width + low_columns[k]]));
        }
      }
      for (size_t k = count * highs; k < high.size(); ++k) REQUIRE(high[k] == -7.0f);
      for (size_t k = count * lows; k < low.size(); ++k) REQUIRE(low[k] == -7.0f);
    }
  }
  std::vector<double> energy(d, 0.5), ref(d, 0.5);
  kvc::simd::AccumulateSquares(x.data(), d, count, energy.data());
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = 0; j < d; ++j) ref[j] += static_cast<double>(x[n * d + j]) * x[n * d + j];
  }
  REQUIRE(std::memcmp(energy.data(), ref.data(), d * sizeof(double)) == 0);
  std::vector<double> sums(d, 0.5), ref_sums(d, 0.5);
  kvc::simd::AccumulateColumns(x.data(), d, count, sums.data());
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = 0; j < d; ++j) ref_sums[j] += static_cast<double>(x[n * d + j]);
  }
  REQUIRE(std::memcmp(sums.data(), ref_sums.data(), d * sizeof(double)) == 0);
  // Rows plus a vector, in place and not; guards past the output.
  std::vector<float> v(d), added(count * d + 16, -7.0f), in_place(x);
  for (size_t j = 0; j < d; ++j) v[j] = x[(j * 7) % x.size()] * -0.5f;
  kvc::simd::AddToRows(x.data(), d, count, v.data(), added.data());
  kvc::simd::AddToRows(in_place.data(), d, count, v.data(), in_place.data());
  for (size_t n = 0; n < count; ++n) {
    for (size_t j = 0; j < d; ++j) {
      REQUIRE(Bits(added[n * d + j]) == Bits(x[n * d + j] + v[j]));
      REQUIRE(Bits(in_place[n * d + j]) == Bits(x[n * d + j] + v[j]));
    }
  }
  for (size_t k = count * d; k < added.size(); ++k) REQUIRE(added[k] == -7.0f);
  for (bool interleaved : {false, true}) {
    std::vector<double> blocks(d / 2, 0.25), ref_blocks(d / 2, 0.25);
    kvc::simd::AccumulatePairEnergies(x.data(), d, count, interleaved, blocks.data());
    for (size_t n = 0; n < count; ++n) {
      for (size_t i = 0; i < d / 2; ++i) {
        const float a = interleaved ? x[n * d + 2 * i] : x[n * d + i];
        const float b = interleaved ? x[n * d + 2 * i + 1] : x[n * d + i + d / 2];
        ref_blocks[i] += static_cast<double>(a) * a + static_cast<double>(b) * b;
      }
    }
    REQUIRE(std::memcmp(blocks.data(), ref_blocks.data(), d / 2 * sizeof(double)) == 0);
  }
}

// TurboAngle's tables for the kernel checks: ascending thresholds and
// levels (any such tables; the codec's are in quant/turboangle_codec.cc).
const float kLogThresholds[15] = {0.210736424f, 0.250609249f, 0.298026323f, 0.354414999f,
                                  0.421472847f, 0.501218498f, 0.596052647f, 0.708829999f,
                                  0.842945695f, 1.002437f,    1.19210529f,  1.41766f,
                                  1.68589139f,  2.00487399f,  2.38421059f};
const float kLogLevels[16] = {0.193246156f, 0.229809701f, 0.273291349f, 0.324999988f,
                              0.386492312f, 0.459619403f, 0.546582699f, 0.649999976f,
                              0.772984624f, 0.919238806f, 1.0931654f,   1.29999995f,
                              1.54596925f,  1.83847761f,  2.1863308f,   2.5999999f};

// TurboAngle rows against the codec's reference steps: AngleBin, radius
// sqrt(x * x + y * y), the LINEAR8 formula or the count of LOG4 thresholds,
// LSB-first packing; and back, level * rms times the bin's cos and sin.
void CheckTurboAngleRows() {
  size_t applied = 0;
  for (size_t pairs : {4, 8, 12, 32, 40, 64, 128}) {
    // Rotated-domain rows: Gaussian, a zero row, axis and diagonal pairs,
    // huge and tiny values.
    const size_t count = 6;
    std::vector<float> y = kvc_test::GaussianVectors(count, 2 * pairs, pairs, false);
    std::fill(y.begin(), y.begin() + 2 * pairs, 0.0f);
    for (size_t i = 0; i < 2 * pairs; ++i) {
      const float specials[] = {1.0f, 0.0f, -0.0f, -1.0f, 1.0f, 1.0f, 3e18f, -1e-30f};
      y[2 * pairs + i] = specials[i % 8];
    }
    std::vector<float> inverse_rms = {0.0f, 1.0f, 1e-18f, 0.37f, 2.5f, 1.75f};
    for (int digit_bits = 1; digit_bits <= 8; ++digit_bits) {
      const uint32_t bins = 1u << digit_bits;
      std::vector<float> cos(bins), sin(bins);
      std::vector<uint64_t> cos_sin(bins);
      for (uint32_t k = 0; k < bins; ++k) {
        cos[k] = std::cos((k + 0.5f) * 6.2831853f / bins);
        sin[k] = std::sin((k + 0.5f) * 6.2831853f / bins);
        cos_sin[k] = uint64_t{Bits(cos[k])} | uint64_t{Bits(sin[k])} << 32;
      }
      for (bool log4 : {false, true}) {
        CAPTURE(pairs);
        CAPTURE(digit_bits);
        CAPTURE(log4);
        const kvc::simd::TaRows rows{pairs, digit_bits, log4, kLogThresholds, kLogLevels,
                                     cos_sin.data()};
        const size_t angle_bytes = pairs * digit_bits / 8;
        const size_t radius_bytes = log4 ? pairs / 2 : pairs;
        std::vector<uint8_t> angles(count * angle_bytes + 1), radii(count * radius_bytes + 1);
        if (pairs * digit_bits % 8 != 0 ||
            !kvc::simd::TaEncodeRows(rows, y.data(), count, inverse_rms.data(), angles.data(),
                                     radii.data())) {
          continue;
        }
        ++applied;
        std::vector<float> rms = {1.0f, 0.0f, 3.5f, 1e-20f, 7e15f, 0.25f};
        std::vector<float> decoded(count * 2 * pairs);
        REQUIRE(kvc::simd::TaDecodeRows(rows, angles.data(), radii.data(), rms.data(), count,
                                        decoded.data()));
        for (size_t n = 0; n < count; ++n) {
          std::vector<uint8_t> digits(pairs), codes(pairs), ref_angles(angle_bytes),
              ref_radii(radius_bytes);
          for (size_t i = 0; i < pairs; ++i) {
            const float a = y[n * 2 * pairs + 2 * i], b = y[n * 2 * pairs + 2 * i + 1];
            digits[i] = static_cast<uint8_t>(kvc::AngleBin(a, b, bins));
            const float u = std::sqrt(a * a + b * b) * inverse_rms[n];
            if (log4) {
              uint8_t c = 0;
              for (float t : kLogThresholds) c = static_cast<uint8_t>(c + (t < u));
              codes[i] = c;
            } else {
              const float q = u * (255.0f / 4.0f) + 0.5f;
              codes[i] = static_cast<uint8_t>(q >= 255.0f ? 255 : static_cast<uint32_t>(q));
            }
          }
          kvc::PackBits(digits.data(), pairs, digit_bits, ref_angles.data());
          if (log4) {
            kvc::PackBits(codes.data(), pairs, 4, ref_radii.data());
          } else {
            ref_radii = codes;
          }
          REQUIRE(std::memcmp(ref_angles.data(), &angles[n * angle_bytes], angle_bytes) == 0);
          REQUIRE(std::memcmp(ref_radii.data(), &radii[n * radius_bytes], radius_bytes) == 0);
          for (size_t i = 0; i < pairs; ++i) {
            const float level = log4 ? kLogLevels[codes[i]]
                                     : static_cast<float>(codes[i] * (4.0f / 255.0));
            const float r = level * rms[n];
            REQUIRE(Bits(decoded[n * 2 * pairs + 2 * i]) == Bits(r * cos[digits[i]]));
            REQUIRE(Bits(decoded[n * 2 * pairs + 2 * i + 1]) == Bits(r * sin[digits[i]]));
          }
        }
      }
    }
  }
  if (HasFusedRowKernels()) REQUIRE(applied > 0);
}

// PolarQuant rows against the codec's reference steps: pair angles, folds
// and the bit writer's layout; and back, the unfolding from the top.
void CheckPolarQuantRows() {
  size_t applied = 0;
  const int configs[][4] = {{4, 2, 2, 2}, {1, 1, 1, 1}, {3, 3, 2, 1}, {5, 4, 3, 2},
                            {6, 4, 4, 4}, {8, 2, 1, 3}, {8, 4, 4, 4}};
  for (uint32_t dim : {16u, 32u, 48u, 64u, 128u, 256u}) {
    const size_t count = 5, groups = dim / 16;
    std::vector<float> y = kvc_test::GaussianVectors(count, dim, dim + 1, false);
    std::fill(y.begin(), y.begin() + dim, 0.0f);
    for (size_t j = 0; j < dim; ++j) y[dim + j] = (j % 3 == 0) ? 1.0f : (j % 3 == 1 ? -0.0f : 1e-30f);
    for (const auto& bits : configs) {
      CAPTURE(dim);
      CAPTURE(bits[0]);
      CAPTURE(bits[1]);
      CAPTURE(bits[2]);
      CAPTURE(bits[3]);
      // Tables: ascending tangents, 16-entry cos/sin (past 2^b unused).
      std::vector<float> tans[3], cosines[3], sines[3];
      for (int l = 1; l < 4; ++l) {
        const size_t size = size_t{1} << bits[l];
        for (size_t k = 0; k + 1 < size; ++k) {
          tans[l - 1].push_back(std::tan((k + 1.0f) * 1.5707963f / size));
        }
        for (size_t k = 0; k < 16; ++k) {
          cosines[l - 1].push_back(k < size ? std::cos((k + 0.5f) * 1.5707963f / size) : 0.0f);
          sines[l - 1].push_back(k < size ? std::sin((k + 0.5f) * 1.5707963f / size) : 0.0f);
        }
      }
      const uint32_t bins = 1u << bits[0];
      std::vector<float> circle_cos(std::max<uint32_t>(bins, 16)), circle_sin(circle_cos.size());
      std::vector<uint64_t> circle_cos_sin(bins);
      for (uint32_t k = 0; k < bins; ++k) {
        circle_cos[k] = std::cos((k + 0.5f) * 6.2831853f / bins);
        circle_sin[k] = std::sin((k + 0.5f) * 6.2831853f / bins);
        circle_cos_sin[k] = uint64_t{Bits(circle_cos[k])} | uint64_t{Bits(circle_sin[k])} << 32;
      }
      kvc::simd::PqRows rows;
      rows.dim = dim;
      for (int l = 0; l < 4; ++l) rows.bits[l] = bits[l];
      for (int l = 0; l < 3; ++l) {
        rows.tan_thresholds[l] = tans[l].data();
        rows.cosines[l] = cosines[l].data();
        rows.sines[l] = sines[l].data();
      }
      rows.circle_cos = circle_cos.data();
      rows.circle_sin = circle_sin.data();
      rows.circle_cos_sin = circle_cos_sin.data();
      const size_t group_bits = 8 * bits[0] + 4 * bits[1] + 2 * bits[2] + bits[3];
      const size_t record_bytes = (groups * group_bits + 7) / 8;
      std::vector<uint8_t> records(count * record_bytes);
      std::vector<float> radii(count * groups);
      if (!kvc::simd::PqEncodeRows(rows, y.data(), count, records.data(), radii.data())) {
        continue;
      }
      ++applied;
      std::vector<float> decoded(count * dim);
      REQUIRE(kvc::simd::PqDecodeRows(rows, records.data(), radii.data(), count, decoded.data()));
      for (size_t n = 0; n < count; ++n) {
        // Reference: level 1 angles and radii, then the folds.
        std::vector<uint32_t> code[4];
        std::vector<float> radius[4];
        for (size_t i = 0; i < dim / 2; ++i) {
          const float a = y[n * dim + 2 * i], b = y[n * dim + 2 * i + 1];
          code[0].push_back(kvc::AngleBin(a, b, bins));
          radius[0].push_back(std::sqrt(a * a + b * b));
        }
        for (int l = 1; l < 4; ++l) {
          for (size_t i = 0; i < radius[l - 1].size() / 2; ++i) {
            const float e = radius[l - 1][2 * i], o = radius[l - 1][2 * i + 1];
            uint32_t c = 0;
            for (float t : tans[l - 1]) c += o > t * e;
            code[l].push_back(c);
            radius[l].push_back(std::sqrt(e * e + o * o));
          }
        }
        std::vector<uint8_t> ref(record_bytes, 0);
        kvc::BitWriter writer(ref.data());
        for (size_t g = 0; g < groups; ++g) {
          for (int l = 0, m = 8; l < 4; ++l, m /= 2) {
            for (int j = 0; j < m; ++j) writer.Put(code[l][g * m + j], bits[l]);
          }
          REQUIRE(Bits(radii[n * groups + g]) == Bits(radius[3][g]));
        }
        REQUIRE(std::memcmp(ref.data(), &records[n * record_bytes], record_bytes) == 0);
        // Back: from each group radius down the levels, as the decoder.
        for (size_t g = 0; g < groups; ++g) {
          std::vector<float> r = {radius[3][g]};
          for (int l = 3; l >= 1; --l) {
            std::vector<float> next;
            const size_t m = r.size();
            for (size_t j = 0; j < m; ++j) {
              const uint32_t k = code[l][g * m + j];
              next.push_back(r[j] * cosines[l - 1][k]);
              next.push_back(r[j] * sines[l - 1][k]);
            }
            r = next;
          }
          for (size_t j = 0; j < 8; ++j) {
            const uint32_t k = code[0][g * 8 + j];
            REQUIRE(Bits(decoded[n * dim + g * 16 + 2 * j]) == Bits(r[j] * circle_cos[k]));
            REQUIRE(Bits(decoded[n * dim + g * 16 + 2 * j + 1]) == Bits(r[j] * circle_sin[k]));
          }
        }
      }
    }
  }
  if (HasFusedRowKernels()) REQUIRE(applied > 0);
}

struct PresetRun {
  std::vector<uint8_t> bytes;
  std::vector<float> keys, values;
  std::vector<uint16_t> keys_f16;
};

PresetRun RunPreset(const char* preset, uint32_t dim) {
  const uint32_t layers = 2, heads = 2, tokens = 11;
  const size_t n = size_t{layers} * heads * tokens * dim;
  std::vector<uint16_t> k16(n), v16(n);
  const std::vector<float> k = kvc_test::GaussianVectors(n / dim, dim, 21, false);
  const std::vector<float> v = kvc_test::GaussianVectors(n / dim, dim, 22, false);
  for (size_t i = 0; i < n; ++i) {
    k16[i] = kvc::F32ToF16(k[i] * ((i % dim) % 13 == 5 ? 6.0f : 1.5f));
    v16[i] = kvc::F32ToF16(v[i]);
  }
  kvc_cache_desc desc;
  kvc_cache_desc_init(&desc);
  desc.num_layers = layers;
  desc.num_kv_heads = heads;
  desc.num_tokens = tokens;
  desc.head_dim = dim;
  desc.dtype = KVC_DTYPE_F16;
  desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  desc.rope_base = 10000.0f;
  kvc_config* config = nullptr;
  REQUIRE(kvc_config_from_preset(preset, &config, nullptr) == KVC_OK);
  kvc_encode_options options;
  kvc_encode_options_init(&options);
  options.threads = 1;
  options.block_tokens = 8;  // blocks of 8 and 3 tokens
  PresetRun run;
  run.bytes.resize(kvc_stream_bound(config, &desc, &options));
  const kvc_tensor kt = kvc_test::Tensor4(k16.data(), KVC_DTYPE_F16, layers, heads, tokens, dim);
  const kvc_tensor vt = kvc_test::Tensor4(v16.data(), KVC_DTYPE_F16, layers, heads, tokens, dim);
  size_t size = 0;
  kvc_diagnostics diag;
  const kvc_status s = kvc_encode_stream(config, &desc, &kt, &vt, &options, run.bytes.data(),
                                         run.bytes.size(), &size, &diag);
  kvc_config_destroy(config);
  INFO(diag.message);
  REQUIRE(s == KVC_OK);
  run.bytes.resize(size);
  run.keys.resize(n);
  run.values.resize(n);
  run.keys_f16.resize(n);
  kvc_decode_options dopt;
  kvc_decode_options_init(&dopt);
  dopt.threads = 1;
  const kvc_tensor ko = kvc_test::Tensor4(run.keys.data(), KVC_DTYPE_F32, layers, heads, tokens, dim);
  const kvc_tensor vo = kvc_test::Tensor4(run.values.data(), KVC_DTYPE_F32, layers, heads, tokens, dim);
  REQUIRE(kvc_decode_stream(run.bytes.data(), size, &dopt, &ko, &vo, &diag) == KVC_OK);
  const kvc_tensor k16o =
      kvc_test::Tensor4(run.keys_f16.data(), KVC_DTYPE_F16, layers, heads, tokens, dim);
  REQUIRE(kvc_decode_stream(run.bytes.data(), size, &dopt, &k16o, nullptr, &diag) == KVC_OK);
  return run;
}

std::vector<int64_t> Targets() {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  // Lowest (scalar or emulated) first: it is the reference for the streams.
  return std::vector<int64_t>(targets.rbegin(), targets.rend());
}

}  // namespace

TEST_CASE("SIMD kernels match the scalar reference on every target") {
  for (int64_t target : Targets()) {
    const std::string name = hwy::TargetName(target);
    CAPTURE(name);
    hwy::SetSupportedTargetsForTest(target);
    REQUIRE(std::string(kvc_simd_target()) == name);
    CheckConversions();
    CheckReductions();
    CheckRotation();
    CheckBitStreams();
    CheckQuantizers();
    CheckPackIndices();
    CheckFusedTurboQuant();
    CheckRotateRows();
    CheckQuantizeRows();
    CheckGathersAndEnergies();
    CheckAngles();
    CheckTurboAngleRows();
    CheckPolarQuantRows();
    CheckFolds();
    CheckQjl();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST_CASE("Every preset encodes and decodes identically on every target") {
  const std::vector<int64_t> targets = Targets();
  for (uint32_t p = 0; p < kvc_preset_count(); ++p) {
    const std::string preset = kvc_preset_name(p);
    CAPTURE(preset);
    for (uint32_t dim : {64u, 96u, 128u}) {
      CAPTURE(dim);
      PresetRun reference;
      for (size_t t = 0; t < targets.size(); ++t) {
        const std::string name = hwy::TargetName(targets[t]);
        CAPTURE(name);
        hwy::SetSupportedTargetsForTest(targets[t]);
        PresetRun run = RunPreset(preset.c_str(), dim);
        if (t == 0) {
          reference = std::move(run);
          continue;
        }
        REQUIRE(run.bytes == reference.bytes);
        REQUIRE(std::memcmp(run.keys.data(), reference.keys.data(), run.keys.size() * 4) == 0);
        REQUIRE(std::memcmp(run.values.data(), reference.values.data(),
                            run.values.size() * 4) == 0);
        REQUIRE(run.keys_f16 == reference.keys_f16);
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}
