// Internal error type: a kvc_status code plus a one-line message. Every
// fallible internal function returns Status; the C shims turn it into the
// public status and the caller's kvc_diagnostics.
#ifndef KVCODEC_CODEC_BASE_STATUS_H_
#define KVCODEC_CODEC_BASE_STATUS_H_

#include <string>
#include <utility>

#include "kvcodec/kvcodec.h"

namespace kvc {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(kvc_status code, std::string message)
      : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == KVC_OK; }
  kvc_status code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  kvc_status code_ = KVC_OK;
  std::string message_;
};

inline Status OkStatus() { return Status(); }

// printf-style message builder, so call sites stay one line.
std::string StrFormat(const char* format, ...)
    __attribute__((format(printf, 1, 2)));

#define KVC_RETURN_IF_ERROR(expr)          \
  do {                                     \
    ::kvc::Status kvc_status_ = (expr);    \
    if (!kvc_status_.ok()) return kvc_status_; \
  } while (0)

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_STATUS_H_
