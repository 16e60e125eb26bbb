// The forward of one layer and direction on the GPU, templated on the cell, the projection and
// the storage type; included by forward_<cell>.cu only.
//
// 1. xw[T*B, GH] = x W^T + b_w for all steps: one GEMM (gemm.cu), in acc_t<S> (for float and
//    double xw is the gates array; the activated gates replace it step by step).
// 2. The recurrence, by one of two paths:
//    - stepwise: per step, forward_step_kernel computes R h + b_r for a tile of (32 units x 8
//      sequences) with a shared-memory tiled product and runs the cell's pointwise math on it at
//      once (then, with a projection, project_step_kernel maps m = o*tanh(c) to h = W_hr m);
//    - persistent: persistent_forward_kernel, one cooperative launch for the whole sequence. Block i
//      keeps rows [i*U, i*U + U) of every gate of R (and its rows of W_hr) in shared memory, and
//      the LSTM cell state of its units; each step it reads the whole h (L2), computes its units,
//      writes its part of the next h, and meets the other blocks at one grid barrier (two with a
//      projection).
//    The state h (and c) is carried in acc_t<S> (float32 for the half types).
// The tape and every output follow conventions.h exactly as the CPU kernels write them.
#pragma once

#include <type_traits>

#include "step_common.cuh"

