// fusedrnn conventions: the letters, the layouts and the gate orders, defined once.
//
// Letters
//   T  time steps            B  batch size         I  input size
//   H  hidden size           G  gates per unit (RNN 1, LSTM 4, GRU 3)
//   P  size of the state h and the output: H, or proj_size for an LSTM with a projection
//   GH = G*H, the rows of the weight matrices.
//
// Layout: every array is C-contiguous, "rightmost index fastest".
//   x        [T, B, I]      input, time-major
//   y        [T, B, P]      output; zero where t >= lengths[b]
//   h0, h_n  [B, P]         initial / final hidden state
//   c0, c_n  [B, H]         LSTM cell state
//   W        [GH, I]        weight_ih, rows grouped by gate: row g*H + j is gate g of unit j
//   R        [GH, P]        weight_hh, same row order
//   b_w, b_r [GH]           bias_ih, bias_hh
//   W_hr     [P, H]         weight_hr, LSTM projection: h = W_hr (o * tanh(c))
//
// Gate orders (PyTorch / cuDNN):  LSTM i, f, g, o     GRU r, z, n     RNN: the one gate is h.
//
// Time and lengths: step t of sequence b is real when t < lengths[b] (lengths == nullptr: all T).
// Padding steps leave the state unchanged and write y = 0. The forward direction visits
// t = 0 .. T-1, the reverse direction t = T-1 .. 0, so a reversed sequence starts at its last
// real step from h0. The processing index s maps to time t = reverse ? T-1-s : s.
//
// The tape (what the forward keeps for the backward, time-indexed):
//   gates   [T, B, GH]  activated gates (LSTM sig(i) sig(f) tanh(g) sig(o); GRU r z n; RNN h)
//   h_prev  [T, B, P]   hidden state entering step t
//   c_prev  [T, B, H]   LSTM cell state entering step t
//   aux     [T, B, H]   GRU only: R_n h + b_rn, the recurrent part of n before the reset gate
//   m       [T, B, H]   projected LSTM only: o * tanh(c), the input of the projection
// Without a tape, `gates` is still the workspace that holds W x + b_w for all steps.
//
// What the backward writes (=) and what it accumulates (+=): every output is written (=):
//   dx [T,B,I], dh0 [B,P], dc0 [B,H], dW [GH,I], dR [GH,P], db_w [GH], db_r [GH], dW_hr [P,H].
// Gradient accumulation across calls is the Python layer's job.
#pragma once

#include <cstdint>

namespace fusedrnn {

using index_t = std::int64_t;

enum class CellKind : int { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3 };

}  // namespace fusedrnn
