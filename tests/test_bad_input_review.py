"""Regressions from a review of bad-input handling (each test names what used to go wrong).

- B = 0 with a huge T walked every step in the kernels (T = 2**40: hours, uninterruptible).
- Torch tensors the NumPy API cannot read (requiring grad, lazy negation, meta) and ragged
  ``lengths`` raised torch's/NumPy's errors without naming the argument; ``lengths=[]`` (B = 0)
  was rejected as float64.
- ``load_state_dict``: bfloat16 tensors failed without naming the key, meta/sparse ones likewise;
  values that are views of the layer's own parameters (a swap, a transpose) were loaded wrongly.
- Layer constructor: ``dtype=None`` silently gave float64; a bad ``device`` was
  ``NotImplementedError``; a bad ``seed`` did not name it. ``backward(accumulate="no")`` accumulated.
- ``set_num_threads(10**5)`` started (or failed to start, with a delayed error) that many threads;
  ``bench --threads 0`` was ignored, ``--threads -3`` a traceback.
- ``pack_weights(["lstm"], ...)``: "unhashable type" without naming ``cell``.
- ``fusedrnn.torch``: a gradient taken with ``create_graph=True`` from a loss linear in the output
  came back as a constant, so a gradient penalty silently lost its terms; ``h0`` on another device
  than the input failed in NumPy's conversion without naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import fusedrnn
from fusedrnn import bench, functional

T, B, I, H = 4, 3, 2, 5


def randn(rng: np.random.Generator, *shape: int, dtype: Any = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------------------------
# B = 0 with a huge T returns at once
# ----------------------------------------------------------------------------------------------

_EMPTY_BATCH_CHILD = textwrap.dedent(
    """
    import numpy as np, fusedrnn
    from fusedrnn import functional as F
    rng = np.random.default_rng(5)
    T = 2**40  # the kernels took ~15 ns a step with B = 0
    for cell, G in (("lstm", 4), ("gru", 3), ("rnn_tanh", 1)):
        w_ih = rng.standard_normal((G * 5, 3)).astype(np.float32)
        w_hh = rng.standard_normal((G * 5, 5)).astype(np.float32)
        b = rng.standard_normal(G * 5).astype(np.float32)
        x, h0 = np.empty((T, 0, 3), np.float32), np.empty((0, 5), np.float32)
        for need_tape in (False, True):  # the tape of the last one is used below
            if cell == "lstm":
                y, h_n, c_n, tape = F.lstm_forward(x, h0, h0, w_ih, w_hh, b, b, lengths=[], need_tape=need_tape)
                assert c_n.shape == (0, 5)
            elif cell == "gru":
                y, h_n, tape = F.gru_forward(x, h0, w_ih, w_hh, b, b, lengths=[], need_tape=need_tape)
            else:
                y, h_n, tape = F.rnn_forward(x, h0, w_ih, w_hh, b, b, need_tape=need_tape)
            assert y.shape == (T, 0, 5) and h_n.shape == (0, 5)
        back = {"lstm": F.lstm_backward, "gru": F.gru_backward, "rnn_tanh": F.rnn_backward}[cell]
        g = back(tape, np.empty((T, 0, 5), np.float32))
        assert g["x"].shape == (T, 0, 3) and g["h0"].shape == (0, 5)
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            assert g[k].shape == {"weight_ih": w_ih, "weight_hh": w_hh}.get(k, b).shape and not g[k].any(), k
        packed = F.pack_weights(cell, w_ih, w_hh, b, b)
        assert packed.forward(x, h0, *((h0,) if cell == "lstm" else ()))[0].shape == (T, 0, 5)
    layer = fusedrnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, dropout=0.25, batch_first=True)
    y, _ = layer(np.empty((0, T, 3), np.float32), lengths=[])
    dx, _ = layer.backward(np.empty(y.shape, np.float32))
    assert dx.shape == (0, T, 3) and not any(g.any() for g in layer.grads.values())
    print("ok")
    """
)


def test_empty_batch_with_huge_T_returns_at_once() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", _EMPTY_BATCH_CHILD], capture_output=True, text=True, timeout=120,
                              env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("B = 0 with T = 2**40 did not return within 120 s (the kernels walk every step)")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_empty_batch_parameter_grads_are_zero(cell: str, rng: np.random.Generator) -> None:
    """The short cut for B = 0 still writes zeros over the (NaN-poisoned) parameter gradients."""
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    w = [randn(rng, G * H, I), randn(rng, G * H, H), randn(rng, G * H), randn(rng, G * H)]
    x, h0, dy = randn(rng, T, 0, I), randn(rng, 0, H), randn(rng, T, 0, H)
    if cell == "lstm":
        tape = functional.lstm_forward(x, h0, h0, *w)[-1]
        g = functional.lstm_backward(tape, dy)
    elif cell == "gru":
        g = functional.gru_backward(functional.gru_forward(x, h0, *w)[-1], dy)
    else:
        g = functional.rnn_backward(functional.rnn_forward(x, h0, *w, nonlinearity="relu")[-1], dy)
    for k, ref in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), w):
        assert g[k].shape == ref.shape
        np.testing.assert_array_equal(g[k], np.zeros_like(ref), err_msg=k)


# ----------------------------------------------------------------------------------------------
# Arrays and lengths that NumPy cannot read
# ----------------------------------------------------------------------------------------------


def test_unreadable_torch_tensors_name_the_argument(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    layer = fusedrnn.GRU(I, H)
    x = torch.from_numpy(randn(rng, T, B, I))
    h0 = torch.from_numpy(randn(rng, 1, B, H))
    w = [randn(rng, 3 * H, I), randn(rng, 3 * H, H)]
    for bad in (x.clone().requires_grad_(), x._neg_view()):
        with pytest.raises(TypeError, match=r"\bx\b"):
            layer(bad)
        with pytest.raises(TypeError, match=r"\bx\b"):
            functional.gru_forward(bad, h0[0].numpy(), *w)
    with pytest.raises(TypeError, match=r"\bh0\b"):
        layer(x.numpy(), h0.clone().requires_grad_())
    y, _ = layer(x.numpy())
    with pytest.raises(TypeError, match=r"\bdy\b"):
        layer.backward(torch.from_numpy(randn(rng, *y.shape)).requires_grad_())


def test_ragged_or_unreadable_lengths_name_lengths(rng: np.random.Generator) -> None:
    layer = fusedrnn.LSTM(I, H)
    x = randn(rng, T, B, I)
    with pytest.raises(ValueError, match=r"\blengths\b"):
        layer(x, lengths=[[1], [2, 3], [4]])
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"\blengths\b"):
        layer(x, lengths=torch.empty(B, dtype=torch.int64, device="meta"))


def test_empty_list_lengths_for_an_empty_batch(rng: np.random.Generator) -> None:
    for lengths in ([], ()):
        y, h_n = fusedrnn.GRU(I, H)(randn(rng, T, 0, I), lengths=lengths)
        assert y.shape == (T, 0, H) and h_n.shape == (1, 0, H)
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\)"):
        fusedrnn.GRU(I, H)(randn(rng, T, B, I), lengths=[])


# ----------------------------------------------------------------------------------------------
# load_state_dict
# ----------------------------------------------------------------------------------------------


def test_load_state_dict_from_bfloat16_and_negated_tensors(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    layer = fusedrnn.LSTM(I, H, num_layers=2)
    sd = {k: torch.from_numpy(randn(rng, *v.shape)) for k, v in layer.state_dict().items()}
    bf16 = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    layer.load_state_dict(bf16)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, bf16[k].float().numpy(), err_msg=k)
    negated = {k: (-v)._neg_view() for k, v in sd.items()}  # lazily negated back to v
    layer.load_state_dict(negated)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)


@pytest.mark.parametrize("kind", ["meta", "sparse"])
def test_load_state_dict_tensor_without_dense_data_names_the_key(kind: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    layer = fusedrnn.GRU(I, H)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    sd: dict[str, Any] = {k: torch.from_numpy(randn(rng, *v.shape)) for k, v in before.items()}
    sd["weight_hh_l0"] = sd["weight_hh_l0"].to("meta") if kind == "meta" else sd["weight_hh_l0"].to_sparse()
    with pytest.raises(TypeError, match=r"state_dict\['weight_hh_l0'\]"):
        layer.load_state_dict(sd)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # nothing half-loaded


def test_load_state_dict_from_views_of_own_parameters(rng: np.random.Generator) -> None:
    layer = fusedrnn.RNN(4, 4, num_layers=2, seed=int(rng.integers(1 << 30)))  # every weight is 4 x 4
    live = layer.state_dict()
    snap = {k: v.copy() for k, v in live.items()}
    # a swap of live arrays, and a transposed live view
    swapped = dict(live, weight_ih_l0=live["weight_hh_l1"], weight_hh_l1=live["weight_ih_l0"],
                   weight_hh_l0=live["weight_ih_l1"].T, bias_ih_l0=live["bias_hh_l0"], bias_hh_l0=live["bias_ih_l0"])  # fmt: skip
    layer.load_state_dict(swapped)
    expected = dict(snap, weight_ih_l0=snap["weight_hh_l1"], weight_hh_l1=snap["weight_ih_l0"],
                    weight_hh_l0=snap["weight_ih_l1"].T, bias_ih_l0=snap["bias_hh_l0"], bias_hh_l0=snap["bias_ih_l0"])  # fmt: skip
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, expected[k], err_msg=k)
    assert all(layer.state_dict()[k] is live[k] for k in live)  # still the live arrays, updated in place


# ----------------------------------------------------------------------------------------------
# Constructor and backward arguments
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU], ids=lambda c: c.__name__)
def test_constructor_dtype_device_seed(cls: Any) -> None:
    with pytest.raises(TypeError, match=r"\bdtype\b"):
        cls(I, H, dtype=None)
    for device in (None, 0, ("cpu",)):
        with pytest.raises(TypeError, match=r"\bdevice\b"):
            cls(I, H, device=device)
    for device in ("gpu", "CPU", ""):
        with pytest.raises(ValueError, match=r"\bdevice\b"):
            cls(I, H, device=device)
    with pytest.raises(NotImplementedError, match="cuda"):  # valid, not supported by the layer classes
        cls(I, H, device="cuda")
    for seed, exc in (("abc", TypeError), (1.5, TypeError), (-1, ValueError)):
        with pytest.raises(exc, match=r"\bseed\b"):
            cls(I, H, seed=seed)
    assert cls(I, H, dtype=np.float64, device="cpu", seed=np.int64(3)).dtype == np.float64


def test_backward_accumulate_not_bool(rng: np.random.Generator) -> None:
    layer = fusedrnn.GRU(I, H)
    y, _ = layer(randn(rng, T, B, I))
    dy = randn(rng, *y.shape)
    layer.backward(dy)
    before = {k: v.copy() for k, v in layer.grads.items()}
    for value in ("no", 1, None):
        with pytest.raises(TypeError, match=r"\baccumulate\b"):
            layer.backward(dy, accumulate=value)
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    layer.backward(dy, accumulate=np.bool_(True))
    for k, v in layer.grads.items():
        np.testing.assert_allclose(v, 2 * before[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_pack_weights_unhashable_cell(rng: np.random.Generator) -> None:
    for cell in (["lstm"], {"lstm": 1}):
        with pytest.raises(ValueError, match=r"\bcell\b"):
            functional.pack_weights(cell, randn(rng, 4 * H, I), randn(rng, 4 * H, H))


# ----------------------------------------------------------------------------------------------
# Threads and the bench command line
# ----------------------------------------------------------------------------------------------


def test_set_num_threads_upper_bound() -> None:
    before = fusedrnn.get_num_threads()
    for n in (1025, 10**5, 2**31, 2**63):
        with pytest.raises(ValueError, match=r"\bn must be <= 1024"):
            fusedrnn.set_num_threads(n)
    assert fusedrnn.get_num_threads() == before


@pytest.mark.parametrize("value", ["0", "-3", "1025"])
def test_bench_threads_out_of_range(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = fusedrnn.get_num_threads()
    with pytest.raises(SystemExit) as info:
        bench.main(["--threads", value, "--no-torch", "--no-ort"])  # fails while parsing: nothing is timed
    assert info.value.code == 2
    assert "--threads must be in [1, 1024]" in capsys.readouterr().err
    assert fusedrnn.get_num_threads() == before


# ----------------------------------------------------------------------------------------------
# fusedrnn.torch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_torch_double_backward_is_an_error_not_a_constant(kind: str) -> None:
    torch = pytest.importorskip("torch")
    from fusedrnn import torch as ft

    torch.manual_seed(11)
    module = getattr(ft, kind)(I, H, num_layers=2, bidirectional=True).double()
    ref = getattr(torch.nn, kind)(I, H, num_layers=2, bidirectional=True).double()
    ref.load_state_dict(module.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    # first order with create_graph=True still works and matches torch
    grads = []
    for m in (module, ref):
        xr = x.clone().requires_grad_()
        y, _ = m(xr)
        (g,) = torch.autograd.grad(y.sum(), xr, create_graph=True)
        grads.append(g.detach())
        # differentiating that gradient again (a gradient penalty): torch's own module supports it;
        # ours must raise rather than treat the gradient as a constant in x and the weights
        if m is module:
            with pytest.raises(RuntimeError, match="double backward"):
                (y.sum() + (g**2).sum()).backward()
    torch.testing.assert_close(grads[0], grads[1])
    # ordinary backward is unaffected
    xr = x.clone().requires_grad_()
    module(xr)[0].sum().backward()
    assert xr.grad is not None and torch.isfinite(xr.grad).all()


def test_torch_state_on_another_device_names_it() -> None:
    torch = pytest.importorskip("torch")
    from fusedrnn import torch as ft

    torch.manual_seed(12)
    lstm = ft.LSTM(I, H)
    x = torch.randn(T, B, I)
    h, c = torch.randn(1, B, H), torch.randn(1, B, H)
    with pytest.raises(ValueError, match=r"\bh0\b.*meta"):
        lstm(x, (h.to("meta"), c))
    with pytest.raises(ValueError, match=r"\bc0\b.*meta"):
        lstm(x, (h, c.to("meta")))
    with pytest.raises(ValueError, match=r"\bh0\b.*meta"):
        ft.GRU(I, H)(x, h.to("meta"))
