"""Small calls: one thread against two, and what the allocator does to a forward + backward.

Usage (figures in ``docs/perf-notes.md``, seventh session):

- ``python benchmarks/small_calls.py threads``: plain forward, forward + backward and packed forward
  of a few small configurations on 1 and on 2 threads (best of two medians each; the packed weights
  held meanwhile make the forward + backward pay the allocator effect below);
- ``python benchmarks/small_calls.py allocator``: LSTM T=1 B=1 H=256 forward + backward, before and
  after the process takes two other 1 MB allocations;
- ``python benchmarks/small_calls.py packed-threads [seconds]``: forwards through packed weights,
  1 and 2 threads alternating call by call (the eighth session's threshold, `kTeamMinFlops`);
- ``python benchmarks/small_calls.py one-step CELL H [seconds]``: plain T=1 B=1 forward and
  forward + backward, called back to back (the loop profiled for one-step training calls in
  ``docs/perf-notes.md``, eleventh session);
- ``python benchmarks/small_calls.py after-pause``: each of the first 40 plain LSTM T=1 H=512
  forwards after a 0.5 s pause, three times (why `bench` takes a minimum time per median).

Since `6f17a1e` a call under 2.5 MFLOP of work runs on one thread whatever ``set_num_threads``
says, so the 1/2-thread comparisons show the crossover only against a build from before it
(``git worktree add /tmp/wt-old 6f17a1e~1 && bash /tmp/wt-old/benchmarks/ab_build.sh old``, then
``python benchmarks/run_with.py /tmp/old benchmarks/small_calls.py packed-threads``).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import fusedrnn
from fusedrnn import bench, functional

SMALL = [("lstm", 256, 1, 1), ("lstm", 128, 1, 4), ("lstm", 64, 1, 16), ("lstm", 256, 1, 2), ("lstm", 128, 1, 8),
         ("lstm", 64, 1, 32), ("gru", 384, 1, 1), ("lstm", 256, 4, 1), ("lstm", 64, 2, 40), ("lstm", 128, 1, 100),
         ("gru", 128, 1, 100), ("lstm", 64, 1, 100), ("lstm", 256, 1, 100)]  # fmt: skip


def median_us(fn: Callable[[], Any], seconds: float = 0.7) -> float:
    return bench._median_seconds(fn, 1, budget=math.inf, min_seconds=seconds) * 1e6


def threads() -> None:
    before = fusedrnn.get_num_threads()
    for cell, H, B, T in SMALL:
        cfg = bench.Config(cell, T, B, H, H)
        a = bench._arrays(cfg, np.float32)
        fwd, both = bench._runner(functional, cfg, a)
        fns = {"f": fwd, "fb": both, "packed": bench._packed_forward(cfg, a)}
        best: dict[tuple[str, int], float] = {}
        for n in (1, 2, 1, 2):
            fusedrnn.set_num_threads(n)
            for name, fn in fns.items():
                t = median_us(fn)
                best[name, n] = min(best.get((name, n), t), t)
        print(f"{cfg} ({cfg.forward_flops / 1e6:.2f} MFLOP, {cfg.forward_flops / T / 1e3:.0f} KFLOP/step): "
              + "  ".join(f"{k} {best[k, 1]:.0f}/{best[k, 2]:.0f} us" for k in fns) + "  (1/2 threads)")
    fusedrnn.set_num_threads(before)


def allocator() -> None:
    cfg = bench.Config("lstm", 1, 1, 256, 256)
    both = bench._runner(functional, cfg, bench._arrays(cfg, np.float32))[1]
    print(f"{cfg} forward + backward: {median_us(both, 1.5):.0f} us")
    held = [np.ones(262144 + 512, np.float32) for _ in range(2)]  # two other 1 MB arrays alive
    print(f"  with two other 1 MB arrays alive: {median_us(both, 1.5):.0f} us")
    del held


PACKED = [("lstm", 256, 1, 1), ("lstm", 128, 1, 4), ("lstm", 64, 1, 16), ("lstm", 256, 2, 1), ("lstm", 320, 1, 1),
          ("gru", 384, 1, 1), ("rnn_tanh", 512, 1, 2), ("gru", 512, 1, 1), ("lstm", 512, 1, 1), ("lstm", 256, 4, 1),
          ("lstm", 256, 1, 4)]  # fmt: skip


def packed_threads(seconds: float = 5.0) -> None:
    before = fusedrnn.get_num_threads()
    for cell, H, B, T in PACKED:
        cfg = bench.Config(cell, T, B, H, H)
        fn = bench._packed_forward(cfg, bench._arrays(cfg, np.float32))
        times: dict[int, list[float]] = {1: [], 2: []}
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for n in (1, 2):
                fusedrnn.set_num_threads(n)
                fn()
                start = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - start)
        print(f"{cfg} ({cfg.forward_flops / 1e6:.2f} MFLOP) packed forward median: "
              + ", ".join(f"{n} thread(s) {statistics.median(times[n]) * 1e6:.1f} us" for n in (1, 2)))
    fusedrnn.set_num_threads(before)


def after_pause() -> None:
    cfg = bench.Config("lstm", 1, 1, 512, 512)
    fwd = bench._runner(functional, cfg, bench._arrays(cfg, np.float32))[0]
    for _ in range(100):
        fwd()
    for _ in range(3):
        time.sleep(0.5)
        times = []
        for _ in range(40):
            start = time.perf_counter()
            fwd()
            times.append((time.perf_counter() - start) * 1e3)
        print(f"{cfg} forward after a 0.5 s pause, ms: " + " ".join(f"{t:.2f}" for t in times))


def one_step(cell: str, H: str, seconds: str = "3") -> None:
    cfg = bench.Config(cell, 1, 1, int(H), int(H))
    fwd, both = bench._runner(functional, cfg, bench._arrays(cfg, np.float32))
    for name, fn in (("forward", fwd), ("forward + backward", both)):
        print(f"{cfg} {name}: median {median_us(fn, float(seconds)):.0f} us")


if __name__ == "__main__":
    modes: dict[str, Callable[..., None]] = {
        "threads": threads, "allocator": allocator, "after-pause": after_pause, "one-step": one_step,
        "packed-threads": lambda seconds="5": packed_threads(float(seconds))}  # fmt: skip
    modes[sys.argv[1]](*sys.argv[2:])
