"""The array pool against plain ``np.empty``, alternating call by call in one process.

``fusedrnn._checks.empty`` allocates every output, tape array and workspace of a call from the
compiled module's pool (``csrc/bindings/array_pool.h``). This swaps it for ``np.empty`` on every
other call and prints both medians and their ratio, for forwards (``f``), forwards + backwards
(``fb``), packed forwards (``p``) and forwards + backwards of a two-layer bidirectional layer
(``layer``, batch first). The process holds other large arrays, as a real program does.

Usage: ``python benchmarks/array_pool.py [SECONDS_PER_CONFIG]`` (figures in docs/perf-notes.md,
ninth session).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any, Callable

import numpy as np

import fusedrnn
from fusedrnn import _checks, bench

CONFIGS = [("lstm", 256, 1, 1, "fb"), ("lstm", 256, 1, 1, "p"), ("gru", 512, 1, 1, "fb"), ("lstm", 128, 1, 100, "fb"),
           ("lstm", 256, 16, 100, "f"), ("lstm", 256, 16, 100, "fb"), ("lstm", 256, 64, 50, "fb"),
           ("lstm", 512, 64, 25, "fb"), ("gru", 512, 32, 50, "fb"), ("lstm", 1024, 64, 50, "f"),
           ("lstm", 256, 16, 100, "layer"), ("gru", 128, 32, 50, "layer")]  # fmt: skip


def layer_call(cfg: bench.Config) -> Callable[[], Any]:
    """Forward + backward of a two-layer bidirectional ``fusedrnn`` layer, batch first."""
    layer = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU}[cfg.cell](
        cfg.I, cfg.H, num_layers=2, bidirectional=True, batch_first=True, seed=0
    )
    x = np.random.default_rng(0).standard_normal((cfg.B, cfg.T, cfg.I)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((cfg.B, cfg.T, 2 * cfg.H)).astype(np.float32)

    def call() -> Any:
        layer(x)
        return layer.backward(dy)

    return call


def plain_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    pooled_empty = _checks.empty
    for cell, H, B, T, mode in CONFIGS:
        cfg = bench.Config(cell, T, B, H, H)
        call = layer_call(cfg) if mode == "layer" else bench._call_for_mode(cfg, bench._arrays(cfg, np.float32), mode)

        def with_empty(empty: Callable[..., np.ndarray]) -> Callable[[], Any]:
            def run() -> Any:
                _checks.empty = empty
                return call()

            return run

        times = bench._alternating_times({"pool": with_empty(pooled_empty), "np.empty": with_empty(plain_empty)}, seconds)
        _checks.empty = pooled_empty
        pool, plain = (statistics.median(times[k]) * 1e3 for k in ("pool", "np.empty"))
        print(f"{cfg} {mode:2s}: pool {pool:8.3f} ms  np.empty {plain:8.3f} ms  ratio {plain / pool:.2f}  "
              f"n={len(times['pool'])}")  # fmt: skip


if __name__ == "__main__":
    main()
