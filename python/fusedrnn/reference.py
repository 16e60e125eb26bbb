"""Pure NumPy reference for one layer, one direction of RNN, LSTM and GRU.

This module is the project's oracle: every fast kernel (CPU and CUDA) is checked against it,
and it is itself checked against central finite differences (``tests/test_reference.py``).
It favours clarity over speed: one Python loop over time steps, vectorised over batch and
hidden units, and a hand-written backpropagation through time (no autodiff).

Conventions are those of PyTorch / cuDNN (see ``docs/functional-contract.md``).  Letters:
``T`` steps, ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` gates per unit
(RNN 1, LSTM 4 in order i f g o, GRU 3 in order r z n).

- RNN:  ``h' = act(W x + b_w + R h + b_r)`` with act ``tanh`` or ``relu``.
- LSTM: ``[i f g o] = W x + b_w + R h + b_r``; ``c' = sig(f) c + sig(i) tanh(g)``;
  ``h' = sig(o) tanh(c')``.
- GRU (linear-before-reset): ``r = sig(W_r x + b_wr + R_r h + b_rr)``,
  ``z = sig(W_z x + b_wz + R_z h + b_rz)``, ``n = tanh(W_n x + b_wn + r * (R_n h + b_rn))``,
  ``h' = (1 - z) n + z h``.

Variable lengths: for sequence ``b`` the steps ``t >= lengths[b]`` are padding.  There the
state is frozen, ``y[t, b] = 0``, and ``dy[t, b]`` is ignored (it is never read into any
arithmetic, so NaN there reaches nothing).  With ``reverse=True`` each sequence is walked from
its own last real step ``lengths[b] - 1`` down to step 0, so its first real step sees ``h0``.

Dtypes: all arithmetic happens in ``np.result_type`` of the forward's array arguments (any
float dtype: float16, float32, float64, longdouble); nothing is upcast.  Outputs, the tape and
the gradients have that dtype; ``dy``, ``dh_n`` and ``dc_n`` are cast to it.

Inputs are never modified.  The tape holds private copies of what the backward needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "RNNTape",
    "LSTMTape",
    "GRUTape",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "StackedTape",
    "stacked_forward",
    "stacked_backward",
]

Array = NDArray[Any]


# ----------------------------------------------------------------------------------------------
# Tapes: exactly what each backward reads.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TapeBase:
    x: Array  # (T, B, I)
    weight_ih: Array  # (G*H, I)
    weight_hh: Array  # (G*H, H)
    has_bias: bool
    h_prev: Array  # (T, B, H)  state each step started from (frozen state at padding)
    valid: Array  # (T, B) bool  True where step t is real for sequence b
    reverse: bool

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.x.dtype


@dataclass(frozen=True)
class RNNTape(_TapeBase):
    """Tape of :func:`rnn_forward`: ``out`` is the activated step output (before masking)."""

    nonlinearity: str
    out: Array  # (T, B, H)  act(pre-activation)


@dataclass(frozen=True)
class LSTMTape(_TapeBase):
    """Tape of :func:`lstm_forward`: activated gates, previous cells and ``tanh`` of new cells."""

    gates: Array  # (T, B, 4H)  [sig(i), sig(f), tanh(g), sig(o)]
    c_prev: Array  # (T, B, H)
    tanh_c: Array  # (T, B, H)  tanh(c') of the step (before masking)
    weight_hr: Array | None = None  # (P, H) projection; h_prev is then (T, B, P)


@dataclass(frozen=True)
class GRUTape(_TapeBase):
    """Tape of :func:`gru_forward`: activated gates and ``R_n h + b_rn`` per step."""

    gates: Array  # (T, B, 3H)  [sig(r), sig(z), tanh(n)]
    hn: Array  # (T, B, H)  R_n h + b_rn


# ----------------------------------------------------------------------------------------------
# Pointwise helpers
# ----------------------------------------------------------------------------------------------


def _sigmoid(a: Array) -> Array:
    """Logistic function without overflow: ``sig(a) = (1 + tanh(a / 2)) / 2``."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _relu(a: Array) -> Array:
    return np.maximum(a, 0)


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def _check_shape(name: str, a: Array, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")


class _Args(NamedTuple):
    """A forward's arguments after checking: private copies in the common float dtype."""

    dtype: np.dtype[Any]
    x: Array  # (T, B, I)
    states: dict[str, Array]  # "h0": (B, P), "c0": (B, H)
    weight_ih: Array  # (G*H, I)
    weight_hh: Array  # (G*H, P)
    bias_ih: Array | None  # (G*H,)
    bias_hh: Array | None  # (G*H,)
    valid: Array  # (T, B) bool: True where step t is real for sequence b
    weight_hr: Array | None  # (P, H): LSTM projection


def _prepare(
    gates: int,
    x: ArrayLike,
    states: dict[str, ArrayLike],
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None,
    bias_hh: ArrayLike | None,
    lengths: ArrayLike | None,
    weight_hr: ArrayLike | None = None,
) -> _Args:
    """Validate the forward's arguments; return private copies in the common float dtype."""
    xa = np.asarray(x)
    st = {k: np.asarray(v) for k, v in states.items()}
    w_ih = np.asarray(weight_ih)
    w_hh = np.asarray(weight_hh)
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("bias_ih and bias_hh must be both None or both arrays")
    b_ih = None if bias_ih is None else np.asarray(bias_ih)
    b_hh = None if bias_hh is None else np.asarray(bias_hh)

    if xa.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {xa.shape}")
    T, B, I = xa.shape
    w_hr = None if weight_hr is None else np.asarray(weight_hr)
    if w_hr is None:
        if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
            raise ValueError(f"weight_hh must have shape ({gates}*H, H), got {w_hh.shape}")
        H = P = w_hh.shape[1]
    else:
        if w_hr.ndim != 2 or not 1 <= w_hr.shape[0] < w_hr.shape[1]:
            raise ValueError(f"weight_hr must have shape (P, H) with 1 <= P < H, got {w_hr.shape}")
        P, H = w_hr.shape
        _check_shape("weight_hh", w_hh, (gates * H, P))
    _check_shape("weight_ih", w_ih, (gates * H, I))
    for name, a in st.items():
        _check_shape(name, a, (B, P) if name == "h0" else (B, H))
    if b_ih is not None and b_hh is not None:
        _check_shape("bias_ih", b_ih, (gates * H,))
        _check_shape("bias_hh", b_hh, (gates * H,))

    arrays = [xa, *st.values(), w_ih, w_hh] + ([] if b_ih is None else [b_ih, b_hh]) + ([] if w_hr is None else [w_hr])
    dtype = np.result_type(*arrays)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"inputs must have a real floating dtype, got {dtype}")

    if lengths is None:
        valid = np.ones((T, B), dtype=bool)
    else:
        lens = np.asarray(lengths)
        if lens.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},), got {lens.shape}")
        if not np.issubdtype(lens.dtype, np.integer):
            raise TypeError(f"lengths must have an integer dtype, got {lens.dtype}")
        if B > 0 and (lens.min() < 1 or lens.max() > T):
            raise ValueError(f"lengths must lie in [1, {T}], got {lens.tolist()}")
        valid = np.arange(T)[:, None] < lens[None, :]  # a new array, not the caller's

    def cast(a: Array) -> Array:
        return np.array(a, dtype=dtype, copy=True)  # private copy, never a view of an input

    return _Args(
        dtype=dtype,
        x=cast(xa),
        states={k: cast(v) for k, v in st.items()},
        weight_ih=cast(w_ih),
        weight_hh=cast(w_hh),
        bias_ih=None if b_ih is None else cast(b_ih),
        bias_hh=None if b_hh is None else cast(b_hh),
        valid=valid,
        weight_hr=None if w_hr is None else cast(w_hr),
    )


