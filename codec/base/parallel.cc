#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace kvc {

Status ParallelFor(size_t num_jobs, uint32_t threads,
                   const std::function<Status(size_t job)>& run) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const size_t workers = std::min<size_t>(threads, num_jobs);
  std::atomic<size_t> next{0};
  std::mutex mutex;
  size_t failed_job = num_jobs;
  Status failure;
  auto work = [&] {
    for (size_t job; (job = next.fetch_add(1)) < num_jobs;) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (failed_job < job) return;  // an earlier job already failed
      }
      Status status = run(job);
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(mutex);
        if (job < failed_job) {
          failed_job = job;
          failure = status;
        }
      }
    }
  };
  if (workers <= 1) {
    work();
    return failure;
  }
  std::vector<std::thread> pool;
  try {
    for (size_t i = 1; i < workers; ++i) pool.emplace_back(work);
  } catch (const std::system_error&) {
    // Could not start more threads: the ones we have will finish the jobs.
  }
  work();
  for (std::thread& t : pool) t.join();
  return failure;
}

}  // namespace kvc
