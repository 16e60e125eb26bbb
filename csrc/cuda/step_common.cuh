// Device building blocks shared by the forward and backward walks: the tiled product of the
// stepwise kernels, the warp dot products of the persistent kernels, one unit's backward step,
// and the persistent kernels' shared-memory layouts.
#pragma once

#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels.cuh"

namespace fusedrnn::cuda {

// ---------------------------------------------------------------------------------------------
// Stepwise kernels: a block of kTU x kTR threads; thread (x, y) owns hidden unit (or output
// column) j = blockIdx.x * kTU + x of sequence b = b0 + y.
// ---------------------------------------------------------------------------------------------
constexpr int kTU = 32, kTR = 8, kTK = 32;
constexpr int kStepThreads = kTU * kTR;
static_assert(kTR * kTK == kStepThreads, "tile_product stages V with one element per thread");

template <int NG, class A>
struct TileSmem {
  A Ms[NG][kTK][kTU + 1];  // Ms[g][k][u] = M(g, j0 + u, k0 + k); +1: no bank conflicts
  A Vs[kTR][kTK + 1];      // Vs[r][k]    = V(b0 + r, k0 + k)
};

// acc[g] += sum_{k < K} V(b, k) * M(g, j, k) for this thread's b = b0 + threadIdx.y and
// j = j0 + threadIdx.x, where V(b, k) = V[b * ldv + k] (rows b < B; others read as 0) and
// M(g, j, k) = M[g * m_gs + j * m_js + k * m_ks] (j < J; others read as 0). Summed over k in
// order. Every thread of the block must call it (it synchronises).
template <int NG, class TV, class S, class A>
__device__ __forceinline__ void tile_product(TileSmem<NG, A>& sm, const TV* __restrict__ V, index_t ldv, index_t B,
                                             index_t b0, const S* __restrict__ M, index_t m_gs, index_t m_js,
                                             index_t m_ks, index_t J, index_t j0, index_t K, A (&acc)[NG]) {
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTU + tx;
  for (index_t k0 = 0; k0 < K; k0 += kTK) {
    for (int e = tid; e < NG * kTK * kTU; e += kStepThreads) {
      const int g = e / (kTK * kTU), rem = e % (kTK * kTU);
      int u, kk;
      if (m_ks == 1) {  // k contiguous in memory: neighbouring threads take neighbouring k
        u = rem / kTK, kk = rem % kTK;
      } else {
        kk = rem / kTU, u = rem % kTU;
      }
      const index_t j = j0 + u, k = k0 + kk;
      sm.Ms[g][kk][u] = (j < J && k < K) ? to_acc(M[g * m_gs + j * m_js + k * m_ks]) : A(0);
    }
    {
      const int r = tid / kTK, kk = tid % kTK;
      const index_t b = b0 + r, k = k0 + kk;
      sm.Vs[r][kk] = (b < B && k < K) ? to_acc(V[b * ldv + k]) : A(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTK; ++kk) {
      const A v = sm.Vs[ty][kk];
#pragma unroll
      for (int g = 0; g < NG; ++g) acc[g] += sm.Ms[g][kk][tx] * v;
    }
    __syncthreads();
  }
}

inline dim3 step_grid(index_t columns, index_t B) {
  return dim3(capped_grid((columns + kTU - 1) / kTU, 2147483647), capped_grid((B + kTR - 1) / kTR, 65535));
}

// ---------------------------------------------------------------------------------------------
// Persistent kernels.
// ---------------------------------------------------------------------------------------------
constexpr int kPersistentThreads = 256;
constexpr int kDotBatch = 8;  // sequences per warp item in block_dots

// out[b * ldo + r] = sum_{k < K} W[r * K + k] * V[b * K + k] for r < rows, b < nb, both operands
// in shared memory. One warp per (row, group of up to 8 sequences); lanes take k = lane, lane +
// 32, ...; the lane partial sums are combined by a fixed butterfly and lane 0's total is kept: the
// summation order is the same in every run.
template <class S, class A>
__device__ __forceinline__ void block_dots(const S* W, int rows, int K, const A* V, int nb, A* out, int ldo) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int groups = (nb + kDotBatch - 1) / kDotBatch;
  for (int item = warp; item < rows * groups; item += nwarps) {
    const int r = item % rows, b0 = (item / rows) * kDotBatch;
    const int count = min(kDotBatch, nb - b0);
    const S* w = W + static_cast<std::size_t>(r) * K;
    const A* v = V + static_cast<std::size_t>(b0) * K;
    A acc[kDotBatch];
#pragma unroll
    for (int q = 0; q < kDotBatch; ++q) acc[q] = A(0);
    for (int k = lane; k < K; k += 32) {
      const A wk = to_acc(w[k]);
#pragma unroll
      for (int q = 0; q < kDotBatch; ++q)
        if (q < count) acc[q] += wk * v[q * K + k];
    }
#pragma unroll
    for (int q = 0; q < kDotBatch; ++q) {
      if (q >= count) break;  // count is the same for the whole warp: the shuffles stay converged
      A total = acc[q];
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_xor_sync(0xffffffffu, total, offset);
      if (lane == 0) out[static_cast<std::size_t>(b0 + q) * ldo + r] = total;
    }
  }
}

__host__ __device__ inline std::size_t align16(std::size_t bytes) { return (bytes + 15) / 16 * 16; }

// Forward: block i owns hidden units [i*U, i*U + U) (all G gates) and, with a projection, the
// columns [i*Up, i*Up + Up) of h. Byte offsets into dynamic shared memory:
//   vbuf [bc, max(P, H)] acc   a chunk of bc sequences of h (or, projected, of m)
//   hp   [B, G*U]        acc   R h for the block's rows
//   cs   [B, U]          acc   LSTM cell state of the block's units, for the whole sequence
//   hq   [B, Up]         acc   W_hr m for the block's columns (projection)
//   rs   [G*U, P]        S     the block's rows of R: rs[g*U + u] = R[g*H + i*U + u]
//   hr   [Up, H]         S     the block's rows of W_hr (projection)
struct ForwardLayout {
  std::size_t vbuf, hp, cs, hq, rs, hr, total;
};
template <class S>
__host__ __device__ inline ForwardLayout forward_layout(index_t B, index_t H, index_t P, int G, int U, int Up, int bc,
                                                        bool lstm, bool project) {
  using A = acc_t<S>;
  const std::size_t kmax = project && H > P ? H : P;
  ForwardLayout L{};
  std::size_t off = 0;
  L.vbuf = off, off += align16(sizeof(A) * bc * kmax);
  L.hp = off, off += align16(sizeof(A) * B * G * U);
  L.cs = off, off += lstm ? align16(sizeof(A) * B * U) : 0;
  L.hq = off, off += project ? align16(sizeof(A) * B * Up) : 0;
  L.rs = off, off += align16(sizeof(S) * G * U * P);
  L.hr = off, off += project ? align16(sizeof(S) * Up * H) : 0;
  L.total = off;
  return L;
}

// Backward (P == H): block i owns units [i*U, i*U + U):
//   vbuf [bc, G*H] acc   a chunk of bc sequences of the recurrent gate gradients of the step
//   dhr  [B, U]    acc   dgates_rec R for the block's units
//   dhd  [B, U]    acc   the direct part of dh (GRU dh*z; padding: all of dh)
//   dcs  [B, U]    acc   LSTM d loss / d c
//   rc   [U, G*H]  S     the block's columns of R: rc[u][k] = R[k][i*U + u]
struct BackwardLayout {
  std::size_t vbuf, dhr, dhd, dcs, rc, total;
};
template <class S>
__host__ __device__ inline BackwardLayout backward_layout(index_t B, index_t H, int G, int U, int bc, bool lstm) {
  using A = acc_t<S>;
  BackwardLayout L{};
  std::size_t off = 0;
  L.vbuf = off, off += align16(sizeof(A) * bc * G * H);
  L.dhr = off, off += align16(sizeof(A) * B * U);
  L.dhd = off, off += align16(sizeof(A) * B * U);
  L.dcs = off, off += lstm ? align16(sizeof(A) * B * U) : 0;
  L.rc = off, off += align16(sizeof(S) * U * G * H);
  L.total = off;
  return L;
}

// ---------------------------------------------------------------------------------------------
// Register-resident persistent kernels (float accumulation only). Block i owns G*U rows of the
// recurrent matrix; thread t holds row r = t % rows_pad, k-slice sl = t / rows_pad of them in
// registers for the whole sequence: w[i] = row r, column sl * kslice + i (zero past the row's end
// and for padded rows). Each step a thread multiplies its slice by every sequence of the state
// (broadcast reads of shared memory: the lanes of a quarter-warp read one address), and the
// slices' partial sums are added in slice order: results do not depend on timing.
//
// The state is passed between blocks through L2, in one of two ways:
//   tagged: each value is stored with the step it belongs to in one 8-byte word; readers spin on
//           the words themselves. No fence, no flag, no barrier: one trip through L2 per step.
//   flags:  values are stored plainly; each block then publishes "step s done" in its own flag
//           (fence, release store); readers wait for every block's flag, then copy the state into
//           shared memory with cp.async (all of it in flight at once). Half the bytes of the
//           tagged words; faster than them from B = 4 up on an H200 (perf-notes).
// ---------------------------------------------------------------------------------------------
constexpr int kResidentK = 128;      // weights per thread
constexpr int kResidentChunk = 32;   // a slice is a multiple of this many columns
enum class Exchange : int { tagged = 0, flags = 1 };

__device__ __forceinline__ unsigned long long load_volatile(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ void load_volatile2(const unsigned long long* p, unsigned long long (&v)[2]) {
  asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(v[0]), "=l"(v[1]) : "l"(p));
}
// 16 bytes from global memory (through L2) to shared memory without a register; complete, for the
// issuing thread, at copy_wait().
__device__ __forceinline__ void copy_async16(void* shared, const void* global) {
  const unsigned to = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(to), "l"(global) : "memory");
}
__device__ __forceinline__ void copy_wait() { asm volatile("cp.async.wait_all;" ::: "memory"); }
__device__ __forceinline__ void store_volatile(unsigned long long* p, unsigned long long v) {
  asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned long long tagged_word(float v, unsigned tag) {
  return (static_cast<unsigned long long>(tag) << 32) | __float_as_uint(v);
}

// Positions (b, q) of rows of Q items, from item `start` on in steps of `step` items, without a
// division per step.
struct RowWalk {
  int b, q, db, dq, Q;
  __device__ RowWalk(int start, int step, int items) : b(start / items), q(start % items), db(step / items),
                                                        dq(step % items), Q(items) {}
  __device__ void next() {
    b += db, q += dq;
    if (q >= Q) q -= Q, ++b;
  }
};

// out[q * ldo] = sum over this thread's slice of w[i] * v[q * ldv + i], i ascending, for Q
// sequences: v is the slice's first column of the first sequence (16-byte aligned, ldv a multiple
// of 4).
template <int Q>
__device__ __forceinline__ void resident_pass(const float (&w)[kResidentK], int chunks, const float* v, int ldv,
                                              float* out, int ldo) {
  float acc[Q];
#pragma unroll
  for (int q = 0; q < Q; ++q) acc[q] = 0.f;
#pragma unroll
  for (int c = 0; c < kResidentK / kResidentChunk; ++c) {
    if (c >= chunks) break;  // uniform across the block
#pragma unroll
    for (int i = c * kResidentChunk; i < (c + 1) * kResidentChunk; i += 4) {
#pragma unroll
      for (int q = 0; q < Q; ++q) {
        const float4 x = *reinterpret_cast<const float4*>(v + q * ldv + i);
        acc[q] = fmaf(w[i], x.x, acc[q]);
        acc[q] = fmaf(w[i + 1], x.y, acc[q]);
        acc[q] = fmaf(w[i + 2], x.z, acc[q]);
        acc[q] = fmaf(w[i + 3], x.w, acc[q]);
      }
    }
  }
#pragma unroll
  for (int q = 0; q < Q; ++q) out[q * ldo] = acc[q];
}

// part[(sl * ldp + q) * rows_pad + r] = this thread's partial sums for sequences q < nb of the
// chunk in vbuf (rows of ldv floats), passes of 8, 4, 2 or 1 sequences.
__device__ __forceinline__ void resident_product(const float (&w)[kResidentK], int chunks, const float* vbuf, int ldv,
                                                 int sl, int kslice, int nb, float* part, int ldp, int rows_pad,
                                                 int r) {
  const float* v = vbuf + sl * kslice;
  float* out = part + static_cast<std::size_t>(sl) * ldp * rows_pad + r;
  int q0 = 0;
  for (; q0 + 8 <= nb; q0 += 8) resident_pass<8>(w, chunks, v + q0 * ldv, ldv, out + q0 * rows_pad, rows_pad);
  if (q0 + 4 <= nb) resident_pass<4>(w, chunks, v + q0 * ldv, ldv, out + q0 * rows_pad, rows_pad), q0 += 4;
  if (q0 + 2 <= nb) resident_pass<2>(w, chunks, v + q0 * ldv, ldv, out + q0 * rows_pad, rows_pad), q0 += 2;
  if (q0 < nb) resident_pass<1>(w, chunks, v + q0 * ldv, ldv, out + q0 * rows_pad, rows_pad);
}

// The shape of a register-resident block: rows_pad x slices threads (<= the block), each slice
// kslice columns (a multiple of kResidentChunk, at most kResidentK), ld = slices * kslice >= K.
struct ResidentShape {
  int rows_pad = 0, slices = 0, kslice = 0;
  __host__ __device__ int ld() const { return slices * kslice; }
};
// Empty reason: rows x K fits the block's registers.
inline ResidentShape resident_shape(int rows, index_t K, int threads, std::string& reason) {
  ResidentShape r;
  r.rows_pad = 1;
  while (r.rows_pad < rows) r.rows_pad *= 2;
  if (r.rows_pad > threads) {
    reason = "a block's " + std::to_string(rows) + " rows do not fit the register-resident kernel";
    return r;
  }
  const index_t by_chunks = (K + kResidentChunk - 1) / kResidentChunk;
  r.slices = static_cast<int>(std::min<index_t>(threads / r.rows_pad, by_chunks));
  const index_t per = (K + r.slices - 1) / r.slices;
  r.kslice = static_cast<int>((per + kResidentChunk - 1) / kResidentChunk * kResidentChunk);
  if (r.kslice > kResidentK)
    reason = "a block's slice of the weights (" + std::to_string(rows) + " x " + std::to_string(K) +
             ") does not fit the register-resident kernel";
  return r;
}

// One chunk of nb sequences, in vbuf (rows of ld floats), through the block's product:
// out[b * ldo + row] = sum over slices, in slice order, of the partial sums, for b < nb and
// row < rows. Every thread of the block calls it (it synchronises: vbuf is complete on entry, and
// vbuf and part may be reused on return).
__device__ __forceinline__ void resident_chunk(const float (&w)[kResidentK], const ResidentShape& sh, const float* vbuf,
                                               int nb, float* part, int ldp, int rows, float* out, int ldo) {
  const int r = threadIdx.x % sh.rows_pad, sl = threadIdx.x / sh.rows_pad;
  __syncthreads();
  if (sl < sh.slices) resident_product(w, sh.kslice / kResidentChunk, vbuf, sh.ld(), sl, sh.kslice, nb, part, ldp,
                                       sh.rows_pad, r);
  __syncthreads();
  for (int e = threadIdx.x; e < nb * rows; e += blockDim.x) {
    const int b = e / rows, row = e - b * rows;
    float sum = 0.f;
    for (int q = 0; q < sh.slices; ++q) sum += part[(q * ldp + b) * sh.rows_pad + row];
    out[b * ldo + row] = sum;
  }
  __syncthreads();
}

// FUSEDRNN_CUDA_PERSISTENT (tests and benchmarks): "shared" forces the shared-memory persistent
// kernels, "tagged" or "flags" the register-resident ones where they fit, the forward with that
// exchange (the backward has flags only); unset or empty: the forward's kernel and exchange by
// size, the shared-memory backward. Read at each call.
enum class PersistentKind { shared, tagged, flags, automatic };
inline PersistentKind persistent_override() {
  const char* v = std::getenv("FUSEDRNN_CUDA_PERSISTENT");
  if (v == nullptr || *v == '\0') return PersistentKind::automatic;
  const std::string s(v);
  if (s == "shared") return PersistentKind::shared;
  if (s == "tagged") return PersistentKind::tagged;
  if (s == "flags") return PersistentKind::flags;
  throw std::invalid_argument("FUSEDRNN_CUDA_PERSISTENT must be shared, tagged or flags, not '" + s + "'");
}

// What the device offers a persistent kernel.
struct DeviceLimits {
  int sms = 0, smem_optin = 0, cooperative = 0;
};
DeviceLimits device_limits();  // the current device (cached per device); runtime.cu

// The persistent plan: grid size, units per block, sequences per chunk, shared memory.
struct PersistentPlan {
  int blocks = 0, units = 0, columns = 0, chunk = 0;
  ResidentShape resident;  // rows_pad == 0: the shared-memory kernel
  std::size_t smem = 0;
  std::string reason;  // empty: the kernel can run
};

// Fills the plan's occupancy check for `kernel` (sets its shared-memory attribute).
template <class Kernel>
void check_residency(PersistentPlan& plan, Kernel kernel, const DeviceLimits& dev) {
  if (!plan.reason.empty()) return;
  FUSEDRNN_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(plan.smem)));
  int per_sm = 0;
  FUSEDRNN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kPersistentThreads, plan.smem));
  if (static_cast<long long>(per_sm) * dev.sms < plan.blocks)
    plan.reason = "the " + std::to_string(plan.blocks) + " blocks of the persistent kernel cannot all be resident (" +
                  std::to_string(per_sm) + " per SM x " + std::to_string(dev.sms) + " SMs)";
}

