"""``_C.gemm`` under two values of an environment variable, alternating call by call: the GEMM's
counterpart of ``ab_env.py`` for an experiment build that reads ``VAR`` at each call.

Usage: ``python benchmarks/gemm_ab_env.py VAR OLD NEW [seconds]``; prints each shape's medians and
NEW/OLD. Shapes: the LSTM H=256 B=16 T=100 backward's dx and dW (row-major and transposed A), its
forward's input projection, a short one (M=25) and a large one.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

from fusedrnn import _C

SHAPES = [(1600, 256, 1024, False, False), (1024, 256, 1600, True, False), (1600, 1024, 256, False, True),
          (25, 4096, 1024, False, True), (4096, 1024, 1600, True, False)]  # (M, N, K, transpose_a, transpose_b)


def main() -> None:
    var, old, new = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    rng = np.random.default_rng(0)
    for M, N, K, ta, tb in SHAPES:
        a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        times: dict[str, list[float]] = {old: [], new: []}
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for value in (old, new):
                os.environ[var] = value
                _C.gemm(a, b, ta, tb)
                start = time.perf_counter()
                _C.gemm(a, b, ta, tb)
                times[value].append(time.perf_counter() - start)
        t_old, t_new = statistics.median(times[old]), statistics.median(times[new])
        print(f"M={M} N={N} K={K} transpose_a={ta} transpose_b={tb}: {var}={old} {t_old * 1e3:.3f} ms, "
              f"{var}={new} {t_new * 1e3:.3f} ms, ratio {t_new / t_old:.3f}")


if __name__ == "__main__":
    main()
