// The LSTM cell's pointwise math alone, as the forward step runs it: per block of 16 units (one
// AVX-512 vector of floats), the four gates' pre-activations copied into lane arrays, the cell
// applied lane by lane in a loop the compiler vectorizes, the results copied out. Operands stay in
// L1, so this is the math's cost with nothing to wait for (docs/perf-notes.md, eighth session).
//   g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512 \
//       -Icsrc/include benchmarks/native/cell_cost.cpp -o /tmp/cell_cost && /tmp/cell_cost
#define FUSEDRNN_ISA_NAMESPACE avx512
#include "fusedrnn/cells.h"

#include <pmmintrin.h>
#include <xmmintrin.h>

#include <chrono>
#include <cstdio>
#include <vector>

constexpr int U = 16, G = 4;

__attribute__((noinline)) void cells(const float* xp_all, const float* hp_all, const float* c, float* a, float* h,
                                     float* c_out, long blocks) {
  for (long i = 0; i < blocks; ++i) {
    float xp[G][U], act[G][U], c_old[U], h_new[U], c_new[U], aux[U];
    const float* hp = hp_all + i * G * U;
    for (int g = 0; g < G; ++g) std::memcpy(xp[g], xp_all + i * G * U + g * U, sizeof(float) * U);
    std::memcpy(c_old, c + i * U, sizeof(float) * U);
    for (int u = 0; u < U; ++u) {
      float xu[G], hu[G], au[G];
      for (int g = 0; g < G; ++g) xu[g] = xp[g][u], hu[g] = hp[g * U + u];
      c_new[u] = aux[u] = 0;
      fusedrnn::LstmCell::forward(xu, hu, 0.0f, c_old[u], au, aux[u], h_new[u], c_new[u]);
      for (int g = 0; g < G; ++g) act[g][u] = au[g];
    }
    for (int g = 0; g < G; ++g) std::memcpy(a + i * G * U + g * U, act[g], sizeof(float) * U);
    std::memcpy(h + i * U, h_new, sizeof(float) * U);
    std::memcpy(c_out + i * U, c_new, sizeof(float) * U);
  }
}

int main() {
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);  // as the kernels run
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  const long blocks = 256, reps = 2000;
  std::vector<float> xp(blocks * G * U), hp(blocks * G * U), c(blocks * U), a(blocks * G * U), h(blocks * U),
      c_out(blocks * U);
  for (std::size_t i = 0; i < xp.size(); ++i) xp[i] = 2 * std::sin(0.37f * i), hp[i] = std::cos(0.11f * i);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = std::sin(0.7f * i);
  for (int t = 0; t < 5; ++t) {
    const auto start = std::chrono::steady_clock::now();
    for (long r = 0; r < reps; ++r) cells(xp.data(), hp.data(), c.data(), a.data(), h.data(), c_out.data(), blocks);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("LSTM cell: %.1f ns per block of %d units\n", s / (reps * blocks) * 1e9, U);
  }
  return h[5] > 1e30f;
}
