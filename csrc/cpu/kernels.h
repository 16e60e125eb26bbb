// The CPU kernels' entry points and the run-time choice of instruction set.
//
// kernels_impl.h is compiled once per ISA (isa_generic.cpp, isa_avx2.cpp, isa_avx512.cpp, each
// with its own flags and namespace); each exports a KernelTable. dispatch.cpp picks one table at
// first use from CPUID, or from FUSEDRNN_ISA=generic|avx2|avx512.
#pragma once

#include <string>
#include <vector>

#include "fusedrnn/params.h"

namespace fusedrnn::cpu {

struct KernelTable {
  const char* isa;
  void (*forward_f32)(CellKind, const ForwardParams<float>&);
  void (*forward_f64)(CellKind, const ForwardParams<double>&);
  void (*backward_f32)(CellKind, const BackwardParams<float>&);
  void (*backward_f64)(CellKind, const BackwardParams<double>&);
  // Elements of PackedWeights' buffers (w_ih, w_hh, b_hh, w_hr) for this ISA and element size.
  void (*packed_sizes)(CellKind, index_t I, index_t H, index_t P, bool f64, index_t sizes[4]);
  // Fills `out` (of packed_sizes) from p.n and p.w_ih, p.w_hh, p.b_hh, p.w_hr; all threads.
  void (*pack_f32)(CellKind, const ForwardParams<float>& p, const PackedWeights<float>& out);
  void (*pack_f64)(CellKind, const ForwardParams<double>& p, const PackedWeights<double>& out);
  double (*fma_peak_gflops)(long iterations);  // float32, all threads: the benchmarks' yardstick
  // C [M, N] = op(A) op(B), row-major float32, all threads: the kernels' GEMM on its own, for the
  // benchmark against NumPy's sgemm (`bench --gemm`) and its test. A is stored [M, K], or [K, M]
  // when trans_a (op(A) = A^T, as dgates^T in dW); B [K, N], or [N, K] when trans_b (W^T).
  void (*gemm_f32)(index_t M, index_t N, index_t K, const float* A, bool trans_a, const float* B, bool trans_b,
                   float* C);
};

const KernelTable& kernels();               // the chosen table (decided once)
std::vector<std::string> compiled_isas();   // what this build carries
std::vector<std::string> supported_isas();  // what this CPU can run, of those

// Run the chosen ISA's kernels (defined in dispatch.cpp for float and double).
template <class S>
void forward(CellKind cell, const ForwardParams<S>& p);
template <class S>
void backward(CellKind cell, const BackwardParams<S>& p);
template <>
void forward<float>(CellKind, const ForwardParams<float>&);
template <>
void forward<double>(CellKind, const ForwardParams<double>&);
template <>
void backward<float>(CellKind, const BackwardParams<float>&);
template <>
void backward<double>(CellKind, const BackwardParams<double>&);

}  // namespace fusedrnn::cpu
