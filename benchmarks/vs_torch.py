"""fusedrnn against torch (or ONNX Runtime) on one configuration, alternating call by call in one process.

``bench`` times each library in a block of its own, so a burst of neighbour load that hits one
block moves that row's ratio by up to 2x on the shared VM. Alternating the calls exposes both to
the same moments. Each library gets a 0.2 s pause before its own timed call's predecessor, so
that the other's spinning threads (torch's OpenMP team; see ``neighbour_threads.py``) have
stopped. Usage: ``python benchmarks/vs_torch.py "lstm 256 64 50 f" [SECONDS] [--ort]`` (cell, H = I,
B, T, ``f``, ``fb`` or ``p``, the forward through weights packed once); prints the 10th
percentiles, medians and their ratios. With ``--ort`` the baseline is ONNX Runtime's forward (its
session packs the weights once, so ``p`` is the like-for-like mode). ``--pause S`` (default 0.2):
the pause before each library's calls. Calls after a pause are calls after idling
(``after_idle.py``). Our two-thread B = 1 forwards took ~1.3 ms there against 0.3 ms in steady
state, so this harness could not read the B = 1 rows (perf-notes, twelfth session). Since the
worker moves off the caller's CPU (thirteenth session) they take ~0.5 ms, as ORT's do after its
own pause: the B = 1 rows compare both libraries as calls after idling.
"""

from __future__ import annotations

import sys

import numpy as np

from fusedrnn import bench


def main() -> None:
    argv = sys.argv[1:]
    pause = 0.2
    if "--pause" in argv:
        i = argv.index("--pause")
        pause = float(argv[i + 1])
        del argv[i : i + 2]
    args = [a for a in argv if a != "--ort"]
    use_ort = "--ort" in argv
    cell, H, B, T, mode = args[0].split()
    seconds = float(args[1]) if len(args) > 1 else 20.0
    cfg = bench.Config(cell, int(T), int(B), int(H), int(H))
    arrays = bench._arrays(cfg, np.float32)
    if use_ort:
        name, baseline = "ort", bench._ort_forward(cfg, arrays, threads=2)
        assert baseline is not None and mode != "fb", "ONNX Runtime is not importable, or fb was asked of it"
    else:
        import torch

        torch.set_num_threads(2)
        runners = bench._torch_runners(cfg, arrays)
        assert runners is not None, "torch is not importable"
        name, baseline = "torch", runners[0 if mode in ("f", "p") else 1]
    calls = {"fusedrnn": bench._call_for_mode(cfg, arrays, mode), name: baseline}
    times = bench._alternating_times(calls, seconds, pause=pause)
    (p10_ours, med_ours), (p10_base, med_base) = (np.percentile(times[k], [10, 50]) * 1e3 for k in times)
    print(f"{cfg} {mode}: fusedrnn p10 {p10_ours:.2f} ms median {med_ours:.2f}; {name} p10 {p10_base:.2f} ms "
          f"median {med_base:.2f}; {name} / fusedrnn {p10_base / p10_ours:.2f}x (p10), "
          f"{med_base / med_ours:.2f}x (median); n={len(times[name])}")  # fmt: skip


if __name__ == "__main__":
    main()
