// One-time Highway target selection, so that the first dispatched call does
// not go through the trampoline (style.md §4.3).
#ifndef KVCODEC_CODEC_SIMD_DISPATCH_H_
#define KVCODEC_CODEC_SIMD_DISPATCH_H_

namespace kvc {
namespace simd {

// Idempotent and thread-safe; called by codec constructors.
void InitDispatch();

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_DISPATCH_H_
