"""Each rank's barrier waits per step, by size, from an instrumented build.

``benchmarks/patches/barrier_hist.patch`` (``barrier_wait.patch`` plus a histogram) times every
``Team::barrier()`` and adds ``_C.barrier_hist()``. Build and run it apart from the working tree:

    git worktree add /tmp/wt-hist HEAD && git -C /tmp/wt-hist apply benchmarks/patches/barrier_hist.patch
    bash /tmp/wt-hist/benchmarks/ab_build.sh hist
    python benchmarks/run_with.py /tmp/hist benchmarks/barrier_hist.py lstm 256 1 200 [--caller-cpu C]

Forward through packed weights at I = 1 (the steps alone), called for five seconds on two threads.
Prints, per rank, the share of waits in each bucket (below 0.1, 0.3, 1, 3, 10, 30, 100 us and
above) and what they add up to per step. ``--caller-cpu C`` pins the calling thread (rank 0) to CPU
C after the team exists, so that the worker (rank 1) runs elsewhere: a rank that waits on one CPU
and not on the other says which CPU is slower (perf-notes, thirteenth session).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fusedrnn
from configs import config_arguments  # benchmarks/ is on sys.path: this script's folder, or run_with.py's
from fusedrnn import _C, bench

EDGES = ["<0.1", "<0.3", "<1", "<3", "<10", "<30", "<100", ">=100"]


def main() -> None:
    ap = config_arguments(argparse.ArgumentParser())
    ap.add_argument("--caller-cpu", type=int)
    args = ap.parse_args()
    fusedrnn.set_num_threads(2)
    cfg = bench.Config(args.cell, args.T, args.B, 1, args.H)
    call = bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), "p")
    call()  # the team exists (its worker keeps the affinity it had) before the caller is pinned
    if args.caller_cpu is not None:
        os.sched_setaffinity(0, {args.caller_cpu})
    for _ in range(20):
        call()
    _C.barrier_hist()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 5:
        call()
        n += 1
    elapsed = time.perf_counter() - t0
    hist = _C.barrier_hist()
    where = f", caller on CPU {args.caller_cpu}" if args.caller_cpu is not None else ""
    print(f"{cfg}{where}: {elapsed / n * 1e3:.3f} ms per call, {elapsed / n / args.T * 1e6:.2f} us per step")
    for rank, buckets in enumerate(hist):
        total = sum(count for count, _ in buckets) or 1
        cells = (f"{e}:{c / total * 100:.0f}%/{ns / 1e3 / n / args.T:.2f}" for e, (c, ns) in zip(EDGES, buckets))
        waited = sum(ns for _, ns in buckets) / 1e3 / n / args.T
        print(f"  rank {rank} waits {waited:.2f} us per step; by size (us: share/us per step) " + " ".join(cells))


if __name__ == "__main__":
    main()
