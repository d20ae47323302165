// Runs independent jobs on a few threads for one API call. No pool survives
// the call: the library keeps no threads and no state between calls.
#ifndef KVCODEC_CODEC_BASE_PARALLEL_H_
#define KVCODEC_CODEC_BASE_PARALLEL_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "base/status.h"

namespace kvc {

// threads: 0 means one per core. Returns the failure of the lowest-numbered
// failing job, so the error reported does not depend on scheduling.
Status ParallelFor(size_t num_jobs, uint32_t threads,
                   const std::function<Status(size_t job)>& run);

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_PARALLEL_H_
