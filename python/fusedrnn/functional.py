"""One layer, one direction, every array explicit: the compiled CPU kernels.

The six functions here have the signatures of :mod:`fusedrnn.reference` (see
``docs/functional-contract.md``) and run in float32 or float64, the dtype of ``weight_ih``; the
other arrays are cast to it. Letters: T steps, B batch, I input size, H hidden size, G gates
(RNN 1, LSTM 4 in order i f g o, GRU 3 in order r z n).

Shapes: ``x (T, B, I)``, states ``(B, H)``, ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``,
biases ``(G*H,)`` or both ``None``, ``y`` and ``dy (T, B, H)``, ``lengths`` integers ``(B,)`` in
``[1, T]``. Steps ``t >= lengths[b]`` are padding: ``y`` is 0 there, the state is unchanged, a
reversed sequence starts at its last real step, and ``dy`` there is never read.

Empty sizes: ``T = 0`` gives an empty ``y`` and ``h_n = h0`` (gradients: ``dh0 = dh_n``, the
others zero); ``B = 0`` gives empty outputs and zero parameter gradients.

For inference with fixed weights, :func:`pack_weights` packs them once into the layout the
kernels read (every forward above does it per call) and :meth:`PackedWeights.forward` runs the
same forward without a tape; for one step per call (generation) that packing is most of a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _C, _checks, cuda

__all__ = [
    "Tape",
    "PackedWeights",
    "pack_weights",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Tape:
    """What a forward keeps for its backward (shapes in ``csrc/include/fusedrnn/conventions.h``).

    ``gates (T, B, G*H)`` activated gates, ``h_prev (T, B, P)`` the state entering each step,
    ``c_prev (T, B, H)`` (LSTM) likewise for the cell state, ``aux (T, B, H)`` (GRU)
    ``R_n h + b_rn``, ``m (T, B, H)`` (LSTM with projection) ``o * tanh(c)``. ``x``, ``lengths``
    and the weights are private copies, so changing the caller's arrays after the forward is
    harmless.
    """

    cell: str
    reverse: bool
    lengths: np.ndarray | None
    x: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    weight_hr: np.ndarray | None
    has_bias: bool
    gates: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray | None
    aux: np.ndarray | None
    m: np.ndarray | None

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype


def _check_weights(
    cell: str, weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any, weight_hr: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """(w_ih, w_hh, b_ih, b_hh, w_hr, has_bias): checked, of one kernel dtype, biases zero when absent."""
    G = _GATES[cell]
    w_ih = _checks.float_array(weight_ih, "weight_ih")
    dtype = _checks.kernel_dtype(w_ih.dtype)
    if w_ih.ndim != 2 or w_ih.shape[0] == 0 or w_ih.shape[0] % G or w_ih.shape[1] == 0:
        raise ValueError(f"weight_ih must have shape ({G}*H, I) with H, I >= 1, got {w_ih.shape}")
    H = w_ih.shape[0] // G
    P = H
    w_hr = None
    if weight_hr is not None:
        w_hr = _checks.float_array(weight_hr, "weight_hr", dtype)
        if w_hr.ndim != 2 or w_hr.shape[1] != H or not 1 <= w_hr.shape[0] < H:
            raise ValueError(f"weight_hr must have shape (P, {H}) (proj_size P, H) with 1 <= P < H, got {w_hr.shape}")
        P = w_hr.shape[0]
    w_hh = _checks.float_array(weight_hh, "weight_hh", dtype)
    _checks.shape(w_hh, "weight_hh", (G * H, P), "(G*H, P)" if weight_hr is not None else "(G*H, H)")
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("bias_ih and bias_hh must both be arrays or both be None")
    has_bias = bias_ih is not None
    if has_bias:
        b_ih = _checks.float_array(bias_ih, "bias_ih", dtype)
        b_hh = _checks.float_array(bias_hh, "bias_hh", dtype)
        _checks.shape(b_ih, "bias_ih", (G * H,), "(G*H,)")
        _checks.shape(b_hh, "bias_hh", (G * H,), "(G*H,)")
    else:
        b_ih = b_hh = np.zeros(G * H, dtype)
    return w_ih, w_hh, b_ih, b_hh, w_hr, has_bias


class PackedWeights:
    """One layer's weights, copied and packed once for any number of inference forwards.

    Made by :func:`pack_weights`. Every forward through the compiled kernels packs ``weight_ih``
    and ``weight_hh`` into the layout its inner loops read: for short sequences or one step at a
    time (generation), that packing is most of the call. ``forward`` skips it. A snapshot:
    changing the arrays it was made from afterwards changes nothing here (pack again). CPU only,
    no tape; the layout belongs to the instruction set this process runs, so it is not picklable.
    """

    def __init__(self, cell: str, weights: tuple[Any, ...]) -> None:
        w_ih, w_hh, b_ih, b_hh, w_hr, _ = weights
        self.cell = cell
        self.dtype = w_ih.dtype
        self.input_size = w_ih.shape[1]
        self.hidden_size = w_ih.shape[0] // _GATES[cell]
        self.proj_size = w_hr.shape[0] if w_hr is not None else 0
        self._bias_ih = np.array(b_ih, order="C")  # added by the input GEMM, which reads it as is
        P = self.proj_size or self.hidden_size
        self._packed = _C.pack_weights(
            getattr(_C.CellKind, cell), self.input_size, self.hidden_size, P, np.ascontiguousarray(w_ih),
            np.ascontiguousarray(w_hh), np.ascontiguousarray(b_hh),
            np.ascontiguousarray(w_hr) if w_hr is not None else None,
        )  # fmt: skip

    def __reduce__(self) -> Any:
        raise TypeError("PackedWeights cannot be pickled (its layout is this process's); pickle the weights")

    def __repr__(self) -> str:
        proj = f", proj_size={self.proj_size}" if self.proj_size else ""
        return (
            f"PackedWeights({self.cell!r}, input_size={self.input_size}, hidden_size={self.hidden_size}{proj}, "
            f"dtype={self.dtype})"
        )

    def forward(
        self, x: Any, h0: Any, c0: Any = None, *, lengths: Any = None, reverse: bool = False
    ) -> tuple[np.ndarray, ...]:
        """The cell's forward without a tape: ``(y, h_n, c_n)`` for an LSTM, ``(y, h_n)`` otherwise.

        The arguments are those of :func:`lstm_forward` (``c0`` for an LSTM only), :func:`gru_forward`
        or :func:`rnn_forward`; results are bitwise those of the same call with the weights.
        """
        lstm = self.cell == "lstm"
        if lstm and c0 is None:
            raise TypeError("c0 is required for an LSTM's packed weights")
        if not lstm and c0 is not None:
            raise TypeError(f"c0 is for an LSTM only; these weights are {self.cell!r}")
        y, h_n, c_n, _ = _forward(self.cell, x, h0, c0, None, None, None, None, lengths, reverse, False, packed=self)
        return (y, h_n, c_n) if lstm else (y, h_n)


def pack_weights(
    cell: str, weight_ih: Any, weight_hh: Any, bias_ih: Any = None, bias_hh: Any = None, *, weight_hr: Any = None
) -> PackedWeights:
    """Copy and pack one layer's weights once, for repeated inference forwards (:class:`PackedWeights`).

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn_tanh", "rnn_relu"}
    weight_ih, weight_hh, bias_ih, bias_hh, weight_hr
        As for the cell's forward (``weight_hr``: LSTM only); the dtype of ``weight_ih``
        (float32 or float64) is the dtype of every forward through the result.
    """
    if not isinstance(cell, str) or cell not in _GATES:  # (a list is unhashable: no "in" test)
        raise ValueError(f"cell must be one of {sorted(_GATES)}, got {cell!r}")
    if weight_hr is not None and cell != "lstm":
        raise ValueError(f"weight_hr is for an LSTM only, got cell {cell!r}")
    if cuda.is_device_array(weight_ih) or cuda.is_device_array(weight_hh):
        raise TypeError("pack_weights packs for the CPU kernels; the weights must be host (NumPy) arrays")
    return PackedWeights(cell, _check_weights(cell, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr))


def _forward(
    cell: str,
    x: Any,
    h0: Any,
    c0: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any,
    bias_hh: Any,
    lengths: Any,
    reverse: bool,
    need_tape: bool,
    weight_hr: Any = None,
    packed: PackedWeights | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Tape | None]:
    if packed is None and (cuda.is_device_array(x) or cuda.is_device_array(weight_ih)):  # CuPy, torch.cuda, ...
        return cuda.forward(
            cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, need_tape, weight_hr
        )
    G = _GATES[cell]
    if packed is None:
        w_ih, w_hh, b_ih, b_hh, w_hr, has_bias = _check_weights(cell, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
        dtype, I, H = w_ih.dtype, w_ih.shape[1], w_ih.shape[0] // G
        P = w_hr.shape[0] if w_hr is not None else H
    else:
        if cuda.is_device_array(x):
            raise TypeError("PackedWeights run on the CPU; x must be a host (NumPy) array")
        dtype, I, H = packed.dtype, packed.input_size, packed.hidden_size
        P = packed.proj_size or H
        w_ih = w_hh = b_hh = w_hr = None
        b_ih, has_bias = packed._bias_ih, True
    projected = P != H
    x_arr = _checks.float_array(x, "x", dtype)
    if x_arr.ndim != 3 or x_arr.shape[2] != I:
        raise ValueError(f"x must have shape (T, B, {I}) (T, B, I), got {x_arr.shape}")
    T, B = x_arr.shape[:2]
    h0_arr = _checks.float_array(h0, "h0", dtype)
    _checks.shape(h0_arr, "h0", (B, P), "(B, P)" if projected else "(B, H)")
    lstm = cell == "lstm"
    if lstm:
        c0_arr = _checks.float_array(c0, "c0", dtype)
        _checks.shape(c0_arr, "c0", (B, H), "(B, H)")
    lengths_arr = _checks.lengths_array(lengths, T, B)
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")

    empty = _checks.empty
    if need_tape:  # private copies; padding zeroed so that whatever it holds reaches no gradient
        x_c = _checks.copy(x_arr)
        if lengths_arr is not None and B:
            x_c[np.arange(T)[:, None] >= lengths_arr[None, :]] = 0
        w_ih_c, w_hh_c = _checks.copy(w_ih), _checks.copy(w_hh)
        w_hr_c = _checks.copy(w_hr) if w_hr is not None else None
    else:
        x_c = _checks.contiguous(x_arr)
        w_ih_c, w_hh_c, w_hr_c = (np.ascontiguousarray(a) if a is not None else None for a in (w_ih, w_hh, w_hr))
    y = empty((T, B, P), dtype)
    h_n = empty((B, P), dtype)
    c_n = empty((B, H), dtype) if lstm else None
    gates = empty((T, B, G * H), dtype) if need_tape else None  # without a tape: the kernels' kept scratch
    h_prev = empty((T, B, P), dtype) if need_tape else None
    c_prev = empty((T, B, H), dtype) if need_tape and lstm else None
    aux = empty((T, B, H), dtype) if need_tape and cell == "gru" else None
    m = empty((T, B, H), dtype) if need_tape and projected else None
    _C.forward(
        getattr(_C.CellKind, cell), T, B, I, H, P, bool(reverse), lengths_arr,
        x_c, np.ascontiguousarray(h0_arr), np.ascontiguousarray(c0_arr) if lstm else None,
        w_ih_c, w_hh_c, np.ascontiguousarray(b_ih), np.ascontiguousarray(b_hh) if b_hh is not None else None, w_hr_c,
        y, h_n, c_n, gates, h_prev, c_prev, aux, m, packed._packed if packed is not None else None,
    )  # fmt: skip
    tape = None
    if need_tape:
        tape = Tape(
            cell, bool(reverse), lengths_arr, x_c, w_ih_c, w_hh_c, w_hr_c, has_bias, gates, h_prev, c_prev, aux, m
        )
    return y, h_n, c_n, tape


def _backward(cell: str, tape: Any, dy: Any, dh_n: Any, dc_n: Any) -> dict[str, np.ndarray | None]:
    if isinstance(tape, cuda.CudaTape):
        return cuda.backward(cell, tape, dy, dh_n, dc_n)
    if not isinstance(tape, Tape) or tape.cell != cell:
        raise TypeError(f"tape must be the Tape returned by fusedrnn.functional's {cell.split('_')[0]}_forward")
    T, B, I = tape.x.shape
    GH, P = tape.weight_hh.shape
    H = GH // _GATES[cell]
    dtype = tape.dtype
    dy_arr = _checks.float_array(dy, "dy", dtype)
    _checks.shape(dy_arr, "dy", (T, B, P), "(T, B, P)" if P != H else "(T, B, H)")

    def state_grad(value: Any, name: str, size: int) -> np.ndarray:
        if value is None:
            return np.zeros((B, size), dtype)
        arr = _checks.float_array(value, name, dtype)
        _checks.shape(arr, name, (B, size))
        return np.ascontiguousarray(arr)

    lstm = cell == "lstm"
    projected = tape.weight_hr is not None
    dh_n_arr = state_grad(dh_n, "dh_n", P)
    dc_n_arr = state_grad(dc_n, "dc_n", H) if lstm else None
    empty = _checks.empty
    grads: dict[str, np.ndarray | None] = {"x": empty((T, B, I), dtype), "h0": empty((B, P), dtype)}
    if lstm:
        grads["c0"] = empty((B, H), dtype)
    grads["weight_ih"] = empty((GH, I), dtype)
    grads["weight_hh"] = empty((GH, P), dtype)
    db_ih, db_hh = empty((GH,), dtype), empty((GH,), dtype)
    dw_hr = empty((P, H), dtype) if projected else None
    _C.backward(
        getattr(_C.CellKind, cell), T, B, I, H, P, tape.reverse, tape.lengths,
        tape.x, tape.weight_ih, tape.weight_hh, tape.weight_hr, tape.gates, tape.h_prev, tape.c_prev, tape.aux,
        tape.m, _checks.contiguous(dy_arr), dh_n_arr, dc_n_arr,
        grads["x"], grads["h0"], grads.get("c0"), grads["weight_ih"], grads["weight_hh"], db_ih, db_hh, dw_hr,
        empty((T, B, GH), dtype), empty((T, B, GH), dtype) if cell == "gru" else None,
        empty((T, B, P), dtype) if projected else None,
    )  # fmt: skip
    grads["bias_ih"] = db_ih if tape.has_bias else None
    grads["bias_hh"] = db_hh if tape.has_bias else None
    if projected:
        grads["weight_hr"] = dw_hr
    return grads


def _rnn_cell(nonlinearity: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn_" + nonlinearity


def rnn_forward(
    x: Any,
    h0: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
    *,
    nonlinearity: str = "tanh",
    lengths: Any = None,
    reverse: bool = False,
    need_tape: bool = True,
) -> tuple[np.ndarray, np.ndarray, Tape | None]:
    """Elman RNN forward: ``h' = act(W x + b_w + R h + b_r)``, act = tanh or relu.

    Parameters
    ----------
    x : array, shape (T, B, I)
    h0 : array, shape (B, H)
    weight_ih, weight_hh : arrays, shapes (H, I) and (H, H)
    bias_ih, bias_hh : arrays of shape (H,), or both None
    nonlinearity : {"tanh", "relu"}
    lengths : integer array of shape (B,) with values in [1, T], optional
    reverse : bool
        Walk time backwards (from each sequence's last real step).
    need_tape : bool
        Keep what :func:`rnn_backward` needs; ``False`` returns ``tape=None``.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    tape : Tape or None
    """
    cell = _rnn_cell(nonlinearity)
    y, h_n, _, tape = _forward(cell, x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, need_tape)
    return y, h_n, tape


def rnn_backward(tape: Tape, dy: Any, dh_n: Any = None) -> dict[str, np.ndarray | None]:
    """Backward through time of :func:`rnn_forward`.

    Parameters
    ----------
    tape : Tape
        From the forward.
    dy : array, shape (T, B, H)
        Gradient of the loss with respect to ``y`` (ignored at padding steps).
    dh_n : array of shape (B, H), optional
        Gradient with respect to ``h_n``; None means zeros.

    Returns
    -------
    dict
        ``"x"``, ``"h0"``, ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``, ``"bias_hh"`` (the
        biases' entries are None when the forward had none).
    """
    if not isinstance(tape, (Tape, cuda.CudaTape)) or not tape.cell.startswith("rnn_"):
        raise TypeError("tape must be the Tape returned by fusedrnn.functional.rnn_forward")
    return _backward(tape.cell, tape, dy, dh_n, None)


def lstm_forward(
    x: Any,
    h0: Any,
    c0: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
    *,
    weight_hr: Any = None,
    lengths: Any = None,
    reverse: bool = False,
    need_tape: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Tape | None]:
    """LSTM forward, gates i, f, g, o: ``c' = sig(f) c + sig(i) tanh(g)``, ``h' = sig(o) tanh(c')``.

    With a projection ``weight_hr`` of shape (P, H): ``h' = W_hr (sig(o) tanh(c'))`` of size P.

    Parameters
    ----------
    x : array, shape (T, B, I)
    h0 : array, shape (B, P) (P = H without projection)
    c0 : array, shape (B, H)
    weight_ih, weight_hh : arrays, shapes (4*H, I) and (4*H, P)
    bias_ih, bias_hh : arrays of shape (4*H,), or both None
    weight_hr : array of shape (P, H) with 1 <= P < H, optional
    lengths : integer array of shape (B,) with values in [1, T], optional
    reverse : bool
    need_tape : bool

    Returns
    -------
    y : ndarray, shape (T, B, P)
    h_n : ndarray, shape (B, P)
    c_n : ndarray, shape (B, H)
    tape : Tape or None
    """
    y, h_n, c_n, tape = _forward(
        "lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, need_tape, weight_hr
    )
    assert c_n is not None
    return y, h_n, c_n, tape


def lstm_backward(tape: Tape, dy: Any, dh_n: Any = None, dc_n: Any = None) -> dict[str, np.ndarray | None]:
    """Backward through time of :func:`lstm_forward`.

    Parameters
    ----------
    tape : Tape
    dy : array, shape (T, B, P)
    dh_n : array of shape (B, P), optional (None means zeros)
    dc_n : array of shape (B, H), optional (None means zeros)

    Returns
    -------
    dict
        ``"x"``, ``"h0"``, ``"c0"``, ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``, ``"bias_hh"``,
        and ``"weight_hr"`` when the forward had a projection.
    """
    return _backward("lstm", tape, dy, dh_n, dc_n)


def gru_forward(
    x: Any,
    h0: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
    *,
    lengths: Any = None,
    reverse: bool = False,
    need_tape: bool = True,
) -> tuple[np.ndarray, np.ndarray, Tape | None]:
    """GRU forward, gates r, z, n: ``n = tanh(W_n x + b_wn + r (R_n h + b_rn))``, ``h' = (1-z) n + z h``.

    Parameters
    ----------
    x : array, shape (T, B, I)
    h0 : array, shape (B, H)
    weight_ih, weight_hh : arrays, shapes (3*H, I) and (3*H, H)
    bias_ih, bias_hh : arrays of shape (3*H,), or both None
    lengths : integer array of shape (B,) with values in [1, T], optional
    reverse : bool
    need_tape : bool

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    tape : Tape or None
    """
    y, h_n, _, tape = _forward("gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, need_tape)
    return y, h_n, tape


def gru_backward(tape: Tape, dy: Any, dh_n: Any = None) -> dict[str, np.ndarray | None]:
    """Backward through time of :func:`gru_forward`.

    Parameters
    ----------
    tape : Tape
    dy : array, shape (T, B, H)
    dh_n : array of shape (B, H), optional (None means zeros)

    Returns
    -------
    dict
        ``"x"``, ``"h0"``, ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``, ``"bias_hh"``.
    """
    return _backward("gru", tape, dy, dh_n, None)
