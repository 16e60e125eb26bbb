"""Why one bfloat16 GRU case fails on the GPU: the kernels' bf16 tape, emulated in NumPy.

tests/test_cuda.py's ``test_dtypes_lengths_reverse[1-3-1-True-False-gru-persistent-bfloat16]`` (T = 1,
B = 3, I = 3, H = 1, no bias) fails on dh0: max abs error 4.315e-3 against a bound of 3.927e-3 (1e-2 *
max|ref| + 1e-3). This script rebuilds that test's inputs (same seed), runs the float64 reference on
the bf16-rounded inputs, and emulates the kernels: products in float32, then the tape (r, z, n and
R_n h + b_hn) and the recurrent gate gradients each either rounded to bf16 (as the kernels store
them) or kept in float32, and dh0 rounded to bf16 at the end. It prints the error of each variant.

Usage: ``python benchmarks/bf16_gru_tape_emulation.py`` from the repository root (needs torch).
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_cuda import make_inputs, reference, rounded, run_host  # noqa: E402


def bf16(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.asarray(a, np.float64)).to(torch.bfloat16).to(torch.float64).numpy()


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float64)


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


def dh0_emulated(a: dict, tape_bf16: bool, grads_bf16: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dh0 of a one-step GRU without bias as the kernels compute it; also the summed terms."""
    x, h0, w, r = a["x"][0], a["h0"], a["weight_ih"], a["weight_hh"]
    H = h0.shape[1]
    xw, hp = f32(x @ w.T), f32(h0 @ r.T)
    reset = sigmoid(xw[:, :H] + hp[:, :H])
    update = sigmoid(xw[:, H:2 * H] + hp[:, H:2 * H])
    hn = hp[:, 2 * H:]
    new = np.tanh(xw[:, 2 * H:] + reset * hn)
    keep = bf16 if tape_bf16 else f32
    reset, update, new, hn = keep(reset), keep(update), keep(new), keep(hn)
    dh = f32(a["dh_n"] + a["dy"][0])
    d_new = dh * (1 - update) * (1 - new * new)
    d_rec = np.concatenate([d_new * hn * reset * (1 - reset), dh * (h0 - new) * update * (1 - update), d_new * reset], 1)
    d_rec = bf16(d_rec) if grads_bf16 else f32(d_rec)
    through_r, direct = d_rec @ r, dh * update
    return bf16(through_r + direct), through_r, direct


def main() -> None:
    node = "tests/test_cuda.py::test_dtypes_lengths_reverse[1-3-1-True-False-gru-persistent-bfloat16]"
    a = rounded(make_inputs(np.random.default_rng(zlib.crc32(node.encode())), "gru", 1, 3, 3, 1, lengths=True,
                            bias=False), "bfloat16")  # fmt: skip
    want = run_host(reference, "gru", a, False)[1]["h0"]
    bound = 1e-2 * np.max(np.abs(want)) + 1e-3
    print(f"reference dh0 {want.ravel()}; the test's bound {bound:.3e}")
    for tape in (False, True):
        for grads in (False, True):
            got, through_r, direct = dh0_emulated(a, tape, grads)
            print(f"tape in {'bf16' if tape else 'fp32'}, gate gradients in {'bf16' if grads else 'fp32'}: "
                  f"max abs error {np.max(np.abs(got - want)):.3e}")  # fmt: skip
    print(f"dh0 = through R {through_r.ravel()} + direct dh*z {direct.ravel()}")


if __name__ == "__main__":
    main()
