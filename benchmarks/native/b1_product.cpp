// The B = 1 step product outside the kernels: R as blocks of [K = 128][16] floats, one sequence
// (2 loads, 1 broadcast, 2 FMAs per k, four interleaved partial sums as the kernels use at B = 1),
// repeated over R of a given size on one thread, so that R sits in L1, L2 or L3.
//   g++ -O3 -mavx2 -mfma benchmarks/native/b1_product.cpp -o /tmp/b1_product
//   /tmp/b1_product KB   (LSTM H=128, one rank's slice: /tmp/b1_product 128)
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
__attribute__((noinline)) void product(const float* r, const float* h, long blocks, long K, float* out) {
  for (long b = 0; b < blocks; ++b) {
    const float* blk = r + b * K * 16;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (long k = 0; k < K; k += 4) {
      const float* p = blk + k * 16;
      __m256 x = _mm256_broadcast_ss(h + k);
      a0 = _mm256_fmadd_ps(_mm256_load_ps(p), x, a0), a1 = _mm256_fmadd_ps(_mm256_load_ps(p + 8), x, a1);
      x = _mm256_broadcast_ss(h + k + 1);
      a2 = _mm256_fmadd_ps(_mm256_load_ps(p + 16), x, a2), a3 = _mm256_fmadd_ps(_mm256_load_ps(p + 24), x, a3);
      x = _mm256_broadcast_ss(h + k + 2);
      a4 = _mm256_fmadd_ps(_mm256_load_ps(p + 32), x, a4), a5 = _mm256_fmadd_ps(_mm256_load_ps(p + 40), x, a5);
      x = _mm256_broadcast_ss(h + k + 3);
      a6 = _mm256_fmadd_ps(_mm256_load_ps(p + 48), x, a6), a7 = _mm256_fmadd_ps(_mm256_load_ps(p + 56), x, a7);
    }
    _mm256_storeu_ps(out + b * 16, _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a4, a6)));
    _mm256_storeu_ps(out + b * 16 + 8, _mm256_add_ps(_mm256_add_ps(a1, a3), _mm256_add_ps(a5, a7)));
  }
}
int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: b1_product KB\n"), 2;
  const long K = 128, blocks = atol(argv[1]) * 1024 / 64 / K, n = blocks * K * 16;
  float* r = (float*)aligned_alloc(64, n * 4);
  for (long i = 0; i < n; ++i) r[i] = 1e-3f * (i % 97);
  static float h[K], out[1 << 18];
  for (long i = 0; i < K; ++i) h[i] = 0.5f;
  const long reps = (1L << 31) / (n * 4);
  for (int t = 0; t < 3; ++t) {
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < reps; ++i) product(r, h, blocks, K, out + (i % 2) * blocks * 16);  // a side effect per call
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("R %ld KB: %.1f GB/s, %.1f GFLOP/s\n", n * 4 / 1024, reps * n * 4 / s / 1e9, reps * n * 2.0 / s / 1e9);
  }
  return out[3] > 1e30f;
}
