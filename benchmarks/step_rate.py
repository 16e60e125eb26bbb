"""GFLOP/s of the forward's recurrent step alone, at any batch.

The marginal time of T more steps (forward of 2T steps minus forward of T, medians of calls
alternating between the two lengths, no tape) with I = 1, so that the input projection and the
per-call costs drop out: what is left is the step's product R h (2 B G H^2 FLOPs), its cell math
and its barrier. The percentage is of two cores' FMA peak as ``_C.fma_peak_gflops`` measures it.

Usage: ``python benchmarks/step_rate.py [CELL,H,B,T ...] [--repeats 15]``, e.g. ``lstm,256,64,50``.
With ``--env VAR A B ...`` an experiment build's variants (read from ``VAR`` at each call) alternate
call by call, as in ``ab_env.py``, and each gets its own line.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Callable

import numpy as np

import fusedrnn as fr
from fusedrnn import _C, bench, functional


def seconds_per_step(
    cell: str, H: int, B: int, T: int, repeats: int, env: list[str] | None = None
) -> dict[str, float]:
    """Seconds per step for each value of ``env`` = [VAR, A, B, ...] (without: {"": seconds})."""
    a = bench._arrays(bench.Config(cell, 2 * T, B, 1, H), np.float32)
    forwards = {steps: bench._runner(functional, bench.Config(cell, steps, B, 1, H), {**a, "x": a["x"][:steps]})[0]
                for steps in (T, 2 * T)}  # fmt: skip

    var, values = (env[0], env[1:]) if env else ("", [""])

    def call(value: str, steps: int) -> Callable[[], object]:
        def run() -> object:
            if var:
                os.environ[var] = value
            return forwards[steps]()

        return run

    calls = {(v, steps): call(v, steps) for v in values for steps in (T, 2 * T)}
    times = bench._alternating_times(calls, 0.0, min_calls=repeats)  # type: ignore[arg-type]
    return {v: (statistics.median(times[v, 2 * T]) - statistics.median(times[v, T])) / T for v in values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("configs", nargs="*", default=["lstm,256,64,50", "lstm,512,64,25", "gru,512,32,50"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--env", nargs="+", metavar="VAR VALUE", help="an experiment build's variable and values")
    args = parser.parse_args()
    threads = fr.get_num_threads()
    fr.set_num_threads(1)
    core_peak = max(_C.fma_peak_gflops() for _ in range(5))  # interference only lowers a reading
    fr.set_num_threads(threads)
    peak = threads * core_peak
    print(f"threads {threads}, FMA peak {peak:.0f} GFLOP/s")
    for spec in args.configs:
        cell, H, B, T = spec.split(",")
        H, B, T = int(H), int(B), int(T)
        for value, dt in seconds_per_step(cell, H, B, T, args.repeats, args.env).items():
            gflops = 2 * B * bench.GATES[cell] * H * H / dt / 1e9
            variant = f" {args.env[0]}={value}" if args.env else ""
            print(f"{cell} H={H} B={B}{variant}: {dt * 1e6:.1f} us/step, {gflops:.1f} GFLOP/s, "
                  f"{100 * gflops / peak:.0f}% of the peak")


if __name__ == "__main__":
    main()