namespace fusedrnn::cuda {
namespace {

namespace cg = cooperative_groups;

// ---------------------------------------------------------------------------------------------
// Stepwise
// ---------------------------------------------------------------------------------------------

// Step t: h, c [B, P] / [B, H] enter the step, h_next, c_next receive the state leaving it (or,
// projected, m_work [B, H] receives m = o * tanh(c)).
template <class Cell, bool Project, class S>
__global__ void __launch_bounds__(kStepThreads)
    forward_step_kernel(ForwardParams<S> p, const acc_t<S>* xw, index_t t, const acc_t<S>* __restrict__ h,
                        const acc_t<S>* __restrict__ c, acc_t<S>* __restrict__ h_next, acc_t<S>* __restrict__ c_next,
                        acc_t<S>* __restrict__ m_work) {
  using A = acc_t<S>;
  constexpr int G = Cell::G;
  constexpr bool lstm = Cell::kHasCellState;
  __shared__ TileSmem<G, A> sm;
  const Sizes n = p.n;
  const index_t B = n.B, H = n.H, P = n.P, GH = G * H;
  const index_t j0 = static_cast<index_t>(blockIdx.x) * kTU, j = j0 + threadIdx.x;
  for (index_t b0 = static_cast<index_t>(blockIdx.y) * kTR; b0 < B; b0 += static_cast<index_t>(gridDim.y) * kTR) {
    A acc[G];
#pragma unroll
    for (int g = 0; g < G; ++g) acc[g] = A(0);
    // acc[g] = sum_k h[b][k] R[g*H + j][k]
    tile_product<G>(sm, h, P, B, b0, p.w_hh, H * P, P, index_t(1), H, j0, P, acc);
    const index_t b = b0 + threadIdx.y;
    if (j >= H || b >= B) continue;
    const index_t row = t * B + b;
    if (!Project && p.h_prev) p.h_prev[row * P + j] = from_acc<S>(h[b * P + j]);
    if (lstm && p.c_prev) p.c_prev[row * H + j] = from_acc<S>(c[b * H + j]);
    if (!active(n, b, t)) {  // padding: the state is kept, y is 0
      if constexpr (Project) {
        m_work[b * H + j] = A(0);
        if (p.m) p.m[row * H + j] = from_acc<S>(A(0));  // dW_hr's GEMM reads every row
      } else {
        h_next[b * P + j] = h[b * P + j];
        p.y[row * P + j] = from_acc<S>(A(0));
      }
      if constexpr (lstm) c_next[b * H + j] = c[b * H + j];
      continue;
    }
    S* gt = p.gates + row * GH + j;
    A xp[G], hp[G], a[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      xp[g] = xw[row * GH + g * H + j];
      hp[g] = acc[g] + (p.b_hh ? to_acc(p.b_hh[g * H + j]) : A(0));
    }
    const A h_old = Project ? A(0) : h[b * P + j];
    const A c_old = lstm ? c[b * H + j] : A(0);
    A aux = A(0), h_new = A(0), c_new = A(0);
    Cell::forward(xp, hp, h_old, c_old, a, aux, h_new, c_new);
#pragma unroll
    for (int g = 0; g < G; ++g) gt[g * H] = from_acc<S>(a[g]);
    if constexpr (Project) {
      m_work[b * H + j] = h_new;
      if (p.m) p.m[row * H + j] = from_acc<S>(h_new);
    } else {
      h_next[b * P + j] = h_new;
      p.y[row * P + j] = from_acc<S>(h_new);
    }
    if constexpr (lstm) c_next[b * H + j] = c_new;
    if constexpr (Cell::kHasAux)
      if (p.aux) p.aux[row * H + j] = from_acc<S>(aux);
  }
}

// Projected LSTM, step t: h_next[b][q] = sum_k W_hr[q][k] m[b][k] (padding: h kept, y = 0); the
// tape's h_prev (P wide) is written here.
template <class S>
__global__ void __launch_bounds__(kStepThreads)
    project_step_kernel(ForwardParams<S> p, index_t t, const acc_t<S>* __restrict__ m_work,
                        const acc_t<S>* __restrict__ h, acc_t<S>* __restrict__ h_next) {
  using A = acc_t<S>;
  __shared__ TileSmem<1, A> sm;
  const Sizes n = p.n;
  const index_t B = n.B, H = n.H, P = n.P;
  const index_t q0 = static_cast<index_t>(blockIdx.x) * kTU, q = q0 + threadIdx.x;
  for (index_t b0 = static_cast<index_t>(blockIdx.y) * kTR; b0 < B; b0 += static_cast<index_t>(gridDim.y) * kTR) {
    A acc[1] = {A(0)};
    tile_product<1>(sm, m_work, H, B, b0, p.w_hr, index_t(0), H, index_t(1), P, q0, H, acc);
    const index_t b = b0 + threadIdx.y;
    if (q >= P || b >= B) continue;
    const index_t row = t * B + b;
    if (p.h_prev) p.h_prev[row * P + q] = from_acc<S>(h[b * P + q]);
    if (active(n, b, t)) {
      h_next[b * P + q] = acc[0];
      p.y[row * P + q] = from_acc<S>(acc[0]);
    } else {
      h_next[b * P + q] = h[b * P + q];
      p.y[row * P + q] = from_acc<S>(A(0));
    }
  }
}

template <class Cell, bool Project, class S>
void forward_stepwise(const ForwardParams<S>& p, const acc_t<S>* xw, cudaStream_t stream) {
  using A = acc_t<S>;
  constexpr bool lstm = Cell::kHasCellState;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, P = n.P, BP = B * P, BH = B * H;
  Workspace ws(sizeof(A) * static_cast<std::size_t>(2 * BP + (lstm ? 2 * BH : 0) + (Project ? BH : 0)), stream);
  A* const h_buf[2] = {ws.as<A>(0), ws.as<A>(BP)};
  A* const c_buf[2] = {lstm ? ws.as<A>(2 * BP) : nullptr, lstm ? ws.as<A>(2 * BP + BH) : nullptr};
  A* const m_work = Project ? ws.as<A>(2 * BP + (lstm ? 2 * BH : 0)) : nullptr;
  to_acc_async(p.h0, h_buf[0], BP, stream);
  if (lstm) to_acc_async(p.c0, c_buf[0], BH, stream);
  const dim3 block(kTU, kTR);
  const dim3 grid_h = step_grid(H, B), grid_p = step_grid(P, B);
  for (index_t s = 0; s < T; ++s) {
    const index_t t = n.reverse ? T - 1 - s : s;
    A* h = h_buf[s % 2];
    A* h_next = h_buf[(s + 1) % 2];
    forward_step_kernel<Cell, Project, S>
        <<<grid_h, block, 0, stream>>>(p, xw, t, h, c_buf[s % 2], h_next, c_buf[(s + 1) % 2], m_work);
    check_launch("forward_step_kernel");
    if constexpr (Project) {
      project_step_kernel<S><<<grid_p, block, 0, stream>>>(p, t, m_work, h, h_next);
      check_launch("project_step_kernel");
    }
  }
  from_acc_async<S>(h_buf[T % 2], p.h_n, BP, stream);
  if (lstm) from_acc_async<S>(c_buf[T % 2], p.c_n, BH, stream);
}

// ---------------------------------------------------------------------------------------------
// Persistent
// ---------------------------------------------------------------------------------------------

// h_buf [2, B, P] (acc): the state, ping-pong by step parity; m_work [B, H] (acc): m of the step
// (projection). Both are read by every block, so through L2 (load_cg / store_cg).
template <class Cell, bool Project, class S>
__global__ void __launch_bounds__(kPersistentThreads)
    persistent_forward_kernel(ForwardParams<S> p, const acc_t<S>* xw, int U, int Up, int bc,
                              acc_t<S>* __restrict__ h_buf, acc_t<S>* __restrict__ m_work) {
  using A = acc_t<S>;
  constexpr int G = Cell::G;
  constexpr bool lstm = Cell::kHasCellState;
  extern __shared__ __align__(16) unsigned char smem[];
  const Sizes n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, P = n.P, GH = G * H;
  const ForwardLayout L = forward_layout<S>(B, H, P, G, U, Up, bc, lstm, Project);
  A* const vbuf = reinterpret_cast<A*>(smem + L.vbuf);
  A* const hp = reinterpret_cast<A*>(smem + L.hp);
  A* const cs = reinterpret_cast<A*>(smem + L.cs);
  A* const hq = reinterpret_cast<A*>(smem + L.hq);
  S* const rs = reinterpret_cast<S*>(smem + L.rs);
  S* const hr = reinterpret_cast<S*>(smem + L.hr);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const index_t j0 = static_cast<index_t>(blockIdx.x) * U;   // first hidden unit of this block
  const index_t q0 = static_cast<index_t>(blockIdx.x) * Up;  // first column of h (projection)
  cg::grid_group grid = cg::this_grid();
  const S zero = from_acc<S>(A(0));

  // The block's slices, loaded once: rs[g*U + u][k] = R[g*H + j0 + u][k] (zero past H).
  for (index_t e = tid; e < static_cast<index_t>(G) * U * P; e += nthreads) {
    const index_t r = e / P, k = e % P, g = r / U, j = j0 + r % U;
    rs[e] = j < H ? p.w_hh[(g * H + j) * P + k] : zero;
  }
  if constexpr (Project)
    for (index_t e = tid; e < static_cast<index_t>(Up) * H; e += nthreads) {
      const index_t q = q0 + e / H, k = e % H;
      hr[e] = q < P ? p.w_hr[q * H + k] : zero;
    }
  if constexpr (lstm)
    for (index_t e = tid; e < B * U; e += nthreads) {
      const index_t b = e / U, j = j0 + e % U;
      cs[e] = j < H ? to_acc(p.c0[b * H + j]) : A(0);
    }
  __syncthreads();

  for (index_t s = 0; s < T; ++s) {
    const index_t t = time_of(n, s);
    const A* h_cur = h_buf + (s % 2) * B * P;
    A* h_nxt = h_buf + ((s + 1) % 2) * B * P;
    // (1) R h for the block's rows, bc sequences at a time: hp[b][g*U + u].
    for (index_t b0 = 0; b0 < B; b0 += bc) {
      const index_t nb = B - b0 < bc ? B - b0 : bc;
      for (index_t e = tid; e < nb * P; e += nthreads)
        vbuf[e] = s == 0 ? to_acc(p.h0[b0 * P + e]) : load_cg(h_cur + b0 * P + e);
      __syncthreads();
      block_dots<S, A>(rs, G * U, static_cast<int>(P), vbuf, static_cast<int>(nb), hp + b0 * G * U, G * U);
      __syncthreads();
    }
    // (2) The cell's pointwise math for the block's units.
    for (index_t e = tid; e < B * U; e += nthreads) {
      const index_t b = e / U, u = e % U, j = j0 + u;
      if (j >= H) continue;
      const index_t row = t * B + b;
      if (!Project) {
        const A h_old = s == 0 ? to_acc(p.h0[b * P + j]) : load_cg(h_cur + b * P + j);
        if (p.h_prev) p.h_prev[row * P + j] = from_acc<S>(h_old);
      }
      if (lstm && p.c_prev) p.c_prev[row * H + j] = from_acc<S>(cs[e]);
      if (!active(n, b, t)) {  // padding: the state is kept (c stays in cs), y is 0
        if constexpr (Project) {
          store_cg(m_work + b * H + j, A(0));
          if (p.m) p.m[row * H + j] = zero;
        } else {
          store_cg(h_nxt + b * P + j, s == 0 ? to_acc(p.h0[b * P + j]) : load_cg(h_cur + b * P + j));
          p.y[row * P + j] = zero;
        }
        continue;
      }
      S* gt = p.gates + row * GH + j;
      A xp[G], hpv[G], a[G];
#pragma unroll
      for (int g = 0; g < G; ++g) {
        xp[g] = xw[row * GH + g * H + j];
        hpv[g] = hp[b * G * U + g * U + u] + (p.b_hh ? to_acc(p.b_hh[g * H + j]) : A(0));
      }
      A h_old = A(0);
      if constexpr (!Project) h_old = s == 0 ? to_acc(p.h0[b * P + j]) : load_cg(h_cur + b * P + j);
      const A c_old = lstm ? cs[e] : A(0);
      A aux = A(0), h_new = A(0), c_new = A(0);
      Cell::forward(xp, hpv, h_old, c_old, a, aux, h_new, c_new);
#pragma unroll
      for (int g = 0; g < G; ++g) gt[g * H] = from_acc<S>(a[g]);
      if constexpr (Project) {
        store_cg(m_work + b * H + j, h_new);
        if (p.m) p.m[row * H + j] = from_acc<S>(h_new);
      } else {
        store_cg(h_nxt + b * P + j, h_new);
        p.y[row * P + j] = from_acc<S>(h_new);
      }
      if constexpr (lstm) cs[e] = c_new;
      if constexpr (Cell::kHasAux)
        if (p.aux) p.aux[row * H + j] = from_acc<S>(aux);
    }
    grid.sync();  // the next h (or m) complete
    if constexpr (Project) {
      // (3) h = W_hr m for the block's columns.
      for (index_t b0 = 0; b0 < B; b0 += bc) {
        const index_t nb = B - b0 < bc ? B - b0 : bc;
        for (index_t e = tid; e < nb * H; e += nthreads) vbuf[e] = load_cg(m_work + b0 * H + e);
        __syncthreads();
        block_dots<S, A>(hr, Up, static_cast<int>(H), vbuf, static_cast<int>(nb), hq + b0 * Up, Up);
        __syncthreads();
      }
      for (index_t e = tid; e < B * Up; e += nthreads) {
        const index_t b = e / Up, q = q0 + e % Up;
        if (q >= P) continue;
        const index_t row = t * B + b;
        const A h_old = s == 0 ? to_acc(p.h0[b * P + q]) : load_cg(h_cur + b * P + q);
        if (p.h_prev) p.h_prev[row * P + q] = from_acc<S>(h_old);
        const bool real = active(n, b, t);
        const A h_new = real ? hq[e] : h_old;
        store_cg(h_nxt + b * P + q, h_new);
        p.y[row * P + q] = real ? from_acc<S>(h_new) : zero;
      }
      grid.sync();  // the next h complete
    }
  }
  // The final state: the block's own columns of h, its own units of c.
  const A* h_fin = h_buf + (T % 2) * B * P;
  const index_t c0 = Project ? q0 : j0, width = Project ? Up : U;
  for (index_t e = tid; e < B * width; e += nthreads) {
    const index_t b = e / width, q = c0 + e % width;
    if (q < P && (Project || q < H)) p.h_n[b * P + q] = from_acc<S>(load_cg(h_fin + b * P + q));
  }
  if constexpr (lstm)
    for (index_t e = tid; e < B * U; e += nthreads) {
      const index_t b = e / U, j = j0 + e % U;
      if (j < H) p.c_n[b * H + j] = from_acc<S>(cs[e]);
    }
}

template <class Cell, bool Project, class S>
PersistentPlan plan_persistent_forward(const Sizes& n) {
  using A = acc_t<S>;
  constexpr int G = Cell::G;
  constexpr bool lstm = Cell::kHasCellState;
  PersistentPlan plan;
  const DeviceLimits dev = device_limits();
  const index_t B = n.B, H = n.H, P = n.P;
  const std::size_t kmax = Project && H > P ? H : P;
  int up = 0;
  plan_slices(
      plan, dev, H, B,
      [&](int U, int blocks) {
        up = Project ? static_cast<int>((P + blocks - 1) / blocks) : 0;
        return forward_layout<S>(B, H, P, G, U, up, 0, lstm, Project).total;
      },
      sizeof(A) * kmax);
  if (!plan.reason.empty()) return plan;
  plan.columns = up;
  plan.smem = forward_layout<S>(B, H, P, G, plan.units, up, plan.chunk, lstm, Project).total;
  check_residency(plan, persistent_forward_kernel<Cell, Project, S>, dev);
  return plan;
}

template <class Cell, bool Project, class S>
void forward_persistent(const ForwardParams<S>& p, const acc_t<S>* xw, const PersistentPlan& plan,
                        cudaStream_t stream) {
  using A = acc_t<S>;
  const Sizes& n = p.n;
  const index_t B = n.B, H = n.H, P = n.P;
  Workspace ws(sizeof(A) * static_cast<std::size_t>(2 * B * P + (Project ? B * H : 0)), stream);
  ForwardParams<S> params = p;
  int U = plan.units, Up = plan.columns, bc = plan.chunk;
  A* h_buf = ws.as<A>(0);
  A* m_work = Project ? ws.as<A>(2 * B * P) : nullptr;
  void* args[] = {&params, &xw, &U, &Up, &bc, &h_buf, &m_work};
  FUSEDRNN_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(
                                                      persistent_forward_kernel<Cell, Project, S>),
                                                  dim3(plan.blocks), dim3(kPersistentThreads), args, plan.smem,
                                                  stream));
  check_launch("persistent_forward_kernel");
}

