#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

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

size_t LastLevelCacheBytes() {
#if defined(_SC_LEVEL3_CACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  for (const int level : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(level);
    if (bytes > 0) return static_cast<size_t>(bytes);
  }
#endif
  return size_t{32} << 20;
}

}  // namespace kvc
