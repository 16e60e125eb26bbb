// Each cell's pointwise math, forward and derivative, written once for one hidden unit.
// Host and device inline functions: the CPU kernels include this file and so will the CUDA ones.
//
// Every cell sees, for one unit j of one sequence at one step:
//   xp[G]  the input part of the gate pre-activations:     (W x + b_w)[g*H + j]
//   hp[G]  the recurrent part:                              (R h + b_r)[g*H + j]
//   h, c   the state entering the step (c: LSTM only)
// forward() writes the activated gates a[G] (what the tape keeps), aux (GRU: hp[n], the tape's
// aux), and returns the new state in h_new (and c_new).
// backward() takes the same a, aux, h, c, the gradient dh of the new h (dy plus what flows back
// from the next step) and dc of the new c (LSTM; replaced by the gradient of the old c); it
// writes dxp[G] = d loss / d xp, dhp[G] = d loss / d hp (equal to dxp except for GRU's n gate)
// and dh_direct, the part of d loss / d h that does not flow through R (GRU: dh * z; else 0).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

// Always inlined: the CPU's pointwise loops vectorize only with the whole cell's math inlined into
// them, and GCC's inliner drops exp_/tanh_ once a kernel has enough template instances (that cost
// the LSTM forward 15%).
#if defined(__CUDACC__)
#define FUSEDRNN_HOST_DEVICE __host__ __device__ __forceinline__
#define FUSEDRNN_INLINE __forceinline__
#elif defined(__GNUC__)
#define FUSEDRNN_HOST_DEVICE inline __attribute__((always_inline))
#define FUSEDRNN_INLINE inline __attribute__((always_inline))
#else
#define FUSEDRNN_HOST_DEVICE inline
#define FUSEDRNN_INLINE inline
#endif

// Each translation unit that includes this file for a different instruction set gives it its
// own inline namespace (FUSEDRNN_ISA_NAMESPACE), so that no inline function compiled with AVX2
// flags can stand in for the portable one at link time.
#ifndef FUSEDRNN_ISA_NAMESPACE
#define FUSEDRNN_ISA_NAMESPACE portable
#endif

