"""The layer classes ``fusedrnn.RNN`` / ``LSTM`` / ``GRU`` (one layer, one direction).

- forward outputs, input/state gradients and every ``layer.grads`` entry against
  ``fusedrnn.functional`` and ``fusedrnn.reference`` run on the layer's own ``state_dict()``,
  with and without an initial state, with variable lengths, both dtypes, bias and no bias;
- ``state_dict`` names/shapes as torch, live arrays, ``load_state_dict`` round trip;
- initialisation (seeded, U(-1/sqrt(H), 1/sqrt(H)), dtypes);
- tape handling: ``eval()`` / ``train()``, ``no_grad`` (context, decorator, per thread),
  repeated and accumulating backward, ``zero_grad``;
- unbatched input, ``repr``, not-yet-implemented constructor values, threads, docstrings, py.typed.
"""

from __future__ import annotations

import importlib.resources
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import CELLS, GATES, assert_close, make_problem

import fusedrnn
from fusedrnn import functional, reference

DTYPES = (np.float64, np.float32)

# name: (T, B, I, H, lengths or None, bias)
CONFIGS: dict[str, tuple[int, int, int, int, list[int] | None, bool]] = {
    "full": (5, 3, 4, 7, None, True),
    "lengths": (6, 4, 3, 5, [6, 1, 3, 4], True),  # unsorted, contains 1 and T
    "nobias_lengths": (4, 3, 5, 2, [2, 4, 1], False),
    "T1_B1": (1, 1, 2, 3, None, True),
}

