"""In-process A/B of two variants of one build, switched by an environment variable per call.

Two builds of ``fusedrnn._C`` cannot share a process (pybind11 registers its types globally), and
alternating processes could not resolve 5% on the shared VM (neighbour load comes in bursts of
seconds). So an experiment build reads ``VAR`` at each call and picks a variant; this alternates
the values call by call (each timed call after an untimed call of the same value) and prints the
10th percentile and median of each, with their ratios to the first value's.

Usage: ``python benchmarks/ab_env.py "lstm 128 1 100 f" SECONDS VAR VALUE_A VALUE_B [...]``
(cell, H = I, B, T, ``f`` forward, ``fb`` forward+backward or ``p`` forward through weights
packed once). ``VAR`` may name several variables separated by commas, all set to each value in
turn (several patches' switches at once: ``CPU_MOVES,GTASK 0 1``).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np

from fusedrnn import bench


def main() -> None:
    config, seconds, var, values = sys.argv[1].split(), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    cell, H, B, T, mode = config[0], int(config[1]), int(config[2]), int(config[3]), config[4]
    cfg = bench.Config(cell, T, B, H, H)
    call = bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), mode)

    def with_value(value: str) -> Callable[[], Any]:
        def run() -> Any:
            for name in var.split(","):
                os.environ[name] = value
            return call()

        return run

    report(var, bench._alternating_times({v: with_value(v) for v in values}, seconds, min_calls=1))


def report(var: str, times: dict[str, list[float]]) -> None:
    """The 10th percentile and median of each value's times, and their ratios to the first's."""
    first = None
    for v, t in times.items():
        p10, median = np.percentile(np.array(t) * 1e3, [10, 50])
        first = first or (p10, median)
        print(f"{var}={v:6s} n={len(t)} p10 {p10:.3f} ms, median {median:.3f} ms "
              f"({p10 / first[0]:.3f}, {median / first[1]:.3f} of the first)")  # fmt: skip


if __name__ == "__main__":
    main()
