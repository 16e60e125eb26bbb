"""Bad inputs get clear errors that name the argument; edge cases do not crash.

Layer classes and ``fusedrnn.functional``: wrong shapes (messages say what they ``got``), wrong
kinds of arrays, bad lengths, backward without a tape, bad state dicts and constructor values,
unsatisfiable allocations (``MemoryError``), empty sizes, and inputs that must stay unmodified.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from typing import Any, Callable

import numpy as np
import pytest
from conftest import CELLS, GATES, make_problem

import fusedrnn
from fusedrnn import functional, reference

T, B, I, H = 4, 3, 2, 5

LAYER_CLASSES = (fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def expect(exc: type[BaseException], name: str, fn: Callable[..., Any], *args: Any, got: bool = False,
           **kwargs: Any) -> str:  # fmt: skip
    """``fn(*args, **kwargs)`` raises ``exc`` whose message names ``name`` (a regex; plain names
    are matched as whole words) and, for shape errors (``got=True``), says what it got."""
    pattern = rf"(?<![\w]){re.escape(name)}(?![\w])" if re.fullmatch(r"\w+", name) else name
    with pytest.raises(exc, match=pattern) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg.strip(), f"{exc.__name__} with an empty message"
    if got:
        assert "got" in msg, f"shape error without 'got': {msg!r}"
    return msg


def make_layer(cell: str, dtype: Any = np.float32, **kw: Any) -> Any:
    if cell == "lstm":
        return fusedrnn.LSTM(I, H, dtype=dtype, **kw)
    if cell == "gru":
        return fusedrnn.GRU(I, H, dtype=dtype, **kw)
    return fusedrnn.RNN(I, H, nonlinearity=cell[4:], dtype=dtype, **kw)


def good_state(cell: str, rng: np.random.Generator, b: int = B) -> Any:
    h0 = rng.standard_normal((1, b, H)).astype(np.float32)
    return (h0, rng.standard_normal((1, b, H)).astype(np.float32)) if cell == "lstm" else h0


def with_state_part(cell: str, state: Any, which: int, value: Any) -> Any:
    """``state`` with its h0 (which=0) or c0 (which=1) replaced by ``value``."""
    if cell != "lstm":
        return value
    parts = list(state)
    parts[which] = value
    return tuple(parts)


def func_call(cell: str, arrays: dict[str, Any], **kw: Any) -> Any:
    """Call the functional forward of ``cell`` with ``arrays`` (keys as make_problem)."""
    a = arrays
    w = (a["weight_ih"], a["weight_hh"], a.get("bias_ih"), a.get("bias_hh"))
    if cell == "lstm":
        return functional.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
    if cell == "gru":
        return functional.gru_forward(a["x"], a["h0"], *w, **kw)
    return functional.rnn_forward(a["x"], a["h0"], *w, nonlinearity=cell[4:], **kw)


def func_backward(cell: str, tape: Any, dy: Any, dh_n: Any = None, dc_n: Any = None) -> Any:
    if cell == "lstm":
        return functional.lstm_backward(tape, dy, dh_n, dc_n)
    if cell == "gru":
        return functional.gru_backward(tape, dy, dh_n)
    return functional.rnn_backward(tape, dy, dh_n)


def problem(rng: np.random.Generator, cell: str, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    return make_problem(rng, cell, T, B, I, H).cast(dtype)


def bad_kind(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    """An array of ``shape`` (or a plain str) that is not a floating-point array."""
    vals = rng.standard_normal(shape)
    if kind == "object":
        arr = np.empty(shape, dtype=object)
        arr[...] = vals
        return arr
    if kind == "complex":
        return vals + 1j * rng.standard_normal(shape)
    if kind == "string":
        return vals.astype(str)
    if kind == "str":
        return "0.5"
    if kind == "bool":
        return vals > 0
    if kind == "int":
        return rng.integers(-3, 4, shape)
    raise AssertionError(kind)


BAD_KINDS = ("object", "complex", "string", "str", "bool", "int")


# ----------------------------------------------------------------------------------------------
# Layer: x and state
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(T,), (T, B, I, 1), (), (1, T, B, I)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_x_wrong_ndim(cell: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    layer = make_layer(cell)
    expect(ValueError, "x", layer, rng.standard_normal(shape), got=True)
    if len(shape) != 3:
        a = problem(rng, cell)
        a["x"] = rng.standard_normal(shape).astype(np.float32)
        expect(ValueError, "x", func_call, cell, a, got=True)


@pytest.mark.parametrize("shape", [(T, B, I + 1), (T, B, I - 1), (T, I + 2), (T, B, 0)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_x_wrong_feature_size(cell: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    msg = expect(ValueError, "x", make_layer(cell), rng.standard_normal(shape), got=True)
    assert str(shape) in msg
    if len(shape) == 3:
        a = problem(rng, cell)
        a["x"] = rng.standard_normal(shape)
        expect(ValueError, "x", func_call, cell, a, got=True)


@pytest.mark.parametrize("shape", [(B, H), (1, B, H + 1), (1, B + 1, H), (2, B, H), (1, 1, B, H), (H,)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_layer_state_wrong_shape(cell: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    layer = make_layer(cell)
    x = rng.standard_normal((T, B, I))
    good = good_state(cell, rng)
    bad = rng.standard_normal(shape)
    msg = expect(ValueError, "h0", layer, x, with_state_part(cell, good, 0, bad), got=True)
    assert str(shape) in msg
    if cell == "lstm":
        msg = expect(ValueError, "c0", layer, x, with_state_part(cell, good, 1, bad), got=True)
        assert str(shape) in msg


@pytest.mark.parametrize("cell", CELLS)
def test_layer_unbatched_x_with_batched_state(cell: str, rng: np.random.Generator) -> None:
    layer = make_layer(cell)
    expect(ValueError, "h0", layer, rng.standard_normal((T, I)), good_state(cell, rng), got=True)
    # and batched x with an unbatched state
    unbatched = good_state(cell, rng, b=1)
    unbatched = tuple(s[:, 0] for s in unbatched) if cell == "lstm" else unbatched[:, 0]
    expect(ValueError, "h0", layer, rng.standard_normal((T, B, I)), unbatched, got=True)


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (H,), (1, B, H)], ids=str)
@pytest.mark.parametrize("cell, which", [(c, "h0") for c in CELLS] + [("lstm", "c0")])
def test_functional_state_wrong_shape(cell: str, which: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    a = problem(rng, cell)
    a[which] = rng.standard_normal(shape)
    expect(ValueError, which, func_call, cell, a, got=True)


@pytest.mark.parametrize("cls", [fusedrnn.RNN, fusedrnn.GRU], ids=lambda c: c.__name__)
def test_tuple_state_to_single_state_layer(cls: Any, rng: np.random.Generator) -> None:
    layer = cls(I, H)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((1, B, H))
    for state in ((h0,), (h0, h0), [h0], (h0, rng.standard_normal((1, B, H)))):
        expect(TypeError, r"\bh0\b|\bhx\b|\bstate\b", layer, x, state)


def test_lstm_state_not_a_pair(rng: np.random.Generator) -> None:
    layer = fusedrnn.LSTM(I, H)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((1, B, H))
    for state in (h0, (h0,), (h0, h0, h0), np.stack([h0, h0]), {"h0": h0, "c0": h0}):
        expect(TypeError, r"\(h0, c0\)|\bhx\b", layer, x, state)


# ----------------------------------------------------------------------------------------------
# Kinds of arrays
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("cell", CELLS)
def test_layer_non_float_arrays(cell: str, kind: str, rng: np.random.Generator) -> None:
    layer = make_layer(cell)
    good = good_state(cell, rng)
    x = rng.standard_normal((T, B, I))
    expect(TypeError, "x", layer, bad_kind(kind, (T, B, I), rng))
    expect(TypeError, "h0", layer, x, with_state_part(cell, good, 0, bad_kind(kind, (1, B, H), rng)))
    if cell == "lstm":
        expect(TypeError, "c0", layer, x, with_state_part(cell, good, 1, bad_kind(kind, (1, B, H), rng)))
    # weights through load_state_dict: the message names the key
    sd = {k: v.copy() for k, v in layer.state_dict().items()}
    before = {k: v.copy() for k, v in sd.items()}
    for key in sd:
        bad = dict(sd)
        bad[key] = bad_kind(kind, sd[key].shape, rng)
        expect(TypeError, re.escape(key), layer.load_state_dict, bad)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # dy of the wrong kind
    y, _ = layer(x)
    expect(TypeError, "dy", layer.backward, bad_kind(kind, y.shape, rng))


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("cell", CELLS)
def test_functional_non_float_arrays(cell: str, kind: str, rng: np.random.Generator) -> None:
    names = ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["c0"] if cell == "lstm" else [])
    for name in names:
        a = problem(rng, cell)
        a[name] = bad_kind(kind, a[name].shape, rng)
        expect(TypeError, name, func_call, cell, a)
    a = problem(rng, cell)
    out = func_call(cell, a)
    tape = out[-1]
    expect(TypeError, "dy", func_backward, cell, tape, bad_kind(kind, (T, B, H), rng))
    expect(TypeError, "dh_n", func_backward, cell, tape, a["dy"], bad_kind(kind, (B, H), rng))
    if cell == "lstm":
        expect(TypeError, "dc_n", func_backward, cell, tape, a["dy"], None, bad_kind(kind, (B, H), rng))


@pytest.mark.parametrize("cell", CELLS)
def test_functional_unsupported_float_dtype(cell: str, rng: np.random.Generator) -> None:
    a = problem(rng, cell, np.float16)
    msg = expect(TypeError, r"\bdtype\b|\bweight_ih\b", func_call, cell, a)
    assert "float16" in msg


# ----------------------------------------------------------------------------------------------
# lengths
# ----------------------------------------------------------------------------------------------

BAD_LENGTHS = {
    "zero": [0, 2, 3],
    "negative": [-1, 2, 3],
    "above_T": [T + 1, 2, 3],
    "too_few": [1, 2],
    "too_many": [1, 2, 3, 4],
    "two_d": [[1], [2], [3]],
    "scalar": 2,
    "float": [1.0, 2.0, 3.0],
    "float_fractional": [1.5, 2.0, 3.0],
    "bool": [True, True, True],
    "string": ["1", "2", "3"],
}


@pytest.mark.parametrize("case", list(BAD_LENGTHS))
@pytest.mark.parametrize("cell", CELLS)
def test_bad_lengths(cell: str, case: str, rng: np.random.Generator) -> None:
    lengths = np.asarray(BAD_LENGTHS[case])
    shape_error = case in ("too_few", "too_many", "two_d", "scalar")
    layer = make_layer(cell)
    x = rng.standard_normal((T, B, I))
    expect(ValueError, "lengths", layer, x, None, lengths, got=shape_error)
    expect(ValueError, "lengths", layer, x, lengths=BAD_LENGTHS[case], got=shape_error)  # a plain list too
    expect(ValueError, "lengths", func_call, cell, problem(rng, cell), lengths=lengths, got=shape_error)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_backward_without_tape(cell: str, rng: np.random.Generator) -> None:
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    layer = make_layer(cell)
    expect(RuntimeError, "forward", layer.backward, dy)  # before any forward

    layer.eval()
    layer(x)
    expect(RuntimeError, "forward", layer.backward, dy)  # after an eval() forward

    layer.train()
    layer(x)
    layer.backward(dy)
    layer.eval()
    layer(x)  # the most recent forward kept no tape: the older one is not used
    expect(RuntimeError, "forward", layer.backward, dy)

    layer.train()
    with fusedrnn.no_grad():
        layer(x)
    expect(RuntimeError, "forward", layer.backward, dy)  # after a forward under no_grad


@pytest.mark.parametrize("shape", [(T, B, H + 1), (T + 1, B, H), (T, B), (T, B, I), (B, H)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_layer_backward_dy_wrong_shape(cell: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    layer = make_layer(cell)
    layer(rng.standard_normal((T, B, I)))
    msg = expect(ValueError, "dy", layer.backward, rng.standard_normal(shape), got=True)
    assert str(shape) in msg
    # unbatched forward: dy must be (T, H)
    layer(rng.standard_normal((T, I)))
    expect(ValueError, "dy", layer.backward, rng.standard_normal((T, 1, H)), got=True)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_backward_state_grad_wrong(cell: str, rng: np.random.Generator) -> None:
    """The state gradient's errors name it (``dh_n``/``dc_n`` or ``state_grad``), not ``h0``."""
    layer = make_layer(cell)
    y, _ = layer(rng.standard_normal((T, B, I)))
    dy = rng.standard_normal(y.shape)
    good = good_state(cell, rng)
    bad = rng.standard_normal((1, B, H + 1))
    expect(ValueError, r"\bdh_n\b|\bstate_grad\b", layer.backward, dy, with_state_part(cell, good, 0, bad), got=True)
    if cell == "lstm":
        expect(ValueError, r"\bdc_n\b|\bstate_grad\b", layer.backward, dy, with_state_part(cell, good, 1, bad),
               got=True)  # fmt: skip
        expect(TypeError, r"\bstate_grad\b|\(dh_n, dc_n\)", layer.backward, dy, good[0])
    else:
        expect(TypeError, r"\bstate_grad\b|\bdh_n\b", layer.backward, dy, (good, good))


