"""Calls right after the process has idled: the first three calls after a pause, per thread count.

After 50 ms or more without calls, two-thread calls on the shared VM ran 30-50x slower for a few
calls while the barrier spun ~0.5 ms before yielding (perf-notes, twelfth session), and 4x slower
with a short spin, while the VM woke the worker on the caller's CPU (thirteenth session). Usage:
``python benchmarks/after_idle.py [CELL H B T] [PAUSE_S]`` (default ``lstm 128 1 100`` and 0.2 s;
the forward through weights packed once); prints the medians of 15 rounds.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import fusedrnn
from fusedrnn import bench


def main() -> None:
    args = sys.argv[1:]
    cell, H, B, T = (args[0], *map(int, args[1:4])) if len(args) >= 4 else ("lstm", 128, 1, 100)
    pause = float(args[4]) if len(args) >= 5 else 0.2
    cfg = bench.Config(cell, T, B, H, H)
    call = bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), "p")
    for threads in (1, 2):
        fusedrnn.set_num_threads(threads)
        for wait in (0.0, pause):
            rounds = []
            for _ in range(15):
                time.sleep(wait)
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    call()
                    times.append((time.perf_counter() - t0) * 1e3)
                rounds.append(times)
            med = np.median(np.array(rounds), axis=0)
            print(f"{cfg} threads {threads}, pause {wait:.2f} s: calls 1-3 " + " ".join(f"{m:.3f}" for m in med) + " ms")


if __name__ == "__main__":
    main()
