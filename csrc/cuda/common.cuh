// Shared by every CUDA translation unit: error checks, element types, the Sizes helpers usable on
// the device, workspaces, and the cell types by CellKind.
#pragma once

// cells.h lands in its own inline namespace here, so that no host copy of an inline function
// compiled by nvcc can stand in for the CPU build's (they live in different modules anyway).
#define FUSEDRNN_ISA_NAMESPACE cuda_device

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "api.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/params.h"

namespace fusedrnn::cuda {

// ---------------------------------------------------------------------------------------------
// Errors: every CUDA call and every launch is checked; a failure becomes std::runtime_error
// ("CUDA error in <what>: <name>: <description>"), which pybind11 raises as RuntimeError.
// ---------------------------------------------------------------------------------------------
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what);

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda_error(err, what);
}

// After a <<<...>>> launch: a bad configuration is reported by cudaGetLastError at once; faults
// inside the kernel surface at the next synchronising call.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

#define FUSEDRNN_CUDA_CHECK(expr) ::fusedrnn::cuda::check((expr), #expr)

inline cudaStream_t to_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// ---------------------------------------------------------------------------------------------
// Element types. S is the storage type of every array of a call; products accumulate, and the
// recurrent state is carried, in acc_t<S> (float, or double for double).
// ---------------------------------------------------------------------------------------------
template <class S>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <class S>
using acc_t = typename AccOf<S>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class S>
__device__ __forceinline__ S from_acc(acc_t<S> v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Loads and stores that bypass L1 (which is not coherent between blocks): for data written by
// other blocks of the same persistent kernel between two grid barriers.
__device__ __forceinline__ float load_cg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ double load_cg(const double* p) { return __ldcg(p); }
__device__ __forceinline__ __half load_cg(const __half* p) {
  return __ushort_as_half(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ __nv_bfloat16 load_cg(const __nv_bfloat16* p) {
  return __ushort_as_bfloat16(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ void store_cg(float* p, float v) { __stcg(p, v); }
__device__ __forceinline__ void store_cg(double* p, double v) { __stcg(p, v); }
__device__ __forceinline__ void store_cg(__half* p, __half v) {
  __stcg(reinterpret_cast<unsigned short*>(p), __half_as_ushort(v));
}
__device__ __forceinline__ void store_cg(__nv_bfloat16* p, __nv_bfloat16 v) {
  __stcg(reinterpret_cast<unsigned short*>(p), __bfloat16_as_ushort(v));
}

// ---------------------------------------------------------------------------------------------
// Sizes on the device (Sizes' own members are host functions; these are the same rules).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ index_t time_of(const Sizes& n, index_t s) { return n.reverse ? n.T - 1 - s : s; }
__device__ __forceinline__ bool active(const Sizes& n, index_t b, index_t t) {
  return n.lengths == nullptr || t < n.lengths[b];
}

// ---------------------------------------------------------------------------------------------
// Launch helpers. 1-D element-wise kernels use grid-stride loops over a capped grid.
// ---------------------------------------------------------------------------------------------
constexpr int kElementwiseThreads = 256;
inline unsigned elementwise_blocks(index_t n) {
  const index_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  return static_cast<unsigned>(blocks < 65535 ? (blocks < 1 ? 1 : blocks) : 65535);
}
inline unsigned capped_grid(index_t n, index_t cap) {
  return static_cast<unsigned>(n < 1 ? 1 : (n < cap ? n : cap));
}

// A stream-ordered scratch buffer, freed on the same stream when it goes out of scope.
class Workspace {
 public:
  Workspace(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) a_ = device_alloc(bytes, reinterpret_cast<std::uintptr_t>(stream));
  }
  ~Workspace() { device_free(a_, reinterpret_cast<std::uintptr_t>(stream_)); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <class T>
  T* as(std::size_t offset_elements = 0) const {
    return a_.ptr ? static_cast<T*>(a_.ptr) + offset_elements : nullptr;
  }

 private:
  cudaStream_t stream_;
  Allocation a_;
};

// ---------------------------------------------------------------------------------------------
// Cells by kind.
// ---------------------------------------------------------------------------------------------
template <CellKind K>
struct CellOf;
template <>
struct CellOf<CellKind::rnn_tanh> {
  using type = RnnTanhCell;
};
template <>
struct CellOf<CellKind::rnn_relu> {
  using type = RnnReluCell;
};
template <>
struct CellOf<CellKind::lstm> {
  using type = LstmCell;
};
template <>
struct CellOf<CellKind::gru> {
  using type = GruCell;
};

// Element-wise conversions between the storage and the accumulation type.
template <class S>
void to_acc_async(const S* src, acc_t<S>* dst, index_t n, cudaStream_t stream);
template <class S>
void from_acc_async(const acc_t<S>* src, S* dst, index_t n, cudaStream_t stream);

}  // namespace fusedrnn::cuda
