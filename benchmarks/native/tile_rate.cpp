// The large-batch forward step's products alone, outside the kernels, for several register tiles:
// Rows sequences x GG gate vectors of 16 units accumulated in registers (AVX-512), per block of 16
// units and pass over GG of the G = 4 LSTM gates, R laid out as the kernels pack it
// ([block][pass][k][GG][16]) and h as the kernels read it (B rows of K floats, one broadcast per
// row and k). Tiles:
//   6x2  the kernels' tile (12 accumulators, sized for AVX2's 16 registers)
//   8x2, 12x2, 4x4, 6x4   wider tiles that AVX-512's 32 registers allow
// and "p" variants reading h packed per group ([group][k][Rows], the GEMM's A-panel layout).
// Each thread runs its own copy (one rank's R and all of h) over and over; variants alternate in
// rounds and the median rate per variant is printed, with an FMA-only loop as the per-core peak.
//   g++ -O3 -std=c++17 -fno-math-errno -fno-trapping-math -ffp-contract=fast -mavx512f -mavx512bw \
//       -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512 -pthread -Icsrc/include -Icsrc/cpu \
//       benchmarks/native/tile_rate.cpp csrc/cpu/threads.cpp -o /tmp/tile_rate
// R_ALIGN=2M in the environment puts R on a 2 MB boundary (default: 64 bytes).
//   /tmp/tile_rate K B BLOCKS THREADS [ROUNDS]   (B a multiple of 24; LSTM H=512 B=48, one rank's
//   16 blocks on each of 2 threads: /tmp/tile_rate 512 48 16 2)
#define FUSEDRNN_ISA_NAMESPACE avx512
#define FUSEDRNN_VECTOR_BYTES 64
#include "kernels_impl.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

constexpr int U = 16, G = 4;

// One group of Rows sequences over one pass (GG gates) of one block: out[r][g*16 + u].
template <int Rows, int GG, bool PackedH>
__attribute__((always_inline)) inline void pass(const float* rp, const float* h, long ldh, long K, float* out) {
  __m512 acc[Rows][GG];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int g = 0; g < GG; ++g) acc[r][g] = _mm512_setzero_ps();
  for (long k = 0; k < K; ++k) {
    __m512 rv[GG];
#pragma GCC unroll 4
    for (int g = 0; g < GG; ++g) rv[g] = _mm512_load_ps(rp + (k * GG + g) * U);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      const __m512 x = _mm512_set1_ps(PackedH ? h[k * Rows + r] : h[r * ldh + k]);
#pragma GCC unroll 4
      for (int g = 0; g < GG; ++g) acc[r][g] = _mm512_fmadd_ps(rv[g], x, acc[r][g]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int g = 0; g < GG; ++g) _mm512_storeu_ps(out + r * G * U + g * U, acc[r][g]);
}

// The whole rank's products for one step: blocks x groups x passes.
template <int Rows, int GG, bool PackedH>
__attribute__((noinline)) void step(const float* r, const float* h, const float* hpacked, long B, long K, long blocks,
                                    float* out) {
  for (long blk = 0; blk < blocks; ++blk) {
    const float* rb = r + blk * G * K * U;
    for (long b0 = 0; b0 < B; b0 += Rows)  // B a multiple of Rows
      for (int q = 0; q < G / GG; ++q)
        pass<Rows, GG, PackedH>(rb + q * K * GG * U, PackedH ? hpacked + b0 * K : h + b0 * K, K, K,
                                out + b0 * G * U + q * GG * U);
  }
}

// The same through the kernels' own product (block_product_rows, 6 x 2 on AVX-512, no k split, R
// not prefetched or prefetched), reading h through row pointers as forward_step does.
template <bool PrefetchR>
__attribute__((noinline)) void kernel_step(const float* r, const float* h, const float*, long B, long K, long blocks,
                                           float* out) {
  using namespace fusedrnn::cpu::avx512;
  for (long blk = 0; blk < blocks; ++blk) {
    const float* rb = r + blk * G * K * U;
    for (long b0 = 0; b0 < B; b0 += 6) {
      const float* rows[6];
      for (int i = 0; i < 6; ++i) rows[i] = h + (b0 + i) * K;
      for (int q = 0; q < 2; ++q)
        block_product_rows<2, PrefetchR>(6, 1, rb + q * K * 2 * U, rows, K, (const float*)nullptr,
                                         out + b0 * G * U + q * 2 * U, G * U);
    }
  }
}

