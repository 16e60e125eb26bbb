// The team's barrier alone: a two-thread job (threads.cpp's own pool) that does nothing but N
// barriers, five rounds; prints the time per barrier. The first round includes waking the worker.
//   g++ -O2 -std=c++17 -pthread -Icsrc/cpu benchmarks/native/barrier_cost.cpp csrc/cpu/threads.cpp \
//       -o /tmp/barrier_cost && /tmp/barrier_cost 200000
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "threads.h"

using namespace fusedrnn::cpu;

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 200000;
  set_num_threads(2);
  for (int round = 0; round < 5; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel([&](Team& team) { for (long i = 0; i < n; ++i) team.barrier(); }, 1e12);
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%.1f ns per barrier\n", ns / n);
  }
}