# ----------------------------------------------------------------------------------------------
# load_state_dict
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_bad_keys_and_shapes(cell: str, bias: bool, rng: np.random.Generator) -> None:
    layer = make_layer(cell, bias=bias)
    G = GATES[cell]
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    good = {k: rng.uniform(-0.3, 0.3, v.shape).astype(np.float32) for k, v in before.items()}

    for key in good:  # missing
        sd = dict(good)
        del sd[key]
        expect(ValueError, re.escape(key), layer.load_state_dict, sd)
    extras = ["weight_hr_l0", "weight_ih_l1", "weight_ih_l0_reverse"] + (["bias_ih_l0"] if not bias else [])
    for key in extras:  # unexpected
        sd = dict(good)
        sd[key] = rng.standard_normal((G * H, I))
        expect(ValueError, re.escape(key), layer.load_state_dict, sd)
    wrong_shapes = {
        "weight_ih_l0": [(G * H, I + 1), (I, G * H), (G * H,)],
        "weight_hh_l0": [(G * H, H + 1), (H, G * H), (G * H + 1, H)],
        "bias_ih_l0": [(G * H + 1,), (1, G * H)],
        "bias_hh_l0": [(G * H - 1,), ()],
    }
    for key, shapes in wrong_shapes.items():
        if key not in good:
            continue
        for shape in shapes:
            if shape == good[key].shape:  # (H, G*H) is the right shape for the RNN
                continue
            sd = dict(good)
            sd[key] = rng.standard_normal(shape)
            msg = expect(ValueError, re.escape(key), layer.load_state_dict, sd, got=True)
            assert str(shape) in msg
    # nothing was half-loaded by the failed calls
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    expect(TypeError, "state_dict", layer.load_state_dict, [("weight_ih_l0", good["weight_ih_l0"])])


