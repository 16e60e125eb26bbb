// How long the barrier's spin window lasts: N x _mm_pause (threads.cpp spins kSpinsBeforeYield of
// them before its first yield). Prints the time of N pauses, three rounds.
//   g++ -O2 benchmarks/native/pause_cost.cpp -o /tmp/pause_cost && /tmp/pause_cost 20000
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 20000;
  for (int round = 0; round < 3; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) _mm_pause();
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%ld pauses: %.2f us\n", n, us);
  }
}
