"""Bad input to stacked / bidirectional / projected / batch_first layers gets clear errors.

``dropout`` outside [0, 1) or not a number, ``proj_size`` out of range or given to GRU/RNN, states
and state gradients of the wrong stacked shape (the message names h0/c0 or dh_n/dc_n and says
what it got), ``lengths`` that do not match the batch with ``batch_first``, ``dy`` of the wrong
shape for a bidirectional layer.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pytest

import fusedrnn

T, B, I, H, P = 5, 3, 4, 6, 2
LAYER_CLASSES = (fusedrnn.RNN, fusedrnn.LSTM, fusedrnn.GRU)


def expect(exc: type[BaseException], name: str, fn: Callable[..., Any], *args: Any, got: bool = False,
           **kwargs: Any) -> str:  # fmt: skip
    """``fn(*args, **kwargs)`` raises ``exc`` whose message names ``name`` as a whole word and, for
    shape errors (``got=True``), says what it got."""
    with pytest.raises(exc, match=rf"(?<![\w]){re.escape(name)}(?![\w])") as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    if got:
        assert "got" in msg, f"shape error without 'got': {msg!r}"
    return msg


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def make(kind: str, **kw: Any) -> Any:
    if kind == "lstm":
        return fusedrnn.LSTM(I, H, **kw)
    if kind == "lstm_proj":
        return fusedrnn.LSTM(I, H, proj_size=P, **kw)
    if kind == "gru":
        return fusedrnn.GRU(I, H, **kw)
    return fusedrnn.RNN(I, H, **kw)


# ----------------------------------------------------------------------------------------------
# Constructor
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [-0.1, -1e-12, 1.0, 1.5, 2, -1, float("nan"), float("inf"), -float("inf")], ids=repr
)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_dropout_outside_unit_interval(cls: Any, value: Any) -> None:
    msg = expect(ValueError, "dropout", cls, I, H, num_layers=2, dropout=value)
    assert "[0, 1)" in msg, msg


@pytest.mark.parametrize("value", ["0.5", None, [0.5], (0.1,), 0.5j, True, False, object()], ids=repr)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_dropout_not_a_number(cls: Any, value: Any) -> None:
    expect(ValueError, "dropout", cls, I, H, num_layers=2, dropout=value)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999999], ids=repr)
@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_dropout_in_range_is_accepted(cls: Any, value: Any) -> None:
    layer = cls(I, H, num_layers=2, dropout=value)
    assert layer.dropout == float(value)


@pytest.mark.parametrize("value", [H, H + 1, 10 * H])
def test_proj_size_not_smaller_than_hidden_size(value: int) -> None:
    msg = expect(ValueError, "proj_size", fusedrnn.LSTM, I, H, proj_size=value)
    assert str(value) in msg


@pytest.mark.parametrize("value", [-1, -P, -(2**40)])
def test_proj_size_negative(value: int) -> None:
    expect(ValueError, "proj_size", fusedrnn.LSTM, I, H, proj_size=value)


@pytest.mark.parametrize("value", [1.5, "2", None, True])
def test_proj_size_not_an_int(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="proj_size"):
        fusedrnn.LSTM(I, H, proj_size=value)


@pytest.mark.parametrize("value", [0, P])
@pytest.mark.parametrize("cls", [fusedrnn.GRU, fusedrnn.RNN], ids=lambda c: c.__name__)
def test_proj_size_on_gru_and_rnn_is_unexpected_keyword(cls: Any, value: int) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'proj_size'"):
        cls(I, H, proj_size=value)


# ----------------------------------------------------------------------------------------------
# States of the wrong stacked shape
# ----------------------------------------------------------------------------------------------

# (kind, layer options, name of the bad state, its bad shape); good shapes are (L*D, B, P or H).
BAD_STATES = {
    "L2_h0_one_layer": ("gru", dict(num_layers=2), "h0", (1, B, H)),
    "L2_rnn_h0_three": ("rnn", dict(num_layers=2), "h0", (3, B, H)),
    "L2bi_h0_no_directions": ("gru", dict(num_layers=2, bidirectional=True), "h0", (2, B, H)),
    "L2bi_lstm_h0": ("lstm", dict(num_layers=2, bidirectional=True), "h0", (2, B, H)),
    "L2bi_lstm_c0": ("lstm", dict(num_layers=2, bidirectional=True), "c0", (2, B, H)),
    "L3_lstm_c0_batch": ("lstm", dict(num_layers=3), "c0", (3, B + 1, H)),
    "proj_c0_with_P": ("lstm_proj", dict(num_layers=2), "c0", (2, B, P)),
    "proj_h0_with_H": ("lstm_proj", dict(num_layers=2), "h0", (2, B, H)),
    "proj_bi_h0_with_H": ("lstm_proj", dict(num_layers=1, bidirectional=True), "h0", (2, B, H)),
    "bi_batch_first_h0_batch_major": ("gru", dict(bidirectional=True, batch_first=True), "h0", (B, 2, H)),
}


def good_shapes(kind: str, opts: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    LD = opts.get("num_layers", 1) * (2 if opts.get("bidirectional") else 1)
    p = P if kind == "lstm_proj" else H
    return {"h0": (LD, B, p), "c0": (LD, B, H)}


def state_arg(kind: str, shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> Any:
    h0 = randn(rng, *shapes["h0"])
    return (h0, randn(rng, *shapes["c0"])) if kind.startswith("lstm") else h0


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_state_of_wrong_stacked_shape(case: str, rng: np.random.Generator) -> None:
    kind, opts, name, bad = BAD_STATES[case]
    layer = make(kind, **opts)
    x = randn(rng, B, T, I) if opts.get("batch_first") else randn(rng, T, B, I)
    shapes = good_shapes(kind, opts)
    layer(x, state_arg(kind, shapes, rng))  # the good shapes work
    shapes[name] = bad
    msg = expect(ValueError, name, layer, x, state_arg(kind, shapes, rng), got=True)
    assert str(bad) in msg, msg
    good = good_shapes(kind, opts)[name]
    assert str(good) in msg, f"the message should say the expected shape {good}: {msg!r}"


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_state_grad_of_wrong_stacked_shape(case: str, rng: np.random.Generator) -> None:
    kind, opts, name, bad = BAD_STATES[case]
    layer = make(kind, **opts)
    x = randn(rng, B, T, I) if opts.get("batch_first") else randn(rng, T, B, I)
    y, _ = layer(x)
    shapes = good_shapes(kind, opts)
    shapes[name] = bad
    grad_name = {"h0": "dh_n", "c0": "dc_n"}[name]
    msg = expect(ValueError, grad_name, layer.backward, randn(rng, *y.shape), state_arg(kind, shapes, rng), got=True)
    assert str(bad) in msg, msg


# ----------------------------------------------------------------------------------------------
# lengths with batch_first
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn"])
def test_lengths_count_is_batch_not_time_with_batch_first(kind: str, rng: np.random.Generator) -> None:
    """batch_first x is (B, T, I): lengths has B entries; T entries (the time axis) is an error."""
    layer = make(kind, num_layers=2, bidirectional=True, batch_first=True)
    x = randn(rng, B, T, I)
    layer(x, lengths=[T, 1, 3])  # B = 3 entries: fine
    for lengths in ([T] * T, [T] * (B - 1), [T] * (B + 1), [[T] * B]):
        msg = expect(ValueError, "lengths", layer, x, lengths=lengths, got=True)
        assert f"({B},)" in msg, msg


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_values_bound_by_time_axis_with_batch_first(kind: str, rng: np.random.Generator) -> None:
    """batch_first with B > T: a length up to B (mistaking the axes) is out of range."""
    layer = make(kind, num_layers=2, bidirectional=True, batch_first=True)
    Tl, Bl = 3, 5
    x = randn(rng, Bl, Tl, I)
    layer(x, lengths=[3, 1, 2, 3, 3])
    for bad in ([5, 1, 2, 3, 3], [0, 1, 2, 3, 3], [-1, 3, 3, 3, 3]):
        expect(ValueError, "lengths", layer, x, lengths=bad)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_time_major_x_given_to_batch_first_layer_with_lengths(kind: str, rng: np.random.Generator) -> None:
    """x laid out (T, B, I) for a batch_first layer: the lengths no longer match the batch axis."""
    layer = make(kind, num_layers=2, batch_first=True)
    x_tm = randn(rng, T, B, I)  # read as B' = T sequences
    expect(ValueError, "lengths", layer, x_tm, lengths=[T, 1, 3], got=True)


# ----------------------------------------------------------------------------------------------
# dy of the wrong shape
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn"])
def test_dy_wrong_shape_bidirectional(kind: str, batch_first: bool, rng: np.random.Generator) -> None:
    layer = make(kind, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = randn(rng, B, T, I) if batch_first else randn(rng, T, B, I)
    y, _ = layer(x)
    p = P if kind == "lstm_proj" else H
    lead = y.shape[:2]
    assert y.shape == (*lead, 2 * p)
    bad_shapes = [
        (*lead, p),  # one direction only
        (*lead, 2 * H) if kind == "lstm_proj" else (*lead, 2 * p + 1),  # hidden instead of proj size
        (lead[1], lead[0], 2 * p),  # the other layout
        (*lead, 2, p),  # directions as their own axis
    ]
    for bad in bad_shapes:
        msg = expect(ValueError, "dy", layer.backward, randn(rng, *bad), got=True)
        assert str(tuple(bad)) in msg, msg
    layer.backward(randn(rng, *y.shape))  # and the right shape still works