LAYER_CLASSES = (fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def make_layer(cell: str, I: int, H: int, *, bias: bool = True, dtype: Any = np.float64, seed: Any = None) -> Any:
    if cell == "lstm":
        return fusedrnn.LSTM(I, H, bias=bias, dtype=dtype, seed=seed)
    if cell == "gru":
        return fusedrnn.GRU(I, H, bias=bias, dtype=dtype, seed=seed)
    return fusedrnn.RNN(I, H, nonlinearity=cell[4:], bias=bias, dtype=dtype, seed=seed)


def new_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def pack(cell: str, arrays: list[np.ndarray]) -> Any:
    """[h] or [h, c] of shape (B, H) -> the layer's state argument: (1, B, H), a tuple for LSTM."""
    return (arrays[0][None], arrays[1][None]) if cell == "lstm" else arrays[0][None]


def unpack_state(cell: str, state: Any) -> list[np.ndarray]:
    return list(state) if cell == "lstm" else [state]


def oracle(
    module: Any, cell: str, layer: Any, x: np.ndarray, states: list[np.ndarray], lengths: Any,
    dy: np.ndarray, dstates: list[np.ndarray | None],
) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:  # fmt: skip
    """Forward + backward of ``module`` (functional or reference) on the layer's own parameters.

    ``x``, ``states`` and ``dy`` are (T, B, I), [(B, H)...] and (T, B, H); ``dstates`` entries may
    be None. For the reference everything is promoted to float64.
    """
    sd = layer.state_dict()
    w = [sd["weight_ih_l0"], sd["weight_hh_l0"], sd.get("bias_ih_l0"), sd.get("bias_hh_l0")]
    if module is reference:
        w = [None if a is None else np.asarray(a, np.float64) for a in w]
        x, dy = x.astype(np.float64), dy.astype(np.float64)
        states = [s.astype(np.float64) for s in states]
        dstates = [None if s is None else s.astype(np.float64) for s in dstates]
    kw = {"lengths": lengths}
    if cell == "lstm":
        y, h_n, c_n, tape = module.lstm_forward(x, states[0], states[1], *w, **kw)
        return y, [h_n, c_n], module.lstm_backward(tape, dy, dstates[0], dstates[1])
    if cell == "gru":
        y, h_n, tape = module.gru_forward(x, states[0], *w, **kw)
        return y, [h_n], module.gru_backward(tape, dy, dstates[0])
    y, h_n, tape = module.rnn_forward(x, states[0], *w, nonlinearity=cell[4:], **kw)
    return y, [h_n], module.rnn_backward(tape, dy, dstates[0])


def layer_inputs(rng: np.random.Generator, cell: str, T: int, B: int, I: int, H: int, dtype: Any) -> dict[str, Any]:
    """Fresh random x, h0, (c0), dy, dh_n, (dc_n) in ``dtype`` (from conftest's make_problem)."""
    a = make_problem(rng, cell, T, B, I, H).cast(dtype)
    return {
        "x": a["x"], "dy": a["dy"],
        "states": [a["h0"], a["c0"]] if cell == "lstm" else [a["h0"]],
        "dstates": [a["dh_n"], a["dc_n"]] if cell == "lstm" else [a["dh_n"]],
    }  # fmt: skip


def snapshot(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# Forward / backward against functional and reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", CELLS)
def test_layer_matches_functional_and_reference(cell: str, config: str, with_state: bool, dtype: Any,
                                                rng: np.random.Generator) -> None:  # fmt: skip
    T, B, I, H, lengths, bias = CONFIGS[config]
    layer = make_layer(cell, I, H, bias=bias, dtype=dtype, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, dtype)
    x, dy = inp["x"], inp["dy"]
    lengths_arr = None if lengths is None else np.asarray(lengths)

    if with_state:
        states, dstates = inp["states"], inp["dstates"]
        y, state = layer(x, pack(cell, states), lengths_arr)
        dx, dstate = layer.backward(dy, pack(cell, dstates))
        dstates_ref: list[Any] = list(dstates)
    else:
        states = [np.zeros((B, H), dtype) for _ in inp["states"]]
        y, state = layer(x, lengths=lengths_arr)
        dx, dstate = layer.backward(dy)
        dstates_ref = [None] * len(states)

    # shapes and dtypes
    n_states = 2 if cell == "lstm" else 1
    if cell == "lstm":
        assert isinstance(state, tuple) and len(state) == 2
        assert isinstance(dstate, tuple) and len(dstate) == 2
    else:
        assert isinstance(state, np.ndarray) and isinstance(dstate, np.ndarray)
    finals, dinits = unpack_state(cell, state), unpack_state(cell, dstate)
    assert y.shape == (T, B, H) and y.dtype == np.dtype(dtype)
    assert dx.shape == (T, B, I) and dx.dtype == np.dtype(dtype)
    for s, d in zip(finals, dinits):
        assert s.shape == (1, B, H) and s.dtype == np.dtype(dtype)
        assert d.shape == (1, B, H) and d.dtype == np.dtype(dtype)
    assert len(finals) == n_states
    assert sorted(layer.grads) == sorted(layer.state_dict())

    for module in (functional, reference):
        y_r, finals_r, g_r = oracle(module, cell, layer, x, states, lengths_arr, dy, dstates_ref)
        tag = module.__name__
        assert_close(y, y_r, dtype, f"{tag} y")
        for name, s, s_r in zip(("h_n", "c_n"), finals, finals_r):
            assert_close(s[0], s_r, dtype, f"{tag} {name}")
        assert_close(dx, g_r["x"], dtype, f"{tag} dx")
        for name, d in zip(("h0", "c0"), dinits):
            assert_close(d[0], g_r[name], dtype, f"{tag} d{name}")
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            key = f"{kind}_l0"
            if bias or kind.startswith("weight"):
                assert layer.grads[key].dtype == np.dtype(dtype)
                assert_close(layer.grads[key], g_r[kind], dtype, f"{tag} grads[{key}]")
            else:
                assert key not in layer.grads and g_r[kind] is None

    if lengths is not None:  # padding is zero in y
        pad = np.arange(T)[:, None] >= lengths_arr[None, :]
        assert np.all(y[pad] == 0)


# ----------------------------------------------------------------------------------------------
# state_dict
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_keys_and_shapes_as_torch(cell: str, bias: bool) -> None:
    I, H = 3, 5
    G = GATES[cell]
    layer = make_layer(cell, I, H, bias=bias, dtype=np.float32)
    sd = layer.state_dict()
    expected = {"weight_ih_l0": (G * H, I), "weight_hh_l0": (G * H, H)}
    if bias:
        expected.update({"bias_ih_l0": (G * H,), "bias_hh_l0": (G * H,)})
    assert list(sd) == list(expected)  # torch's order too
    assert {k: v.shape for k, v in sd.items()} == expected
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in sd.values())
    assert list(layer.grads) == list(expected)
    assert {k: v.shape for k, v in layer.grads.items()} == expected


@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_round_trip(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 4, 3, 5, 6
    src = make_layer(cell, I, H, seed=new_seed(rng))
    dst = make_layer(cell, I, H, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
    x = inp["x"]
    assert not np.array_equal(src.state_dict()["weight_hh_l0"], dst.state_dict()["weight_hh_l0"])

    dst.load_state_dict(src.state_dict())
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
        assert not np.shares_memory(dst.state_dict()[k], v), f"{k}: load_state_dict must copy"
    assert_close(dst(x)[0], src(x)[0], np.float64, "y after load")

    # the copy is independent of the source afterwards
    before = snapshot(dst.state_dict())
    for v in src.state_dict().values():
        v += 1.0
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v, before[k])

    # a snapshot (plain copies, other float dtype, as lists) loads back
    saved = {k: v.astype(np.float32).tolist() for k, v in before.items()}
    dst.load_state_dict({k: np.asarray(v) for k, v in saved.items()})
    for k, v in dst.state_dict().items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(v, np.asarray(saved[k], np.float32).astype(np.float64))


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_returns_live_arrays(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 5, 2, 3, 4
    layer = make_layer(cell, I, H, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
    x = inp["x"]
    y1 = layer(x)[0]

    sd = layer.state_dict()
    for k, v in layer.state_dict().items():
        assert np.shares_memory(v, sd[k]), f"{k}: state_dict() must return the layer's own arrays"
    sd["weight_hh_l0"] *= 2.0
    sd["bias_ih_l0"] += 0.5
    sd["weight_ih_l0"][:] = rng.uniform(-0.5, 0.5, sd["weight_ih_l0"].shape)

    y2, state = layer(x)
    assert np.max(np.abs(y2 - y1)) > 1e-3
    states0 = [np.zeros((B, H)) for _ in unpack_state(cell, state)]
    y_r, finals_r, _ = oracle(reference, cell, layer, x, states0, None, inp["dy"], [None] * len(states0))
    assert_close(y2, y_r, np.float64, "y after in-place update")
    for s, s_r in zip(unpack_state(cell, state), finals_r):
        assert_close(s[0], s_r, np.float64, "state after in-place update")


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_init_seed_reproducible(cls: Any, rng: np.random.Generator) -> None:
    seed = new_seed(rng)
    a, b, c = cls(5, 7, seed=seed), cls(5, 7, seed=seed), cls(5, 7, seed=seed + 1)
    for k in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
        assert not np.array_equal(a.state_dict()[k], c.state_dict()[k]), k
    # a Generator seeds too, and unseeded layers differ from one another
    g1, g2 = cls(5, 7, seed=np.random.default_rng(seed)), cls(5, 7, seed=np.random.default_rng(seed))
    for k in a.state_dict():
        np.testing.assert_array_equal(g1.state_dict()[k], g2.state_dict()[k])
    u1, u2 = cls(5, 7), cls(5, 7)
    assert not np.array_equal(u1.state_dict()["weight_hh_l0"], u2.state_dict()["weight_hh_l0"])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", CELLS)
def test_init_uniform_within_bound(cell: str, dtype: Any, rng: np.random.Generator) -> None:
    I, H = 37, 121
    layer = make_layer(cell, I, H, dtype=dtype, seed=new_seed(rng))
    bound = 1.0 / np.sqrt(H)
    slack = 1e-6 if dtype == np.float32 else 0.0  # rounding of a value drawn in float64
    values = []
    for k, v in layer.state_dict().items():
        assert v.dtype == np.dtype(dtype), k
        assert np.all(np.abs(v.astype(np.float64)) <= bound * (1 + slack)), k
        assert np.unique(v).size > 0.9 * v.size, f"{k}: values repeat"
        values.append(v.astype(np.float64).ravel())
    w = np.concatenate(values)
    n = w.size
    # mean and variance of U(-b, b): 0 and b^2/3 (6 and 8 standard errors of slack)
    assert abs(w.mean()) < 6 * bound / np.sqrt(3 * n)
    assert abs(w.var() / (bound**2 / 3) - 1) < 8 * 0.9 / np.sqrt(n)
    assert w.min() < -0.99 * bound and w.max() > 0.99 * bound
    counts = np.histogram(w, bins=10, range=(-bound, bound))[0] / n
    assert np.all(np.abs(counts - 0.1) < 0.02), counts


@pytest.mark.parametrize("cell", CELLS)
def test_dtype_default_float32_and_float64_on_request(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 3, 2, 4, 5
    x = rng.standard_normal((T, B, I))  # float64 input into any layer: computed in the layer's dtype
    if cell == "lstm":
        default = fusedrnn.LSTM(I, H)
    elif cell == "gru":
        default = fusedrnn.GRU(I, H)
    else:
        default = fusedrnn.RNN(I, H, nonlinearity=cell[4:])
    for layer, dtype in ((default, np.float32), (make_layer(cell, I, H, dtype=np.float64), np.float64),
                         (make_layer(cell, I, H, dtype="float32"), np.float32)):  # fmt: skip
        assert layer.dtype == np.dtype(dtype)
        assert all(v.dtype == np.dtype(dtype) for v in layer.state_dict().values())
        assert all(v.dtype == np.dtype(dtype) for v in layer.grads.values())
        y, state = layer(x)
        assert y.dtype == np.dtype(dtype)
        assert all(s.dtype == np.dtype(dtype) for s in unpack_state(cell, state))
        dx, dstate = layer.backward(rng.standard_normal(y.shape))
        assert dx.dtype == np.dtype(dtype)
        assert all(s.dtype == np.dtype(dtype) for s in unpack_state(cell, dstate))
        assert all(v.dtype == np.dtype(dtype) for v in layer.grads.values())


# ----------------------------------------------------------------------------------------------
# Modes: train / eval / no_grad
# ----------------------------------------------------------------------------------------------


def run_outputs(cell: str, layer: Any, x: np.ndarray) -> list[np.ndarray]:
    y, state = layer(x)
    return [y, *unpack_state(cell, state)]


@pytest.mark.parametrize("cell", CELLS)
def test_eval_and_train_modes(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 4, 3, 2, 5
    layer = make_layer(cell, I, H, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
    x, dy = inp["x"], inp["dy"]
    assert layer.training
    out_train = run_outputs(cell, layer, x)
    dx_train, _ = layer.backward(dy)

    assert layer.eval() is layer
    assert not layer.training
    out_eval = run_outputs(cell, layer, x)
    with pytest.raises(RuntimeError):
        layer.backward(dy)

    assert layer.train() is layer
    assert layer.training
    out_again = run_outputs(cell, layer, x)
    dx_again, _ = layer.backward(dy)
    assert_close(dx_again, dx_train, np.float64, "dx after train()")
    assert layer.train(False) is layer and not layer.training
    for a, b, c in zip(out_train, out_eval, out_again):
        assert_close(b, a, np.float64, "eval output")
        assert_close(c, a, np.float64, "train output")


@pytest.mark.parametrize("cell", CELLS)
def test_no_grad_context_skips_tape(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 4, 2, 3, 4
    layer = make_layer(cell, I, H, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
    x, dy = inp["x"], inp["dy"]
    out_train = run_outputs(cell, layer, x)
    assert fusedrnn.is_grad_enabled()
    with fusedrnn.no_grad():
        assert not fusedrnn.is_grad_enabled()
        with fusedrnn.no_grad():  # nests
            assert not fusedrnn.is_grad_enabled()
        assert not fusedrnn.is_grad_enabled()
        out_nograd = run_outputs(cell, layer, x)
        assert layer.training  # no_grad does not change the mode
    assert fusedrnn.is_grad_enabled()
    with pytest.raises(RuntimeError):
        layer.backward(dy)
    for a, b in zip(out_train, out_nograd):
        assert_close(b, a, np.float64, "no_grad output")
    # restored after an exception inside the block
    with pytest.raises(KeyError), fusedrnn.no_grad():
        raise KeyError("boom")
    assert fusedrnn.is_grad_enabled()
    layer(x)
    layer.backward(dy)


def test_no_grad_as_decorator(rng: np.random.Generator) -> None:
    T, B, I, H = 3, 2, 3, 4
    layer = fusedrnn.GRU(I, H, dtype=np.float64, seed=new_seed(rng))
    x = rng.standard_normal((T, B, I))

    @fusedrnn.no_grad()
    def infer(inp: np.ndarray) -> np.ndarray:
        assert not fusedrnn.is_grad_enabled()
        return layer(inp)[0]

    y = infer(x)
    assert fusedrnn.is_grad_enabled()
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(y))
    assert_close(y, layer(x)[0], np.float64, "decorated forward")
    assert infer.__name__ == "infer"
    layer.backward(np.ones_like(y))  # the undecorated forward kept its tape


def test_no_grad_is_per_thread(rng: np.random.Generator) -> None:
    T, B, I, H = 5, 2, 3, 4
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def worker() -> None:
        with fusedrnn.no_grad():
            seen["worker_inside"] = fusedrnn.is_grad_enabled()
            entered.set()
            release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert entered.wait(10)
        assert seen["worker_inside"] is False
        assert fusedrnn.is_grad_enabled()  # the other thread's no_grad does not reach here
        layer = fusedrnn.LSTM(I, H, dtype=np.float64, seed=new_seed(rng))
        y, _ = layer(rng.standard_normal((T, B, I)))
        dx, _ = layer.backward(rng.standard_normal(y.shape))
        assert dx.shape == (T, B, I)
    finally:
        release.set()
        t.join(10)

    # and the other way round: no_grad here, a thread outside it keeps its tape
    result: dict[str, Any] = {}

    def trainer() -> None:
        try:
            result["enabled"] = fusedrnn.is_grad_enabled()
            lay = fusedrnn.RNN(I, H, dtype=np.float64, seed=1)
            out, _ = lay(np.ones((T, B, I)))
            result["dx"] = lay.backward(np.ones_like(out))[0]
        except BaseException as exc:  # reported in the main thread
            result["error"] = exc

    with fusedrnn.no_grad():
        th = threading.Thread(target=trainer)
        th.start()
        th.join(10)
    assert "error" not in result, result.get("error")
    assert result["enabled"] is True
    assert result["dx"].shape == (T, B, I)


# ----------------------------------------------------------------------------------------------
# Backward: repeated, accumulate, zero_grad
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_backward_twice_same_result(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 6, 3, 4, 5
    lengths = np.array([6, 2, 4])
    layer = make_layer(cell, I, H, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
    layer(inp["x"], pack(cell, inp["states"]), lengths)
    dstate = pack(cell, inp["dstates"])
    dx1, ds1 = layer.backward(inp["dy"], dstate)
    g1 = snapshot(layer.grads)
    dx1_copy, ds1_copy = dx1.copy(), [s.copy() for s in unpack_state(cell, ds1)]
    dx2, ds2 = layer.backward(inp["dy"], dstate)
    assert_close(dx2, dx1_copy, np.float64, "dx (second backward)")
    for a, b in zip(unpack_state(cell, ds2), ds1_copy):
        assert_close(a, b, np.float64, "dstate (second backward)")
    for k, v in layer.grads.items():
        assert_close(v, g1[k], np.float64, f"grads[{k}] (second backward)")
    # the first call's results are not buffers reused by the second
    np.testing.assert_array_equal(dx1, dx1_copy)
    for a, b in zip(unpack_state(cell, ds1), ds1_copy):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_accumulate_and_zero_grad(cell: str, rng: np.random.Generator) -> None:
    T, B, I, H = 5, 2, 3, 4
    layer = make_layer(cell, I, H, seed=new_seed(rng))
    inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
    dy1, dy2 = inp["dy"], rng.standard_normal(inp["dy"].shape)
    for g in layer.grads.values():  # fresh layer: zeros
        assert np.all(g == 0)
    layer(inp["x"])
    layer.backward(dy1)
    g1 = snapshot(layer.grads)
    layer.backward(dy2)  # written, not accumulated
    g2 = snapshot(layer.grads)
    _, _, g2_ref = oracle(functional, cell, layer, inp["x"], [np.zeros((B, H))] * len(inp["states"]), None,
                          dy2, [None] * len(inp["states"]))  # fmt: skip
    for k, v in g2.items():
        assert_close(v, g2_ref[k[: -len("_l0")]], np.float64, f"overwritten grads[{k}]")
    dx_acc, _ = layer.backward(dy1, accumulate=True)
    for k, v in layer.grads.items():
        assert_close(v, g1[k] + g2[k], np.float64, f"accumulated grads[{k}]")
    layer.backward(dy1, accumulate=True)
    for k, v in layer.grads.items():
        assert_close(v, 2 * g1[k] + g2[k], np.float64, f"twice accumulated grads[{k}]")

    layer.zero_grad()
    assert sorted(layer.grads) == sorted(layer.state_dict())
    for k, v in layer.grads.items():
        assert v.shape == layer.state_dict()[k].shape and np.all(v == 0), k
    layer.backward(dy1, accumulate=True)
    for k, v in layer.grads.items():
        assert_close(v, g1[k], np.float64, f"grads[{k}] accumulated after zero_grad")
    # zero_grad leaves the parameters alone
    assert not all(np.all(v == 0) for v in layer.state_dict().values())


# ----------------------------------------------------------------------------------------------
# Unbatched input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_matches_batch_of_one(cell: str, with_state: bool, rng: np.random.Generator) -> None:
    T, I, H = 6, 3, 5
    seed = new_seed(rng)
    lay_u, lay_b = make_layer(cell, I, H, seed=seed), make_layer(cell, I, H, seed=seed)
    inp = layer_inputs(rng, cell, T, 1, I, H, np.float64)
    x, dy = inp["x"][:, 0], inp["dy"][:, 0]  # (T, I), (T, H)
    st_b = pack(cell, inp["states"])  # (1, 1, H)
    dst_b = pack(cell, inp["dstates"])
    if cell == "lstm":
        st_u, dst_u = (st_b[0][:, 0], st_b[1][:, 0]), (dst_b[0][:, 0], dst_b[1][:, 0])
    else:
        st_u, dst_u = st_b[:, 0], dst_b[:, 0]  # (1, H)
    if not with_state:
        st_u = st_b = dst_u = dst_b = None

    y_u, s_u = lay_u(x, st_u)
    y_b, s_b = lay_b(x[:, None], st_b)
    assert y_u.shape == (T, H)
    assert_close(y_u, y_b[:, 0], np.float64, "y")
    for a, b in zip(unpack_state(cell, s_u), unpack_state(cell, s_b)):
        assert a.shape == (1, H)
        assert_close(a, b[:, 0], np.float64, "final state")

    dx_u, ds_u = lay_u.backward(dy, dst_u)
    dx_b, ds_b = lay_b.backward(dy[:, None], dst_b)
    assert dx_u.shape == (T, I)
    assert_close(dx_u, dx_b[:, 0], np.float64, "dx")
    for a, b in zip(unpack_state(cell, ds_u), unpack_state(cell, ds_b)):
        assert a.shape == (1, H)
        assert_close(a, b[:, 0], np.float64, "initial-state gradient")
    for k in lay_u.grads:
        assert_close(lay_u.grads[k], lay_b.grads[k], np.float64, f"grads[{k}]")


# ----------------------------------------------------------------------------------------------
# repr, not yet implemented
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda: fusedrnn.LSTM(10, 20), "LSTM(10, 20)"),
        (lambda: fusedrnn.GRU(3, 4, bias=False), "GRU(3, 4, bias=False)"),
        (lambda: fusedrnn.RNN(3, 4, nonlinearity="relu"), "RNN(3, 4, nonlinearity='relu')"),
        (lambda: fusedrnn.RNN(3, 4), "RNN(3, 4)"),
        (lambda: fusedrnn.LSTM(2, 7, bias=False), "LSTM(2, 7, bias=False)"),
    ],
)
def test_repr_like_torch(make: Any, text: str) -> None:
    assert repr(make()) == text


def test_device_other_than_cpu_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="device"):
        fusedrnn.LSTM(3, 4, device="cuda")


# ----------------------------------------------------------------------------------------------
# Threads
# ----------------------------------------------------------------------------------------------


def test_threads_with_separate_layers(rng: np.random.Generator) -> None:
    n_threads, reps = 8, 3
    T, B, I, H = 12, 5, 9, 17
    jobs = []
    for i in range(n_threads):
        cell = CELLS[i % len(CELLS)]
        layer = make_layer(cell, I, H, seed=new_seed(rng))
        inp = layer_inputs(rng, cell, T, B, I, H, np.float64)
        lengths = rng.integers(1, T + 1, B) if i % 2 else None
        y_r, finals_r, g_r = oracle(reference, cell, layer, inp["x"], inp["states"], lengths, inp["dy"],
                                    inp["dstates"])  # fmt: skip
        jobs.append((cell, layer, inp, lengths, (y_r, finals_r, g_r)))
    barrier = threading.Barrier(n_threads)

    def work(job: Any) -> list[Any]:
        cell, layer, inp, lengths, _ = job
        barrier.wait(timeout=30)
        outs = []
        for _ in range(reps):
            y, state = layer(inp["x"], pack(cell, inp["states"]), lengths)
            dx, dstate = layer.backward(inp["dy"], pack(cell, inp["dstates"]))
            outs.append((y, unpack_state(cell, state), dx, unpack_state(cell, dstate), snapshot(layer.grads)))
        return outs

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        results = list(pool.map(work, jobs))

    for (cell, _, _, _, (y_r, finals_r, g_r)), outs in zip(jobs, results):
        for y, finals, dx, dinits, grads in outs:
            assert_close(y, y_r, np.float64, f"{cell} y")
            for s, s_r in zip(finals, finals_r):
                assert_close(s[0], s_r, np.float64, f"{cell} final state")
            assert_close(dx, g_r["x"], np.float64, f"{cell} dx")
            for name, d in zip(("h0", "c0"), dinits):
                assert_close(d[0], g_r[name], np.float64, f"{cell} d{name}")
            for k, v in grads.items():
                assert_close(v, g_r[k[: -len("_l0")]], np.float64, f"{cell} grads[{k}]")


# ----------------------------------------------------------------------------------------------
# Documentation and typing
# ----------------------------------------------------------------------------------------------

PUBLIC_OBJECTS = (
    [fusedrnn, functional, reference, fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.no_grad,
     fusedrnn.is_grad_enabled]
    + [getattr(m, f"{c}_{d}") for m in (functional, reference) for c in ("rnn", "lstm", "gru")
       for d in ("forward", "backward")]
    + [getattr(fusedrnn.LSTM, m) for m in ("__call__", "backward", "state_dict", "load_state_dict", "zero_grad",
                                           "train", "eval")]
    + [fusedrnn.GRU.__call__, fusedrnn.RNN.__call__, fusedrnn.GRU.backward, fusedrnn.RNN.backward]
)  # fmt: skip


@pytest.mark.parametrize("obj", PUBLIC_OBJECTS, ids=lambda o: getattr(o, "__qualname__", getattr(o, "__name__", "?")))
def test_public_docstrings(obj: Any) -> None:
    doc = obj.__doc__
    assert doc is not None and len(doc.strip()) >= 20, f"{obj!r} has no real docstring"


def test_docstrings_are_specific() -> None:
    # The classes' own docstrings, not inherited boilerplate; the functions say their shapes.
    assert "LSTM" in fusedrnn.LSTM.__doc__ and "GRU" in fusedrnn.GRU.__doc__
    assert fusedrnn.LSTM.__doc__ != fusedrnn.GRU.__doc__ != fusedrnn.RNN.__doc__
    for fn in (functional.lstm_forward, functional.gru_forward, functional.rnn_forward):
        assert "(T, B, I)" in fn.__doc__ and "(B, H)" in fn.__doc__


def test_package_ships_py_typed() -> None:
    marker = importlib.resources.files("fusedrnn").joinpath("py.typed")
    assert marker.is_file()
