// The CPU GEMM every whole-sequence product goes through (input projection, dX, dW, dR).
// Operands are described by element strides, so transposes are just swapped strides.
#pragma once

#include "fusedrnn/conventions.h"

namespace fusedrnn::cpu {

// A(i, k) = data[i * row_stride + k * col_stride]
template <class S>
struct MatrixView {
  const S* data;
  index_t row_stride;
  index_t col_stride;
  S operator()(index_t i, index_t k) const { return data[i * row_stride + k * col_stride]; }
};

// C[M, N] (row-major, leading dimension ldc)  =  (accumulate ? C : 0)  +  A[M, K] * B[K, N].
// Never reads C when accumulate is false (C may hold NaN). Deterministic: the sum over k runs in
// the same order whatever the sizes. Allocates its packing buffers (outside any time loop).
template <class S>
void gemm(index_t M, index_t N, index_t K, MatrixView<S> A, MatrixView<S> B, S* C, index_t ldc,
          bool accumulate);

}  // namespace fusedrnn::cpu
