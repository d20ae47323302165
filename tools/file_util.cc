#include "tools/file_util.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include "tools/error.h"

namespace kvc::tools {
namespace {

std::string SystemError(const std::string& path, const char* action,
                        int error) {
  return path + ": cannot " + action + ": " + std::strerror(error);
}

}  // namespace

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) throw Error(SystemError(path, "open", errno));
  std::vector<uint8_t> bytes;
  // Read in chunks rather than trusting a size from fstat: this also works
  // for pipes and files that change while we read them.
  constexpr size_t kChunk = size_t{1} << 20;
  size_t size = 0;
  for (;;) {
    bytes.resize(size + kChunk);
    const size_t got = std::fread(bytes.data() + size, 1, kChunk, file);
    size += got;
    if (got < kChunk) break;
  }
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) throw Error(SystemError(path, "read", error));
  bytes.resize(size);
  bytes.shrink_to_fit();
  return bytes;
}

AtomicFile::AtomicFile(std::string path)
    : path_(std::move(path)), temp_path_(path_ + ".tmp") {
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (file_ == nullptr) throw Error(SystemError(temp_path_, "create", errno));
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!temp_path_.empty()) std::remove(temp_path_.c_str());
}

void AtomicFile::Fail(const std::string& what) {
  const int error = errno;
  throw Error(SystemError(temp_path_, what.c_str(), error));
}

void AtomicFile::Write(const void* data, size_t size) {
  if (size != 0 && std::fwrite(data, 1, size, file_) != size) Fail("write");
}

void AtomicFile::Commit() {
  // fclose flushes, and reports the errors of delayed writes (disk full).
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) Fail("write");
  // On POSIX systems rename() replaces `path_` atomically.
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    throw Error(path_ + ": cannot rename " + temp_path_ +
                " to it: " + std::strerror(error));
  }
  temp_path_.clear();  // Nothing left to remove.
}

}  // namespace kvc::tools
