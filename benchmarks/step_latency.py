"""Per-step forward latency at B = 1, the fast-CPU issue's small-batch target.

The marginal time of T more steps (forward of 2T steps minus forward of T steps, medians of
repeated calls, no tape) removes the per-call costs; H = 16 measures the barrier (its work is
negligible). ``--input-size 1`` leaves out the input projection's share of a step (2*4H*I FLOPs,
as many as the recurrent product's at I = H), which the target's formula does not count.
Usage: ``python benchmarks/step_latency.py [--threads 2] [--repeats 41] [--input-size 256]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fusedrnn as fr
from fusedrnn import _C
from fusedrnn import functional as F


def per_step_us(H: int, T: int, repeats: int, rng: np.random.Generator, I: int | None = None) -> float:
    I = H if I is None else I
    x = rng.standard_normal((2 * T, 1, I), dtype=np.float32)
    h0 = rng.standard_normal((1, H), dtype=np.float32)
    c0 = rng.standard_normal((1, H), dtype=np.float32)
    w = [rng.uniform(-0.06, 0.06, s).astype(np.float32) for s in [(4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]

    def median_seconds(steps: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            F.lstm_forward(x[:steps], h0, c0, *w, need_tape=False)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return (median_seconds(2 * T) - median_seconds(T)) / T * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--input-size", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    fr.set_num_threads(1)
    core_peak = max(_C.fma_peak_gflops() for _ in range(5))  # interference only lowers a reading
    fr.set_num_threads(args.threads)
    barrier = per_step_us(16, 200, args.repeats, rng)
    step = per_step_us(256, 200, args.repeats, rng, args.input_size)
    floor = 8 * 256 * 256 / (core_peak * 1e3)
    print(f"threads {args.threads}, per-core FMA peak {core_peak:.1f} GFLOP/s")
    print(f"LSTM H=16 (barrier): {barrier:.2f} us/step; "
          f"LSTM H=256 I={args.input_size} B=1: {step:.2f} us/step")
    print(f"target 1.5 x (8 H^2 / peak + barrier) = 1.5 x ({floor:.1f} + {barrier:.1f}) = {1.5 * (floor + barrier):.1f} us")


if __name__ == "__main__":
    main()
