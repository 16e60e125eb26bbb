"""pytest-benchmark suite: ``python -m pytest benchmarks/bench_kernels.py --benchmark-enable``.

Each configuration is checked against the float64 reference once (max relative error <= 1e-4 for
float32) before it is timed; "packed forward" runs through weights packed once
(``functional.pack_weights``), checked bitwise against the plain forward.
"""

from __future__ import annotations

import numpy as np
import pytest
from configs import TABLE, Config

from fusedrnn import bench, functional


@pytest.mark.parametrize("cfg", TABLE, ids=str)
@pytest.mark.parametrize("phase", ["forward", "forward+backward", "packed forward"])
def test_kernels(benchmark, cfg: Config, phase: str) -> None:  # type: ignore[no-untyped-def]
    small = Config(cfg.cell, min(cfg.T, 8), min(cfg.B, 4), cfg.I, cfg.H)
    assert bench._max_rel_error(small) <= 1e-4
    arrays = bench._arrays(cfg, np.float32)
    fwd, both = bench._runner(functional, cfg, arrays)
    run = {"forward": fwd, "forward+backward": both}.get(phase) or bench._packed_forward(cfg, arrays)
    benchmark.extra_info["gflop"] = cfg.forward_flops * (3 if phase == "forward+backward" else 1) / 1e9
    benchmark(run)
