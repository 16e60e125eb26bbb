// Forward and backward through time for one layer and one direction, any cell of cells.h.
//
// Forward:  gates[T,B,GH] = x W^T + b_w  (one GEMM), then per step and per block of kUnits hidden
//           units: the block's G gate pre-activations R h + b_r are accumulated in registers from a
//           gate-interleaved packed R, and the cell's pointwise math runs on them at once (no pass
//           over a [B, GH] buffer). The activated gates overwrite the projection in place.
// Backward: one reverse walk. Transition s turns the gate gradients of step s into dh entering
//           step s (dgates_rec[s] R plus the cell's direct term) per block of units, and in the same
//           pass applies step s-1's pointwise derivative to that block. Then dX, dW, dR and the
//           bias gradients are whole-sequence GEMMs and column sums.
// Both walks are sequential in the units of a step and allocate only before the time loop.
#include <algorithm>
#include <cstring>
#include <vector>

#include "fusedrnn/cells.h"
#include "gemm.h"
#include "kernels.h"

namespace fusedrnn::cpu {
namespace {

// Hidden units per block in the step kernels: a block's LSTM accumulators fill 8 SSE registers.
template <class S>
constexpr int kUnits = 32 / sizeof(S);

template <class S>
index_t num_blocks(index_t H) {
  return (H + kUnits<S> - 1) / kUnits<S>;
}

// Forward layout of R: [block][k < H][g < G][u < kUnits<S>] = R[g*H + block*kUnits<S> + u][k], zero-padded.
// Bias b_r likewise: [block][g][u].
template <class S>
void pack_recurrent_forward(const S* R, const S* b_r, index_t G, index_t H, S* r_packed, S* b_packed) {
  for (index_t blk = 0; blk < num_blocks<S>(H); ++blk)
    for (index_t g = 0; g < G; ++g)
      for (index_t u = 0; u < kUnits<S>; ++u) {
        const index_t j = blk * kUnits<S> + u;
        const bool valid = j < H;
        b_packed[(blk * G + g) * kUnits<S> + u] = valid ? b_r[g * H + j] : S(0);
        for (index_t k = 0; k < H; ++k)
          r_packed[((blk * H + k) * G + g) * kUnits<S> + u] = valid ? R[(g * H + j) * H + k] : S(0);
      }
}

// Backward layout of R: [block][k < GH][u < kUnits<S>] = R[k][block*kUnits<S> + u], zero-padded.
template <class S>
void pack_recurrent_backward(const S* R, index_t GH, index_t H, S* r_packed) {
  for (index_t blk = 0; blk < num_blocks<S>(H); ++blk)
    for (index_t k = 0; k < GH; ++k)
      for (index_t u = 0; u < kUnits<S>; ++u) {
        const index_t j = blk * kUnits<S> + u;
        r_packed[(blk * GH + k) * kUnits<S> + u] = j < H ? R[k * H + j] : S(0);
      }
}

// out[i] = bias[i] + sum_k r_block[k][i] * v[k] for i < G*kUnits (bias nullptr: 0): one block's
// G gate pre-activations in the forward (v = h), its share of dgates R in the backward (G = 1,
// v = dgates). The accumulators are indexed only by constants, so they stay in registers.
template <int G, class S>
inline void recurrent_block(const S* r_block, const S* v, index_t K, const S* bias, S* out) {
  S acc[G * kUnits<S>];
  for (int i = 0; i < G * kUnits<S>; ++i) acc[i] = bias ? bias[i] : S(0);
  for (index_t k = 0; k < K; ++k) {
    const S hk = v[k];
    const S* rk = r_block + k * G * kUnits<S>;
    for (int i = 0; i < G * kUnits<S>; ++i) acc[i] += rk[i] * hk;
  }
  for (int i = 0; i < G * kUnits<S>; ++i) out[i] = acc[i];
}

// One forward step at time t. gates_t [B, GH] holds W x + b_w on entry and the activated gates
// on exit; h/c [B, H] are the states entering the step, h_next/c_next leaving it.
template <class Cell, class S>
void forward_step(const Sizes& n, index_t t, const S* r_packed, const S* b_packed, const S* h, const S* c,
                  S* gates_t, S* h_next, S* c_next, S* y_t, S* aux_t) {
  constexpr int G = Cell::G;
  const index_t B = n.B, H = n.H, GH = G * H;
  for (index_t b = 0; b < B; ++b) {
    if (n.active(b, t)) continue;
    std::copy(h + b * H, h + (b + 1) * H, h_next + b * H);
    if constexpr (Cell::kHasCellState) std::copy(c + b * H, c + (b + 1) * H, c_next + b * H);
    std::fill(y_t + b * H, y_t + (b + 1) * H, S(0));
  }
  for (index_t blk = 0; blk < num_blocks<S>(H); ++blk) {
    const S* rp = r_packed + blk * H * G * kUnits<S>;
    const index_t j0 = blk * kUnits<S>, units = std::min<index_t>(kUnits<S>, H - j0);
    for (index_t b = 0; b < B; ++b) {
      if (!n.active(b, t)) continue;
      S acc[G][kUnits<S>];
      recurrent_block<G>(rp, h + b * H, H, b_packed + blk * G * kUnits<S>, &acc[0][0]);
      S* gb = gates_t + b * GH;
      for (index_t u = 0; u < units; ++u) {
        const index_t j = j0 + u, bj = b * H + j;
        S xp[G], hp[G], a[G], aux = S(0), h_new, c_new = S(0);
        for (int g = 0; g < G; ++g) {
          xp[g] = gb[g * H + j];
          hp[g] = acc[g][u];
        }
        Cell::forward(xp, hp, h[bj], Cell::kHasCellState ? c[bj] : S(0), a, aux, h_new, c_new);
        for (int g = 0; g < G; ++g) gb[g * H + j] = a[g];
        h_next[bj] = h_new;
        y_t[bj] = h_new;
        if constexpr (Cell::kHasCellState) c_next[bj] = c_new;
        if constexpr (Cell::kHasAux)
          if (aux_t) aux_t[bj] = aux;
      }
    }
  }
}

template <class Cell, class S>
void forward_impl(const ForwardParams<S>& p) {
  constexpr int G = Cell::G;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, GH = G * H, BH = B * H;
  constexpr bool lstm = Cell::kHasCellState;

  std::vector<S> r_packed(num_blocks<S>(H) * H * G * kUnits<S>), b_packed(num_blocks<S>(H) * G * kUnits<S>);
  pack_recurrent_forward(p.w_hh, p.b_hh, G, H, r_packed.data(), b_packed.data());
  std::vector<S> state(2 * BH * (lstm ? 2 : 1));  // h, h_next [, c, c_next]
  S* h = state.data();
  S* h_next = h + BH;
  S* c = lstm ? h_next + BH : nullptr;
  S* c_next = lstm ? c + BH : nullptr;

  // Input projection for all steps: gates[t, b, :] = b_w + x[t, b, :] W^T.
  for (index_t row = 0; row < T * B; ++row) std::copy(p.b_ih, p.b_ih + GH, p.gates + row * GH);
  gemm<S>(T * B, GH, I, {p.x, I, 1}, {p.w_ih, 1, I}, p.gates, GH, /*accumulate=*/true);

  std::copy(p.h0, p.h0 + BH, h);
  if constexpr (lstm) std::copy(p.c0, p.c0 + BH, c);
  for (index_t s = 0; s < T; ++s) {
    const index_t t = n.time_of(s);
    if (p.h_prev) std::copy(h, h + BH, p.h_prev + t * BH);
    if (lstm && p.c_prev) std::copy(c, c + BH, p.c_prev + t * BH);
    forward_step<Cell>(n, t, r_packed.data(), b_packed.data(), h, c, p.gates + t * B * GH, h_next, c_next,
                       p.y + t * BH, p.aux ? p.aux + t * BH : nullptr);
    std::swap(h, h_next);
    std::swap(c, c_next);
  }
  std::copy(h, h + BH, p.h_n);
  if constexpr (lstm) std::copy(c, c + BH, p.c_n);
}

// Buffers the backward walk carries from step to step, all [B, H].
template <class S>
struct BackwardCarry {
  S* dh_direct;  // the part of d loss / d h_prev not flowing through R (padding: all of it)
  S* dc;         // LSTM: d loss / d c entering the step being differentiated
};

// Step t's pointwise derivative for unit j of sequence b, given dh_in = d loss / d h leaving step t
// through the later steps (dy[t] not included).
template <class Cell, class S>
inline void backward_unit(const BackwardParams<S>& p, index_t t, index_t b, index_t j, S dh_in,
                          BackwardCarry<S> carry, S* dgates_rec) {
  constexpr int G = Cell::G;
  const index_t B = p.n.B, H = p.n.H, GH = G * H;
  const index_t gate0 = (t * B + b) * GH + j, bj = b * H + j, tbj = (t * B + b) * H + j;
  if (!p.n.active(b, t)) {  // padding: gradients pass through unchanged, dy is not read
    for (int g = 0; g < G; ++g) p.dgates[gate0 + g * H] = dgates_rec[gate0 + g * H] = S(0);
    carry.dh_direct[bj] = dh_in;
    return;
  }
  S a[G], dxp[G], dhp[G], dc = Cell::kHasCellState ? carry.dc[bj] : S(0);
  for (int g = 0; g < G; ++g) a[g] = p.gates[gate0 + g * H];
  Cell::backward(a, Cell::kHasAux ? p.aux[tbj] : S(0), p.h_prev[tbj], Cell::kHasCellState ? p.c_prev[tbj] : S(0),
                 dh_in + p.dy[tbj], dc, dxp, dhp, carry.dh_direct[bj]);
  for (int g = 0; g < G; ++g) {
    p.dgates[gate0 + g * H] = dxp[g];
    dgates_rec[gate0 + g * H] = dhp[g];
  }
  if constexpr (Cell::kHasCellState) carry.dc[bj] = dc;
}

template <class Cell, class S>
void backward_impl(const BackwardParams<S>& p) {
  constexpr int G = Cell::G;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, GH = G * H, BH = B * H;
  S* dgates_rec = Cell::kSplitRecurrentGrad ? p.dgates_rec : p.dgates;

  std::vector<S> r_packed(num_blocks<S>(H) * GH * kUnits<S>);
  pack_recurrent_backward(p.w_hh, GH, H, r_packed.data());
  constexpr bool lstm = Cell::kHasCellState;
  std::vector<S> carry_buf(BH * (lstm ? 2 : 1));
  BackwardCarry<S> carry{carry_buf.data(), lstm ? carry_buf.data() + BH : nullptr};
  if constexpr (lstm) std::copy(p.dc_n, p.dc_n + BH, carry.dc);

  if (T > 0) {
    const index_t t_last = n.time_of(T - 1);
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < H; ++j)
        backward_unit<Cell>(p, t_last, b, j, p.dh_n[b * H + j], carry, dgates_rec);
  } else {
    std::copy(p.dh_n, p.dh_n + BH, carry.dh_direct);
  }
  for (index_t s = T - 1; s >= 0; --s) {
    const index_t t = n.time_of(s);
    for (index_t blk = 0; blk < num_blocks<S>(H); ++blk) {
      const S* rp = r_packed.data() + blk * GH * kUnits<S>;
      const index_t j0 = blk * kUnits<S>, units = std::min<index_t>(kUnits<S>, H - j0);
      for (index_t b = 0; b < B; ++b) {
        S acc[kUnits<S>] = {};
        if (n.active(b, t)) recurrent_block<1>(rp, dgates_rec + (t * B + b) * GH, GH, (const S*)nullptr, acc);
        for (index_t u = 0; u < units; ++u) {
          const index_t j = j0 + u;
          const S dh = acc[u] + carry.dh_direct[b * H + j];  // d loss / d h entering step t
          if (s > 0)
            backward_unit<Cell>(p, n.time_of(s - 1), b, j, dh, carry, dgates_rec);
          else
            p.dh0[b * H + j] = dh;
        }
      }
    }
  }
  if (T == 0) std::copy(carry.dh_direct, carry.dh_direct + BH, p.dh0);
  if constexpr (lstm) std::copy(carry.dc, carry.dc + BH, p.dc0);

