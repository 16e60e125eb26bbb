"""``fusedrnn.jax``: forward and ``jax.grad`` against the NumPy reference, finite differences,
``jit``, ``vmap`` (folded and looped), bad input, and the import guard. Skips without jax.

float64 runs with ``jax_enable_x64`` on, float32 with it off (the JAX default); the ``dtype``
fixture sets the flag for the test and restores it after. Tolerances are conftest's table.
"""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

import fusedrnn.jax as frj  # noqa: E402
from conftest import assert_close, functional, make_problem, reference  # noqa: E402

CASES = ("rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru")


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request: pytest.FixtureRequest) -> Any:
    """The test's dtype; float64 switches ``jax_enable_x64`` on for the test, float32 off."""
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", request.param is np.float64)
    yield np.dtype(request.param)
    jax.config.update("jax_enable_x64", old)


@pytest.fixture
def x64() -> Any:
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


# ----------------------------------------------------------------------------------------------
# Helpers: one problem as a dict of named float64 arrays, run through fusedrnn.jax or reference
# ----------------------------------------------------------------------------------------------


def _problem(
    rng: np.random.Generator, case: str, T: int, B: int, I: int, H: int, *, bias: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """(inputs, output cotangents): float64 arrays. ``lstm_proj`` adds ``weight_hr`` of P = H - 1."""
    cell = "lstm" if case == "lstm_proj" else case
    a = make_problem(rng, cell, T, B, I, H).arrays
    if case == "lstm_proj":
        P, s = H - 1, 1.0 / np.sqrt(H)
        a.update(
            weight_hr=rng.uniform(-s, s, (P, H)), weight_hh=rng.uniform(-s, s, (4 * H, P)),
            h0=rng.standard_normal((B, P)) * 0.5, dy=rng.standard_normal((T, B, P)), dh_n=rng.standard_normal((B, P)),
        )  # fmt: skip
    cot = {"y": a.pop("dy"), "h_n": a.pop("dh_n")}
    if "dc_n" in a:
        cot["c_n"] = a.pop("dc_n")
    if not bias:
        del a["bias_ih"], a["bias_hh"]
    return a, cot


def _run(module: Any, case: str, a: dict[str, Any], **kw: Any) -> tuple[Any, ...]:
    """Forward of ``fusedrnn.jax`` (module=frj) or of ``reference`` (its tape dropped)."""
    lstm = case.startswith("lstm")
    w = (a["weight_ih"], a["weight_hh"], a.get("bias_ih"), a.get("bias_hh"))
    if module is frj:
        if lstm:
            return frj.lstm(a["x"], a["h0"], a["c0"], *w, weight_hr=a.get("weight_hr"), **kw)
        if case == "gru":
            return frj.gru(a["x"], a["h0"], *w, **kw)
        return frj.rnn(a["x"], a["h0"], *w, nonlinearity=case[4:], **kw)
    if lstm:
        return module.lstm_forward(a["x"], a["h0"], a["c0"], *w, weight_hr=a.get("weight_hr"), **kw)
    if case == "gru":
        return module.gru_forward(a["x"], a["h0"], *w, **kw)
    return module.rnn_forward(a["x"], a["h0"], *w, nonlinearity=case[4:], **kw)


def _reference(case: str, a: dict[str, np.ndarray], cot: dict[str, np.ndarray], **kw: Any) -> tuple[Any, Any]:
    """Reference outputs (tuple) and gradients (dict, None entries dropped)."""
    *outs, tape = _run(reference, case, a, **kw)
    back = {"lstm": reference.lstm_backward, "gru": reference.gru_backward}.get(case[:4], reference.rnn_backward)
    grads = back(tape, *cot.values())
    return tuple(outs), {k: v for k, v in grads.items() if v is not None}


def _loss(case: str, cot: dict[str, Any], **kw: Any) -> Any:
    """``params -> sum(y * dy) + sum(h_n * dh_n) (+ sum(c_n * dc_n))``: its gradient is the VJP."""

    def loss(a: dict[str, Any], lengths: Any = None) -> Any:
        outs = _run(frj, case, a, lengths=lengths, **kw)
        return sum(jnp.sum(o * c) for o, c in zip(outs, cot.values()))

    return loss


def _lengths(rng: np.random.Generator, T: int, B: int) -> np.ndarray:
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    if B > 1:
        lengths[1] = 1
    return lengths


# ----------------------------------------------------------------------------------------------
# Against the reference: forward and gradients, every cell, both dtypes
# ----------------------------------------------------------------------------------------------


# One size for most tests: JAX compiles per shape, and its caches then serve every later test.
T_, B_, I_, H_ = 5, 3, 3, 4

VARIANTS = [
    *[pytest.param(np.float64, v, id=f"float64-{v}") for v in ("plain", "lengths_reverse", "lengths_no_bias")],
    pytest.param(np.float32, "lengths_reverse", id="float32-lengths_reverse"),
]


@pytest.mark.parametrize("dtype, variant", VARIANTS, indirect=["dtype"])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference(rng: np.random.Generator, case: str, variant: str, dtype: np.dtype) -> None:
    """Outputs and the gradient of sum(y dy) + sum(h_n dh_n) (+ sum(c_n dc_n)) vs reference's backward."""
    T, B = T_, B_
    a, cot = _problem(rng, case, T, B, I_, H_, bias=not variant.endswith("no_bias"))
    kw: dict[str, Any] = {}
    if variant.startswith("lengths"):
        kw["lengths"] = _lengths(rng, T, B)
        kw["reverse"] = variant == "lengths_reverse"
    ref_outs, ref_grads = _reference(case, a, cot, **kw)
    args = {k: jnp.asarray(v.astype(dtype)) for k, v in a.items()}
    cots = {k: jnp.asarray(v.astype(dtype)) for k, v in cot.items()}

    outs = _run(frj, case, args, **kw)
    assert len(outs) == len(ref_outs)
    for name, out, ref in zip(cot, outs, ref_outs):
        assert out.dtype == dtype, name
        assert_close(out, ref, dtype, name)

    lengths = kw.pop("lengths", None)
    grads = jax.grad(_loss(case, cots, **kw))(args, lengths)
    assert set(grads) == set(ref_grads)
    for name, ref in ref_grads.items():
        assert grads[name].dtype == dtype, name
        assert_close(grads[name], ref, dtype, "d" + name)
    if lengths is not None:  # padding steps pass nothing back to x
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(np.asarray(grads["x"])[pad] == 0)


@pytest.mark.parametrize("case", CASES)
def test_grad_matches_finite_differences(rng: np.random.Generator, case: str, x64: None) -> None:
    """Central differences of the JAX loss along a random direction per argument, float64."""
    a, cot = _problem(rng, case, T_, B_, I_, H_)
    lengths = jnp.asarray(_lengths(rng, T_, B_))
    loss = _loss(case, cot, reverse=True)
    grads = jax.grad(loss)(a, lengths)
    eps = 1e-6
    for name, value in a.items():
        d = rng.standard_normal(value.shape)
        plus, minus = dict(a), dict(a)
        plus[name], minus[name] = value + eps * d, value - eps * d
        fd = (float(loss(plus, lengths)) - float(loss(minus, lengths))) / (2 * eps)
        analytic = float(np.vdot(np.asarray(grads[name]), d))
        assert abs(fd - analytic) <= 1e-7 * (1 + abs(analytic)), f"d{name}: fd {fd!r} vs grad {analytic!r}"


def test_mixed_dtypes_run_in_weight_ih_dtype(rng: np.random.Generator, x64: None) -> None:
    """As fusedrnn.functional: weight_ih's dtype decides; each gradient has its argument's dtype."""
    a, cot = _problem(rng, "gru", T_, B_, I_, H_)
    args = dict(a, x=a["x"].astype(np.float32), h0=a["h0"].astype(np.float32))
    y, h_n = _run(frj, "gru", args)
    assert y.dtype == h_n.dtype == np.float64
    ref_outs, ref_grads = _reference("gru", dict(args), cot)
    assert_close(y, ref_outs[0], np.float64, "y")
    grads = jax.grad(_loss("gru", cot))(args)
    assert grads["x"].dtype == np.float32 and grads["weight_ih"].dtype == np.float64
    assert_close(grads["weight_hh"], ref_grads["weight_hh"], np.float64, "dweight_hh")


@pytest.mark.parametrize("T, B", [(0, 3), (4, 0)])
def test_empty(rng: np.random.Generator, T: int, B: int, x64: None) -> None:
    a, cot = _problem(rng, "lstm", T, B, 3, 4)
    y, h_n, c_n = _run(frj, "lstm", a)
    assert y.shape == (T, B, 4) and h_n.shape == c_n.shape == (B, 4)
    grads = jax.grad(_loss("lstm", cot))(a)
    _, ref_grads = _reference("lstm", a, cot)
    for name, ref in ref_grads.items():
        assert_close(grads[name], ref, np.float64, "d" + name)


# ----------------------------------------------------------------------------------------------
# jit and vmap
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["rnn_relu", "lstm_proj", "gru"])
def test_jit_matches_eager(rng: np.random.Generator, case: str, x64: None) -> None:
    """Under jit, with lengths traced and reverse static: same values and gradients as eager."""
    T, B = T_, B_
    a, cot = _problem(rng, case, T, B, I_, H_)
    lengths = jnp.asarray(_lengths(rng, T, B))
    forward = jax.jit(lambda a, lengths: _run(frj, case, a, lengths=lengths, reverse=True))
    for got, want in zip(forward(a, lengths), _run(frj, case, a, lengths=lengths, reverse=True)):
        assert_close(got, want, np.float64)
    loss = _loss(case, cot, reverse=True)
    value, grads = jax.jit(jax.value_and_grad(loss))(a, lengths)
    assert_close(value, loss(a, lengths), np.float64, "loss")
    _, ref_grads = _reference(case, a, cot, lengths=np.asarray(lengths), reverse=True)
    for name, ref in ref_grads.items():
        assert_close(grads[name], ref, np.float64, "d" + name)


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of ``fusedrnn.functional.<name>`` (the callbacks look it up at call time)."""
    calls: list[int] = []
    original = getattr(functional, name)

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return original(*args, **kw)

    monkeypatch.setattr(functional, name, counted)
    return calls


def test_vmap_shared_weights_is_one_kernel_call(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, x64: None
) -> None:  # fmt: skip
    """vmap over x, the states and lengths with shared weights folds into the batch: one call."""
    V, T, B, I, H = 3, 5, 2, 3, 4
    a, _ = _problem(rng, "lstm", T, B, I, H)
    xs = rng.standard_normal((V, T, B, I))
    c0s = rng.standard_normal((V, B, H))
    lengths = np.stack([_lengths(rng, T, B) for _ in range(V)])

    def f(x: Any, c0: Any, lengths: Any) -> Any:
        return frj.lstm(x, a["h0"], c0, a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"], lengths=lengths)

    calls = _count_calls(monkeypatch, "lstm_forward")
    batched = jax.jit(jax.vmap(f))(xs, c0s, lengths)
    assert len(calls) == 1
    for v in range(V):
        ref = reference.lstm_forward(xs[v], a["h0"], c0s[v], a["weight_ih"], a["weight_hh"], a["bias_ih"],
                                     a["bias_hh"], lengths=lengths[v])  # fmt: skip
        for name, got, want in zip(("y", "h_n", "c_n"), batched, ref[:3]):
            assert got.shape == (V,) + want.shape
            assert_close(got[v], want, np.float64, f"{name}[{v}]")


def test_vmap_mapped_weights_loops(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, x64: None) -> None:
    """vmap over weight_ih too: one kernel call per element, each matching its own problem."""
    V, T, B, I, H = 3, 4, 2, 3, 5
    a, _ = _problem(rng, "rnn_tanh", T, B, I, H)
    xs = rng.standard_normal((V, T, B, I))
    w_ihs = rng.uniform(-0.4, 0.4, (V, H, I))

    def f(x: Any, w_ih: Any) -> Any:
        return frj.rnn(x, a["h0"], w_ih, a["weight_hh"], a["bias_ih"], a["bias_hh"], reverse=True)

    calls = _count_calls(monkeypatch, "rnn_forward")
    ys, hs = jax.vmap(f)(xs, w_ihs)
    assert len(calls) == V
    for v in range(V):
        y, h_n, _ = reference.rnn_forward(xs[v], a["h0"], w_ihs[v], a["weight_hh"], a["bias_ih"], a["bias_hh"],
                                          reverse=True)  # fmt: skip
        assert_close(ys[v], y, np.float64, "y")
        assert_close(hs[v], h_n, np.float64, "h_n")


def test_vmap_of_grad_gives_per_example_gradients(rng: np.random.Generator, x64: None) -> None:
    """vmap(grad) over examples (x and lengths) with shared weights: each example's own gradients."""
    V, T, B, I, H = 3, 4, 2, 3, 4
    a, cot = _problem(rng, "gru", T, B, I, H)
    xs = rng.standard_normal((V, T, B, I))
    lengths = np.stack([_lengths(rng, T, B) for _ in range(V)])
    loss = _loss("gru", cot)
    params = {k: v for k, v in a.items() if k != "x"}
    grad = jax.grad(lambda p, x, n: loss(dict(p, x=x), n), argnums=(0, 1))
    dparams, dxs = jax.jit(jax.vmap(grad, in_axes=(None, 0, 0)))(params, xs, lengths)
    per_example = dict(dparams, x=dxs)
    for v in range(V):
        _, ref = _reference("gru", dict(a, x=xs[v]), cot, lengths=lengths[v])
        for name, want in ref.items():
            assert_close(per_example[name][v], want, np.float64, f"d{name}[{v}]")
    # and the gradient of the summed loss is their sum
    total = jax.jit(jax.grad(lambda p: jnp.sum(jax.vmap(lambda x, n: loss(dict(p, x=x), n))(xs, lengths))))(params)
    assert_close(total["weight_hh"], np.sum(per_example["weight_hh"], axis=0), np.float64, "dweight_hh")


