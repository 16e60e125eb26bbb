// The private extension module fusedrnn._cuda: device pointers (Python ints) -> params structs, GIL
// released around every call that may wait or launch. fusedrnn/cuda.py has checked every shape
// and dtype and allocated every output; the checks here only guard against a caller that bypasses
// it (a missing required pointer, an unknown dtype or path). Nothing here includes CUDA headers:
// everything CUDA is behind csrc/cuda/api.h. DLPack capsules are made and read here (the structs
// below follow the DLPack C ABI, version 0.x "dltensor" capsules).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../cuda/api.h"

namespace py = pybind11;
using namespace fusedrnn;
using fusedrnn::cuda::DType;
using fusedrnn::cuda::Path;
using ptr_t = std::uintptr_t;

namespace {

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------
CellKind cell_of(int code) {
  if (code < 0 || code > 3) throw py::value_error("cell must be 0 (rnn_tanh), 1 (rnn_relu), 2 (lstm) or 3 (gru), got " +
                                                  std::to_string(code));
  return static_cast<CellKind>(code);
}

DType dtype_of(int code) {
  if (code < 0 || code > 3)
    throw py::value_error("dtype must be 0 (float32), 1 (float64), 2 (float16) or 3 (bfloat16), got " +
                          std::to_string(code));
  return static_cast<DType>(code);
}

Path path_of(const std::string& path) {
  if (path == "auto") return Path::automatic;
  if (path == "persistent") return Path::persistent;
  if (path == "stepwise") return Path::stepwise;
  throw py::value_error("path must be 'auto', 'persistent' or 'stepwise', got '" + path + "'");
}

Sizes sizes(index_t T, index_t B, index_t I, index_t H, index_t P, bool reverse, ptr_t lengths) {
  if (T < 0 || B < 0 || I < 1 || H < 1 || P < 1 || P > H)
    throw py::value_error("sizes must satisfy T, B >= 0, I, H >= 1, 1 <= P <= H; got T=" + std::to_string(T) +
                          " B=" + std::to_string(B) + " I=" + std::to_string(I) + " H=" + std::to_string(H) +
                          " P=" + std::to_string(P));
  Sizes n;
  n.T = T, n.B = B, n.I = I, n.H = H, n.P = P;
  n.reverse = reverse;
  n.lengths = reinterpret_cast<const std::int64_t*>(lengths);
  return n;
}

template <class T>
T* ptr(ptr_t v) {
  return reinterpret_cast<T*>(v);
}

// Makes `device` current for the scope, restoring the caller's device after (torch and CuPy keep
// their own notion of the current device in the same runtime state).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(cuda::current_device()) {
    if (device >= 0 && device != previous_) cuda::set_device(device);
  }
  ~DeviceGuard() {
    try {
      cuda::set_device(previous_);
    } catch (...) {
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// ---------------------------------------------------------------------------------------------
// Owned device memory
// ---------------------------------------------------------------------------------------------
class DeviceBuffer {
 public:
  DeviceBuffer(std::size_t nbytes, int device, ptr_t stream) : nbytes_(nbytes), device_(device), stream_(stream) {
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    alloc_ = cuda::device_alloc(nbytes, stream);
  }
  ~DeviceBuffer() {
    if (alloc_.ptr == nullptr) return;
    try {
      DeviceGuard guard(device_);
      cuda::device_free(alloc_, stream_);
    } catch (...) {
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ptr_t ptr() const { return reinterpret_cast<ptr_t>(alloc_.ptr); }
  std::size_t nbytes() const { return nbytes_; }
  int device() const { return device_; }
  ptr_t stream() const { return stream_; }

 private:
  std::size_t nbytes_;
  int device_;
  ptr_t stream_;
  cuda::Allocation alloc_;
};

py::buffer_info host_buffer(const py::buffer& b, bool writable) {
  py::buffer_info info = b.request(writable);
  // Only C-contiguous buffers: the copy is a flat run of bytes.
  py::ssize_t expected = info.itemsize;
  for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] > 1 && info.strides[d] != expected) throw py::value_error("host array must be C-contiguous");
    expected *= info.shape[d];
  }
  return info;
}

// ---------------------------------------------------------------------------------------------
// DLPack (C ABI of the "dltensor" capsule)
// ---------------------------------------------------------------------------------------------
struct DLDevice {
  std::int32_t device_type;  // kDLCPU = 1, kDLCUDA = 2, ...
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, ...
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; nullptr: C-contiguous
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

struct DLPackContext {
  PyObject* owner;  // keeps the producing array (and its device buffer) alive
  std::vector<std::int64_t> shape, strides;
};

void dlpack_deleter(DLManagedTensor* self) {
  if (self == nullptr) return;
  auto* ctx = static_cast<DLPackContext*>(self->manager_ctx);
  PyGILState_STATE state = PyGILState_Ensure();
  Py_XDECREF(ctx->owner);
  PyGILState_Release(state);
  delete ctx;
  delete self;
}

void dlpack_capsule_destructor(PyObject* capsule) {
  // A consumer renames the capsule "used_dltensor" and owns the tensor; otherwise we delete it.
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed && managed->deleter) managed->deleter(managed);
  } else {
    PyErr_Clear();
  }
}

