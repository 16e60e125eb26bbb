// The forward's recurrent steps alone, outside Python: the kernels' own forward_step (LSTM, float,
// AVX-512) run on THREADS threads for T steps as forward_impl runs it (each thread its blocks of
// units, the state double-buffered, a spin barrier per step, W x + b for all steps in one buffer
// written before the steps, y [T, B, H] written by them), against copies of it:
//   kernel     forward_step itself
//   pipelined  each group's pointwise work run during the next group's products (the kernels'
//              form of it: benchmarks/patches/pipeline.patch)
//   split_blk  per block, the products of all its rows first, then its pointwise work row by row
//   split_all  the products of all this thread's blocks first, then all the pointwise work
//   split_rows the same with the pointwise work row by row over all blocks (each row's W x + b,
//              c, h, y as runs of the thread's units); 4 or 8 rows' prefetch distance instead of
//              one (split_step's Ahead) read no better than split_all
//   lab        a copy of forward_step (checked to compute the same y)
//   products   the products alone (no row loop: nothing loaded, computed or stored after them)
//   +math, +loads, +stores   the products and one part of the row loop (the cell's math; the loads
//              of W x + b and c with their prefetches; the stores of h, c and y)
//   -math, -loads, -stores   the whole step without that part
//   nt_y       y stored with non-temporal stores (no read for ownership, not kept in cache)
// Variants alternate in rounds; medians and 10th percentiles of the time for T steps, and GFLOP/s
// of the recurrent product (2 B H G H per step). GATES_HOT=1, PRIVATE_H=1, SEPARATE=1 and
// MISALIGN=F in the environment (described where main reads them) change what every variant reads
// and writes.
//   g++ -O3 -std=c++17 -fno-math-errno -fno-trapping-math -ffp-contract=fast -mavx512f -mavx512bw \
//       -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512 -pthread -Icsrc/include -Icsrc/cpu \
//       benchmarks/native/step_lab.cpp csrc/cpu/threads.cpp -o /tmp/step_lab
//   /tmp/step_lab H B T THREADS [ROUNDS]   (LSTM H=512 B=64 T=25: /tmp/step_lab 512 64 25 2)
#define FUSEDRNN_ISA_NAMESPACE avx512
#define FUSEDRNN_VECTOR_BYTES 64
#include "kernels_impl.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#define FUSEDRNN_INLINE_LAMBDA __attribute__((always_inline))

