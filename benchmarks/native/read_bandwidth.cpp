// Streaming read bandwidth: each of N threads sums its own buffer PASSES times (default 4) with
// eight running sums of AVX2 loads, or of AVX-512 loads when built with -mavx512f, with an
// optional software prefetch PF cache lines ahead (0: none). The yardstick for the step products
// that read R from memory or from L2 (docs/perf-notes.md).
//   g++ -O2 -mavx2 -mfma -pthread benchmarks/native/read_bandwidth.cpp -o /tmp/bw
//   g++ -O2 -mavx512f -pthread benchmarks/native/read_bandwidth.cpp -o /tmp/bw512
//   /tmp/bw THREADS MB_PER_THREAD PF [PASSES]   (e.g. /tmp/bw 2 32 0, /tmp/bw 2 32 16;
//   /tmp/bw512 2 0.5 0 2000: half a megabyte each, from L2, 2000 passes)
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kWidth = 16;
static Vec zero() { return _mm512_setzero_ps(); }
static Vec add(Vec a, const float* p) { return _mm512_add_ps(a, _mm512_load_ps(p)); }
static float first(Vec a) { return _mm512_reduce_add_ps(a); }
#else
using Vec = __m256;
constexpr int kWidth = 8;
static Vec zero() { return _mm256_setzero_ps(); }
static Vec add(Vec a, const float* p) { return _mm256_add_ps(a, _mm256_load_ps(p)); }
static float first(Vec a) {
  float o[8];
  _mm256_storeu_ps(o, a);
  return o[0];
}
#endif

int main(int argc, char** argv) {
  const int nth = atoi(argv[1]);
  const double mb = atof(argv[2]);
  const int pf = atoi(argv[3]);
  const int passes = argc > 4 ? atoi(argv[4]) : 4;
  constexpr long kStep = 8 * kWidth;  // floats per iteration: eight vectors
  const long n = long(mb * 1024 * 1024 / 4) / kStep * kStep;
  std::vector<float*> bufs(nth);
  for (int t = 0; t < nth; ++t) {
    bufs[t] = (float*)aligned_alloc(64, n * 4);
    for (long i = 0; i < n; ++i) bufs[t][i] = 1e-3f * (i % 97);
  }
  float sinks[64];
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> th;
    for (int t = 0; t < nth; ++t) th.emplace_back([&, t] {
      const float* p = bufs[t];
      Vec a[8];  // eight sums, so that the adds' latency (4 cycles) allows two loads per cycle
      for (auto& v : a) v = zero();
      for (int it = 0; it < passes; ++it)
        for (long i = 0; i < n; i += kStep) {
          if (pf)
#pragma GCC unroll 8
            for (int line = 0; line < kStep / 16; ++line)
              _mm_prefetch((const char*)(p + i + pf * 16 + line * 16), _MM_HINT_T0);
#pragma GCC unroll 8
          for (int j = 0; j < 8; ++j) a[j] = add(a[j], p + i + kWidth * j);
        }
      Vec s = a[0];
      for (int j = 1; j < 8; ++j) s = add(s, reinterpret_cast<const float*>(&a[j]));
      sinks[t] = first(s);
    });
    for (auto& x : th) x.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("threads %d, %g MB each, %d-bit loads, pf %d: %.1f GB/s\n", nth, mb, kWidth * 32, pf,
           double(passes) * nth * n * 4 / s / 1e9);
  }
  return sinks[0] > 1e30;
}
