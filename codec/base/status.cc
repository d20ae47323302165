#include "base/status.h"

#include <cstdarg>
#include <cstdio>

namespace kvc {

std::string StrFormat(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return buffer;
}

}  // namespace kvc
