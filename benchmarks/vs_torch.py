"""fusedrnn against torch on one configuration, the two alternating call by call in one process.

``bench`` times each library in a block of its own, so a burst of neighbour load that hits one
block moves that row's ratio by up to 2x on the shared VM. Alternating the calls exposes both to
the same moments. Each library gets a 0.2 s pause before its own timed call's predecessor, so
that the other's spinning threads (torch's OpenMP team; see ``neighbour_threads.py``) have
stopped. Usage: ``python benchmarks/vs_torch.py "lstm 256 64 50 f" [SECONDS]`` (cell, H = I, B,
T, ``f`` or ``fb``); prints the 10th percentiles, medians and their ratios.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from fusedrnn import bench


def main() -> None:
    cell, H, B, T, mode = sys.argv[1].split()
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    cfg = bench.Config(cell, int(T), int(B), int(H), int(H))
    arrays = bench._arrays(cfg, np.float32)
    torch.set_num_threads(2)
    runners = bench._torch_runners(cfg, arrays)
    assert runners is not None, "torch is not importable"
    calls = {"fusedrnn": bench._call_for_mode(cfg, arrays, mode), "torch": runners[0 if mode == "f" else 1]}
    times = bench._alternating_times(calls, seconds, pause=0.2)
    (p10_ours, med_ours), (p10_torch, med_torch) = (np.percentile(times[k], [10, 50]) * 1e3 for k in times)
    print(f"{cfg} {mode}: fusedrnn p10 {p10_ours:.2f} ms median {med_ours:.2f}; torch p10 {p10_torch:.2f} ms "
          f"median {med_torch:.2f}; torch / fusedrnn {p10_torch / p10_ours:.2f}x (p10), "
          f"{med_torch / med_ours:.2f}x (median); n={len(times['torch'])}")  # fmt: skip


if __name__ == "__main__":
    main()