namespace fusedrnn::cpu::avx512 {
namespace {

// What the lab copy of the step does after the products (bits): load W x + b, load c, run the
// cell's math (else a sum of the inputs in its place), store h and c, store y, store y
// non-temporally (no read for ownership, not kept in cache), prefetch W x + b and c.
enum : unsigned { kGates = 1, kC = 2, kMath = 4, kStoreHC = 8, kStoreY = 16, kStreamY = 32, kPrefetch = 64 };
constexpr unsigned kAll = kGates | kC | kMath | kStoreHC | kStoreY | kPrefetch;

// forward_step for an LSTM without projection, tape or padding, doing what Parts says.
template <unsigned Parts>
__attribute__((noinline)) void lab_step(const Sizes& n, bool descending, long blk0, long blk1, const float* r_packed,
                                        const float* b_packed, const float* h, const float* c, float* gates_t,
                                        float* h_next, float* c_next, float* y_t) {
  using Cell = LstmCell;
  using S = float;
  constexpr int G = 4, U = kUnits<S>, GG = kGateGroup<G>, MaxRows = kMaxRows<GG>;
  const index_t B = n.B, H = n.H, P = n.P, GH = G * H;
  const int split = k_split<GG>(B);
  for (index_t i = 0; i < blk1 - blk0; ++i) {
    const index_t blk = descending ? blk1 - 1 - i : blk0 + i;
    const S* rp = r_packed + blk * P * G * U;
    const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
    for (index_t b0 = 0; b0 < B; b0 += MaxRows) {
      const int rows = static_cast<int>(std::min<index_t>(MaxRows, B - b0));
      S hp_rows[MaxRows][G * U];
      const S* h_rows[MaxRows];
      for (int r = 0; r < rows; ++r) h_rows[r] = h + (b0 + r) * P;
      if constexpr ((Parts & kPrefetch) != 0)
        for (int r = 0; r < rows; ++r) {
          for (int g = 0; g < G; ++g) __builtin_prefetch(gates_t + (b0 + r) * GH + g * H + j0, 0, 2);
          __builtin_prefetch(c + (b0 + r) * H + j0, 0, 2);
        }
      for (int q = 0; q < G / GG; ++q)
        block_product_rows<GG, true>(rows, split, rp + q * P * GG * U, h_rows, P, b_packed + (blk * G + q * GG) * U,
                                     &hp_rows[0][q * GG * U], G * U);
      if constexpr (Parts == 0) continue;
      for (int r = 0; r < rows; ++r) {
        const index_t row = b0 + r;
        const S* hp = hp_rows[r];
        if ((Parts & kPrefetch) != 0 && r + 1 < rows) {
          for (int g = 0; g < G; ++g) __builtin_prefetch(gates_t + (row + 1) * GH + g * H + j0, 0, 3);
          __builtin_prefetch(c + (row + 1) * H + j0, 0, 3);
        }
        S xp[G][U], c_old[U], h_new[U], c_new[U], aux[U];
        S* gb = gates_t + row * GH + j0;
        for (int g = 0; g < G; ++g) {
          if constexpr ((Parts & kGates) != 0) load_lanes(gb + g * H, units, xp[g]);
          else std::fill(xp[g], xp[g] + U, S(0.25) * g);
        }
        if constexpr ((Parts & kC) != 0) load_lanes(c + row * H + j0, units, c_old);
        else std::fill(c_old, c_old + U, S(0.5));
        for (int u = 0; u < U; ++u) {
          S xu[G], hu[G], au[G];
          for (int g = 0; g < G; ++g) xu[g] = xp[g][u], hu[g] = hp[g * U + u];
          c_new[u] = aux[u] = S(0);
          if constexpr ((Parts & kMath) != 0) {
            Cell::forward(xu, hu, S(0), c_old[u], au, aux[u], h_new[u], c_new[u]);
          } else {
            for (int g = 0; g < G; ++g) au[g] = xu[g] + hu[g];
            c_new[u] = au[1] * c_old[u] + au[0];
            h_new[u] = au[3] * c_new[u];
          }
        }
        if constexpr ((Parts & kStoreHC) != 0) {
          copy_lanes(h_new, units, h_next + row * P + j0);
          copy_lanes(c_new, units, c_next + row * H + j0);
        } else {
          for (int u = 0; u < U; ++u) asm volatile("" : : "x"(h_new[u] + c_new[u]));
        }
        if constexpr ((Parts & kStreamY) != 0) {
          __m512 v;
          std::memcpy(&v, h_new, sizeof v);
          _mm512_stream_ps(y_t + row * P + j0, v);  // y 64-byte aligned, P a multiple of 16
        } else if constexpr ((Parts & kStoreY) != 0) {
          copy_lanes(h_new, units, y_t + row * P + j0);
        } else {
          for (int u = 0; u < U; ++u) asm volatile("" : : "x"(h_new[u]));
        }
      }
    }
  }
}

// One row's pointwise work for the block of units [j0, j0 + units), from its products hp (R h + b_r,
// G x 16): W x + b and c loaded, the LSTM cell, h, c and y stored; row `next`'s W x + b and c
// prefetched into L1 when next >= 0.
FUSEDRNN_INLINE void lstm_row(const Sizes& n, index_t row, index_t next, index_t j0, index_t units, const float* hp,
                              const float* c, float* gates_t, float* h_next, float* c_next, float* y_t) {
  using S = float;
  constexpr int G = 4, U = kUnits<S>;
  const index_t H = n.H, P = n.P, GH = G * H;
  if (next >= 0) {
    for (int g = 0; g < G; ++g) __builtin_prefetch(gates_t + next * GH + g * H + j0, 0, 3);
    __builtin_prefetch(c + next * H + j0, 0, 3);
  }
  S xp[G][U], c_old[U], h_new[U], c_new[U], aux[U];
  S* gb = gates_t + row * GH + j0;
  for (int g = 0; g < G; ++g) load_lanes(gb + g * H, units, xp[g]);
  load_lanes(c + row * H + j0, units, c_old);
  for (int u = 0; u < U; ++u) {
    S xu[G], hu[G], au[G];
    for (int g = 0; g < G; ++g) xu[g] = xp[g][u], hu[g] = hp[g * U + u];
    c_new[u] = aux[u] = S(0);
    LstmCell::forward(xu, hu, S(0), c_old[u], au, aux[u], h_new[u], c_new[u]);
  }
  copy_lanes(h_new, units, h_next + row * P + j0);
  copy_lanes(c_new, units, c_next + row * H + j0);
  copy_lanes(h_new, units, y_t + row * P + j0);
}

// block_product_rows (no k split) with calls of between(i), i < calls, spread over its k loop:
// K cut into calls + 1 chunks, between(i) after chunk i. The accumulators stay live across them.
template <int GG, int Rows, class S, class Between>
FUSEDRNN_INLINE void block_product_rows_between(const S* block, const S* const* v, index_t K, const S* bias, S* out,
                                               index_t out_stride, int calls, const Between& between) {
  using V = typename Simd<S>::V;
  constexpr int U = kUnits<S>;
  V acc[1][Rows][GG];
  for (int r = 0; r < Rows; ++r)
    for (int g = 0; g < GG; ++g) acc[0][r][g] = bias ? Simd<S>::load(bias + g * U) : V{};
  index_t k = 0;
  for (int i = 0; i <= calls; ++i) {
    const index_t k_end = K * (i + 1) / (calls + 1);
    for (; k < k_end; ++k) block_product_step<GG, Rows, true>(block, v, k, acc[0]);
    if (i < calls) between(i);
  }
  for (int r = 0; r < Rows; ++r)
    for (int g = 0; g < GG; ++g) Simd<S>::store(out + r * out_stride + g * U, acc[0][r][g]);
}

template <int GG, class S, class Between, int N = 1>
FUSEDRNN_INLINE void block_product_rows_between(int rows, const S* block, const S* const* v, index_t K, const S* bias,
                                               S* out, index_t out_stride, int calls, const Between& between) {
  if constexpr (N <= kMaxRows<GG>) {
    if (rows == N) return block_product_rows_between<GG, N>(block, v, K, bias, out, out_stride, calls, between);
    block_product_rows_between<GG, S, Between, N + 1>(rows, block, v, K, bias, out, out_stride, calls, between);
  }
}

// The step with each group's pointwise work run during the next group's products (the last
// group's after the loop): its loads and stores then wait while FMAs run.
__attribute__((noinline)) void pipelined_step(const Sizes& n, bool descending, long blk0, long blk1,
                                              const float* r_packed, const float* b_packed, const float* h,
                                              const float* c, float* gates_t, float* h_next, float* c_next,
                                              float* y_t) {
  using S = float;
  constexpr int G = 4, U = kUnits<S>, GG = kGateGroup<G>, MaxRows = kMaxRows<GG>;
  const index_t B = n.B, H = n.H, P = n.P, GH = G * H;
  S hp_buf[2][MaxRows][G * U];
  struct Pending {
    index_t b0 = 0, j0 = 0, units = 0;
    int rows = 0, buf = 0;
  } pend;
  auto row_math = [&](const Pending& pd, int r) FUSEDRNN_INLINE_LAMBDA {
    lstm_row(n, pd.b0 + r, r + 1 < pd.rows ? pd.b0 + r + 1 : -1, pd.j0, pd.units, hp_buf[pd.buf][r], c, gates_t,
             h_next, c_next, y_t);
  };
  int buf = 0;
  for (index_t i = 0; i < blk1 - blk0; ++i) {
    const index_t blk = descending ? blk1 - 1 - i : blk0 + i;
    const S* rp = r_packed + blk * P * G * U;
    const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
    for (index_t b0 = 0; b0 < B; b0 += MaxRows) {
      const int rows = static_cast<int>(std::min<index_t>(MaxRows, B - b0));
      const S* h_rows[MaxRows];
      for (int r = 0; r < rows; ++r) h_rows[r] = h + (b0 + r) * P;
      for (int r = 0; r < rows; ++r) {
        for (int g = 0; g < G; ++g) __builtin_prefetch(gates_t + (b0 + r) * GH + g * H + j0, 0, 2);
        __builtin_prefetch(c + (b0 + r) * H + j0, 0, 2);
      }
      // The pending group's rows, split between the G / GG passes.
      const Pending pd = pend;
      int done = 0;
      for (int q = 0; q < G / GG; ++q) {
        const int calls = pd.rows * (q + 1) / (G / GG) - done;
        const int first = done;
        block_product_rows_between<GG>(rows, rp + q * P * GG * U, h_rows, P, b_packed + (blk * G + q * GG) * U,
                                       &hp_buf[buf][0][q * GG * U], G * U, calls,
                                       [&](int c_i) { row_math(pd, first + c_i); });
        done += calls;
      }
      pend = {b0, j0, units, rows, buf};
      buf ^= 1;
    }
  }
  for (int r = 0; r < pend.rows; ++r) row_math(pend, r);
}

// The step in two phases: the products of all groups first, into a buffer of R h + b_r for every
// row of a block (PerBlock) or of all this thread's blocks, then one pass of pointwise work over
// them, row after row: the pointwise work as one long loop of independent rows rather than bursts
// between products.
template <bool PerBlock, int Ahead = 1, bool RowsOuter = false>
__attribute__((noinline)) void split_step(const Sizes& n, bool descending, long blk0, long blk1,
                                          const float* r_packed, const float* b_packed, const float* h,
                                          const float* c, float* gates_t, float* h_next, float* c_next, float* y_t) {
  using S = float;
  constexpr int G = 4, U = kUnits<S>, GG = kGateGroup<G>, MaxRows = kMaxRows<GG>;
  const index_t B = n.B, H = n.H, P = n.P;
  const int split = k_split<GG>(B);
  const index_t blocks = PerBlock ? 1 : blk1 - blk0;
  thread_local std::vector<S> hp_buf;
  hp_buf.resize(blocks * B * G * U);
  auto pointwise = [&](index_t blk, const S* hp_block, index_t row_lo, index_t row_hi) FUSEDRNN_INLINE_LAMBDA {
    const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
    for (index_t row = row_lo; row < row_hi; ++row)
      lstm_row(n, row, row + Ahead < B ? row + Ahead : -1, j0, units, hp_block + row * G * U, c, gates_t, h_next,
               c_next, y_t);
  };
  for (index_t i = 0; i < blk1 - blk0; ++i) {
    const index_t blk = descending ? blk1 - 1 - i : blk0 + i;
    const S* rp = r_packed + blk * P * G * U;
    S* hp_block = hp_buf.data() + (PerBlock ? 0 : i) * B * G * U;
    for (index_t b0 = 0; b0 < B; b0 += MaxRows) {
      const int rows = static_cast<int>(std::min<index_t>(MaxRows, B - b0));
      const S* h_rows[MaxRows];
      for (int r = 0; r < rows; ++r) h_rows[r] = h + (b0 + r) * P;
      for (int q = 0; q < G / GG; ++q)
        block_product_rows<GG, true>(rows, split, rp + q * P * GG * U, h_rows, P, b_packed + (blk * G + q * GG) * U,
                                     hp_block + b0 * G * U + q * GG * U, G * U);
    }
    if (PerBlock) pointwise(blk, hp_block, 0, B);
  }
  if (!PerBlock) {
    if (RowsOuter) {
      for (index_t row = 0; row < B; ++row)
        for (index_t i = 0; i < blk1 - blk0; ++i) pointwise(blk0 + i, hp_buf.data() + i * B * G * U, row, row + 1);
    } else {
      for (index_t i = 0; i < blk1 - blk0; ++i) {
        const index_t blk = descending ? blk1 - 1 - i : blk0 + i;
        pointwise(blk, hp_buf.data() + i * B * G * U, 0, B);
      }
    }
  }
}

using StepFn = void (*)(const Sizes&, bool, long, long, const float*, const float*, const float*, const float*, float*,
                        float*, float*, float*);

void kernel_step(const Sizes& n, bool descending, long blk0, long blk1, const float* r_packed, const float* b_packed,
                 const float* h, const float* c, float* gates_t, float* h_next, float* c_next, float* y_t) {
  forward_step<LstmCell, false, true, float>(n, 0, descending, false, blk0, blk1, 0, n.B, r_packed, b_packed, h, c,
                                             gates_t, h_next, c_next, y_t, nullptr, nullptr);
}

}  // namespace
}  // namespace fusedrnn::cpu::avx512

