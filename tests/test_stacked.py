"""Stacked, bidirectional, batch_first, variable-length layers, dropout and truncated BPTT.

- the layer classes (``num_layers`` 1-3, both directions, ``batch_first``, unsorted lengths, LSTM
  projection, with and without initial states / state gradients, float64 and float32): ``y``,
  final states, ``dx``, initial-state gradients and every ``layer.grads`` entry against
  ``reference.stacked_forward`` / ``stacked_backward`` run in float64 on the layer's own
  ``state_dict()`` (the reference is time-major: batch_first arrays are transposed here);
- inter-layer dropout: the tape's masks fed to the reference, seeding, ``eval()``, ``no_grad``,
  the fraction of zeros, masks reused (not redrawn) by ``backward``;
- truncated BPTT: a long sequence in chunks gives the outputs and the gradients of one call;
- the stacked reference itself against central finite differences;
- state, output and parameter shapes and names (as torch's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_close

import fusedrnn
from fusedrnn import reference

DTYPES = (np.float64, np.float32)
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "lstm_proj")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "lstm_proj": 4}

# Sizes of the grid: small but all different, so a swapped axis cannot pass unnoticed.
T, B, I, H, P = 6, 4, 5, 7, 3
LENGTHS = [4, 1, 6, 3]  # unsorted, contains 1 and T


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def is_lstm(kind: str) -> bool:
    return kind.startswith("lstm")


def ref_cell(kind: str) -> tuple[str, str]:
    """(reference cell name, nonlinearity)."""
    if kind.startswith("rnn"):
        return "rnn", kind[4:]
    return ("lstm" if is_lstm(kind) else "gru"), "tanh"


def out_size(kind: str, hidden: int = H, proj: int = P) -> int:
    return proj if kind == "lstm_proj" else hidden


def make_layer(
    kind: str, input_size: int = I, hidden: int = H, *, num_layers: int = 1, bidirectional: bool = False,
    batch_first: bool = False, dtype: Any = np.float64, seed: Any = None, dropout: float = 0.0, proj: int = P,
) -> Any:  # fmt: skip
    kw: dict[str, Any] = dict(
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype, seed=seed,
        dropout=dropout,
    )  # fmt: skip
    if kind == "lstm":
        return fusedrnn.LSTM(input_size, hidden, **kw)
    if kind == "lstm_proj":
        return fusedrnn.LSTM(input_size, hidden, proj_size=proj, **kw)
    if kind == "gru":
        return fusedrnn.GRU(input_size, hidden, **kw)
    return fusedrnn.RNN(input_size, hidden, nonlinearity=kind[4:], **kw)


def clone(layer: Any, kind: str, **overrides: Any) -> Any:
    """A new layer with the same configuration (``overrides`` applied) and the same weights."""
    kw: dict[str, Any] = dict(
        num_layers=layer.num_layers, bidirectional=layer.bidirectional, batch_first=layer.batch_first,
        dtype=layer.dtype, dropout=layer.dropout, proj=layer.proj_size or P,
    )  # fmt: skip
    kw.update(overrides)
    other = make_layer(kind, layer.input_size, layer.hidden_size, **kw)
    other.load_state_dict(layer.state_dict())
    return other


def seed_of(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def make_data(
    rng: np.random.Generator, kind: str, T: int, B: int, input_size: int, hidden: int, proj: int,
    LD: int, D: int, dtype: Any,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Fresh random time-major inputs and gradients (never zeros), cast to ``dtype``."""
    p = proj if kind == "lstm_proj" else hidden
    d = {
        "x": rng.standard_normal((T, B, input_size)),
        "h0": 0.5 * rng.standard_normal((LD, B, p)),
        "dy": rng.standard_normal((T, B, D * p)),
        "dh_n": rng.standard_normal((LD, B, p)),
    }
    if is_lstm(kind):
        d["c0"] = 0.5 * rng.standard_normal((LD, B, hidden))
        d["dc_n"] = rng.standard_normal((LD, B, hidden))
    return {k: v.astype(dtype) for k, v in d.items()}


def bf(a: np.ndarray, batch_first: bool) -> np.ndarray:
    """Time-major <-> batch-major (its own inverse)."""
    return a.swapaxes(0, 1) if batch_first else a


