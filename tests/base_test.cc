// base/: half conversions, PRNG, portable log, parallel jobs.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstring>

#include "base/half.h"
#include "base/parallel.h"
#include "base/prng.h"

TEST_CASE("f16 round trips every finite value and rounds to nearest even") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = kvc::F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(kvc::F16ToF32(kvc::F32ToF16(f))));
      continue;
    }
    REQUIRE(kvc::F32ToF16(f) == h);
  }
  // Ties go to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
  CHECK(kvc::F32ToF16(1.0f + 0x1.0p-11f) == 0x3C00);
  CHECK(kvc::F32ToF16(1.0f + 3 * 0x1.0p-11f) == 0x3C02);
  CHECK(kvc::F32ToF16(65504.0f) == 0x7BFF);
  CHECK(kvc::F32ToF16(65519.0f) == 0x7BFF);
  CHECK(kvc::F32ToF16(65520.0f) == 0x7C00);  // overflows to infinity
  CHECK(kvc::F32ToF16(0x1.0p-25f) == 0);     // tie between 0 and 2^-24: even
  CHECK(kvc::F32ToF16(0x1.8p-25f) == 1);
  CHECK(kvc::F32ToF16(-0.0f) == 0x8000);
}

TEST_CASE("bf16 conversions round to nearest even and keep NaN") {
  for (uint32_t h = 0; h < 0x10000; h += 7) {
    const float f = kvc::BF16ToF32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(kvc::F32ToBF16(f) == h);
  }
  CHECK(kvc::F32ToBF16(1.0f + 0x1.0p-8f) == 0x3F80);   // tie -> even
  CHECK(kvc::F32ToBF16(1.0f + 0x1.8p-8f) == 0x3F81);
  CHECK(std::isnan(kvc::BF16ToF32(kvc::F32ToBF16(std::nanf("")))));
}

TEST_CASE("SplitMix64 matches its published reference values") {
  // Reference: Vigna's splitmix64.c seeded with 0 (first three outputs).
  kvc::SplitMix64 rng(0);
  CHECK(rng.Next() == 0xE220A8397B1DCDAFull);
  CHECK(rng.Next() == 0x6E789E6AA1B965F4ull);
  CHECK(rng.Next() == 0x06C45D188009454Full);
}

TEST_CASE("PortableLog is accurate to a few ulp") {
  kvc::SplitMix64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    // Values spread over many binades.
    const double x = std::ldexp(1.0 + (rng.Next() >> 11) * 0x1.0p-53,
                                static_cast<int>(rng.Next() % 200) - 100);
    const double exact = std::log(x);
    REQUIRE(std::abs(kvc::PortableLog(x) - exact) <=
            4 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(exact)));
  }
  CHECK(kvc::PortableLog(1.0) == 0.0);
}

TEST_CASE("GaussianSource has unit variance and zero mean") {
  kvc::GaussianSource gauss(11);
  double sum = 0, sum_squares = 0;
  constexpr int kN = 200000;
  for (int i = 0; i < kN; ++i) {
    const double g = gauss.Next();
    sum += g;
    sum_squares += g * g;
  }
  CHECK(std::abs(sum / kN) < 0.01);
  CHECK(std::abs(sum_squares / kN - 1) < 0.01);
}

TEST_CASE("ParallelFor runs every job once and reports the first failure") {
  std::vector<std::atomic<int>> runs(1000);
  CHECK(kvc::ParallelFor(runs.size(), 4, [&](size_t i) {
          runs[i]++;
          return kvc::OkStatus();
        }).ok());
  for (auto& r : runs) CHECK(r.load() == 1);
  const kvc::Status failed = kvc::ParallelFor(100, 4, [](size_t i) {
    return i % 10 == 7 ? kvc::Status(KVC_ERR_CORRUPT, std::to_string(i))
                       : kvc::OkStatus();
  });
  CHECK(failed.code() == KVC_ERR_CORRUPT);
  CHECK(failed.message() == "7");
}
