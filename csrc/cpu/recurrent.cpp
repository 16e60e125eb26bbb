// Forward and backward through time for one layer and one direction, any cell of cells.h, with
// an optional LSTM projection (h = W_hr m, m = o * tanh(c), h of size P < H).
//
// Forward:  gates[T,B,GH] = x W^T + b_w  (one GEMM), then per step and per block of kUnits hidden
//           units: the block's G gate pre-activations R h + b_r are accumulated in registers from a
//           gate-interleaved packed R, and the cell's pointwise math runs on them at once (no pass
//           over a [B, GH] buffer). The activated gates overwrite the projection in place. With a
//           projection, a second pass per step maps m to h = W_hr m.
// Backward: one reverse walk. Without projection, transition s turns the gate gradients of step s
//           into dh entering step s (dgates_rec[s] R plus the cell's direct term) per block of units
//           and in the same pass applies step s-1's pointwise derivative to that block. With a
//           projection, dh lives in P space, so each step takes three passes: the total dh, then
//           dm = dh W_hr with the pointwise derivative, then dh entering the step = dgates R.
//           Then dX, dW, dR (dW_hr) and the bias gradients are whole-sequence GEMMs and column sums.
// Both walks allocate only before the time loop and reduce in a fixed order (deterministic).
#include <algorithm>
#include <vector>

#include "fusedrnn/cells.h"
#include "gemm.h"
#include "kernels.h"

