// The B = 1 step product outside the kernels: R as blocks of [K = 128][2 vectors] floats, one
// sequence (2 loads, 1 broadcast, 2 FMAs per k, four interleaved partial sums as the kernels use
// at B = 1), repeated over R of a given size on one thread, so that R sits in L1, L2 or L3.
// Built with AVX-512 it uses 64-byte vectors as the AVX-512 kernels do, otherwise 32-byte ones.
//   g++ -O3 -mavx2 -mfma benchmarks/native/b1_product.cpp -o /tmp/b1_product
//   g++ -O3 -mavx512f -mfma benchmarks/native/b1_product.cpp -o /tmp/b1_product512
//   /tmp/b1_product KB   (LSTM H=128, one rank's slice: /tmp/b1_product 128; H=256: 512)
// PREFETCH=1 in the environment alternates software prefetch distances of 0-2048 bytes.
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#if defined(__AVX512F__)
using V = __m512;
constexpr long W = 16;
inline V zero() { return _mm512_setzero_ps(); }
inline V load(const float* p) { return _mm512_load_ps(p); }
inline V bcast(const float* p) { return _mm512_set1_ps(*p); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
#else
using V = __m256;
constexpr long W = 8;
inline V zero() { return _mm256_setzero_ps(); }
inline V load(const float* p) { return _mm256_load_ps(p); }
inline V bcast(const float* p) { return _mm256_broadcast_ss(p); }
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
#endif
constexpr long kBlock = 2 * W;  // floats per k of a block

// Ahead: bytes ahead of the loads that each 64-byte line of R is prefetched into L1 (0: none).
template <int Ahead>
__attribute__((noinline)) void product(const float* r, const float* h, long blocks, long K, float* out) {
  for (long b = 0; b < blocks; ++b) {
    const float* blk = r + b * K * kBlock;
    V a0 = zero(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (long k = 0; k < K; k += 4) {
      const float* p = blk + k * kBlock;
      if constexpr (Ahead > 0)
        for (long line = 0; line < 4 * kBlock * 4; line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(p) + Ahead + line, _MM_HINT_T0);
      V x = bcast(h + k);
      a0 = fma(load(p), x, a0), a1 = fma(load(p + W), x, a1);
      x = bcast(h + k + 1);
      a2 = fma(load(p + 2 * W), x, a2), a3 = fma(load(p + 3 * W), x, a3);
      x = bcast(h + k + 2);
      a4 = fma(load(p + 4 * W), x, a4), a5 = fma(load(p + 5 * W), x, a5);
      x = bcast(h + k + 3);
      a6 = fma(load(p + 6 * W), x, a6), a7 = fma(load(p + 7 * W), x, a7);
    }
    store(out + b * kBlock, a0 + a2 + a4 + a6);
    store(out + b * kBlock + W, a1 + a3 + a5 + a7);
  }
}

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: b1_product KB\n"), 2;
  const long K = 128, blocks = atol(argv[1]) * 1024 / (4 * kBlock) / K, n = blocks * K * kBlock;
  float* r = static_cast<float*>(aligned_alloc(64, n * 4));
  for (long i = 0; i < n; ++i) r[i] = 1e-3f * (i % 97);
  static float h[K], out[1 << 18];
  for (long i = 0; i < K; ++i) h[i] = 0.5f;
  const long reps = (1L << 31) / (n * 4);
  // Prefetch distances alternate in rounds (PREFETCH=1 in the environment; otherwise none only).
  const bool sweep = std::getenv("PREFETCH") && std::atoi(std::getenv("PREFETCH")) == 1;
  using Product = void (*)(const float*, const float*, long, long, float*);
  const Product variants[] = {product<0>, product<128>, product<256>, product<512>, product<1024>, product<2048>};
  const int ahead[] = {0, 128, 256, 512, 1024, 2048};
  for (int t = 0; t < 3; ++t)
    for (int v = 0; v < (sweep ? 6 : 1); ++v) {
      const auto start = std::chrono::steady_clock::now();
      for (long i = 0; i < reps; ++i) variants[v](r, h, blocks, K, out + (i % 2) * blocks * kBlock);  // a side effect
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("%ld-byte vectors, R %ld KB, prefetch %d bytes ahead: %.1f GB/s, %.1f GFLOP/s\n", W * 4,
                  n * 4 / 1024, ahead[v], reps * n * 4 / s / 1e9, reps * n * 2.0 / s / 1e9);
    }
  return out[3] > 1e30f;
}