def _time_steps(T: int, reverse: bool) -> range:
    """Order in which the forward visits the time steps (the backward uses the opposite)."""
    return range(T - 1, -1, -1) if reverse else range(T)


def _prepare_grad(name: str, g: ArrayLike | None, shape: tuple[int, ...], dtype: np.dtype[Any]
                  ) -> Array:
    if g is None:
        return np.zeros(shape, dtype=dtype)
    ga = np.asarray(g)
    _check_shape(name, ga, shape)
    return ga.astype(dtype, copy=True)  # never alias the caller's array in the results


def _param_grads(tape: _TapeBase, dgx: Array, dgh: Array) -> dict[str, Array | None]:
    """Whole-sequence parameter gradients from per-step gate gradients.

    ``dgx`` ``(T, B, G*H)`` is the gradient of ``W x + b_w`` and ``dgh`` that of ``R h + b_r``
    (they differ only for the GRU's n gate).  Both are zero at padding steps.
    """
    return {
        "x": dgx @ tape.weight_ih,  # (T, B, I)
        "weight_ih": np.einsum("tbg,tbi->gi", dgx, tape.x),
        "weight_hh": np.einsum("tbg,tbh->gh", dgh, tape.h_prev),
        "bias_ih": dgx.sum(axis=(0, 1)) if tape.has_bias else None,
        "bias_hh": dgh.sum(axis=(0, 1)) if tape.has_bias else None,
    }