def run_layer(
    layer: Any, kind: str, d: dict[str, np.ndarray], lengths: Any, with_state: bool, with_state_grad: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """Forward + backward through the layer; everything returned time-major."""
    lstm = is_lstm(kind)
    hx = ((d["h0"], d["c0"]) if lstm else d["h0"]) if with_state else None
    y, state = layer(bf(d["x"], layer.batch_first), hx, lengths=lengths)
    h_n, c_n = state if lstm else (state, None)
    sg = ((d["dh_n"], d["dc_n"]) if lstm else d["dh_n"]) if with_state_grad else None
    dx, dstate = layer.backward(bf(d["dy"], layer.batch_first), sg)
    dh0, dc0 = dstate if lstm else (dstate, None)
    out = {"y": bf(y, layer.batch_first), "h_n": h_n}
    grads = {"x": bf(dx, layer.batch_first), "h0": dh0}
    if lstm:
        out["c_n"], grads["c0"] = c_n, dc0
    for name, g in layer.grads.items():
        grads[name] = g.copy()
    return out, grads


def run_reference(
    layer: Any, kind: str, d: dict[str, np.ndarray], lengths: Any, with_state: bool, with_state_grad: bool,
    masks: Any = (),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """``reference.stacked_forward/backward`` in float64 on the layer's own parameters."""
    cell, nl = ref_cell(kind)
    lstm = is_lstm(kind)
    sd = {k: np.asarray(v, np.float64) for k, v in layer.state_dict().items()}
    f64 = {k: v.astype(np.float64) for k, v in d.items()}
    h0 = f64["h0"] if with_state else np.zeros_like(f64["h0"])
    c0 = (f64["c0"] if with_state else np.zeros_like(f64["c0"])) if lstm else None
    y, h_n, c_n, tape = reference.stacked_forward(
        cell, f64["x"], h0, c0, sd, num_layers=layer.num_layers, bidirectional=layer.bidirectional,
        nonlinearity=nl, lengths=lengths, dropout_masks=[np.asarray(m, np.float64) for m in masks],
    )  # fmt: skip
    dh_n = f64["dh_n"] if with_state_grad else None
    dc_n = (f64["dc_n"] if with_state_grad else None) if lstm else None
    g = reference.stacked_backward(tape, f64["dy"], dh_n, dc_n)
    out = {"y": y, "h_n": h_n}
    if lstm:
        out["c_n"] = c_n
    return out, {k: v for k, v in g.items() if v is not None}


def compare(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], dtype: Any, what: str = "") -> None:
    assert set(actual) == set(expected), f"{what}keys {sorted(actual)} != {sorted(expected)}"
    for k, e in expected.items():
        assert actual[k].dtype == np.dtype(dtype), f"{what}{k}: dtype {actual[k].dtype} != {np.dtype(dtype)}"
        assert_close(actual[k], e, dtype, what + k)


def check_against_reference(
    rng: np.random.Generator, kind: str, num_layers: int, bidirectional: bool, batch_first: bool,
    lengths: Any, dtype: Any, with_state: bool, with_state_grad: bool,
) -> None:  # fmt: skip
    D = 2 if bidirectional else 1
    layer = make_layer(kind, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                       dtype=dtype, seed=seed_of(rng))  # fmt: skip
    d = make_data(rng, kind, T, B, I, H, P, num_layers * D, D, dtype)
    out, grads = run_layer(layer, kind, d, lengths, with_state, with_state_grad)
    ref_out, ref_grads = run_reference(layer, kind, d, lengths, with_state, with_state_grad)
    compare(out, ref_out, dtype)
    compare(grads, ref_grads, dtype, "d")
    assert set(layer.grads) == set(layer.state_dict())
    if lengths is not None:
        pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]  # (T, B)
        assert np.all(out["y"][pad] == 0), "outputs past a sequence's length must be zero"


# ----------------------------------------------------------------------------------------------
# The layers against the stacked reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("states", ["states", "no_states"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=["L1", "L2", "L3"])
@pytest.mark.parametrize("kind", KINDS)
def test_stacked_float64_matches_reference(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, lengths: Any, states: str,
    rng: np.random.Generator,
) -> None:  # fmt: skip
    given = states == "states"
    check_against_reference(rng, kind, num_layers, bidirectional, batch_first, lengths, np.float64, given, given)