# ----------------------------------------------------------------------------------------------
# Constructor
# ----------------------------------------------------------------------------------------------

SIZE_ARGS = ("input_size", "hidden_size", "num_layers")


def construct(cls: Any, **overrides: Any) -> Any:
    kw: dict[str, Any] = {"input_size": 3, "hidden_size": 4}
    kw.update(overrides)
    return cls(**kw)


@pytest.mark.parametrize("value", [0, -1, -(2**40)])
@pytest.mark.parametrize("arg", SIZE_ARGS)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_sizes_not_positive(cls: Any, arg: str, value: int) -> None:
    expect(ValueError, arg, construct, cls, **{arg: value})


@pytest.mark.parametrize("value", [2.5, 3.0, "3", None, True, np.float64(3.0), [3]], ids=repr)
@pytest.mark.parametrize("arg", SIZE_ARGS)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_sizes_not_int(cls: Any, arg: str, value: Any) -> None:
    expect(TypeError, arg, construct, cls, **{arg: value})


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), float("inf")], ids=repr)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_dropout_out_of_range(cls: Any, value: float) -> None:
    expect(ValueError, "dropout", construct, cls, dropout=value)


@pytest.mark.parametrize(
    "dtype", [np.float16, int, np.int32, "float16", np.complex128, bool, object, "not-a-dtype"], ids=repr
)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_bad_dtype(cls: Any, dtype: Any) -> None:
    expect(TypeError, "dtype", construct, cls, dtype=dtype)


