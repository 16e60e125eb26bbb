"""``python -m fusedrnn bench --device cuda``: fusedrnn's CUDA kernels next to cuDNN (through torch).

Needs a CUDA-enabled build, a GPU and torch with CUDA. Each configuration is checked first: the
float32 result must agree with the CPU kernels (relative error <= 1e-4; 1e-2 for float16/bfloat16)
before it is timed. Times are medians of CUDA-event timings of whole calls on torch's current
stream (argument checks and allocations included), after warm-up; cuDNN runs ``torch.nn.LSTM``/
``GRU`` with the same weights, input projection included, as the CUDA issue's table did.
TFLOP/s count the forward's ``2*T*B*(I+H)*G*H`` FLOPs and three times that for forward+backward.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import numpy as np

from . import cuda, functional
from .bench import Config, _arrays, _square

# The CUDA issue's table (T = 100 unless given).
CUDA_TABLE = [
    _square("lstm", 512, 1, 100),
    _square("lstm", 512, 16, 100),
    _square("lstm", 1024, 16, 100),
    _square("lstm", 768, 16, 1024),
    _square("lstm", 2048, 64, 50),
    _square("gru", 512, 16, 100),
]
DTYPES = ("float32", "bfloat16", "float16")


def _event_median_ms(torch: Any, fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def _problem(torch: Any, cfg: Config, dtype: str) -> dict[str, Any]:
    a = _arrays(cfg, np.float32)
    tdtype = getattr(torch, dtype)
    return {k: (torch.from_numpy(np.ascontiguousarray(v)).to("cuda", tdtype) if isinstance(v, np.ndarray) else v)
            for k, v in a.items()}  # fmt: skip


def _ours(cfg: Config, t: dict[str, Any], path: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    lstm = cfg.cell == "lstm"
    args = (cfg.cell, t["x"], t["h0"], t["c0"] if lstm else None, t["weight_ih"], t["weight_hh"], t["bias_ih"],
            t["bias_hh"], None, False)

    def fwd() -> Any:
        return cuda.forward(*args, False, path=path)

    def both() -> Any:
        y, h_n, c_n, tape = cuda.forward(*args, True, path=path)
        return cuda.backward(cfg.cell, tape, t["dy"], None, None, path=path)

    return fwd, both


def _cudnn(torch: Any, cfg: Config, t: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    module_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cfg.cell, torch.nn.RNN)
    kwargs = {"nonlinearity": cfg.cell[4:]} if cfg.cell.startswith("rnn_") else {}
    module = module_cls(cfg.I, cfg.H, **kwargs).to("cuda", t["x"].dtype)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(module, name).copy_(t[name[:-3]])
    module.flatten_parameters()  # one contiguous weight buffer: cuDNN would copy the weights every call
    x = t["x"].detach().clone().requires_grad_(True)

    def fwd() -> Any:
        with torch.no_grad():
            return module(t["x"])

    def both() -> Any:
        y, _ = module(x)
        y.backward(t["dy"])

    return fwd, both


def _check(cfg: Config, t: dict[str, Any]) -> float:
    """Max relative error of our CUDA forward against the CPU kernels, in float32 on the host."""
    lstm = cfg.cell == "lstm"
    host = {k: (v.float().cpu().numpy() if hasattr(v, "cpu") else v) for k, v in t.items()}
    y_cpu = functional._forward(cfg.cell, host["x"], host["h0"], host["c0"] if lstm else None, host["weight_ih"],
                                host["weight_hh"], host["bias_ih"], host["bias_hh"], None, False, False)[0]  # fmt: skip
    y_gpu = cuda.forward(cfg.cell, t["x"], t["h0"], t["c0"] if lstm else None, t["weight_ih"], t["weight_hh"],
                         t["bias_ih"], t["bias_hh"], None, False, False)[0].float().cpu().numpy()  # fmt: skip
    return float(np.max(np.abs(y_gpu - y_cpu)) / max(float(np.max(np.abs(y_cpu))), 1e-30))


def main(configs: list[Config] | None, repeats: int, path: str) -> int:
    if not cuda.cuda_available():
        print("bench --device cuda: no CUDA device available (fusedrnn.cuda_available() is False)")
        return 2
    try:
        import torch
    except ImportError:
        print("bench --device cuda needs torch with CUDA (for its tensors and the cuDNN baseline)")
        return 2
    if not torch.cuda.is_available():
        print("bench --device cuda: torch sees no CUDA device")
        return 2
    configs = configs or CUDA_TABLE
    print(f"fusedrnn bench --device cuda: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}, path={path}; medians of {repeats} CUDA-event timings")  # fmt: skip
    print(f"{'config':34s} {'dtype':9s} {'ours fwd us/step':>16s} {'TFLOP/s':>8s} {'cuDNN':>9s} {'ratio':>6s}"
          f" | {'ours f+b us/step':>16s} {'cuDNN':>9s} {'ratio':>6s}")  # fmt: skip
    for cfg in configs:
        for dtype in DTYPES:
            t = _problem(torch, cfg, dtype)
            error = _check(cfg, t)
            limit = 1e-4 if dtype == "float32" else 1e-2
            if not error <= limit:
                print(f"{cfg!s:34s} {dtype:9s} DISAGREES with the CPU kernels: max relative error {error:.2e}")
                return 1
            ours = [_event_median_ms(torch, f, repeats) for f in _ours(cfg, t, path)]
            base = [_event_median_ms(torch, f, repeats) for f in _cudnn(torch, cfg, t)]
            per_step = [1e3 * ms / cfg.T for ms in ours + base]
            tflops = cfg.forward_flops / (ours[0] * 1e-3) / 1e12
            print(f"{cfg!s:34s} {dtype:9s} {per_step[0]:16.2f} {tflops:8.2f} {per_step[2]:9.2f} "
                  f"{base[0] / ours[0]:5.2f}x | {per_step[1]:16.2f} {per_step[3]:9.2f} {base[1] / ours[1]:5.2f}x")
    print("ratio = cuDNN time / fusedrnn time (above 1: fusedrnn is faster)")
    return 0


__all__ = ["CUDA_TABLE", "main"]
