#include "threads.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <new>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define FUSEDRNN_PAUSE() _mm_pause()
#else
#define FUSEDRNN_PAUSE() ((void)0)
#endif

namespace fusedrnn::cpu {
namespace {

// Sense-reversing spin barrier. It spins for kSpinsBeforeYield pauses (~5 us on Zen 4), then
// yields between checks, so that a rank whose partner is waiting for its CPU lets it run. After
// the process had idled for 50 ms or more, two-thread calls here ran 8-36 ms instead of 0.3 ms
// (LSTM T=100 B=1) for a few calls, in steps of about the old spin window (20000 pauses,
// ~0.5 ms) per barrier: the two ranks apparently shared one vCPU for a while. With 200 pauses
// such calls took ~1.3 ms, and steady-state calls read the same (perf-notes, twelfth session).
constexpr int kSpinsBeforeYield = 200;
class SpinBarrier {
 public:
  void reset(int n) {
    n_ = n;
    count_.store(0);
  }
  void wait() {
    const unsigned gen = generation_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < kSpinsBeforeYield)
        FUSEDRNN_PAUSE();
      else
        std::this_thread::yield();
    }
  }

 private:
  int n_ = 1;
  std::atomic<int> count_{0};
  std::atomic<unsigned> generation_{0};
};

// The CPUs a job's members run on. After the process had idled for 50 ms or more, the VM's
// scheduler woke the worker on the caller's own CPU at every call (sched_getcpu, counted by
// benchmarks/patches/worker_starts.patch: 45 of 92 starts in after_idle.py, every call after a
// pause, against 0 of 7442 in back-to-back calls), and the two ranks of a call then took
// turns on that CPU at every barrier: 1.3-1.6 ms for a 0.3 ms call, and so on for each call after
// it until the load balancer separated them (perf-notes, thirteenth session). So a job claims the
// CPUs its members start on, and a worker that starts on a claimed one moves to an unclaimed CPU it
// may run on: pinned to that CPU for a moment, which moves it there at once, then given back its
// own affinity, so that no thread stays pinned. Best effort: nothing is claimed where the CPU is
// unknown, and nothing moves where the worker may run nowhere else.
class CpuClaims {
 public:
#if defined(__linux__)
  // The caller's CPU, before the workers wake (all of this under the pool's lock).
  void reset() {
    CPU_ZERO(&claimed_);
    claim(sched_getcpu());
  }
  // Claims this worker's CPU and returns -1, or where it is taken already, claims and returns an
  // unclaimed CPU of `own` (this thread's affinity, read here) to move to (-1 if there is none).
  int claim_or_pick(cpu_set_t* own) {
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &claimed_)) {
      claim(cpu);
      return -1;
    }
    if (sched_getaffinity(0, sizeof(*own), own) != 0) return -1;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, own) && !CPU_ISSET(c, &claimed_)) {
        claim(c);
        return c;
      }
    }
    return -1;
  }
  // Outside the lock.
  static void move_to(int cpu, const cpu_set_t& own) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof(one), &one) == 0) sched_setaffinity(0, sizeof(own), &own);
  }

 private:
  void claim(int cpu) {
    if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &claimed_);
  }
  cpu_set_t claimed_;
#else
  void reset() {}
#endif
};

class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      ++job_id_;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    ranges_ = std::make_unique<WorkRange[]>(static_cast<std::size_t>(Team::kWorkSlots) * n);
    stop_ = false;
    for (int r = 1; r < n; ++r) workers_.emplace_back([this, r, start = job_id_] { work(r, start); });
  }

  void run(const std::function<void(Team&)>& fn, bool alone) {
    const int n = alone ? 1 : size();
    barrier_.reset(n);
    if (n == 1) {
      Member self(this, 0, 1);
      fn(self);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      pending_ = n - 1;
      ++job_id_;
      cpus_.reset();
    }
    wake_.notify_all();
    Member self(this, 0, n);
    fn(self);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  struct Member final : Team {
    Member(Pool* pool, int rank, int size) : pool_(pool), rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void barrier() override {
      if (size_ > 1) pool_->barrier_.wait();
    }
    WorkRange& work_range(int slot, int rank) override { return pool_->ranges_[slot * size_ + rank]; }
    Pool* pool_;
    int rank_, size_;
  };

  void work(int rank, unsigned seen) {
    for (;;) {
      const std::function<void(Team&)>* job;
      int n;
#if defined(__linux__)
      cpu_set_t own;
      int move = -1;
#endif
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return job_id_ != seen; });
        seen = job_id_;
        if (stop_) return;
        job = job_;
        n = size();
#if defined(__linux__)
        move = cpus_.claim_or_pick(&own);
#endif
      }
#if defined(__linux__)
      if (move >= 0) CpuClaims::move_to(move, own);
#endif
      Member self(this, rank, n);
      (*job)(self);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(Team&)>* job_ = nullptr;
  unsigned job_id_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  SpinBarrier barrier_;
  CpuClaims cpus_;  // this job's, under mutex_
  std::unique_ptr<WorkRange[]> ranges_;  // Team::kWorkSlots per rank
};

std::mutex g_call_mutex;  // one kernel call at a time uses the team
std::unique_ptr<Pool> g_pool;
int g_requested = 0;  // 0: default

// A forked child has none of the parent's worker threads: forget the pool (without joining
// threads that do not exist there) and start a new one on first use.
void forget_pool_in_child() {
  new (&g_call_mutex) std::mutex();
  (void)g_pool.release();
}

Pool& pool() {
  if (!g_pool) {
#if defined(__linux__)
    static const bool registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child) == 0;
    (void)registered;
#endif
    g_pool = std::make_unique<Pool>();
    g_pool->resize(g_requested > 0 ? g_requested : default_num_threads());
  }
  return *g_pool;
}

}  // namespace

int default_num_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

void parallel(const std::function<void(Team&)>& fn, double work_flops) {
  std::lock_guard<std::mutex> lock(g_call_mutex);
  pool().run(fn, work_flops < kTeamMinFlops);
}

int num_threads() {
  std::lock_guard<std::mutex> lock(g_call_mutex);
  return pool().size();
}

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_call_mutex);
  g_requested = n;
  if (g_pool) g_pool->resize(n);
}

}  // namespace fusedrnn::cpu
