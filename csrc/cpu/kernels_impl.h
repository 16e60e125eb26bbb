// The CPU kernels, written once and compiled once per instruction set.
//
// Included by isa_<name>.cpp after it defines FUSEDRNN_ISA_NAMESPACE (the namespace everything
// here lands in) and FUSEDRNN_VECTOR_BYTES (16 portable/SSE2, 32 AVX2, 64 AVX-512). The code is
// plain C++ shaped for the auto-vectorizer: fixed-size register tiles indexed by constants,
// pointwise math on fixed-length lane arrays, exp/tanh in arithmetic (cells.h).
//
// Forward:  gates[T,B,GH] = x W^T + b_w (one GEMM), then per step and per block of kUnits hidden
//           units: the block's G gate pre-activations R h + b_r are accumulated in registers from a
//           gate-interleaved packed R (for up to 4-8 sequences per pass over it, or 5-16 over an h
//           packed per step), and the cell's pointwise math runs on them at once. The activated
//           gates overwrite the projection in place. With a projection, a second pass per step
//           maps m = o * tanh(c) to h = W_hr m.
// Backward: one reverse walk. Without projection, transition s turns the gate gradients of step s
//           into dh entering step s (dgates_rec[s] R plus the cell's direct term) per block of
//           units and in the same pass differentiates step s-1 for that block. With a projection,
//           dh lives in P space: per step (1) the total dh, (2) dm = dh W_hr with the pointwise
//           derivative, (3) dh entering the step = dgates R. Then dX, dW, dR (dW_hr) and the bias
//           gradients are whole-sequence GEMMs and column sums.
// Threads: one team for the whole call; each rank owns fixed blocks of units (so its slice of R
// stays in its cache) and meets the others at one barrier per step (two with a projection).
// Each rank walks its blocks in ascending order on even steps and descending on odd ones: when its
// slice of R is a little larger than its cache, the blocks it read last are still cached when the
// next step starts with them (in one direction, a least-recently-used cache would miss on all).
// In large steps (share_rows) a rank that finishes its own blocks early takes what is left of the
// others', from their far end, in tasks of one block and a chunk of rows (Team::share).
// Every output element is computed in a fixed order whichever rank computes it: results are
// bitwise identical for any number of threads. Allocation happens only before the time loop.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "fusedrnn/cells.h"
#include "gemm.h"
#include "kernels.h"
#include "threads.h"

namespace fusedrnn::cpu::FUSEDRNN_ISA_NAMESPACE {
namespace {

constexpr int kVectorBytes = FUSEDRNN_VECTOR_BYTES;

// Units per block in the step kernels: one vector per gate, so that a block's slice of R is one
// contiguous stream and several sequences can share each vector of it (block_product_rows).
template <class S>
constexpr int kUnits = kVectorBytes / static_cast<int>(sizeof(S));

template <class S>
index_t num_blocks(index_t n) {
  return (n + kUnits<S> - 1) / kUnits<S>;
}

// Denormal inputs and results flushed to zero for the duration of a kernel, on this thread only.
class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// Storage for scratch of `bytes`, uninitialised. From 2 MB up it is aligned to 2 MB and, on Linux,
// asked for in huge pages: a recurrent matrix read from memory at every step then streams without
// a TLB miss and a restarted hardware prefetch every 4 KB (the step's loop streams ~15-25% faster
// here, at the plain-read rate: docs/perf-notes.md). Where the kernel grants none, it stays in 4 KB
// pages.
struct FreeBytes {
  void operator()(unsigned char* p) const { std::free(p); }
};
using ScratchBytes = std::unique_ptr<unsigned char[], FreeBytes>;

inline ScratchBytes allocate_scratch(std::size_t bytes) {
  constexpr std::size_t kHugePage = std::size_t{2} << 20;
  const std::size_t align = bytes >= kHugePage ? kHugePage : 64;
  const std::size_t rounded = (bytes + align - 1) / align * align;  // aligned_alloc needs a multiple
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return ScratchBytes(static_cast<unsigned char*>(p));
}

// Storage one kernel call fills before reading and needs only while it runs: left uninitialised,
// and kept by the thread for its next call, up to kKeptScratchBytes per slot (so a thread that
// ran large calls holds that much per slot afterwards). Fresh pages cost a fault and a clearing
// each: up to a fifth of a small call's time, and ~4% of an LSTM H = 1536 forward, whose packed
// R is 38 MB. Larger requests are allocated for the call alone. A thread
// holds one Scratch per slot at a time (it runs one call at a time; a call uses each slot once).
enum ScratchSlot {
  kRecurrentSlot, kRecurrentBlockSlot, kBiasSlot, kProjectionSlot, kGemmASlot, kGemmBSlot, kGatesSlot, kPackedHSlot,
  kScratchSlots
};
constexpr std::size_t kKeptScratchBytes = std::size_t{64} << 20;

inline unsigned char* kept_scratch(ScratchSlot slot, std::size_t bytes) {
  struct Kept {
    ScratchBytes data;
    std::size_t bytes = 0;
  };
  thread_local Kept kept[kScratchSlots];
  Kept& k = kept[slot];
  if (k.bytes < bytes) {
    k.data.reset();  // freed before the larger one is allocated, and forgotten if that throws
    k.bytes = 0;
    k.data = allocate_scratch(bytes);
    k.bytes = bytes;
  }
  return k.data.get();
}

template <class S>
class Scratch {
 public:
  Scratch(ScratchSlot slot, index_t n) {
    const std::size_t bytes = sizeof(S) * static_cast<std::size_t>(std::max<index_t>(n, 1));
    if (bytes > kKeptScratchBytes) {
      own_ = allocate_scratch(bytes);
      data_ = reinterpret_cast<S*>(own_.get());
    } else {
      data_ = reinterpret_cast<S*>(kept_scratch(slot, bytes));
    }
  }
  S* get() const { return data_; }

 private:
  ScratchBytes own_;
  S* data_;
};

// ---------------------------------------------------------------------------------------------
// GEMM: C[M, N] = (accumulate ? C : column_bias or 0) + A[M, K] B[K, N], this rank's share.
// Packed, cache-blocked, with an MR x NR register tile (NR = two vectors). Never reads C unless
// accumulating. Each C element is computed by one rank (with B packed already, by whichever rank
// takes its row task) and summed over k in a fixed order.
// ---------------------------------------------------------------------------------------------
template <class S>
struct Tile {
  static constexpr int NR = 2 * kVectorBytes / static_cast<int>(sizeof(S));
  static constexpr int MR = kVectorBytes == 16 ? 4 : 6;
  // Rows of the register tile in GEMMs of at least kWideFromRows rows: on AVX-512 12 (24 of the 32
  // vector registers hold accumulators, and each k's loads of B feed twice as many FMAs). In-process
  // A/B (perf-notes, fourteenth session; benchmarks/patches/gemm_wide.patch): most of the kernels'
  // large GEMMs 0.970-0.994 of the time, LSTM H=1024 B=64 forwards 0.957-0.993, forward +
  // backward 0.983-0.984. Shorter GEMMs keep MR: at T * B = 100 rows 12-row tiles leave too few
  // row tasks to share (gemm_task_rows), and a B = 1 forward read 1.026-1.027x slower; at M = 1-4
  // the GEMM read 1.04-1.05x.
  static constexpr int MR_WIDE = kVectorBytes == 64 ? 12 : MR;
  static constexpr index_t kWideFromRows = 192;
  static constexpr index_t MC = 96;
  // Depth (KC) and columns (NC) of a packed block of B. On AVX-512 from this machine's caches, as
  // the GEMM walks row tile by row tile (rows_first): one wide tile's A panel (MR_WIDE x KC) fills
  // half the L1 and stays there while the tile sweeps the B block (KC x NC), which fills half the
  // L2, but at least 1 MB (48 KB and 2 MB: 512 and 512; 48 KB and 1 MB: 512 and 512; 32 KB and
  // 1 MB: 336 and 768, not measured). On an Intel Xeon,
  // against KC = 1024, NC = 2048 in the order of the rule below: with 384 and 1024 the kernels' mid
  // and large GEMMs took 0.85-0.96 of the time (two shapes 1.04), 512 and 768 within 1.5% of that
  // (perf-notes, sixteenth session; benchmarks/patches/gemm_blocking.patch). A B block of half the
  // L2 rather than three quarters (NC 512, not 768): large GEMMs 0.91-0.96, M = 1-25 0.87-0.91, the
  // rest level; forwards and forward + backward 0.89-1.00 (eighteenth session;
  // benchmarks/patches/gemm_kc_nc_env.patch). AVX2 and the portable build keep 256 and 2048: the
  // same model made AVX2 1.5-3% slower there. On an AMD Zen 5 (L2 1 MB), where half the L2 gave
  // NC 256, a B block of 1 MB (NC 512) took large GEMMs 0.95-0.99 of the time, M <= 200 level, and
  // forwards and forward + backward 0.98-1.00; 2 MB (NC 1024) large GEMMs 0.95-0.98 of that again
  // but M = 1-25 1.02-1.04 (nineteenth session; benchmarks/patches/gemm_kc_nc_env.patch): the B
  // block streams from L3 fast enough there, so its floor is what suits the other machine.
  static index_t KC() { return blocking().kc; }
  static index_t NC() { return blocking().nc; }
  static constexpr bool rows_first = kVectorBytes == 64;

 private:
  struct Blocking {
    index_t kc, nc;
  };
  static Blocking blocking() {
    static const Blocking b = [] {
      if constexpr (!rows_first) return Blocking{256, 2048};
      index_t l1 = 32 << 10, l2 = 1 << 20;  // when the system cannot tell
#if defined(__linux__) && defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
      if (const long v = sysconf(_SC_LEVEL1_DCACHE_SIZE); v >= (16 << 10) && v <= (1 << 20)) l1 = v;
      if (const long v = sysconf(_SC_LEVEL2_CACHE_SIZE); v >= (256 << 10) && v <= (64 << 20)) l2 = v;
#endif
      const index_t kc = std::clamp<index_t>(l1 / 2 / (MR_WIDE * index_t(sizeof(S))) / 16 * 16, 128, 1024);
      const index_t b_block = std::max<index_t>(l2 / 2, 1 << 20);
      const index_t nc = std::clamp<index_t>(b_block / (kc * index_t(sizeof(S))) / NR * NR, 4 * NR, 4096);
      return Blocking{kc, nc};
    }();
    return b;
  }
};

#if defined(__AVX__)
// v[j] = column j of the 8 x 8 float tile whose rows start at rows + i * stride (rows n to 7 read
// as zero). Row i's halves are loaded into the 128-bit lanes where a transpose within lanes leaves
// them (row i beside row i + 4), so nothing crosses a lane afterwards: 8 unpacks, 4 shuffles and 8
// blends. The transpose of whole registers took 24 shuffles, and Intel cores run shuffles on one
// port: that bound the packing of R and W (the plain forward of one step, LSTM H = 128, spent half
// its time there; perf-notes, seventeenth session).
template <int n>
FUSEDRNN_INLINE void load_transposed8x8(const float* rows, index_t stride, __m256 (&v)[8]) {
  static_assert(n >= 1 && n <= 8, "rows per tile");
  for (int i = 0; i < 4; ++i) {
    const float* upper = rows + i * stride;
    const float* lower = rows + (i + 4) * stride;
    const __m128 zero = _mm_setzero_ps();
    const __m256 first = _mm256_castps128_ps256(i < n ? _mm_loadu_ps(upper) : zero);
    const __m256 second = _mm256_castps128_ps256(i < n ? _mm_loadu_ps(upper + 4) : zero);
    v[i] = _mm256_insertf128_ps(first, i + 4 < n ? _mm_loadu_ps(lower) : zero, 1);
    v[i + 4] = _mm256_insertf128_ps(second, i + 4 < n ? _mm_loadu_ps(lower + 4) : zero, 1);
  }
  // 4 x 4 transposes within each lane, of v[0..3] (columns 0-3) and of v[4..7] (columns 4-7)
  for (int q = 0; q < 8; q += 4) {
    const __m256 t0 = _mm256_unpacklo_ps(v[q], v[q + 1]), t1 = _mm256_unpackhi_ps(v[q], v[q + 1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[q + 2], v[q + 3]), t3 = _mm256_unpackhi_ps(v[q + 2], v[q + 3]);
    const __m256 s02 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 3, 2));
    const __m256 s13 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 3, 2));
    v[q] = _mm256_blend_ps(t0, s02, 0xCC);
    v[q + 1] = _mm256_blend_ps(s02, t2, 0xCC);
    v[q + 2] = _mm256_blend_ps(t1, s13, 0xCC);
    v[q + 3] = _mm256_blend_ps(s13, t3, 0xCC);
  }
}
#endif

