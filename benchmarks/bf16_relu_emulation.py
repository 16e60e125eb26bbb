"""Why bfloat16 Elman-relu cases failed on the GPU: the CUDA kernels' bf16 storage, emulated in NumPy.

The forward and backward of ``rnn_relu`` with every array the kernels store rounded to bfloat16
(outputs, tape, gate gradients, GEMM results) and the state carried in float32, against the float64
reference on bf16-rounded inputs, judged by tests/test_cuda.py's rule (max abs error <= 1e-2 *
max|ref| + 1e-3 for each array). Two variants: the input projection ``W x + b`` stored in bf16 (the
kernels until 2026-11-30) or kept in float32 until the nonlinearity has used it.

Usage: ``python benchmarks/bf16_relu_emulation.py [draws]`` (needs torch for the bf16 rounding).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from fusedrnn import reference


def bf16(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.asarray(a, np.float64)).to(torch.bfloat16).to(torch.float64).numpy()


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float64)


def fails(seed: int, T: int, B: int, I: int, H: int, lengths: bool, projection_in_bf16: bool) -> bool:
    rng = np.random.default_rng(seed)
    s = 1 / np.sqrt(H)
    x, h0 = bf16(rng.standard_normal((T, B, I))), bf16(rng.standard_normal((B, H)) * 0.5)
    w, r = bf16(rng.uniform(-s, s, (H, I))), bf16(rng.uniform(-s, s, (H, H)))
    b_ih, b_hh = bf16(rng.uniform(-s, s, H)), bf16(rng.uniform(-s, s, H))
    dy, dh_n = bf16(rng.standard_normal((T, B, H))), bf16(rng.standard_normal((B, H)))
    lens = rng.integers(1, T + 1, B) if lengths else np.full(B, T)
    y, _, tape = reference.rnn_forward(x, h0, w, r, b_ih, b_hh, nonlinearity="relu", lengths=lens)
    want = reference.rnn_backward(tape, dy, dh_n)

    xw = f32(x.reshape(T * B, I) @ w.T + b_ih).reshape(T, B, H)
    if projection_in_bf16:
        xw = bf16(xw)
    h, acts, h_prev = f32(h0), np.zeros((T, B, H)), np.zeros((T, B, H))
    for t in range(T):
        live = (t < lens)[:, None]
        h_prev[t] = bf16(h)
        a = np.maximum(f32(xw[t] + f32(h @ r.T + b_hh)), 0)
        acts[t] = bf16(a) * live
        h = np.where(live, a, h)
    dh, dg = f32(dh_n), np.zeros((T, B, H))
    for t in reversed(range(T)):
        live = (t < lens)[:, None]
        dg[t] = bf16(np.where(live, f32(dh + dy[t]) * (acts[t] > 0), 0))
        dh = np.where(live, f32(dg[t] @ r), dh)
    flat = dg.reshape(T * B, H)
    got = {"y": acts, "x": bf16(flat @ w).reshape(T, B, I), "weight_ih": bf16(flat.T @ x.reshape(T * B, I)),
           "weight_hh": bf16(flat.T @ h_prev.reshape(T * B, H)), "bias_ih": bf16(flat.sum(0))}  # fmt: skip
    ref = {"y": y, **{k: want[k] for k in ("x", "weight_ih", "weight_hh", "bias_ih")}}
    return any(np.max(np.abs(got[k] - ref[k])) > 1e-2 * np.max(np.abs(ref[k])) + 1e-3 for k in ref)


if __name__ == "__main__":
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for shape in ((2, 16, 3, 64, True), (17, 1, 3, 129, False)):
        for in_bf16 in (True, False):
            n = sum(fails(seed, *shape, projection_in_bf16=in_bf16) for seed in range(draws))
            where = "bf16" if in_bf16 else "float32"
            print(f"T={shape[0]} B={shape[1]} H={shape[3]} lengths={shape[4]}, W x + b in {where}: "
                  f"{n}/{draws} draws fail the test's rule")  # fmt: skip