  // Whole-sequence products over the T*B rows of the gate gradients.
  const index_t rows = T * B;
  gemm<S>(rows, I, GH, {p.dgates, GH, 1}, {p.w_ih, I, 1}, p.dx, I, false);           // dx = dg W
  gemm<S>(GH, I, rows, {p.dgates, 1, GH}, {p.x, I, 1}, p.dw_ih, I, false);           // dW = dg^T x
  gemm<S>(GH, H, rows, {dgates_rec, 1, GH}, {p.h_prev, H, 1}, p.dw_hh, H, false);    // dR = dgr^T h
  std::fill(p.db_ih, p.db_ih + GH, S(0));
  std::fill(p.db_hh, p.db_hh + GH, S(0));
  for (index_t row = 0; row < rows; ++row) {
    const S* dg = p.dgates + row * GH;
    const S* dgr = dgates_rec + row * GH;
    for (index_t k = 0; k < GH; ++k) {
      p.db_ih[k] += dg[k];
      p.db_hh[k] += dgr[k];
    }
  }
}

}  // namespace

template <class S>
void forward(CellKind cell, const ForwardParams<S>& p) {
  switch (cell) {
    case CellKind::rnn_tanh: return forward_impl<RnnTanhCell>(p);
    case CellKind::rnn_relu: return forward_impl<RnnReluCell>(p);
    case CellKind::lstm: return forward_impl<LstmCell>(p);
    case CellKind::gru: return forward_impl<GruCell>(p);
  }
}

template <class S>
void backward(CellKind cell, const BackwardParams<S>& p) {
  switch (cell) {
    case CellKind::rnn_tanh: return backward_impl<RnnTanhCell>(p);
    case CellKind::rnn_relu: return backward_impl<RnnReluCell>(p);
    case CellKind::lstm: return backward_impl<LstmCell>(p);
    case CellKind::gru: return backward_impl<GruCell>(p);
  }
}

template void forward<float>(CellKind, const ForwardParams<float>&);
template void forward<double>(CellKind, const ForwardParams<double>&);
template void backward<float>(CellKind, const BackwardParams<float>&);
template void backward<double>(CellKind, const BackwardParams<double>&);

}  // namespace fusedrnn::cpu
