#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace kvc {
namespace {

// The jobs of one ParallelFor and the first failure among them, shared by
// the threads that run them.
class Jobs {
 public:
  Jobs(size_t count, const std::function<Status(size_t)>& run)
      : count_(count), run_(run), failed_job_(count) {}

  // Runs job i unless an earlier one already failed; no exception escapes
  // (a runner's threads are the caller's, and a std::thread would end the
  // process).
  void Run(size_t job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failed_job_ < job) return;
    }
    Status status;
    try {
      status = run_(job);
    } catch (const std::bad_alloc&) {
      status = Status(KVC_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (...) {
      status = Status(KVC_ERR_INTERNAL, "a job threw an exception");
    }
    if (!status.ok()) Fail(job, status);
  }

  size_t count() const { return count_; }
  Status failure() const { return failure_; }

 private:
  void Fail(size_t job, const Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (job < failed_job_) {
      failed_job_ = job;
      failure_ = status;
    }
  }

  const size_t count_;
  const std::function<Status(size_t)>& run_;
  std::mutex mutex_;
  size_t failed_job_;
  Status failure_;
};

// What a caller's runner is handed: the jobs, and a mark per job so that
// one run twice or not at all is an error, not a wrong result.
struct RunnerJobs {
  Jobs* jobs;
  std::unique_ptr<std::atomic<uint8_t>[]> ran;
};

void RunRunnerJob(void* opaque, size_t index) {
  auto* r = static_cast<RunnerJobs*>(opaque);
  if (index >= r->jobs->count() || r->ran[index].exchange(1) != 0) return;
  r->jobs->Run(index);
}

}  // namespace

Status ParallelFor(size_t num_jobs, const Parallelism& parallelism,
                   const std::function<Status(size_t job)>& run) {
  Jobs jobs(num_jobs, run);
  if (parallelism.runner != nullptr && num_jobs > 1) {
    RunnerJobs r{&jobs, std::make_unique<std::atomic<uint8_t>[]>(num_jobs)};  // zeroed
    parallelism.runner(parallelism.runner_opaque, &r, RunRunnerJob, num_jobs);
    for (size_t i = 0; i < num_jobs; ++i) {
      if (r.ran[i].load() == 0) {
        return Status(KVC_ERR_INVALID_ARGUMENT,
                      StrFormat("the parallel runner returned without running job %zu of %zu",
                                i, num_jobs));
      }
    }
    return jobs.failure();
  }
  uint32_t threads = parallelism.runner != nullptr ? 1 : parallelism.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const size_t workers = std::min<size_t>(threads, num_jobs);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t job; (job = next.fetch_add(1)) < num_jobs;) jobs.Run(job);
  };
  if (workers <= 1) {
    work();
    return jobs.failure();
  }
  std::vector<std::thread> pool;
  try {
    for (size_t i = 1; i < workers; ++i) pool.emplace_back(work);
  } catch (const std::system_error&) {
    // Could not start more threads: the ones we have will finish the jobs.
  }
  work();
  for (std::thread& t : pool) t.join();
  return jobs.failure();
}

Status ParallelFor(size_t num_jobs, uint32_t threads,
                   const std::function<Status(size_t job)>& run) {
  Parallelism parallelism;
  parallelism.threads = threads;
  return ParallelFor(num_jobs, parallelism, run);
}

CallThreads::CallThreads(uint32_t threads)
    : pool_((threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency())) - 1) {}

}  // namespace kvc
