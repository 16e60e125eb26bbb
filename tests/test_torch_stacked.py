"""Parity of stacked, bidirectional, batch_first and packed layers with ``torch.nn``.

torch's parameters (its own seeded initialisation) are loaded into the fusedrnn layer through
``load_state_dict``; outputs, final states, ``dx``, ``dh0``/``dc0`` and every parameter gradient
are compared after a backward of ``sum(y * dy) + sum(h_n * dh_n) [+ sum(c_n * dc_n)]``, in float64
(1e-10 normwise relative) and float32 (1e-4), with full sequences and with unsorted lengths
(``pack_padded_sequence(..., enforce_sorted=False)`` / ``pad_packed_sequence(total_length=T)``
against ``lengths=``). torch's global generator is restored after every initialisation and its
default dtype is never changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fusedrnn  # noqa: E402
from conftest import assert_close  # noqa: E402

DTYPES = (np.float64, np.float32)
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
KINDS = ("lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu")

# torch's own CPU note (its float32 projected LSTM falls back from oneDNN): not ours to fail on.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def torch_global_state_untouched() -> Any:
    """Every test leaves torch's global generator and default dtype as it found them."""
    rng_state = torch.random.get_rng_state()
    default_dtype = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == default_dtype
    assert torch.equal(torch.random.get_rng_state(), rng_state), "torch's global generator moved"


def is_lstm(kind: str) -> bool:
    return kind.startswith("lstm")


def make_pair(
    kind: str, I: int, H: int, P: int, num_layers: int, bidirectional: bool, batch_first: bool, dtype: Any,
    seed: int,
) -> tuple[Any, Any]:  # fmt: skip
    """A torch module (seeded init, torch's generator restored) and a fusedrnn layer with its weights."""
    kw: dict[str, Any] = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    if kind == "lstm_proj":
        kw["proj_size"] = P
    elif kind.startswith("rnn"):
        kw["nonlinearity"] = kind[4:]
    name = {"lstm": "LSTM", "lstm_proj": "LSTM", "gru": "GRU"}.get(kind, "RNN")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = getattr(torch.nn, name)(I, H, **kw)
    m = m.to(TORCH_DTYPE[dtype])
    layer = getattr(fusedrnn, name)(I, H, dtype=dtype, seed=seed, **kw)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    assert list(sd) == list(layer.state_dict())
    layer.load_state_dict(sd)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, sd[k], strict=True)
    return m, layer


