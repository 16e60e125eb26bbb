"""Small packed forwards on the calling thread alone against the whole team, in blocks of calls.

``parallel()`` runs a call under ``kTeamMinFlops`` (2.5 MFLOP) on the calling thread alone. An
experiment build that reads the threshold per call (``benchmarks/patches/join_spin.patch``, which
carries ``TEAM_MIN_FLOPS`` beside ``JOIN_SPIN``) can force either. The two alternate in blocks of
200 timed calls (after 50 untimed), eight rounds, so that each block finds the weights where its
own way of running left them (one core's caches, or each rank's slice in its own). Prints medians.

    python benchmarks/run_with.py /tmp/NAME benchmarks/team_threshold.py lstm 128,256,384 [T]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from fusedrnn import bench

SETTINGS = {"one thread": "1e18", "team": "0"}


def main() -> None:
    cell, sizes = sys.argv[1], [int(h) for h in sys.argv[2].split(",")]
    T = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for H in sizes:
        cfg = bench.Config(cell, T, 1, H, H)
        call = bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), "p")
        times: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(8):
            for name, value in SETTINGS.items():
                os.environ["TEAM_MIN_FLOPS"] = value
                for _ in range(50):
                    call()
                for _ in range(200):
                    t0 = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - t0)
        one, team = (float(np.median(times[name])) * 1e6 for name in SETTINGS)
        print(f"{cfg}: one thread {one:.1f} us, team {team:.1f} us, team / one {team / one:.2f}")


if __name__ == "__main__":
    main()