def test_nested_vmap(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, x64: None) -> None:
    """Two vmap levels (one over x, one over h0): still folded into one call, still right."""
    V1, V2, T, B, I, H = 2, 3, 3, 2, 2, 3
    a, _ = _problem(rng, "lstm_proj", T, B, I, H)
    xs = rng.standard_normal((V1, T, B, I))
    h0s = rng.standard_normal((V2, B, H - 1))

    def f(x: Any, h0: Any) -> Any:
        return frj.lstm(x, h0, a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"],
                        weight_hr=a["weight_hr"])  # fmt: skip

    calls = _count_calls(monkeypatch, "lstm_forward")
    ys, _, _ = jax.vmap(jax.vmap(f, in_axes=(None, 0)), in_axes=(0, None))(xs, h0s)
    assert len(calls) == 1 and ys.shape == (V1, V2, T, B, H - 1)
    for i in range(V1):
        for j in range(V2):
            y = reference.lstm_forward(xs[i], h0s[j], a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"],
                                       a["bias_hh"], weight_hr=a["weight_hr"])[0]  # fmt: skip
            assert_close(ys[i, j], y, np.float64, f"y[{i},{j}]")


# ----------------------------------------------------------------------------------------------
# Bad input: raised while tracing, naming the argument
# ----------------------------------------------------------------------------------------------