namespace fusedrnn {
inline namespace FUSEDRNN_ISA_NAMESPACE {

#if defined(__CUDACC__)
FUSEDRNN_HOST_DEVICE float exp_(float v) { return ::expf(v); }
FUSEDRNN_HOST_DEVICE double exp_(double v) { return ::exp(v); }
FUSEDRNN_HOST_DEVICE float tanh_(float v) { return ::tanhf(v); }
FUSEDRNN_HOST_DEVICE double tanh_(double v) { return ::tanh(v); }
#else
// exp written in plain arithmetic so that the compiler vectorizes the pointwise loops (a libm
// call per element would not). e^v = 2^k e^r with k = round(v / ln 2), r = v - k ln 2, e^r by its
// Taylor series (degree 7 for float: relative error < 2e-7; degree 13 for double: < 1e-16), 2^k
// built in the exponent bits. Rounding uses the 1.5 * 2^mantissa trick, whose low bits also hold
// k as an integer. v is first clamped to +-v_max (e^v_max is finite), so that e^v saturates
// instead of overflowing, +-inf and any huge v saturate too (the reduction of a v beyond ~1e7
// gave garbage, and NaN through sigmoid and tanh), and NaN stays NaN (its magnitude bits are above
// infinity's, which the clamp compares against).
template <class S>
struct ExpTraits;
template <>
struct ExpTraits<float> {
  using Bits = std::int32_t;
  static constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr int mantissa = 23, bias = 127, degree = 7;
  static constexpr float v_max = 88.0f;  // e^88 = 1.7e38
};
template <>
struct ExpTraits<double> {
  using Bits = std::int64_t;
  static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int mantissa = 52, bias = 1023, degree = 13;
  static constexpr double v_max = 708.0;  // e^708 = 3.0e307
};

// (K-1)! / (K-1+j)!: the j-th coefficient of e^r's Taylor series taken from its term K on.
constexpr double taylor_coefficient(int K, int j) {
  double c = 1.0;
  for (int i = K; i < K + j; ++i) c /= i;
  return c;
}

// 1 + r/K + r^2/(K(K+1)) + ... + r^(Last-K+1) (K-1)!/Last!, by Horner's rule (one FMA per degree),
// unrolled at compile time (a loop here would keep the compiler from vectorizing the callers).
template <class S, int K, int Last, int J = 0>
FUSEDRNN_INLINE S taylor_exp(S r) {
  constexpr S c = S(taylor_coefficient(K, J));
  if constexpr (K + J > Last)
    return c;
  else
    return taylor_exp<S, K, Last, J + 1>(r) * r + c;
}

// v = k ln 2 + r with k = round(v / ln 2), |r| <= ln 2 / 2, and 2^k. For float, k = -127 (v below
// about -87.7) gives 2^k = 0 rather than a denormal, which the CPU kernels flush to zero anyway.
template <class S>
FUSEDRNN_INLINE void reduce_exp(S v, S& r, S& scale) {
  using E = ExpTraits<S>;
  using Bits = typename E::Bits;
  {  // |v| clamped to v_max keeping its sign and NaN, on the bits: a float select here kept GCC
     // from vectorizing the cells' loops in the kernels (integer selects vectorize)
    const S v_max = E::v_max, inf = std::numeric_limits<S>::infinity(), zero = S(-0.0);
    Bits bits, max_bits, inf_bits, sign;
    std::memcpy(&bits, &v, sizeof(S));
    std::memcpy(&max_bits, &v_max, sizeof(S));
    std::memcpy(&inf_bits, &inf, sizeof(S));
    std::memcpy(&sign, &zero, sizeof(S));  // the sign bit alone
    sign &= bits;
    Bits magnitude = bits ^ sign;
    magnitude = (magnitude > max_bits && magnitude <= inf_bits) ? max_bits : magnitude;  // NaN kept
    bits = magnitude | sign;
    std::memcpy(&v, &bits, sizeof(S));
  }
  const S t = v * S(1.4426950408889634) + E::shifter;  // k + shifter, rounded to nearest
  const S k = t - E::shifter;
  r = (v - k * S(0.693145751953125)) - k * S(1.4286068203094173e-06);  // ln 2 split in two
  Bits t_bits, s_bits;
  const S shifter = E::shifter;
  std::memcpy(&t_bits, &t, sizeof(S));
  std::memcpy(&s_bits, &shifter, sizeof(S));
  // |v| <= v_max gives |k| <= 127 (float) or 1021 (double): 2^k needs no clamp. Unsigned, so that
  // a NaN's garbage k wraps instead of overflowing (the result is NaN through r).
  using UBits = std::make_unsigned_t<Bits>;
  const UBits scale_bits = (UBits(t_bits) - UBits(s_bits) + UBits(E::bias)) << E::mantissa;
  std::memcpy(&scale, &scale_bits, sizeof(S));
}

template <class S>
FUSEDRNN_INLINE S exp_(S v) {
  S r, scale;
  reduce_exp(v, r, scale);
  return taylor_exp<S, 1, ExpTraits<S>::degree>(r) * scale;
}

// tanh v = m / (m + 2) with m = e^u - 1, u = 2v (exact limits +-1), and one division. m comes
// from exp's reduction u = k ln 2 + r: e^u - 1 = 2^k (e^r - 1) + (2^k - 1), with
// e^r - 1 = r (1 + r/2 + r^2/6 + ...) from its Taylor series. Small |u| (k = 0) gives m = e^r - 1
// itself, so nothing cancels; for k != 0, |m| > 0.29 while neither term exceeds ~2|m|. Relatively
// accurate to a few ulps everywhere, without computing two candidates and selecting.
template <class S>
FUSEDRNN_INLINE S tanh_(S v) {
  S r, scale;
  reduce_exp(S(2) * v, r, scale);
  const S m = scale * (r * taylor_exp<S, 2, ExpTraits<S>::degree + 1>(r)) + (scale - S(1));
  return m / (m + S(2));
}
#endif

// 1 / (1 + e^-v); for very negative v the result is 0: e^-v overflows to inf (libm), or saturates
// at e^88 and the quotient, ~6e-39 in float, is a denormal the CPU kernels flush to zero.
template <class S>
FUSEDRNN_HOST_DEVICE S sigmoid(S v) {
  return S(1) / (S(1) + exp_(-v));
}

template <bool Relu>
struct RnnCell {
  static constexpr int G = 1;
  static constexpr bool kHasCellState = false;  // keeps c beside h
  static constexpr bool kHasAux = false;        // keeps aux on the tape
  static constexpr bool kSplitRecurrentGrad = false;  // dhp differs from dxp
  static constexpr bool kReadsOldH = false;           // the pointwise math reads h_{t-1}

  template <class S>
  static FUSEDRNN_HOST_DEVICE void forward(const S* xp, const S* hp, S /*h*/, S /*c*/, S* a, S& /*aux*/,
                                           S& h_new, S& /*c_new*/) {
    const S pre = xp[0] + hp[0];
    a[0] = Relu ? (pre < S(0) ? S(0) : pre) : tanh_(pre);  // relu keeps NaN, as torch does
    h_new = a[0];
  }

  template <class S>
  static FUSEDRNN_HOST_DEVICE void backward(const S* a, S /*aux*/, S /*h*/, S /*c*/, S dh, S& /*dc*/,
                                            S* dxp, S* dhp, S& dh_direct) {
    dxp[0] = Relu ? (a[0] > S(0) ? dh : S(0)) : dh * (S(1) - a[0] * a[0]);
    dhp[0] = dxp[0];
    dh_direct = S(0);
  }
};

using RnnTanhCell = RnnCell<false>;
using RnnReluCell = RnnCell<true>;

// Gates i, f, g, o:  c' = sig(f) c + sig(i) tanh(g),  h' = sig(o) tanh(c').
struct LstmCell {
  static constexpr int G = 4;
  static constexpr bool kHasCellState = true;
  static constexpr bool kHasAux = false;
  static constexpr bool kSplitRecurrentGrad = false;
  static constexpr bool kReadsOldH = false;

  template <class S>
  static FUSEDRNN_HOST_DEVICE void forward(const S* xp, const S* hp, S /*h*/, S c, S* a, S& /*aux*/, S& h_new,
                                           S& c_new) {
    a[0] = sigmoid(xp[0] + hp[0]);
    a[1] = sigmoid(xp[1] + hp[1]);
    a[2] = tanh_(xp[2] + hp[2]);
    a[3] = sigmoid(xp[3] + hp[3]);
    c_new = a[1] * c + a[0] * a[2];
    h_new = a[3] * tanh_(c_new);
  }

  template <class S>
  static FUSEDRNN_HOST_DEVICE void backward(const S* a, S /*aux*/, S /*h*/, S c, S dh, S& dc, S* dxp, S* dhp,
                                            S& dh_direct) {
    const S i = a[0], f = a[1], g = a[2], o = a[3];
    const S tanh_c = tanh_(f * c + i * g);  // the new cell state, recomputed rather than stored
    const S dc_new = dc + dh * o * (S(1) - tanh_c * tanh_c);
    dxp[0] = dc_new * g * i * (S(1) - i);
    dxp[1] = dc_new * c * f * (S(1) - f);
    dxp[2] = dc_new * i * (S(1) - g * g);
    dxp[3] = dh * tanh_c * o * (S(1) - o);
    for (int k = 0; k < 4; ++k) dhp[k] = dxp[k];
    dc = dc_new * f;
    dh_direct = S(0);
  }
};

// Gates r, z, n (linear before reset):  n = tanh(xp_n + r * hp_n),  h' = (1 - z) n + z h.
struct GruCell {
  static constexpr int G = 3;
  static constexpr bool kHasCellState = false;
  static constexpr bool kHasAux = true;
  static constexpr bool kSplitRecurrentGrad = true;
  static constexpr bool kReadsOldH = true;

  template <class S>
  static FUSEDRNN_HOST_DEVICE void forward(const S* xp, const S* hp, S h, S /*c*/, S* a, S& aux, S& h_new,
                                           S& /*c_new*/) {
    a[0] = sigmoid(xp[0] + hp[0]);
    a[1] = sigmoid(xp[1] + hp[1]);
    a[2] = tanh_(xp[2] + a[0] * hp[2]);
    aux = hp[2];
    h_new = (S(1) - a[1]) * a[2] + a[1] * h;
  }

  template <class S>
  static FUSEDRNN_HOST_DEVICE void backward(const S* a, S aux, S h, S /*c*/, S dh, S& /*dc*/, S* dxp, S* dhp,
                                            S& dh_direct) {
    const S r = a[0], z = a[1], n = a[2];
    const S dn = dh * (S(1) - z) * (S(1) - n * n);
    dxp[0] = dn * aux * r * (S(1) - r);
    dxp[1] = dh * (h - n) * z * (S(1) - z);
    dxp[2] = dn;
    dhp[0] = dxp[0];
    dhp[1] = dxp[1];
    dhp[2] = dn * r;
    dh_direct = dh * z;
  }
};

}  // inline namespace FUSEDRNN_ISA_NAMESPACE
}  // namespace fusedrnn
