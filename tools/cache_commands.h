// kvc pack, unpack, cat, append and verify: whole caches on disk and on the
// wire (tools/cache_commands.cc).
#ifndef KVCODEC_TOOLS_CACHE_COMMANDS_H_
#define KVCODEC_TOOLS_CACHE_COMMANDS_H_

#include <string>
#include <vector>

namespace kvc::tools {

void PackCommand(const std::vector<std::string>& args);
void UnpackCommand(const std::vector<std::string>& args);
void CatCommand(const std::vector<std::string>& args);
void AppendCommand(const std::vector<std::string>& args);
// Lists every problem on stdout; throws (exit status 1) if there is one.
void VerifyCommand(const std::vector<std::string>& args);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_CACHE_COMMANDS_H_
