"""Median wall time of one configuration, called back to back for a few seconds.

The A/B loop behind the figures in ``docs/perf-notes.md``: run it for two builds in turn (for
example two package copies on ``PYTHONPATH``) and compare medians, never single runs.
Usage: ``python benchmarks/time_call.py lstm 256 16 100 f|fb [seconds]`` (cell, H = I, B, T).
"""

from __future__ import annotations

import math
import statistics
import sys

import numpy as np

from fusedrnn import bench, functional


def main() -> None:
    cell, H, B, T, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 3.0
    cfg = bench.Config(cell, T, B, H, H)
    fwd, both = bench._runner(functional, cfg, bench._arrays(cfg, np.float32))
    fn = fwd if mode == "f" else both
    times = bench._call_times(fn, 1, budget=math.inf, min_seconds=seconds)
    median = statistics.median(times)
    flops = cfg.forward_flops * (1 if mode == "f" else 3)
    print(f"{cfg} {mode}: median {median * 1e3:.2f} ms  min {min(times) * 1e3:.2f}  "
          f"{flops / median / 1e9:.1f} GFLOP/s  n={len(times)}")  # fmt: skip


if __name__ == "__main__":
    main()
