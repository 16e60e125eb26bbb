"""A forward right after another library's multithreaded call: its idle threads keep spinning.

NumPy's OpenBLAS, torch's OpenMP team and ONNX Runtime's pool busy-wait for a while after a
parallel call, on the same cores our kernels' team then needs. This times an LSTM T=100 B=16 H=256
forward (plain) right after a 512 x 512 float32 product from NumPy and torch, after the product
with a delay, with that library limited to one thread (threadpoolctl), and right after ONNX
Runtime's forward of the same LSTM (two threads) with and without its spinning, against a
forward after a 0.5 s pause. Usage: ``python benchmarks/neighbour_threads.py [rounds]`` (figures
in ``docs/perf-notes.md``, eighth and tenth sessions).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

from fusedrnn import bench, functional


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # the caller busy in Python, as a training loop would be
        pass


def median_ms(before: Callable[[], Any], fwd: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        time.sleep(0.5)
        before()
        start = time.perf_counter()
        fwd()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    cfg = bench.Config("lstm", 100, 16, 256, 256)
    arrays = bench._arrays(cfg, np.float32)
    fwd = bench._runner(functional, cfg, arrays)[0]
    for _ in range(10):
        fwd()
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    cases: dict[str, Callable[[], Any]] = {
        "after a 0.5 s pause": lambda: None,
        "right after a NumPy product": lambda: a @ a,
        "10 ms after a NumPy product": lambda: (a @ a, busy(0.01)),
        "100 ms after a NumPy product": lambda: (a @ a, busy(0.1)),
    }
    try:
        import torch

        t = torch.from_numpy(a)
        cases["right after a torch product"] = lambda: t @ t
        cases["100 ms after a torch product"] = lambda: (t @ t, busy(0.1))
    except ImportError:
        pass
    for spinning in (True, False):
        ort = bench._ort_forward(cfg, arrays, threads=2, spinning=spinning)
        if ort is not None:
            cases["right after ONNX Runtime" + ("" if spinning else ", no spin")] = ort
    print(f"{cfg} forward, median of {rounds}:")
    for name, before in cases.items():
        print(f"  {name:36s} {median_ms(before, fwd, rounds):7.2f} ms")
    with threadpool_limits(limits=1):
        print(f"  {'right after, libraries on 1 thread':36s} {median_ms(lambda: a @ a, fwd, rounds):7.2f} ms")
        if "right after a torch product" in cases:
            print(f"  {'right after torch, on 1 thread':36s} "
                  f"{median_ms(cases['right after a torch product'], fwd, rounds):7.2f} ms")


if __name__ == "__main__":
    main()
