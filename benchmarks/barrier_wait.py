"""How long each rank waits at the team's barriers per call, from an instrumented build.

The barrier's time is not visible in a plain build (perf attributes spinning to the barrier but
not to which one or for how long per call). ``benchmarks/patches/barrier_wait.patch`` times each
``Team::barrier()`` with ``steady_clock`` and adds ``_C.barrier_stats()``. Build and run it apart
from the working tree:

    git worktree add /tmp/wt-barrier HEAD && git -C /tmp/wt-barrier apply benchmarks/patches/barrier_wait.patch
    bash /tmp/wt-barrier/benchmarks/ab_build.sh barrier
    python benchmarks/run_with.py /tmp/barrier benchmarks/barrier_wait.py "lstm 256 16 100 f" "lstm 512 1 1 p"

Each argument: cell, H = I, B, T and ``f`` (forward), ``fb`` (forward + backward) or ``p``
(forward through packed weights). Calls for three seconds each.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from fusedrnn import _C, bench


def main() -> None:
    for spec in sys.argv[1:]:
        cell, H, B, T, mode = spec.split()
        cfg = bench.Config(cell, int(T), int(B), int(H), int(H))
        call = bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), mode)
        for _ in range(3):
            call()
        _C.barrier_stats()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < 3.0:
            call()
            calls += 1
        per_call = (time.perf_counter() - start) / calls
        waits = ", ".join(
            f"rank {r} waits {ns / calls / 1e3:.1f} us at {n / calls:.0f} barriers"
            for r, (ns, n) in enumerate(_C.barrier_stats())
        )
        print(f"{cfg} {mode}: {per_call * 1e3:.3f} ms per call; {waits}")


if __name__ == "__main__":
    main()