// out[k * out_stride + r] = rows[r * stride + k] for r < R and k below the returned count (a
// multiple of 8; the caller moves the rest): float panels through 8 x 8 register transposes, where
// element by element such a transpose took ~4 cycles per element (derived from perf shares: 17%
// of an LSTM T=25 B=1 H=1024 forward in pack_rows, a quarter in the GEMM's packing of W_ih).
// R a multiple of 8, below 8 or 12 (the GEMM's A panels on AVX2/AVX-512: its dx GEMM 5% faster;
// the step's packed h). Other types: 0.
template <int R, class S>
index_t transpose_panel(const S* rows, index_t stride, index_t depth, S* out, index_t out_stride) {
  index_t k = 0;
#if defined(__AVX__)
  __m256 v[8];
  if constexpr (std::is_same_v<S, float> && R % 8 == 0) {
    for (; k + 8 <= depth; k += 8)
      for (int r = 0; r < R; r += 8) {
        load_transposed8x8<8>(rows + r * stride + k, stride, v);
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + (k + j) * out_stride + r, v[j]);
      }
  } else if constexpr (std::is_same_v<S, float> && R < 8) {  // the GEMM's A panels, a GRU's packed h
    // Rows R to 7 are zero. Each k's 8 floats are stored in order, so that its 8 - R extra ones land
    // on the next k's first ones and are overwritten by them (out_stride == R); the last 8 k's are
    // left to the caller, so nothing is written past the panel.
    for (; k + 8 < depth; k += 8) {
      load_transposed8x8<R>(rows + k, stride, v);
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + (k + j) * out_stride, v[j]);
    }
  } else if constexpr (std::is_same_v<S, float> && R == 12) {  // the GEMM's wide A panels on AVX-512
    // Rows 0-7 in one transpose, rows 8-11 and four zero rows in another. Each k's second half (8
    // floats from column 8) is stored first: its four extra floats land on the next k's first
    // four, which that k's first half then overwrites (out_stride == 12). As for R < 8, the last
    // 8 k's are left to the caller, so nothing is written past the panel.
    __m256 w[8];
    for (; k + 8 < depth; k += 8) {
      load_transposed8x8<8>(rows + k, stride, v);
      load_transposed8x8<4>(rows + 8 * stride + k, stride, w);
      for (int j = 0; j < 8; ++j) {
        _mm256_storeu_ps(out + (k + j) * out_stride + 8, w[j]);
        _mm256_storeu_ps(out + (k + j) * out_stride, v[j]);
      }
    }
  }
#else
  (void)rows, (void)stride, (void)depth, (void)out, (void)out_stride;
#endif
  return k;
}

// dst[p][k][r] = src(i0 + p*R + r, k0 + k), zero past `rows`.
template <class S, int R>
void pack_panels(MatrixView<S> src, index_t i0, index_t rows, index_t k0, index_t depth, S* dst) {
  if (src.row_stride == 1) {
    // A transposed operand (the backward's dgates^T, x and W): for each k the rows are adjacent.
    // Panel by panel over all of depth, every k jumped to another row of the source (4 KB apart at
    // H = 256), one miss per k; k by k over all panels, each k's R values went to a different
    // panel, stores spread over ~16 lines. So: blocks of k whose runs of `rows` stay in L1, and
    // within a block panel by panel, each written in one run (GEMM M=4096 N=1024 K=1600 with A
    // transposed 2-3% faster than k by k).
    const index_t k_block = std::max<index_t>(8, (index_t{16} << 10) / (rows * index_t{sizeof(S)}));
    for (index_t kb = 0; kb < depth; kb += k_block) {
      const index_t kn = std::min(k_block, depth - kb);
      for (index_t p = 0; p < rows; p += R) {
        const index_t valid = std::min<index_t>(R, rows - p);
        const S* run = src.data + i0 + p + (k0 + kb) * src.col_stride;
        S* out = dst + p * depth + kb * R;
        for (index_t k = 0; k < kn; ++k, run += src.col_stride, out += R) {
          if (valid == R) {
            std::memcpy(out, run, sizeof(S) * R);
          } else {
            for (index_t r = 0; r < R; ++r) out[r] = r < valid ? run[r] : S(0);
          }
        }
      }
    }
    return;
  }
  for (index_t p = 0; p < rows; p += R) {
    const index_t valid = std::min<index_t>(R, rows - p);
    S* out = dst + p * depth;
    if (src.col_stride == 1) {  // rows contiguous in k: read each row once
      const S* row0 = src.data + (i0 + p) * src.row_stride + k0;
      // The next panel's rows: short runs of far-apart rows (weights streamed from memory) are
      // read at a third of the bandwidth unless asked for ahead.
      for (index_t r = 0; r < R && p + R + r < rows; ++r)
        for (index_t k = 0; k < depth; k += 64 / sizeof(S)) __builtin_prefetch(row0 + (R + r) * src.row_stride + k);
      const index_t k_done = valid == R ? transpose_panel<R>(row0, src.row_stride, depth, out, R) : 0;
      for (index_t r = 0; r < R; ++r) {
        const S* row = row0 + r * src.row_stride;
        for (index_t k = k_done; k < depth; ++k) out[k * R + r] = r < valid ? row[k] : S(0);
      }
    } else {
      for (index_t k = 0; k < depth; ++k)
        for (index_t r = 0; r < R; ++r) out[k * R + r] = r < valid ? src(i0 + p + r, k0 + k) : S(0);
    }
  }
}

// A vector of kVectorBytes (GCC/Clang vector extensions: one source for every width; arithmetic
// on it compiles to that ISA's SIMD instructions; fma() is one rounding where the ISA has FMA).
template <class S>
struct Simd {
  typedef S V __attribute__((vector_size(kVectorBytes)));
  static constexpr int W = kVectorBytes / static_cast<int>(sizeof(S));
  static V load(const S* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(S* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V broadcast(S x) {
    // Each width its own intrinsic: GCC 12 builds a 64-byte vector from the loop below through
    // four 16-byte stack stores and one 64-byte reload (a failed store forward per broadcast),
    // which made the AVX-512 kernels 5x slower than the AVX2 ones.
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64 && sizeof(S) == 4) return reinterpret_cast<V>(_mm512_set1_ps(x));
    if constexpr (sizeof(V) == 64 && sizeof(S) == 8) return reinterpret_cast<V>(_mm512_set1_pd(x));
#endif
#if defined(__AVX__)
    if constexpr (sizeof(V) == 32 && sizeof(S) == 4) return reinterpret_cast<V>(_mm256_set1_ps(x));
    if constexpr (sizeof(V) == 32 && sizeof(S) == 8) return reinterpret_cast<V>(_mm256_set1_pd(x));
#endif
    V v;
    for (int i = 0; i < W; ++i) v[i] = x;
    return v;
  }
  // a * b + c, one rounding where the ISA has FMA. Spelled out for the products rather than left
  // to -ffp-contract, so that every instantiation of a product (one row or eight, split or not)
  // rounds alike whatever the compiler's contraction decides: a sequence's result must not depend
  // on how many others run beside it.
  static V fma(V a, V b, V c) {
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64 && sizeof(S) == 4)
      return reinterpret_cast<V>(_mm512_fmadd_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b),
                                                 reinterpret_cast<__m512>(c)));
    if constexpr (sizeof(V) == 64 && sizeof(S) == 8)
      return reinterpret_cast<V>(_mm512_fmadd_pd(reinterpret_cast<__m512d>(a), reinterpret_cast<__m512d>(b),
                                                 reinterpret_cast<__m512d>(c)));
#endif
#if defined(__FMA__)
    if constexpr (sizeof(V) == 32 && sizeof(S) == 4)
      return reinterpret_cast<V>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b),
                                                 reinterpret_cast<__m256>(c)));
    if constexpr (sizeof(V) == 32 && sizeof(S) == 8)
      return reinterpret_cast<V>(_mm256_fmadd_pd(reinterpret_cast<__m256d>(a), reinterpret_cast<__m256d>(b),
                                                 reinterpret_cast<__m256d>(c)));
#endif
    return a * b + c;
  }
};

