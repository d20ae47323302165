// Prints the Highway targets that code compiled with these flags contains
// (HWY_TARGETS) and those of them the CPU it runs on supports: the set that
// tests/simd_test.cc loops over (hwy::SupportedAndGeneratedTargets), for
// tools/cross-test's report of what an architecture's run covered.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <hwy/targets.h>

int main() {
  std::printf("Highway targets compiled in:");
  for (int bit = 62; bit >= 0; --bit) {
    const int64_t target = int64_t{1} << bit;
    if ((HWY_TARGETS & target) != 0) std::printf(" %s", hwy::TargetName(target));
  }
  std::printf("\nHighway targets compiled in and supported here (the SIMD tests run each):");
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  for (int64_t target : targets) std::printf(" %s", hwy::TargetName(target));
  std::printf("\n");
  return targets.empty() ? 1 : 0;
}