T0, B0, I0, H0 = 3, 2, 4, 5

BAD = {
    "x_ndim": ("x", np.zeros((B0, I0)), ValueError, r"x must have shape \(T, B, 4\)"),
    "x_int": ("x", np.zeros((T0, B0, I0), np.int32), TypeError, "x must be a floating-point array"),
    "x_str": ("x", "abc", TypeError, "x must be a floating-point array"),
    "h0_shape": ("h0", np.zeros((B0, H0 + 1)), ValueError, r"h0 must have shape \(2, 5\)"),
    "c0_shape": ("c0", np.zeros((B0 + 1, H0)), ValueError, r"c0 must have shape \(2, 5\)"),
    "weight_ih_rows": ("weight_ih", np.zeros((4 * H0 + 1, I0)), ValueError, "weight_ih must have shape"),
    "weight_hh_shape": ("weight_hh", np.zeros((4 * H0, H0 + 1)), ValueError, r"weight_hh must have shape \(20, 5\)"),
    "weight_ih_float16": ("weight_ih", np.zeros((4 * H0, I0), np.float16), TypeError, "float32 or float64"),
    "bias_ih_shape": ("bias_ih", np.zeros(4 * H0 + 1), ValueError, r"bias_ih must have shape \(20,\)"),
    "bias_hh_only": ("bias_ih", None, ValueError, "bias_ih and bias_hh must both be"),
    "weight_hr_shape": ("weight_hr", np.zeros((H0, H0)), ValueError, "weight_hr must have shape"),
    "lengths_float": ("lengths", np.array([1.0, 2.0]), TypeError, "lengths must be an integer array"),
    "lengths_shape": ("lengths", np.array([1, 2, 3]), ValueError, r"lengths must have shape \(2,\)"),
    "lengths_range": ("lengths", np.array([0, 3]), ValueError, r"lengths must lie in \[1, 3\]"),
    "reverse_int": ("reverse", 1, TypeError, "reverse must be a bool"),
}