# float32: the full cross of layers and directions, batch_first and lengths paired up.
@pytest.mark.parametrize(
    "batch_first, lengths, states",
    [(False, None, "states"), (True, LENGTHS, "states"), (False, LENGTHS, "no_states"), (True, None, "no_states")],
    ids=["tm-full", "bf-lengths", "tm-lengths-nostate", "bf-full-nostate"],
)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=["L1", "L2", "L3"])
@pytest.mark.parametrize("kind", KINDS)
def test_stacked_float32_matches_reference(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, lengths: Any, states: str,
    rng: np.random.Generator,
) -> None:  # fmt: skip
    given = states == "states"
    check_against_reference(rng, kind, num_layers, bidirectional, batch_first, lengths, np.float32, given, given)


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_state_without_state_grad_and_back(kind: str, rng: np.random.Generator) -> None:
    """An initial state with no final-state gradient, and the other way round."""
    for with_state, with_grad in ((True, False), (False, True)):
        check_against_reference(rng, kind, 2, True, True, LENGTHS, np.float64, with_state, with_grad)


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_unbatched_matches_batch_of_one(kind: str, rng: np.random.Generator) -> None:
    """2-D input (T, I) with states (L*D, P) runs as a batch of one."""
    layer = make_layer(kind, num_layers=2, bidirectional=True, seed=seed_of(rng))
    d = make_data(rng, kind, T, 1, I, H, P, 4, 2, np.float64)
    lstm = is_lstm(kind)
    hx = (d["h0"][:, 0], d["c0"][:, 0]) if lstm else d["h0"][:, 0]
    y, state = layer(d["x"][:, 0], hx)
    sg = (d["dh_n"][:, 0], d["dc_n"][:, 0]) if lstm else d["dh_n"][:, 0]
    dx, dstate = layer.backward(d["dy"][:, 0], sg)
    ref_out, ref_grads = run_reference(layer, kind, d, None, True, True)
    p = out_size(kind)
    assert y.shape == (T, 2 * p) and dx.shape == (T, I)
    assert_close(y, ref_out["y"][:, 0], np.float64, "y")
    assert_close(dx, ref_grads["x"][:, 0], np.float64, "dx")
    states = list(state) if lstm else [state]
    dstates = list(dstate) if lstm else [dstate]
    for name, s, ds in zip(("h", "c"), states, dstates):
        assert_close(s, ref_out[f"{name}_n"][:, 0], np.float64, f"{name}_n")
        assert_close(ds, ref_grads[f"{name}0"][:, 0], np.float64, f"d{name}0")
    for name, g in layer.grads.items():
        assert_close(g, ref_grads[name], np.float64, "d" + name)


