// The whole-sequence products (input projection, dx, dW, dR, dW_hr), the bias gradients' column
// sums, and small element-wise helpers. A plain shared-memory tiled GEMM (no cuBLAS, to keep the
// wheel small): 64 x 64 output tiles, depth 16 per stage, 256 threads with 4 x 4 outputs each.
// Each output element is summed by one thread over k in order: bitwise deterministic.
#include <type_traits>

#include "kernels.cuh"

namespace fusedrnn::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kGemmThreads = 256;

// Block (bx, by) computes C[bx*64 .. +64, by*64 .. +64]; thread (tx, ty) = (tid % 16, tid / 16)
// computes rows ty + 16 i and columns tx + 16 j, i, j < 4 (strided, so that a warp's shared
// memory reads are broadcasts (A) or consecutive (B)).
template <class S, class Out>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(index_t M, index_t N, index_t K, View<S> A, View<S> B, Out* __restrict__ C, index_t ldc,
                const S* __restrict__ bias) {
  using Acc = acc_t<S>;
  __shared__ Acc As[kBK][kBM + 1];  // As[k][m] = A(m0 + m, k0 + k); +1: no bank conflicts on stores
  __shared__ Acc Bs[kBK][kBN + 1];  // Bs[k][n] = B(k0 + k, n0 + n)
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  for (index_t m_tile = blockIdx.x; m_tile * kBM < M; m_tile += gridDim.x) {
    const index_t m0 = m_tile * kBM;
    for (index_t n_tile = blockIdx.y; n_tile * kBN < N; n_tile += gridDim.y) {
      const index_t n0 = n_tile * kBN;
      Acc acc[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = Acc(0);
      for (index_t k0 = 0; k0 < K; k0 += kBK) {
        // Stage the tiles; the thread -> element map follows whichever index is contiguous.
#pragma unroll
        for (int r = 0; r < kBK * kBM / kGemmThreads; ++r) {
          const int e = tid + r * kGemmThreads;
          int m, k;
          if (A.cs == 1) {
            m = e / kBK, k = e % kBK;
          } else {
            m = e % kBM, k = e / kBM;
          }
          const index_t gm = m0 + m, gk = k0 + k;
          As[k][m] = (gm < M && gk < K) ? to_acc(A.data[gm * A.rs + gk * A.cs]) : Acc(0);
        }
#pragma unroll
        for (int r = 0; r < kBK * kBN / kGemmThreads; ++r) {
          const int e = tid + r * kGemmThreads;
          int n, k;
          if (B.cs == 1) {
            k = e / kBN, n = e % kBN;
          } else {
            n = e / kBK, k = e % kBK;
          }
          const index_t gn = n0 + n, gk = k0 + k;
          Bs[k][n] = (gn < N && gk < K) ? to_acc(B.data[gk * B.rs + gn * B.cs]) : Acc(0);
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < kBK; ++k) {
          Acc a[4], b[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
          for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
          for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const index_t gm = m0 + ty + 16 * i;
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const index_t gn = n0 + tx + 16 * j;
          if (gn >= N) continue;
          const Acc base = bias ? to_acc(bias[gn]) : Acc(0);
          if constexpr (std::is_same_v<Out, Acc>)
            C[gm * ldc + gn] = base + acc[i][j];
          else
            C[gm * ldc + gn] = from_acc<S>(base + acc[i][j]);
        }
      }
    }
  }
}

// One thread per column, rows in order.
template <class S>
__global__ void column_sums_kernel(const S* __restrict__ M, index_t rows, index_t cols, S* __restrict__ out) {
  using Acc = acc_t<S>;
  for (index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; c < cols;
       c += static_cast<index_t>(gridDim.x) * blockDim.x) {
    Acc sum = Acc(0);
    for (index_t r = 0; r < rows; ++r) sum += to_acc(M[r * cols + c]);
    out[c] = from_acc<S>(sum);
  }
}

template <class S>
__global__ void zero_padding_kernel(S* __restrict__ x, index_t T, index_t B, index_t I,
                                    const std::int64_t* __restrict__ lengths) {
  const index_t total = T * B * I;
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t t = e / (B * I), b = (e / I) % B;
    if (t >= lengths[b]) x[e] = from_acc<S>(acc_t<S>(0));
  }
}

template <class S>
__global__ void to_acc_kernel(const S* __restrict__ src, acc_t<S>* __restrict__ dst, index_t n) {
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<index_t>(gridDim.x) * blockDim.x)
    dst[e] = to_acc(src[e]);
}

