#include "simd/dispatch.h"

#include <mutex>

#include <hwy/targets.h>

namespace kvc {
namespace simd {

void InitDispatch() {
  static std::once_flag once;
  std::call_once(once, [] { hwy::GetChosenTarget().Update(hwy::SupportedTargets()); });
}

}  // namespace simd
}  // namespace kvc