__attribute__((noinline)) double fma_peak_loop(long n) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i));
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (long i = 0; i < n; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_fmadd_ps(a[j], m, c);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

struct Variant {
  const char* name;
  int rows;
  void (*fn)(const float*, const float*, const float*, long, long, long, float*);
  bool packed;
};

int main(int argc, char** argv) {
  if (argc < 5) return std::fprintf(stderr, "usage: tile_rate K B BLOCKS THREADS [ROUNDS]\n"), 2;
  const long K = atol(argv[1]), B = atol(argv[2]), blocks = atol(argv[3]);
  const int nt = atoi(argv[4]), rounds = argc > 5 ? atoi(argv[5]) : 15;
  if (B % 24) return std::fprintf(stderr, "B must be a multiple of 24 (every tile's rows divide it)\n"), 2;
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  const std::vector<Variant> variants = {
      {"8x1", 8, step<8, 1, false>, false},    {"12x1", 12, step<12, 1, false>, false},
      {"6x2", 6, step<6, 2, false>, false},   {"8x2", 8, step<8, 2, false>, false},
      {"12x2", 12, step<12, 2, false>, false}, {"4x4", 4, step<4, 4, false>, false},
      {"6x4", 6, step<6, 4, false>, false},   {"6x2p", 6, step<6, 2, true>, true},
      {"8x2p", 8, step<8, 2, true>, true},    {"12x2p", 12, step<12, 2, true>, true},
      {"4x4p", 4, step<4, 4, true>, true},    {"6x4p", 6, step<6, 4, true>, true},
      {"kern", 6, kernel_step<false>, false},  {"kernpf", 6, kernel_step<true>, false},
  };
  const double flops_per_step = 2.0 * B * K * G * U * blocks;
  // Per thread: R, h and h packed for each group size, out.
  struct Data {
    float *r, *h, *out;
    std::vector<std::vector<float>> hp;
  };
  std::vector<Data> data(nt);
  for (int t = 0; t < nt; ++t) {
    {  // R_ALIGN=2M: R on a 2 MB boundary, as the kernels' packed R (allocate_scratch); else 64 bytes
      const char* a = std::getenv("R_ALIGN");
      const std::size_t align = a && a[0] == '2' ? std::size_t{2} << 20 : 64;
      const std::size_t bytes = (sizeof(float) * blocks * G * K * U + align - 1) / align * align;
      data[t].r = static_cast<float*>(std::aligned_alloc(align, bytes));
    }
    data[t].h = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * B * K));
    data[t].out = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * B * G * U + 64));
    for (long i = 0; i < blocks * G * K * U; ++i) data[t].r[i] = 0.01f * ((i * 7919 + t) % 199 - 99);
    for (long i = 0; i < B * K; ++i) data[t].h[i] = 0.02f * ((i * 104729) % 101 - 50);
    for (const Variant& v : variants) {
      std::vector<float> p(B * K);
      for (long b0 = 0; b0 + v.rows <= B; b0 += v.rows)
        for (long k = 0; k < K; ++k)
          for (int r = 0; r < v.rows; ++r) p[b0 * K + k * v.rows + r] = data[t].h[(b0 + r) * K + k];
      data[t].hp.push_back(std::move(p));
    }
  }
  // Steps per timing: about 20 ms of work at 100 GFLOP/s per thread.
  const long steps = std::max<long>(1, static_cast<long>(2e9 / flops_per_step));
  // EXCHANGE (environment): 0 each thread reads its own h and steps on without meeting the others;
  // 1 after each step every thread writes its half of each row of h (as the step stores h_next)
  // and meets the others at a spin barrier, h private; 2 the same with one h shared by the threads
  // (half of each row then comes from the other core, as in the kernels). Unpacked variants only.
  const char* ex = std::getenv("EXCHANGE");
  const int exchange = ex ? atoi(ex) : 0;
  // Double-buffered as the kernels' state: step s reads buffer s % 2 and writes the other.
  std::vector<float> shared_h[2] = {std::vector<float>(data[0].h, data[0].h + B * K),
                                    std::vector<float>(data[0].h, data[0].h + B * K)};
  std::vector<std::vector<float>> private_h(nt);
  for (int t = 0; t < nt; ++t) private_h[t].assign(data[t].h, data[t].h + B * K);
  std::atomic<int> arrived{0}, generation{0};
  auto barrier = [&] {
    const int g = generation.load();
    if (arrived.fetch_add(1) == nt - 1) {
      arrived.store(0);
      generation.fetch_add(1);
      return;
    }
    while (generation.load() == g) _mm_pause();
  };
  auto run = [&](std::size_t vi) {
    std::atomic<int> go{0};
    std::vector<std::thread> team;
    for (int t = 0; t < nt; ++t)
      team.emplace_back([&, t] {
        while (!go.load()) _mm_pause();
        float* hs[2] = {exchange == 2 ? shared_h[0].data() : data[t].h,
                        exchange == 2 ? shared_h[1].data() : private_h[t].data()};
        const long half = K / nt, j0 = t * half;
        for (long s = 0; s < steps; ++s) {
          const float* h = exchange ? hs[s % 2] : data[t].h;
          variants[vi].fn(data[t].r, h, data[t].hp[vi].data(), B, K, blocks, data[t].out);
          if (exchange) {
            float* h_next = hs[(s + 1) % 2];
            for (long b = 0; b < B; ++b)
              for (long j = 0; j < half; ++j)
                h_next[b * K + j0 + j] = 0.5f * data[t].out[(b * G * U + j) % (B * G * U)];
            barrier();
          }
        }
      });
    const auto start = std::chrono::steady_clock::now();
    go.store(1);
    for (auto& th : team) th.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto peak = [&] {
    const long n = 20000000;
    std::vector<std::thread> team;
    const auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < nt; ++t) team.emplace_back([n] { volatile double s = fma_peak_loop(n); (void)s; });
    for (auto& th : team) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return 12.0 * 32 * n * nt / s / 1e9;
  };
  std::vector<std::vector<double>> rates(variants.size() + 1);
  for (int round = 0; round < rounds; ++round) {
    rates[0].push_back(peak());
    for (std::size_t vi = 0; vi < variants.size(); ++vi)
      rates[vi + 1].push_back(flops_per_step * steps * nt / run(vi) / 1e9);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double pk = median(rates[0]);
  std::printf("K=%ld B=%ld blocks=%ld threads=%d EXCHANGE=%d (R %.2f MB per thread), medians of %d rounds\n", K, B,
              blocks, nt, exchange, blocks * G * K * U * 4.0 / 1e6, rounds);
  std::printf("  FMA peak   %6.1f GFLOP/s\n", pk);
  for (std::size_t vi = 0; vi < variants.size(); ++vi) {
    const double m = median(rates[vi + 1]);
    std::printf("  %-6s     %6.1f GFLOP/s  %5.1f%%\n", variants[vi].name, m, 100 * m / pk);
  }
  return 0;
}
