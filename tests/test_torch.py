"""Parity with ``torch.nn.RNN`` (tanh, relu), ``torch.nn.LSTM`` and ``torch.nn.GRU``.

torch's parameters are loaded into the fusedrnn layer classes through ``load_state_dict``; the
forward outputs, final states, input and state gradients and every parameter gradient are
compared after a backward with random ``dy`` and final-state gradients, in float64 (1e-10
normwise relative) and float32 (1e-4), with full sequences, with variable lengths
(``pack_padded_sequence(..., enforce_sorted=False)`` against ``lengths=``), and unbatched 2-D
input. The reverse direction (which the layers do not expose yet) is checked through
``fusedrnn.functional`` against the ``_reverse`` half of a bidirectional torch module.

torch runs the same arithmetic in its own order, so both dtypes compare against torch in the
same dtype; the float32 bound (1e-4) is far above either side's rounding error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fusedrnn  # noqa: E402
from conftest import CELLS, assert_close, functional  # noqa: E402

DTYPES = (np.float64, np.float32)
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def make_pair(
    cell: str, I: int, H: int, bias: bool, dtype: Any, seed: int, bidirectional: bool = False
) -> tuple[Any, Any]:  # fmt: skip
    """A torch module (its own random init, seeded) and a fusedrnn layer holding its parameters."""
    with torch.random.fork_rng():  # leave torch's global generator as it was
        torch.manual_seed(seed)
        if cell == "lstm":
            m = torch.nn.LSTM(I, H, bias=bias, bidirectional=bidirectional)
        elif cell == "gru":
            m = torch.nn.GRU(I, H, bias=bias, bidirectional=bidirectional)
        else:
            m = torch.nn.RNN(I, H, nonlinearity=cell[4:], bias=bias, bidirectional=bidirectional)
    m = m.to(TORCH_DTYPE[dtype])
    if bidirectional:
        return m, None
    if cell == "lstm":
        layer = fusedrnn.LSTM(I, H, bias=bias, dtype=dtype, seed=seed)
    elif cell == "gru":
        layer = fusedrnn.GRU(I, H, bias=bias, dtype=dtype, seed=seed)
    else:
        layer = fusedrnn.RNN(I, H, nonlinearity=cell[4:], bias=bias, dtype=dtype, seed=seed)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    assert set(sd) == set(layer.state_dict())
    layer.load_state_dict(sd)
    for k, v in layer.state_dict().items():
        assert v.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(v, sd[k], strict=True)
    return m, layer


def make_data(
    rng: np.random.Generator, cell: str, T: int, B: int | None, I: int, H: int, dtype: Any
) -> dict[str, np.ndarray]:  # fmt: skip
    """Fresh random inputs and output gradients (never zeros); B None: unbatched shapes."""
    lead = (T,) if B is None else (T, B)
    state = (1, H) if B is None else (1, B, H)
    d = {
        "x": rng.standard_normal((*lead, I)),
        "h0": 0.5 * rng.standard_normal(state),
        "dy": rng.standard_normal((*lead, H)),
        "dh_n": rng.standard_normal(state),
    }
    if cell == "lstm":
        d["c0"] = 0.5 * rng.standard_normal(state)
        d["dc_n"] = rng.standard_normal(state)
    return {k: v.astype(dtype) for k, v in d.items()}


def run_torch(m: Any, cell: str, d: dict[str, np.ndarray], lengths: Any = None, with_state: bool = True
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """torch forward + backward of ``(y*dy).sum() + (h_n*dh_n).sum() [+ (c_n*dc_n).sum()]``."""
    lstm = cell == "lstm"
    t = {k: torch.tensor(v, requires_grad=k in ("x", "h0", "c0")) for k, v in d.items()}
    hx = None
    if with_state:
        hx = (t["h0"], t["c0"]) if lstm else t["h0"]
    m.zero_grad()
    if lengths is None:
        y, state = m(t["x"], hx)
    else:
        T = d["x"].shape[0]
        packed = pack_padded_sequence(t["x"], torch.as_tensor(lengths, dtype=torch.int64), enforce_sorted=False)
        y_packed, state = m(packed, hx)
        y, _ = pad_packed_sequence(y_packed, total_length=T)
    h_n, c_n = state if lstm else (state, None)
    loss = (y * t["dy"]).sum() + (h_n * t["dh_n"]).sum()
    if lstm:
        loss = loss + (c_n * t["dc_n"]).sum()
    loss.backward()
    out = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy()}
    if lstm:
        out["c_n"] = c_n.detach().numpy()
    grads = {"x": t["x"].grad.numpy()}
    if with_state:
        grads["h0"] = t["h0"].grad.numpy()
        if lstm:
            grads["c0"] = t["c0"].grad.numpy()
    for name, p in m.named_parameters():
        grads[name] = p.grad.detach().numpy()
    return out, grads


def run_layer(layer: Any, cell: str, d: dict[str, np.ndarray], lengths: Any = None, with_state: bool = True,
              dy: Any = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    lstm = cell == "lstm"
    hx = None
    if with_state:
        hx = (d["h0"], d["c0"]) if lstm else d["h0"]
    y, state = layer(d["x"], hx, lengths=lengths)
    h_n, c_n = state if lstm else (state, None)
    state_grad = (d["dh_n"], d["dc_n"]) if lstm else d["dh_n"]
    dx, dstate = layer.backward(d["dy"] if dy is None else dy, state_grad)
    out = {"y": y, "h_n": h_n}
    if lstm:
        out["c_n"] = c_n
    grads = {"x": dx}
    if with_state:
        if lstm:
            grads["h0"], grads["c0"] = dstate
        else:
            grads["h0"] = dstate
    for name, g in layer.grads.items():
        grads[name] = g.copy()
    return out, grads


def compare(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], dtype: Any, what: str = "") -> None:
    assert set(actual) == set(expected), f"{what}{sorted(actual)} != {sorted(expected)}"
    for k, e in expected.items():
        assert actual[k].dtype == np.dtype(dtype), f"{what}{k}: dtype {actual[k].dtype}"
        assert_close(actual[k], e, dtype, what + k)


# ----------------------------------------------------------------------------------------------
# Layer parity
# ----------------------------------------------------------------------------------------------

# name: (T, B, I, H, lengths or None). Unsorted lengths contain 1 and T.
CASES: dict[str, tuple[int, int, int, int, list[int] | None]] = {
    "full": (7, 3, 5, 9, None),
    "T1_B1": (1, 1, 3, 4, None),
    "odd": (17, 4, 13, 33, None),
    "lengths": (9, 5, 6, 7, [4, 9, 1, 9, 6]),
    "lengths_B1": (5, 1, 4, 3, [3]),
    "lengths_T17": (17, 6, 11, 64, [17, 2, 1, 9, 16, 17]),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_matches_torch(cell: str, dtype: Any, case: str, bias: bool, rng: np.random.Generator) -> None:
    T, B, I, H, lengths = CASES[case]
    m, layer = make_pair(cell, I, H, bias, dtype, seed=int(rng.integers(2**31)))
    d = make_data(rng, cell, T, B, I, H, dtype)
    expected_out, expected_grads = run_torch(m, cell, d, lengths)
    out, grads = run_layer(layer, cell, d, lengths)
    compare(out, expected_out, dtype)
    compare(grads, expected_grads, dtype, "d")
    if lengths is not None:
        pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
        assert np.all(out["y"][pad] == 0)
        # dy at padding is ignored: NaN there changes nothing at all.
        dy_nan = d["dy"].copy()
        dy_nan[pad] = np.nan
        out2, grads2 = run_layer(layer, cell, d, lengths, dy=dy_nan)
        for k in out:
            np.testing.assert_array_equal(out2[k], out[k], err_msg=k, strict=True)
        for k in grads:
            np.testing.assert_array_equal(grads2[k], grads[k], err_msg="d" + k, strict=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_default_state_matches_torch(cell: str, dtype: Any, rng: np.random.Generator) -> None:
    """No initial state (zeros) and, on our side, the state gradient given explicitly."""
    m, layer = make_pair(cell, 6, 10, True, dtype, seed=int(rng.integers(2**31)))
    d = make_data(rng, cell, 8, 3, 6, 10, dtype)
    expected_out, expected_grads = run_torch(m, cell, d, [8, 1, 5], with_state=False)
    out, grads = run_layer(layer, cell, d, [8, 1, 5], with_state=False)
    compare(out, expected_out, dtype)
    compare(grads, expected_grads, dtype, "d")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_unbatched_matches_torch(cell: str, dtype: Any, rng: np.random.Generator) -> None:
    T, I, H = 11, 5, 13
    m, layer = make_pair(cell, I, H, True, dtype, seed=int(rng.integers(2**31)))
    d = make_data(rng, cell, T, None, I, H, dtype)
    expected_out, expected_grads = run_torch(m, cell, d)
    out, grads = run_layer(layer, cell, d)
    assert out["y"].shape == (T, H) and out["h_n"].shape == (1, H)
    assert grads["x"].shape == (T, I) and grads["h0"].shape == (1, H)
    compare(out, expected_out, dtype)
    compare(grads, expected_grads, dtype, "d")


@pytest.mark.parametrize("cell", CELLS)
def test_layer_accumulate_matches_torch(cell: str, rng: np.random.Generator) -> None:
    """Two backwards with accumulate=True sum the parameter gradients as torch's .grad does."""
    dtype = np.float64
    m, layer = make_pair(cell, 4, 6, True, dtype, seed=int(rng.integers(2**31)))
    d1 = make_data(rng, cell, 5, 3, 4, 6, dtype)
    d2 = make_data(rng, cell, 3, 2, 4, 6, dtype)
    _, g1 = run_torch(m, cell, d1, [5, 1, 3])
    _, g2 = run_torch(m, cell, d2)
    run_layer(layer, cell, d1, [5, 1, 3])
    layer(d2["x"], (d2["h0"], d2["c0"]) if cell == "lstm" else d2["h0"])
    layer.backward(d2["dy"], (d2["dh_n"], d2["dc_n"]) if cell == "lstm" else d2["dh_n"], accumulate=True)
    for name in layer.grads:
        assert_close(layer.grads[name], g1[name] + g2[name], dtype, "d" + name)


