// The exception the kvc tools throw for every failure they report to the
// user. The message is one line that names the file and the problem; the CLI
// prints it after "kvc: ".
#ifndef KVCODEC_TOOLS_ERROR_H_
#define KVCODEC_TOOLS_ERROR_H_

#include <stdexcept>

namespace kvc::tools {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_ERROR_H_
