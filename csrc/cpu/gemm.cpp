// A packed, cache-blocked GEMM in plain C++ that the compiler vectorizes. The blocking follows
// the usual three loops around a register-tiled micro-kernel: B is packed into KC x NC panels
// (NR columns each), A into MC x KC panels (MR rows each); the micro-kernel keeps an MR x NR
// tile of C in registers for a whole KC slice. Edges are zero-padded in the packed panels and
// masked at the store. A SIMD micro-kernel per ISA drops in here later.
#include "gemm.h"

#include <algorithm>
#include <vector>

namespace fusedrnn::cpu {
namespace {

template <class S>
struct Tile {
  static constexpr int MR = 4;
  static constexpr int NR = 32 / sizeof(S);  // float 8, double 4: an MR x NR tile fills 8 SSE registers
  static constexpr index_t KC = 256;
  static constexpr index_t MC = 64;
  static constexpr index_t NC = 2048;
};

// dst[p][k][r] = src(i0 + p*R + r, k0 + k), zero past `rows`.
template <class S, int R>
void pack_rows(MatrixView<S> src, index_t i0, index_t rows, index_t k0, index_t depth, S* dst) {
  for (index_t p = 0; p < rows; p += R) {
    const index_t valid = std::min<index_t>(R, rows - p);
    for (index_t k = 0; k < depth; ++k) {
      S* out = dst + (p * depth) + k * R;
      for (index_t r = 0; r < valid; ++r) out[r] = src(i0 + p + r, k0 + k);
      for (index_t r = valid; r < R; ++r) out[r] = S(0);
    }
  }
}

template <class S>
void micro_kernel(index_t depth, const S* a, const S* b, S* c, index_t ldc, index_t rows, index_t cols,
                  bool overwrite) {
  constexpr int MR = Tile<S>::MR, NR = Tile<S>::NR;
  S acc[MR][NR] = {};
  for (index_t k = 0; k < depth; ++k) {
    const S* ak = a + k * MR;
    const S* bk = b + k * NR;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += ak[i] * bk[j];
  }
  for (index_t i = 0; i < rows; ++i) {
    S* ci = c + i * ldc;
    if (overwrite)
      for (index_t j = 0; j < cols; ++j) ci[j] = acc[i][j];
    else
      for (index_t j = 0; j < cols; ++j) ci[j] += acc[i][j];
  }
}

}  // namespace

template <class S>
void gemm(index_t M, index_t N, index_t K, MatrixView<S> A, MatrixView<S> B, S* C, index_t ldc,
          bool accumulate) {
  using TL = Tile<S>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (index_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, S(0));
    return;
  }
  // B(k, j) seen as rows j of a [N, K] matrix, so one packing routine serves both operands.
  const MatrixView<S> Bt{B.data, B.col_stride, B.row_stride};
  const index_t nc_max = std::min(N, TL::NC), kc_max = std::min(K, TL::KC), mc_max = std::min(M, TL::MC);
  std::vector<S> b_packed(((nc_max + TL::NR - 1) / TL::NR) * TL::NR * kc_max);
  std::vector<S> a_packed(((mc_max + TL::MR - 1) / TL::MR) * TL::MR * kc_max);

  for (index_t jc = 0; jc < N; jc += TL::NC) {
    const index_t nc = std::min(TL::NC, N - jc);
    for (index_t pc = 0; pc < K; pc += TL::KC) {
      const index_t kc = std::min(TL::KC, K - pc);
      const bool overwrite = (pc == 0) && !accumulate;
      pack_rows<S, TL::NR>(Bt, jc, nc, pc, kc, b_packed.data());
      for (index_t ic = 0; ic < M; ic += TL::MC) {
        const index_t mc = std::min(TL::MC, M - ic);
        pack_rows<S, TL::MR>(A, ic, mc, pc, kc, a_packed.data());
        for (index_t jr = 0; jr < nc; jr += TL::NR) {
          for (index_t ir = 0; ir < mc; ir += TL::MR) {
            micro_kernel<S>(kc, a_packed.data() + ir * kc, b_packed.data() + jr * kc,
                            C + (ic + ir) * ldc + jc + jr, ldc, std::min<index_t>(TL::MR, mc - ir),
                            std::min<index_t>(TL::NR, nc - jr), overwrite);
          }
        }
      }
    }
  }
}

template void gemm<float>(index_t, index_t, index_t, MatrixView<float>, MatrixView<float>, float*, index_t,
                          bool);
template void gemm<double>(index_t, index_t, index_t, MatrixView<double>, MatrixView<double>, double*, index_t,
                           bool);

}  // namespace fusedrnn::cpu