// ---------------------------------------------------------------------------------------------
// Persistent, register-resident (float accumulation, no projection): step_common.cuh's
// "Register-resident persistent kernels". Shared memory, in floats:
//   vbuf [bc, ld]              a chunk of the state entering the step (zero past P)
//   part [slices, bc, rows_pad] the slices' partial sums of the chunk
//   hp   [B, G*U]              R h for the block's rows
//   hown [B, U]                the block's units of the state (what it last wrote)
//   cs   [B, U]                LSTM cell state of the block's units
//   bias [G*U]                 b_hh of the block's rows
// ---------------------------------------------------------------------------------------------
struct ResidentForwardLayout {
  std::size_t vbuf, part, hp, hown, cs, bias, total;
};
__host__ __device__ inline ResidentForwardLayout resident_forward_layout(index_t B, int G, int U,
                                                                         const ResidentShape& r, int bc) {
  ResidentForwardLayout L{};
  std::size_t off = 0;
  L.vbuf = off, off += align16(sizeof(float) * bc * r.ld());
  L.part = off, off += align16(sizeof(float) * r.slices * bc * r.rows_pad);
  L.hp = off, off += align16(sizeof(float) * B * G * U);
  L.hown = off, off += align16(sizeof(float) * B * U);
  L.cs = off, off += align16(sizeof(float) * B * U);
  L.bias = off, off += align16(sizeof(float) * G * U);
  L.total = off;
  return L;
}

