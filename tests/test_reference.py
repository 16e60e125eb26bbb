"""Checks of the NumPy oracle ``fusedrnn.reference``.

- the hand-written BPTT against central finite differences in float64, for every input,
  initial state and parameter, over cells, directions, variable lengths, bias/no bias, T=1, B=1;
- the forward against an independent per-sequence loop (so that lengths and reverse mean what
  docs/functional-contract.md says, not just "the gradient matches whatever the forward does");
- the contract's edges: NaN in dy at padding reaches nothing, inputs are not modified, dtypes are
  kept, low precision agrees loosely with float64, argument checks name the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fusedrnn import reference

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
FD_EPS = 1e-6
FD_RTOL = 1e-6
RELU_MARGIN = 1e-3  # finite differences are only valid away from relu's kink

# name: (T, B, I, H, lengths or None, bias)
CONFIGS: dict[str, tuple[int, int, int, int, list[int] | None, bool]] = {
    "full": (5, 3, 4, 3, None, True),
    "lengths": (5, 3, 4, 3, [3, 1, 5], True),  # unsorted, contains 1 and T
    "nobias": (4, 3, 2, 3, [1, 4, 2], False),
    "nobias_full": (3, 2, 3, 2, None, False),
    "T1": (1, 3, 4, 2, [1, 1, 1], True),
    "T1_nolengths": (1, 2, 2, 3, None, True),
    "B1": (4, 1, 3, 2, [3], True),
    "B1_T1": (1, 1, 2, 3, None, False),
}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def make_inputs(cell: str, T: int, B: int, I: int, H: int, bias: bool,
                rng: np.random.Generator) -> dict[str, Any]:
    """Fresh non-zero random inputs, in float64."""
    G = GATES[cell]
    k = 1.0 / np.sqrt(H)
    inp: dict[str, Any] = {
        "x": rng.standard_normal((T, B, I)),
        "h0": 0.5 * rng.standard_normal((B, H)),
    }
    if cell == "lstm":
        inp["c0"] = 0.5 * rng.standard_normal((B, H))
    inp["weight_ih"] = rng.uniform(-2 * k, 2 * k, (G * H, I))
    inp["weight_hh"] = rng.uniform(-2 * k, 2 * k, (G * H, H))
    inp["bias_ih"] = rng.uniform(-k, k, (G * H,)) if bias else None
    inp["bias_hh"] = rng.uniform(-k, k, (G * H,)) if bias else None
    return inp


def state_names(cell: str) -> tuple[str, ...]:
    return ("h0", "c0") if cell == "lstm" else ("h0",)


def run_forward(cell: str, inp: dict[str, Any], lengths: Any, reverse: bool,
                need_tape: bool = True) -> tuple[np.ndarray, list[np.ndarray], Any]:
    """(y, [h_n] or [h_n, c_n], tape) for any cell."""
    w = (inp["weight_ih"], inp["weight_hh"], inp["bias_ih"], inp["bias_hh"])
    kw = dict(lengths=lengths, reverse=reverse, need_tape=need_tape)
    if cell == "lstm":
        y, h_n, c_n, tape = reference.lstm_forward(inp["x"], inp["h0"], inp["c0"], *w, **kw)
        return y, [h_n, c_n], tape
    if cell == "gru":
        y, h_n, tape = reference.gru_forward(inp["x"], inp["h0"], *w, **kw)
    else:
        y, h_n, tape = reference.rnn_forward(inp["x"], inp["h0"], *w,
                                             nonlinearity=cell[4:], **kw)
    return y, [h_n], tape


def run_backward(cell: str, tape: Any, dy: Any, dstates: list[Any]) -> dict[str, Any]:
    if cell == "lstm":
        return reference.lstm_backward(tape, dy, *dstates)
    if cell == "gru":
        return reference.gru_backward(tape, dy, *dstates)
    return reference.rnn_backward(tape, dy, *dstates)


def loss_weights(cell: str, T: int, B: int, H: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """wy (T, B, H) and [wh] or [wh, wc] for L = sum(y wy) + sum(h_n wh) (+ sum(c_n wc))."""
    wy = rng.standard_normal((T, B, H))
    ws = [rng.standard_normal((B, H)) for _ in state_names(cell)]
    return wy, ws


def loss(cell: str, inp: dict[str, Any], lengths: Any, reverse: bool,
         wy: np.ndarray, ws: list[np.ndarray]) -> float:
    y, states, _ = run_forward(cell, inp, lengths, reverse, need_tape=False)
    return float(np.sum(y * wy) + sum(np.sum(s * w) for s, w in zip(states, ws)))


def rel_err(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(np.max(np.abs(analytic - numeric)) / max(np.max(np.abs(numeric)), 1e-12))


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def naive_forward(cell: str, inp: dict[str, Any], lengths: Any, reverse: bool
                  ) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """Independent forward: one sequence at a time, walking only its real steps.

    Returns y, [h_n] (+ [c_n]) and the list of every pre-activation that meets a kink
    (the relu inputs), for the finite-difference sampling.
    """
    x = inp["x"]
    T, B, _ = x.shape
    H = inp["weight_hh"].shape[1]
    W, R = inp["weight_ih"], inp["weight_hh"]
    bw = inp["bias_ih"] if inp["bias_ih"] is not None else np.zeros(W.shape[0])
    br = inp["bias_hh"] if inp["bias_hh"] is not None else np.zeros(W.shape[0])
    lens = [T] * B if lengths is None else list(lengths)
    y = np.zeros((T, B, H))
    h_n = np.zeros((B, H))
    c_n = np.zeros((B, H))
    kinks: list[float] = []
    for b in range(B):
        h = inp["h0"][b].copy()
        c = inp["c0"][b].copy() if cell == "lstm" else None
        steps = range(lens[b] - 1, -1, -1) if reverse else range(lens[b])
        for t in steps:
            if cell in ("rnn_tanh", "rnn_relu"):
                a = W @ x[t, b] + bw + R @ h + br
                if cell == "rnn_tanh":
                    h = np.tanh(a)
                else:
                    kinks.extend(a.tolist())
                    h = np.where(a > 0, a, 0.0)
            elif cell == "lstm":
                a = W @ x[t, b] + bw + R @ h + br
                i, f, g, o = (a[k * H:(k + 1) * H] for k in range(4))
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            else:
                ax = W @ x[t, b] + bw
                ah = R @ h + br
                r = sigmoid(ax[:H] + ah[:H])
                z = sigmoid(ax[H:2 * H] + ah[H:2 * H])
                n = np.tanh(ax[2 * H:] + r * ah[2 * H:])
                h = (1 - z) * n + z * h
            y[t, b] = h
        h_n[b] = h
        if cell == "lstm":
            c_n[b] = c
    return y, ([h_n, c_n] if cell == "lstm" else [h_n]), kinks


def draw_case(cell: str, config: str, seed: int) -> tuple[dict[str, Any], Any]:
    """Inputs and lengths for a config; for relu, redraw until no pre-activation is near 0."""
    T, B, I, H, lengths, bias = CONFIGS[config]
    rng = np.random.default_rng(seed)
    for _ in range(200):
        inp = make_inputs(cell, T, B, I, H, bias, rng)
        if cell != "rnn_relu":
            return inp, lengths
        _, _, kinks = naive_forward(cell, inp, lengths, False)
        _, _, kinks_rev = naive_forward(cell, inp, lengths, True)
        if min(abs(a) for a in kinks + kinks_rev) >= RELU_MARGIN:
            return inp, lengths
    raise AssertionError("could not draw relu inputs away from the kink")


def padding_mask(T: int, B: int, lengths: Any) -> np.ndarray:
    """(T, B) True at padding steps."""
    if lengths is None:
        return np.zeros((T, B), dtype=bool)
    return np.arange(T)[:, None] >= np.asarray(lengths)[None, :]


# ----------------------------------------------------------------------------------------------
# Gradients against central finite differences
# ----------------------------------------------------------------------------------------------


# two seeds for the main shapes, one for each edge case (keeps the file to a few seconds)
FD_CASES = [(c, s) for c in CONFIGS for s in ((0, 1) if c in ("full", "lengths") else (0,))]


@pytest.mark.parametrize("config,seed", FD_CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell: str, reverse: bool, config: str,
                                            seed: int) -> None:
    inp, lengths = draw_case(cell, config, seed)
    T, B, _ = inp["x"].shape
    H = inp["weight_hh"].shape[1]
    wy, ws = loss_weights(cell, T, B, H, np.random.default_rng(1000 + seed))

    _, _, tape = run_forward(cell, inp, lengths, reverse)
    grads = run_backward(cell, tape, wy, ws)

    expected_keys = ["x", *state_names(cell), "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert list(grads) == expected_keys
    for name in expected_keys:
        if inp[name] is None:
            assert grads[name] is None, name
            continue
        arr = inp[name]
        assert grads[name].shape == arr.shape, name
        assert grads[name].dtype == np.float64, name
        numeric = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + FD_EPS
            lp = loss(cell, inp, lengths, reverse, wy, ws)
            arr[idx] = old - FD_EPS
            lm = loss(cell, inp, lengths, reverse, wy, ws)
            arr[idx] = old
            numeric[idx] = (lp - lm) / (2 * FD_EPS)
        err = rel_err(grads[name], numeric)
        assert err <= FD_RTOL, f"{name}: relative error {err:.3g}"


# ----------------------------------------------------------------------------------------------
# Forward semantics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("config", ["full", "lengths", "nobias", "T1", "B1"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_per_sequence_loop(cell: str, reverse: bool, config: str,
                                           seed: int) -> None:
    T, B, I, H, lengths, bias = CONFIGS[config]
    inp = make_inputs(cell, T, B, I, H, bias, np.random.default_rng(seed))
    y, states, _ = run_forward(cell, inp, lengths, reverse)
    y_ref, states_ref, _ = naive_forward(cell, inp, lengths, reverse)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    for s, s_ref in zip(states, states_ref):
        np.testing.assert_allclose(s, s_ref, rtol=1e-12, atol=1e-14)
    # padding is exactly zero, and h_n is the output of each sequence's last real step
    pad = padding_mask(T, B, lengths)
    assert np.all(y[pad] == 0)
    lens = [T] * B if lengths is None else lengths
    for b in range(B):
        last = 0 if reverse else lens[b] - 1
        assert np.array_equal(states[0][b], y[last, b])


@pytest.mark.parametrize("cell", CELLS)
def test_reverse_is_forward_on_flipped_sequences(cell: str) -> None:
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    inp = make_inputs(cell, T, B, I, H, bias, np.random.default_rng(7))
    flipped = dict(inp)
    flipped["x"] = inp["x"].copy()
    for b, n in enumerate(lengths):
        flipped["x"][:n, b] = inp["x"][:n, b][::-1]
    y_rev, st_rev, _ = run_forward(cell, inp, lengths, reverse=True)
    y_fwd, st_fwd, _ = run_forward(cell, flipped, lengths, reverse=False)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(y_rev[:n, b], y_fwd[:n, b][::-1], rtol=1e-13, atol=1e-15)
        assert np.all(y_rev[n:, b] == 0)
    for a, c in zip(st_rev, st_fwd):
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-15)


def test_relu_derivative_is_zero_at_the_kink() -> None:
    # pre-activation exactly 0: torch's relu backward gives 0 there
    x = np.array([[[1.0]]])
    h0 = np.array([[0.25]])
    w_ih, w_hh = np.array([[2.0]]), np.array([[-4.0]])
    b_ih, b_hh = np.array([-1.5]), np.array([0.5])  # 2 - 1 - 1.5 + 0.5 = 0
    y, h_n, tape = reference.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="relu")
    assert y[0, 0, 0] == 0 and h_n[0, 0] == 0
    g = reference.rnn_backward(tape, np.ones_like(y), np.ones_like(h_n))
    for name in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert np.all(g[name] == 0), name


@pytest.mark.parametrize("cell", CELLS)
def test_need_tape_false(cell: str) -> None:
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    inp = make_inputs(cell, T, B, I, H, bias, np.random.default_rng(3))
    y1, st1, tape1 = run_forward(cell, inp, lengths, True, need_tape=True)
    y2, st2, tape2 = run_forward(cell, inp, lengths, True, need_tape=False)
    assert tape1 is not None and tape2 is None
    assert np.array_equal(y1, y2)
    for a, b in zip(st1, st2):
        assert np.array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# Backward edges
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_nan_dy_at_padding_reaches_nothing(cell: str, reverse: bool) -> None:
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    rng = np.random.default_rng(11)
    inp = make_inputs(cell, T, B, I, H, bias, rng)
    wy, ws = loss_weights(cell, T, B, H, rng)
    pad = padding_mask(T, B, lengths)
    assert pad.any()
    y, _, tape = run_forward(cell, inp, lengths, reverse)
    assert np.all(y[pad] == 0.0)

    dy_nan = wy.copy()
    dy_nan[pad] = np.nan
    dy_zero = wy.copy()
    dy_zero[pad] = 0.0
    g_nan = run_backward(cell, tape, dy_nan, ws)
    g_zero = run_backward(cell, tape, dy_zero, ws)
    g_any = run_backward(cell, tape, wy, ws)
    for name, g in g_nan.items():
        if g is None:
            continue
        assert np.all(np.isfinite(g)), name
        assert np.array_equal(g, g_zero[name]), name
        assert np.array_equal(g, g_any[name]), name
    # the input gradient at padding steps is exactly zero
    assert np.all(g_nan["x"][pad] == 0.0)


@pytest.mark.parametrize("cell", CELLS)
def test_state_grads_none_mean_zeros(cell: str) -> None:
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    rng = np.random.default_rng(5)
    inp = make_inputs(cell, T, B, I, H, bias, rng)
    wy, _ = loss_weights(cell, T, B, H, rng)
    _, states, tape = run_forward(cell, inp, lengths, False)
    g_none = run_backward(cell, tape, wy, [None] * len(states))
    g_zero = run_backward(cell, tape, wy, [np.zeros_like(s) for s in states])
    for name in g_none:
        if g_none[name] is not None:
            assert np.array_equal(g_none[name], g_zero[name]), name


@pytest.mark.parametrize("cell", CELLS)
def test_inputs_and_tape_are_not_modified(cell: str) -> None:
    T, B, I, H, _, bias = CONFIGS["lengths"]
    lengths = np.array([3, 1, 5])
    rng = np.random.default_rng(9)
    inp = make_inputs(cell, T, B, I, H, bias, rng)
    wy, ws = loss_weights(cell, T, B, H, rng)
    wy[padding_mask(T, B, lengths)] = np.nan
    before = {k: (None if v is None else v.copy()) for k, v in inp.items()}
    lengths_before, wy_before = lengths.copy(), wy.copy()
    ws_before = [w.copy() for w in ws]

    for reverse in (False, True):
        _, _, tape = run_forward(cell, inp, lengths, reverse)
        g1 = run_backward(cell, tape, wy, ws)
        g2 = run_backward(cell, tape, wy, ws)  # the tape survives a backward
        for name in g1:
            if g1[name] is not None:
                assert np.array_equal(g1[name], g2[name]), name
                # results never alias the caller's arrays
                assert not any(np.shares_memory(g1[name], w) for w in [wy, *ws]), name

    for k, v in inp.items():
        assert (v is None) == (before[k] is None)
        if v is not None:
            assert np.array_equal(v, before[k]), k
    assert np.array_equal(lengths, lengths_before)
    assert np.array_equal(wy, wy_before, equal_nan=True)
    for w, w0 in zip(ws, ws_before):
        assert np.array_equal(w, w0)


# ----------------------------------------------------------------------------------------------
# Dtypes
# ----------------------------------------------------------------------------------------------


def cast_inputs(inp: dict[str, Any], dtype: Any) -> dict[str, Any]:
    return {k: (None if v is None else v.astype(dtype)) for k, v in inp.items()}


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble])
@pytest.mark.parametrize("cell", CELLS)
def test_dtype_is_kept(cell: str, dtype: Any) -> None:
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    rng = np.random.default_rng(2)
    inp = cast_inputs(make_inputs(cell, T, B, I, H, bias, rng), dtype)
    wy, ws = loss_weights(cell, T, B, H, rng)
    y, states, tape = run_forward(cell, inp, lengths, True)
    assert y.dtype == dtype
    for s in states:
        assert s.dtype == dtype
    grads = run_backward(cell, tape, wy.astype(dtype), [w.astype(dtype) for w in ws])
    for name, g in grads.items():
        assert g is not None and g.dtype == dtype, name
        assert np.all(np.isfinite(g)), name


def test_dtype_is_the_result_type_of_the_inputs() -> None:
    inp = make_inputs("gru", 2, 2, 3, 2, True, np.random.default_rng(4))
    mixed = cast_inputs(inp, np.float32)
    mixed["weight_hh"] = inp["weight_hh"]  # one float64 array promotes the computation
    y, h_n, tape = reference.gru_forward(mixed["x"], mixed["h0"], mixed["weight_ih"],
                                         mixed["weight_hh"], mixed["bias_ih"], mixed["bias_hh"])
    assert y.dtype == np.float64 and h_n.dtype == np.float64
    # gradients come back in the forward's dtype, whatever dtype dy has
    f32 = cast_inputs(inp, np.float32)
    y, h_n, tape = reference.gru_forward(f32["x"], f32["h0"], f32["weight_ih"],
                                         f32["weight_hh"], f32["bias_ih"], f32["bias_hh"])
    grads = reference.gru_backward(tape, np.ones(y.shape), np.ones(h_n.shape))
    assert all(g.dtype == np.float32 for g in grads.values())


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float16, 2e-2)])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_low_precision_agrees_with_float64(cell: str, reverse: bool, dtype: Any,
                                           tol: float) -> None:
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    rng = np.random.default_rng(6)
    inp = make_inputs(cell, T, B, I, H, bias, rng)
    wy, ws = loss_weights(cell, T, B, H, rng)
    # round the float64 problem to the low precision first, so that only arithmetic differs
    inp = cast_inputs(cast_inputs(inp, dtype), np.float64)
    wy = wy.astype(dtype).astype(np.float64)
    ws = [w.astype(dtype).astype(np.float64) for w in ws]
    low = cast_inputs(inp, dtype)

    y64, st64, tape64 = run_forward(cell, inp, lengths, reverse)
    y_lo, st_lo, tape_lo = run_forward(cell, low, lengths, reverse)
    g64 = run_backward(cell, tape64, wy, ws)
    g_lo = run_backward(cell, tape_lo, wy.astype(dtype), [w.astype(dtype) for w in ws])

    pairs = [("y", y64, y_lo)] + [(f"state{k}", a, b) for k, (a, b) in
                                  enumerate(zip(st64, st_lo))]
    pairs += [(name, g64[name], g_lo[name]) for name in g64]
    for name, ref, got in pairs:
        assert got.dtype == dtype, name
        err = rel_err(got.astype(np.float64), ref)
        assert err <= tol, f"{name}: relative error {err:.3g}"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_saturated_gates_raise_no_floating_point_errors(cell: str, dtype: Any) -> None:
    # pre-activations of several hundred: a naive 1/(1+exp(-a)) overflows in every dtype here
    T, B, I, H, lengths, bias = CONFIGS["lengths"]
    rng = np.random.default_rng(8)
    inp = make_inputs(cell, T, B, I, H, bias, rng)
    inp["weight_ih"] = inp["weight_ih"] * 400.0 + np.sign(inp["weight_ih"]) * 200.0
    inp = cast_inputs(inp, dtype)
    wy, ws = loss_weights(cell, T, B, H, rng)
    with np.errstate(all="raise"):
        y, states, tape = run_forward(cell, inp, lengths, False)
        grads = run_backward(cell, tape, wy.astype(dtype), [w.astype(dtype) for w in ws])
    assert np.all(np.abs(y) <= 1)
    for a in [y, *states, *(g for g in grads.values() if g is not None)]:
        assert a.dtype == dtype and np.all(np.isfinite(a))


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def _lstm_args(T: int = 3, B: int = 2, I: int = 4, H: int = 3) -> dict[str, Any]:
    return make_inputs("lstm", T, B, I, H, True, np.random.default_rng(0))


@pytest.mark.parametrize("name,shape", [
    ("x", (3, 2)),
    ("h0", (2, 4)),
    ("c0", (1, 3)),
    ("weight_ih", (12, 3)),
    ("weight_hh", (12, 4)),
    ("bias_ih", (11,)),
    ("bias_hh", (12, 1)),
])
def test_bad_shapes_raise_naming_the_argument(name: str, shape: tuple[int, ...]) -> None:
    args = _lstm_args()
    args[name] = np.ones(shape)
    with pytest.raises(ValueError, match=name):
        reference.lstm_forward(args["x"], args["h0"], args["c0"], args["weight_ih"],
                               args["weight_hh"], args["bias_ih"], args["bias_hh"])


@pytest.mark.parametrize("lengths", [[0, 3], [1, 4], [3], [[1, 2]]])
def test_bad_lengths_raise(lengths: Any) -> None:
    a = make_inputs("gru", 3, 2, 2, 2, True, np.random.default_rng(0))
    with pytest.raises(ValueError, match="lengths"):
        reference.gru_forward(a["x"], a["h0"], a["weight_ih"], a["weight_hh"],
                              a["bias_ih"], a["bias_hh"], lengths=lengths)


def test_other_bad_arguments_raise() -> None:
    a = make_inputs("rnn_tanh", 3, 2, 2, 2, True, np.random.default_rng(0))
    w = (a["weight_ih"], a["weight_hh"])
    with pytest.raises(ValueError, match="bias"):
        reference.rnn_forward(a["x"], a["h0"], *w, a["bias_ih"], None)
    with pytest.raises(ValueError, match="nonlinearity"):
        reference.rnn_forward(a["x"], a["h0"], *w, nonlinearity="sigmoid")
    _, _, tape = reference.rnn_forward(a["x"], a["h0"], *w)
    with pytest.raises(ValueError, match="dy"):
        reference.rnn_backward(tape, np.ones((3, 2, 3)))
    with pytest.raises(ValueError, match="dh_n"):
        reference.rnn_backward(tape, np.ones((3, 2, 2)), np.ones((2, 3)))
    with pytest.raises(TypeError):
        reference.gru_backward(tape, np.ones((3, 2, 2)))


def test_all_cells_and_configs_are_covered() -> None:
    # guard against the grid above silently shrinking
    shapes = [CONFIGS[c][:4] for c in CONFIGS]
    assert any(T == 1 for T, *_ in shapes) and any(B == 1 for _, B, *_ in shapes)
    assert any(I != H for *_, I, H in shapes)
    assert any(not CONFIGS[c][5] for c in CONFIGS)
    for T, _, _, _, lengths, _ in CONFIGS.values():
        if lengths is not None and T > 1 and len(lengths) > 2:
            assert 1 in lengths and T in lengths
            assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)
