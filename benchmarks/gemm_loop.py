"""Median time of the kernels' GEMM (``_C.gemm``) on one shape, called back to back.

Usage: ``python benchmarks/gemm_loop.py M N K [seconds]``; with ``benchmarks/run_with.py`` it
compares builds (the figures for KC in ``docs/perf-notes.md``).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from fusedrnn import _C

if __name__ == "__main__":
    M, N, K = (int(v) for v in sys.argv[1:4])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        _C.gemm(a, b)
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    print(f"M={M} N={N} K={K}: median {t * 1e3:.3f} ms {2 * M * N * K / t / 1e9:.1f} GFLOP/s n={len(times)}")