// words [2, B, Pw]: tagged state words by step parity (Exchange::tagged); h_buf [2, B, Pw] and
// flags [gridDim.x]: plain state and per-block step counters (Exchange::flags); Pw = P rounded up
// to 4, for 16-byte loads (the padding columns stay zero, and are not waited for). Both zeroed before
// the launch; the state entering step s >= 1 is in buffer s % 2 (tag s), flags reach s when it is.
template <class Cell, class S>
__global__ void __launch_bounds__(kPersistentThreads, 1)
    resident_forward_kernel(ForwardParams<S> p, const float* xw, int U, ResidentShape shape, int bc,
                            Exchange exchange, unsigned long long* words, float* h_buf, unsigned* flags) {
  constexpr int G = Cell::G;
  constexpr bool lstm = Cell::kHasCellState;
  extern __shared__ __align__(16) unsigned char smem[];
  const Sizes n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, P = n.P, GH = G * H;
  const int rows = G * U, ld = shape.ld();
  const int Pw = static_cast<int>((P + 3) / 4 * 4);  // row stride of the exchange buffers
  const ResidentForwardLayout L = resident_forward_layout(B, G, U, shape, bc);
  float* const vbuf = reinterpret_cast<float*>(smem + L.vbuf);
  float* const part = reinterpret_cast<float*>(smem + L.part);
  float* const hp = reinterpret_cast<float*>(smem + L.hp);
  float* const hown = reinterpret_cast<float*>(smem + L.hown);
  float* const cs = reinterpret_cast<float*>(smem + L.cs);
  float* const bias = reinterpret_cast<float*>(smem + L.bias);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const index_t j0 = static_cast<index_t>(blockIdx.x) * U;
  const int r = tid % shape.rows_pad, sl = tid / shape.rows_pad;
  const bool in_product = sl < shape.slices;

  // This thread's weights: row r = g*U + u of the block (unit j0 + u of gate g), its k-slice.
  float w[kResidentK];
  {
    const int g = r / U, u = r % U;
    const bool real = in_product && r < rows && j0 + u < H;
    const S* src = p.w_hh + (g * H + j0 + u) * P;
    const index_t k0 = static_cast<index_t>(sl) * shape.kslice;
#pragma unroll
    for (int i = 0; i < kResidentK; ++i)
      w[i] = real && i < shape.kslice && k0 + i < P ? to_acc(src[k0 + i]) : 0.f;
  }
  for (int e = tid; e < bc * ld; e += nthreads) vbuf[e] = 0.f;
  for (int e = tid; e < rows; e += nthreads) {
    const index_t g = e / U, j = j0 + e % U;
    bias[e] = p.b_hh && j < H ? to_acc(p.b_hh[g * H + j]) : 0.f;
  }
  for (index_t e = tid; e < B * U; e += nthreads) {
    const index_t b = e / U, j = j0 + e % U;
    hown[e] = j < H ? to_acc(p.h0[b * P + j]) : 0.f;
    if (lstm) cs[e] = j < H ? to_acc(p.c0[b * H + j]) : 0.f;
  }
  __syncthreads();

  for (index_t s = 0; s < T; ++s) {
    const index_t t = time_of(n, s);
    const unsigned tag = static_cast<unsigned>(s);
    // This thread's first pointwise element's input projection, fetched before the wait.
    float xp0[G];
    if (tid < B * U && j0 + tid % U < H) {
      const index_t b = tid / U, j = j0 + tid % U;
#pragma unroll
      for (int g = 0; g < G; ++g) xp0[g] = xw[(t * B + b) * GH + g * H + j];
    }
    if (s > 0 && exchange == Exchange::flags) {
      for (int i = tid; i < static_cast<int>(gridDim.x); i += nthreads)
        while (load_acquire(flags + i) < tag) {
        }
      __syncthreads();  // every block's part of the state stored
    }
    // (1) R h for the block's rows, bc sequences at a time: hp[b][g*U + u].
    for (index_t b0 = 0; b0 < B; b0 += bc) {
      const int nb = static_cast<int>(B - b0 < bc ? B - b0 : bc);
      if (s == 0) {
        for (RowWalk it(tid, nthreads, static_cast<int>(P)); it.b < nb; it.next())
          vbuf[it.b * ld + it.q] = to_acc(p.h0[(b0 + it.b) * P + it.q]);
      } else if (exchange == Exchange::tagged) {  // pairs of words, four pairs in flight per thread
        const unsigned long long* src = words + (s % 2) * B * Pw + b0 * Pw;
        for (RowWalk it(tid, nthreads, Pw / 2); it.b < nb;) {
          unsigned long long v[4][2];
          int row[4], col[4];  // the pair's sequence (or -1) and first column
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            row[i] = -1, col[i] = 2 * it.q;
            if (it.b < nb) {
              load_volatile2(src + it.b * Pw + col[i], v[i]);
              row[i] = it.b;
              it.next();
            }
          }
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if (row[i] < 0) break;
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int k = col[i] + c;
              if (k >= P) break;  // padding columns: never written, zero in vbuf
              while (static_cast<unsigned>(v[i][c] >> 32) != tag) v[i][c] = load_volatile(src + row[i] * Pw + k);
              vbuf[row[i] * ld + k] = __uint_as_float(static_cast<unsigned>(v[i][c]));
            }
          }
        }
      } else {  // every 16-byte copy in flight at once
        const float* src = h_buf + (s % 2) * B * Pw + b0 * Pw;
        for (RowWalk it(tid, nthreads, Pw / 4); it.b < nb; it.next())
          copy_async16(vbuf + it.b * ld + 4 * it.q, src + it.b * Pw + 4 * it.q);
        copy_wait();
      }
      resident_chunk(w, shape, vbuf, nb, part, bc, rows, hp + b0 * rows, rows);
    }
    // (2) The cell's pointwise math for the block's units.
    for (int e = tid; e < B * U; e += nthreads) {
      const int b = e / U, u = e - b * U;
      const index_t j = j0 + u;
      if (j >= H) continue;
      const index_t row = t * B + b;
      const float h_old = hown[e];
      if (p.h_prev) p.h_prev[row * P + j] = from_acc<S>(h_old);
      if (lstm && p.c_prev) p.c_prev[row * H + j] = from_acc<S>(cs[e]);
      float h_new = h_old;
      if (active(n, b, t)) {
        float xp[G], hpv[G], a[G];
#pragma unroll
        for (int g = 0; g < G; ++g) {
          xp[g] = e == tid ? xp0[g] : xw[row * GH + g * H + j];
          hpv[g] = hp[b * rows + g * U + u] + bias[g * U + u];
        }
        float aux = 0.f, c_new = 0.f;
        Cell::forward(xp, hpv, h_old, lstm ? cs[e] : 0.f, a, aux, h_new, c_new);
        S* gt = p.gates + row * GH + j;
#pragma unroll
        for (int g = 0; g < G; ++g) gt[g * H] = from_acc<S>(a[g]);
        p.y[row * P + j] = from_acc<S>(h_new);
        if constexpr (lstm) cs[e] = c_new;
        if constexpr (Cell::kHasAux)
          if (p.aux) p.aux[row * H + j] = from_acc<S>(aux);
      } else {  // padding: the state is kept (c stays in cs), y is 0
        p.y[row * P + j] = from_acc<S>(0.f);
      }
      hown[e] = h_new;
      const index_t next = ((s + 1) % 2) * B * Pw + b * Pw + j;
      if (exchange == Exchange::tagged)
        store_volatile(words + next, tagged_word(h_new, tag + 1));
      else
        __stcg(h_buf + next, h_new);
    }
    if (exchange == Exchange::flags) {
      __syncthreads();  // the block's part of the next state stored
      if (tid == 0) {
        __threadfence();
        store_release(flags + blockIdx.x, tag + 1);
      }
    }
  }
  // The final state: the block's own units.
  for (index_t e = tid; e < B * U; e += nthreads) {
    const index_t b = e / U, j = j0 + e % U;
    if (j >= H) continue;
    p.h_n[b * P + j] = from_acc<S>(hown[e]);
    if (lstm) p.c_n[b * H + j] = from_acc<S>(cs[e]);
  }
}

