"""Where a forward's steps spend their time, per rank, timed inside the kernels.

``benchmarks/patches/step_parts.patch`` reads the time-stamp counter around each group's products
and its pointwise work (``forward_step``), and around each step's work and its barrier
(``forward_impl``), and adds ``_C.step_parts()`` and ``_C.tsc_hz()``. Build and run it apart from
the working tree:

    git worktree add /tmp/wt-parts HEAD && git -C /tmp/wt-parts apply benchmarks/patches/step_parts.patch
    bash /tmp/wt-parts/benchmarks/ab_build.sh parts
    python benchmarks/run_with.py /tmp/parts benchmarks/step_parts.py lstm 256 16 100 p [--input-size I]

Calls the configuration (``f`` forward, ``p`` through packed weights) for ``--seconds`` (4) on two
threads and prints, per rank and step: the products, the pointwise work (loads of W x and c, the
cell's math, the stores), the packing of h per group (``pack_h_groups``, B >= 8 on AVX-512), the
rest of the step's work (bookkeeping, prefetches, the counter reads themselves: ~4 per group) and
the wait at the step's barrier; then the steps' share of a call.
A step's floor: its products' FLOPs per rank over one core's FMA peak (``_C.fma_peak_gflops``
on two threads, halved), printed beside them (perf-notes, fourteenth session).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fusedrnn
from configs import config_arguments  # benchmarks/ is on sys.path: this script's folder, or run_with.py's
from fusedrnn import _C, bench


def main() -> None:
    ap = config_arguments(argparse.ArgumentParser())
    ap.add_argument("mode", choices=("f", "p"))
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    fusedrnn.set_num_threads(2)
    cfg = bench.Config(args.cell, args.T, args.B, args.input_size or args.H, args.H)
    call = bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), args.mode)
    hz, core_peak = _C.tsc_hz(), max(_C.fma_peak_gflops() for _ in range(3)) / 2
    for _ in range(3):
        call()
    _C.step_parts()  # reset
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        call()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    G = {"lstm": 4, "gru": 3}.get(args.cell, 1)
    floor_us = 2 * G * args.H * args.H * args.B / 2 / core_peak / 1e3  # half the step's products
    print(f"{cfg} {args.mode}: {per_call * 1e3:.3f} ms per call ({calls} calls); TSC {hz / 1e9:.3f} GHz; "
          f"products' floor {floor_us:.2f} us per rank and step at {core_peak:.0f} GFLOP/s per core")
    for rank, (products, pointwise, work, barrier, steps, pack_h) in enumerate(_C.step_parts()):
        us = lambda cycles: cycles / steps / hz * 1e6  # noqa: E731
        print(f"  rank {rank}, us per step: products {us(products):.2f}, pointwise {us(pointwise):.2f}, "
              f"packing h {us(pack_h):.2f}, other work {us(work - products - pointwise - pack_h):.2f}, "
              f"barrier {us(barrier):.2f}; "
              f"total {us(work + barrier):.2f}, {100 * (work + barrier) / hz / (steps / args.T) / per_call:.0f}% "
              "of the call")


if __name__ == "__main__":
    main()
