// The LSTM cell's pointwise math with two cheaper forms of exp's argument reduction, against the
// kernels' own (cells.h), as benchmarks/native/cell_cost.cpp times it (per block of 16 units, L1):
//   current   cells.h: |v| clamped to 88 on its bits (NaN kept), then k clamped to normal scales
//   clamp-f   v clamped to +-87.3 by two float compares (NaN kept: a compare with NaN is false),
//             so that k = round(v / ln 2) needs no clamp; Taylor degree 7 as now
//   deg 6     the same with degree 6 (sigmoid's relative error 1.4e-7 -> 2.5e-7)
// Prints ns per block and the sigmoid's largest relative error on [-20, 20] against double.
//   g++ -O3 -std=c++17 -fno-math-errno -fno-trapping-math -ffp-contract=fast -mavx512f -mavx512bw \
//       -mavx512dq -mavx512vl -mfma -mprefer-vector-width=512 -Icsrc/include \
//       benchmarks/native/exp_variants.cpp -o /tmp/exp_variants && /tmp/exp_variants
#define FUSEDRNN_ISA_NAMESPACE avx512
#include "fusedrnn/cells.h"
#include <chrono>
#include <cstdio>
#include <vector>
#include <cmath>
#include <xmmintrin.h>
#include <pmmintrin.h>
using namespace fusedrnn;
constexpr int U = 16, G = 4;
// exp's reduction v = k ln 2 + r with v clamped to +-87.3 by float compares (a compare with NaN is
// false, so NaN stays): k = round(v / ln 2) then stays in the normal range and needs no clamp.
inline __attribute__((always_inline)) void reduce_b(float v, float& r, float& scale) {
  using E = ExpTraits<float>;
  const float vmax = 87.3f;
  v = v > vmax ? vmax : v;
  v = v < -vmax ? -vmax : v;
  const float t = v * 1.4426950408889634f + E::shifter;
  const float k = t - E::shifter;
  r = (v - k * 0.693145751953125f) - k * 1.4286068203094173e-06f;
  int32_t tb, sb;
  const float sh = E::shifter;
  std::memcpy(&tb, &t, 4);
  std::memcpy(&sb, &sh, 4);
  const int32_t sbits = (tb - sb + 127) << 23;
  std::memcpy(&scale, &sbits, 4);
}
template <int Deg>
inline __attribute__((always_inline)) float exp_b(float v) {
  float r, scale;
  reduce_b(v, r, scale);
  return taylor_exp<float, 1, Deg>(r) * scale;
}
template <int Deg>
inline __attribute__((always_inline)) float tanh_b(float v) {  // as cells.h's tanh_
  float r, scale;
  reduce_b(2.0f * v, r, scale);
  const float m = scale * (r * taylor_exp<float, 2, Deg + 1>(r)) + (scale - 1.0f);
  return m / (m + 2.0f);
}
template <int V>
inline __attribute__((always_inline)) void lstm(const float* xp, const float* hp, float c, float* a, float& h_new, float& c_new) {
  if constexpr (V == 0) {
    float aux = 0; LstmCell::forward(xp, hp, 0.0f, c, a, aux, h_new, c_new);
  } else {
    constexpr int D = V == 1 ? 7 : 6;
    a[0] = 1.0f / (1.0f + exp_b<D>(-(xp[0] + hp[0])));
    a[1] = 1.0f / (1.0f + exp_b<D>(-(xp[1] + hp[1])));
    a[2] = tanh_b<D>(xp[2] + hp[2]);
    a[3] = 1.0f / (1.0f + exp_b<D>(-(xp[3] + hp[3])));
    c_new = a[1] * c + a[0] * a[2];
    h_new = a[3] * tanh_b<D>(c_new);
  }
}
template <int V>
__attribute__((noinline)) void cells(const float* xp_all, const float* hp_all, const float* c, float* a, float* h, float* c_out, long blocks) {
  for (long i = 0; i < blocks; ++i) {
    float xp[G][U], act[G][U], c_old[U], h_new[U], c_new[U];
    const float* hp = hp_all + i * G * U;
    for (int g = 0; g < G; ++g) std::memcpy(xp[g], xp_all + i * G * U + g * U, sizeof(float) * U);
    std::memcpy(c_old, c + i * U, sizeof(float) * U);
    for (int u = 0; u < U; ++u) {
      float xu[G], hu[G], au[G];
      for (int g = 0; g < G; ++g) xu[g] = xp[g][u], hu[g] = hp[g * U + u];
      c_new[u] = 0;
      lstm<V>(xu, hu, c_old[u], au, h_new[u], c_new[u]);
      for (int g = 0; g < G; ++g) act[g][u] = au[g];
    }
    for (int g = 0; g < G; ++g) std::memcpy(a + i * G * U + g * U, act[g], sizeof(float) * U);
    std::memcpy(h + i * U, h_new, sizeof(float) * U);
    std::memcpy(c_out + i * U, c_new, sizeof(float) * U);
  }
}
int main() {
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON); _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  const long blocks = 256, reps = 2000;
  std::vector<float> xp(blocks * G * U), hp(blocks * G * U), c(blocks * U), a(blocks * G * U), h(blocks * U), c_out(blocks * U);
  for (size_t i = 0; i < xp.size(); ++i) xp[i] = 2 * std::sin(0.37f * i), hp[i] = std::cos(0.11f * i);
  for (size_t i = 0; i < c.size(); ++i) c[i] = std::sin(0.7f * i);
  auto t = [&](auto fn) {
    double best = 1e9;
    for (int k = 0; k < 7; ++k) {
      auto s0 = std::chrono::steady_clock::now();
      for (long r = 0; r < reps; ++r) fn(xp.data(), hp.data(), c.data(), a.data(), h.data(), c_out.data(), blocks);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
    }
    return best / (reps * blocks) * 1e9;
  };
  for (int round = 0; round < 3; ++round)
    std::printf("current %.1f  clamp-f deg7 %.1f  clamp-f deg6 %.1f ns/block\n", t(cells<0>), t(cells<1>), t(cells<2>));
  // accuracy of variants vs double
  double e1 = 0, e2 = 0, e0 = 0;
  for (float x = -20; x < 20; x += 0.001f) {
    double s = 1 / (1 + std::exp(-(double)x));
    e0 = std::max(e0, std::fabs(sigmoid(x) - s) / s);
    e1 = std::max(e1, std::fabs(1.0f / (1.0f + exp_b<7>(-x)) - s) / s);
    e2 = std::max(e2, std::fabs(1.0f / (1.0f + exp_b<6>(-x)) - s) / s);
  }
  std::printf("sigmoid max rel err: current %.2e deg7 %.2e deg6 %.2e\n", e0, e1, e2);
  return h[5] > 1e30f;
}
