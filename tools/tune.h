// `kvc tune`: a per-layer config (method and bits for every layer's K and V)
// that fits a bit budget with the least model-visible error, chosen from a
// KV cache dump without labels or gradients.
#ifndef KVCODEC_TOOLS_TUNE_H_
#define KVCODEC_TOOLS_TUNE_H_

#include <string>
#include <vector>

namespace kvc::tools {

// Runs `kvc tune` with the arguments after "tune". Throws Error on failure.
void TuneCommand(const std::vector<std::string>& args);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_TUNE_H_
