// Plain parameter structs passed by value to the kernels. Filled by the bindings (or any other
// caller); no pybind11 or NumPy types. Shapes follow conventions.h. Pointers marked "LSTM" or
// "GRU" are nullptr for the other cells. Kernels trust these: the caller checked them.
#pragma once

#include "fusedrnn/conventions.h"

namespace fusedrnn {

struct Sizes {
  index_t T = 0, B = 0, I = 0, H = 0;
  index_t P = 0;  // size of h: H, or proj_size for an LSTM with a projection
  bool reverse = false;
  const std::int64_t* lengths = nullptr;  // [B] values in [1, T], or nullptr: all T

  index_t time_of(index_t s) const { return reverse ? T - 1 - s : s; }
  bool active(index_t b, index_t t) const { return lengths == nullptr || t < lengths[b]; }
};

// One layer's weights laid out as the forward reads them, in the running ISA's layout (sizes from
// KernelTable::packed_sizes): filled once by KernelTable::pack_*, then read by any number of
// forwards, which then skip their own packing of W_ih, W_hh, b_hh and W_hr.
template <class S>
struct PackedWeights {
  S* w_ih = nullptr;  // W_ih^T as the input GEMM's B panels
  S* w_hh = nullptr;  // R regrouped per block of units
  S* b_hh = nullptr;  // b_r per block of units
  S* w_hr = nullptr;  // W_hr per block of P, projected LSTM
};

template <class S>
struct ForwardParams {
  Sizes n;
  const S* x = nullptr;     // [T, B, I]
  const S* h0 = nullptr;    // [B, P]
  const S* c0 = nullptr;    // [B, H]  LSTM
  const S* w_ih = nullptr;  // [GH, I]
  const S* w_hh = nullptr;  // [GH, P]
  const S* b_ih = nullptr;  // [GH]
  const S* b_hh = nullptr;  // [GH]
  const S* w_hr = nullptr;  // [P, H]  LSTM projection, or nullptr
  S* y = nullptr;           // [T, B, P]
  S* h_n = nullptr;         // [B, P]
  S* c_n = nullptr;         // [B, H]  LSTM
  S* gates = nullptr;       // [T, B, GH] with a tape, the activated gates; else nullptr (kept scratch)
  // The tape; all nullptr for inference.
  S* h_prev = nullptr;  // [T, B, P]
  S* c_prev = nullptr;  // [T, B, H]  LSTM
  S* aux = nullptr;     // [T, B, H]  GRU
  S* m = nullptr;       // [T, B, H]  projected LSTM: o * tanh(c), the input of the projection
  // Weights packed beforehand (inference), or all nullptr: w_ih, w_hh, b_hh, w_hr packed per call.
  PackedWeights<S> packed;
};

template <class S>
struct BackwardParams {
  Sizes n;
  const S* x = nullptr;     // [T, B, I] (zero at padding steps)
  const S* w_ih = nullptr;  // [GH, I]
  const S* w_hh = nullptr;  // [GH, P]
  const S* w_hr = nullptr;  // [P, H]  LSTM projection, or nullptr
  const S* gates = nullptr;   // [T, B, GH] tape
  const S* h_prev = nullptr;  // [T, B, P] tape
  const S* c_prev = nullptr;  // [T, B, H] tape, LSTM
  const S* aux = nullptr;     // [T, B, H] tape, GRU
  const S* m = nullptr;       // [T, B, H] tape, projected LSTM
  const S* dy = nullptr;      // [T, B, P]
  const S* dh_n = nullptr;    // [B, P]
  const S* dc_n = nullptr;    // [B, H]  LSTM
  S* dx = nullptr;            // [T, B, I]
  S* dh0 = nullptr;           // [B, P]
  S* dc0 = nullptr;           // [B, H]  LSTM
  S* dw_ih = nullptr;         // [GH, I]
  S* dw_hh = nullptr;         // [GH, P]
  S* dw_hr = nullptr;         // [P, H]  projected LSTM
  S* db_ih = nullptr;         // [GH]
  S* db_hh = nullptr;         // [GH]
  S* dgates = nullptr;        // [T, B, GH] workspace: d(loss)/d(W x + b_w)
  S* dgates_rec = nullptr;    // [T, B, GH] workspace, GRU only: d(loss)/d(R h + b_r)
  S* dh_total = nullptr;      // [T, B, P] workspace, projected LSTM: d(loss)/d(h) leaving each step
};

}  // namespace fusedrnn
