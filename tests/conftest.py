"""Shared test helpers: tolerances, random problems, NaN-poisoned allocations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zlib

import numpy as np
import pytest

import fusedrnn
from fusedrnn import _checks, functional, reference

# Relative error allowed against the float64 reference, by the dtype the kernel ran in:
#   max|actual - ref| <= RTOL * max|ref|  (+ ATOL for arrays whose reference is ~0).
TOLERANCE = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-13},
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-6},
}

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
CELLS = tuple(GATES)


def assert_close(actual: Any, ref: Any, dtype: Any, name: str = "") -> None:
    """Normwise relative check against the reference, with the table above."""
    tol = TOLERANCE[np.dtype(dtype)]
    actual = np.asarray(actual, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape} != {ref.shape}"
    if ref.size == 0:
        return
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values (unwritten output?)"
    err = np.max(np.abs(actual - ref))
    bound = tol["rtol"] * np.max(np.abs(ref)) + tol["atol"]
    assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e} (rel {err / max(np.max(np.abs(ref)), 1e-300):.3e})"


@dataclass
class Problem:
    """One random single-layer problem: inputs in float64, cast per test."""

    cell: str
    T: int
    B: int
    I: int
    H: int
    reverse: bool = False
    lengths: np.ndarray | None = None
    bias: bool = True
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def cast(self, dtype: Any) -> dict[str, np.ndarray]:
        return {k: v.astype(dtype) for k, v in self.arrays.items()}

    def run(self, module: Any, dtype: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Forward and backward through ``module`` (functional or reference); outputs and grads."""
        a = self.cast(dtype)
        kw = {"lengths": self.lengths, "reverse": self.reverse}
        w = [a["weight_ih"], a["weight_hh"]] + ([a["bias_ih"], a["bias_hh"]] if self.bias else [None, None])
        if self.cell == "lstm":
            y, h_n, c_n, tape = module.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
            grads = module.lstm_backward(tape, a["dy"], a["dh_n"], a["dc_n"])
            return {"y": y, "h_n": h_n, "c_n": c_n}, grads
        if self.cell == "gru":
            y, h_n, tape = module.gru_forward(a["x"], a["h0"], *w, **kw)
            grads = module.gru_backward(tape, a["dy"], a["dh_n"])
        else:
            y, h_n, tape = module.rnn_forward(a["x"], a["h0"], *w, nonlinearity=self.cell[4:], **kw)
            grads = module.rnn_backward(tape, a["dy"], a["dh_n"])
        return {"y": y, "h_n": h_n}, grads


def make_problem(
    rng: np.random.Generator, cell: str, T: int, B: int, I: int, H: int, *, reverse: bool = False,
    lengths: Any = None, bias: bool = True,
) -> Problem:  # fmt: skip
    """Fresh random inputs (never zeros); weights U(-1/sqrt(H), 1/sqrt(H)) as torch initialises."""
    G = GATES[cell]
    s = 1.0 / np.sqrt(H)
    arrays = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)) * 0.5,
        "weight_ih": rng.uniform(-s, s, (G * H, I)),
        "weight_hh": rng.uniform(-s, s, (G * H, H)),
        "bias_ih": rng.uniform(-s, s, (G * H,)),
        "bias_hh": rng.uniform(-s, s, (G * H,)),
        "dy": rng.standard_normal((T, B, H)),
        "dh_n": rng.standard_normal((B, H)),
    }
    if cell == "lstm":
        arrays["c0"] = rng.standard_normal((B, H)) * 0.5
        arrays["dc_n"] = rng.standard_normal((B, H))
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
    return Problem(cell, T, B, I, H, reverse, lengths, bias, arrays)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id: fresh per test, reproducible per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


pooled_empty = _checks.empty


def nan_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``_checks.empty`` filled with NaN: memory from the array pool, so every test runs through it."""
    out = pooled_empty(shape, dtype)
    out.fill(np.nan)
    return out


@pytest.fixture(autouse=True)
def poison_allocations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output and workspace fusedrnn allocates starts as NaN, so unwritten elements fail."""
    monkeypatch.setattr(_checks, "empty", nan_empty)


__all__ = ["TOLERANCE", "GATES", "CELLS", "assert_close", "Problem", "make_problem", "fusedrnn", "functional", "reference"]
