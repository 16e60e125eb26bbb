"""Median wall time of a stacked layer's forward + backward (``fusedrnn.LSTM``/``GRU``), the
drop-in path most users take, to compare against the functional calls it makes.

Usage: ``python benchmarks/time_layer.py lstm 256 16 100 [--layers 2] [--bidirectional]
[--batch-first] [--seconds 3]`` (cell, H = I, B, T).
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np

import fusedrnn
from fusedrnn import bench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cell", choices=["lstm", "gru"])
    ap.add_argument("H", type=int)
    ap.add_argument("B", type=int)
    ap.add_argument("T", type=int)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--batch-first", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    D = 2 if a.bidirectional else 1
    layer = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}[a.cell](
        a.H, a.H, num_layers=a.layers, bidirectional=a.bidirectional, batch_first=a.batch_first, seed=0
    )
    rng = np.random.default_rng(0)
    shape = (a.B, a.T) if a.batch_first else (a.T, a.B)
    x = rng.standard_normal((*shape, a.H)).astype(np.float32)
    dy = rng.standard_normal((*shape, D * a.H)).astype(np.float32)

    def forward_backward() -> object:
        layer(x)
        return layer.backward(dy)

    def forward() -> object:
        with fusedrnn.no_grad():
            return layer(x)

    for name, fn in (("forward", forward), ("forward + backward", forward_backward)):
        times = bench._call_times(fn, 1, budget=math.inf, min_seconds=a.seconds)
        print(f"{a.cell} H={a.H} B={a.B} T={a.T} layers={a.layers} directions={D} batch_first={a.batch_first} "
              f"{name}: median {statistics.median(times) * 1e3:.2f} ms  min {min(times) * 1e3:.2f}  n={len(times)}")  # fmt: skip


if __name__ == "__main__":
    main()