@pytest.mark.parametrize("value", ["sigmoid", "Tanh", "", None])
def test_bad_nonlinearity(value: Any, rng: np.random.Generator) -> None:
    msg = expect(ValueError, "nonlinearity", fusedrnn.RNN, 3, 4, nonlinearity=value)
    assert repr(value) in msg
    a = problem(rng, "rnn_tanh")
    expect(ValueError, "nonlinearity", functional.rnn_forward, a["x"], a["h0"], a["weight_ih"], a["weight_hh"],
           nonlinearity=value)  # fmt: skip


@pytest.mark.parametrize("arg", ["bias", "batch_first", "bidirectional"])
def test_flags_not_bool(arg: str) -> None:
    expect(TypeError, arg, construct, fusedrnn.LSTM, **{arg: "yes"})


# ----------------------------------------------------------------------------------------------
# Functional level: weights, biases, reverse, tapes, gradients
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_functional_weight_ih_bad(cell: str, rng: np.random.Generator) -> None:
    G = GATES[cell]
    shapes = [(0, I), (G * H, 0), (G * H,), (G * H, I, 1)]
    if G > 1:  # rows not a multiple of G (for the RNN any row count is a valid H)
        shapes += [(G * H + 1, I), (G * H - 1, I)]
    for shape in shapes:
        a = problem(rng, cell)
        a["weight_ih"] = rng.standard_normal(shape).astype(np.float32)
        msg = expect(ValueError, "weight_ih", func_call, cell, a, got=True)
        assert str(shape) in msg