// Chooses U (units per block) and the chunk so that the block's slices fit in shared memory.
// `fixed(U)` is the bytes that do not depend on the chunk, `per_row` the bytes per chunk row.
template <class Fixed>
void plan_slices(PersistentPlan& plan, const DeviceLimits& dev, index_t H, index_t B, Fixed fixed,
                 std::size_t per_row) {
  if (!dev.cooperative) {
    plan.reason = "the device does not support cooperative launches";
    return;
  }
  if (dev.sms <= 0 || dev.smem_optin <= 0) {
    plan.reason = "the device reports no multiprocessors or shared memory";
    return;
  }
  plan.units = static_cast<int>((H + dev.sms - 1) / dev.sms);
  plan.blocks = static_cast<int>((H + plan.units - 1) / plan.units);
  const std::size_t base = fixed(plan.units, plan.blocks);
  // 16: the chunk's region is rounded up to 16 bytes.
  if (base + per_row + 16 > static_cast<std::size_t>(dev.smem_optin)) {
    plan.reason = "the persistent kernel's slice of the weights and state needs " + std::to_string(base + per_row + 16) +
                  " bytes of shared memory per block; the device allows " + std::to_string(dev.smem_optin);
    return;
  }
  const std::size_t rows = (static_cast<std::size_t>(dev.smem_optin) - base - 16) / per_row;
  plan.chunk = static_cast<int>(std::min<std::size_t>(rows, static_cast<std::size_t>(B)));
  if (plan.chunk < 1) plan.chunk = 1;
}

