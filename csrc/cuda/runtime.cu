// The CUDA backend's host side: errors, devices, memory, and the dispatch from the type-erased
// entry points (api.h) to the per-cell, per-type kernels (kernels.cuh).
#include <mutex>
#include <vector>

#include "step_common.cuh"

namespace fusedrnn::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what) {
  cudaGetLastError();  // clear a non-sticky error so that later calls start clean
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) + ": " +
                           cudaGetErrorString(err));
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    case DType::float16:
    case DType::bfloat16: return 2;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}

int device_count() noexcept {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

int runtime_version() noexcept {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) cudaGetLastError(), v = 0;
  return v;
}

int driver_version() noexcept {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError(), v = 0;
  return v;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  FUSEDRNN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

std::pair<int, int> compute_capability(int device) {
  int major = 0, minor = 0;
  FUSEDRNN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  FUSEDRNN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return {major, minor};
}

DeviceLimits device_limits() {
  static std::mutex mutex;
  static std::vector<std::pair<bool, DeviceLimits>> cache;
  int device = 0;
  FUSEDRNN_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<std::size_t>(device) >= cache.size()) cache.resize(device + 1);
  if (!cache[device].first) {
    DeviceLimits d;
    FUSEDRNN_CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, device));
    FUSEDRNN_CUDA_CHECK(cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    FUSEDRNN_CUDA_CHECK(cudaDeviceGetAttribute(&d.cooperative, cudaDevAttrCooperativeLaunch, device));
    cache[device] = {true, d};
  }
  return cache[device].second;
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------
int current_device() {
  int device = 0;
  FUSEDRNN_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void set_device(int device) { FUSEDRNN_CUDA_CHECK(cudaSetDevice(device)); }

Allocation device_alloc(std::size_t bytes, std::uintptr_t stream) {
  Allocation a;
  if (bytes == 0) return a;
  // Stream-ordered where the device has memory pools (no device-wide synchronisation on free).
  int device = 0, pools = 0;
  FUSEDRNN_CUDA_CHECK(cudaGetDevice(&device));
  FUSEDRNN_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
  if (pools) {
    FUSEDRNN_CUDA_CHECK(cudaMallocAsync(&a.ptr, bytes, to_stream(stream)));
    a.stream_ordered = true;
  } else {
    FUSEDRNN_CUDA_CHECK(cudaMalloc(&a.ptr, bytes));
  }
  return a;
}

void device_free(const Allocation& a, std::uintptr_t stream) noexcept {
  if (a.ptr == nullptr) return;
  const cudaError_t err = a.stream_ordered ? cudaFreeAsync(a.ptr, to_stream(stream)) : cudaFree(a.ptr);
  if (err != cudaSuccess) cudaGetLastError();  // nothing sensible to do in a destructor
}

void memcpy_htod(void* dst, const void* src, std::size_t bytes, std::uintptr_t stream) {
  if (bytes == 0) return;
  FUSEDRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, to_stream(stream)));
  // A pageable source may be reused once cudaMemcpyAsync returns; a pinned one only after the
  // copy: wait, since the caller's array may be freed as soon as we return.
  FUSEDRNN_CUDA_CHECK(cudaStreamSynchronize(to_stream(stream)));
}

void memcpy_dtoh(void* dst, const void* src, std::size_t bytes, std::uintptr_t stream) {
  if (bytes == 0) return;
  FUSEDRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, to_stream(stream)));
  FUSEDRNN_CUDA_CHECK(cudaStreamSynchronize(to_stream(stream)));
}

void memcpy_dtod(void* dst, const void* src, std::size_t bytes, std::uintptr_t stream) {
  if (bytes == 0) return;
  FUSEDRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, to_stream(stream)));
}

void memset_async(void* dst, int value, std::size_t bytes, std::uintptr_t stream) {
  if (bytes == 0) return;
  FUSEDRNN_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, to_stream(stream)));
}

void stream_synchronize(std::uintptr_t stream) { FUSEDRNN_CUDA_CHECK(cudaStreamSynchronize(to_stream(stream))); }

void stream_wait(std::uintptr_t consumer, std::uintptr_t producer) {
  if (consumer == producer) return;
  cudaEvent_t event = nullptr;
  FUSEDRNN_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  cudaError_t err = cudaEventRecord(event, to_stream(producer));
  if (err == cudaSuccess) err = cudaStreamWaitEvent(to_stream(consumer), event, 0);
  cudaEventDestroy(event);  // released once the recorded work completes
  check(err, "stream_wait");
}