# ----------------------------------------------------------------------------------------------
# Inter-layer dropout
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_masks_match_reference(
    kind: str, dtype: Any, batch_first: bool, lengths: Any, rng: np.random.Generator
) -> None:  # fmt: skip
    """The tape's masks, given to the reference, reproduce the forward and every gradient."""
    L, D, p = 3, 2, 0.4
    layer = make_layer(kind, num_layers=L, bidirectional=True, batch_first=batch_first, dtype=dtype,
                       seed=seed_of(rng), dropout=p)  # fmt: skip
    d = make_data(rng, kind, T, B, I, H, P, L * D, D, dtype)
    out, grads = run_layer(layer, kind, d, lengths, True, True)
    masks = [np.array(m, copy=True) for m in layer._tape["masks"]]
    assert len(masks) == L - 1
    scale = np.dtype(dtype).type(1.0 / (1.0 - p))
    for m in masks:
        assert m.shape == (T, B, D * out_size(kind)), m.shape  # time-major even with batch_first
        assert set(np.unique(m).tolist()) == {0.0, float(scale)}, np.unique(m)
    ref_out, ref_grads = run_reference(layer, kind, d, lengths, True, True, masks)
    compare(out, ref_out, dtype)
    compare(grads, ref_grads, dtype, "d")
    # Sanity: the masks matter (the same weights without dropout give other numbers).
    plain_out, _ = run_reference(layer, kind, d, lengths, True, True)
    assert np.max(np.abs(plain_out["y"] - ref_out["y"])) > 1e-3


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "rnn_tanh"])
def test_dropout_same_seed_same_numbers_other_seed_differs(kind: str, rng: np.random.Generator) -> None:
    seed = seed_of(rng)
    a = make_layer(kind, num_layers=3, bidirectional=True, seed=seed, dropout=0.5)
    b = make_layer(kind, num_layers=3, bidirectional=True, seed=seed, dropout=0.5)
    c = make_layer(kind, num_layers=3, bidirectional=True, seed=seed + 1, dropout=0.5)
    c.load_state_dict(a.state_dict())  # the same weights: only the masks may differ
    x = rng.standard_normal((T, B, I))
    ya, _ = a(x, lengths=LENGTHS)
    yb, _ = b(x, lengths=LENGTHS)
    yc, _ = c(x, lengths=LENGTHS)
    np.testing.assert_array_equal(ya, yb, strict=True)
    for ma, mb in zip(a._tape["masks"], b._tape["masks"]):
        np.testing.assert_array_equal(ma, mb, strict=True)
    assert not np.array_equal(ya, yc)
    assert any(not np.array_equal(ma, mc) for ma, mc in zip(a._tape["masks"], c._tape["masks"]))
    # Successive calls draw new masks.
    ya2, _ = a(x, lengths=LENGTHS)
    assert not np.array_equal(ya, ya2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_off_in_eval(kind: str, dtype: Any, rng: np.random.Generator) -> None:
    """eval(): no dropout at all, the numbers of a dropout=0 layer with the same weights."""
    layer = make_layer(kind, num_layers=3, bidirectional=True, dtype=dtype, seed=seed_of(rng), dropout=0.6)
    plain = clone(layer, kind, dropout=0.0)
    d = make_data(rng, kind, T, B, I, H, P, 6, 2, dtype)
    hx = (d["h0"], d["c0"]) if is_lstm(kind) else d["h0"]
    layer.eval()
    plain.eval()
    y1, s1 = layer(d["x"], hx, lengths=LENGTHS)
    y2, s2 = layer(d["x"], hx, lengths=LENGTHS)
    y0, s0 = plain(d["x"], hx, lengths=LENGTHS)
    np.testing.assert_array_equal(y1, y2, strict=True)
    np.testing.assert_array_equal(y1, y0, strict=True)
    for a, b in zip(s1 if is_lstm(kind) else [s1], s0 if is_lstm(kind) else [s0]):
        np.testing.assert_array_equal(a, b, strict=True)
    # ... and the same as the reference without masks.
    ref_out, _ = run_reference(layer, kind, d, LENGTHS, True, True)
    assert_close(y1, ref_out["y"], dtype, "y")
    # Back in training mode, dropout applies again.
    layer.train()
    y3, _ = layer(d["x"], hx, lengths=LENGTHS)
    assert not np.allclose(y3, y0)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_applies_under_no_grad_in_training(kind: str, rng: np.random.Generator) -> None:
    """As torch: no_grad() only drops the tape; in training mode dropout still applies."""
    seed = seed_of(rng)
    a = make_layer(kind, num_layers=2, bidirectional=True, seed=seed, dropout=0.5)
    b = make_layer(kind, num_layers=2, bidirectional=True, seed=seed, dropout=0.5)
    x = rng.standard_normal((T, B, I))
    with fusedrnn.no_grad():
        ya, _ = a(x)
    assert a._tape is None
    yb, _ = b(x)  # with a tape: the same masks from the same seed
    np.testing.assert_array_equal(ya, yb, strict=True)
    assert np.max(np.abs(ya - reference_no_dropout(a, kind, x))) > 1e-3


def reference_no_dropout(layer: Any, kind: str, x: np.ndarray) -> np.ndarray:
    cell, nl = ref_cell(kind)
    sd = {k: np.asarray(v, np.float64) for k, v in layer.state_dict().items()}
    LD = layer.num_layers * layer.num_directions
    h0 = np.zeros((LD, x.shape[1], out_size(kind)))
    c0 = np.zeros((LD, x.shape[1], layer.hidden_size)) if is_lstm(kind) else None
    y, _, _, _ = reference.stacked_forward(cell, x, h0, c0, sd, num_layers=layer.num_layers,
                                           bidirectional=layer.bidirectional, nonlinearity=nl)  # fmt: skip
    return y


@pytest.mark.parametrize("p", [0.2, 0.7])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_dropout_fraction_of_zeros(p: float, dtype: Any, rng: np.random.Generator) -> None:
    layer = make_layer("lstm", 5, 16, num_layers=3, bidirectional=True, dtype=dtype, seed=seed_of(rng), dropout=p)
    x = rng.standard_normal((30, 8, 5)).astype(dtype)
    layer(x)
    masks = layer._tape["masks"]
    assert len(masks) == 2
    for m in masks:  # 30 * 8 * 32 = 7680 draws each: the standard error of the fraction is < 0.006
        assert m.dtype == np.dtype(dtype)
        zeros = float(np.mean(m == 0))
        assert abs(zeros - p) < 0.04, f"fraction of zeros {zeros} for p = {p}"
        assert abs(float(m.mean()) - 1.0) < 0.15  # inverted dropout keeps the expectation
    assert not np.array_equal(masks[0], masks[1])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_single_layer_has_no_masks(kind: str, rng: np.random.Generator) -> None:
    """Dropout acts between layers only: one layer is unaffected (torch warns; the numbers agree)."""
    layer = make_layer(kind, num_layers=1, bidirectional=True, seed=seed_of(rng), dropout=0.5)
    d = make_data(rng, kind, T, B, I, H, P, 2, 2, np.float64)
    out, grads = run_layer(layer, kind, d, LENGTHS, True, True)
    assert layer._tape["masks"] == []
    ref_out, ref_grads = run_reference(layer, kind, d, LENGTHS, True, True)
    compare(out, ref_out, np.float64)
    compare(grads, ref_grads, np.float64, "d")


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "rnn_relu"])
def test_dropout_backward_reuses_forward_masks(kind: str, rng: np.random.Generator) -> None:
    """backward uses the forward's masks, draws nothing, and can be repeated."""
    seed = seed_of(rng)
    a = make_layer(kind, num_layers=3, bidirectional=True, seed=seed, dropout=0.3)
    b = make_layer(kind, num_layers=3, bidirectional=True, seed=seed, dropout=0.3)
    d = make_data(rng, kind, T, B, I, H, P, 6, 2, np.float64)
    out, grads = run_layer(a, kind, d, LENGTHS, True, True)
    masks = [m.copy() for m in a._tape["masks"]]
    ref_out, ref_grads = run_reference(a, kind, d, LENGTHS, True, True, masks)
    compare(grads, ref_grads, np.float64, "d")
    # A second backward of the same forward: the same masks, the same gradients.
    sg = (d["dh_n"], d["dc_n"]) if is_lstm(kind) else d["dh_n"]
    dx2, _ = a.backward(d["dy"], sg)
    np.testing.assert_array_equal(dx2, grads["x"], strict=True)
    for m0, m1 in zip(masks, a._tape["masks"]):
        np.testing.assert_array_equal(m0, m1, strict=True)
    # The backward drew no random numbers: the next forward matches a twin that did no backward.
    x = d["x"]
    b(x, (d["h0"], d["c0"]) if is_lstm(kind) else d["h0"], lengths=LENGTHS)
    ya, _ = a(x)
    yb, _ = b(x)
    np.testing.assert_array_equal(ya, yb, strict=True)
    # The masks of a new forward are not those of the old one, and its backward uses the new ones.
    new_masks = [m.copy() for m in a._tape["masks"]]
    assert any(not np.array_equal(m0, m1) for m0, m1 in zip(masks, new_masks))
    dy = rng.standard_normal(ya.shape)
    dx, _ = a.backward(dy)
    d2 = dict(d, x=x, dy=dy)
    _, ref2 = run_reference(a, kind, d2, None, False, False, new_masks)
    assert_close(dx, ref2["x"], np.float64, "dx")