@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_from_tensors(cell: str, rng: np.random.Generator) -> None:
    """``load_state_dict`` also takes torch's own state_dict (CPU tensors) directly."""
    m, layer = make_pair(cell, 3, 5, True, np.float32, seed=int(rng.integers(2**31)))
    extra = {"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}
    other = type(layer)(3, 5, dtype=np.float32, seed=1, **extra)
    other.load_state_dict(m.state_dict())
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v, strict=True)


# ----------------------------------------------------------------------------------------------
# The reverse direction, through the functional layer, against a bidirectional torch module
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [None, [6, 1, 4, 6]], ids=["full", "lengths"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_functional_reverse_matches_torch_bidirectional(
    cell: str, dtype: Any, lengths: Any, rng: np.random.Generator
) -> None:  # fmt: skip
    T, B, I, H = 6, 4, 5, 7
    lstm = cell == "lstm"
    m, _ = make_pair(cell, I, H, True, dtype, seed=int(rng.integers(2**31)), bidirectional=True)
    d = make_data(rng, cell, T, B, I, H, dtype)
    h0 = np.concatenate([0.5 * rng.standard_normal((1, B, H)).astype(dtype), d["h0"]])  # (2, B, H)
    c0 = np.concatenate([0.5 * rng.standard_normal((1, B, H)).astype(dtype), d["c0"]]) if lstm else None

    # torch: only the reverse half of the output and of the final state enter the loss.
    t_x = torch.tensor(d["x"], requires_grad=True)
    t_h0 = torch.tensor(h0, requires_grad=True)
    t_c0 = torch.tensor(c0, requires_grad=True) if lstm else None
    hx = (t_h0, t_c0) if lstm else t_h0
    if lengths is None:
        y, state = m(t_x, hx)
    else:
        packed = pack_padded_sequence(t_x, torch.as_tensor(lengths), enforce_sorted=False)
        y_packed, state = m(packed, hx)
        y, _ = pad_packed_sequence(y_packed, total_length=T)
    h_n, c_n = state if lstm else (state, None)
    loss = (y[..., H:] * torch.tensor(d["dy"])).sum() + (h_n[1] * torch.tensor(d["dh_n"][0])).sum()
    if lstm:
        loss = loss + (c_n[1] * torch.tensor(d["dc_n"][0])).sum()
    loss.backward()

    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    w = [sd[f"{k}_l0_reverse"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    kw = {"lengths": lengths, "reverse": True}
    if lstm:
        f_y, f_h, f_c, tape = functional.lstm_forward(d["x"], d["h0"][0], d["c0"][0], *w, **kw)
        g = functional.lstm_backward(tape, d["dy"], d["dh_n"][0], d["dc_n"][0])
        assert_close(f_c, c_n[1].detach().numpy(), dtype, "c_n")
        assert_close(g["c0"], t_c0.grad[1].numpy(), dtype, "dc0")
    elif cell == "gru":
        f_y, f_h, tape = functional.gru_forward(d["x"], d["h0"][0], *w, **kw)
        g = functional.gru_backward(tape, d["dy"], d["dh_n"][0])
    else:
        f_y, f_h, tape = functional.rnn_forward(d["x"], d["h0"][0], *w, nonlinearity=cell[4:], **kw)
        g = functional.rnn_backward(tape, d["dy"], d["dh_n"][0])
    assert_close(f_y, y[..., H:].detach().numpy(), dtype, "y")
    assert_close(f_h, h_n[1].detach().numpy(), dtype, "h_n")
    assert_close(g["x"], t_x.grad.numpy(), dtype, "dx")
    assert_close(g["h0"], t_h0.grad[1].numpy(), dtype, "dh0")
    assert np.all(t_h0.grad[0].numpy() == 0)  # sanity: the forward half is not in the loss
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert_close(g[k], getattr(m, f"{k}_l0_reverse").grad.numpy(), dtype, "d" + k)
