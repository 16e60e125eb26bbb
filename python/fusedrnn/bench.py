"""``python -m fusedrnn bench``: time the kernels next to the NumPy reference (and torch if present).

Every configuration is first checked: the float32 kernels must agree with the float64 reference
(relative error <= 1e-4 on outputs and every gradient) before anything is timed. Timings are
medians over repeats of whole calls (argument checks and allocations included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import functional, reference

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Config:
    cell: str
    T: int
    B: int
    I: int
    H: int

    @property
    def forward_flops(self) -> float:
        return 2.0 * self.T * self.B * (self.I + self.H) * GATES[self.cell] * self.H

    def __str__(self) -> str:
        return f"{self.cell} T={self.T} B={self.B} I={self.I} H={self.H}"


QUICK = [
    Config("lstm", 100, 1, 128, 128),
    Config("lstm", 100, 16, 256, 256),
    Config("gru", 100, 1, 128, 128),
    Config("gru", 50, 32, 256, 256),
    Config("rnn_tanh", 100, 16, 256, 256),
]
FULL = QUICK + [
    Config("lstm", 25, 64, 512, 512),
    Config("lstm", 50, 4, 1024, 1024),
    Config("gru", 50, 32, 512, 512),
    Config("rnn_relu", 100, 64, 512, 512),
]


def _arrays(cfg: Config, dtype: Any, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    G, H, s = GATES[cfg.cell], cfg.H, 1.0 / np.sqrt(cfg.H)
    a = {
        "x": rng.standard_normal((cfg.T, cfg.B, cfg.I)),
        "h0": rng.standard_normal((cfg.B, H)) * 0.5,
        "c0": rng.standard_normal((cfg.B, H)) * 0.5,
        "weight_ih": rng.uniform(-s, s, (G * H, cfg.I)),
        "weight_hh": rng.uniform(-s, s, (G * H, H)),
        "bias_ih": rng.uniform(-s, s, G * H),
        "bias_hh": rng.uniform(-s, s, G * H),
        "dy": rng.standard_normal((cfg.T, cfg.B, H)),
    }
    return {k: v.astype(dtype) for k, v in a.items()}


def _runner(module: Any, cfg: Config, a: dict[str, np.ndarray]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(forward-only, forward+backward) closures through ``module`` (functional or reference)."""
    w = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    if cfg.cell == "lstm":

        def fwd(tape: bool) -> Any:
            return module.lstm_forward(a["x"], a["h0"], a["c0"], *w, **({"need_tape": tape}))

        def both() -> Any:
            out = fwd(True)
            return out[:3], module.lstm_backward(out[3], a["dy"])

    else:
        extra = {"nonlinearity": cfg.cell[4:]} if cfg.cell.startswith("rnn") else {}
        fwd_fn = module.gru_forward if cfg.cell == "gru" else module.rnn_forward
        bwd_fn = module.gru_backward if cfg.cell == "gru" else module.rnn_backward

        def fwd(tape: bool) -> Any:
            return fwd_fn(a["x"], a["h0"], *w, need_tape=tape, **extra)

        def both() -> Any:
            out = fwd(True)
            return out[:2], bwd_fn(out[2], a["dy"])

    return (lambda: fwd(False)), both


def _max_rel_error(cfg: Config) -> float:
    """Largest normwise relative error of the float32 kernels against the float64 reference."""
    a32 = _arrays(cfg, np.float32)
    a64 = {k: v.astype(np.float64) for k, v in a32.items()}
    outs, grads = _runner(functional, cfg, a32)[1]()
    ref_outs, ref_grads = _runner(reference, cfg, a64)[1]()
    pairs = list(zip(outs, ref_outs)) + [(grads[k], ref_grads[k]) for k in ref_grads]
    return max(float(np.max(np.abs(x - r)) / max(np.max(np.abs(r)), 1e-30)) for x, r in pairs)


def _median_seconds(fn: Callable[[], Any], repeats: int, min_time: float = 0.05) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if sum(times) > 30 * min_time and len(times) >= 3:
            break
    return statistics.median(times)