template <class S>
__global__ void from_acc_kernel(const acc_t<S>* __restrict__ src, S* __restrict__ dst, index_t n) {
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<index_t>(gridDim.x) * blockDim.x)
    dst[e] = from_acc<S>(src[e]);
}

}  // namespace

template <class S, class Out>
void gemm(index_t M, index_t N, index_t K, View<S> A, View<S> B, Out* C, index_t ldc, const S* bias,
          cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid(capped_grid((M + kBM - 1) / kBM, 2147483647), capped_grid((N + kBN - 1) / kBN, 65535));
  gemm_kernel<S, Out><<<grid, kGemmThreads, 0, stream>>>(M, N, K < 0 ? 0 : K, A, B, C, ldc, bias);
  check_launch("gemm_kernel");
}

template <class S>
void column_sums(const S* M, index_t rows, index_t cols, S* out, cudaStream_t stream) {
  if (cols <= 0) return;
  column_sums_kernel<S><<<elementwise_blocks(cols), kElementwiseThreads, 0, stream>>>(M, rows < 0 ? 0 : rows,
                                                                                      cols, out);
  check_launch("column_sums_kernel");
}

template <class S>
void zero_padding_typed(S* x, index_t T, index_t B, index_t I, const std::int64_t* lengths, cudaStream_t stream) {
  if (lengths == nullptr || T * B * I <= 0) return;
  zero_padding_kernel<S><<<elementwise_blocks(T * B * I), kElementwiseThreads, 0, stream>>>(x, T, B, I, lengths);
  check_launch("zero_padding_kernel");
}

template <class S>
void to_acc_async(const S* src, acc_t<S>* dst, index_t n, cudaStream_t stream) {
  if (n <= 0) return;
  to_acc_kernel<S><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(src, dst, n);
  check_launch("to_acc_kernel");
}

template <class S>
void from_acc_async(const acc_t<S>* src, S* dst, index_t n, cudaStream_t stream) {
  if (n <= 0) return;
  from_acc_kernel<S><<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(src, dst, n);
  check_launch("from_acc_kernel");
}

#define FUSEDRNN_INSTANTIATE(S)                                                                              \
  template void gemm<S, S>(index_t, index_t, index_t, View<S>, View<S>, S*, index_t, const S*, cudaStream_t); \
  template void column_sums<S>(const S*, index_t, index_t, S*, cudaStream_t);                               \
  template void zero_padding_typed<S>(S*, index_t, index_t, index_t, const std::int64_t*, cudaStream_t);    \
  template void to_acc_async<S>(const S*, acc_t<S>*, index_t, cudaStream_t);                                \
  template void from_acc_async<S>(const acc_t<S>*, S*, index_t, cudaStream_t);
FUSEDRNN_INSTANTIATE(float)
FUSEDRNN_INSTANTIATE(double)
FUSEDRNN_INSTANTIATE(__half)
FUSEDRNN_INSTANTIATE(__nv_bfloat16)
#undef FUSEDRNN_INSTANTIATE
template void gemm<__half, float>(index_t, index_t, index_t, View<__half>, View<__half>, float*, index_t,
                                  const __half*, cudaStream_t);
template void gemm<__nv_bfloat16, float>(index_t, index_t, index_t, View<__nv_bfloat16>, View<__nv_bfloat16>,
                                         float*, index_t, const __nv_bfloat16*, cudaStream_t);

}  // namespace fusedrnn::cuda
