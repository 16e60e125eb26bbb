// Plain parameter structs passed by value to the kernels. Filled by the bindings (or any other
// caller); no pybind11 or NumPy types. Shapes follow conventions.h. Pointers marked "LSTM" or
// "GRU" are nullptr for the other cells. Kernels trust these: the caller checked them.
#pragma once

#include "fusedrnn/conventions.h"

namespace fusedrnn {

struct Sizes {
  index_t T = 0, B = 0, I = 0, H = 0;
  bool reverse = false;
  const std::int64_t* lengths = nullptr;  // [B] values in [1, T], or nullptr: all T

  index_t time_of(index_t s) const { return reverse ? T - 1 - s : s; }
  bool active(index_t b, index_t t) const { return lengths == nullptr || t < lengths[b]; }
};

template <class S>
struct ForwardParams {
  Sizes n;
  const S* x = nullptr;     // [T, B, I]
  const S* h0 = nullptr;    // [B, H]
  const S* c0 = nullptr;    // [B, H]  LSTM
  const S* w_ih = nullptr;  // [GH, I]
  const S* w_hh = nullptr;  // [GH, H]
  const S* b_ih = nullptr;  // [GH]
  const S* b_hh = nullptr;  // [GH]
  S* y = nullptr;           // [T, B, H]
  S* h_n = nullptr;         // [B, H]
  S* c_n = nullptr;         // [B, H]  LSTM
  S* gates = nullptr;       // [T, B, GH] workspace; with a tape, the activated gates
  // The tape; all nullptr for inference.
  S* h_prev = nullptr;  // [T, B, H]
  S* c_prev = nullptr;  // [T, B, H]  LSTM
  S* aux = nullptr;     // [T, B, H]  GRU
};

template <class S>
struct BackwardParams {
  Sizes n;
  const S* x = nullptr;     // [T, B, I] (zero at padding steps)
  const S* w_ih = nullptr;  // [GH, I]
  const S* w_hh = nullptr;  // [GH, H]
  const S* gates = nullptr;   // [T, B, GH] tape
  const S* h_prev = nullptr;  // [T, B, H] tape
  const S* c_prev = nullptr;  // [T, B, H] tape, LSTM
  const S* aux = nullptr;     // [T, B, H] tape, GRU
  const S* dy = nullptr;      // [T, B, H]
  const S* dh_n = nullptr;    // [B, H]
  const S* dc_n = nullptr;    // [B, H]  LSTM
  S* dx = nullptr;            // [T, B, I]
  S* dh0 = nullptr;           // [B, H]
  S* dc0 = nullptr;           // [B, H]  LSTM
  S* dw_ih = nullptr;         // [GH, I]
  S* dw_hh = nullptr;         // [GH, H]
  S* db_ih = nullptr;         // [GH]
  S* db_hh = nullptr;         // [GH]
  S* dgates = nullptr;        // [T, B, GH] workspace: d(loss)/d(W x + b_w)
  S* dgates_rec = nullptr;    // [T, B, GH] workspace, GRU only: d(loss)/d(R h + b_r)
};

}  // namespace fusedrnn
