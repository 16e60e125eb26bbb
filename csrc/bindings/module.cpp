// The private extension module fusedrnn._C: NumPy arrays -> params structs, GIL released.
// Python (functional.py) has already checked every shape and dtype and allocated every output;
// the checks here only guard against a caller that bypasses it (wrong dtype, non-contiguous or
// read-only buffers, wrong sizes would otherwise be memory errors).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"
#include "array_pool.h"

namespace py = pybind11;
using namespace fusedrnn;

namespace {

template <class S>
py::array checked(const py::object& obj, const char* name, index_t size, bool writable) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a NumPy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<S>()))
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<S>())));
  if (!(arr.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (writable && !arr.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (static_cast<index_t>(arr.size()) != size)
    throw py::value_error(std::string(name) + " must have " + std::to_string(size) + " elements, got " +
                          std::to_string(arr.size()));
  return arr;
}

template <class S>
const S* in(const py::object& obj, const char* name, index_t size) {
  if (obj.is_none()) return nullptr;
  return static_cast<const S*>(checked<S>(obj, name, size, false).data());
}

template <class S>
S* out(const py::object& obj, const char* name, index_t size) {
  if (obj.is_none()) return nullptr;
  return static_cast<S*>(checked<S>(obj, name, size, true).mutable_data());
}

int gates_of(CellKind cell) {
  switch (cell) {
    case CellKind::lstm: return 4;
    case CellKind::gru: return 3;
    default: return 1;
  }
}

Sizes sizes(index_t T, index_t B, index_t I, index_t H, index_t P, bool reverse, const py::object& lengths) {
  Sizes n;
  n.T = T;
  n.B = B;
  n.I = I;
  n.H = H;
  n.P = P;
  n.reverse = reverse;
  if (!lengths.is_none()) n.lengths = in<std::int64_t>(lengths, "lengths", B);
  return n;
}

// One layer's weights packed once for any number of forwards (fusedrnn.functional.PackedWeights):
// four buffers in the running ISA's layout, owned here. They come from the array pool: from 2 MB up
// 2 MB-aligned and in huge pages, as the kernels' own scratch for packed weights is. A recurrent
// matrix streamed from memory at every step (LSTM H = 1536: 38 MB) in 4 KB pages streamed more
// slowly than the plain forward's own packing of it (perf-notes, thirteenth session).
class PackedBuffers {
 public:
  PackedBuffers(CellKind cell, bool f64, index_t I, index_t H, index_t P) : cell(cell), f64(f64), I(I), H(H), P(P) {
    index_t sizes[4];
    cpu::kernels().packed_sizes(cell, I, H, P, f64, sizes);
    try {
      for (int i = 0; i < 4; ++i)
        blocks_[i] = pool::acquire(static_cast<std::size_t>(std::max<index_t>(sizes[i], 1)) * (f64 ? 8 : 4));
    } catch (...) {
      release();
      throw;
    }
  }
  ~PackedBuffers() { release(); }
  PackedBuffers(const PackedBuffers&) = delete;
  PackedBuffers& operator=(const PackedBuffers&) = delete;
  template <class S>
  PackedWeights<S> view() const {
    auto at = [this](int i) { return static_cast<S*>(blocks_[i].data); };
    return {at(0), at(1), at(2), P != H ? at(3) : nullptr};
  }
  const CellKind cell;
  const bool f64;
  const index_t I, H, P;

 private:
  void release() {
    for (const pool::Block& block : blocks_)
      if (block.data) pool::release(block);
  }
  pool::Block blocks_[4] = {};
};

template <class S>
std::unique_ptr<PackedBuffers> pack_typed(CellKind cell, index_t I, index_t H, index_t P, const py::object& w_ih,
                                          const py::object& w_hh, const py::object& b_hh, const py::object& w_hr) {
  const index_t GH = gates_of(cell) * H;
  ForwardParams<S> p;
  p.n.I = I, p.n.H = H, p.n.P = P;
  p.w_ih = in<S>(w_ih, "weight_ih", GH * I);
  p.w_hh = in<S>(w_hh, "weight_hh", GH * P);
  p.b_hh = in<S>(b_hh, "bias_hh", GH);
  p.w_hr = in<S>(w_hr, "weight_hr", P * H);
  if (!p.w_ih || !p.w_hh || !p.b_hh || (p.w_hr && cell != CellKind::lstm) || (!p.w_hr && P != H))
    throw py::value_error("pack_weights: a required array is missing");
  auto packed = std::make_unique<PackedBuffers>(cell, std::is_same_v<S, double>, I, H, P);
  const PackedWeights<S> out = packed->template view<S>();
  py::gil_scoped_release release;
  if constexpr (std::is_same_v<S, double>) cpu::kernels().pack_f64(cell, p, out);
  else cpu::kernels().pack_f32(cell, p, out);
  return packed;
}

template <class S>
void forward_typed(CellKind cell, const Sizes& n, const py::object& x, const py::object& h0, const py::object& c0,
                   const py::object& w_ih, const py::object& w_hh, const py::object& b_ih,
                   const py::object& b_hh, const py::object& w_hr, const py::object& y, const py::object& h_n,
                   const py::object& c_n, const py::object& gates, const py::object& h_prev,
                   const py::object& c_prev, const py::object& aux, const py::object& m,
                   const py::object& packed) {
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = gates_of(cell) * H;
  const bool lstm = cell == CellKind::lstm;
  ForwardParams<S> p;
  p.n = n;
  p.x = in<S>(x, "x", T * B * I);
  p.h0 = in<S>(h0, "h0", B * P);
  p.c0 = in<S>(c0, "c0", B * H);
  p.w_ih = in<S>(w_ih, "weight_ih", GH * I);
  p.w_hh = in<S>(w_hh, "weight_hh", GH * P);
  p.b_ih = in<S>(b_ih, "bias_ih", GH);
  p.b_hh = in<S>(b_hh, "bias_hh", GH);
  p.w_hr = in<S>(w_hr, "weight_hr", P * H);
  p.y = out<S>(y, "y", T * B * P);
  p.h_n = out<S>(h_n, "h_n", B * P);
  p.c_n = out<S>(c_n, "c_n", B * H);
  p.gates = out<S>(gates, "gates", T * B * GH);
  p.h_prev = out<S>(h_prev, "h_prev", T * B * P);
  p.c_prev = out<S>(c_prev, "c_prev", T * B * H);
  p.aux = out<S>(aux, "aux", T * B * H);
  p.m = out<S>(m, "m", T * B * H);
  const bool tape = p.h_prev != nullptr;
  if (!packed.is_none()) {
    const auto& buffers = packed.cast<const PackedBuffers&>();
    if (buffers.cell != cell || buffers.f64 != std::is_same_v<S, double> || buffers.I != I || buffers.H != H ||
        buffers.P != P || tape)
      throw py::value_error("forward: packed weights of another cell, dtype or size, or with a tape");
    p.packed = buffers.template view<S>();
  }
  const bool weights = p.packed.w_hh || (p.w_ih && p.w_hh && p.b_hh);
  const bool projected = p.w_hr || p.packed.w_hr;
  if (!p.x || !p.h0 || !weights || !p.b_ih || !p.y || !p.h_n || (tape && !p.gates) ||
      (lstm && (!p.c0 || !p.c_n)) || (tape && lstm && !p.c_prev) || (tape && cell == CellKind::gru && !p.aux) ||
      (tape && projected && !p.m) || (projected && !lstm) || (projected != (P != H)))
    throw py::value_error("forward: a required array is missing");
  py::gil_scoped_release release;
  cpu::forward<S>(cell, p);
}

template <class S>
void backward_typed(CellKind cell, const Sizes& n, const py::object& x, const py::object& w_ih,
                    const py::object& w_hh, const py::object& w_hr, const py::object& gates,
                    const py::object& h_prev, const py::object& c_prev, const py::object& aux, const py::object& m,
                    const py::object& dy, const py::object& dh_n, const py::object& dc_n, const py::object& dx,
                    const py::object& dh0, const py::object& dc0, const py::object& dw_ih, const py::object& dw_hh,
                    const py::object& db_ih, const py::object& db_hh, const py::object& dw_hr,
                    const py::object& dgates, const py::object& dgates_rec, const py::object& dh_total) {
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = gates_of(cell) * H;
  const bool lstm = cell == CellKind::lstm, gru = cell == CellKind::gru;
  BackwardParams<S> p;
  p.n = n;
  p.x = in<S>(x, "x", T * B * I);
  p.w_ih = in<S>(w_ih, "weight_ih", GH * I);
  p.w_hh = in<S>(w_hh, "weight_hh", GH * P);
  p.w_hr = in<S>(w_hr, "weight_hr", P * H);
  p.gates = in<S>(gates, "gates", T * B * GH);
  p.h_prev = in<S>(h_prev, "h_prev", T * B * P);
  p.c_prev = in<S>(c_prev, "c_prev", T * B * H);
  p.aux = in<S>(aux, "aux", T * B * H);
  p.m = in<S>(m, "m", T * B * H);
  p.dy = in<S>(dy, "dy", T * B * P);
  p.dh_n = in<S>(dh_n, "dh_n", B * P);
  p.dc_n = in<S>(dc_n, "dc_n", B * H);
  p.dx = out<S>(dx, "dx", T * B * I);
  p.dh0 = out<S>(dh0, "dh0", B * P);
  p.dc0 = out<S>(dc0, "dc0", B * H);
  p.dw_ih = out<S>(dw_ih, "dweight_ih", GH * I);
  p.dw_hh = out<S>(dw_hh, "dweight_hh", GH * P);
  p.db_ih = out<S>(db_ih, "dbias_ih", GH);
  p.db_hh = out<S>(db_hh, "dbias_hh", GH);
  p.dw_hr = out<S>(dw_hr, "dweight_hr", P * H);
  p.dgates = out<S>(dgates, "dgates", T * B * GH);
  p.dgates_rec = out<S>(dgates_rec, "dgates_rec", T * B * GH);
  p.dh_total = out<S>(dh_total, "dh_total", T * B * P);
  if (!p.x || !p.w_ih || !p.w_hh || !p.gates || !p.h_prev || !p.dy || !p.dh_n || !p.dx || !p.dh0 || !p.dw_ih ||
      !p.dw_hh || !p.db_ih || !p.db_hh || !p.dgates || (lstm && (!p.c_prev || !p.dc_n || !p.dc0)) ||
      (gru && (!p.aux || !p.dgates_rec)) || (p.w_hr && (!lstm || !p.m || !p.dw_hr || !p.dh_total)) ||
      (!p.w_hr && P != H))
    throw py::value_error("backward: a required array is missing");
  py::gil_scoped_release release;
  cpu::backward<S>(cell, p);
}

bool is_float64(const py::object& x) {
  return py::isinstance<py::array>(x) && py::reinterpret_borrow<py::array>(x).dtype().is(py::dtype::of<double>());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusedrnn's compiled kernels (private: use fusedrnn.functional)";

  cpu::kernels();  // choose the ISA now: a bad FUSEDRNN_ISA fails the import with its reason

  m.def("cpu_info", [] {
    py::dict info;
    info["isa"] = cpu::kernels().isa;
    info["compiled"] = cpu::compiled_isas();
    info["supported"] = cpu::supported_isas();
    return info;
  });
  m.def("build_info", [] {
    py::dict info;
    info["version"] = FUSEDRNN_VERSION;
    info["compiler"] = FUSEDRNN_COMPILER;
    info["build_type"] = FUSEDRNN_BUILD_TYPE;
    info["isas"] = cpu::compiled_isas();
    info["cuda"] = false;  // the CUDA backend is not part of this release
    info["cuda_architectures"] = py::list();
    return info;
  });
  m.def("get_num_threads", [] { return cpu::num_threads(); });
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    py::gil_scoped_release release;  // waits for a running kernel call to finish
    cpu::set_num_threads(n);
  });
  m.def("default_num_threads", [] { return cpu::default_num_threads(); });
  // An uninitialised C-contiguous array (see _checks.empty). From kPooledMinBytes up its memory
  // comes from the pool (array_pool.h) and returns there when the array and every view of it are
  // gone; smaller blocks NumPy's allocator (glibc's heap) reuses without clearing pages anyway.
  m.def("pooled_empty", [](const py::tuple& dims, const py::object& dtype_like) {
    const py::dtype dtype = py::dtype::from_args(dtype_like);
    std::vector<py::ssize_t> shape;
    std::size_t bytes = static_cast<std::size_t>(dtype.itemsize());
    bool too_big = false;
    for (const py::handle dim : dims) {
      const long long n = PyLong_AsLongLong(dim.ptr());  // -1 and OverflowError beyond 64 bits
      if (n == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) throw py::error_already_set();
        PyErr_Clear();
        too_big = true;
        continue;
      }
      if (n < 0) throw py::value_error("pooled_empty: negative dimension");
      shape.push_back(static_cast<py::ssize_t>(n));
      too_big = too_big || __builtin_mul_overflow(bytes, static_cast<std::size_t>(n), &bytes) || bytes >> 62;
    }
    constexpr std::size_t kPooledMinBytes = std::size_t{128} << 10;
    if (!too_big && bytes < kPooledMinBytes) return py::array(dtype, shape);
    pool::Block* block = nullptr;
    try {
      if (too_big) throw std::bad_alloc();
      block = new pool::Block(pool::acquire(bytes));
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, ("cannot allocate an array of shape " + std::string(py::str(dims)) +
                                          " and dtype " + std::string(py::str(dtype))).c_str());
      throw py::error_already_set();
    }
    py::capsule owner(block, [](void* b) {
      auto* held = static_cast<pool::Block*>(b);
      pool::release(*held);
      delete held;
    });
    return py::array(dtype, shape, block->data, owner);
  });
  m.def("pool_idle_bytes", [] { return pool::idle_bytes(); });
  m.def("pool_release_idle", [] { pool::release_idle(); });
  m.def("fma_peak_gflops", [](long iterations) {
    py::gil_scoped_release release;
    return cpu::kernels().fma_peak_gflops(iterations);
  }, py::arg("iterations") = 20000000L);
  m.def(
      "gemm",
      [](py::array_t<float, py::array::c_style> a, py::array_t<float, py::array::c_style> b, bool transpose_a,
         bool transpose_b) {
        if (a.ndim() != 2 || b.ndim() != 2)
          throw py::value_error("gemm: a and b must be 2-D float32 arrays");
        const index_t M = a.shape(transpose_a ? 1 : 0), K = a.shape(transpose_a ? 0 : 1);
        const index_t N = b.shape(transpose_b ? 0 : 1);
        if (b.shape(transpose_b ? 1 : 0) != K)
          throw py::value_error("gemm: a must have shape (M, K) ((K, M) with transpose_a) and b shape (K, N) "
                                "((N, K) with transpose_b)");
        py::array_t<float> c({M, N});
        const float *pa = a.data(), *pb = b.data();
        float* pc = c.mutable_data();
        {
          py::gil_scoped_release release;
          cpu::kernels().gemm_f32(M, N, K, pa, transpose_a, pb, transpose_b, pc);
        }
        return c;
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      "op(a) @ op(b) through the kernels' own GEMM (float32; C-contiguous copies made as needed; for "
      "benchmarks and tests)");

  py::enum_<CellKind>(m, "CellKind")
      .value("rnn_tanh", CellKind::rnn_tanh)
      .value("rnn_relu", CellKind::rnn_relu)
      .value("lstm", CellKind::lstm)
      .value("gru", CellKind::gru);

  m.def(
      "forward",
      [](CellKind cell, index_t T, index_t B, index_t I, index_t H, index_t P, bool reverse,
         const py::object& lengths, const py::object& x, const py::object& h0, const py::object& c0,
         const py::object& w_ih, const py::object& w_hh, const py::object& b_ih, const py::object& b_hh,
         const py::object& w_hr, const py::object& y, const py::object& h_n, const py::object& c_n,
         const py::object& gates, const py::object& h_prev, const py::object& c_prev, const py::object& aux,
         const py::object& m, const py::object& packed) {
        const Sizes n = sizes(T, B, I, H, P, reverse, lengths);
        auto f = is_float64(x) ? forward_typed<double> : forward_typed<float>;
        f(cell, n, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, h_n, c_n, gates, h_prev, c_prev, aux, m, packed);
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P"), py::arg("reverse"),
      py::arg("lengths"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_ih"), py::arg("bias_hh"), py::arg("weight_hr"), py::arg("y"), py::arg("h_n"), py::arg("c_n"),
      py::arg("gates"), py::arg("h_prev"), py::arg("c_prev"), py::arg("aux"), py::arg("m"),
      py::arg("packed") = py::none());

  py::class_<PackedBuffers>(m, "PackedWeights", "weights packed by pack_weights (opaque)");
  m.def(
      "pack_weights",
      [](CellKind cell, index_t I, index_t H, index_t P, const py::object& w_ih, const py::object& w_hh,
         const py::object& b_hh, const py::object& w_hr) {
        auto f = is_float64(w_ih) ? pack_typed<double> : pack_typed<float>;
        return f(cell, I, H, P, w_ih, w_hh, b_hh, w_hr);
      },
      py::arg("cell"), py::arg("I"), py::arg("H"), py::arg("P"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_hh"), py::arg("weight_hr"));

  m.def(
      "backward",
      [](CellKind cell, index_t T, index_t B, index_t I, index_t H, index_t P, bool reverse,
         const py::object& lengths, const py::object& x, const py::object& w_ih, const py::object& w_hh,
         const py::object& w_hr, const py::object& gates, const py::object& h_prev, const py::object& c_prev,
         const py::object& aux, const py::object& m, const py::object& dy, const py::object& dh_n,
         const py::object& dc_n, const py::object& dx, const py::object& dh0, const py::object& dc0,
         const py::object& dw_ih, const py::object& dw_hh, const py::object& db_ih, const py::object& db_hh,
         const py::object& dw_hr, const py::object& dgates, const py::object& dgates_rec,
         const py::object& dh_total) {
        const Sizes n = sizes(T, B, I, H, P, reverse, lengths);
        auto f = is_float64(x) ? backward_typed<double> : backward_typed<float>;
        f(cell, n, x, w_ih, w_hh, w_hr, gates, h_prev, c_prev, aux, m, dy, dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh,
          db_ih, db_hh, dw_hr, dgates, dgates_rec, dh_total);
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P"), py::arg("reverse"),
      py::arg("lengths"), py::arg("x"), py::arg("weight_ih"), py::arg("weight_hh"), py::arg("weight_hr"),
      py::arg("gates"), py::arg("h_prev"), py::arg("c_prev"), py::arg("aux"), py::arg("m"), py::arg("dy"),
      py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"), py::arg("dweight_ih"),
      py::arg("dweight_hh"), py::arg("dbias_ih"), py::arg("dbias_hh"), py::arg("dweight_hr"), py::arg("dgates"),
      py::arg("dgates_rec"), py::arg("dh_total"));
}