// How the state moves between blocks (the tagged words up to this many, else flags), unless
// FUSEDRNN_CUDA_PERSISTENT says otherwise (persistent_override). On an
// H200 the tagged words were faster only at B = 1, H <= 512 (gpu_step_latency.py; perf-notes).
constexpr index_t kTaggedMaxWords = 512;

template <class Cell, class S>
PersistentPlan plan_resident_forward(const Sizes& n) {
  return plan_resident(n.H, n.B, Cell::G, n.P, resident_forward_kernel<Cell, S>,
                       [&](int U, const ResidentShape& r, int bc) {
                         return resident_forward_layout(n.B, Cell::G, U, r, bc).total;
                       });
}

template <class Cell, class S>
void forward_resident(const ForwardParams<S>& p, const float* xw, const PersistentPlan& plan, Exchange exchange,
                      cudaStream_t stream) {
  const Sizes& n = p.n;
  const std::size_t words = 2 * static_cast<std::size_t>(n.B * ((n.P + 3) / 4 * 4));
  const std::size_t bytes = exchange == Exchange::tagged ? sizeof(unsigned long long) * words
                                                         : sizeof(float) * words + sizeof(unsigned) * plan.blocks;
  Workspace ws(bytes, stream);
  FUSEDRNN_CUDA_CHECK(cudaMemsetAsync(ws.as<unsigned char>(), 0, bytes, stream));
  ForwardParams<S> params = p;
  int U = plan.units, bc = plan.chunk;
  ResidentShape shape = plan.resident;
  unsigned long long* tagged = exchange == Exchange::tagged ? ws.as<unsigned long long>() : nullptr;
  float* h_buf = exchange == Exchange::flags ? ws.as<float>() : nullptr;
  unsigned* flags = exchange == Exchange::flags ? reinterpret_cast<unsigned*>(ws.as<float>(words)) : nullptr;
  void* args[] = {&params, &xw, &U, &shape, &bc, &exchange, &tagged, &h_buf, &flags};
  FUSEDRNN_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(resident_forward_kernel<Cell, S>),
                                                  dim3(plan.blocks), dim3(kPersistentThreads), args, plan.smem,
                                                  stream));
  check_launch("resident_forward_kernel");
}