int main(int argc, char** argv) {
  using namespace fusedrnn::cpu::avx512;
  using fusedrnn::index_t;
  if (argc < 5) return std::fprintf(stderr, "usage: step_lab H B T THREADS [ROUNDS]\n"), 2;
  const index_t H = atol(argv[1]), B = atol(argv[2]), T = atol(argv[3]);
  const int nt = atoi(argv[4]), rounds = argc > 5 ? atoi(argv[5]) : 11;
  if (H % (16 * nt)) return std::fprintf(stderr, "H must be a multiple of 16 x THREADS\n"), 2;
  constexpr int G = 4, U = 16;
  const index_t GH = G * H;
  fusedrnn::Sizes n;
  n.T = T, n.B = B, n.I = 1, n.H = H, n.P = H;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-0.08f, 0.08f);
  auto aligned = [](std::size_t count) {
    return static_cast<float*>(std::aligned_alloc(2 << 20, (count * sizeof(float) + (2 << 20) - 1) / (2 << 20) * (2 << 20)));
  };
  std::vector<float> w(GH * H), bias(GH);
  for (auto& v : w) v = dist(rng);
  for (auto& v : bias) v = dist(rng);
  const index_t blocks = H / U;
  float* r_packed = aligned(blocks * H * G * U);
  float* b_packed = aligned(blocks * G * U);
  pack_rows(w.data(), bias.data(), G, kGateGroup<G>, H, H, 0, blocks, r_packed, b_packed);
  // SEPARATE=1: each thread its own W x + b, y and state (h then never crosses cores either): what
  // sharing these buffers between the threads costs, with every line still written by one thread.
  const bool separate = std::getenv("SEPARATE") && std::atoi(std::getenv("SEPARATE")) == 1;
  // MISALIGN=F: the state starts F floats past a 64-byte boundary (forward_impl's std::vector is only
  // 16-byte aligned: F = 4 is what it may get).
  const index_t misalign = std::getenv("MISALIGN") ? std::atol(std::getenv("MISALIGN")) : 0;
  std::vector<float*> gates_of(nt), y_of(nt), state_of(nt);
  for (int t = 0; t < nt; ++t) {
    gates_of[t] = t == 0 || separate ? aligned(T * B * GH) : gates_of[0];
    y_of[t] = t == 0 || separate ? aligned(T * B * H) : y_of[0];
    state_of[t] = t == 0 || separate ? aligned((5 + nt) * B * H + 16) + misalign : state_of[0];
  }
  float* const y = y_of[0];
  std::vector<float> gates0(T * B * GH);
  for (auto& v : gates0) v = 4 * dist(rng);

  struct Variant {
    const char* name;
    StepFn fn;
  };
  const std::vector<Variant> variants = {
      {"kernel", kernel_step},
      {"pipelined", pipelined_step},
      {"split_blk", split_step<true>},
      {"split_all", split_step<false>},
      {"split_rows", split_step<false, 1, true>},
      {"lab", lab_step<kAll>},
      {"products", lab_step<0>},
      {"+math", lab_step<kMath>},
      {"+loads", lab_step<kGates | kC | kPrefetch>},
      {"+stores", lab_step<kStoreHC | kStoreY>},
      {"-math", lab_step<kAll & ~kMath>},
      {"-loads", lab_step<kAll & ~(kGates | kC | kPrefetch)>},
      {"-stores", lab_step<kAll & ~(kStoreHC | kStoreY)>},
      {"nt_y", lab_step<(kAll & ~kStoreY) | kStreamY>},
  };
  std::atomic<int> arrived{0};
  alignas(64) std::atomic<int> generation{0};
  auto barrier = [&] {
    const int g = generation.load();
    if (arrived.fetch_add(1) == nt - 1) {
      arrived.store(0);
      generation.fetch_add(1);
      return;
    }
    while (generation.load() == g) _mm_pause();
  };
  // GATES_HOT=1: every step reads one of the first two steps' W x + b (in cache), bounding what
  // bringing the gates closer (a projection computed in chunks of steps, or fused) could gain.
  const bool gates_hot = std::getenv("GATES_HOT") && std::atoi(std::getenv("GATES_HOT")) == 1;
  // PRIVATE_H=1: each step reads an h no thread writes and writes h_next where no other thread
  // reads it (results garbage): what sharing h between the cores costs.
  const bool private_h = std::getenv("PRIVATE_H") && std::atoi(std::getenv("PRIVATE_H")) == 1;
  // One forward's steps: the gates rewritten first (as the input GEMM writes them), then T steps.
  auto run = [&](const Variant& v) {
    for (int t = 0; t < (separate ? nt : 1); ++t) {
      std::copy(gates0.begin(), gates0.end(), gates_of[t]);
      for (index_t i = 0; i < (5 + nt) * B * H; ++i) state_of[t][i] = 0.1f * std::sin(0.37f * i);
    }
    std::vector<std::thread> team;
    std::atomic<int> ready{0};
    std::chrono::steady_clock::time_point start;
    for (int t = 0; t < nt; ++t)
      team.emplace_back([&, t] {
        _mm_setcsr(_mm_getcsr() | 0x8040);
        const long blk0 = blocks * t / nt, blk1 = blocks * (t + 1) / nt;
        ready.fetch_add(1);
        while (ready.load() < nt) _mm_pause();
        if (t == 0) start = std::chrono::steady_clock::now();
        float* const state = state_of[t];
        float* const gates = gates_of[t];
        float* const y = y_of[t];
        for (index_t s = 0; s < T; ++s) {
          const float* h = state + (s % 2) * B * H;
          float* h_next = state + ((s + 1) % 2) * B * H;
          float* c = state + 2 * B * H + (s % 2) * B * H;
          float* c_next = state + 2 * B * H + ((s + 1) % 2) * B * H;
          if (private_h) {  // read a buffer no one writes; write one the other thread never reads
            h = state + 4 * B * H;
            h_next = state + (5 + t) * B * H;
          }
          const index_t gs = gates_hot ? s % 2 : s;
          v.fn(n, s % 2 == 1, blk0, blk1, r_packed, b_packed, h, c, gates + gs * B * GH, h_next, c_next, y + s * B * H);
          barrier();
        }
      });
    for (auto& th : team) th.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  // The lab copy must compute what the kernel computes (apart from the variants that skip work).
  {
    run(variants[0]);
    const std::vector<float> y_kernel(y, y + T * B * H);
    for (const char* name : {"lab", "nt_y", "pipelined", "split_blk", "split_all"}) {
      run(*std::find_if(variants.begin(), variants.end(), [&](const Variant& v) { return std::strcmp(v.name, name) == 0; }));
      if (!std::equal(y_kernel.begin(), y_kernel.end(), y))
        return std::fprintf(stderr, "%s differs from the kernel's forward_step\n", name), 1;
    }
  }
  const double flops = 2.0 * T * B * H * GH;
  std::vector<std::vector<double>> ms(variants.size());
  for (int round = 0; round < rounds; ++round)
    for (std::size_t i = 0; i < variants.size(); ++i) ms[i].push_back(run(variants[i]) * 1e3);
  std::printf("LSTM H=%ld B=%ld T=%ld threads=%d, medians of %d rounds (ms for T steps, GFLOP/s of R h)\n", H, B, T,
              nt, rounds);
  for (std::size_t i = 0; i < variants.size(); ++i) {
    std::sort(ms[i].begin(), ms[i].end());
    const double m = ms[i][ms[i].size() / 2];
    std::printf("  %-9s %8.3f ms  %6.1f GFLOP/s  (p10 %.3f)\n", variants[i].name, m, flops / m / 1e6,
                ms[i][ms[i].size() / 10]);
  }
  return 0;
}
