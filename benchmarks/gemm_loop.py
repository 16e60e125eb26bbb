"""Median time of the kernels' GEMM (``_C.gemm``) on one shape, called back to back.

Usage: ``python benchmarks/gemm_loop.py M N K [seconds] [--numpy]``; with ``benchmarks/run_with.py``
it compares builds (the figures for KC in ``docs/perf-notes.md``). ``--numpy`` times NumPy's
``a @ b`` on the same operands after it, for comparison.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import numpy as np

from fusedrnn import _C


def median_seconds(fn: Callable[[], Any], seconds: float) -> tuple[float, int]:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


if __name__ == "__main__":
    args = [v for v in sys.argv[1:] if v != "--numpy"]
    M, N, K = (int(v) for v in args[:3])
    seconds = float(args[3]) if len(args) > 3 else 3.0
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    runs = {"fusedrnn": lambda: _C.gemm(a, b)}
    if "--numpy" in sys.argv:
        runs["numpy"] = lambda: a @ b
    for name, fn in runs.items():
        t, n = median_seconds(fn, seconds)
        label = f"M={M} N={N} K={K}" if name == "fusedrnn" else "  numpy a @ b"
        print(f"{label}: median {t * 1e3:.3f} ms {2 * M * N * K / t / 1e9:.1f} GFLOP/s n={n}")
