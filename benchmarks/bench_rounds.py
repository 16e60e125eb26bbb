"""``bench``'s two timing schemes on one configuration, alternating in one process.

``python -m fusedrnn bench`` spreads each measurement over ``--rounds`` rounds in which every
library takes a block of calls in turn (``bench._rounds_of_times``). With one round, each library
runs one block after another, as before the fourteenth session. This runs both schemes in turn,
``PAIRS`` times, on the same arrays, and prints each library's medians and the torch / fusedrnn
ratios, so that a difference between the schemes can be told from the machine's phases.

Usage: ``python benchmarks/bench_rounds.py CELL H B T [PAIRS] [--rounds R] [--repeats N]`` (I = H;
defaults: 3 pairs, 3 rounds, 7 repeats). Needs torch and onnxruntime.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from configs import config_arguments  # benchmarks/ is on sys.path: this script's folder, or run_with.py's
from fusedrnn import bench, functional


def main() -> None:
    ap = config_arguments(argparse.ArgumentParser())
    ap.add_argument("pairs", type=int, nargs="?", default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = bench.Config(args.cell, args.T, args.B, args.H, args.H)
    a = bench._arrays(cfg, np.float32)
    fwd, both = bench._runner(functional, cfg, a)
    torch_fwd, torch_both = bench._torch_runners(cfg, a)
    calls = {"fwd": fwd, "fwdbwd": both, "packed_fwd": bench._packed_forward(cfg, a), "torch_fwd": torch_fwd,
             "torch_fwdbwd": torch_both, "ort_fwd": bench._ort_forward(cfg, a, 2)}  # fmt: skip
    print(cfg)
    for _ in range(args.pairs):
        for rounds in (1, args.rounds):
            m = bench._rounds_of_times(calls, rounds, args.repeats, pause=0.5)
            print(f"  rounds {rounds}: " + " ".join(f"{k} {v * 1e3:.1f}" for k, v in m.items())
                  + f" | torch / fusedrnn: forward {m['torch_fwd'] / m['fwd']:.2f}, "
                  f"forward + backward {m['torch_fwdbwd'] / m['fwdbwd']:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