int pointer_device(const void* ptr) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) ? attr.device : -1;
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------
namespace {

template <class S, class V>
const S* typed(const V* p) {
  return static_cast<const S*>(p);
}
template <class S, class V>
S* typed(V* p) {
  return static_cast<S*>(p);
}

template <class S>
ForwardParams<S> retype(const ForwardParams<void>& v) {
  ForwardParams<S> p;
  p.n = v.n;
  p.x = typed<S>(v.x), p.h0 = typed<S>(v.h0), p.c0 = typed<S>(v.c0);
  p.w_ih = typed<S>(v.w_ih), p.w_hh = typed<S>(v.w_hh), p.b_ih = typed<S>(v.b_ih), p.b_hh = typed<S>(v.b_hh);
  p.w_hr = typed<S>(v.w_hr);
  p.y = typed<S>(v.y), p.h_n = typed<S>(v.h_n), p.c_n = typed<S>(v.c_n), p.gates = typed<S>(v.gates);
  p.h_prev = typed<S>(v.h_prev), p.c_prev = typed<S>(v.c_prev), p.aux = typed<S>(v.aux), p.m = typed<S>(v.m);
  return p;
}

template <class S>
BackwardParams<S> retype(const BackwardParams<void>& v) {
  BackwardParams<S> p;
  p.n = v.n;
  p.x = typed<S>(v.x), p.w_ih = typed<S>(v.w_ih), p.w_hh = typed<S>(v.w_hh), p.w_hr = typed<S>(v.w_hr);
  p.gates = typed<S>(v.gates), p.h_prev = typed<S>(v.h_prev), p.c_prev = typed<S>(v.c_prev);
  p.aux = typed<S>(v.aux), p.m = typed<S>(v.m);
  p.dy = typed<S>(v.dy), p.dh_n = typed<S>(v.dh_n), p.dc_n = typed<S>(v.dc_n);
  p.dx = typed<S>(v.dx), p.dh0 = typed<S>(v.dh0), p.dc0 = typed<S>(v.dc0);
  p.dw_ih = typed<S>(v.dw_ih), p.dw_hh = typed<S>(v.dw_hh), p.dw_hr = typed<S>(v.dw_hr);
  p.db_ih = typed<S>(v.db_ih), p.db_hh = typed<S>(v.db_hh);
  p.dgates = typed<S>(v.dgates), p.dgates_rec = typed<S>(v.dgates_rec), p.dh_total = typed<S>(v.dh_total);
  return p;
}

// f.template operator()<CellKind, S>() for the run-time cell and dtype.
template <class F>
decltype(auto) with_types(CellKind cell, DType dtype, F&& f) {
  auto by_cell = [&](auto tag) -> decltype(auto) {
    using S = typename decltype(tag)::type;
    switch (cell) {
      case CellKind::rnn_tanh: return f.template operator()<CellKind::rnn_tanh, S>();
      case CellKind::rnn_relu: return f.template operator()<CellKind::rnn_relu, S>();
      case CellKind::lstm: return f.template operator()<CellKind::lstm, S>();
      case CellKind::gru: return f.template operator()<CellKind::gru, S>();
    }
    throw std::invalid_argument("unknown cell kind " + std::to_string(static_cast<int>(cell)));
  };
  struct F32 { using type = float; };
  struct F64 { using type = double; };
  struct F16 { using type = __half; };
  struct BF16 { using type = __nv_bfloat16; };
  switch (dtype) {
    case DType::float32: return by_cell(F32{});
    case DType::float64: return by_cell(F64{});
    case DType::float16: return by_cell(F16{});
    case DType::bfloat16: return by_cell(BF16{});
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}

struct ForwardCall {
  const ForwardParams<void>& p;
  cudaStream_t stream;
  Path path;
  template <CellKind K, class S>
  void operator()() const {
    forward_cell<K, S>(retype<S>(p), stream, path);
  }
};

struct BackwardCall {
  const BackwardParams<void>& p;
  cudaStream_t stream;
  Path path;
  template <CellKind K, class S>
  void operator()() const {
    backward_cell<K, S>(retype<S>(p), stream, path);
  }
};

struct ReasonCall {
  const Sizes& n;
  bool backward;
  template <CellKind K, class S>
  std::string operator()() const {
    return backward ? persistent_backward_reason<K, S>(n) : persistent_forward_reason<K, S>(n);
  }
};

}  // namespace

void forward(CellKind cell, DType dtype, const ForwardParams<void>& p, std::uintptr_t stream, Path path) {
  with_types(cell, dtype, ForwardCall{p, to_stream(stream), path});
}

void backward(CellKind cell, DType dtype, const BackwardParams<void>& p, std::uintptr_t stream, Path path) {
  with_types(cell, dtype, BackwardCall{p, to_stream(stream), path});
}

std::string persistent_forward_unsupported(CellKind cell, DType dtype, const Sizes& n) {
  return with_types(cell, dtype, ReasonCall{n, false});
}

std::string persistent_backward_unsupported(CellKind cell, DType dtype, const Sizes& n) {
  return with_types(cell, dtype, ReasonCall{n, true});
}

void zero_padding(DType dtype, void* x, index_t T, index_t B, index_t I, const std::int64_t* lengths,
                  std::uintptr_t stream) {
  switch (dtype) {
    case DType::float32: return zero_padding_typed(static_cast<float*>(x), T, B, I, lengths, to_stream(stream));
    case DType::float64: return zero_padding_typed(static_cast<double*>(x), T, B, I, lengths, to_stream(stream));
    case DType::float16: return zero_padding_typed(static_cast<__half*>(x), T, B, I, lengths, to_stream(stream));
    case DType::bfloat16:
      return zero_padding_typed(static_cast<__nv_bfloat16*>(x), T, B, I, lengths, to_stream(stream));
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}

}  // namespace fusedrnn::cuda