def _torch_runner(cfg: Config, a: dict[str, np.ndarray]) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    try:
        import torch
    except Exception:  # not installed, or a broken install: compare without it
        return None
    kinds = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    if cfg.cell in kinds:
        m = kinds[cfg.cell](cfg.I, cfg.H)
    else:
        m = torch.nn.RNN(cfg.I, cfg.H, nonlinearity=cfg.cell[4:])
    x = torch.from_numpy(a["x"])
    dy = torch.from_numpy(a["dy"])

    def fwd() -> Any:
        with torch.no_grad():
            return m(x)

    def both() -> Any:
        xg = x.clone().requires_grad_(True)
        y, _ = m(xg)
        y.backward(dy)
        return xg.grad

    return fwd, both


def run(configs: list[Config], repeats: int, with_reference: bool, with_torch: bool) -> list[dict[str, Any]]:
    """Check and time each configuration; returns one row per configuration."""
    rows = []
    for cfg in configs:
        err = _max_rel_error(Config(cfg.cell, min(cfg.T, 8), min(cfg.B, 4), cfg.I, cfg.H))
        if not err <= 1e-4:
            raise RuntimeError(f"{cfg}: kernels disagree with the reference (max relative error {err:.2e})")
        a = _arrays(cfg, np.float32)
        fwd, both = _runner(functional, cfg, a)
        row: dict[str, Any] = {"config": str(cfg), "check": err, "flops": cfg.forward_flops}
        row["fwd"] = _median_seconds(fwd, repeats)
        row["fwdbwd"] = _median_seconds(both, repeats)
        if with_reference:
            rfwd, rboth = _runner(reference, cfg, a)
            row["ref_fwd"] = _median_seconds(rfwd, max(3, repeats // 3))
            row["ref_fwdbwd"] = _median_seconds(rboth, max(3, repeats // 3))
        torch_fns = _torch_runner(cfg, a) if with_torch else None
        if torch_fns is not None:
            row["torch_fwd"] = _median_seconds(torch_fns[0], repeats)
            row["torch_fwdbwd"] = _median_seconds(torch_fns[1], repeats)
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def _format_row(row: dict[str, Any]) -> str:
    f, fb = row["fwd"], row["fwdbwd"]
    gf, gfb = row["flops"] / f / 1e9, 3 * row["flops"] / fb / 1e9
    s = f"{row['config']:<34} {f * 1e3:9.3f} {gf:7.2f} {fb * 1e3:10.3f} {gfb:7.2f}"
    if "ref_fwd" in row:
        s += f"   {row['ref_fwd'] / f:6.1f}x {row['ref_fwdbwd'] / fb:6.1f}x"
    if "torch_fwd" in row:
        s += f"   {row['torch_fwd'] / f:6.2f}x {row['torch_fwdbwd'] / fb:6.2f}x"
    return s


def header(with_reference: bool, with_torch: bool) -> str:
    s = f"{'config (float32)':<34} {'fwd ms':>9} {'GFLOP/s':>7} {'f+b ms':>10} {'GFLOP/s':>7}"
    if with_reference:
        s += "   numpy-ref/ours (fwd, f+b)"
    if with_torch:
        s += "   torch/ours (fwd, f+b)"
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusedrnn bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few small sizes (the default set)")
    parser.add_argument("--full", action="store_true", help="more and larger sizes")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (median)")
    parser.add_argument("--no-reference", action="store_true", help="skip timing the NumPy reference")
    parser.add_argument("--no-torch", action="store_true", help="skip torch even when importable")
    args = parser.parse_args(argv)
    configs = FULL if args.full else QUICK
    with_torch = not args.no_torch
    torch_note = "not installed"
    if with_torch:
        try:
            import torch

            torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        except Exception:  # not installed, or a broken install
            with_torch = False
    print(f"fusedrnn bench: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"fusedrnn 1 thread, numpy {np.__version__}, torch: {torch_note}")  # fmt: skip
    print("FLOPs: forward 2*T*B*(I+H)*G*H, backward twice that; times are medians.")
    print(header(not args.no_reference, with_torch))
    run(configs, args.repeats, not args.no_reference, with_torch)
    return 0
