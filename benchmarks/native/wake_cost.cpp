// What waking the team costs: two-thread jobs that pass one barrier, after the caller has been
// busy (not asleep) for a gap of 0, 10, 100 or 1000 us since the last job; 2000 jobs per gap. The
// worker sleeps on a condition variable between jobs, so the time to the first barrier is its
// wake-up. Prints the mean time per job and to the first barrier.
//   g++ -O2 -std=c++17 -pthread -Icsrc/cpu benchmarks/native/wake_cost.cpp csrc/cpu/threads.cpp \
//       -o /tmp/wake_cost && /tmp/wake_cost
#include <chrono>
#include <cstdio>

#include "threads.h"

using namespace fusedrnn::cpu;
using Clock = std::chrono::steady_clock;

int main() {
  set_num_threads(2);
  for (int gap_us : {0, 10, 100, 1000}) {
    constexpr int kJobs = 2000;
    double total_us = 0, first_barrier_us = 0;
    for (int i = 0; i < kJobs; ++i) {
      const auto until = Clock::now() + std::chrono::microseconds(gap_us);
      while (Clock::now() < until) {
      }
      const auto t0 = Clock::now();
      Clock::time_point passed;
      parallel([&](Team& team) {
        team.barrier();
        if (team.rank() == 0) passed = Clock::now();
      }, 1e12);
      total_us += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      first_barrier_us += std::chrono::duration<double, std::micro>(passed - t0).count();
    }
    std::printf("busy gap %4d us: %.1f us per job, first barrier passed after %.1f us\n", gap_us, total_us / kJobs,
                first_barrier_us / kJobs);
  }
}
