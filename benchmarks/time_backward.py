"""Median time of the backward alone, repeated on one tape: ``python benchmarks/time_backward.py lstm 256 16 100``
(cell, H = I, B, T; seconds as a fifth argument, default 3). The profile target behind the backward's
figures in ``docs/perf-notes.md``."""

from __future__ import annotations

import math
import statistics
import sys

import numpy as np

from fusedrnn import bench, functional


def main() -> None:
    cell, H, B, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 3.0
    cfg = bench.Config(cell, T, B, H, H)
    a = bench._arrays(cfg, np.float32)
    w = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    if cell == "lstm":
        tape = functional.lstm_forward(a["x"], a["h0"], a["c0"], *w)[3]
        backward = lambda: functional.lstm_backward(tape, a["dy"])  # noqa: E731
    elif cell == "gru":
        tape = functional.gru_forward(a["x"], a["h0"], *w)[2]
        backward = lambda: functional.gru_backward(tape, a["dy"])  # noqa: E731
    else:
        tape = functional.rnn_forward(a["x"], a["h0"], *w, nonlinearity=cell[4:])[2]
        backward = lambda: functional.rnn_backward(tape, a["dy"])  # noqa: E731
    times = bench._call_times(backward, 1, budget=math.inf, min_seconds=seconds)
    print(f"{cfg} backward: median {statistics.median(times) * 1e3:.2f} ms, min {min(times) * 1e3:.2f}, n={len(times)}")


if __name__ == "__main__":
    main()
