// Can L1/L2-resident FMA work hide under a stream from L3? Each of N threads streams its own
// buffer (MB megabytes, the B = 4 step's slice of R) with 4 FMAs per vector loaded, like the
// small-batch step, and runs a GEMM-like 12x2-vector register tile on operands held in cache
// (TILE_MFLOP per pass). Modes: 0 stream alone, 1 tile alone, 2 both one after the other,
// 3 interleaved: after each CHUNK bytes of stream, a slice of the tile that issues the prefetches
// of the next chunk's lines as it runs.
//   g++ -O2 -mavx512f -mfma -pthread benchmarks/native/overlap.cpp -o /tmp/overlap
//   /tmp/overlap THREADS MB TILE_MFLOP CHUNK_BYTES     (e.g. /tmp/overlap 2 19 38 4096)
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

constexpr int K = 512, kTileFlops = 2 * 12 * 32;  // per k step of the tile

struct Work {
  const float* stream;
  long n;  // floats
  const float* a;  // 12 x K panel (L1)
  const float* b;  // K x 32 panel (L1/L2)
  long tile_steps;  // k steps of the tile per pass
  float sink;
};

__attribute__((always_inline)) static inline void stream_part(const float* p, long begin, long end, __m512* acc, const __m512* h,
                               long pf_limit) {
  for (long i = begin; i < end; i += 16) {
    if (i + 1024 < pf_limit) _mm_prefetch((const char*)(p + i + 1024), _MM_HINT_T0);
    const __m512 r = _mm512_load_ps(p + i);
    acc[0] = _mm512_fmadd_ps(h[0], r, acc[0]);
    acc[1] = _mm512_fmadd_ps(h[1], r, acc[1]);
    acc[2] = _mm512_fmadd_ps(h[2], r, acc[2]);
    acc[3] = _mm512_fmadd_ps(h[3], r, acc[3]);
  }
}

// `steps` k steps of the 12 x 2 tile; every `pf_every` steps one prefetch from pf (advancing a line)
__attribute__((always_inline)) static inline void tile_part(const Work& w, long steps, __m512* c, const char*& pf, const char* pf_end,
                             int pf_every) {
  long kk = 0;
  for (long s = 0; s < steps; ++s) {
    const float* bp = w.b + kk * 32;
    const float* ap = w.a + kk * 12;
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) {
      const __m512 a = _mm512_set1_ps(ap[r]);
      c[2 * r] = _mm512_fmadd_ps(a, b0, c[2 * r]);
      c[2 * r + 1] = _mm512_fmadd_ps(a, b1, c[2 * r + 1]);
    }
    if (pf_every && s % pf_every == 0 && pf < pf_end) {
      _mm_prefetch(pf, _MM_HINT_T0);
      pf += 64;
    }
    kk = kk + 1 == K ? 0 : kk + 1;
  }
}

static void run(Work& w, int mode, long chunk_floats) {
  __m512 acc[4], h[4], c[24];
  for (int i = 0; i < 4; ++i) acc[i] = _mm512_setzero_ps(), h[i] = _mm512_set1_ps(1e-3f * (i + 1));
  for (int i = 0; i < 24; ++i) c[i] = _mm512_setzero_ps();
  const char* pf = nullptr;
  if (mode == 0 || mode == 2) stream_part(w.stream, 0, w.n, acc, h, w.n);
  if (mode == 1 || mode == 2) tile_part(w, w.tile_steps, c, pf, pf, 0);
  if (mode == 3) {
    const long chunks = w.n / chunk_floats;
    const long steps_per_chunk = w.tile_steps / chunks;
    const int lines = int(chunk_floats / 16);
    const int pf_every = std::max<long>(1, steps_per_chunk / lines);
    for (long ch = 0; ch < chunks; ++ch) {
      stream_part(w.stream, ch * chunk_floats, (ch + 1) * chunk_floats, acc, h, w.n);
      // the next chunk's lines beyond what the stream loop prefetched
      const char* next = (const char*)(w.stream + (ch + 1) * chunk_floats + 1024);
      const char* end = (const char*)(w.stream + std::min(w.n, (ch + 2) * chunk_floats + 1024));
      pf = next;
      tile_part(w, steps_per_chunk, c, pf, end, pf_every);
    }
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
  for (int i = 0; i < 24; ++i) s = _mm512_add_ps(s, c[i]);
  w.sink = _mm512_reduce_add_ps(s);
}

int main(int argc, char** argv) {
  const int nth = atoi(argv[1]);
  const long mb = atol(argv[2]);
  const double tile_mflop = atof(argv[3]);
  const long chunk_bytes = atol(argv[4]);
  const long n = mb * 1024 * 1024 / 4;
  std::vector<Work> works(nth);
  for (int t = 0; t < nth; ++t) {
    float* s = (float*)aligned_alloc(64, n * 4);
    for (long i = 0; i < n; ++i) s[i] = 1e-3f * (i % 97);
    float* a = (float*)aligned_alloc(64, 12 * K * 4);
    float* b = (float*)aligned_alloc(64, 32 * K * 4);
    for (int i = 0; i < 12 * K; ++i) a[i] = 1e-3f * (i % 13);
    for (int i = 0; i < 32 * K; ++i) b[i] = 1e-3f * (i % 11);
    works[t] = {s, n, a, b, long(tile_mflop * 1e6 / kTileFlops), 0};
  }
  const char* names[] = {"stream", "tile", "stream then tile", "interleaved"};
  for (int rep = 0; rep < 4; ++rep) {
    for (int mode = 0; mode < 4; ++mode) {
      std::vector<double> times;
      for (int pass = 0; pass < 5; ++pass) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> th;
        for (int t = 0; t < nth; ++t) th.emplace_back([&, t] { run(works[t], mode, chunk_bytes / 4); });
        for (auto& x : th) x.join();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(times.begin(), times.end());
      printf("%-18s median %7.1f us  min %7.1f us\n", names[mode], times[2] * 1e6, times[0] * 1e6);
    }
    printf("\n");
  }
  float sink = 0;
  for (auto& w : works) sink += w.sink;
  return sink == 12345.f;
}