// The register-resident plan: U units per block as for the shared-memory kernels, the block's
// rows_per_unit * U rows over K columns in registers (resident_shape), and as many sequences per
// chunk as shared memory holds. bytes(U, shape, bc) is the kernel's shared memory for chunks of bc;
// what grows with bc is vbuf [bc, ld] and part [slices, bc, rows_pad] in both kernels.
template <class Kernel, class Bytes>
PersistentPlan plan_resident(index_t H, index_t B, int rows_per_unit, index_t K, Kernel kernel, Bytes bytes) {
  PersistentPlan plan;
  const DeviceLimits dev = device_limits();
  if (!dev.cooperative || dev.sms <= 0 || dev.smem_optin <= 0) {
    plan.reason = "the device does not support the persistent kernels";
    return plan;
  }
  plan.units = static_cast<int>((H + dev.sms - 1) / dev.sms);
  plan.blocks = static_cast<int>((H + plan.units - 1) / plan.units);
  plan.resident = resident_shape(rows_per_unit * plan.units, K, kPersistentThreads, plan.reason);
  if (!plan.reason.empty()) return plan;
  const ResidentShape& r = plan.resident;
  const std::size_t fixed = bytes(plan.units, r, 0);
  const std::size_t per_row = sizeof(float) * (r.ld() + r.slices * r.rows_pad) + 32;  // 32: alignment
  if (fixed + per_row > static_cast<std::size_t>(dev.smem_optin)) {
    plan.reason = "the register-resident kernel's state needs more shared memory than the device allows";
    return plan;
  }
  plan.chunk = static_cast<int>(std::min<std::size_t>((dev.smem_optin - fixed) / per_row, B));
  plan.smem = bytes(plan.units, r, plan.chunk);
  check_residency(plan, kernel, dev);
  return plan;
}