namespace fusedrnn::cpu {
namespace {

// Units per block in the step kernels: a block's LSTM accumulators fill 8 SSE registers.
template <class S>
constexpr int kUnits = 32 / sizeof(S);

template <class S>
index_t num_blocks(index_t n) {
  return (n + kUnits<S> - 1) / kUnits<S>;
}

// Rows of M [G*units, K] regrouped for a forward block product:
// packed[block][k][g][u] = M[g*units + block*kUnits + u][k]   (zero past `units`);
// bias likewise as [block][g][u] when given.
template <class S>
void pack_rows(const S* M, const S* bias, index_t G, index_t units, index_t K, S* packed, S* bias_packed) {
  constexpr int U = kUnits<S>;
  for (index_t blk = 0; blk < num_blocks<S>(units); ++blk)
    for (index_t g = 0; g < G; ++g)
      for (index_t u = 0; u < U; ++u) {
        const index_t j = blk * U + u;
        const bool valid = j < units;
        if (bias_packed) bias_packed[(blk * G + g) * U + u] = valid ? bias[g * units + j] : S(0);
        for (index_t k = 0; k < K; ++k) packed[((blk * K + k) * G + g) * U + u] = valid ? M[(g * units + j) * K + k] : S(0);
      }
}

// Columns of M [rows, cols] regrouped for a backward block product:
// packed[block][k][u] = M[k][block*kUnits + u]   (zero past `cols`).
template <class S>
void pack_columns(const S* M, index_t rows, index_t cols, S* packed) {
  constexpr int U = kUnits<S>;
  for (index_t blk = 0; blk < num_blocks<S>(cols); ++blk)
    for (index_t k = 0; k < rows; ++k)
      for (index_t u = 0; u < U; ++u) {
        const index_t j = blk * U + u;
        packed[(blk * rows + k) * U + u] = j < cols ? M[k * cols + j] : S(0);
      }
}

// out[i] = bias[i] + sum_k block[k][i] * v[k] for i < G*kUnits (bias nullptr: 0). The forward's
// gate pre-activations (v = h), the projection (G = 1, v = m), the backward's share of dgates R
// and of dh W_hr (G = 1). The accumulators are indexed only by constants: they stay in registers.
template <int G, class S>
inline void block_product(const S* block, const S* v, index_t K, const S* bias, S* out) {
  constexpr int N = G * kUnits<S>;
  S acc[N];
  for (int i = 0; i < N; ++i) acc[i] = bias ? bias[i] : S(0);
  for (index_t k = 0; k < K; ++k) {
    const S vk = v[k];
    const S* bk = block + k * N;
    for (int i = 0; i < N; ++i) acc[i] += bk[i] * vk;
  }
  for (int i = 0; i < N; ++i) out[i] = acc[i];
}

// One forward step at time t. gates_t [B, GH] holds W x + b_w on entry and the activated gates on
// exit; h [B, P] and c [B, H] are the states entering the step, h_next / c_next leaving it. The
// cell's output goes to h_next and y_t, or with a projection to m_t [B, H] (then project_step).
template <class Cell, bool Project, class S>
void forward_step(const Sizes& n, index_t t, const S* r_packed, const S* b_packed, const S* h, const S* c,
                  S* gates_t, S* h_next, S* c_next, S* y_t, S* aux_t, S* m_t) {
  constexpr int G = Cell::G, U = kUnits<S>;
  const index_t B = n.B, H = n.H, P = n.P, GH = G * H;
  for (index_t b = 0; b < B; ++b) {
    if (n.active(b, t)) continue;
    std::copy(h + b * P, h + (b + 1) * P, h_next + b * P);
    if constexpr (Cell::kHasCellState) std::copy(c + b * H, c + (b + 1) * H, c_next + b * H);
    std::fill(y_t + b * P, y_t + (b + 1) * P, S(0));
  }
  for (index_t blk = 0; blk < num_blocks<S>(H); ++blk) {
    const S* rp = r_packed + blk * P * G * U;
    const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
    for (index_t b = 0; b < B; ++b) {
      if (!n.active(b, t)) continue;
      S acc[G][U];
      block_product<G>(rp, h + b * P, P, b_packed + blk * G * U, &acc[0][0]);
      S* gb = gates_t + b * GH;
      for (index_t u = 0; u < units; ++u) {
        const index_t j = j0 + u, bj = b * H + j;
        S xp[G], hp[G], a[G], aux = S(0), h_new, c_new = S(0);
        for (int g = 0; g < G; ++g) {
          xp[g] = gb[g * H + j];
          hp[g] = acc[g][u];
        }
        // h[bj] is the unit's own previous state (used by GRU/RNN, where P == H).
        Cell::forward(xp, hp, Project ? S(0) : h[bj], Cell::kHasCellState ? c[bj] : S(0), a, aux, h_new, c_new);
        for (int g = 0; g < G; ++g) gb[g * H + j] = a[g];
        if constexpr (Project) {
          m_t[bj] = h_new;
        } else {
          h_next[bj] = h_new;
          y_t[bj] = h_new;
        }
        if constexpr (Cell::kHasCellState) c_next[bj] = c_new;
        if constexpr (Cell::kHasAux)
          if (aux_t) aux_t[bj] = aux;
      }
    }
  }
}

// h_next[b] = W_hr m_t[b] for the active sequences (y_t likewise).
template <class S>
void project_step(const Sizes& n, index_t t, const S* hr_packed, const S* m_t, S* h_next, S* y_t) {
  constexpr int U = kUnits<S>;
  const index_t B = n.B, H = n.H, P = n.P;
  for (index_t blk = 0; blk < num_blocks<S>(P); ++blk) {
    const index_t p0 = blk * U, units = std::min<index_t>(U, P - p0);
    for (index_t b = 0; b < B; ++b) {
      if (!n.active(b, t)) continue;
      S acc[U];
      block_product<1>(hr_packed + blk * H * U, m_t + b * H, H, (const S*)nullptr, acc);
      for (index_t u = 0; u < units; ++u) h_next[b * P + p0 + u] = y_t[b * P + p0 + u] = acc[u];
    }
  }
}

template <class Cell, bool Project, class S>
void forward_impl(const ForwardParams<S>& p) {
  constexpr int G = Cell::G, U = kUnits<S>;
  constexpr bool lstm = Cell::kHasCellState;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = G * H, BH = B * H, BP = B * P;

  std::vector<S> r_packed(num_blocks<S>(H) * P * G * U), b_packed(num_blocks<S>(H) * G * U);
  pack_rows(p.w_hh, p.b_hh, G, H, P, r_packed.data(), b_packed.data());
  std::vector<S> hr_packed(Project ? num_blocks<S>(P) * H * U : 0);
  if constexpr (Project) pack_rows(p.w_hr, (const S*)nullptr, 1, P, H, hr_packed.data(), (S*)nullptr);
  std::vector<S> state(2 * BP + (lstm ? 2 * BH : 0) + (Project && !p.m ? BH : 0));
  S* h = state.data();
  S* h_next = h + BP;
  S* c = lstm ? h_next + BP : nullptr;
  S* c_next = lstm ? c + BH : nullptr;
  S* m_work = (Project && !p.m) ? state.data() + 2 * BP + 2 * BH : nullptr;  // m without a tape

  // Input projection for all steps: gates[t, b, :] = b_w + x[t, b, :] W^T.
  for (index_t row = 0; row < T * B; ++row) std::copy(p.b_ih, p.b_ih + GH, p.gates + row * GH);
  gemm<S>(T * B, GH, I, {p.x, I, 1}, {p.w_ih, 1, I}, p.gates, GH, /*accumulate=*/true);

  std::copy(p.h0, p.h0 + BP, h);
  if constexpr (lstm) std::copy(p.c0, p.c0 + BH, c);
  for (index_t s = 0; s < T; ++s) {
    const index_t t = n.time_of(s);
    if (p.h_prev) std::copy(h, h + BP, p.h_prev + t * BP);
    if (lstm && p.c_prev) std::copy(c, c + BH, p.c_prev + t * BH);
    S* m_t = Project ? (p.m ? p.m + t * BH : m_work) : nullptr;
    forward_step<Cell, Project>(n, t, r_packed.data(), b_packed.data(), h, c, p.gates + t * B * GH, h_next,
                                c_next, p.y + t * BP, p.aux ? p.aux + t * BH : nullptr, m_t);
    if constexpr (Project) project_step(n, t, hr_packed.data(), m_t, h_next, p.y + t * BP);
    std::swap(h, h_next);
    std::swap(c, c_next);
  }
  std::copy(h, h + BP, p.h_n);
  if constexpr (lstm) std::copy(c, c + BH, p.c_n);
}

// Buffers the backward walk carries from step to step, [B, H].
template <class S>
struct BackwardCarry {
  S* dh_direct;  // the part of d loss / d h_prev not flowing through R (padding: all of it)
  S* dc;         // LSTM: d loss / d c entering the step being differentiated
};

// Step t's pointwise derivative for unit j of sequence b, given dh = d loss / d (the cell's output)
// at step t, dy[t] included. Padding steps write zero gate gradients and pass dh through.
template <class Cell, class S>
inline void backward_unit(const BackwardParams<S>& p, index_t t, index_t b, index_t j, S dh, BackwardCarry<S> carry,
                          S* dgates_rec) {
  constexpr int G = Cell::G;
  const index_t B = p.n.B, H = p.n.H, GH = G * H;
  const index_t gate0 = (t * B + b) * GH + j, bj = b * H + j, tbj = (t * B + b) * H + j;
  if (!p.n.active(b, t)) {
    for (int g = 0; g < G; ++g) p.dgates[gate0 + g * H] = dgates_rec[gate0 + g * H] = S(0);
    carry.dh_direct[bj] = dh;
    return;
  }
  S a[G], dxp[G], dhp[G], dc = Cell::kHasCellState ? carry.dc[bj] : S(0);
  for (int g = 0; g < G; ++g) a[g] = p.gates[gate0 + g * H];
  // h_prev[tbj] indexes [T,B,P] as [T,B,H]: only GRU/RNN read it, and they have P == H.
  Cell::backward(a, Cell::kHasAux ? p.aux[tbj] : S(0), p.h_prev[tbj], Cell::kHasCellState ? p.c_prev[tbj] : S(0),
                 dh, dc, dxp, dhp, carry.dh_direct[bj]);
  for (int g = 0; g < G; ++g) {
    p.dgates[gate0 + g * H] = dxp[g];
    dgates_rec[gate0 + g * H] = dhp[g];
  }
  if constexpr (Cell::kHasCellState) carry.dc[bj] = dc;
}

// dy at (t, b, j) when step t of sequence b is real; padding's dy is never read.
template <class S>
inline S dy_at(const BackwardParams<S>& p, index_t t, index_t b, index_t j) {
  return p.n.active(b, t) ? p.dy[(t * p.n.B + b) * p.n.P + j] : S(0);
}

// The fused walk (P == H): transition s computes dh entering step s for a block of units and at
// once differentiates step s-1 for that block.
template <class Cell, class S>
void backward_walk(const BackwardParams<S>& p, const S* r_packed, BackwardCarry<S> carry, S* dgates_rec) {
  constexpr int G = Cell::G, U = kUnits<S>;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, GH = G * H;
  const index_t t_last = n.time_of(T - 1);
  for (index_t b = 0; b < B; ++b)
    for (index_t j = 0; j < H; ++j)
      backward_unit<Cell>(p, t_last, b, j, p.dh_n[b * H + j] + dy_at(p, t_last, b, j), carry, dgates_rec);
  for (index_t s = T - 1; s >= 0; --s) {
    const index_t t = n.time_of(s);
    for (index_t blk = 0; blk < num_blocks<S>(H); ++blk) {
      const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
      for (index_t b = 0; b < B; ++b) {
        S acc[U] = {};
        if (n.active(b, t)) block_product<1>(r_packed + blk * GH * U, dgates_rec + (t * B + b) * GH, GH, (const S*)nullptr, acc);
        for (index_t u = 0; u < units; ++u) {
          const index_t j = j0 + u;
          const S dh = acc[u] + carry.dh_direct[b * H + j];  // d loss / d h entering step t
          if (s > 0) {
            const index_t tp = n.time_of(s - 1);
            backward_unit<Cell>(p, tp, b, j, dh + dy_at(p, tp, b, j), carry, dgates_rec);
          } else {
            p.dh0[b * H + j] = dh;
          }
        }
      }
    }
  }
}

// The projected LSTM's walk: per step, (1) the total dh of h leaving the step [B, P], kept for
// dW_hr, (2) dm = dh W_hr per block of units, with the pointwise derivative, (3) dh entering the
// step = dgates R per block of the P outputs.
template <class S>
void backward_walk_projected(const BackwardParams<S>& p, const S* r_packed, const S* hr_packed, BackwardCarry<S> carry,
                             S* dh) {
  constexpr int U = kUnits<S>;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, P = n.P, GH = 4 * H;
  for (index_t s = T - 1; s >= 0; --s) {
    const index_t t = n.time_of(s);
    S* dh_total = p.dh_total + t * B * P;
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < P; ++j) dh_total[b * P + j] = n.active(b, t) ? dh[b * P + j] + p.dy[(t * B + b) * P + j] : S(0);
    for (index_t blk = 0; blk < num_blocks<S>(H); ++blk) {
      const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
      for (index_t b = 0; b < B; ++b) {
        S dm[U] = {};
        if (n.active(b, t)) block_product<1>(hr_packed + blk * P * U, dh_total + b * P, P, (const S*)nullptr, dm);
        for (index_t u = 0; u < units; ++u) backward_unit<LstmCell>(p, t, b, j0 + u, dm[u], carry, p.dgates);
      }
    }
    for (index_t blk = 0; blk < num_blocks<S>(P); ++blk) {
      const index_t j0 = blk * U, units = std::min<index_t>(U, P - j0);
      for (index_t b = 0; b < B; ++b) {
        if (!n.active(b, t)) continue;  // padding: dh passes through unchanged
        S acc[U];
        block_product<1>(r_packed + blk * GH * U, p.dgates + (t * B + b) * GH, GH, (const S*)nullptr, acc);
        for (index_t u = 0; u < units; ++u) dh[b * P + j0 + u] = acc[u];
      }
    }
  }
}

template <class Cell, bool Project, class S>
void backward_impl(const BackwardParams<S>& p) {
  constexpr int G = Cell::G, U = kUnits<S>;
  constexpr bool lstm = Cell::kHasCellState;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = G * H, BH = B * H, BP = B * P;
  S* dgates_rec = Cell::kSplitRecurrentGrad ? p.dgates_rec : p.dgates;

  std::vector<S> r_packed(num_blocks<S>(P) * GH * U);
  pack_columns(p.w_hh, GH, P, r_packed.data());
  std::vector<S> hr_packed(Project ? num_blocks<S>(H) * P * U : 0);
  if constexpr (Project) pack_columns(p.w_hr, P, H, hr_packed.data());
  std::vector<S> carry_buf(BH * (lstm ? 2 : 1) + (Project ? BP : 0));
  BackwardCarry<S> carry{carry_buf.data(), lstm ? carry_buf.data() + BH : nullptr};
  if constexpr (lstm) std::copy(p.dc_n, p.dc_n + BH, carry.dc);

  if constexpr (Project) {
    S* dh = carry_buf.data() + 2 * BH;  // [B, P]: d loss / d h leaving the step being differentiated
    std::copy(p.dh_n, p.dh_n + BP, dh);
    backward_walk_projected(p, r_packed.data(), hr_packed.data(), carry, dh);
    std::copy(dh, dh + BP, p.dh0);
  } else if (T > 0) {
    backward_walk<Cell>(p, r_packed.data(), carry, dgates_rec);
  } else {
    std::copy(p.dh_n, p.dh_n + BH, p.dh0);
  }
  if constexpr (lstm) std::copy(carry.dc, carry.dc + BH, p.dc0);

  // Whole-sequence products over the T*B rows of the gate gradients.
  const index_t rows = T * B;
  gemm<S>(rows, I, GH, {p.dgates, GH, 1}, {p.w_ih, I, 1}, p.dx, I, false);         // dx = dg W
  gemm<S>(GH, I, rows, {p.dgates, 1, GH}, {p.x, I, 1}, p.dw_ih, I, false);         // dW = dg^T x
  gemm<S>(GH, P, rows, {dgates_rec, 1, GH}, {p.h_prev, P, 1}, p.dw_hh, P, false);  // dR = dgr^T h
  if constexpr (Project) gemm<S>(P, H, rows, {p.dh_total, 1, P}, {p.m, H, 1}, p.dw_hr, H, false);  // dW_hr = dh^T m
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
    case CellKind::rnn_tanh: return forward_impl<RnnTanhCell, false>(p);
    case CellKind::rnn_relu: return forward_impl<RnnReluCell, false>(p);
    case CellKind::lstm: return p.w_hr ? forward_impl<LstmCell, true>(p) : forward_impl<LstmCell, false>(p);
    case CellKind::gru: return forward_impl<GruCell, false>(p);
  }
}

template <class S>
void backward(CellKind cell, const BackwardParams<S>& p) {
  switch (cell) {
    case CellKind::rnn_tanh: return backward_impl<RnnTanhCell, false>(p);
    case CellKind::rnn_relu: return backward_impl<RnnReluCell, false>(p);
    case CellKind::lstm: return p.w_hr ? backward_impl<LstmCell, true>(p) : backward_impl<LstmCell, false>(p);
    case CellKind::gru: return backward_impl<GruCell, false>(p);
  }
}

template void forward<float>(CellKind, const ForwardParams<float>&);
template void forward<double>(CellKind, const ForwardParams<double>&);
template void backward<float>(CellKind, const BackwardParams<float>&);
template void backward<double>(CellKind, const BackwardParams<double>&);

}  // namespace fusedrnn::cpu
