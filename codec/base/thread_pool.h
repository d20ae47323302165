// Threads that run several rounds of jobs: up to `workers` threads, each
// started once, the calling thread working beside them, each round's jobs
// handed out through an atomic counter. Header-only and free of the
// library's other internals, so that `kvc bench --attention` gives its f16
// baseline and kvcodec the same pool (an engine's, as kvc_parallel_runner
// sees it), and kvcodec's own calls keep theirs for one call
// (base/parallel.h).
#ifndef KVCODEC_CODEC_BASE_THREAD_POOL_H_
#define KVCODEC_CODEC_BASE_THREAD_POOL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace kvc {

class ThreadPool {
 public:
  // Up to `workers` threads, started when a round first has jobs for them.
  explicit ThreadPool(size_t workers) : max_workers_(workers) {}
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Starts up to n workers now (fewer if the system refuses more), idle
  // until the next round.
  void Start(size_t n) {
    while (threads_.size() < std::min(n, max_workers_) && Grow(round_)) {
    }
  }

  // f(job, thread) for every job < jobs, thread <= workers (0: the caller);
  // returns when all have returned. f must not throw. Not reentrant.
  void Run(size_t jobs, const std::function<void(size_t, size_t)>& f) {
    if (jobs <= 1 || max_workers_ == 0) {
      for (size_t job = 0; job < jobs; ++job) f(job, 0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &f;
      jobs_ = jobs;
      next_ = 0;
      busy_ = threads_.size();
      ++round_;
    }
    wake_.notify_all();
    // Workers this round needs and the pool lacks join it as they start:
    // the first ones work while the next ones are being started.
    const size_t wanted = std::min(jobs - 1, max_workers_);
    while (threads_.size() < wanted && next_.load() < jobs_ && Grow(round_ - 1)) {
    }
    Drain(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
  }

  // The pool as a kvc_parallel_runner (the pool is runner_opaque).
  static void RunJobs(void* pool, void* job_opaque, void (*job)(void*, size_t), size_t count) {
    static_cast<ThreadPool*>(pool)->Run(count, [&](size_t i, size_t) { job(job_opaque, i); });
  }

 private:
  // Starts one worker that next runs the round after `seen` (the current
  // one, given round_ - 1). False if the system refused.
  bool Grow(uint64_t seen) {
    const size_t thread = threads_.size() + 1;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (seen != round_) ++busy_;  // it joins the running round
    }
    try {
      threads_.emplace_back([this, thread, seen] { Work(thread, seen); });
      return true;
    } catch (const std::system_error&) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (seen != round_) --busy_;
      return false;
    }
  }

  void Drain(size_t thread) {
    for (size_t job; (job = next_.fetch_add(1)) < jobs_;) (*task_)(job, thread);
  }
  void Work(size_t thread, uint64_t seen) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || round_ != seen; });
      if (stop_) return;
      seen = round_;
      lock.unlock();
      Drain(thread);
      lock.lock();
      if (--busy_ == 0) done_.notify_one();
    }
  }

  const size_t max_workers_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  bool stop_ = false;
  uint64_t round_ = 0;
  size_t busy_ = 0;
  const std::function<void(size_t, size_t)>* task_ = nullptr;
  size_t jobs_ = 0;
  std::atomic<size_t> next_{0};
};

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_THREAD_POOL_H_