def _ordered(grads: dict[str, Array | None], keys: tuple[str, ...]) -> dict[str, Array | None]:
    return {k: grads[k] for k in keys}


# ----------------------------------------------------------------------------------------------
# RNN
# ----------------------------------------------------------------------------------------------


def rnn_forward(
    x: ArrayLike,
    h0: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
    *,
    nonlinearity: str = "tanh",
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    need_tape: bool = True,
) -> tuple[Array, Array, RNNTape | None]:
    """Elman RNN forward, one layer and one direction: ``h' = act(W x + b_w + R h + b_r)``.

    Parameters
    ----------
    x : array, shape (T, B, I)
        Input sequence, time-major.
    h0 : array, shape (B, H)
        Initial hidden state.
    weight_ih : array, shape (H, I)
        Input weights ``W``.
    weight_hh : array, shape (H, H)
        Recurrent weights ``R``.
    bias_ih, bias_hh : array, shape (H,), or None
        Biases ``b_w`` and ``b_r``; both ``None`` for no bias.
    nonlinearity : {"tanh", "relu"}
        The activation.
    lengths : integer array, shape (B,), optional
        Real steps per sequence, values in ``[1, T]``, any order.  ``None``: all ``T``.
    reverse : bool
        Walk each sequence from its last real step down to step 0.
    need_tape : bool
        Keep what :func:`rnn_backward` needs; with ``False`` the returned tape is ``None``.

    Returns
    -------
    y : array, shape (T, B, H)
        Hidden state after each step; zero at padding steps.
    h_n : array, shape (B, H)
        State after each sequence's last real step.
    tape : RNNTape or None
        Pass to :func:`rnn_backward`.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    act = np.tanh if nonlinearity == "tanh" else _relu
    args = _prepare(1, x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    dtype, xa, st, valid = args.dtype, args.x, args.states, args.valid
    w_ih, w_hh, b_ih, b_hh = args.weight_ih, args.weight_hh, args.bias_ih, args.bias_hh
    T, B, _ = xa.shape
    H = w_hh.shape[1]

    gx = xa @ w_ih.T  # (T, B, H)
    if b_ih is not None and b_hh is not None:
        gx = gx + (b_ih + b_hh)

    y = np.zeros((T, B, H), dtype=dtype)
    h_prev = np.empty((T, B, H), dtype=dtype)
    out = np.empty((T, B, H), dtype=dtype)
    h = st["h0"]
    for t in _time_steps(T, reverse):
        m = valid[t][:, None]  # (B, 1)
        h_prev[t] = h
        out[t] = act(gx[t] + h @ w_hh.T)
        y[t] = np.where(m, out[t], 0)
        h = np.where(m, out[t], h)

    tape = None
    if need_tape:
        tape = RNNTape(x=xa, weight_ih=w_ih, weight_hh=w_hh, has_bias=b_ih is not None,
                       h_prev=h_prev, valid=valid, reverse=reverse,
                       nonlinearity=nonlinearity, out=out)
    return y, np.array(h, dtype=dtype, copy=True), tape


def rnn_backward(tape: RNNTape, dy: ArrayLike, dh_n: ArrayLike | None = None
                 ) -> dict[str, Array | None]:
    """Backpropagation through time for :func:`rnn_forward`.

    Parameters
    ----------
    tape : RNNTape
        From :func:`rnn_forward` (not modified; the backward may be called again).
    dy : array, shape (T, B, H)
        Gradient of the loss with respect to ``y``; ignored at padding steps.
    dh_n : array, shape (B, H), optional
        Gradient with respect to ``h_n``; ``None`` means zeros.

    Returns
    -------
    dict
        ``"x"`` (T, B, I), ``"h0"`` (B, H), ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``,
        ``"bias_hh"`` (the biases ``None`` when the forward had none), in the tape's dtype.
    """
    if not isinstance(tape, RNNTape):
        raise TypeError("tape must be the RNNTape returned by rnn_forward")
    T, B, _ = tape.x.shape
    H = tape.weight_hh.shape[1]
    dt = tape.dtype
    dya = _prepare_grad("dy", dy, (T, B, H), dt)
    dh = _prepare_grad("dh_n", dh_n, (B, H), dt)

    dg = np.zeros((T, B, H), dtype=dt)  # gradient of the pre-activation
    for t in reversed(_time_steps(T, tape.reverse)):
        m = tape.valid[t][:, None]
        dh_t = dh + np.where(m, dya[t], 0)  # NaN at padding is selected away, never multiplied
        out = tape.out[t]
        if tape.nonlinearity == "tanh":
            g = dh_t * (1 - out * out)
        else:
            g = np.where(out > 0, dh_t, 0)
        dg[t] = np.where(m, g, 0)
        dh = np.where(m, dg[t] @ tape.weight_hh, dh)  # padding: the frozen state passes dh on

    grads = _param_grads(tape, dg, dg)
    grads["h0"] = dh
    return _ordered(grads, ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"))


# ----------------------------------------------------------------------------------------------
# LSTM
# ----------------------------------------------------------------------------------------------


def lstm_forward(
    x: ArrayLike,
    h0: ArrayLike,
    c0: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
    *,
    weight_hr: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    need_tape: bool = True,
) -> tuple[Array, Array, Array, LSTMTape | None]:
    """LSTM forward, one layer and one direction, gate order i, f, g, o.

    ``c' = sig(f) c + sig(i) tanh(g)``, ``h' = sig(o) tanh(c')``; with a projection
    ``weight_hr`` (P, H): ``h' = W_hr (sig(o) tanh(c'))``, and ``h0``, ``h_n``, ``y`` have size P
    (``weight_hh`` is then (4*H, P)).

    Parameters
    ----------
    x : array, shape (T, B, I)
        Input sequence, time-major.
    h0, c0 : array, shape (B, H)
        Initial hidden and cell states.
    weight_ih : array, shape (4*H, I)
        Input weights ``W``, rows in gate order i, f, g, o.
    weight_hh : array, shape (4*H, H)
        Recurrent weights ``R``.
    bias_ih, bias_hh : array, shape (4*H,), or None
        Biases; both ``None`` for no bias.
    lengths : integer array, shape (B,), optional
        Real steps per sequence, values in ``[1, T]``, any order.  ``None``: all ``T``.
    reverse : bool
        Walk each sequence from its last real step down to step 0.
    need_tape : bool
        Keep what :func:`lstm_backward` needs; with ``False`` the returned tape is ``None``.

    Returns
    -------
    y : array, shape (T, B, H)
        Hidden state after each step; zero at padding steps.
    h_n, c_n : array, shape (B, H)
        States after each sequence's last real step.
    tape : LSTMTape or None
        Pass to :func:`lstm_backward`.
    """
    args = _prepare(4, x, {"h0": h0, "c0": c0}, weight_ih, weight_hh, bias_ih, bias_hh, lengths, weight_hr)
    dtype, xa, st, valid = args.dtype, args.x, args.states, args.valid
    w_ih, w_hh, b_ih, b_hh, w_hr = args.weight_ih, args.weight_hh, args.bias_ih, args.bias_hh, args.weight_hr
    T, B, _ = xa.shape
    H = w_hh.shape[0] // 4
    P = H if w_hr is None else w_hr.shape[0]

    gx = xa @ w_ih.T  # (T, B, 4H)
    if b_ih is not None and b_hh is not None:
        gx = gx + (b_ih + b_hh)

    y = np.zeros((T, B, P), dtype=dtype)
    h_prev = np.empty((T, B, P), dtype=dtype)
    c_prev = np.empty((T, B, H), dtype=dtype)
    gates = np.empty((T, B, 4 * H), dtype=dtype)
    tanh_c = np.empty((T, B, H), dtype=dtype)
    h, c = st["h0"], st["c0"]
    for t in _time_steps(T, reverse):
        m = valid[t][:, None]
        h_prev[t], c_prev[t] = h, c
        a = gx[t] + h @ w_hh.T
        i = _sigmoid(a[:, 0 * H:1 * H])
        f = _sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = _sigmoid(a[:, 3 * H:4 * H])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc if w_hr is None else (o * tc) @ w_hr.T
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        tanh_c[t] = tc
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)
        c = np.where(m, c_new, c)

    tape = None
    if need_tape:
        tape = LSTMTape(x=xa, weight_ih=w_ih, weight_hh=w_hh, has_bias=b_ih is not None,
                        h_prev=h_prev, valid=valid, reverse=reverse,
                        gates=gates, c_prev=c_prev, tanh_c=tanh_c, weight_hr=w_hr)
    return y, np.array(h, dtype=dtype, copy=True), np.array(c, dtype=dtype, copy=True), tape


def lstm_backward(tape: LSTMTape, dy: ArrayLike, dh_n: ArrayLike | None = None,
                  dc_n: ArrayLike | None = None) -> dict[str, Array | None]:
    """Backpropagation through time for :func:`lstm_forward`.

    Parameters
    ----------
    tape : LSTMTape
        From :func:`lstm_forward` (not modified; the backward may be called again).
    dy : array, shape (T, B, H)
        Gradient of the loss with respect to ``y``; ignored at padding steps.
    dh_n, dc_n : array, shape (B, H), optional
        Gradients with respect to ``h_n`` and ``c_n``; ``None`` means zeros.

    Returns
    -------
    dict
        ``"x"``, ``"h0"``, ``"c0"``, ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``,
        ``"bias_hh"`` (the biases ``None`` when the forward had none), in the tape's dtype.
    """
    if not isinstance(tape, LSTMTape):
        raise TypeError("tape must be the LSTMTape returned by lstm_forward")
    T, B, _ = tape.x.shape
    H = tape.weight_hh.shape[0] // 4
    w_hr = tape.weight_hr
    P = H if w_hr is None else w_hr.shape[0]
    dt = tape.dtype
    dya = _prepare_grad("dy", dy, (T, B, P), dt)
    dh = _prepare_grad("dh_n", dh_n, (B, P), dt)
    dc = _prepare_grad("dc_n", dc_n, (B, H), dt)

    dg = np.zeros((T, B, 4 * H), dtype=dt)  # gradient of the gate pre-activations
    dw_hr = None if w_hr is None else np.zeros((P, H), dtype=dt)
    for t in reversed(_time_steps(T, tape.reverse)):
        m = tape.valid[t][:, None]
        dh_t = dh + np.where(m, dya[t], 0)  # gradient of this step's h'
        if w_hr is not None:  # h' = W_hr m', m' = o tanh(c'): continue with the gradient of m'
            gt = tape.gates[t]
            m_t = gt[:, 3 * H:4 * H] * tape.tanh_c[t]
            dw_hr += np.where(m, dh_t, 0).T @ m_t
            dh_t = dh_t @ w_hr
        gt = tape.gates[t]
        i, f, g, o = gt[:, 0:H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:4 * H]
        tc = tape.tanh_c[t]
        dc_t = dc + dh_t * o * (1 - tc * tc)  # total gradient of c' (through h' and onwards)
        d_all = np.concatenate([
            dc_t * g * i * (1 - i),          # d i_pre
            dc_t * tape.c_prev[t] * f * (1 - f),  # d f_pre
            dc_t * i * (1 - g * g),          # d g_pre
            dh_t * tc * o * (1 - o),         # d o_pre
        ], axis=1)
        dg[t] = np.where(m, d_all, 0)
        dh = np.where(m, dg[t] @ tape.weight_hh, dh)
        dc = np.where(m, dc_t * f, dc)

    grads = _param_grads(tape, dg, dg)
    grads["h0"] = dh
    grads["c0"] = dc
    keys = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
    if w_hr is not None:
        grads["weight_hr"] = dw_hr
        keys += ("weight_hr",)
    return _ordered(grads, keys)


# ----------------------------------------------------------------------------------------------
# GRU
# ----------------------------------------------------------------------------------------------


def gru_forward(
    x: ArrayLike,
    h0: ArrayLike,
    weight_ih: ArrayLike,
    weight_hh: ArrayLike,
    bias_ih: ArrayLike | None = None,
    bias_hh: ArrayLike | None = None,
    *,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    need_tape: bool = True,
) -> tuple[Array, Array, GRUTape | None]:
    """GRU forward (linear-before-reset), one layer and one direction, gate order r, z, n.

    ``n = tanh(W_n x + b_wn + r * (R_n h + b_rn))``, ``h' = (1 - z) n + z h``.

    Parameters
    ----------
    x : array, shape (T, B, I)
        Input sequence, time-major.
    h0 : array, shape (B, H)
        Initial hidden state.
    weight_ih : array, shape (3*H, I)
        Input weights ``W``, rows in gate order r, z, n.
    weight_hh : array, shape (3*H, H)
        Recurrent weights ``R``.
    bias_ih, bias_hh : array, shape (3*H,), or None
        Biases; both ``None`` for no bias.
    lengths : integer array, shape (B,), optional
        Real steps per sequence, values in ``[1, T]``, any order.  ``None``: all ``T``.
    reverse : bool
        Walk each sequence from its last real step down to step 0.
    need_tape : bool
        Keep what :func:`gru_backward` needs; with ``False`` the returned tape is ``None``.

    Returns
    -------
    y : array, shape (T, B, H)
        Hidden state after each step; zero at padding steps.
    h_n : array, shape (B, H)
        State after each sequence's last real step.
    tape : GRUTape or None
        Pass to :func:`gru_backward`.
    """
    args = _prepare(3, x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    dtype, xa, st, valid = args.dtype, args.x, args.states, args.valid
    w_ih, w_hh, b_ih, b_hh = args.weight_ih, args.weight_hh, args.bias_ih, args.bias_hh
    T, B, _ = xa.shape
    H = w_hh.shape[1]

    gx = xa @ w_ih.T  # (T, B, 3H)
    if b_ih is not None:
        gx = gx + b_ih

    y = np.zeros((T, B, H), dtype=dtype)
    h_prev = np.empty((T, B, H), dtype=dtype)
    gates = np.empty((T, B, 3 * H), dtype=dtype)
    hn_all = np.empty((T, B, H), dtype=dtype)
    h = st["h0"]
    for t in _time_steps(T, reverse):
        m = valid[t][:, None]
        h_prev[t] = h
        gh = h @ w_hh.T  # (B, 3H)
        if b_hh is not None:
            gh = gh + b_hh
        r = _sigmoid(gx[t, :, 0:H] + gh[:, 0:H])
        z = _sigmoid(gx[t, :, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:3 * H]
        n = np.tanh(gx[t, :, 2 * H:3 * H] + r * hn)
        h_new = (1 - z) * n + z * h
        gates[t] = np.concatenate([r, z, n], axis=1)
        hn_all[t] = hn
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)

    tape = None
    if need_tape:
        tape = GRUTape(x=xa, weight_ih=w_ih, weight_hh=w_hh, has_bias=b_ih is not None,
                       h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, hn=hn_all)
    return y, np.array(h, dtype=dtype, copy=True), tape


def gru_backward(tape: GRUTape, dy: ArrayLike, dh_n: ArrayLike | None = None
                 ) -> dict[str, Array | None]:
    """Backpropagation through time for :func:`gru_forward`.

    Parameters
    ----------
    tape : GRUTape
        From :func:`gru_forward` (not modified; the backward may be called again).
    dy : array, shape (T, B, H)
        Gradient of the loss with respect to ``y``; ignored at padding steps.
    dh_n : array, shape (B, H), optional
        Gradient with respect to ``h_n``; ``None`` means zeros.

    Returns
    -------
    dict
        ``"x"``, ``"h0"``, ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``, ``"bias_hh"``
        (the biases ``None`` when the forward had none), in the tape's dtype.
    """
    if not isinstance(tape, GRUTape):
        raise TypeError("tape must be the GRUTape returned by gru_forward")
    T, B, _ = tape.x.shape
    H = tape.weight_hh.shape[1]
    dt = tape.dtype
    dya = _prepare_grad("dy", dy, (T, B, H), dt)
    dh = _prepare_grad("dh_n", dh_n, (B, H), dt)

    dgx = np.zeros((T, B, 3 * H), dtype=dt)  # gradient of W x + b_w
    dgh = np.zeros((T, B, 3 * H), dtype=dt)  # gradient of R h + b_r
    for t in reversed(_time_steps(T, tape.reverse)):
        m = tape.valid[t][:, None]
        dh_t = dh + np.where(m, dya[t], 0)
        gt = tape.gates[t]
        r, z, n = gt[:, 0:H], gt[:, H:2 * H], gt[:, 2 * H:3 * H]
        hn = tape.hn[t]
        dn_pre = dh_t * (1 - z) * (1 - n * n)
        dz_pre = dh_t * (tape.h_prev[t] - n) * z * (1 - z)
        dr_pre = dn_pre * hn * r * (1 - r)
        dgx[t] = np.where(m, np.concatenate([dr_pre, dz_pre, dn_pre], axis=1), 0)
        dgh[t] = np.where(m, np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1), 0)
        dh = np.where(m, dgh[t] @ tape.weight_hh + dh_t * z, dh)

    grads = _param_grads(tape, dgx, dgh)
    grads["h0"] = dh
    return _ordered(grads, ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"))


# ----------------------------------------------------------------------------------------------
# Stacked and bidirectional layers, built on the single-layer functions above
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackedTape:
    """Tape of :func:`stacked_forward`: one single-layer tape per (layer, direction), and the masks."""

    cell: str
    num_layers: int
    num_directions: int
    tapes: list[Any]
    dropout_masks: list[Array]
    param_suffixes: list[str]


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def stacked_forward(
    cell: str,
    x: ArrayLike,
    h0: ArrayLike,
    c0: ArrayLike | None,
    params: dict[str, ArrayLike],
    *,
    num_layers: int,
    bidirectional: bool = False,
    nonlinearity: str = "tanh",
    lengths: ArrayLike | None = None,
    dropout_masks: list[ArrayLike] | tuple[ArrayLike, ...] = (),
) -> tuple[Array, Array, Array | None, StackedTape]:
    """Forward of ``torch.nn.{RNN,LSTM,GRU}`` with several layers and directions (time-major).

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    x : array, shape (T, B, I)
    h0 : array, shape (L*D, B, P)
        Initial hidden states, index ``layer * D + direction`` (P = proj_size or H).
    c0 : array, shape (L*D, B, H), or None for RNN/GRU
    params : dict
        Torch's ``state_dict()`` names: ``weight_ih_l{k}[_reverse]``, ``weight_hh_...``,
        optional ``bias_ih_...``/``bias_hh_...`` and (LSTM) ``weight_hr_...``.
    num_layers : int
    bidirectional : bool
    nonlinearity : {"tanh", "relu"}
        RNN only.
    lengths : integer array of shape (B,), optional
    dropout_masks : sequence of L-1 arrays of shape (T, B, D*P)
        Multiplied into the outputs of layers 0 .. L-2 (inverted dropout masks); empty: none.

    Returns
    -------
    y : array, shape (T, B, D*P)
    h_n : array, shape (L*D, B, P)
    c_n : array, shape (L*D, B, H), or None
    tape : StackedTape
    """
    if cell not in ("rnn", "lstm", "gru"):
        raise ValueError(f"cell must be 'rnn', 'lstm' or 'gru', got {cell!r}")
    D = 2 if bidirectional else 1
    masks = [np.asarray(m) for m in dropout_masks]
    if masks and len(masks) != num_layers - 1:
        raise ValueError(f"dropout_masks must hold {num_layers - 1} arrays (one per layer but the last), got {len(masks)}")
    h0a = np.asarray(h0)
    c0a = None if c0 is None else np.asarray(c0)
    inp = np.asarray(x)
    tapes, suffixes, h_n, c_n = [], [], [], []
    for k in range(num_layers):
        outs = []
        for d in range(D):
            sfx = _suffix(k, d)
            idx = k * D + d
            w = [params[f"weight_ih{sfx}"], params[f"weight_hh{sfx}"],
                 params.get(f"bias_ih{sfx}"), params.get(f"bias_hh{sfx}")]  # fmt: skip
            kw: dict[str, Any] = {"lengths": lengths, "reverse": d == 1}
            if cell == "lstm":
                assert c0a is not None
                y, h, c, tape = lstm_forward(inp, h0a[idx], c0a[idx], *w, weight_hr=params.get(f"weight_hr{sfx}"), **kw)
                c_n.append(c)
            elif cell == "gru":
                y, h, tape = gru_forward(inp, h0a[idx], *w, **kw)
            else:
                y, h, tape = rnn_forward(inp, h0a[idx], *w, nonlinearity=nonlinearity, **kw)
            outs.append(y)
            h_n.append(h)
            tapes.append(tape)
            suffixes.append(sfx)
        inp = np.concatenate(outs, axis=2)
        if masks and k < num_layers - 1:
            inp = inp * masks[k]
    tape = StackedTape(cell, num_layers, D, tapes, masks, suffixes)
    return inp, np.stack(h_n), (np.stack(c_n) if cell == "lstm" else None), tape


def stacked_backward(
    tape: StackedTape, dy: ArrayLike, dh_n: ArrayLike | None = None, dc_n: ArrayLike | None = None
) -> dict[str, Array | None]:
    """Backward of :func:`stacked_forward`.

    Returns
    -------
    dict
        ``"x"``, ``"h0"`` (and ``"c0"``) and one entry per parameter, named as in ``params``.
    """
    L, D = tape.num_layers, tape.num_directions
    d_out = np.asarray(dy)
    dh_all = None if dh_n is None else np.asarray(dh_n)
    dc_all = None if dc_n is None else np.asarray(dc_n)
    grads: dict[str, Array | None] = {}
    dh0: list[Array] = [None] * (L * D)  # type: ignore[list-item]
    dc0: list[Array] = [None] * (L * D)  # type: ignore[list-item]
    for k in reversed(range(L)):
        if tape.dropout_masks and k < L - 1:
            d_out = d_out * tape.dropout_masks[k]
        P = d_out.shape[2] // D
        d_in = None
        for d in range(D):
            idx = k * D + d
            dy_d = d_out[:, :, d * P:(d + 1) * P]
            dh = None if dh_all is None else dh_all[idx]
            if tape.cell == "lstm":
                g = lstm_backward(tape.tapes[idx], dy_d, dh, None if dc_all is None else dc_all[idx])
                dc0[idx] = g["c0"]
            elif tape.cell == "gru":
                g = gru_backward(tape.tapes[idx], dy_d, dh)
            else:
                g = rnn_backward(tape.tapes[idx], dy_d, dh)
            dh0[idx] = g["h0"]
            d_in = g["x"] if d_in is None else d_in + g["x"]
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
                if g.get(kind) is not None:
                    grads[f"{kind}{tape.param_suffixes[idx]}"] = g[kind]
        d_out = d_in
    out: dict[str, Array | None] = {"x": d_out, "h0": np.stack(dh0)}
    if tape.cell == "lstm":
        out["c0"] = np.stack(dc0)
    out.update(grads)
    return out
