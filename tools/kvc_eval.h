// `kvc eval`: measures a config's size and quality on a cache, or on random
// unit vectors.
#ifndef KVCODEC_TOOLS_KVC_EVAL_H_
#define KVCODEC_TOOLS_KVC_EVAL_H_

#include <string>
#include <vector>

namespace kvc::tools {

// Runs `kvc eval` with the arguments after "eval". Throws Error on failure.
void EvalCommand(const std::vector<std::string>& args);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_KVC_EVAL_H_