// ---------------------------------------------------------------------------------------------
// Entry
// ---------------------------------------------------------------------------------------------

template <class Cell, bool Project, class S>
std::string persistent_forward_reason_impl(const Sizes& n) {
  if (n.T <= 0 || n.B <= 0) return "";
  if constexpr (!Project && std::is_same_v<acc_t<S>, float>)
    if (plan_resident_forward<Cell, S>(n).reason.empty()) return "";
  return plan_persistent_forward<Cell, Project, S>(n).reason;
}

template <class Cell, bool Project, class S>
void forward_run(const ForwardParams<S>& p, cudaStream_t stream, Path path) {
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = Cell::G * H;
  if (B <= 0) return;  // every output is empty
  if (T <= 0) {        // h_n = h0, c_n = c0
    FUSEDRNN_CUDA_CHECK(cudaMemcpyAsync(p.h_n, p.h0, sizeof(S) * B * P, cudaMemcpyDeviceToDevice, stream));
    if (Cell::kHasCellState)
      FUSEDRNN_CUDA_CHECK(cudaMemcpyAsync(p.c_n, p.c0, sizeof(S) * B * H, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  // The path, decided before anything is queued (a forced persistent path that cannot run raises):
  // the register-resident kernel where it fits, else the shared-memory one.
  using A = acc_t<S>;
  PersistentPlan plan;
  bool persistent = false;
  Exchange exchange = Exchange::tagged;
  if (path == Path::persistent || (path == Path::automatic && B <= kPersistentMaxBatchAuto)) {
    const PersistentKind kind = persistent_override();
    if constexpr (!Project && std::is_same_v<A, float>) {
      if (kind != PersistentKind::shared) {
        plan = plan_resident_forward<Cell, S>(n);
        if (!plan.reason.empty()) plan = PersistentPlan{};
        else if (kind == PersistentKind::automatic) exchange = B * P <= kTaggedMaxWords ? Exchange::tagged : Exchange::flags;
        else exchange = kind == PersistentKind::tagged ? Exchange::tagged : Exchange::flags;
      }
    }
    if (plan.resident.rows_pad == 0) plan = plan_persistent_forward<Cell, Project, S>(n);
    if (path == Path::persistent && !plan.reason.empty())
      throw std::runtime_error("path='persistent' cannot run this problem: " + plan.reason);
    persistent = plan.reason.empty();
  }
  // Input projection for all steps: xw[t, b, :] = b_w + x[t, b, :] W^T, in the accumulation type.
  // For float and double that is the gates array itself (each element is read once, then replaced
  // by the activated gate); a half type gets a float32 workspace, so that nothing is rounded to 16
  // bits before the nonlinearity: rounded, a relu pre-activation near 0 could land on the other
  // side of the kink (an O(1) error in its gradient; bfloat16 Elman-relu tests failed so).
  Workspace xw_ws(std::is_same_v<A, S> ? 0 : sizeof(A) * static_cast<std::size_t>(T * B * GH), stream);
  A* xw;
  if constexpr (std::is_same_v<A, S>)
    xw = p.gates;
  else
    xw = xw_ws.as<A>();
  gemm<S, A>(T * B, GH, I, View<S>{p.x, I, 1}, View<S>{p.w_ih, 1, I}, xw, GH, p.b_ih, stream);
  if (persistent && plan.resident.rows_pad > 0) {
    if constexpr (!Project && std::is_same_v<A, float>) forward_resident<Cell, S>(p, xw, plan, exchange, stream);
  } else if (persistent) {
    forward_persistent<Cell, Project, S>(p, xw, plan, stream);
  } else
    forward_stepwise<Cell, Project, S>(p, xw, stream);
}

}  // namespace

// The entry points of one cell kind: the LSTM has a variant with a projection (P < H).
template <CellKind K, class S>
void forward_dispatch(const ForwardParams<S>& p, cudaStream_t stream, Path path) {
  using Cell = typename CellOf<K>::type;
  if constexpr (K == CellKind::lstm)
    if (p.w_hr) return forward_run<Cell, true, S>(p, stream, path);
  forward_run<Cell, false, S>(p, stream, path);
}

template <CellKind K, class S>
std::string forward_reason_dispatch(const Sizes& n) {
  using Cell = typename CellOf<K>::type;
  if constexpr (K == CellKind::lstm)
    if (n.P != n.H) return persistent_forward_reason_impl<Cell, true, S>(n);
  return persistent_forward_reason_impl<Cell, false, S>(n);
}

#define FUSEDRNN_DEFINE_FORWARD(KIND, S)                                                              \
  template <>                                                                                         \
  void forward_cell<KIND, S>(const ForwardParams<S>& p, cudaStream_t stream, Path path) {             \
    forward_dispatch<KIND, S>(p, stream, path);                                                       \
  }                                                                                                   \
  template <>                                                                                         \
  std::string persistent_forward_reason<KIND, S>(const Sizes& n) {                                    \
    return forward_reason_dispatch<KIND, S>(n);                                                       \
  }
#define FUSEDRNN_DEFINE_FORWARD_ALL(KIND)       \
  FUSEDRNN_DEFINE_FORWARD(KIND, float)          \
  FUSEDRNN_DEFINE_FORWARD(KIND, double)         \
  FUSEDRNN_DEFINE_FORWARD(KIND, __half)         \
  FUSEDRNN_DEFINE_FORWARD(KIND, __nv_bfloat16)

}  // namespace fusedrnn::cuda
