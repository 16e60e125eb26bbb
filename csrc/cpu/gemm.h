// The operand description shared by the CPU GEMMs (one per ISA, in kernels_impl.h).
#pragma once

#include "fusedrnn/conventions.h"

namespace fusedrnn::cpu {

// A(i, k) = data[i * row_stride + k * col_stride]: transposes are swapped strides.
template <class S>
struct MatrixView {
  const S* data;
  index_t row_stride;
  index_t col_stride;
  S operator()(index_t i, index_t k) const { return data[i * row_stride + k * col_stride]; }
};

}  // namespace fusedrnn::cpu