def _lstm_args() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((T0, B0, I0)), "h0": np.zeros((B0, H0)), "c0": np.zeros((B0, H0)),
        "weight_ih": rng.standard_normal((4 * H0, I0)), "weight_hh": rng.standard_normal((4 * H0, H0)),
        "bias_ih": np.zeros(4 * H0), "bias_hh": np.zeros(4 * H0),
    }  # fmt: skip


def _call_lstm(kw: dict[str, Any]) -> Any:
    return frj.lstm(kw.pop("x"), kw.pop("h0"), kw.pop("c0"), kw.pop("weight_ih"), kw.pop("weight_hh"),
                    kw.pop("bias_ih"), kw.pop("bias_hh"), **kw)  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_the_argument(case: str) -> None:
    name, value, exc, match = BAD[case]
    kw = _lstm_args()
    kw[name] = value
    with pytest.raises(exc, match=match):
        _call_lstm(kw)


def test_bad_nonlinearity() -> None:
    a = _lstm_args()
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        frj.rnn(a["x"], a["h0"], a["weight_ih"][:H0], a["weight_hh"][:H0, :], nonlinearity="sigmoid")


def test_bad_shapes_raise_while_tracing_under_jit() -> None:
    """Shapes are static: the ValueError comes from tracing, before anything runs."""
    kw = _lstm_args()
    kw["h0"] = np.zeros((B0 + 1, H0))
    with pytest.raises(ValueError, match="h0 must have shape"):
        jax.jit(lambda kw: _call_lstm(dict(kw)))(kw)
    kw = _lstm_args()
    with pytest.raises(TypeError, match="reverse must be a bool"):
        jax.jit(lambda kw, r: _call_lstm(dict(kw, reverse=r)))(kw, True)


