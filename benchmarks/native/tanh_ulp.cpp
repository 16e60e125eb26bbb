// Largest error, in float/double ulps against long double, of the kernels' exp_ and tanh_
// (csrc/include/fusedrnn/cells.h) on a dense grid over [-20, 20] and on tiny arguments.
//   g++ -O2 -mavx2 -mfma -std=c++17 -fno-math-errno -fno-trapping-math -ffp-contract=fast \
//       -Icsrc/include benchmarks/native/tanh_ulp.cpp -o /tmp/tanh_ulp && /tmp/tanh_ulp
#define FUSEDRNN_ISA_NAMESPACE avx2
#include "fusedrnn/cells.h"
#include <cstdio>
#include <cmath>
#include <vector>
using namespace fusedrnn;
template <class S> double ulp_err(S got, long double want) {
  if (want == 0) return got == 0 ? 0 : 1e9;
  S w = (S)want; S next = std::nextafter(w, (S)INFINITY); double ulp = (double)(next - w);
  return std::fabs((double)((long double)got - want)) / ulp;
}
int main() {
  const int N = 4000000;
  std::vector<float> v(N), t(N), e(N), sg(N);
  for (int i = 0; i < N; ++i) v[i] = -20.0f + 40.0f * i / N;
  for (int i = 0; i < N; ++i) { t[i] = tanh_(v[i]); e[i] = exp_(v[i]); }
  double mt = 0, me = 0; float at = 0, ae = 0;
  for (int i = 0; i < N; ++i) {
    double a = ulp_err(t[i], std::tanh((long double)v[i])); if (a > mt) mt = a, at = v[i];
    double b = ulp_err(e[i], std::exp((long double)v[i])); if (b > me) me = b, ae = v[i];
  }
  // tiny
  double mts = 0; for (int i = 1; i < 100000; ++i) { float x = 1e-30f * i * 1.37f; double a = ulp_err((float)tanh_(x), std::tanh((long double)x)); if (a > mts) mts = a; }
  printf("float: tanh max %.2f ulp (at %g), exp max %.2f ulp (at %g), tiny tanh %.2f ulp; tanh(50)=%g tanh(-50)=%g tanh(1e4)=%g\n", mt, at, me, ae, mts, (double)tanh_(50.f), (double)tanh_(-50.f), (double)tanh_(1e4f));
  double md = 0; for (int i = 0; i < N; ++i) { double x = -20.0 + 40.0 * i / N; double a = ulp_err(tanh_(x), std::tanh((long double)x)); if (a > md) md = a; }
  double mde = 0; for (int i = 0; i < N; ++i) { double x = -20.0 + 40.0 * i / N; double a = ulp_err(exp_(x), std::exp((long double)x)); if (a > mde) mde = a; }
  printf("double: tanh max %.2f ulp, exp max %.2f ulp\n", md, mde);
}
