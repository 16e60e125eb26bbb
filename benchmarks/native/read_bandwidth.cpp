// Streaming read bandwidth: each of N threads sums its own buffer 4 times with AVX2 loads, with
// an optional software prefetch PF cache-line pairs ahead (0: none). The yardstick for the step
// products that read R from memory (docs/perf-notes.md).
//   g++ -O2 -mavx2 -mfma -pthread benchmarks/native/read_bandwidth.cpp -o /tmp/bw
//   /tmp/bw THREADS MB_PER_THREAD PF      (e.g. /tmp/bw 2 32 0, /tmp/bw 2 32 16)
#include <immintrin.h>
#include <thread>
#include <vector>
#include <chrono>
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
  int nth = atoi(argv[1]); long mb = atol(argv[2]); int pf = atoi(argv[3]);
  long n = mb * 1024 * 1024 / 4;
  std::vector<float*> bufs(nth);
  for (int t = 0; t < nth; ++t) { bufs[t] = (float*)aligned_alloc(64, n * 4); for (long i = 0; i < n; ++i) bufs[t][i] = 1e-3f * (i % 97); }
  float sinks[64];
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    for (int t = 0; t < nth; ++t) th.emplace_back([&, t] {
      const float* p = bufs[t];
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int it = 0; it < 4; ++it)
      for (long i = 0; i < n; i += 32) {
        if (pf) _mm_prefetch((const char*)(p + i + pf * 16), _MM_HINT_T0);
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
        if (pf) _mm_prefetch((const char*)(p + i + pf * 16 + 16), _MM_HINT_T0);
      }
      a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      float o[8]; _mm256_storeu_ps(o, a0); sinks[t] = o[0];
    });
    for (auto& x : th) x.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("threads %d, %ld MB each, pf %d: %.1f GB/s\n", nth, mb, pf, 4.0 * nth * n * 4 / s / 1e9);
  }
  return sinks[0] > 1e30;
}
