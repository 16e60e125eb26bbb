// The forward step's product as LSTM H=1536 B=4 runs it, outside the kernels: R as blocks of
// [K][16] floats (two vectors per k), 4 sequences sharing each vector of R (8 FMAs per 64 bytes),
// N threads each streaming its own share of R once per step, a spin barrier per step, 50 steps.
// Prints R's bytes per second for software prefetch 0, 1, 2 and 4 KB ahead. HUGE=1 in the
// environment advises R into transparent huge pages (as the kernels' scratch from 2 MB up).
//   g++ -O3 -mavx2 -mfma -pthread benchmarks/native/step_stream.cpp -o /tmp/step_stream
//   /tmp/step_stream THREADS K BLOCKS   (LSTM H=1536: /tmp/step_stream 2 1536 384;
//                                       with R in cache:  /tmp/step_stream 1 1536 8)
#include <immintrin.h>
#include <sys/mman.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
template <int Ahead>
__attribute__((noinline)) void walk(const float* r, const float* h, long blocks, long K, float* out) {
  for (long b = 0; b < blocks; ++b) {
    const float* blk = r + b * K * 16;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (long k = 0; k < K; ++k) {
      const float* bk = blk + k * 16;
      if (Ahead) _mm_prefetch((const char*)bk + Ahead, _MM_HINT_T0);
      const __m256 r0 = _mm256_load_ps(bk), r1 = _mm256_load_ps(bk + 8);
      __m256 x = _mm256_broadcast_ss(h + k);
      a0 = _mm256_fmadd_ps(r0, x, a0), a1 = _mm256_fmadd_ps(r1, x, a1);
      x = _mm256_broadcast_ss(h + K + k);
      a2 = _mm256_fmadd_ps(r0, x, a2), a3 = _mm256_fmadd_ps(r1, x, a3);
      x = _mm256_broadcast_ss(h + 2 * K + k);
      a4 = _mm256_fmadd_ps(r0, x, a4), a5 = _mm256_fmadd_ps(r1, x, a5);
      x = _mm256_broadcast_ss(h + 3 * K + k);
      a6 = _mm256_fmadd_ps(r0, x, a6), a7 = _mm256_fmadd_ps(r1, x, a7);
    }
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a4, a6)));
    _mm256_storeu_ps(out + 8, _mm256_add_ps(_mm256_add_ps(a1, a3), _mm256_add_ps(a5, a7)));
  }
}
std::atomic<int> arrived{0}, generation{0};
void barrier(int n) {
  const int g = generation.load();
  if (arrived.fetch_add(1) == n - 1) { arrived.store(0); generation.fetch_add(1); return; }
  while (generation.load() == g) _mm_pause();
}
template <int Ahead>
double seconds(int nt, const std::vector<float*>& r, const float* h, long blocks, long K, int steps) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> team;
  for (int t = 0; t < nt; ++t)
    team.emplace_back([=, &r] { float out[16]; for (int s = 0; s < steps; ++s) { walk<Ahead>(r[t], h, blocks, K, out); barrier(nt); } });
  for (auto& t : team) t.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
int main(int argc, char** argv) {
  if (argc < 4) return std::fprintf(stderr, "usage: step_stream THREADS K BLOCKS\n"), 2;
  const int nt = atoi(argv[1]), steps = 50;
  const long K = atol(argv[2]), blocks = atol(argv[3]) / nt;
  const std::size_t huge = std::size_t{2} << 20, bytes = (blocks * K * 64 + huge - 1) / huge * huge;
  std::vector<float*> r(nt);
  for (int t = 0; t < nt; ++t) {
    r[t] = (float*)aligned_alloc(huge, bytes);
    if (getenv("HUGE")) madvise(r[t], bytes, MADV_HUGEPAGE);
    for (long i = 0; i < blocks * K * 16; ++i) r[t][i] = 1e-3f * (i % 7);
  }
  std::vector<float> h(4 * K, 0.5f);
  const double total = 64.0 * nt * blocks * K * steps / 1e9;  // GB of R per run
  for (int rep = 0; rep < 3; ++rep)
    std::printf("%d threads, R %.1f MB: GB/s with prefetch none %.1f, 1 KB %.1f, 2 KB %.1f, 4 KB %.1f\n", nt,
                64.0 * nt * blocks * K / 1e6, total / seconds<0>(nt, r, h.data(), blocks, K, steps),
                total / seconds<1024>(nt, r, h.data(), blocks, K, steps), total / seconds<2048>(nt, r, h.data(), blocks, K, steps),
                total / seconds<4096>(nt, r, h.data(), blocks, K, steps));
}