# ----------------------------------------------------------------------------------------------
# Truncated BPTT
# ----------------------------------------------------------------------------------------------

# name: (kind, num_layers)
TBPTT_CASES = {
    "lstm": ("lstm", 1),
    "lstm_proj_L2": ("lstm_proj", 2),
    "lstm_L2": ("lstm", 2),
    "gru": ("gru", 1),
    "gru_L2": ("gru", 2),
    "rnn_tanh_L3": ("rnn_tanh", 3),
}
CHUNKS = (5, 4, 3)  # T = 12


@pytest.mark.parametrize("approach", ["rerun_forward", "layer_per_chunk"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("case", list(TBPTT_CASES))
def test_truncated_bptt_equals_one_call(case: str, batch_first: bool, approach: str, rng: np.random.Generator) -> None:
    """Chunks 5, 4, 3 with the state carried over equal one call on T = 12, forward and backward.

    Backward walks the chunks in reverse, each chunk's initial-state gradient being the previous
    chunk's final-state gradient. ``backward`` uses the most recent forward, so either the chunk's
    forward is re-run just before its backward (one layer, ``accumulate=True``), or every chunk
    has its own layer object (same weights) and the parameter gradients are summed.
    """
    kind, L = TBPTT_CASES[case]
    lstm = is_lstm(kind)
    Tl = sum(CHUNKS)
    layer = make_layer(kind, num_layers=L, batch_first=batch_first, seed=seed_of(rng))
    d = make_data(rng, kind, Tl, B, I, H, P, L, 1, np.float64)
    hx = (d["h0"], d["c0"]) if lstm else d["h0"]
    sg_n = (d["dh_n"], d["dc_n"]) if lstm else d["dh_n"]
    x_all, dy_all = bf(d["x"], batch_first), bf(d["dy"], batch_first)
    taxis = 1 if batch_first else 0

    y_full, state_full = layer(x_all, hx)
    dx_full, dstate_full = layer.backward(dy_all, sg_n)
    grads_full = {k: v.copy() for k, v in layer.grads.items()}

    bounds = np.cumsum((0,) + CHUNKS)
    sl = [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(len(CHUNKS))]

    def chunk(a: np.ndarray, i: int) -> np.ndarray:
        return a[sl[i]] if taxis == 0 else a[:, sl[i]]

    layers = [clone(layer, kind) if approach == "layer_per_chunk" else layer for _ in CHUNKS]
    state = hx
    initial_states, ys = [], []
    for i, lay in enumerate(layers):
        initial_states.append(state)
        y_i, state = lay(chunk(x_all, i), state)
        ys.append(y_i)
    assert_close(np.concatenate(ys, axis=taxis), y_full, np.float64, "y")
    for name, a, b in zip(("h_n", "c_n"), state if lstm else [state], state_full if lstm else [state_full]):
        assert_close(a, b, np.float64, name)

    layer.zero_grad()
    grad_sum = {k: np.zeros_like(v) for k, v in layer.grads.items()}
    g_state = sg_n
    dxs: list[np.ndarray] = [None] * len(CHUNKS)  # type: ignore[list-item]
    for i in reversed(range(len(CHUNKS))):
        lay = layers[i]
        if approach == "rerun_forward":
            y_i, _ = lay(chunk(x_all, i), initial_states[i])  # backward needs this chunk's tape
            assert_close(y_i, ys[i], np.float64, f"y chunk {i} (re-run)")
            dxs[i], g_state = lay.backward(chunk(dy_all, i), g_state, accumulate=True)
        else:
            dxs[i], g_state = lay.backward(chunk(dy_all, i), g_state)
            for k, v in lay.grads.items():
                grad_sum[k] += v
    grads_chunked = layer.grads if approach == "rerun_forward" else grad_sum
    assert_close(np.concatenate(dxs, axis=taxis), dx_full, np.float64, "dx")
    for name, a, b in zip(("dh0", "dc0"), g_state if lstm else [g_state], dstate_full if lstm else [dstate_full]):
        assert_close(a, b, np.float64, name)
    assert set(grads_chunked) == set(grads_full)
    for k in grads_full:
        assert_close(grads_chunked[k], grads_full[k], np.float64, "d" + k)


@pytest.mark.parametrize("kind", ["lstm_proj", "gru"])
def test_truncated_bptt_float32(kind: str, rng: np.random.Generator) -> None:
    """The same in float32 (re-running each chunk's forward), against the float64 reference."""
    L = 2
    lstm = is_lstm(kind)
    layer = make_layer(kind, num_layers=L, dtype=np.float32, seed=seed_of(rng))
    Tl = sum(CHUNKS)
    d = make_data(rng, kind, Tl, B, I, H, P, L, 1, np.float32)
    ref_out, ref_grads = run_reference(layer, kind, d, None, True, True)
    state = (d["h0"], d["c0"]) if lstm else d["h0"]
    bounds = np.cumsum((0,) + CHUNKS)
    initial = []
    for i in range(len(CHUNKS)):
        initial.append(state)
        _, state = layer(d["x"][bounds[i]:bounds[i + 1]], state)
    for name, a in zip(("h_n", "c_n"), state if lstm else [state]):
        assert_close(a, ref_out[name], np.float32, name)
    layer.zero_grad()
    g_state = (d["dh_n"], d["dc_n"]) if lstm else d["dh_n"]
    dxs = []
    for i in reversed(range(len(CHUNKS))):
        layer(d["x"][bounds[i]:bounds[i + 1]], initial[i])
        dx, g_state = layer.backward(d["dy"][bounds[i]:bounds[i + 1]], g_state, accumulate=True)
        dxs.insert(0, dx)
    assert_close(np.concatenate(dxs), ref_grads["x"], np.float32, "dx")
    for name, a in zip(("h0", "c0"), g_state if lstm else [g_state]):
        assert_close(a, ref_grads[name], np.float32, "d" + name)
    for k, g in layer.grads.items():
        assert_close(g, ref_grads[k], np.float32, "d" + k)


# ----------------------------------------------------------------------------------------------
# The stacked reference against finite differences
# ----------------------------------------------------------------------------------------------

FD_EPS = 1e-6
FD_RTOL = 1e-6


def fd_params(kind: str, I_: int, H_: int, P_: int, L: int, D: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    G = GATES[kind]
    p = P_ if kind == "lstm_proj" else H_
    s = 2.0 / np.sqrt(H_)
    params = {}
    for k in range(L):
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            params[f"weight_ih{sfx}"] = rng.uniform(-s, s, (G * H_, I_ if k == 0 else D * p))
            params[f"weight_hh{sfx}"] = rng.uniform(-s, s, (G * H_, p))
            params[f"bias_ih{sfx}"] = rng.uniform(-s, s, (G * H_,))
            params[f"bias_hh{sfx}"] = rng.uniform(-s, s, (G * H_,))
            if kind == "lstm_proj":
                params[f"weight_hr{sfx}"] = rng.uniform(-s, s, (P_, H_))
    return params


def rel_err(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(np.max(np.abs(analytic - numeric)) / max(np.max(np.abs(numeric)), 1e-12))


@pytest.mark.parametrize(
    "kind, dropout", [(k, False) for k in KINDS] + [("lstm_proj", True), ("gru", True), ("rnn_tanh", True)],
    ids=lambda v: {False: "nodrop", True: "masks"}.get(v, v) if isinstance(v, bool) else v,
)
def test_stacked_reference_finite_differences(kind: str, dropout: bool, rng: np.random.Generator) -> None:
    """Every input, initial state and parameter of a 2-layer bidirectional stack with lengths."""
    Tf, Bf, If, Hf, Pf, L, D = 3, 3, 2, 3, 2, 2, 2
    lengths = np.array([2, 3, 1])
    cell, nl = ref_cell(kind)
    lstm = is_lstm(kind)
    p = Pf if kind == "lstm_proj" else Hf
    params = fd_params(kind, If, Hf, Pf, L, D, rng)
    inp = {"x": rng.standard_normal((Tf, Bf, If)), "h0": 0.5 * rng.standard_normal((L * D, Bf, p))}
    if lstm:
        inp["c0"] = 0.5 * rng.standard_normal((L * D, Bf, Hf))
    masks = []
    if dropout:
        masks = [(rng.random((Tf, Bf, D * p)) < 0.7) / 0.7]
    wy = rng.standard_normal((Tf, Bf, D * p))
    wh = rng.standard_normal((L * D, Bf, p))
    wc = rng.standard_normal((L * D, Bf, Hf)) if lstm else None

    def run(values: dict[str, np.ndarray]) -> tuple[float, Any]:
        y, h_n, c_n, tape = reference.stacked_forward(
            cell, values["x"], values["h0"], values.get("c0"), {k: values[k] for k in params},
            num_layers=L, bidirectional=True, nonlinearity=nl, lengths=lengths, dropout_masks=masks,
        )  # fmt: skip
        loss = np.sum(y * wy) + np.sum(h_n * wh) + (np.sum(c_n * wc) if lstm else 0.0)
        return float(loss), tape

    values = {**inp, **params}
    _, tape = run(values)
    g = reference.stacked_backward(tape, wy, wh, wc)
    assert set(g) == set(values), sorted(set(g) ^ set(values))
    for name, base in values.items():
        numeric = np.empty_like(base)
        for idx in np.ndindex(base.shape):
            orig = base[idx]
            base[idx] = orig + FD_EPS
            lp, _ = run(values)
            base[idx] = orig - FD_EPS
            lm, _ = run(values)
            base[idx] = orig
            numeric[idx] = (lp - lm) / (2 * FD_EPS)
        assert g[name].shape == base.shape, name
        err = rel_err(g[name], numeric)
        assert err <= FD_RTOL, f"d{name}: relative error {err:.2e} against finite differences"


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_reference_is_single_layers_composed(kind: str, rng: np.random.Generator) -> None:
    """The stacked forward is the single-layer reference run per layer and direction, concatenated."""
    L, D = 3, 2
    cell, nl = ref_cell(kind)
    lstm = is_lstm(kind)
    p = out_size(kind)
    params = fd_params(kind, I, H, P, L, D, rng)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((L * D, B, p))
    c0 = 0.5 * rng.standard_normal((L * D, B, H)) if lstm else None
    y, h_n, c_n, _ = reference.stacked_forward(cell, x, h0, c0, params, num_layers=L, bidirectional=True,
                                               nonlinearity=nl, lengths=LENGTHS)  # fmt: skip
    inp = x
    for k in range(L):
        outs = []
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            idx = k * D + d
            w = [params[f"{n}{sfx}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            kw = {"lengths": LENGTHS, "reverse": d == 1}
            if lstm:
                w_hr = params.get(f"weight_hr{sfx}")
                yk, hk, ck, _ = reference.lstm_forward(inp, h0[idx], c0[idx], *w, weight_hr=w_hr, **kw)
                np.testing.assert_array_equal(c_n[idx], ck)
            elif cell == "gru":
                yk, hk, _ = reference.gru_forward(inp, h0[idx], *w, **kw)
            else:
                yk, hk, _ = reference.rnn_forward(inp, h0[idx], *w, nonlinearity=nl, **kw)
            np.testing.assert_array_equal(h_n[idx], hk)
            outs.append(yk)
        inp = np.concatenate(outs, axis=2)
    np.testing.assert_array_equal(y, inp)


# ----------------------------------------------------------------------------------------------
# Shapes and names
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_state_and_output_shapes(kind: str, bidirectional: bool, batch_first: bool, rng: np.random.Generator) -> None:
    L, D = 3, 2 if bidirectional else 1
    layer = make_layer(kind, num_layers=L, bidirectional=bidirectional, batch_first=batch_first, dtype=np.float32)
    p = out_size(kind)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    y, state = layer(x)
    assert y.shape == ((B, T, D * p) if batch_first else (T, B, D * p))
    assert y.dtype == np.float32
    if is_lstm(kind):
        h_n, c_n = state
        assert h_n.shape == (L * D, B, p) and c_n.shape == (L * D, B, H)
    else:
        assert state.shape == (L * D, B, p)
    dx, dstate = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
    assert dx.shape == x.shape
    if is_lstm(kind):
        assert dstate[0].shape == (L * D, B, p) and dstate[1].shape == (L * D, B, H)
    else:
        assert dstate.shape == (L * D, B, p)
    for name, g in layer.grads.items():
        assert g.shape == layer.state_dict()[name].shape and g.dtype == np.float32


def expected_param_shapes(kind: str, L: int, D: int, bias: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """torch's state_dict order: per layer, per direction: w_ih, w_hh, b_ih, b_hh, w_hr."""
    G, p = GATES[kind], out_size(kind)
    out = []
    for k in range(L):
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            out += [(f"weight_ih{sfx}", (G * H, I if k == 0 else D * p)), (f"weight_hh{sfx}", (G * H, p))]
            if bias:
                out += [(f"bias_ih{sfx}", (G * H,)), (f"bias_hh{sfx}", (G * H,))]
            if kind == "lstm_proj":
                out += [(f"weight_hr{sfx}", (P, H))]
    return out


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_and_shapes(kind: str, bidirectional: bool) -> None:
    L, D = 3, 2 if bidirectional else 1
    layer = make_layer(kind, num_layers=L, bidirectional=bidirectional)
    sd = layer.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == expected_param_shapes(kind, L, D)
    assert list(layer.grads) == list(sd)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_and_shapes_as_torch(kind: str, bidirectional: bool, bias: bool) -> None:
    torch = pytest.importorskip("torch")
    L = 3
    kw: dict[str, Any] = dict(num_layers=L, bidirectional=bidirectional, bias=bias)
    extra: dict[str, Any] = {"proj_size": P} if kind == "lstm_proj" else {}
    if kind.startswith("rnn"):
        extra = {"nonlinearity": kind[4:]}
    name = {"lstm": "LSTM", "lstm_proj": "LSTM", "gru": "GRU"}.get(kind, "RNN")
    with torch.random.fork_rng():  # torch's initialisation must not move its global generator
        m = getattr(torch.nn, name)(I, H, **kw, **extra)
    ours = getattr(fusedrnn, name)(I, H, **kw, **extra)
    theirs = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == theirs