py::object to_dlpack(const py::object& owner, ptr_t data, const std::vector<std::int64_t>& shape,
                     const std::vector<std::int64_t>& strides, int code, int bits, int device_id) {
  if (!strides.empty() && strides.size() != shape.size())
    throw py::value_error("strides must be empty or have one entry per dimension");
  auto* ctx = new DLPackContext{owner.ptr(), shape, strides};
  auto* managed = new DLManagedTensor{};
  managed->dl_tensor.data = reinterpret_cast<void*>(data);
  managed->dl_tensor.device = DLDevice{2, device_id};
  managed->dl_tensor.ndim = static_cast<std::int32_t>(shape.size());
  managed->dl_tensor.dtype = DLDataType{static_cast<std::uint8_t>(code), static_cast<std::uint8_t>(bits), 1};
  managed->dl_tensor.shape = ctx->shape.data();
  managed->dl_tensor.strides = ctx->strides.empty() ? nullptr : ctx->strides.data();
  managed->dl_tensor.byte_offset = 0;
  managed->manager_ctx = ctx;
  managed->deleter = dlpack_deleter;
  PyObject* capsule = PyCapsule_New(managed, "dltensor", dlpack_capsule_destructor);
  if (capsule == nullptr) {
    delete ctx;
    delete managed;
    throw py::error_already_set();
  }
  Py_INCREF(owner.ptr());
  return py::reinterpret_steal<py::object>(capsule);
}

// Reads a "dltensor" capsule without consuming it (the producer's destructor stays in charge).
py::dict dlpack_info(const py::object& capsule) {
  if (!PyCapsule_IsValid(capsule.ptr(), "dltensor"))
    throw py::type_error("expected an unconsumed DLPack capsule named 'dltensor'");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) throw py::error_already_set();
  const DLTensor& t = managed->dl_tensor;
  py::dict info;
  info["data"] = reinterpret_cast<ptr_t>(t.data) + static_cast<ptr_t>(t.byte_offset);
  info["device_type"] = t.device.device_type;
  info["device_id"] = t.device.device_id;
  py::tuple shape(t.ndim);
  for (int d = 0; d < t.ndim; ++d) shape[d] = t.shape[d];
  info["shape"] = shape;
  if (t.strides) {
    py::tuple strides(t.ndim);
    for (int d = 0; d < t.ndim; ++d) strides[d] = t.strides[d];
    info["strides"] = strides;
  } else {
    info["strides"] = py::none();
  }
  info["code"] = static_cast<int>(t.dtype.code);
  info["bits"] = static_cast<int>(t.dtype.bits);
  info["lanes"] = static_cast<int>(t.dtype.lanes);
  return info;
}

}  // namespace