def test_traced_lengths_out_of_range_fail_at_run_time() -> None:
    """A traced lengths' values are known only when it runs: the callback's error reaches the caller."""
    kw = _lstm_args()
    f = jax.jit(lambda kw, lengths: _call_lstm(dict(kw, lengths=lengths)))
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"lengths must lie in \[1, 3\]"):
        jax.block_until_ready(f(kw, jnp.asarray([4, 1])))


# ----------------------------------------------------------------------------------------------
# Structure: the Tape fields the callbacks carry, and jax staying optional
# ----------------------------------------------------------------------------------------------


def test_callbacks_cover_every_tape_field() -> None:
    """Every field of functional.Tape is either a residual or rebuilt from the inputs."""
    fields = {f.name for f in dataclasses.fields(functional.Tape)}
    assert fields == set(frj._RESIDUALS) | set(frj._REBUILT)
    assert not set(frj._RESIDUALS) & set(frj._REBUILT)


def test_import_without_jax_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jax", None)  # makes `import jax` raise ImportError
    monkeypatch.delitem(sys.modules, "fusedrnn.jax")
    with pytest.raises(ImportError, match=r'pip install "fusedrnn\[jax\]"'):
        importlib.import_module("fusedrnn.jax")


def test_import_fusedrnn_does_not_import_jax() -> None:
    code = "import sys, fusedrnn; assert 'jax' not in sys.modules, 'fusedrnn imported jax'"
    subprocess.run([sys.executable, "-c", code], check=True)