def make_data(
    rng: np.random.Generator, kind: str, T: int, B: int, I: int, H: int, P: int, LD: int, D: int,
    batch_first: bool, dtype: Any,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Fresh random inputs and gradients (never zeros), x and dy in the layer's layout."""
    p = P if kind == "lstm_proj" else H
    lead = (B, T) if batch_first else (T, B)
    d = {
        "x": rng.standard_normal((*lead, I)),
        "h0": 0.5 * rng.standard_normal((LD, B, p)),
        "dy": rng.standard_normal((*lead, D * p)),
        "dh_n": rng.standard_normal((LD, B, p)),
    }
    if is_lstm(kind):
        d["c0"] = 0.5 * rng.standard_normal((LD, B, H))
        d["dc_n"] = rng.standard_normal((LD, B, H))
    return {k: v.astype(dtype) for k, v in d.items()}


def run_torch(
    m: Any, kind: str, d: dict[str, np.ndarray], lengths: Any, batch_first: bool, with_state: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    lstm = is_lstm(kind)
    t = {k: torch.tensor(v, requires_grad=k in ("x", "h0", "c0")) for k, v in d.items()}
    hx = ((t["h0"], t["c0"]) if lstm else t["h0"]) if with_state else None
    m.zero_grad()
    if lengths is None:
        y, state = m(t["x"], hx)
    else:
        T = d["x"].shape[1 if batch_first else 0]
        packed = pack_padded_sequence(
            t["x"], torch.as_tensor(lengths, dtype=torch.int64), batch_first=batch_first, enforce_sorted=False
        )
        y_packed, state = m(packed, hx)
        y, _ = pad_packed_sequence(y_packed, batch_first=batch_first, total_length=T)
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


def run_layer(
    layer: Any, kind: str, d: dict[str, np.ndarray], lengths: Any, with_state: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    lstm = is_lstm(kind)
    hx = ((d["h0"], d["c0"]) if lstm else d["h0"]) if with_state else None
    y, state = layer(d["x"], hx, lengths=lengths)
    h_n, c_n = state if lstm else (state, None)
    dx, dstate = layer.backward(d["dy"], (d["dh_n"], d["dc_n"]) if lstm else d["dh_n"])
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
# Parity grid
# ----------------------------------------------------------------------------------------------

T, B, I, H, P = 7, 4, 5, 8, 3
LENGTHS = [5, 7, 1, 4]  # unsorted, contains 1 and T


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "packed"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [2, 3], ids=["L2", "L3"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
def test_stacked_layer_matches_torch(
    kind: str, dtype: Any, num_layers: int, bidirectional: bool, batch_first: bool, lengths: Any,
    rng: np.random.Generator,
) -> None:  # fmt: skip
    D = 2 if bidirectional else 1
    m, layer = make_pair(kind, I, H, P, num_layers, bidirectional, batch_first, dtype, int(rng.integers(2**31)))
    d = make_data(rng, kind, T, B, I, H, P, num_layers * D, D, batch_first, dtype)
    expected_out, expected_grads = run_torch(m, kind, d, lengths, batch_first)
    out, grads = run_layer(layer, kind, d, lengths)
    compare(out, expected_out, dtype)
    compare(grads, expected_grads, dtype, "d")
    if lengths is not None:
        pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]  # (T, B)
        y_tm = out["y"].swapaxes(0, 1) if batch_first else out["y"]
        assert np.all(y_tm[pad] == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
def test_stacked_default_state_matches_torch(kind: str, dtype: Any, rng: np.random.Generator) -> None:
    """No initial state on either side (zeros), packed, batch_first, 3 layers bidirectional."""
    m, layer = make_pair(kind, I, H, P, 3, True, True, dtype, int(rng.integers(2**31)))
    d = make_data(rng, kind, T, B, I, H, P, 6, 2, True, dtype)
    expected_out, expected_grads = run_torch(m, kind, d, LENGTHS, True, with_state=False)
    out, grads = run_layer(layer, kind, d, LENGTHS, with_state=False)
    compare(out, expected_out, dtype)
    compare(grads, expected_grads, dtype, "d")


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_unbatched_matches_torch(kind: str, rng: np.random.Generator) -> None:
    """2-D input (T, I) with 2-D states (L*D, P) as torch accepts them."""
    dtype = np.float64
    m, layer = make_pair(kind, I, H, P, 2, True, False, dtype, int(rng.integers(2**31)))
    d = make_data(rng, kind, T, 1, I, H, P, 4, 2, False, dtype)
    d = {k: v[:, 0] for k, v in d.items()}  # x, dy: (T, .); states: (L*D, .)
    expected_out, expected_grads = run_torch(m, kind, d, None, False)
    out, grads = run_layer(layer, kind, d, None)
    compare(out, expected_out, dtype)
    compare(grads, expected_grads, dtype, "d")


@pytest.mark.parametrize("kind", ["lstm_proj", "gru"])
def test_stacked_accumulate_matches_torch(kind: str, rng: np.random.Generator) -> None:
    """Two backwards with accumulate=True sum the parameter gradients as torch's .grad does."""
    dtype = np.float64
    m, layer = make_pair(kind, I, H, P, 2, True, False, dtype, int(rng.integers(2**31)))
    d1 = make_data(rng, kind, T, B, I, H, P, 4, 2, False, dtype)
    d2 = make_data(rng, kind, 3, 2, I, H, P, 4, 2, False, dtype)
    _, g1 = run_torch(m, kind, d1, LENGTHS, False)
    _, g2 = run_torch(m, kind, d2, None, False)
    run_layer(layer, kind, d1, LENGTHS)
    lstm = is_lstm(kind)
    layer(d2["x"], (d2["h0"], d2["c0"]) if lstm else d2["h0"])
    layer.backward(d2["dy"], (d2["dh_n"], d2["dc_n"]) if lstm else d2["dh_n"], accumulate=True)
    for name in layer.grads:
        assert_close(layer.grads[name], g1[name] + g2[name], dtype, "d" + name)


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_eval_with_dropout_matches_torch_eval(kind: str, rng: np.random.Generator) -> None:
    """dropout > 0 in eval(): no dropout on either side, the same numbers."""
    dtype = np.float64
    seed = int(rng.integers(2**31))
    kw: dict[str, Any] = dict(num_layers=3, bidirectional=True, dropout=0.5)
    if kind == "lstm_proj":
        kw["proj_size"] = P
    elif kind.startswith("rnn"):
        kw["nonlinearity"] = kind[4:]
    name = {"lstm": "LSTM", "lstm_proj": "LSTM", "gru": "GRU"}.get(kind, "RNN")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = getattr(torch.nn, name)(I, H, **kw).to(torch.float64).eval()
    layer = getattr(fusedrnn, name)(I, H, dtype=dtype, **kw).eval()
    layer.load_state_dict(m.state_dict())
    x = rng.standard_normal((T, B, I))
    with torch.no_grad():
        packed = pack_padded_sequence(torch.tensor(x), torch.as_tensor(LENGTHS), enforce_sorted=False)
        y_packed, state = m(packed)
        y_t, _ = pad_packed_sequence(y_packed, total_length=T)
    y, ours = layer(x, lengths=LENGTHS)
    assert_close(y, y_t.numpy(), dtype, "y")
    theirs = state if is_lstm(kind) else (state,)
    for a, b in zip(ours if is_lstm(kind) else (ours,), theirs):
        assert_close(a, b.numpy(), dtype, "state")


# ----------------------------------------------------------------------------------------------
# The "done when"
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("proj", [0, 4], ids=["noproj", "proj4"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_a_stacked_bidirectional_lstm_with_lengths_gives_torchs_numbers_to_float32_rounding(
    batch_first: bool, proj: int, rng: np.random.Generator
) -> None:  # fmt: skip
    """Float32 against torch in float32 (the 1e-4 table bound), and, sharper: our float32 error
    against torch's float64 result is of the size of torch's own float32 error (float32 rounding,
    not a different computation)."""
    Tl, Bl, Il, Hl, L = 11, 6, 9, 16, 2
    lengths = [7, 11, 1, 4, 11, 9]
    kind = "lstm_proj" if proj else "lstm"
    seed = int(rng.integers(2**31))
    m32, layer = make_pair(kind, Il, Hl, proj, L, True, batch_first, np.float32, seed)
    m64, _ = make_pair(kind, Il, Hl, proj, L, True, batch_first, np.float64, seed)
    d64 = make_data(rng, kind, Tl, Bl, Il, Hl, proj, 2 * L, 2, batch_first, np.float64)
    d32 = {k: v.astype(np.float32) for k, v in d64.items()}
    out_t32, grads_t32 = run_torch(m32, kind, d32, lengths, batch_first)
    out_t64, grads_t64 = run_torch(m64, kind, {k: v.astype(np.float64) for k, v in d32.items()}, lengths, batch_first)
    out, grads = run_layer(layer, kind, d32, lengths)
    compare(out, out_t32, np.float32)
    compare(grads, grads_t32, np.float32, "d")
    for ours, t32, t64, what in ((out, out_t32, out_t64, ""), (grads, grads_t32, grads_t64, "d")):
        for k, exact in t64.items():
            scale = float(np.max(np.abs(exact)))
            err_ours = float(np.max(np.abs(ours[k].astype(np.float64) - exact)))
            err_torch = float(np.max(np.abs(t32[k].astype(np.float64) - exact)))
            bound = 10 * err_torch + 4 * np.finfo(np.float32).eps * scale
            assert err_ours <= bound, f"{what}{k}: error {err_ours:.2e} vs torch float32's {err_torch:.2e}"