// C[rows, cols] (+)= a b for one tile: a holds MR rows per k (Rows of them real), b NR columns per
// k. Rows is a template parameter so that a short tile (a GEMM with M < MR, as T * B = 1 in
// generation) does only its own rows' multiply-adds.
template <class S, int Rows, int MR>
void micro_kernel(index_t depth, const S* a, const S* b, S* c, index_t ldc, index_t cols, bool overwrite,
                  const S* bias) {
  using V = typename Simd<S>::V;
  constexpr int NR = Tile<S>::NR, W = Simd<S>::W, NV = NR / W;
  V acc[Rows][NV];
  for (int i = 0; i < Rows; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  // gemm calls with 1 <= depth <= KC. Told so, GCC keeps the accumulators in registers from the
  // zeroing to the stores into C; for a depth of 0 it had kept a zeroed copy of all twelve on the
  // stack and gone through it after the loop (GEMMs 1-8% faster: perf-notes, ninth session).
  if (depth <= 0) __builtin_unreachable();
  for (index_t k = 0; k < depth; ++k) {
    V bk[NV];
    for (int v = 0; v < NV; ++v) bk[v] = Simd<S>::load(b + k * NR + v * W);
    for (int i = 0; i < Rows; ++i) {
      const V ai = Simd<S>::broadcast(a[k * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = Simd<S>::fma(ai, bk[v], acc[i][v]);
    }
  }
  if (cols == NR) {
    for (int i = 0; i < Rows; ++i)
      for (int v = 0; v < NV; ++v) {
        S* ci = c + i * ldc + v * W;
        const V base = overwrite ? (bias ? Simd<S>::load(bias + v * W) : V{}) : Simd<S>::load(ci);
        Simd<S>::store(ci, base + acc[i][v]);
      }
    return;
  }
  S tile[Rows][NR];
  for (int i = 0; i < Rows; ++i)
    for (int v = 0; v < NV; ++v) Simd<S>::store(&tile[i][v * W], acc[i][v]);
  for (int i = 0; i < Rows; ++i) {
    S* ci = c + i * ldc;
    if (overwrite)
      for (index_t j = 0; j < cols; ++j) ci[j] = (bias ? bias[j] : S(0)) + tile[i][j];
    else
      for (index_t j = 0; j < cols; ++j) ci[j] += tile[i][j];
  }
}

// micro_kernel for a run-time row count, 1 <= rows <= MR (a holds MR rows per k).
template <class S, int MR, int Rows = MR>
void micro_kernel(index_t rows, index_t depth, const S* a, const S* b, S* c, index_t ldc, index_t cols,
                  bool overwrite, const S* bias) {
  if constexpr (Rows > 1)
    if (rows < Rows) return micro_kernel<S, MR, Rows - 1>(rows, depth, a, b, c, ldc, cols, overwrite, bias);
  micro_kernel<S, Rows, MR>(depth, a, b, c, ldc, cols, overwrite, bias);
}

// All of B [K, N] packed as gemm packs one block of it: the block (jc, pc) starts at
// packed + pc * padded_n + jc * kc, where padded_n is N rounded up to whole panels.
template <class S>
index_t padded_panels(index_t N) {
  return (N + Tile<S>::NR - 1) / Tile<S>::NR * Tile<S>::NR;
}

template <class S>
void pack_gemm_b(Team& team, index_t N, index_t K, MatrixView<S> B, S* packed) {
  using TL = Tile<S>;
  const MatrixView<S> Bt{B.data, B.col_stride, B.row_stride};
  long p0, p1;
  team.split((N + TL::NR - 1) / TL::NR, &p0, &p1);
  const index_t j0 = std::min<index_t>(N, p0 * TL::NR), j1 = std::min<index_t>(N, p1 * TL::NR);
  if (j1 <= j0) return;
  const index_t KC = TL::KC();
  for (index_t pc = 0; pc < K; pc += KC) {
    const index_t kc = std::min(KC, K - pc);
    pack_panels<S, TL::NR>(Bt, j0, j1 - j0, pc, kc, packed + pc * padded_panels<S>(N) + j0 * kc);
  }
}

// Row tasks per rank from which a GEMM with B packed already shares its rows, and the WorkRange slot
// it uses: not slot 0, which a forward's ranks reset for its first step while others may still be
// in the input projection.
constexpr long kGemmMinTasksPerRank = 4;
constexpr int kGemmWorkSlot = 1;

// Rows per task when gemm, given B packed already, shares its rows among `ranks` ranks; 0 where it
// does not (fewer than kGemmMinTasksPerRank tasks per rank). MC rows, except in a short product
// whose ranks split the columns (N >= M) and whose rows are few (T * B = 100 at B = 1), where MC
// would leave one or two tasks: there whole register tiles enough for kGemmMinTasksPerRank tasks,
// so that a rank that starts first can take over part of one still waking up (20-60 us on this
// VM; perf-notes, thirteenth session). In longer products the wake-up is lost in the work, and
// the extra passes over B cost more (GRU B = 4 H = 1536: 3% slower).
constexpr double kGemmShortFlops = 1e8;
template <class S, int MR>
index_t gemm_task_rows(int ranks, index_t M, index_t N, index_t K) {
  using TL = Tile<S>;
  if (ranks < 2 || M <= 0 || N <= 0 || K <= 0) return 0;
  index_t rows = TL::MC;
  if (N >= M && 2.0 * M * N * K <= kGemmShortFlops) {
    const index_t quarter = (M + kGemmMinTasksPerRank - 1) / kGemmMinTasksPerRank;
    rows = std::min<index_t>(TL::MC, (quarter + MR - 1) / MR * MR);
  }
  const long tasks = static_cast<long>((M + rows - 1) / rows);
  return tasks >= kGemmMinTasksPerRank * (N >= M ? 1 : ranks) ? rows : 0;
}

// gemm with register tiles of MR rows.
template <class S, int MR>
void gemm_tiled(Team& team, index_t M, index_t N, index_t K, MatrixView<S> A, MatrixView<S> B, S* C, index_t ldc,
                bool accumulate, const S* column_bias, const S* b_prepacked) {
  using TL = Tile<S>;
  // Split the larger dimension among the ranks, in whole tiles: rank r's rows and columns.
  auto extent = [&](int r, index_t* i0, index_t* i1, index_t* j0, index_t* j1) {
    long b, e;
    *i0 = 0, *i1 = M, *j0 = 0, *j1 = N;
    if (N >= M) {
      team.split(r, (N + TL::NR - 1) / TL::NR, &b, &e);
      *j0 = std::min<index_t>(N, b * TL::NR), *j1 = std::min<index_t>(N, e * TL::NR);
    } else {
      team.split(r, (M + MR - 1) / MR, &b, &e);
      *i0 = std::min<index_t>(M, b * MR), *i1 = std::min<index_t>(M, e * MR);
    }
  };
  index_t i_begin, i_end, j_begin, j_end;
  extent(team.rank(), &i_begin, &i_end, &j_begin, &j_end);
  // With B packed already and enough rows, the ranks share their extents in tasks of rows
  // (gemm_task_rows) each: a rank that finishes early takes the others' last tasks (Team::share;
  // the ranks' speeds vary from moment to moment, perf-notes, twelfth session). Each C element is
  // summed as in the fixed split, whichever rank computes it.
  const index_t task_rows = b_prepacked ? gemm_task_rows<S, MR>(team.size(), M, N, K) : 0;
  const bool share = task_rows > 0;
  const index_t m = i_end - i_begin, n = j_end - j_begin;
  if (!share && (m <= 0 || n <= 0)) return;
  if (K <= 0) {
    if (!accumulate)
      for (index_t i = i_begin; i < i_end; ++i)
        for (index_t j = j_begin; j < j_end; ++j) C[i * ldc + j] = column_bias ? column_bias[j] : S(0);
    return;
  }
  const MatrixView<S> Bt{B.data, B.col_stride, B.row_stride};  // B(k, j) as rows j of a [N, K] matrix
  const index_t KC = TL::KC(), NC = TL::NC();
  const index_t nc_max = std::min(n, NC), kc_max = std::min(K, KC);
  const index_t mc_max = std::min(share ? M : m, TL::MC);  // a task of another rank's: up to MC rows
  const Scratch<S> b_packed(kGemmBSlot, b_prepacked ? 0 : padded_panels<S>(nc_max) * kc_max);
  const Scratch<S> a_packed(kGemmASlot, ((mc_max + MR - 1) / MR) * MR * kc_max);
  // Tile order within a block. On AVX-512 row tile by row tile (Tile::rows_first). Elsewhere
  // column panel by column panel (each B panel reused from L1/L2 by every row tile) unless this
  // rank's C is larger than the L2 and its B block at most 4 MB: then row tile by row tile, so that
  // C is written as a stream of whole rows rather than 96 rows at once 4 KB apart, and the B block
  // is re-read from L2/L3 per row tile (perf-notes, ninth session, on Zen 4 with KC = 1024: LSTM
  // H=256 input projections 1600-3200 x 1024 x 256 9-14% faster; M = 25-100 6-16% slower in that
  // order, hence the size condition). Shared rows keep the fixed split's order.
  const bool rows_outer = TL::rows_first ||
                          (static_cast<double>(m) * static_cast<double>(n) * sizeof(S) >= double(1 << 20) &&
                           static_cast<double>(nc_max) * static_cast<double>(kc_max) * sizeof(S) <= double(4 << 20));
  auto compute = [&](index_t i_lo, index_t i_hi, index_t j_lo, index_t j_hi) {
    for (index_t jc = j_lo; jc < j_hi; jc += NC) {
      const index_t nc = std::min(NC, j_hi - jc);
      for (index_t pc = 0; pc < K; pc += KC) {
        const index_t kc = std::min(KC, K - pc);
        const bool overwrite = (pc == 0) && !accumulate;
        const S* b_block = b_prepacked ? b_prepacked + pc * padded_panels<S>(N) + jc * kc : b_packed.get();
        if (!b_prepacked) pack_panels<S, TL::NR>(Bt, jc, nc, pc, kc, b_packed.get());
        for (index_t ic = i_lo; ic < i_hi; ic += TL::MC) {
          const index_t mc = std::min(TL::MC, i_hi - ic);
          pack_panels<S, MR>(A, ic, mc, pc, kc, a_packed.get());
          auto tile = [&](index_t ir, index_t jr) {
            micro_kernel<S, MR>(std::min<index_t>(MR, mc - ir), kc, a_packed.get() + ir * kc, b_block + jr * kc,
                            C + (ic + ir) * ldc + jc + jr, ldc, std::min<index_t>(TL::NR, nc - jr), overwrite,
                            column_bias ? column_bias + jc + jr : nullptr);
          };
          if (rows_outer) {
            for (index_t ir = 0; ir < mc; ir += MR)
              for (index_t jr = 0; jr < nc; jr += TL::NR) tile(ir, jr);
          } else {
            for (index_t jr = 0; jr < nc; jr += TL::NR)
              for (index_t ir = 0; ir < mc; ir += MR) tile(ir, jr);
          }
        }
      }
    }
  };
  if (!share) return compute(i_begin, i_end, j_begin, j_end);
  team.work_range(kGemmWorkSlot, team.rank()).reset(m > 0 && n > 0 ? (m + task_rows - 1) / task_rows : 0);
  team.share(kGemmWorkSlot, 0, [&](int owner, long item) {
    index_t i0, i1, j0, j1;
    extent(owner, &i0, &i1, &j0, &j1);
    const index_t row = i0 + item * task_rows;
    compute(row, std::min(i1, row + task_rows), j0, j1);
  });
}

// b_packed: B already packed by pack_gemm_b (then B is not read), or nullptr. Every C element is
// the same sum in the same order whichever tile computes it, so the choice of tile never changes
// a result.
template <class S>
void gemm(Team& team, index_t M, index_t N, index_t K, MatrixView<S> A, MatrixView<S> B, S* C, index_t ldc,
          bool accumulate, const S* column_bias = nullptr, const S* b_prepacked = nullptr) {
  using TL = Tile<S>;
  if (TL::MR_WIDE != TL::MR && M >= TL::kWideFromRows)
    return gemm_tiled<S, TL::MR_WIDE>(team, M, N, K, A, B, C, ldc, accumulate, column_bias, b_prepacked);
  gemm_tiled<S, TL::MR>(team, M, N, K, A, B, C, ldc, accumulate, column_bias, b_prepacked);
}

// out[c] = sum over rows of M[row][c] for this rank's columns, rows in order.
template <class S>
void column_sums(Team& team, const S* M, index_t rows, index_t cols, S* out) {
  long c0, c1;
  team.split(cols, &c0, &c1);
  std::fill(out + c0, out + c1, S(0));
  for (index_t row = 0; row < rows; ++row)
    for (index_t c = c0; c < c1; ++c) out[c] += M[row * cols + c];
}

// ---------------------------------------------------------------------------------------------
// Packing of the recurrent matrices and the block product.
// ---------------------------------------------------------------------------------------------

// The bias [G*units] of blocks [blk0, blk1) as the forward's steps read it: bias_packed[block][g][u]
// (zero past `units`).
template <class S>
void pack_bias(const S* bias, index_t G, index_t units, long blk0, long blk1, S* bias_packed) {
  constexpr int U = kUnits<S>;
  for (index_t blk = blk0; blk < blk1; ++blk)
    for (index_t g = 0; g < G; ++g) {
      const index_t valid = std::min<index_t>(U, units - blk * U), row0 = g * units + blk * U;
      for (index_t u = 0; u < U; ++u) bias_packed[(blk * G + g) * U + u] = u < valid ? bias[row0 + u] : S(0);
    }
}

// Rows of M [G*units, K] regrouped for the forward, in groups of GG gates (G = NG * GG), blocks
// [blk0, blk1) (each rank packs the blocks its steps read, so they start in its own cache):
// packed[block - first][q][k][gi][u] = M[(q*GG + gi)*units + block*kUnits + u][k] (zero past
// `units`), so that a pass over one gate group of one block is one contiguous stream; `first` is 0,
// or blk0 where one block is packed alone. The bias, when given, as pack_bias writes it. Written
// k-major: kUnits contiguous stores per k, from kUnits rows that stay in L1 across the k loop;
// whole float blocks go through 8 x 8 register transposes.
template <class S>
void pack_rows(const S* M, const S* bias, index_t G, index_t GG, index_t units, index_t K, long blk0, long blk1,
               S* packed, S* bias_packed, long first = 0) {
  constexpr int U = kUnits<S>;
  if (bias_packed) pack_bias(bias, G, units, blk0, blk1, bias_packed);
  for (index_t blk = blk0; blk < blk1; ++blk)
    for (index_t g = 0; g < G; ++g) {
      const index_t valid = std::min<index_t>(U, units - blk * U), row0 = g * units + blk * U;
      S* dst = packed + ((blk - first) * G + g / GG * GG) * K * U + g % GG * U;
      index_t k = valid == U ? transpose_panel<U>(M + row0 * K, K, K, dst, GG * U) : 0;
      for (; k < K; ++k) {
        S* out = dst + k * GG * U;
        for (index_t u = 0; u < valid; ++u) out[u] = M[(row0 + u) * K + k];
        for (index_t u = valid; u < U; ++u) out[u] = S(0);
      }
    }
}

// Columns of M [rows, cols] regrouped for the backward in panels of NV blocks, panels
// [panel0, panel1): packed[panel][k][v][u] = M[k][(panel*NV + v)*kUnits + u] (zero past `cols`).
template <class S>
void pack_columns(const S* M, index_t rows, index_t cols, index_t NV, long panel0, long panel1, S* packed) {
  const index_t width = NV * kUnits<S>;
  for (index_t panel = panel0; panel < panel1; ++panel) {
    const index_t j0 = panel * width, valid = std::min<index_t>(width, cols - j0);
    for (index_t k = 0; k < rows; ++k) {
      S* out = packed + (panel * rows + k) * width;
      std::copy(M + k * cols + j0, M + k * cols + j0 + valid, out);
      std::fill(out + valid, out + width, S(0));
    }
  }
}

// out[i] = bias[i] + sum_k block[k][i] * v[k], i < G*kUnits (bias nullptr: 0). The accumulators
// are indexed only by constants, so they stay in registers for the whole k loop.
template <int G, class S>
inline void block_product(const S* block, const S* v, index_t K, const S* bias, S* out) {
  using V = typename Simd<S>::V;
  constexpr int W = Simd<S>::W, NV = G * kUnits<S> / W;
  V acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = bias ? Simd<S>::load(bias + i * W) : V{};
  for (index_t k = 0; k < K; ++k) {
    const V vk = Simd<S>::broadcast(v[k]);
    const S* bk = block + k * NV * W;
    for (int i = 0; i < NV; ++i) acc[i] = Simd<S>::fma(Simd<S>::load(bk + i * W), vk, acc[i]);
  }
  for (int i = 0; i < NV; ++i) Simd<S>::store(out + i * W, acc[i]);
}

// How far ahead (bytes) a product streaming R from memory asks for it, and whether it should: a
// recurrent matrix larger than the cores' L2 caches together is read from L3 or memory at every
// step, where prefetching gained 10-20% (LSTM H = 1536, B = 4, third session, 1 KB ahead); one
// that fits in cache loses as much to the extra instruction (LSTM H = 128, B = 1). 256 bytes
// rather than 1 KB (perf-notes, tenth session): AVX-512 forwards streaming R 3-17% faster (LSTM
// H = 1024-1536, B = 1-16), even where R is in the L2 (B >= 8) and on AVX2. On this Zen 4 no
// prefetch at all streams R as fast (0.98-1.01); the 1 KB gain above is from an AVX2-only VM.
constexpr int kPrefetchAhead = 256;
template <class S>
bool streams_from_memory(index_t r_packed_size) {
  return static_cast<std::size_t>(r_packed_size) * sizeof(S) > (std::size_t{4} << 20);
}

// The forward's step asks for R ahead from this many sequences up even when R fits in the L2, on
// the guess that each group's pointwise work (W x, c, the stores of h, y and c) pushes R's lines
// out of L1 between one group's products and the next (not confirmed: the VM has no counters).
// In-process A/B (perf-notes, tenth session; 1 KB ahead): LSTM H=256-512 B=16-64 forwards 2-5%
// faster in one hour and 4-6% slower in another; 256 bytes ahead, even or faster. At B = 2 6-7%
// slower, at B = 4 0-7%. The backward's walk gains nothing.
constexpr index_t kPrefetchRFromBatch = 8;

// One k of block_product_rows: acc[r][g] += block[k][g] * v[r][k], or with a packed v (Stride > 0)
// v[0][k * Stride + r]. Always inlined, and called with a constant index into the caller's
// accumulators, so that they stay in registers (when GCC kept this a lambda over acc[s] with a loop
// over s, it stored every accumulator at every k).
template <int GG, int Rows, bool PrefetchR, int Stride, class V, class S>
FUSEDRNN_INLINE void block_product_step(const S* block, const S* const* v, index_t k, V (&acc)[Rows][GG]) {
  constexpr int U = kUnits<S>;
  const S* bk = block + k * GG * U;
#if defined(__x86_64__) || defined(_M_X64)
  // One prefetch per 64-byte line of the k step (GG vectors: 64 bytes for an AVX2 LSTM, 128 for an
  // AVX-512 one; with one prefetch per step AVX-512 streamed R 1.2-1.3x slower than AVX2).
  if constexpr (PrefetchR)
    for (int line = 0; line < static_cast<int>(GG * U * sizeof(S)); line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(bk) + kPrefetchAhead + line, _MM_HINT_T0);
#endif
  V rv[GG];
  for (int g = 0; g < GG; ++g) rv[g] = Simd<S>::load(bk + g * U);
  for (int r = 0; r < Rows; ++r) {
    const V x = Simd<S>::broadcast(Stride > 0 ? v[0][k * Stride + r] : v[r][k]);
    for (int g = 0; g < GG; ++g) acc[r][g] = Simd<S>::fma(rv[g], x, acc[r][g]);
  }
}

// Several sequences share each vector of R loaded: out[r*out_stride + g*U + u] = bias[g*U + u] +
// sum_k block[k][g][u] * v[r][k] for r < Rows, g < GG (one vector of kUnits each), with
// k split into Split interleaved partial sums added in a fixed order at the end. Split x Rows x GG
// accumulators, at most 12 (they and the GG vectors of R fit the 16 AVX2 registers), or 24 over a
// packed v on AVX-512 (kPackedRows; with 3 vectors of R and a broadcast, 28 of its 32).
template <int GG, int Rows, int Split, bool PrefetchR, int Stride, class S>
inline void block_product_rows(const S* block, const S* const* v, index_t K, const S* bias, S* out,
                               index_t out_stride) {
  using V = typename Simd<S>::V;
  constexpr int U = kUnits<S>;
  static_assert(U == Simd<S>::W && Split * Rows * GG <= (Stride > 0 ? 24 : 12) &&
                (Split == 1 || Split == 2 || Split == 4));
  V acc[Split][Rows][GG];
  for (int s = 0; s < Split; ++s)
    for (int r = 0; r < Rows; ++r)
      for (int g = 0; g < GG; ++g) acc[s][r][g] = (bias && s == 0) ? Simd<S>::load(bias + g * U) : V{};
  index_t k = 0;
  for (; k + Split <= K; k += Split) {  // written out: a loop over s left acc[s] in memory
    block_product_step<GG, Rows, PrefetchR, Stride>(block, v, k, acc[0]);
    if constexpr (Split >= 2) block_product_step<GG, Rows, PrefetchR, Stride>(block, v, k + 1, acc[1]);
    if constexpr (Split == 4) {
      block_product_step<GG, Rows, PrefetchR, Stride>(block, v, k + 2, acc[2]);
      block_product_step<GG, Rows, PrefetchR, Stride>(block, v, k + 3, acc[3]);
    }
  }
  for (; k < K; ++k) block_product_step<GG, Rows, PrefetchR, Stride>(block, v, k, acc[0]);
  for (int s = 1; s < Split; ++s)
    for (int r = 0; r < Rows; ++r)
      for (int g = 0; g < GG; ++g) acc[0][r][g] += acc[s][r][g];
  for (int r = 0; r < Rows; ++r)
    for (int g = 0; g < GG; ++g) Simd<S>::store(out + r * out_stride + g * U, acc[0][r][g]);
}

// Gates per pass over R in the forward and the most sequences one pass carries (Rows x GG <= 12).
// LSTM passes over two gates at a time, so that up to 6 sequences share one read of R.
template <int G>
constexpr int kGateGroup = G == 4 ? 2 : G;
template <int GG>
constexpr int kMaxRows = GG == 1 ? 8 : 12 / GG;
// Sequences per pass when the step's h is packed k-major per group (pack_h_groups), or 0 where it
// is not: float forwards on AVX-512 (LSTM 8 rows of a gate pair, 16 accumulators; GRU 8 of its
// three gates, 24; Elman 16 of its one, 16). Reading h row by row, 8- and 12-row LSTM passes were
// 1-3% and 2-6% slower than 6-row ones (step_acc.patch); over one packed stream 12 rows were still
// slower, and 8 rows took LSTM B = 16-64 H = 256-1024 forwards 0.954-0.987 of the 6-row time; GRU
// B = 16-32 0.957-0.978 of the 4-row time, Elman B = 64 0.911 of the 8-row time (perf-notes,
// fourteenth session; benchmarks/patches/packed_h.patch). On an Intel Xeon (two 512-bit FMA ports)
// GRU passes of 8 rows took its steps 0.87-0.90 of the 5-row time; LSTM passes of 6 rows over all
// four gates were 0.88-1.21 of the 8-row time by batch and level in whole calls, Elman passes of 24
// rows 1.46 (perf-notes, sixteenth session; benchmarks/patches/wide_tiles.patch).
template <int GG, class S>
constexpr int kPackedRows = kVectorBytes == 64 && std::is_same_v<S, float> ? (GG == 1 ? 16 : 8) : 0;
// From this batch up (below it, packing h at every step cost a B = 1 forward 13-21%).
constexpr index_t kPackedHFromBatch = 8;

// The k split for a call with batch B: with fewer than 6 accumulators too few multiply-adds are in
// flight to hide the FMA latency (5 cycles at one per cycle). It depends on B only, never on how
// many sequences of a group are still running, so a sequence's result does not depend on the
// others' lengths.
template <int GG>
int k_split(index_t B) {
  return B * GG <= 2 ? 4 : B * GG <= 4 ? 2 : 1;
}

// The same for a run-time count of rows (1 <= rows <= MaxRows, rows * GG * split <= 12, or 24 over
// a packed v: Stride == MaxRows).
template <int GG, bool PrefetchR, class S, int MaxRows = kMaxRows<GG>, int Stride = 0, int N = 1>
inline void block_product_rows(int rows, int split, const S* block, const S* const* v, index_t K, const S* bias,
                               S* out, index_t out_stride) {
  if constexpr (N <= MaxRows) {
    if (rows == N) {
      if constexpr (4 * N * GG <= 12)
        if (split == 4) return block_product_rows<GG, N, 4, PrefetchR, Stride>(block, v, K, bias, out, out_stride);
      if constexpr (2 * N * GG <= 12)
        if (split == 2) return block_product_rows<GG, N, 2, PrefetchR, Stride>(block, v, K, bias, out, out_stride);
      return block_product_rows<GG, N, 1, PrefetchR, Stride>(block, v, K, bias, out, out_stride);
    }
    block_product_rows<GG, PrefetchR, S, MaxRows, Stride, N + 1>(rows, split, block, v, K, bias, out, out_stride);
  }
}

// out[g][k][r] = h[g * Rows + r][k] for the groups of Rows sequences in [0, B) (zero past B): the
// step's h for passes that read one stream of it (kPackedRows). Each rank packs all of it, from h
// complete after the previous step's barrier, into its own buffer.
template <int Rows, class S>
void pack_h_groups(const S* h, index_t B, index_t P, S* out) {
  for (index_t b0 = 0; b0 < B; b0 += Rows, out += Rows * P) {
    const index_t real = std::min<index_t>(Rows, B - b0);
    const S* rows = h + b0 * P;
    const index_t done = real == Rows ? transpose_panel<Rows>(rows, P, P, out, Rows) : 0;
    for (index_t k = done; k < P; ++k)
      for (index_t r = 0; r < Rows; ++r) out[k * Rows + r] = r < real ? rows[r * P + k] : S(0);
  }
}

// n <= kUnits lanes. A whole block is a fixed-size copy the compiler turns into one vector move
// (a run-time length became a call to memmove, ~5% of a B = 16 LSTM's time).
template <class S>
FUSEDRNN_INLINE void copy_lanes(const S* src, index_t n, S* dst) {
  if (n == kUnits<S>) {
    std::memcpy(dst, src, sizeof(S) * kUnits<S>);
  } else {
    for (index_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// All kUnits lanes of dst: n <= kUnits from src, zero past them (the lanes past the last unit run
// through the cell math too). Cheaper than clearing dst first, which GCC does with `rep stos`.
template <class S>
FUSEDRNN_INLINE void load_lanes(const S* src, index_t n, S* dst) {
  if (n == kUnits<S>) {
    std::memcpy(dst, src, sizeof(S) * kUnits<S>);
  } else {
    for (index_t i = 0; i < kUnits<S>; ++i) dst[i] = i < n ? src[i] : S(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

// One step at time t for the blocks [blk0, blk1) of hidden units. gates_t [B, GH] holds W x + b_w
// on entry and, with keep_gates (a tape), the activated gates on exit; h [B, P] and c [B, H] enter
// the step; the cell's output goes to h_next and y_t, or with a projection to m_t [B, H] (then
// project_step). With Packed (MaxRows = kPackedRows), h_packed is h packed by pack_h_groups, every
// sequence runs all T steps, and b0 is a multiple of MaxRows, so that each group is one of its
// groups; the products read it instead of h's rows, with the same sums. r_packed holds R packed
// by pack_rows from block r_first on (0: all of R; blk0 where it holds that block alone).
template <class Cell, bool Project, bool PrefetchR, bool Packed, class S>
void forward_step(const Sizes& n, index_t t, bool descending, bool keep_gates, long blk0, long blk1, index_t b0,
                  index_t b1, const S* r_packed, long r_first, const S* b_packed, const S* h, const S* h_packed,
                  const S* c, S* gates_t, S* h_next, S* c_next, S* y_t, S* aux_t, S* m_t) {
  constexpr int G = Cell::G, U = kUnits<S>, GG = kGateGroup<G>;
  constexpr int MaxRows = Packed ? kPackedRows<GG, S> : kMaxRows<GG>;
  static_assert(MaxRows > 0);
  const index_t B = n.B, H = n.H, P = n.P, GH = G * H;
  const int split = k_split<GG>(B);
  for (index_t i = 0; i < blk1 - blk0; ++i) {
    const index_t blk = descending ? blk1 - 1 - i : blk0 + i;
    const S* rp = r_packed + (blk - r_first) * P * G * U;
    const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
    index_t group[MaxRows];
    int rows = 0;
    for (index_t b = b0; b < b1; ++b) {
      if (!n.active(b, t)) {  // padding: the state is kept, y is 0
        if constexpr (Project) {
          std::fill(m_t + b * H + j0, m_t + b * H + j0 + units, S(0));  // dW_hr's GEMM reads every row
        } else {
          copy_lanes(h + b * P + j0, units, h_next + b * P + j0);
          std::fill(y_t + b * P + j0, y_t + b * P + j0 + units, S(0));
        }
        if constexpr (Cell::kHasCellState) copy_lanes(c + b * H + j0, units, c_next + b * H + j0);
      } else {
        group[rows++] = b;
      }
      if (rows == 0 || (rows < MaxRows && b + 1 < b1)) continue;
      // The group's gate pre-activations R h + b_r, then each sequence's pointwise math.
      S hp_rows[MaxRows][G * U];
      const S* h_rows[MaxRows];
      for (int r = 0; r < rows; ++r) h_rows[r] = h + group[r] * P;
      // The group's rows of W x + b (written by the GEMM long before: in L3 or memory) into L2 now,
      // while its products run, and each into L1 one row ahead of its cell math. Their load stall
      // was ~11% of the step at LSTM H = 1024, B = 64 with a prefetch one block ahead, which the
      // block's R stream evicts from L1 when B is large; ~8% now (perf), end to end 1-3% faster.
      // (The block-ahead prefetch, kept beside it, measured 0-4% slower than none.) The same for
      // the old cell state: written by this rank one step earlier, but a step's stream of R (8 MB
      // per rank at H = 1024) has evicted it since; its load was 5% of the step's samples there.
      for (int r = 0; r < rows; ++r) {
        for (int g = 0; g < G; ++g) __builtin_prefetch(gates_t + group[r] * GH + g * H + j0, 0, 2);
        if constexpr (Cell::kHasCellState) __builtin_prefetch(c + group[r] * H + j0, 0, 2);
      }
      if constexpr (Packed) h_rows[0] = h_packed + group[0] * P;  // group[0] / MaxRows groups before it
      for (int q = 0; q < G / GG; ++q)
        block_product_rows<GG, PrefetchR, S, MaxRows, Packed ? MaxRows : 0>(
            rows, split, rp + q * P * GG * U, h_rows, P, b_packed + (blk * G + q * GG) * U, &hp_rows[0][q * GG * U],
            G * U);
      for (int r = 0; r < rows; ++r) {
        const index_t row = group[r];
        const S* hp = hp_rows[r];
        if (r + 1 < rows) {
          for (int g = 0; g < G; ++g) __builtin_prefetch(gates_t + group[r + 1] * GH + g * H + j0, 0, 3);
          if constexpr (Cell::kHasCellState) __builtin_prefetch(c + group[r + 1] * H + j0, 0, 3);
        }
        S xp[G][U], a[G][U], h_old[U], c_old[U], h_new[U], c_new[U], aux[U];
        S* gb = gates_t + row * GH + j0;
        for (int g = 0; g < G; ++g) load_lanes(gb + g * H, units, xp[g]);
        if constexpr (Cell::kReadsOldH) load_lanes(h + row * P + j0, units, h_old);  // P == H
        else std::fill(h_old, h_old + U, S(0));
        if constexpr (Cell::kHasCellState) load_lanes(c + row * H + j0, units, c_old);
        else std::fill(c_old, c_old + U, S(0));
        for (int u = 0; u < U; ++u) {  // all lanes: a fixed trip count the compiler vectorizes
          S xu[G], hu[G], au[G];
          for (int g = 0; g < G; ++g) xu[g] = xp[g][u], hu[g] = hp[g * U + u];
          c_new[u] = aux[u] = S(0);
          Cell::forward(xu, hu, h_old[u], c_old[u], au, aux[u], h_new[u], c_new[u]);
          for (int g = 0; g < G; ++g) a[g][u] = au[g];
        }
        if (keep_gates)  // for the backward only: without a tape they were 4% of this step's samples
          for (int g = 0; g < G; ++g) copy_lanes(a[g], units, gb + g * H);
        if constexpr (Project) {
          copy_lanes(h_new, units, m_t + row * H + j0);
        } else {
          copy_lanes(h_new, units, h_next + row * P + j0);
          copy_lanes(h_new, units, y_t + row * P + j0);
        }
        if constexpr (Cell::kHasCellState) copy_lanes(c_new, units, c_next + row * H + j0);
        if constexpr (Cell::kHasAux)
          if (aux_t) copy_lanes(aux, units, aux_t + row * H + j0);
      }
      rows = 0;
    }
  }
}

// h_next[b] = W_hr m_t[b] for this rank's output blocks (padding: h kept, y = 0).
template <class S>
void project_step(const Sizes& n, index_t t, long blk0, long blk1, const S* hr_packed, const S* m_t, const S* h,
                  S* h_next, S* y_t) {
  constexpr int U = kUnits<S>;
  const index_t B = n.B, H = n.H, P = n.P;
  for (index_t blk = blk0; blk < blk1; ++blk) {
    const index_t p0 = blk * U, units = std::min<index_t>(U, P - p0);
    for (index_t b = 0; b < B; ++b) {
      if (!n.active(b, t)) {
        copy_lanes(h + b * P + p0, units, h_next + b * P + p0);
        std::fill(y_t + b * P + p0, y_t + b * P + p0 + units, S(0));
        continue;
      }
      S acc[U];
      block_product<1>(hr_packed + blk * H * U, m_t + b * H, H, (const S*)nullptr, acc);
      copy_lanes(acc, units, h_next + b * P + p0);
      copy_lanes(acc, units, y_t + b * P + p0);
    }
  }
}

// R, b_r (blocks [blk0, blk1) of units) and W_hr (blocks [pblk0, pblk1) of P) as the steps read them.
template <class Cell, bool Project, class S>
void pack_recurrent(const ForwardParams<S>& p, long blk0, long blk1, long pblk0, long pblk1, S* r_packed,
                    S* b_packed, S* hr_packed) {
  const index_t H = p.n.H, P = p.n.P;
  pack_rows(p.w_hh, p.b_hh, Cell::G, kGateGroup<Cell::G>, H, P, blk0, blk1, r_packed, b_packed);
  if constexpr (Project) pack_rows(p.w_hr, (const S*)nullptr, 1, 1, P, H, pblk0, pblk1, hr_packed, (S*)nullptr);
}

// What packing the weights [GH, I], [GH, P] (and W_hr [P, H]) weighs in parallel()'s work estimate.
template <bool Project>
double packing_flops(index_t GH, index_t I, index_t P, index_t H) {
  return 4.0 * (GH * (I + P) + (Project ? P * H : 0));
}

// Rows per task when the ranks share a step's work (0: they do not): whole groups of `group` rows,
// enough for kMinTaskFlops of products, or 0 where all B rows have fewer. 1 MFLOP, not the 250
// KFLOP the sharing began with on a Zen 3 VM (~2 us per task there): on an AMD Zen 5 (288 GFLOP/s
// per core, 250 KFLOP ~0.9 us) the shorter tasks cost forwards up to 8% against none shared, and
// did not come back with steals allowed only from a rank two or more tasks behind; 1 MFLOP took
// forwards 0.92-0.99 of the time (LSTM H=256 B=16 0.92, H=256 B=64 0.94, GRU H=512 B=32 0.97,
// LSTM B=4 H=1536 0.98), forward + backward 0.996-1.000 (perf-notes, nineteenth session).
constexpr double kMinTaskFlops = 1e6;
inline index_t share_rows(index_t B, index_t group, double flops_per_row) {
  if (B * flops_per_row < kMinTaskFlops) return 0;
  index_t rows = group;
  while (rows < B && rows * flops_per_row < kMinTaskFlops) rows += group;
  return rows;
}

template <class Cell, bool Project, class S>
void forward_impl(const ForwardParams<S>& p) {
  constexpr int G = Cell::G, U = kUnits<S>;
  constexpr bool lstm = Cell::kHasCellState;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = G * H, BH = B * H, BP = B * P;

  const index_t r_size = num_blocks<S>(H) * P * G * U;
  const bool prepacked = p.packed.w_hh != nullptr;  // then every packed buffer is given
  // The step's h packed per group of kPackedRows sequences, where the cell has such passes and
  // every sequence runs all steps (with lengths, a group's rows are not a packed group's).
  constexpr int packed_rows = kPackedRows<kGateGroup<G>, S>;
  constexpr bool can_pack = packed_rows > 0 && !Project;
  const bool packed_h = can_pack && n.lengths == nullptr && B >= kPackedHFromBatch;
  // Large steps are shared: tasks of one block and a chunk of rows, which a rank that has run out
  // of its own blocks takes from the other ranks' ends (the ranks' speeds here vary from moment
  // to moment; perf-notes, twelfth session). Chunks are whole groups.
  const index_t chunk_rows = share_rows(B, packed_h ? packed_rows : kMaxRows<kGateGroup<G>>, 2.0 * G * U * P);
  const long chunks = chunk_rows > 0 ? static_cast<long>((B + chunk_rows - 1) / chunk_rows) : 1;
  // A single step reads R once: packed whole first, its copy (the size of R) went out to L3 or
  // memory and came back for the step. Packed block by block as the step reaches each block, into
  // a buffer of one block per rank, the copy stays in that core's cache (one-step forwards 0.59-0.85
  // of the time; perf-notes, eighteenth session). Not where a block's rows are split into chunks:
  // each chunk would pack the block again.
  const bool r_by_block = !prepacked && T == 1 && chunks == 1;
  const Scratch<S> r_scratch(kRecurrentSlot, prepacked || r_by_block ? 0 : r_size);
  const Scratch<S> b_scratch(kBiasSlot, prepacked ? 0 : num_blocks<S>(H) * G * U);
  const Scratch<S> hr_scratch(kProjectionSlot, Project && !prepacked ? num_blocks<S>(P) * H * U : 0);
  // Without a tape the caller leaves the gates to us (p.gates nullptr): kept scratch, so that an
  // inference forward does not fault in and clear fresh pages for them at every call (LSTM H=1024
  // B=64 T=50, 52 MB of gates: forward 3-4% faster; H=512 B=64 3%).
  const Scratch<S> gates_scratch(kGatesSlot, p.gates ? 0 : T * B * GH);
  S* const gates = p.gates ? p.gates : gates_scratch.get();
  S* const r_packed = prepacked ? p.packed.w_hh : r_scratch.get();
  S* const b_packed = prepacked ? p.packed.b_hh : b_scratch.get();
  S* const hr_packed = prepacked ? p.packed.w_hr : hr_scratch.get();
  std::vector<S> state(2 * BP + (lstm ? 2 * BH : 0) + (Project && !p.m ? BH : 0));
  S* const h_buf[2] = {state.data(), state.data() + BP};
  S* const c_buf[2] = {lstm ? state.data() + 2 * BP : nullptr, lstm ? state.data() + 2 * BP + BH : nullptr};
  S* const m_work = (Project && !p.m) ? state.data() + 2 * BP + (lstm ? 2 * BH : 0) : nullptr;

  parallel([&](Team& team) {
    FlushDenormals flush;
    // Input projection for all steps: gates[t, b, :] = b_w + x[t, b, :] W^T.
    gemm<S>(team, T * B, GH, I, {p.x, I, 1}, {p.w_ih, 1, I}, gates, GH, false, p.b_ih, p.packed.w_ih);
    long blk0, blk1, pblk0, pblk1;  // this rank's blocks of units (H) and of state columns (P)
    team.split(num_blocks<S>(H), &blk0, &blk1);
    team.split(num_blocks<S>(P), &pblk0, &pblk1);
    // Each rank packs the blocks its own steps read (after the GEMM, so that they start in its cache).
    if (r_by_block) {
      pack_bias(p.b_hh, G, H, blk0, blk1, b_packed);
      if constexpr (Project) pack_rows(p.w_hr, (const S*)nullptr, 1, 1, P, H, pblk0, pblk1, hr_packed, (S*)nullptr);
    } else if (!prepacked) {
      pack_recurrent<Cell, Project>(p, blk0, blk1, pblk0, pblk1, r_packed, b_packed, hr_packed);
    }
    const Scratch<S> block_r(kRecurrentBlockSlot, r_by_block ? P * G * U : 0);  // this rank's
    // R's block blk where the step reads it: in block_r, packed now, or in r_packed.
    auto r_block = [&](long blk) -> std::pair<const S*, long> {
      if (!r_by_block) return {r_packed, 0};
      pack_rows(p.w_hh, (const S*)nullptr, G, kGateGroup<G>, H, P, blk, blk + 1, block_r.get(), (S*)nullptr, blk);
      return {block_r.get(), blk};
    };
    const index_t p_lo = std::min<index_t>(P, pblk0 * U), p_hi = std::min<index_t>(P, pblk1 * U);
    const index_t h_lo = std::min<index_t>(H, blk0 * U), h_hi = std::min<index_t>(H, blk1 * U);
    auto copy_columns = [B](const S* src, S* dst, index_t width, index_t lo, index_t hi) {
      for (index_t b = 0; b < B; ++b) std::copy(src + b * width + lo, src + b * width + hi, dst + b * width + lo);
    };
    copy_columns(p.h0, h_buf[0], P, p_lo, p_hi);
    if constexpr (lstm) copy_columns(p.c0, c_buf[0], H, h_lo, h_hi);
    const bool prefetch_r = streams_from_memory<S>(r_size) || B >= kPrefetchRFromBatch;
    const Scratch<S> h_packed(kPackedHSlot, packed_h ? (B + packed_rows - 1) / packed_rows * packed_rows * P : 0);
    const auto step = packed_h ? (prefetch_r ? forward_step<Cell, Project, true, can_pack, S>
                                             : forward_step<Cell, Project, false, can_pack, S>)
                               : (prefetch_r ? forward_step<Cell, Project, true, false, S>
                                             : forward_step<Cell, Project, false, false, S>);
    const bool share = chunk_rows > 0 && team.size() > 1 && T > 0;
    if (share) team.work_range(0, team.rank()).reset((blk1 - blk0) * chunks);
    team.barrier();  // gates and the initial state complete
    for (index_t s = 0; s < T; ++s) {
      const index_t t = n.time_of(s);
      const S* h = h_buf[s % 2];
      if constexpr (can_pack)
        if (packed_h) pack_h_groups<packed_rows>(h, B, P, h_packed.get());
      S* h_next = h_buf[(s + 1) % 2];
      const S* c = c_buf[s % 2];
      S* c_next = c_buf[(s + 1) % 2];
      if (p.h_prev) copy_columns(h, p.h_prev + t * BP, P, p_lo, p_hi);
      if (lstm && p.c_prev) copy_columns(c, p.c_prev + t * BH, H, h_lo, h_hi);
      S* m_t = Project ? (p.m ? p.m + t * BH : m_work) : nullptr;
      S* const gates_t = gates + t * B * GH;
      S* const aux_t = p.aux ? p.aux + t * BH : nullptr;
      if (r_by_block && !share) {  // T == 1: ascending
        for (long blk = blk0; blk < blk1; ++blk) {
          const auto [r, r_first] = r_block(blk);
          step(n, t, false, p.gates != nullptr, blk, blk + 1, 0, B, r, r_first, b_packed, h, h_packed.get(), c,
               gates_t, h_next, c_next, p.y + t * BP, aux_t, m_t);
        }
      } else if (!share) {
        step(n, t, s % 2 == 1, p.gates != nullptr, blk0, blk1, 0, B, r_packed, 0, b_packed, h, h_packed.get(), c,
             gates_t, h_next, c_next, p.y + t * BP, aux_t, m_t);
      } else {
        team.share(s % 2, s + 1 < T ? (blk1 - blk0) * chunks : 0, [&](int owner, long item) {
          long o0, o1;  // the owner's blocks, walked as it walks them
          team.split(owner, num_blocks<S>(H), &o0, &o1);
          const long i = item / chunks, chunk = item % chunks;
          const long blk = s % 2 == 1 ? o1 - 1 - i : o0 + i;
          const auto [r, r_first] = r_block(blk);
          step(n, t, false, p.gates != nullptr, blk, blk + 1, chunk * chunk_rows,
               std::min<index_t>(B, (chunk + 1) * chunk_rows), r, r_first, b_packed, h, h_packed.get(), c, gates_t,
               h_next, c_next, p.y + t * BP, aux_t, m_t);
        });
      }
      if constexpr (Project) {
        team.barrier();  // m complete
        project_step(n, t, pblk0, pblk1, hr_packed, m_t, h, h_next, p.y + t * BP);
      }
      team.barrier();  // the next state complete
    }
    copy_columns(h_buf[T % 2], p.h_n, P, p_lo, p_hi);
    if constexpr (lstm) copy_columns(c_buf[T % 2], p.c_n, H, h_lo, h_hi);
  }, 2.0 * T * B * GH * (I + P) + 2.0 * T * B * P * H * Project +
     (prepacked ? 0.0 : packing_flops<Project>(GH, I, P, H)));
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------

// Buffers the walk carries from step to step, [B, H].
template <class S>
struct BackwardCarry {
  S* dh_direct;  // the part of d loss / d h_prev not flowing through R (padding: all of it)
  S* dc;         // LSTM: d loss / d c entering the step being differentiated
};

// Step t's pointwise derivative for units [j0, j0+units) of sequence b, given dh[u] = d loss /
// d (the cell's output) at step t, dy included. Padding writes zero gate gradients and passes
// dh through.
template <class Cell, class S>
inline void backward_block(const BackwardParams<S>& p, index_t t, index_t b, index_t j0, index_t units,
                           const S* dh, BackwardCarry<S> carry, S* dgates_rec) {
  constexpr int G = Cell::G, U = kUnits<S>;
  const index_t B = p.n.B, H = p.n.H, GH = G * H;
  S* dg = p.dgates + (t * B + b) * GH + j0;
  S* dgr = dgates_rec + (t * B + b) * GH + j0;
  const index_t bj = b * H + j0, tbj = (t * B + b) * H + j0;
  if (!p.n.active(b, t)) {
    for (int g = 0; g < G; ++g) {
      std::fill(dg + g * H, dg + g * H + units, S(0));
      std::fill(dgr + g * H, dgr + g * H + units, S(0));
    }
    copy_lanes(dh, units, carry.dh_direct + bj);
    return;
  }
  S a[G][U], aux[U], h_old[U], c_old[U], dc[U], dxp[G][U], dhp[G][U], direct[U];
  const S* gates = p.gates + (t * B + b) * GH + j0;
  for (int g = 0; g < G; ++g) load_lanes(gates + g * H, units, a[g]);
  if constexpr (Cell::kHasAux) load_lanes(p.aux + tbj, units, aux);
  else std::fill(aux, aux + U, S(0));
  if constexpr (Cell::kReadsOldH) load_lanes(p.h_prev + tbj, units, h_old);  // P == H
  else std::fill(h_old, h_old + U, S(0));
  if constexpr (Cell::kHasCellState) {
    load_lanes(p.c_prev + tbj, units, c_old);
    load_lanes(carry.dc + bj, units, dc);
  } else {
    std::fill(c_old, c_old + U, S(0));
    std::fill(dc, dc + U, S(0));
  }
  for (int u = 0; u < U; ++u) {
    S au[G], dxu[G], dhu[G];
    for (int g = 0; g < G; ++g) au[g] = a[g][u];
    Cell::backward(au, aux[u], h_old[u], c_old[u], dh[u], dc[u], dxu, dhu, direct[u]);
    for (int g = 0; g < G; ++g) dxp[g][u] = dxu[g], dhp[g][u] = dhu[g];
  }
  for (int g = 0; g < G; ++g) {
    copy_lanes(dxp[g], units, dg + g * H);
    if constexpr (Cell::kSplitRecurrentGrad) copy_lanes(dhp[g], units, dgr + g * H);
  }
  copy_lanes(direct, units, carry.dh_direct + bj);
  if constexpr (Cell::kHasCellState) copy_lanes(dc, units, carry.dc + bj);
}

// dy at (t, b, j0 .. j0+units) added to dh when step t of sequence b is real (padding's dy is
// never read).
template <class S>
inline void add_dy(const BackwardParams<S>& p, index_t t, index_t b, index_t j0, index_t units, S* dh) {
  if (!p.n.active(b, t)) return;
  const S* dy = p.dy + (t * p.n.B + b) * p.n.P + j0;
  for (index_t u = 0; u < units; ++u) dh[u] += dy[u];
}

// Step t's tape rows and dy for sequence b, units [j0, j0 + span), asked for into L2 (prefetcht1):
// backward_block reads them once, long after the forward wrote them (from L3 or memory), and
// their loads stalled the walk (dy alone: ~18% of its samples at LSTM H=256 B=16; 7% after).
template <class Cell, class S>
FUSEDRNN_INLINE void prefetch_step_rows(const BackwardParams<S>& p, index_t t, index_t b, index_t j0,
                                        index_t span) {
  const index_t B = p.n.B, H = p.n.H, GH = Cell::G * H, row = t * B + b;
  auto ask = [span](const S* first) {
    for (index_t u = 0; u < span; u += 64 / static_cast<index_t>(sizeof(S))) __builtin_prefetch(first + u, 0, 2);
  };
  ask(p.dy + row * p.n.P + j0);
  for (int g = 0; g < Cell::G; ++g) ask(p.gates + row * GH + g * H + j0);
  if constexpr (Cell::kHasCellState) ask(p.c_prev + row * H + j0);
  if constexpr (Cell::kReadsOldH) ask(p.h_prev + row * H + j0);
  if constexpr (Cell::kHasAux) ask(p.aux + row * H + j0);
}

// Blocks of units per panel of the backward's packed R: dgates R for one panel is a product of
// 2 vectors per k, so up to 6 sequences share each read of R (12 accumulators).
constexpr int kPanelBlocks = 2;

// The fused walk (P == H) over this rank's panels [panel0, panel1).
template <class Cell, bool PrefetchR, class S>
void backward_walk(Team& team, const BackwardParams<S>& p, long panel0, long panel1, const S* r_packed,
                   BackwardCarry<S> carry, S* dgates_rec) {
  constexpr int G = Cell::G, U = kUnits<S>, NV = kPanelBlocks, MaxRows = kMaxRows<NV>;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, GH = G * H;
  const index_t t_last = n.time_of(T - 1), blocks = num_blocks<S>(H);
  const int split = k_split<NV>(B);
  const long blk0 = panel0 * NV, blk1 = std::min<long>(blocks, panel1 * NV);
  for (index_t blk = blk0; blk < blk1; ++blk) {
    const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
    for (index_t b = 0; b < B; ++b) {
      S dh[U] = {};
      copy_lanes(p.dh_n + b * H + j0, units, dh);
      add_dy(p, t_last, b, j0, units, dh);
      backward_block<Cell>(p, t_last, b, j0, units, dh, carry, dgates_rec);
    }
  }
  // Transition s for panel `panel` and the sequences [b_lo, b_hi) (a multiple of MaxRows apart).
  auto transition = [&](index_t s, index_t panel, index_t b_lo, index_t b_hi) {
    const index_t t = n.time_of(s);
    for (index_t b0 = b_lo; b0 < b_hi; b0 += MaxRows) {
      // dgates_rec R for the group's real sequences (padding rows get 0: nothing flows through R).
      const int rows = static_cast<int>(std::min<index_t>(MaxRows, b_hi - b0));
      S dh_rows[MaxRows][NV * U] = {};
      const S* dg_rows[MaxRows];
      int real = 0;
      index_t real_row[MaxRows];
      for (int r = 0; r < rows; ++r)
        if (n.active(b0 + r, t)) real_row[real] = r, dg_rows[real++] = dgates_rec + (t * B + b0 + r) * GH;
      if (s > 0)  // what the group's backward_block calls below will read, while the product runs
        for (int r = 0; r < rows; ++r)
          prefetch_step_rows<Cell>(p, n.time_of(s - 1), b0 + r, panel * NV * U, NV * U);
      if (real > 0) {
        S out[MaxRows][NV * U];
        block_product_rows<NV, PrefetchR>(real, split, r_packed + panel * GH * NV * U, dg_rows, GH,
                                       (const S*)nullptr, &out[0][0], NV * U);
        for (int q = 0; q < real; ++q) std::copy(out[q], out[q] + NV * U, dh_rows[real_row[q]]);
      }
      for (index_t blk = panel * NV; blk < std::min<index_t>(blocks, (panel + 1) * NV); ++blk) {
        const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
        for (int r = 0; r < rows; ++r) {
          const index_t b = b0 + r;
          S* dh = dh_rows[r] + (blk - panel * NV) * U;
          const S* direct = carry.dh_direct + b * H + j0;
          for (index_t u = 0; u < units; ++u) dh[u] += direct[u];  // d loss / d h entering step t
          if (s > 0) {
            const index_t tp = n.time_of(s - 1);
            add_dy(p, tp, b, j0, units, dh);
            backward_block<Cell>(p, tp, b, j0, units, dh, carry, dgates_rec);
          } else {
            copy_lanes(dh, units, p.dh0 + b * H + j0);
          }
        }
      }
    }
  };
  // Shared as the forward's steps are, in tasks of one panel and a chunk of rows.
  const index_t chunk_rows = share_rows(B, MaxRows, 2.0 * NV * U * GH);
  const bool share = chunk_rows > 0 && team.size() > 1;
  const long chunks = share ? static_cast<long>((B + chunk_rows - 1) / chunk_rows) : 1;
  if (share) team.work_range(0, team.rank()).reset((panel1 - panel0) * chunks);
  team.barrier();
  for (index_t s = T - 1; s >= 0; --s) {
    if (!share) {
      for (index_t i = 0; i < panel1 - panel0; ++i)
        transition(s, s % 2 == 1 ? panel1 - 1 - i : panel0 + i, 0, B);  // order as in forward_step
    } else {
      team.share((T - 1 - s) % 2, s > 0 ? (panel1 - panel0) * chunks : 0, [&](int owner, long item) {
        long o0, o1;  // the owner's panels, walked as it walks them
        team.split(owner, (blocks + NV - 1) / NV, &o0, &o1);
        const long i = item / chunks, chunk = item % chunks;
        transition(s, s % 2 == 1 ? o1 - 1 - i : o0 + i, chunk * chunk_rows,
                   std::min<index_t>(B, (chunk + 1) * chunk_rows));
      });
    }
    team.barrier();
  }
}

// The projected LSTM's walk: per step, (1) the total dh of h leaving the step [B, P], kept for
// dW_hr, (2) dm = dh W_hr per block of units, with the pointwise derivative, (3) dh entering the
// step = dgates R per block of the P outputs. dh [B, P] is shared; ranks own column blocks.
template <class S>
void backward_walk_projected(Team& team, const BackwardParams<S>& p, const S* r_packed, const S* hr_packed,
                             BackwardCarry<S> carry, S* dh) {
  constexpr int U = kUnits<S>;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, H = n.H, P = n.P, GH = 4 * H;
  long blk0, blk1, pblk0, pblk1;
  team.split(num_blocks<S>(H), &blk0, &blk1);
  team.split(num_blocks<S>(P), &pblk0, &pblk1);
  const index_t p_lo = std::min<index_t>(P, pblk0 * U), p_hi = std::min<index_t>(P, pblk1 * U);
  for (index_t s = T - 1; s >= 0; --s) {
    const index_t t = n.time_of(s);
    S* dh_total = p.dh_total + t * B * P;
    for (index_t b = 0; b < B; ++b)
      for (index_t j = p_lo; j < p_hi; ++j)
        dh_total[b * P + j] = n.active(b, t) ? dh[b * P + j] + p.dy[(t * B + b) * P + j] : S(0);
    team.barrier();
    for (index_t blk = blk0; blk < blk1; ++blk) {
      const index_t j0 = blk * U, units = std::min<index_t>(U, H - j0);
      for (index_t b = 0; b < B; ++b) {
        S dm[U] = {};
        if (n.active(b, t)) block_product<1>(hr_packed + blk * P * U, dh_total + b * P, P, (const S*)nullptr, dm);
        backward_block<LstmCell>(p, t, b, j0, units, dm, carry, p.dgates);
      }
    }
    team.barrier();
    for (index_t blk = pblk0; blk < pblk1; ++blk) {
      const index_t j0 = blk * U, units = std::min<index_t>(U, P - j0);
      for (index_t b = 0; b < B; ++b) {
        if (!n.active(b, t)) continue;  // padding: dh passes through unchanged
        S acc[U];
        block_product<1>(r_packed + blk * GH * U, p.dgates + (t * B + b) * GH, GH, (const S*)nullptr, acc);
        copy_lanes(acc, units, dh + b * P + j0);
      }
    }
  }
  team.barrier();
}

template <class Cell, bool Project, class S>
void backward_impl(const BackwardParams<S>& p) {
  constexpr int G = Cell::G, U = kUnits<S>;
  constexpr bool lstm = Cell::kHasCellState;
  const Sizes& n = p.n;
  const index_t T = n.T, B = n.B, I = n.I, H = n.H, P = n.P, GH = G * H, BH = B * H, BP = B * P;
  S* dgates_rec = Cell::kSplitRecurrentGrad ? p.dgates_rec : p.dgates;

  const index_t nv = Project ? 1 : kPanelBlocks;  // the projected walk reads one block at a time
  const index_t panels = (num_blocks<S>(P) + nv - 1) / nv;
  const index_t r_size = panels * GH * nv * U;
  const Scratch<S> r_packed(kRecurrentSlot, r_size);
  const Scratch<S> hr_packed(kProjectionSlot, Project ? num_blocks<S>(H) * P * U : 0);
  std::vector<S> carry_buf(BH * (lstm ? 2 : 1) + (Project ? BP : 0));
  BackwardCarry<S> carry{carry_buf.data(), lstm ? carry_buf.data() + BH : nullptr};
  S* dh = Project ? carry_buf.data() + 2 * BH : nullptr;  // projected: [B, P]
  if constexpr (lstm) std::copy(p.dc_n, p.dc_n + BH, carry.dc);
  if constexpr (Project) std::copy(p.dh_n, p.dh_n + BP, dh);

  parallel([&](Team& team) {
    FlushDenormals flush;
    // Each rank packs the panels (and, projected, the blocks of W_hr) its own walk reads.
    long panel0, panel1;
    team.split(panels, &panel0, &panel1);
    pack_columns(p.w_hh, GH, P, nv, panel0, panel1, r_packed.get());
    if constexpr (Project) {
      long blk0, blk1;
      team.split(num_blocks<S>(H), &blk0, &blk1);
      pack_columns(p.w_hr, P, H, 1, blk0, blk1, hr_packed.get());
      backward_walk_projected(team, p, r_packed.get(), hr_packed.get(), carry, dh);
      if (team.rank() == 0) std::copy(dh, dh + BP, p.dh0);
    } else if (T > 0) {
      auto walk = streams_from_memory<S>(r_size) ? backward_walk<Cell, true, S> : backward_walk<Cell, false, S>;
      walk(team, p, panel0, panel1, r_packed.get(), carry, dgates_rec);
    } else if (team.rank() == 0) {
      std::copy(p.dh_n, p.dh_n + BH, p.dh0);
    }
    if constexpr (lstm)
      if (team.rank() == 0) std::copy(carry.dc, carry.dc + BH, p.dc0);

    // Whole-sequence products over the T*B rows of the gate gradients (complete after the walk's
    // last barrier).
    const index_t rows = T * B;
    gemm<S>(team, rows, I, GH, {p.dgates, GH, 1}, {p.w_ih, I, 1}, p.dx, I, false);         // dx = dg W
    gemm<S>(team, GH, I, rows, {p.dgates, 1, GH}, {p.x, I, 1}, p.dw_ih, I, false);         // dW = dg^T x
    gemm<S>(team, GH, P, rows, {dgates_rec, 1, GH}, {p.h_prev, P, 1}, p.dw_hh, P, false);  // dR = dgr^T h
    if constexpr (Project) gemm<S>(team, P, H, rows, {p.dh_total, 1, P}, {p.m, H, 1}, p.dw_hr, H, false);
    column_sums(team, p.dgates, rows, GH, p.db_ih);
    if constexpr (Cell::kSplitRecurrentGrad) {
      column_sums(team, dgates_rec, rows, GH, p.db_hh);
    } else {  // the same gradients: copy this rank's columns instead of summing them again
      long c0, c1;
      team.split(GH, &c0, &c1);
      std::copy(p.db_ih + c0, p.db_ih + c1, p.db_hh + c0);
    }
  }, 4.0 * T * B * GH * (I + P) + 4.0 * T * B * P * H * Project + packing_flops<Project>(GH, 0, P, H));
}

// With no sequences (B = 0) nothing is computed: every output but the parameters' gradients is
// empty, and those are zero. The step loops would otherwise walk all T steps for nothing (T = 2^40
// took hours and could not be interrupted).
template <class S>
void forward_any(CellKind cell, const ForwardParams<S>& p) {
  if (p.n.B == 0) return;
  switch (cell) {
    case CellKind::rnn_tanh: return forward_impl<RnnTanhCell, false>(p);
    case CellKind::rnn_relu: return forward_impl<RnnReluCell, false>(p);
    case CellKind::lstm:  // a projection (P < H) comes as w_hr or, packed, as packed.w_hr
      return p.n.P != p.n.H ? forward_impl<LstmCell, true>(p) : forward_impl<LstmCell, false>(p);
    case CellKind::gru: return forward_impl<GruCell, false>(p);
  }
}

template <class S>
void backward_any(CellKind cell, const BackwardParams<S>& p) {
  if (p.n.B == 0) {
    const index_t GH = (cell == CellKind::lstm ? 4 : cell == CellKind::gru ? 3 : 1) * p.n.H;
    std::fill_n(p.dw_ih, GH * p.n.I, S(0));
    std::fill_n(p.dw_hh, GH * p.n.P, S(0));
    std::fill_n(p.db_ih, GH, S(0));
    std::fill_n(p.db_hh, GH, S(0));
    if (p.w_hr) std::fill_n(p.dw_hr, p.n.P * p.n.H, S(0));
    return;
  }
  switch (cell) {
    case CellKind::rnn_tanh: return backward_impl<RnnTanhCell, false>(p);
    case CellKind::rnn_relu: return backward_impl<RnnReluCell, false>(p);
    case CellKind::lstm: return p.w_hr ? backward_impl<LstmCell, true>(p) : backward_impl<LstmCell, false>(p);
    case CellKind::gru: return backward_impl<GruCell, false>(p);
  }
}

// Elements of PackedWeights' four buffers (pack_gemm_b's W_ih, pack_rows' R and b_r, W_hr).
void packed_sizes(CellKind cell, index_t I, index_t H, index_t P, bool f64, index_t sizes[4]) {
  auto fill = [&](auto zero) {
    using S = decltype(zero);
    const index_t G = cell == CellKind::lstm ? 4 : cell == CellKind::gru ? 3 : 1, U = kUnits<S>;
    sizes[0] = padded_panels<S>(G * H) * I;
    sizes[1] = num_blocks<S>(H) * P * G * U;
    sizes[2] = num_blocks<S>(H) * G * U;
    sizes[3] = P != H ? num_blocks<S>(P) * H * U : 0;
  };
  if (f64) fill(0.0);
  else fill(0.0f);
}

// The forward's packing of W_ih, R, b_r and W_hr done once, into `out` (functional.pack_weights).
template <class Cell, bool Project, class S>
void pack_impl(const ForwardParams<S>& p, const PackedWeights<S>& out) {
  const index_t I = p.n.I, H = p.n.H, P = p.n.P, GH = Cell::G * H;
  parallel([&](Team& team) {
    pack_gemm_b<S>(team, GH, I, {p.w_ih, 1, I}, out.w_ih);
    long blk0, blk1, pblk0, pblk1;
    team.split(num_blocks<S>(H), &blk0, &blk1);
    team.split(num_blocks<S>(P), &pblk0, &pblk1);
    pack_recurrent<Cell, Project>(p, blk0, blk1, pblk0, pblk1, out.w_hh, out.b_hh, out.w_hr);
  }, packing_flops<Project>(GH, I, P, H));
}

template <class S>
void pack_any(CellKind cell, const ForwardParams<S>& p, const PackedWeights<S>& out) {
  switch (cell) {
    case CellKind::rnn_tanh: return pack_impl<RnnTanhCell, false>(p, out);
    case CellKind::rnn_relu: return pack_impl<RnnReluCell, false>(p, out);
    case CellKind::lstm: return p.w_hr ? pack_impl<LstmCell, true>(p, out) : pack_impl<LstmCell, false>(p, out);
    case CellKind::gru: return pack_impl<GruCell, false>(p, out);
  }
}

// The machine's float32 FMA peak as this ISA can use it: each rank runs a loop of independent
// multiply-adds (12 vectors of accumulators, enough to cover the FMA latency) for `iterations`.
double fma_peak_gflops(long iterations) {
  constexpr int N = 12 * kVectorBytes / 4;
  std::vector<double> seconds(1);
  std::vector<float> sink(256);
  const auto start = std::chrono::steady_clock::now();
  int ranks = 1;
  parallel([&](Team& team) {
    float acc[N];
    for (int i = 0; i < N; ++i) acc[i] = 1.0f + 1e-3f * static_cast<float>(i + team.rank());
    const float a = 0.999999f, b = 1e-7f;
    for (long it = 0; it < iterations; ++it)
      for (int i = 0; i < N; ++i) acc[i] = acc[i] * a + b;
    float total = 0;
    for (int i = 0; i < N; ++i) total += acc[i];
    sink[team.rank() % 256] = total;  // keeps the loop alive
    if (team.rank() == 0) ranks = team.size();
  }, 1e12);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 2.0 * N * static_cast<double>(iterations) * ranks / s / 1e9 + 0.0 * sink[0];
}

void gemm_f32(index_t M, index_t N, index_t K, const float* A, bool trans_a, const float* B, bool trans_b,
              float* C) {
  const MatrixView<float> a = trans_a ? MatrixView<float>{A, 1, M} : MatrixView<float>{A, K, 1};
  const MatrixView<float> b = trans_b ? MatrixView<float>{B, 1, K} : MatrixView<float>{B, N, 1};
  parallel([&](Team& team) {
    FlushDenormals flush;
    gemm<float>(team, M, N, K, a, b, C, N, false);
  }, 2.0 * M * N * K);
}

}  // namespace

#define FUSEDRNN_STR2(x) #x
#define FUSEDRNN_STR(x) FUSEDRNN_STR2(x)
extern const KernelTable table;
const KernelTable table = {FUSEDRNN_STR(FUSEDRNN_ISA_NAMESPACE), forward_any<float>, forward_any<double>,
                           backward_any<float>, backward_any<double>, packed_sizes, pack_any<float>,
                           pack_any<double>, fma_peak_gflops, gemm_f32};

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA_NAMESPACE
