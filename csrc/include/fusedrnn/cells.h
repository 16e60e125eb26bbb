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

#if defined(__CUDACC__)
#define FUSEDRNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FUSEDRNN_HOST_DEVICE inline
#endif

namespace fusedrnn {

FUSEDRNN_HOST_DEVICE float exp_(float v) { return ::expf(v); }
FUSEDRNN_HOST_DEVICE double exp_(double v) { return ::exp(v); }
FUSEDRNN_HOST_DEVICE float tanh_(float v) { return ::tanhf(v); }
FUSEDRNN_HOST_DEVICE double tanh_(double v) { return ::tanh(v); }

// 1 / (1 + e^-v); for very negative v, e^-v overflows to inf and the result is exactly 0.
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

}  // namespace fusedrnn
