"""In-process A/B of packed weights made two ways, switched by an environment variable at packing.

``ab_env.py`` switches a variable per call; a variable that ``pack_weights`` reads when it packs
(``PACK_POOL`` in ``benchmarks/patches/pack_pool.patch``) needs one packed object per value. This
packs the layer once per value and alternates their forwards call by call (each timed call after an
untimed one of the same value), printing the 10th percentile and median of each with their ratios
to the first value's. Usage: ``python benchmarks/ab_packed.py "lstm 1536 4 50" SECONDS VAR A B``
(cell, H = I, B, T), run against an experiment build (``run_with.py``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ab_env import report  # benchmarks/ is on sys.path: this script's folder, or run_with.py's
from fusedrnn import bench


def main() -> None:
    config, seconds, var, values = sys.argv[1].split(), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    cell, H, B, T = config[0], int(config[1]), int(config[2]), int(config[3])
    cfg = bench.Config(cell, T, B, H, H)
    arrays = bench._arrays(cfg, np.float32)
    calls = {}
    for value in values:
        os.environ[var] = value
        calls[value] = bench._packed_forward(cfg, arrays)  # packs now, and checks it bitwise
    report(var, bench._alternating_times(calls, seconds, min_calls=1))


if __name__ == "__main__":
    main()
