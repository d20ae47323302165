// Whole-file reading and all-or-nothing file writing for the kvc tools.
#ifndef KVCODEC_TOOLS_FILE_UTIL_H_
#define KVCODEC_TOOLS_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kvc::tools {

// Returns the contents of `path`. Throws Error("PATH: cannot ...").
std::vector<uint8_t> ReadFile(const std::string& path);

// Writes `path` completely or not at all: the data goes to "PATH.tmp", which
// Commit() renames over `path`. If the object is destroyed before Commit()
// (an error was thrown), the temporary file is removed, so a failed run never
// leaves a partial output behind.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void Write(const void* data, size_t size);
  void Commit();

 private:
  [[noreturn]] void Fail(const std::string& what);

  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
};

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_FILE_UTIL_H_
