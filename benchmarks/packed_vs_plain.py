"""The forward through weights packed once (``functional.pack_weights``) against the plain one.

Usage (figures in ``docs/perf-notes.md``, "Weights packed once"):

- ``python benchmarks/packed_vs_plain.py calls lstm,512,1,1 gru,256,1,1 ...`` (cell,H,B,T with I = H):
  medians of plain and packed forwards, three rounds of 2 s each, alternating;
- ``python benchmarks/packed_vs_plain.py torch 512``: one step of one sequence through
  ``fusedrnn.torch.LSTM`` under ``no_grad``, outside and inside ``module.packed()``, and through
  ``torch.nn.LSTM`` (needs torch);
- ``python benchmarks/packed_vs_plain.py demo 512 2``: the demo's text sampling (300 characters, one
  step per call) of an untrained LSTM language model of that width and depth, with and without
  ``layer.packed()``.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import fusedrnn
from fusedrnn import bench, functional


def median_seconds(fn: Callable[[], Any], seconds: float = 2.0) -> float:
    return bench._median_seconds(fn, 1, budget=math.inf, min_seconds=seconds)


def calls(specs: list[str]) -> None:
    for spec in specs:
        cell, H, B, T = spec.split(",")
        cfg = bench.Config(cell, int(T), int(B), int(H), int(H))
        a = bench._arrays(cfg, np.float32)
        plain, packed = bench._runner(functional, cfg, a)[0], bench._packed_forward(cfg, a)
        p, q = [], []
        for _ in range(3):
            p.append(median_seconds(plain) * 1e3)
            q.append(median_seconds(packed) * 1e3)
        print(f"{cfg}: plain {[round(v, 3) for v in p]} ms, packed {[round(v, 3) for v in q]} ms, "
              f"ratio {statistics.median(p) / statistics.median(q):.2f}x")  # fmt: skip


def torch_step(H: int) -> None:
    import torch

    import fusedrnn.torch as ft

    torch.set_num_threads(fusedrnn.get_num_threads())
    ours, ref = ft.LSTM(H, H).eval(), torch.nn.LSTM(H, H).eval()
    x = torch.randn(1, 1, H)
    with torch.no_grad():
        plain = median_seconds(lambda: ours(x))
        with ours.packed():
            packed = median_seconds(lambda: ours(x))
        baseline = median_seconds(lambda: ref(x))
    print(f"LSTM H={H} T=1 B=1 under no_grad: fusedrnn.torch {plain * 1e3:.3f} ms, inside packed() "
          f"{packed * 1e3:.3f} ms, torch.nn.LSTM {baseline * 1e3:.3f} ms")  # fmt: skip


def demo_sampling(H: int, layers: int) -> None:
    from fusedrnn import demo

    corpus = demo.CharCorpus.from_stdlib()
    config = {"task": "lm", "cell": "lstm", "hidden": H, "layers": layers, "n_in": demo.EMBED_DIM,
              "n_out": len(corpus.vocab), "vocab_size": len(corpus.vocab), "per_step": True}  # fmt: skip
    model = demo.Model(config, np.random.default_rng(0))
    packed_block = fusedrnn.LSTM.packed
    times: dict[str, list[float]] = {"plain": [], "packed": []}
    try:
        for _ in range(3):
            for mode in times:
                fusedrnn.LSTM.packed = packed_block if mode == "packed" else contextlib.nullcontext  # type: ignore
                start = time.perf_counter()
                demo.sample_text(model, corpus, "def ", 300, 1.0, np.random.default_rng(1))
                times[mode].append(time.perf_counter() - start)
    finally:
        fusedrnn.LSTM.packed = packed_block  # type: ignore[method-assign]
    print(f"demo sampling, LSTM H={H} x {layers} layers, 300 characters: plain "
          f"{statistics.median(times['plain']) * 1e3:.0f} ms, packed {statistics.median(times['packed']) * 1e3:.0f} ms")


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "calls":
        calls(args)
    elif mode == "torch":
        torch_step(int(args[0]))
    elif mode == "demo":
        demo_sampling(int(args[0]), int(args[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
