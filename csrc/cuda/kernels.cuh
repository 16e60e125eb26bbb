// What the CUDA translation units export to one another. Each cell's forward and backward live in
// their own file (forward_<cell>.cu, backward_<cell>.cu) so that they compile in parallel; each
// file explicitly instantiates its templates for the four storage types.
#pragma once

#include "common.cuh"

namespace fusedrnn::cuda {

// A strided matrix view: element (i, k) = data[i * rs + k * cs].
template <class S>
struct View {
  const S* data;
  index_t rs, cs;
};

// C[M, N] (row stride ldc) = (bias ? bias[n] : 0) + sum_k A(m, k) B(k, n), accumulated in acc_t<S>
// over k in order: each element is computed by one thread, so results are deterministic. M, N or K
// may be 0 (K = 0 writes the bias or zeros). C has the storage type S, or (Out = acc_t<S>) the
// accumulation type: the forward's input projection of a half type stays in float32 until the
// cell's nonlinearity has used it. gemm.cu.
template <class S, class Out = S>
void gemm(index_t M, index_t N, index_t K, View<S> A, View<S> B, Out* C, index_t ldc, const S* bias,
          cudaStream_t stream);

// out[c] = sum over rows r in order of M[r * cols + c] (rows may be 0: zeros). gemm.cu.
template <class S>
void column_sums(const S* M, index_t rows, index_t cols, S* out, cudaStream_t stream);

// x[t, b, :] = 0 where t >= lengths[b]. gemm.cu.
template <class S>
void zero_padding_typed(S* x, index_t T, index_t B, index_t I, const std::int64_t* lengths, cudaStream_t stream);

// Per cell (K), per storage type (S): the forward and the backward of one layer and direction,
// queued on `stream`; and, for the dispatcher, why the persistent kernel cannot run a problem
// ("" when it can).
template <CellKind K, class S>
void forward_cell(const ForwardParams<S>& p, cudaStream_t stream, Path path);
template <CellKind K, class S>
void backward_cell(const BackwardParams<S>& p, cudaStream_t stream, Path path);
template <CellKind K, class S>
std::string persistent_forward_reason(const Sizes& n);
template <CellKind K, class S>
std::string persistent_backward_reason(const Sizes& n);

// Each is defined (explicitly specialised) in forward_<cell>.cu / backward_<cell>.cu.
#define FUSEDRNN_DECLARE_CELL(KIND, S)                                                          \
  template <>                                                                                   \
  void forward_cell<KIND, S>(const ForwardParams<S>&, cudaStream_t, Path);                      \
  template <>                                                                                   \
  void backward_cell<KIND, S>(const BackwardParams<S>&, cudaStream_t, Path);                    \
  template <>                                                                                   \
  std::string persistent_forward_reason<KIND, S>(const Sizes&);                                 \
  template <>                                                                                   \
  std::string persistent_backward_reason<KIND, S>(const Sizes&);
#define FUSEDRNN_DECLARE_CELL_TYPES(KIND)        \
  FUSEDRNN_DECLARE_CELL(KIND, float)             \
  FUSEDRNN_DECLARE_CELL(KIND, double)            \
  FUSEDRNN_DECLARE_CELL(KIND, __half)            \
  FUSEDRNN_DECLARE_CELL(KIND, __nv_bfloat16)
FUSEDRNN_DECLARE_CELL_TYPES(CellKind::rnn_tanh)
FUSEDRNN_DECLARE_CELL_TYPES(CellKind::rnn_relu)
FUSEDRNN_DECLARE_CELL_TYPES(CellKind::lstm)
FUSEDRNN_DECLARE_CELL_TYPES(CellKind::gru)
#undef FUSEDRNN_DECLARE_CELL_TYPES
#undef FUSEDRNN_DECLARE_CELL

// The automatic choice: the persistent kernel for batches up to this size when it fits.
constexpr index_t kPersistentMaxBatchAuto = 32;

}  // namespace fusedrnn::cuda