// ---------------------------------------------------------------------------------------------
// One unit's backward step (time t, sequence b, unit j), given dh = d loss / d (the cell's output
// at step t), dy included. Writes the gate gradients of step t (dgates, and dgates_rec for GRU),
// returns the direct part of dh entering the step in dh_direct and updates the LSTM dc (d loss /
// d c leaving the step on entry, entering it on exit). Padding: zero gate gradients, dh passes
// through, dc unchanged. Stores bypass L1 (the persistent kernel's other blocks read them).
// ---------------------------------------------------------------------------------------------
template <class Cell, class S>
__device__ __forceinline__ void backward_unit(const BackwardParams<S>& p, S* dgr, index_t t, index_t b, index_t j,
                                              acc_t<S> dh, acc_t<S>& dh_direct, acc_t<S>& dc) {
  using A = acc_t<S>;
  constexpr int G = Cell::G;
  const index_t B = p.n.B, H = p.n.H, P = p.n.P, GH = G * H;
  const index_t row = t * B + b;
  S* dg = p.dgates + row * GH + j;
  S* dgr_j = dgr + row * GH + j;
  if (!active(p.n, b, t)) {
    const S zero = from_acc<S>(A(0));
#pragma unroll
    for (int g = 0; g < G; ++g) {
      store_cg(dg + g * H, zero);
      if constexpr (Cell::kSplitRecurrentGrad) store_cg(dgr_j + g * H, zero);
    }
    dh_direct = dh;
    return;
  }
  A a[G], dxp[G], dhp[G];
#pragma unroll
  for (int g = 0; g < G; ++g) a[g] = to_acc(p.gates[row * GH + g * H + j]);
  A aux = A(0), h_old = A(0), c_old = A(0), direct = A(0);
  if constexpr (Cell::kHasAux) aux = to_acc(p.aux[row * H + j]);
  if constexpr (Cell::kHasCellState) {
    c_old = to_acc(p.c_prev[row * H + j]);
  } else {
    h_old = to_acc(p.h_prev[row * P + j]);  // RNN/GRU: P == H
  }
  Cell::backward(a, aux, h_old, c_old, dh, dc, dxp, dhp, direct);
#pragma unroll
  for (int g = 0; g < G; ++g) {
    store_cg(dg + g * H, from_acc<S>(dxp[g]));
    if constexpr (Cell::kSplitRecurrentGrad) store_cg(dgr_j + g * H, from_acc<S>(dhp[g]));
  }
  dh_direct = direct;
}

}  // namespace fusedrnn::cuda
