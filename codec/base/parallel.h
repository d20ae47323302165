// Runs independent jobs on a few threads for one API call: threads started
// for the call (no pool survives it: the library keeps no threads and no
// state between calls), or the caller's pool (kvc_parallel_runner).
#ifndef KVCODEC_CODEC_BASE_PARALLEL_H_
#define KVCODEC_CODEC_BASE_PARALLEL_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "base/status.h"
#include "base/thread_pool.h"
#include "kvcodec/kvcodec.h"

namespace kvc {

// Where a call's jobs run.
struct Parallelism {
  uint32_t threads = 0;                   // 0: one per core; unused with a runner
  kvc_parallel_runner runner = nullptr;   // the caller's pool, if not null
  void* runner_opaque = nullptr;
};

// Returns the failure of the lowest-numbered failing job, so the error
// reported does not depend on scheduling (jobs after a failed one may be
// skipped). A job that throws fails with OUT_OF_MEMORY or INTERNAL; a runner
// that does not run every job exactly once makes the call INVALID_ARGUMENT.
Status ParallelFor(size_t num_jobs, const Parallelism& parallelism,
                   const std::function<Status(size_t job)>& run);
// threads: 0 means one per core.
Status ParallelFor(size_t num_jobs, uint32_t threads,
                   const std::function<Status(size_t job)>& run);

// Threads started once for a call that runs several rounds of jobs, joined
// when it ends (kvc_decode_attention: checksums, then attention): a round
// then costs a wake-up, not a start of every thread.
class CallThreads {
 public:
  explicit CallThreads(uint32_t threads);  // 0: one per core
  Parallelism parallelism() {
    Parallelism p;
    p.runner = ThreadPool::RunJobs;
    p.runner_opaque = &pool_;
    return p;
  }

 private:
  ThreadPool pool_;
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_PARALLEL_H_
