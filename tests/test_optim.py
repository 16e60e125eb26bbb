"""``fusedrnn.optim`` (SGD, Adam, AdamW) and ``fusedrnn.clip_grad_norm_`` / ``clip_grad_value_``.

Without torch: every update rule is checked against literal numbers worked out by hand (two
steps on two-element arrays) and against the textbook rule written out below (several steps on
random float64 arrays); the clipping functions against the norms computed here with NumPy; and
the optimizer's contract (in-place updates of a layer's own arrays, ``step()`` / ``step(grads)``,
``zero_grad``, argument errors).

With torch: a fusedrnn layer and a ``torch.nn`` module holding the same weights are trained for
a few steps on the same fresh random data with each optimizer configuration, clipping the
gradients before each step; parameters, clipped gradients and returned total norms must agree to
float64 rounding (1e-10 normwise relative) or float32 rounding (1e-5 for the parameters).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import numpy as np
import pytest

import fusedrnn
from conftest import assert_close
from fusedrnn import optim

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

INF = float("inf")


# ----------------------------------------------------------------------------------------------
# Helpers: the textbook update rules (torch.optim's documented algorithms), written independently
# ----------------------------------------------------------------------------------------------


def sgd_textbook(p0: np.ndarray, grads: list[np.ndarray], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> np.ndarray:  # fmt: skip
    """theta_t = theta_{t-1} - lr * d_t, with d_t the (decayed, momentum, Nesterov) gradient."""
    theta = p0.copy()
    b = None
    for g in grads:
        g_t = (-1.0 if maximize else 1.0) * g + weight_decay * theta
        if momentum != 0.0:
            b = g_t.copy() if b is None else momentum * b + (1.0 - dampening) * g_t  # b_1 = g_1 (no dampening)
            g_t = g_t + momentum * b if nesterov else b
        theta = theta - lr * g_t
    return theta


def adam_textbook(p0: np.ndarray, grads: list[np.ndarray], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                  eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
                  decoupled: bool = False) -> np.ndarray:  # fmt: skip
    """Adam (L2 decay added to the gradient) or AdamW (decoupled decay), torch.optim's algorithm.

    amsgrad keeps the running maximum of the raw second moment v_t and bias-corrects it with the
    current step (what torch computes).
    """
    b1, b2 = betas
    theta = p0.copy()
    m = np.zeros_like(p0)
    v = np.zeros_like(p0)
    v_max = np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        g_t = -g if maximize else g.copy()
        if decoupled:
            theta = theta * (1.0 - lr * weight_decay)
        else:
            g_t = g_t + weight_decay * theta
        m = b1 * m + (1.0 - b1) * g_t
        v = b2 * v + (1.0 - b2) * g_t**2
        v_max = np.maximum(v_max, v)
        m_hat = m / (1.0 - b1**t)
        v_hat = (v_max if amsgrad else v) / (1.0 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual - expected| / max|expected| (normwise relative error)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def random_arrays(rng: np.random.Generator, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    return {
        "weight": rng.standard_normal((3, 4)).astype(dtype),
        "bias": rng.standard_normal(5).astype(dtype),
        "scalar": rng.standard_normal(()).astype(dtype),
    }


def lstm_after_backward(rng: np.random.Generator, dtype: Any = np.float64, **kw: Any) -> Any:
    """A small fusedrnn.LSTM whose ``grads`` hold a fresh backward."""
    layer = fusedrnn.LSTM(3, 4, dtype=dtype, seed=int(rng.integers(2**31)), **kw)
    x = rng.standard_normal((5, 2, 3)).astype(dtype)
    y, _ = layer(x)
    layer.backward(rng.standard_normal(y.shape).astype(dtype))
    for g in layer.grads.values():
        assert np.all(np.isfinite(g)) and np.any(g != 0)
    return layer


P0 = np.array([1.0, -2.0])
G1 = np.array([0.5, 1.0])
G2 = np.array([-1.0, 0.25])


def two_steps(opt_cls: Any, g1: np.ndarray = G1, g2: np.ndarray = G2, p0: np.ndarray = P0,
              **kw: Any) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    params = {"p": p0.copy()}
    opt = opt_cls(params, **kw)
    opt.step({"p": g1.copy()})
    p1 = params["p"].copy()
    opt.step({"p": g2.copy()})
    return p1, params["p"].copy()


# ----------------------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------------------

# p0 = [1, -2], g1 = [0.5, 1], g2 = [-1, 0.25], lr = 0.1; the values after step 1 and step 2.
SGD_LITERALS = {
    # p -= 0.1 g
    "plain": ({}, [0.95, -2.1], [1.05, -2.125]),
    # b1 = g1; b2 = 0.9 g1 + 0.5 g2 = [-0.05, 1.025]
    "momentum_dampening": ({"momentum": 0.9, "dampening": 0.5}, [0.95, -2.1], [0.955, -2.2025]),
    # d1 = g1 + 0.9 g1; b2 = 0.9 g1 + g2 = [-0.55, 1.15], d2 = g2 + 0.9 b2 = [-1.495, 1.285]
    "nesterov": ({"momentum": 0.9, "nesterov": True}, [0.905, -2.19], [1.0545, -2.3185]),
    # d1 = g1 + 0.5 p0 = [1, 0]; d2 = g2 + 0.5 p1 = [-0.55, -0.75]
    "weight_decay": ({"weight_decay": 0.5}, [0.9, -2.0], [0.955, -1.925]),
    # p += 0.1 g
    "maximize": ({"maximize": True}, [1.05, -1.9], [0.95, -1.875]),
    # d1 = -g1 + 0.5 p0 = [0, -2] = b1; d2 = -g2 + 0.5 p1 = [1.5, -1.15], b2 = 0.5 b1 + d2 = [1.5, -2.15]
    "maximize_momentum_decay": ({"momentum": 0.5, "weight_decay": 0.5, "maximize": True}, [1.0, -1.8], [0.85, -1.585]),
}


@pytest.mark.parametrize("case", list(SGD_LITERALS))
def test_sgd_hand_computed_two_steps(case: str) -> None:
    kw, p1, p2 = SGD_LITERALS[case]
    got1, got2 = two_steps(optim.SGD, lr=0.1, **kw)
    np.testing.assert_allclose(got1, p1, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got2, p2, rtol=1e-14, atol=1e-15)


SGD_CONFIGS = {
    "plain": {"lr": 0.05},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "dampening": {"lr": 0.05, "momentum": 0.7, "dampening": 0.25},
    "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "weight_decay": {"lr": 0.05, "weight_decay": 0.1},
    "maximize": {"lr": 0.05, "maximize": True},
    "all": {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.2, "nesterov": True, "maximize": True},
}


@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_matches_textbook_rule(config: str, rng: np.random.Generator) -> None:
    kw = SGD_CONFIGS[config]
    params = random_arrays(rng)
    p0 = {k: v.copy() for k, v in params.items()}
    history: dict[str, list[np.ndarray]] = {k: [] for k in params}
    opt = optim.SGD(params, **kw)
    grads = {k: np.empty_like(v) for k, v in params.items()}  # reused in place: no aliasing allowed
    for _ in range(4):
        for k, g in grads.items():
            g[...] = rng.standard_normal(g.shape)
            history[k].append(g.copy())
        opt.step(grads)
        for k, g in grads.items():
            np.testing.assert_array_equal(g, history[k][-1], err_msg=f"step() modified grads[{k!r}]")
    for k, v in params.items():
        np.testing.assert_allclose(v, sgd_textbook(p0[k], history[k], **kw), rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------------------------
# Adam / AdamW
# ----------------------------------------------------------------------------------------------


def test_adam_hand_computed_first_step() -> None:
    # step 1: m_hat = g, v_hat = g^2, so p1 = p0 - lr g / (|g| + eps)
    lr, eps = 0.1, 1e-8
    got, _ = two_steps(optim.Adam, lr=lr, eps=eps)
    np.testing.assert_allclose(got, [1.0 - 0.1 * 0.5 / (0.5 + eps), -2.0 - 0.1 * 1.0 / (1.0 + eps)], rtol=1e-14)
    # L2 weight decay: g' = g + 0.5 p0 = [1.0, 0.0]: the second element does not move
    got, _ = two_steps(optim.Adam, lr=lr, eps=eps, weight_decay=0.5)
    np.testing.assert_allclose(got, [1.0 - 0.1 * 1.0 / (1.0 + eps), -2.0], rtol=1e-14)
    # decoupled decay: p0 (1 - 0.1 * 0.5), then the plain Adam step
    got, _ = two_steps(optim.AdamW, lr=lr, eps=eps, weight_decay=0.5)
    np.testing.assert_allclose(got, [0.95 - 0.1 * 0.5 / (0.5 + eps), -1.9 - 0.1 * 1.0 / (1.0 + eps)], rtol=1e-14)
    # maximize: the step goes up the gradient
    got, _ = two_steps(optim.Adam, lr=lr, eps=eps, maximize=True)
    np.testing.assert_allclose(got, [1.0 + 0.1 * 0.5 / (0.5 + eps), -2.0 + 0.1 * 1.0 / (1.0 + eps)], rtol=1e-14)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_hand_computed_second_step_amsgrad(amsgrad: bool) -> None:
    # betas (0.5, 0.5), eps 0, lr 0.1, g1 = 4, g2 = 1:
    #   m1 = 2, v1 = 8, m_hat = 4, v_hat = 16: p1 = p0 - 0.1
    #   m2 = 1.5, v2 = 4.5 < v1; m_hat = 1.5 / 0.75 = 2
    #   plain: v_hat = 4.5 / 0.75 = 6;       p2 = p1 - 0.2 / sqrt(6)
    #   amsgrad: v_hat = max(8, 4.5) / 0.75; p2 = p1 - 0.2 / sqrt(32 / 3)
    p1, p2 = two_steps(optim.Adam, np.array([4.0]), np.array([1.0]), np.array([1.0]),
                       lr=0.1, betas=(0.5, 0.5), eps=0.0, amsgrad=amsgrad)  # fmt: skip
    np.testing.assert_allclose(p1, [0.9], rtol=1e-15)
    expected = 0.9 - 0.2 / math.sqrt(32.0 / 3.0 if amsgrad else 6.0)
    np.testing.assert_allclose(p2, [expected], rtol=1e-14)


ADAM_CONFIGS = {
    "adam": ("Adam", {"lr": 0.01}),
    "adam_betas_eps": ("Adam", {"lr": 0.02, "betas": (0.5, 0.6), "eps": 1e-3}),
    "adam_amsgrad": ("Adam", {"lr": 0.01, "betas": (0.8, 0.7), "amsgrad": True}),
    "adam_weight_decay": ("Adam", {"lr": 0.01, "weight_decay": 0.3}),
    "adam_all": ("Adam", {"lr": 0.01, "betas": (0.7, 0.8), "weight_decay": 0.3, "amsgrad": True, "maximize": True}),
    "adamw": ("AdamW", {"lr": 0.01}),  # default weight_decay 1e-2
    "adamw_decay": ("AdamW", {"lr": 0.05, "weight_decay": 0.5}),
    "adamw_all": ("AdamW", {"lr": 0.05, "betas": (0.6, 0.7), "weight_decay": 0.5, "amsgrad": True, "maximize": True}),
}


@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_matches_textbook_rule(config: str, rng: np.random.Generator) -> None:
    cls_name, kw = ADAM_CONFIGS[config]
    decoupled = cls_name == "AdamW"
    ref_kw = dict(kw)
    if decoupled:
        ref_kw.setdefault("weight_decay", 1e-2)
    params = random_arrays(rng)
    p0 = {k: v.copy() for k, v in params.items()}
    history: dict[str, list[np.ndarray]] = {k: [] for k in params}
    opt = getattr(optim, cls_name)(params, **kw)
    grads = {k: np.empty_like(v) for k, v in params.items()}
    for step in range(5):
        for k, g in grads.items():
            # shrinking gradients in the later steps, so that v_t falls and amsgrad's maximum matters
            g[...] = rng.standard_normal(g.shape) * (3.0 if step < 2 else 0.3)
            history[k].append(g.copy())
        opt.step(grads)
        for k, g in grads.items():
            np.testing.assert_array_equal(g, history[k][-1], err_msg=f"step() modified grads[{k!r}]")
    for k, v in params.items():
        expected = adam_textbook(p0[k], history[k], decoupled=decoupled, **ref_kw)
        np.testing.assert_allclose(v, expected, rtol=1e-12, atol=1e-14, err_msg=k)


def test_adam_amsgrad_differs_from_adam(rng: np.random.Generator) -> None:
    # the gradients shrink, so the maximum of v_t is not the latest v_t: the two must differ
    results = []
    for amsgrad in (False, True):
        params = {"p": np.ones(4)}
        opt = optim.Adam(params, lr=0.1, betas=(0.5, 0.5), amsgrad=amsgrad)
        for scale in (4.0, 1.0, 0.5):
            opt.step({"p": np.full(4, scale)})
        results.append(params["p"].copy())
    assert np.all(results[0] < results[1])  # smaller steps with amsgrad's larger denominator


@pytest.mark.parametrize("cls_name,kw", [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
])  # fmt: skip
def test_float32_parameters_stay_float32(cls_name: str, kw: dict[str, Any], rng: np.random.Generator) -> None:
    params = random_arrays(rng, np.float32)
    p0 = {k: v.astype(np.float64) for k, v in params.items()}
    ids = {k: id(v) for k, v in params.items()}
    opt = getattr(optim, cls_name)(params, **kw)
    history: dict[str, list[np.ndarray]] = {k: [] for k in params}
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        for k, g in grads.items():
            history[k].append(g.astype(np.float64))
        opt.step(grads)
    for k, v in params.items():
        assert id(v) == ids[k] and v.dtype == np.float32
        if cls_name == "SGD":
            expected = sgd_textbook(p0[k], history[k], **kw)
        else:
            expected = adam_textbook(p0[k], history[k], decoupled=cls_name == "AdamW", **kw)
        assert rel_err(v, expected) < 1e-5, k


# ----------------------------------------------------------------------------------------------
# The optimizer's contract: in-place updates, step() / step(grads), zero_grad, argument errors
# ----------------------------------------------------------------------------------------------


def test_step_reads_layer_grads_and_updates_in_place(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng)
    sd = layer.state_dict()
    before = {k: v.copy() for k, v in sd.items()}
    grads = {k: g.copy() for k, g in layer.grads.items()}
    opt = optim.SGD(layer, lr=0.1)
    opt.step()
    after = layer.state_dict()
    assert set(after) == set(sd)
    for k, v in after.items():
        assert v is sd[k], f"{k}: step() replaced the array instead of updating it in place"
        np.testing.assert_allclose(v, before[k] - 0.1 * grads[k], rtol=1e-15, atol=1e-16, err_msg=k)
        np.testing.assert_array_equal(layer.grads[k], grads[k])
    # the next forward uses the updated weights
    x = rng.standard_normal((3, 2, 3))
    y_new, _ = layer(x)
    layer.load_state_dict(before)
    y_old, _ = layer(x)
    assert not np.allclose(y_new, y_old)


def test_optimizer_on_state_dict_updates_layer(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng)
    sd = layer.state_dict()
    before = {k: v.copy() for k, v in sd.items()}
    opt = optim.Adam(sd, lr=0.01)
    with pytest.raises(ValueError):
        opt.step()  # arrays, not layers: step() needs grads
    opt.step(layer.grads)
    for k, v in layer.state_dict().items():
        assert v is sd[k]
        expected = adam_textbook(before[k], [layer.grads[k]], lr=0.01)
        np.testing.assert_allclose(v, expected, rtol=1e-13, atol=1e-15, err_msg=k)


def test_step_with_explicit_grads_overrides_layer_grads(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    explicit = {k: rng.standard_normal(v.shape) for k, v in before.items()}
    opt = optim.SGD(layer, lr=0.25, momentum=0.5)
    opt.step(explicit)
    for k, v in layer.state_dict().items():
        np.testing.assert_allclose(v, before[k] - 0.25 * explicit[k], rtol=1e-15, atol=1e-16, err_msg=k)


def test_list_of_layers_and_mappings(rng: np.random.Generator) -> None:
    a = lstm_after_backward(rng)
    b = lstm_after_backward(rng, num_layers=2)
    extra = {"w": rng.standard_normal((2, 2))}
    snap = {("a", k): v.copy() for k, v in a.state_dict().items()}
    snap.update({("b", k): v.copy() for k, v in b.state_dict().items()})
    opt = optim.SGD([a, b], lr=0.5)
    opt.step()
    for (which, k), v0 in snap.items():
        layer = a if which == "a" else b
        np.testing.assert_allclose(layer.state_dict()[k], v0 - 0.5 * layer.grads[k], rtol=1e-15, atol=1e-16)
    # mappings in a list: step(grads) looks every name up in the one grads mapping
    w0 = extra["w"].copy()
    other = {"v": np.ones(3)}
    opt = optim.SGD([extra, other], lr=0.5)
    opt.step({"w": np.ones((2, 2)), "v": np.full(3, 2.0)})
    np.testing.assert_allclose(extra["w"], w0 - 0.5, rtol=1e-15)
    np.testing.assert_array_equal(other["v"], np.zeros(3))


def test_zero_grad(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng)
    grad_ids = {k: id(g) for k, g in layer.grads.items()}
    opt = optim.Adam(layer)
    opt.zero_grad()
    for k, g in layer.grads.items():
        assert id(g) == grad_ids[k]
        np.testing.assert_array_equal(g, np.zeros_like(g), err_msg=k)
    # with zero gradients Adam does not move the parameters
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    opt.step()
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    optim.SGD({"w": np.ones(2)}).zero_grad()  # nothing to zero: no error


@pytest.mark.parametrize("cls_name,kw", [
    ("SGD", {"lr": -0.1}),
    ("SGD", {"lr": 0.1, "momentum": -0.5}),
    ("SGD", {"lr": 0.1, "weight_decay": -1e-3}),
    ("SGD", {"lr": 0.1, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("Adam", {"lr": -1e-3}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, 1.0)}),
    ("Adam", {"betas": (-0.1, 0.999)}),
    ("Adam", {"betas": (0.9, -1e-3)}),
    ("Adam", {"eps": -1e-8}),
    ("Adam", {"weight_decay": -0.1}),
    ("AdamW", {"lr": -1e-3}),
    ("AdamW", {"betas": (0.9, 1.5)}),
    ("AdamW", {"weight_decay": -0.01}),
])  # fmt: skip
def test_bad_hyperparameters(cls_name: str, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        getattr(optim, cls_name)({"w": np.ones(3)}, **kw)


@pytest.mark.parametrize("grads", [
    {},
    {"w": np.ones(3)},  # "b" missing
    {"w": np.ones(4), "b": np.ones(2)},
    {"w": np.ones((3, 1)), "b": np.ones(2)},
    {"w": np.ones(3), "b": np.ones(())},
])  # fmt: skip
@pytest.mark.parametrize("cls_name", ["SGD", "Adam", "AdamW"])
def test_bad_grads(cls_name: str, grads: dict[str, np.ndarray]) -> None:
    params = {"w": np.zeros(3), "b": np.zeros(2)}
    opt = getattr(optim, cls_name)(params, lr=0.1)
    with pytest.raises(ValueError):
        opt.step(grads)


@pytest.mark.parametrize("params,exc", [
    (np.ones(3), TypeError),
    ("weights", TypeError),
    (3.0, TypeError),
    ([1.0, 2.0], TypeError),
    ({"w": [1.0, 2.0]}, TypeError),
    ({"w": np.arange(3)}, TypeError),
    ({"w": 1.0}, TypeError),
    ({}, ValueError),
    ([], ValueError),
])  # fmt: skip
@pytest.mark.parametrize("cls_name", ["SGD", "Adam", "AdamW"])
def test_bad_params(cls_name: str, params: Any, exc: type) -> None:
    with pytest.raises(exc):
        getattr(optim, cls_name)(params, lr=0.1)


# ----------------------------------------------------------------------------------------------
# Gradient clipping
# ----------------------------------------------------------------------------------------------


def total_norm(arrays: list[np.ndarray], norm_type: float) -> float:
    flat = np.concatenate([np.ravel(a).astype(np.float64) for a in arrays])
    if norm_type == INF:
        return float(np.max(np.abs(flat)))
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


@pytest.mark.parametrize("norm_type", [2.0, INF, 1.0, 3.0])
def test_clip_grad_norm_scales_above_max_norm(norm_type: float, rng: np.random.Generator) -> None:
    grads = random_arrays(rng)
    ids = {k: id(v) for k, v in grads.items()}
    before = {k: v.copy() for k, v in grads.items()}
    total = total_norm(list(before.values()), norm_type)
    max_norm = 0.4 * total
    got = fusedrnn.clip_grad_norm_(grads, max_norm, norm_type=norm_type)
    assert isinstance(got, float)
    assert got == pytest.approx(total, rel=1e-13)
    coef = max_norm / (total + 1e-6)
    for k, v in grads.items():
        assert id(v) == ids[k] and v.dtype == np.float64
        np.testing.assert_allclose(v, before[k] * coef, rtol=1e-14, atol=1e-16, err_msg=k)
    assert total_norm(list(grads.values()), norm_type) == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, INF, 1.0])
def test_clip_grad_norm_below_max_norm_leaves_grads(norm_type: float, rng: np.random.Generator) -> None:
    grads = random_arrays(rng)
    before = {k: v.copy() for k, v in grads.items()}
    total = total_norm(list(before.values()), norm_type)
    got = fusedrnn.clip_grad_norm_(grads, total + 1e-3, norm_type)
    assert got == pytest.approx(total, rel=1e-13)
    for k, v in grads.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # max_norm == total still scales, by total / (total + 1e-6), as torch does
    fusedrnn.clip_grad_norm_(grads, total, norm_type)
    for k, v in grads.items():
        np.testing.assert_allclose(v, before[k] * (total / (total + 1e-6)), rtol=1e-14, atol=1e-16, err_msg=k)
        assert np.all(np.abs(v) <= np.abs(before[k]))


def test_clip_grad_norm_on_layer(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng, num_layers=2)
    ids = {k: id(g) for k, g in layer.grads.items()}
    before = {k: g.copy() for k, g in layer.grads.items()}
    total = total_norm(list(before.values()), 2.0)
    got = fusedrnn.clip_grad_norm_(layer, 0.5 * total)
    assert got == pytest.approx(total, rel=1e-13)
    for k, g in layer.grads.items():
        assert id(g) == ids[k]
        np.testing.assert_allclose(g, before[k] * (0.5 * total / (total + 1e-6)), rtol=1e-14, atol=1e-16, err_msg=k)
    # the same through the grads mapping itself
    got = fusedrnn.clip_grad_norm_(layer.grads, INF)
    assert got == pytest.approx(0.5 * total * total / (total + 1e-6), rel=1e-12)


def test_clip_grad_norm_on_float32_layer(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng, np.float32)
    before = {k: g.astype(np.float64) for k, g in layer.grads.items()}
    total = total_norm(list(before.values()), 2.0)
    got = fusedrnn.clip_grad_norm_(layer, 0.25 * total)
    assert got == pytest.approx(total, rel=1e-6)
    for k, g in layer.grads.items():
        assert g.dtype == np.float32
        assert rel_err(g, before[k] * 0.25) < 1e-6, k


def test_clip_grad_norm_list_of_dicts(rng: np.random.Generator) -> None:
    a, b = random_arrays(rng), {"other": rng.standard_normal((2, 6))}
    before = [v.copy() for v in [*a.values(), *b.values()]]
    total = total_norm(before, 2.0)
    got = fusedrnn.clip_grad_norm_([a, b], 1.0)
    assert got == pytest.approx(total, rel=1e-13)
    assert total > 1.0
    for v, v0 in zip([*a.values(), *b.values()], before):
        np.testing.assert_allclose(v, v0 / (total + 1e-6), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("norm_type", [2.0, INF, 1.0])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_error_if_nonfinite(bad: float, norm_type: float, rng: np.random.Generator) -> None:
    grads = random_arrays(rng)
    grads["bias"][2] = bad
    before = {k: v.copy() for k, v in grads.items()}
    with pytest.raises(RuntimeError):
        fusedrnn.clip_grad_norm_(grads, 1.0, norm_type, error_if_nonfinite=True)
    for k, v in grads.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # raised before touching anything
    # finite gradients: no error with the flag on
    finite = random_arrays(rng)
    assert np.isfinite(fusedrnn.clip_grad_norm_(finite, 1.0, norm_type, error_if_nonfinite=True))


@pytest.mark.parametrize("norm_type", [2.0, INF, 1.0])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_values_as_torch(bad: float, norm_type: float, rng: np.random.Generator) -> None:
    # torch: total NaN -> every gradient NaN; total inf -> coef 0, finite entries 0, the inf entry 0 * inf = NaN
    grads = random_arrays(rng)
    grads["bias"][2] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # values only; the warning is checked below
        got = fusedrnn.clip_grad_norm_(grads, 1.0, norm_type)
    if np.isnan(bad):
        assert np.isnan(got)
        for k, v in grads.items():
            assert np.all(np.isnan(v)), k
    else:
        assert got == INF
        assert np.isnan(grads["bias"][2])
        grads["bias"][2] = 0.0
        for k, v in grads.items():
            np.testing.assert_array_equal(v, np.zeros_like(v), err_msg=k)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_raises_no_warning(bad: float, rng: np.random.Generator) -> None:
    # torch returns the non-finite norm silently; with filterwarnings=error any NumPy warning fails here
    grads = random_arrays(rng)
    grads["weight"][1, 1] = bad
    got = fusedrnn.clip_grad_norm_(grads, 1.0)
    assert not np.isfinite(got)


def test_clip_grad_value_clamps_in_place(rng: np.random.Generator) -> None:
    grads = random_arrays(rng)
    for v in grads.values():
        v *= 2.0  # in place: keeps the 0-d entry an array
    ids = {k: id(v) for k, v in grads.items()}
    before = {k: v.copy() for k, v in grads.items()}
    assert any(np.any(np.abs(v) > 0.75) for v in before.values())
    assert fusedrnn.clip_grad_value_(grads, 0.75) is None
    for k, v in grads.items():
        assert id(v) == ids[k]
        np.testing.assert_array_equal(v, np.minimum(np.maximum(before[k], -0.75), 0.75), err_msg=k)


def test_clip_grad_value_on_layer_and_list(rng: np.random.Generator) -> None:
    layer = lstm_after_backward(rng, np.float32)
    extra = {"w": rng.standard_normal((4, 4)).astype(np.float32)}
    before = [g.copy() for g in [*layer.grads.values(), extra["w"]]]
    v = 0.5 * float(np.max(np.abs(before[0])))
    fusedrnn.clip_grad_value_([layer, extra], v)
    for g, g0 in zip([*layer.grads.values(), extra["w"]], before):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, np.clip(g0, np.float32(-v), np.float32(v)))
    assert np.max(np.abs(layer.grads["weight_ih_l0"])) == np.float32(v)


# ----------------------------------------------------------------------------------------------
# Parity with torch.optim and torch.nn.utils: a few training steps on the same data
# ----------------------------------------------------------------------------------------------

# (optimizer class, keyword arguments, clip_grad_norm_ (max_norm, norm_type) or None, clip_grad_value_ or None)
TRAIN_CONFIGS = {
    "sgd_nesterov_decay": (
        "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, (1.0, 2.0), None,
    ),
    "sgd_dampening_maximize": (
        "SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05, "maximize": True}, None, 0.05,
    ),
    "adam_amsgrad_decay": (
        "Adam", {"lr": 0.01, "betas": (0.8, 0.9), "amsgrad": True, "weight_decay": 0.02}, (0.3, INF), None,
    ),
    "adamw": ("AdamW", {"lr": 0.01, "weight_decay": 0.1}, (5.0, 1.0), None),
    "adamw_amsgrad_maximize": (
        "AdamW",
        {"lr": 0.02, "betas": (0.85, 0.95), "eps": 1e-6, "weight_decay": 0.05, "amsgrad": True, "maximize": True},
        (2.0, 2.0), 0.3,
    ),
}  # fmt: skip

PARAM_RTOL = {np.float64: 1e-10, np.float32: 1e-5}
NORM_RTOL = {np.float64: 1e-10, np.float32: 1e-5}
STEPS = 5


@pytest.fixture
def torch() -> Any:
    """torch, run on one thread for these tiny problems (and restored after)."""
    import torch as torch_module

    threads = torch_module.get_num_threads()
    torch_module.set_num_threads(1)
    yield torch_module
    torch_module.set_num_threads(threads)


def make_modules(torch: Any, cell: str, dtype: Any, seed: int) -> tuple[Any, Any]:
    I, H = 5, 6
    if cell == "lstm":
        layer = fusedrnn.LSTM(I, H, num_layers=2, dtype=dtype, seed=seed)
        m = torch.nn.LSTM(I, H, num_layers=2)
    else:
        layer = fusedrnn.GRU(I, H, bidirectional=True, dtype=dtype, seed=seed)
        m = torch.nn.GRU(I, H, bidirectional=True)
    m = m.double() if dtype == np.float64 else m.float()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    for k, p in m.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), layer.state_dict()[k], strict=True)
    return layer, m


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("config", list(TRAIN_CONFIGS))
def test_training_matches_torch(config: str, cell: str, dtype: Any, rng: np.random.Generator, torch: Any) -> None:
    cls_name, kw, clip_norm, clip_value = TRAIN_CONFIGS[config]
    layer, m = make_modules(torch, cell, dtype, int(rng.integers(2**31)))
    sd = layer.state_dict()
    opt = getattr(fusedrnn.optim, cls_name)(layer, **kw)
    opt_t = getattr(torch.optim, cls_name)(m.parameters(), **kw)
    T, B, H = 4, 3, 6
    LD = 2  # num_layers * num_directions, both modules
    lstm = cell == "lstm"
    out_size = H if lstm else 2 * H
    clipped_norm = clipped_value = False
    for step in range(STEPS):
        d = {
            "x": rng.standard_normal((T, B, 5)),
            "h0": 0.5 * rng.standard_normal((LD, B, H)),
            "dy": rng.standard_normal((T, B, out_size)),
            "dh_n": rng.standard_normal((LD, B, H)),
        }
        if lstm:
            d["c0"] = 0.5 * rng.standard_normal((LD, B, H))
            d["dc_n"] = rng.standard_normal((LD, B, H))
        d = {k: v.astype(dtype) for k, v in d.items()}

        # fusedrnn
        y, _ = layer(d["x"], (d["h0"], d["c0"]) if lstm else d["h0"])
        layer.backward(d["dy"], (d["dh_n"], d["dc_n"]) if lstm else d["dh_n"])
        # torch
        t = {k: torch.from_numpy(v) for k, v in d.items()}
        opt_t.zero_grad()
        y_t, state_t = m(t["x"], (t["h0"], t["c0"]) if lstm else t["h0"])
        h_t, c_t = state_t if lstm else (state_t, None)
        loss = (y_t * t["dy"]).sum() + (h_t * t["dh_n"]).sum()
        if lstm:
            loss = loss + (c_t * t["dc_n"]).sum()
        loss.backward()
        assert_close(y, y_t.detach().numpy(), dtype, f"step {step} y")

        if clip_value is not None:
            clipped_value |= any(bool((p.grad.abs() > clip_value).any()) for p in m.parameters())
            assert fusedrnn.clip_grad_value_(layer, clip_value) is None
            torch.nn.utils.clip_grad_value_(m.parameters(), clip_value)
        if clip_norm is not None:
            max_norm, norm_type = clip_norm
            total = fusedrnn.clip_grad_norm_(layer, max_norm, norm_type)
            total_t = torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm, norm_type).item()
            clipped_norm |= total_t > max_norm
            assert abs(total - total_t) <= NORM_RTOL[dtype] * abs(total_t), f"step {step}: norm {total} != {total_t}"
        for k, p in m.named_parameters():
            assert_close(layer.grads[k], p.grad.numpy(), dtype, f"step {step} clipped grad {k}")

        opt.step()
        opt_t.step()
        for k, p in m.named_parameters():
            got = layer.state_dict()[k]
            assert got is sd[k] and got.dtype == np.dtype(dtype)
            err = rel_err(got, p.detach().numpy())
            assert err <= PARAM_RTOL[dtype], f"step {step} {k}: relative error {err:.3e} > {PARAM_RTOL[dtype]:.0e}"
    if clip_norm is not None:
        assert clipped_norm, "max_norm never clipped: the test does not exercise clipping"
    if clip_value is not None:
        assert clipped_value, "clip_value never clipped: the test does not exercise clipping"


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, INF, -INF])
def test_clip_grad_norm_matches_torch(norm_type: float, dtype: Any, rng: np.random.Generator, torch: Any) -> None:
    arrays = [a.astype(dtype) for a in random_arrays(rng).values()]
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    params = []
    for g in tensors:
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g
        params.append(p)
    total_t = torch.nn.utils.clip_grad_norm_(params, 0.1, norm_type).item()
    total = fusedrnn.clip_grad_norm_(arrays, 0.1, norm_type)
    assert total == pytest.approx(total_t, rel=NORM_RTOL[dtype])
    for a, p in zip(arrays, params):
        assert a.dtype == np.dtype(dtype)
        assert rel_err(a, p.grad.numpy()) <= NORM_RTOL[dtype]


@needs_torch
@pytest.mark.parametrize("norm_type", [2.0, INF])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_matches_torch(
    bad: float, norm_type: float, rng: np.random.Generator, torch: Any
) -> None:
    grads = random_arrays(rng)
    grads["bias"][1] = bad
    p = {k: torch.nn.Parameter(torch.zeros(v.shape, dtype=torch.float64)) for k, v in grads.items()}
    for k, v in grads.items():
        p[k].grad = torch.from_numpy(v.copy())
    total_t = torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0, norm_type).item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # values only: the warning has its own test above
        total = fusedrnn.clip_grad_norm_(grads, 1.0, norm_type)
    np.testing.assert_array_equal(total, total_t)
    for k, v in grads.items():
        np.testing.assert_array_equal(v, p[k].grad.numpy(), err_msg=k)