@pytest.mark.parametrize("cell", CELLS)
def test_functional_weight_hh_bad(cell: str, rng: np.random.Generator) -> None:
    G = GATES[cell]
    for shape in [(G * H, H + 1), (G * H + G, H), (H, G * H), (G * H,), (G * H, H, 1)]:
        if shape == (H, G * H) and G == 1:
            continue  # square for the RNN
        a = problem(rng, cell)
        a["weight_hh"] = rng.standard_normal(shape)
        msg = expect(ValueError, "weight_hh", func_call, cell, a, got=True)
        assert str(shape) in msg


@pytest.mark.parametrize("cell", CELLS)
def test_functional_biases_bad(cell: str, rng: np.random.Generator) -> None:
    G = GATES[cell]
    for missing, present in (("bias_hh", "bias_ih"), ("bias_ih", "bias_hh")):
        a = problem(rng, cell)
        a[missing] = None
        msg = expect(ValueError, present, func_call, cell, a)
        assert missing in msg
    for name in ("bias_ih", "bias_hh"):
        for shape in [(G * H + 1,), (G * H - 1,), (1, G * H), (H + 1,), ()]:
            a = problem(rng, cell)
            a[name] = rng.standard_normal(shape)
            expect(ValueError, name, func_call, cell, a, got=True)


@pytest.mark.parametrize("value", [1, 0, "True", None, 1.0, np.array([True])], ids=repr)
@pytest.mark.parametrize("cell", CELLS)
def test_functional_reverse_not_bool(cell: str, value: Any, rng: np.random.Generator) -> None:
    expect(TypeError, "reverse", func_call, cell, problem(rng, cell), reverse=value)


