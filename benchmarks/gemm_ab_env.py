"""``_C.gemm`` under two values of an environment variable, alternating call by call: the GEMM's
counterpart of ``ab_env.py`` for an experiment build that reads ``VAR`` at each call.

Usage: ``python benchmarks/gemm_ab_env.py VAR OLD NEW [seconds] [--all]``; prints each shape's
medians and NEW/OLD. Shapes: the LSTM H=256 B=16 T=100 backward's dx and dW (row-major and
transposed A), its forward's input projection, a short one (M=25) and a large one; with ``--all``
the kernels' GEMMs at the table's and DeepBench's sizes. The tile order's experiment build:
``benchmarks/patches/gemm_order.patch`` (``GEMM_ORDER=j`` columns first, ``i`` rows first, other
values the rule), built as ``barrier_wait.py`` describes for its own patch.
"""

from __future__ import annotations

import os
import statistics
import sys
from typing import Any, Callable

import numpy as np

from fusedrnn import _C, bench

SHAPES = [(1600, 256, 1024, False, False), (1024, 256, 1600, True, False), (1600, 1024, 256, False, True),
          (25, 4096, 1024, False, True), (4096, 1024, 1600, True, False)]  # (M, N, K, transpose_a, transpose_b)
# The kernels' GEMMs at the table's and DeepBench's sizes (``--all``): input projections (T*B, G*H,
# I), dx (T*B, I, G*H), dW (G*H, I, T*B) with A transposed, and short ones.
ALL_SHAPES = [(1600, 1024, 256, False, True), (1600, 2048, 512, False, True), (3200, 4096, 1024, False, True),
              (200, 6144, 1536, False, True), (100, 512, 128, False, True), (100, 1024, 256, False, True),
              (3200, 1024, 256, False, True), (1600, 256, 1024, False, False), (1600, 512, 2048, False, False),
              (3200, 1024, 4096, False, False), (200, 1536, 6144, False, False), (1024, 256, 1600, True, False),
              (2048, 512, 1600, True, False), (4096, 1024, 3200, True, False), (6144, 1536, 200, True, False),
              (1, 1024, 256, False, True), (4, 6144, 1536, False, True), (25, 4096, 1024, False, True)]  # fmt: skip


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--all"]
    var, old, new = args[:3]
    seconds = float(args[3]) if len(args) > 3 else 5.0
    rng = np.random.default_rng(0)
    for M, N, K, ta, tb in ALL_SHAPES if "--all" in sys.argv else SHAPES:
        a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)

        def with_value(value: str) -> Callable[[], Any]:
            def run() -> Any:
                os.environ[var] = value
                return _C.gemm(a, b, ta, tb)

            return run

        times = bench._alternating_times({old: with_value(old), new: with_value(new)}, seconds)
        t_old, t_new = statistics.median(times[old]), statistics.median(times[new])
        print(f"M={M} N={N} K={K} transpose_a={ta} transpose_b={tb}: {var}={old} {t_old * 1e3:.3f} ms, "
              f"{var}={new} {t_new * 1e3:.3f} ms, ratio {t_new / t_old:.3f}")


if __name__ == "__main__":
    main()