#ifndef FUSEDRNN_CUDA_ARCHITECTURES
#define FUSEDRNN_CUDA_ARCHITECTURES ""
#endif
#ifndef FUSEDRNN_CUDA_COMPILER_VERSION
#define FUSEDRNN_CUDA_COMPILER_VERSION ""
#endif

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusedrnn's CUDA kernels (private: use fusedrnn.cuda)";

  m.def("device_count", &cuda::device_count, "Usable CUDA devices; 0 without a driver or GPU (never raises)");
  m.def("runtime_version", &cuda::runtime_version);
  m.def("driver_version", &cuda::driver_version);
  m.def("device_name", &cuda::device_name, py::arg("device"));
  m.def("compute_capability", &cuda::compute_capability, py::arg("device"));
  m.def("build_info", [] {
    py::dict info;
    info["cuda"] = true;
    py::list archs;
    std::string all = FUSEDRNN_CUDA_ARCHITECTURES, item;
    for (char ch : all + ",") {
      if (ch == ',') {
        if (!item.empty()) archs.append(item);
        item.clear();
      } else {
        item += ch;
      }
    }
    info["cuda_architectures"] = archs;
    info["cuda_compiler_version"] = FUSEDRNN_CUDA_COMPILER_VERSION;
    return info;
  });

  m.def(
      "forward",
      [](int cell, index_t T, index_t B, index_t I, index_t H, index_t P, bool reverse, ptr_t lengths, ptr_t x,
         ptr_t h0, ptr_t c0, ptr_t w_ih, ptr_t w_hh, ptr_t b_ih, ptr_t b_hh, ptr_t w_hr, ptr_t y, ptr_t h_n,
         ptr_t c_n, ptr_t gates, ptr_t h_prev, ptr_t c_prev, ptr_t aux, ptr_t mm, int dtype, ptr_t stream,
         const std::string& path, int device) {
        const CellKind kind = cell_of(cell);
        const DType dt = dtype_of(dtype);
        const Path pa = path_of(path);
        const Sizes n = sizes(T, B, I, H, P, reverse, lengths);
        const bool lstm = kind == CellKind::lstm, tape = h_prev != 0;
        if (!x || !h0 || !w_ih || !w_hh || !y || !h_n || !gates || (lstm && (!c0 || !c_n)) ||
            (tape && lstm && !c_prev) || (tape && kind == CellKind::gru && !aux) || (tape && w_hr && !mm) ||
            (w_hr && !lstm) || (!w_hr && P != H) || (!b_ih != !b_hh))
          throw py::value_error("forward: a required array is missing");
        ForwardParams<void> p;
        p.n = n;
        p.x = ptr<const void>(x), p.h0 = ptr<const void>(h0), p.c0 = ptr<const void>(c0);
        p.w_ih = ptr<const void>(w_ih), p.w_hh = ptr<const void>(w_hh);
        p.b_ih = ptr<const void>(b_ih), p.b_hh = ptr<const void>(b_hh), p.w_hr = ptr<const void>(w_hr);
        p.y = ptr<void>(y), p.h_n = ptr<void>(h_n), p.c_n = ptr<void>(c_n), p.gates = ptr<void>(gates);
        p.h_prev = ptr<void>(h_prev), p.c_prev = ptr<void>(c_prev), p.aux = ptr<void>(aux), p.m = ptr<void>(mm);
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::forward(kind, dt, p, stream, pa);
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P"), py::arg("reverse"),
      py::arg("lengths"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_ih"), py::arg("bias_hh"), py::arg("weight_hr"), py::arg("y"), py::arg("h_n"), py::arg("c_n"),
      py::arg("gates"), py::arg("h_prev"), py::arg("c_prev"), py::arg("aux"), py::arg("m"), py::kw_only(),
      py::arg("dtype"), py::arg("stream") = 0, py::arg("path") = "auto", py::arg("device") = -1,
      "One layer, one direction; every array argument is a device pointer (int; 0 = none).");

  m.def(
      "backward",
      [](int cell, index_t T, index_t B, index_t I, index_t H, index_t P, bool reverse, ptr_t lengths, ptr_t x,
         ptr_t w_ih, ptr_t w_hh, ptr_t w_hr, ptr_t gates, ptr_t h_prev, ptr_t c_prev, ptr_t aux, ptr_t mm, ptr_t dy,
         ptr_t dh_n, ptr_t dc_n, ptr_t dx, ptr_t dh0, ptr_t dc0, ptr_t dw_ih, ptr_t dw_hh, ptr_t db_ih,
         ptr_t db_hh, ptr_t dw_hr, ptr_t dgates, ptr_t dgates_rec, ptr_t dh_total, int dtype, ptr_t stream,
         const std::string& path, int device) {
        const CellKind kind = cell_of(cell);
        const DType dt = dtype_of(dtype);
        const Path pa = path_of(path);
        const Sizes n = sizes(T, B, I, H, P, reverse, lengths);
        const bool lstm = kind == CellKind::lstm, gru = kind == CellKind::gru;
        if (!x || !w_ih || !w_hh || !gates || !h_prev || !dy || !dh_n || !dx || !dh0 || !dw_ih || !dw_hh || !db_ih ||
            !db_hh || !dgates || (lstm && (!c_prev || !dc_n || !dc0)) || (gru && (!aux || !dgates_rec)) ||
            (w_hr && (!lstm || !mm || !dw_hr || !dh_total)) || (!w_hr && P != H))
          throw py::value_error("backward: a required array is missing");
        BackwardParams<void> p;
        p.n = n;
        p.x = ptr<const void>(x), p.w_ih = ptr<const void>(w_ih), p.w_hh = ptr<const void>(w_hh);
        p.w_hr = ptr<const void>(w_hr), p.gates = ptr<const void>(gates), p.h_prev = ptr<const void>(h_prev);
        p.c_prev = ptr<const void>(c_prev), p.aux = ptr<const void>(aux), p.m = ptr<const void>(mm);
        p.dy = ptr<const void>(dy), p.dh_n = ptr<const void>(dh_n), p.dc_n = ptr<const void>(dc_n);
        p.dx = ptr<void>(dx), p.dh0 = ptr<void>(dh0), p.dc0 = ptr<void>(dc0), p.dw_ih = ptr<void>(dw_ih);
        p.dw_hh = ptr<void>(dw_hh), p.db_ih = ptr<void>(db_ih), p.db_hh = ptr<void>(db_hh);
        p.dw_hr = ptr<void>(dw_hr), p.dgates = ptr<void>(dgates), p.dgates_rec = ptr<void>(dgates_rec);
        p.dh_total = ptr<void>(dh_total);
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::backward(kind, dt, p, stream, pa);
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P"), py::arg("reverse"),
      py::arg("lengths"), py::arg("x"), py::arg("weight_ih"), py::arg("weight_hh"), py::arg("weight_hr"),
      py::arg("gates"), py::arg("h_prev"), py::arg("c_prev"), py::arg("aux"), py::arg("m"), py::arg("dy"),
      py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"), py::arg("dweight_ih"),
      py::arg("dweight_hh"), py::arg("dbias_ih"), py::arg("dbias_hh"), py::arg("dweight_hr"), py::arg("dgates"),
      py::arg("dgates_rec"), py::arg("dh_total"), py::kw_only(), py::arg("dtype"), py::arg("stream") = 0,
      py::arg("path") = "auto", py::arg("device") = -1,
      "Backward through time; every array argument is a device pointer (int; 0 = none).");

  m.def(
      "persistent_unsupported",
      [](int cell, int dtype, index_t T, index_t B, index_t I, index_t H, index_t P, bool backward, int device) {
        const CellKind kind = cell_of(cell);
        const DType dt = dtype_of(dtype);
        const Sizes n = sizes(T, B, I, H, P, false, 0);
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        return backward ? cuda::persistent_backward_unsupported(kind, dt, n)
                        : cuda::persistent_forward_unsupported(kind, dt, n);
      },
      py::arg("cell"), py::arg("dtype"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P"),
      py::arg("backward") = false, py::arg("device") = -1,
      "Why path='persistent' cannot run this problem on the device ('' when it can).");

  m.def(
      "zero_padding",
      [](int dtype, ptr_t x, index_t T, index_t B, index_t I, ptr_t lengths, ptr_t stream, int device) {
        const DType dt = dtype_of(dtype);
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::zero_padding(dt, ptr<void>(x), T, B, I, ptr<const std::int64_t>(lengths), stream);
      },
      py::arg("dtype"), py::arg("x"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("lengths"),
      py::arg("stream") = 0, py::arg("device") = -1);

  // Memory and streams.
  py::class_<DeviceBuffer>(m, "DeviceBuffer", "An owned device allocation, freed (stream-ordered) when collected")
      .def(py::init<std::size_t, int, ptr_t>(), py::arg("nbytes"), py::arg("device"), py::arg("stream") = 0)
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def_property_readonly("device", &DeviceBuffer::device)
      .def_property_readonly("stream", &DeviceBuffer::stream);
  m.def("current_device", &cuda::current_device);
  m.def("set_device", &cuda::set_device, py::arg("device"));
  m.def(
      "memcpy_htod",
      [](ptr_t dst, const py::buffer& src, ptr_t stream, int device) {
        const py::buffer_info info = host_buffer(src, false);
        const std::size_t bytes = static_cast<std::size_t>(info.size) * info.itemsize;
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::memcpy_htod(ptr<void>(dst), info.ptr, bytes, stream);
      },
      py::arg("dst"), py::arg("src"), py::arg("stream") = 0, py::arg("device") = -1,
      "Copy a C-contiguous host buffer to device memory (waits for the copy)");
  m.def(
      "memcpy_dtoh",
      [](const py::buffer& dst, ptr_t src, ptr_t stream, int device) {
        const py::buffer_info info = host_buffer(dst, true);
        const std::size_t bytes = static_cast<std::size_t>(info.size) * info.itemsize;
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::memcpy_dtoh(info.ptr, ptr<const void>(src), bytes, stream);
      },
      py::arg("dst"), py::arg("src"), py::arg("stream") = 0, py::arg("device") = -1,
      "Copy device memory into a writable C-contiguous host buffer (waits for the copy)");
  m.def(
      "memcpy_dtod",
      [](ptr_t dst, ptr_t src, std::size_t nbytes, ptr_t stream, int device) {
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::memcpy_dtod(ptr<void>(dst), ptr<const void>(src), nbytes, stream);
      },
      py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("stream") = 0, py::arg("device") = -1);
  m.def(
      "memset",
      [](ptr_t dst, int value, std::size_t nbytes, ptr_t stream, int device) {
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::memset_async(ptr<void>(dst), value, nbytes, stream);
      },
      py::arg("dst"), py::arg("value"), py::arg("nbytes"), py::arg("stream") = 0, py::arg("device") = -1);
  m.def(
      "synchronize",
      [](ptr_t stream, int device) {
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::stream_synchronize(stream);
      },
      py::arg("stream") = 0, py::arg("device") = -1);
  m.def(
      "stream_wait",
      [](ptr_t consumer, ptr_t producer, int device) {
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        cuda::stream_wait(consumer, producer);
      },
      py::arg("consumer"), py::arg("producer"), py::arg("device") = -1,
      "Make `consumer` wait (on the device) for the work queued so far on `producer`");
  m.def("pointer_device", [](ptr_t p) { return cuda::pointer_device(ptr<const void>(p)); }, py::arg("ptr"));

  m.def("to_dlpack", &to_dlpack, py::arg("owner"), py::arg("data"), py::arg("shape"), py::arg("strides"),
        py::arg("code"), py::arg("bits"), py::arg("device_id"),
        "A 'dltensor' capsule for device memory kept alive by `owner`");
  m.def("dlpack_info", &dlpack_info, py::arg("capsule"), "The fields of an unconsumed 'dltensor' capsule");
}
