"""Per-step latency of the CUDA forward paths: where a persistent step's time goes.

The marginal time of T more steps (a forward of 2T steps minus one of T steps, medians of
CUDA-event timings, no tape) removes the per-call costs (input GEMM launch, allocations, argument
checks). H = 16 measures what a step costs with almost no work: the grid barrier and the
dependent chain of the step (product, cell math, the store of h and its read by every block);
larger H adds the product. Each row runs the persistent kernels (the shared-memory one, and the
register-resident one with the state passed as tagged words or behind flags: FUSEDRNN_CUDA_PERSISTENT)
and the stepwise path, fp32 and bf16; a second table times forward + backward steps the same way.

Usage (on a GPU machine): ``python benchmarks/gpu_step_latency.py [--repeats 30]``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from fusedrnn import cuda
from fusedrnn.bench_cuda import _event_median_ms


def per_step_us(torch, cell: str, H: int, B: int, T: int, dtype: str, path: str, repeats: int,
                backward: bool = False) -> float:  # fmt: skip
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    rng = np.random.default_rng(0)
    s = 1 / np.sqrt(H)

    def dev(a: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a)).to("cuda", getattr(torch, dtype))

    x = dev(rng.standard_normal((2 * T, B, H)))
    h0, c0 = dev(rng.standard_normal((B, H))), dev(rng.standard_normal((B, H)))
    w, r = dev(rng.uniform(-s, s, (G * H, H))), dev(rng.uniform(-s, s, (G * H, H)))
    b = dev(rng.uniform(-s, s, G * H))

    dy = dev(rng.standard_normal((2 * T, B, H)))

    def median_ms(steps: int) -> float:
        xs, dys = x[:steps], dy[:steps]

        def call() -> None:
            out = cuda.forward(cell, xs, h0, c0 if cell == "lstm" else None, w, r, b, b, None, False, backward,
                               path=path)  # fmt: skip
            if backward:
                cuda.backward(cell, out[3], dys, None, None, path=path)

        return _event_median_ms(torch, call, repeats)

    return (median_ms(2 * T) - median_ms(T)) / T * 1e3


def table(torch, title: str, configs, variants, repeats: int, backward: bool) -> None:
    """One row per (cell, H, B) and dtype, one column per (FUSEDRNN_CUDA_PERSISTENT value, path)."""
    print(f"\n{torch.cuda.get_device_name()}: marginal us per {title} (2T - T steps, T = 200)")
    print(f"{'cell':5s} {'H':>5s} {'B':>3s} {'dtype':9s}" + "".join(f"{v or p:>10s}" for v, p in variants))
    for cell, H, B in configs:
        for dtype in ("float32", "bfloat16"):
            row = []
            for variant, path in variants:
                os.environ["FUSEDRNN_CUDA_PERSISTENT"] = variant
                try:
                    row.append(f"{per_step_us(torch, cell, H, B, 200, dtype, path, repeats, backward):.2f}")
                except RuntimeError as e:  # the persistent path cannot run this size
                    row.append("n/a" if "persistent" in str(e) else "error")
            os.environ.pop("FUSEDRNN_CUDA_PERSISTENT")
            print(f"{cell:5s} {H:5d} {B:3d} {dtype:9s}" + "".join(f"{v:>10s}" for v in row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    import torch

    persistent = [(v, "persistent") for v in ("shared", "tagged", "flags")]
    table(torch, "forward step", (("lstm", 16, 1), ("lstm", 512, 1), ("lstm", 1024, 1), ("lstm", 512, 4),
                                  ("lstm", 1024, 4), ("lstm", 512, 16), ("lstm", 1024, 16), ("lstm", 768, 16),
                                  ("gru", 512, 16), ("gru", 1024, 16), ("lstm", 1024, 32)),
          persistent + [("", "stepwise")], args.repeats, False)  # fmt: skip
    # "flags" also runs the register-resident backward; "shared" the shared-memory one.
    table(torch, "forward + backward step", (("lstm", 512, 1), ("lstm", 1024, 1), ("lstm", 512, 16),
                                             ("lstm", 1024, 16), ("gru", 512, 16), ("lstm", 1024, 32)),
          [persistent[0], persistent[2], ("", "stepwise")], args.repeats, True)  # fmt: skip


if __name__ == "__main__":
    main()
