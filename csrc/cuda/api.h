// The CUDA backend's entry points, as plain C++ (no CUDA headers): what csrc/bindings/cuda_module.cpp
// calls. Pointers are device pointers; Sizes::lengths is a device pointer too (int64 [B], or
// nullptr). Shapes, tape and gradient contracts are those of conventions.h and params.h, exactly
// as on the CPU. Every function reports a CUDA failure as std::runtime_error carrying the CUDA
// error string (pybind11 turns it into RuntimeError).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fusedrnn/params.h"

namespace fusedrnn::cuda {

// The element type of every array of one call (weights, inputs, outputs, tape, workspaces).
// float16 and bfloat16 are storage types only: products accumulate in float32 and the recurrent
// state (h, c) is carried in float32 between steps. float64 computes in float64.
enum class DType : int { float32 = 0, float64 = 1, float16 = 2, bfloat16 = 3 };

// Which recurrent kernel runs: automatic (the dispatcher decides), persistent (one cooperative
// kernel for the whole sequence, slices of R kept in shared memory; an error when it cannot run
// this problem), stepwise (one or two kernels per step, works for any size).
enum class Path : int { automatic = 0, persistent = 1, stepwise = 2 };

std::size_t dtype_size(DType dtype);

// Number of usable CUDA devices; 0 without a driver or GPU. Never throws.
int device_count() noexcept;
// The CUDA runtime version this module was built with (e.g. 13000) and the driver's (0: none).
int runtime_version() noexcept;
int driver_version() noexcept;
// Name and compute capability of a device.
std::string device_name(int device);
std::pair<int, int> compute_capability(int device);

// Whether the persistent forward / backward can run this problem on the current device, and if
// not, why (empty string: it can).
std::string persistent_forward_unsupported(CellKind cell, DType dtype, const Sizes& n);
std::string persistent_backward_unsupported(CellKind cell, DType dtype, const Sizes& n);

// One layer, one direction; the arrays of ForwardParams<void> / BackwardParams<void> all have
// element type `dtype`. Work is queued on `stream` (0: the legacy default stream); the call
// returns without waiting for it.
void forward(CellKind cell, DType dtype, const ForwardParams<void>& p, std::uintptr_t stream, Path path);
void backward(CellKind cell, DType dtype, const BackwardParams<void>& p, std::uintptr_t stream, Path path);

// Sets x[t, b, :] = 0 for the padding steps t >= lengths[b] (x [T, B, I], lengths device int64 [B]).
void zero_padding(DType dtype, void* x, index_t T, index_t B, index_t I, const std::int64_t* lengths,
                  std::uintptr_t stream);

// Memory. `device` is the current device for allocations (cudaSetDevice before allocating).
struct Allocation {
  void* ptr = nullptr;
  bool stream_ordered = false;  // cudaMallocAsync (freed with cudaFreeAsync) or cudaMalloc
};
int current_device();
void set_device(int device);
Allocation device_alloc(std::size_t bytes, std::uintptr_t stream);
void device_free(const Allocation& a, std::uintptr_t stream) noexcept;
void memcpy_htod(void* dst, const void* src, std::size_t bytes, std::uintptr_t stream);
void memcpy_dtoh(void* dst, const void* src, std::size_t bytes, std::uintptr_t stream);  // waits
void memcpy_dtod(void* dst, const void* src, std::size_t bytes, std::uintptr_t stream);
void memset_async(void* dst, int value, std::size_t bytes, std::uintptr_t stream);
void stream_synchronize(std::uintptr_t stream);
// Makes `consumer` wait for the work queued so far on `producer` (an event, no host wait).
void stream_wait(std::uintptr_t consumer, std::uintptr_t producer);
// The device that owns a pointer (-1 for host or unknown memory).
int pointer_device(const void* ptr);

}  // namespace fusedrnn::cuda
