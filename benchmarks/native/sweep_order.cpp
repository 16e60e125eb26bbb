// Does the order of a cyclic sweep decide how much of a buffer larger than the L3 stays cached?
// Each of N threads sums its own buffer of MB megabytes in chunks of CHUNK_KB, PASSES times. Mode 0
// walks the chunks in the same order every pass; mode 1 reverses the chunk order on every other
// pass (within a chunk the order is unchanged, as the step kernels' k order must be), so the chunks
// read last in one pass are read first in the next. The yardstick for streaming R through the step
// kernels when R is a little larger than the L3 (docs/perf-notes.md).
//   g++ -O2 -mavx2 -mfma -pthread benchmarks/native/sweep_order.cpp -o /tmp/sweep
//   /tmp/sweep THREADS MB_PER_THREAD CHUNK_KB MODE      (e.g. /tmp/sweep 2 19 192 1)
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) { std::fprintf(stderr, "usage: sweep THREADS MB CHUNK_KB MODE\n"); return 2; }
  const int nth = std::atoi(argv[1]);
  const long n = std::atol(argv[2]) * 1024 * 1024 / 4;
  const long chunk = std::atol(argv[3]) * 1024 / 4;
  const int mode = std::atoi(argv[4]);
  const long nchunks = (n + chunk - 1) / chunk;
  const int passes = 20;
  std::vector<float*> bufs(nth);
  for (int t = 0; t < nth; ++t) {
    bufs[t] = static_cast<float*>(std::aligned_alloc(64, nchunks * chunk * 4));
    for (long i = 0; i < nchunks * chunk; ++i) bufs[t][i] = 1e-3f * (i % 97);
  }
  float sinks[64];
  std::vector<double> rates;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    for (int t = 0; t < nth; ++t) th.emplace_back([&, t] {
      const float* p = bufs[t];
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int pass = 0; pass < passes; ++pass) {
        const bool backwards = mode == 1 && pass % 2 == 1;
        for (long c = 0; c < nchunks; ++c) {
          const float* q = p + (backwards ? nchunks - 1 - c : c) * chunk;
          for (long i = 0; i < chunk; i += 32) {
            _mm_prefetch(reinterpret_cast<const char*>(q + i + 256), _MM_HINT_T0);
            a0 = _mm256_add_ps(a0, _mm256_load_ps(q + i));
            a1 = _mm256_add_ps(a1, _mm256_load_ps(q + i + 8));
            _mm_prefetch(reinterpret_cast<const char*>(q + i + 272), _MM_HINT_T0);
            a2 = _mm256_add_ps(a2, _mm256_load_ps(q + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_load_ps(q + i + 24));
          }
        }
      }
      a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      float o[8];
      _mm256_storeu_ps(o, a0);
      sinks[t] = o[0];
    });
    for (auto& x : th) x.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(double(passes) * nth * nchunks * chunk * 4 / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("threads %d, %s MB each, chunk %s KB, mode %d: median %.1f GB/s (%.1f-%.1f)\n", nth,
              argv[2], argv[3], mode, rates[2], rates[0], rates[4]);
  return sinks[0] > 1e30f;
}