def test_functional_tape_to_wrong_backward(rng: np.random.Generator) -> None:
    tapes = {}
    for cell in CELLS:
        tapes[cell] = func_call(cell, problem(rng, cell))[-1]
    dy = rng.standard_normal((T, B, H))
    backwards = {"rnn": functional.rnn_backward, "lstm": functional.lstm_backward, "gru": functional.gru_backward}
    for kind, bwd in backwards.items():
        for cell, tape in tapes.items():
            if cell.split("_")[0] != kind:
                expect(TypeError, "tape", bwd, tape, dy)
        expect(TypeError, "tape", bwd, None, dy)
        expect(TypeError, "tape", bwd, {"x": dy}, dy)
    # a reference tape is not a functional tape, nor the other way round
    a = problem(rng, "lstm", np.float64)
    ref_tape = reference.lstm_forward(a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"])[-1]
    expect(TypeError, "tape", functional.lstm_backward, ref_tape, dy)
    with pytest.raises(TypeError, match="tape"):
        reference.lstm_backward(tapes["lstm"], dy)
    # need_tape=False gives no tape, and backward says so
    a = problem(rng, "gru")
    y, h_n, tape = functional.gru_forward(a["x"], a["h0"], a["weight_ih"], a["weight_hh"], need_tape=False)
    assert tape is None
    expect(TypeError, "tape", functional.gru_backward, tape, dy)


@pytest.mark.parametrize("cell", CELLS)
def test_functional_gradients_wrong_shape(cell: str, rng: np.random.Generator) -> None:
    a = problem(rng, cell)
    tape = func_call(cell, a)[-1]
    for shape in [(T, B, H + 1), (T - 1, B, H), (B, H), (T, B, H, 1)]:
        msg = expect(ValueError, "dy", func_backward, cell, tape, rng.standard_normal(shape), got=True)
        assert str(shape) in msg
    for shape in [(B, H + 1), (B + 1, H), (1, B, H), (H,)]:
        msg = expect(ValueError, "dh_n", func_backward, cell, tape, a["dy"], rng.standard_normal(shape), got=True)
        assert str(shape) in msg
        if cell == "lstm":
            msg = expect(ValueError, "dc_n", func_backward, cell, tape, a["dy"], a["dh_n"], rng.standard_normal(shape),
                         got=True)  # fmt: skip
            assert str(shape) in msg


# ----------------------------------------------------------------------------------------------
# Unsatisfiable allocations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval", "no_grad"])
def test_huge_broadcast_input_is_memory_error(mode: str, rng: np.random.Generator) -> None:
    layer = fusedrnn.LSTM(4, 8)
    x = np.broadcast_to(np.float32(1), (10**7, 10**7, 4))  # 1.6 PB if materialised
    if mode == "eval":
        layer.eval()
    if mode == "no_grad":
        with pytest.raises(MemoryError), fusedrnn.no_grad():
            layer(x)
    else:
        with pytest.raises(MemoryError):
            layer(x)
    # the layer is still usable, and the failed forward left no tape behind
    with pytest.raises(RuntimeError):
        layer.backward(np.zeros((2, 1, 8)))
    layer.train()
    y, _ = layer(rng.standard_normal((2, 1, 4)))
    assert y.shape == (2, 1, 8) and np.all(np.isfinite(y))
    layer.backward(np.ones_like(y))


def test_huge_broadcast_input_functional_is_memory_error() -> None:
    x = np.broadcast_to(np.float32(1), (10**7, 10**7, 4))
    w_ih, w_hh = np.zeros((32, 4), np.float32), np.zeros((32, 8), np.float32)
    h0 = np.zeros((10**7, 8), np.float32)
    for need_tape in (True, False):
        with pytest.raises(MemoryError):
            functional.lstm_forward(x, h0, h0, w_ih, w_hh, need_tape=need_tape)


# Each constructor in a child process with its address space capped at 16 GiB, so that an
# allocation that a machine with much memory and overcommit could satisfy fails there too
# (and a crash cannot take the test session down).
HUGE_LAYERS = ["fusedrnn.LSTM(10, 2**31)", "fusedrnn.GRU(1, 2**40)", "fusedrnn.RNN(2**33, 2**31)",
               "fusedrnn.LSTM(2**62, 2**62)"]  # fmt: skip

_CHILD = textwrap.dedent(
    """
    import json, sys
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = 16 << 30
        if hard == resource.RLIM_INFINITY or hard > cap:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, ValueError, OSError):
        pass
    import fusedrnn
    out = {}
    for expr in json.loads(sys.argv[1]):
        try:
            eval(expr)
            out[expr] = "no error"
        except MemoryError:
            out[expr] = "MemoryError"
        except BaseException as exc:
            out[expr] = f"{type(exc).__name__}: {exc}"
    sys.stdout.write(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def huge_layer_results() -> dict[str, str]:
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(HUGE_LAYERS)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip
    assert proc.returncode == 0, f"child crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("expr", HUGE_LAYERS)
def test_huge_layer_is_memory_error(expr: str, huge_layer_results: dict[str, str]) -> None:
    assert huge_layer_results[expr] == "MemoryError", f"{expr}: {huge_layer_results[expr]}"


# ----------------------------------------------------------------------------------------------
# Empty sizes (documented in functional.py: T = 0 gives h_n = h0; B = 0 gives empty outputs)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("TB", [(0, 3), (4, 0), (0, 0)], ids=lambda tb: f"T{tb[0]}_B{tb[1]}")
@pytest.mark.parametrize("cell", CELLS)
def test_empty_sizes_through_layer(cell: str, TB: tuple[int, int], with_state: bool, rng: np.random.Generator) -> None:
    t, b = TB
    layer = make_layer(cell, np.float64)
    x = rng.standard_normal((t, b, I))
    n_states = 2 if cell == "lstm" else 1
    states = [rng.standard_normal((1, b, H)) for _ in range(n_states)]
    dstates = [rng.standard_normal((1, b, H)) for _ in range(n_states)]
    pack = (lambda s: tuple(s) if cell == "lstm" else s[0]) if with_state else (lambda s: None)
    lengths = np.zeros(0, np.int64) if b == 0 else None
    y, state = layer(x, pack(states), lengths)
    finals = list(state) if cell == "lstm" else [state]
    assert y.shape == (t, b, H)
    for s, s0 in zip(finals, states):
        assert s.shape == (1, b, H)
        np.testing.assert_array_equal(s, s0 if with_state else np.zeros_like(s0))  # T = 0: h_n = h0
    for g in layer.grads.values():
        g.fill(np.nan)  # must be overwritten with zeros
    dx, dstate = layer.backward(rng.standard_normal((t, b, H)), pack(dstates))
    dinits = list(dstate) if cell == "lstm" else [dstate]
    assert dx.shape == (t, b, I)
    for d, dn in zip(dinits, dstates):
        assert d.shape == (1, b, H)
        np.testing.assert_array_equal(d, dn if with_state else np.zeros_like(dn))  # T = 0: dh0 = dh_n
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, np.zeros_like(g), err_msg=k)


# ----------------------------------------------------------------------------------------------
# Inputs are never modified
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", CELLS)
def test_inputs_not_modified(cell: str, dtype: Any, mode: str, rng: np.random.Generator) -> None:
    layer = make_layer(cell)  # float32: float64 inputs are cast, float32 ones may be used in place
    if mode == "eval":
        layer.eval()
    a = problem(rng, cell, dtype)
    n_states = 2 if cell == "lstm" else 1
    names = ("h0", "c0")[:n_states]
    x = a["x"]
    states = [a[n][None] for n in names]
    lengths = np.array([T, 1, 2])
    dy = a["dy"]
    dstates = [a[n][None] for n in ("dh_n", "dc_n")[:n_states]]
    dy[T - 1, 1:] = np.nan  # padding: never read
    pack = (lambda s: tuple(s)) if cell == "lstm" else (lambda s: s[0])
    inputs = [x, *states, lengths, dy, *dstates]
    params = {k: v.copy() for k, v in layer.state_dict().items()}
    copies = [v.copy() for v in inputs]

    y, state = layer(x, pack(states), lengths)
    outputs = [y, *(state if cell == "lstm" else [state])]
    if mode == "train":
        dx, dstate = layer.backward(dy, pack(dstates))
        outputs += [dx, *(dstate if cell == "lstm" else [dstate])]
        outputs += list(layer.grads.values())

    for v, c in zip(inputs, copies):
        np.testing.assert_array_equal(v, c)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    for out in outputs:
        for v in inputs:
            assert not np.shares_memory(out, v), "an output aliases an input"

    # the functional layer too
    w = {k: a[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    f_in = {**{k: a[k] for k in ("x", *names)}, **w}
    f_copies = {k: v.copy() for k, v in f_in.items()}
    tape = func_call(cell, f_in, lengths=lengths, need_tape=(mode == "train"))[-1]
    if tape is not None:
        func_backward(cell, tape, dy, *[a[n] for n in ("dh_n", "dc_n")[:n_states]])
    for k, v in f_in.items():
        np.testing.assert_array_equal(v, f_copies[k], err_msg=k)
    np.testing.assert_array_equal(dy, copies[1 + n_states + 1])
