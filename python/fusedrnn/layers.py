"""The layer classes :class:`RNN`, :class:`LSTM` and :class:`GRU` (``torch.nn``'s contract on NumPy).

A layer owns its parameters (NumPy arrays named as in ``torch.nn``'s ``state_dict()``), runs
forward through :mod:`fusedrnn.functional`, keeps the tape of its most recent forward when
gradients may be needed (training mode, outside :class:`fusedrnn.no_grad`), and ``backward``
returns the input gradients and writes the parameter gradients into ``layer.grads``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Any, Callable, ClassVar

import numpy as np

from . import _checks, functional
from ._grad_mode import is_grad_enabled

__all__ = ["RNN", "LSTM", "GRU"]

_PARAM_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


class _Recurrent:
    """Shared machinery of the three layer classes (not public)."""

    _gates: ClassVar[int]
    _has_cell_state: ClassVar[bool] = False
    _cell_name: str  # functional's name of the cell: "lstm", "gru", "rnn_tanh" or "rnn_relu"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype: Any = np.float32,
        device: str = "cpu",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.num_layers = _checks.positive_int(num_layers, "num_layers")
        for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"proj_size must be an int >= 0, got {proj_size!r}")
        if proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), got {proj_size}")
        if not isinstance(device, str):
            raise TypeError(f"device must be a str ('cpu'), got {type(device).__name__}")
        if device != "cpu" and device.split(":")[0] != "cuda":
            raise ValueError(f"device must be 'cpu', got {device!r}")
        if device != "cpu":  # the CUDA kernels run through fusedrnn.functional/.torch on device arrays
            raise NotImplementedError(
                f"device={device!r}: the layer classes keep their parameters on the CPU for now; on a GPU use "
                "fusedrnn.torch with CUDA tensors, or fusedrnn.functional with CuPy/torch CUDA arrays"
            )
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        self.dtype = _checks.kernel_dtype(dtype)
        self.device = device
        self.training = True
        try:
            self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"seed must be None, an int >= 0 or a numpy Generator, got {seed!r} ({exc})") from exc
        self._params: dict[str, np.ndarray] = {}
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes():  # torch's order and initialisation: U(-1/sqrt(H), 1/sqrt(H))
            param = _checks.empty(shape, self.dtype)  # MemoryError for sizes that cannot exist
            param[...] = self._rng.uniform(-bound, bound, shape)
            self._params[name] = param
        self.grads: dict[str, np.ndarray] = {k: np.zeros_like(v) for k, v in self._params.items()}
        self._tape: dict[str, Any] | None = None
        self._packed: dict[str, functional.PackedWeights] | None = None

    # ------------------------------------------------------------------ parameters
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self) -> int:
        """Size of h and of each direction's output: proj_size if set, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        GH, H, P = self._gates * self.hidden_size, self.hidden_size, self._out_size
        shapes = []
        for k in range(self.num_layers):
            in_size = self.input_size if k == 0 else P * self.num_directions
            for suffix in self._suffixes(k):
                shapes += [(f"weight_ih{suffix}", (GH, in_size)), (f"weight_hh{suffix}", (GH, P))]
                if self.bias:
                    shapes += [(f"bias_ih{suffix}", (GH,)), (f"bias_hh{suffix}", (GH,))]
                if self.proj_size:
                    shapes += [(f"weight_hr{suffix}", (P, H))]
        return shapes

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The live parameter arrays, named and shaped as ``torch.nn``'s ``state_dict()``.

        The arrays are the layer's own: updating them in place (an optimizer step) changes the
        layer. Copy them to keep a snapshot.
        """
        return dict(self._params)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Copy parameters in from ``state_dict`` (NumPy arrays or CPU torch tensors).

        Raises
        ------
        ValueError
            If a key is missing or unexpected, or an array has the wrong shape (the message names it).
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for name, target in self._params.items():
            value = state_dict[name]
            if hasattr(value, "detach"):  # a torch tensor (bfloat16, which NumPy lacks, widened exactly)
                try:
                    t = value.detach().cpu().resolve_conj().resolve_neg()
                    value = (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
                except (TypeError, RuntimeError) as exc:  # sparse, meta, ... (NotImplementedError is a RuntimeError)
                    raise TypeError(
                        f"state_dict[{name!r}] must be a dense floating-point tensor with data, got {exc}"
                    ) from exc
            arr = _checks.float_array(value, f"state_dict[{name!r}]", self.dtype)
            _checks.shape(arr, f"state_dict[{name!r}]", target.shape)
            if any(np.may_share_memory(arr, p) for p in self._params.values()):
                arr = arr.copy()  # a view of this layer's own parameters: keep it from the copies below
            staged[name] = arr
        for name, arr in staged.items():
            np.copyto(self._params[name], arr)

    def zero_grad(self) -> None:
        """Set every entry of ``grads`` to zero."""
        for g in self.grads.values():
            g.fill(0)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> _Recurrent:
        """Training mode (the default): forwards keep a tape for :meth:`backward`, dropout is on."""
        self.training = bool(mode)
        return self

    def eval(self) -> _Recurrent:
        """Inference mode: no tape (:meth:`backward` is an error), no dropout."""
        return self.train(False)

    @contextlib.contextmanager
    def packed(self) -> Iterator[_Recurrent]:
        """Within the block, forwards without a tape use the weights packed once on entry.

        Every forward packs its weights into the layout the kernels read; for one step at a time
        (generation) that is most of the call (``functional.pack_weights``). Inside ``with
        layer.packed():`` the forwards that keep no tape (``eval()`` or ``no_grad()``) skip it and
        use the weights as they were on entry; forwards that keep a tape read the parameters as
        always. Leaving the block frees the packed copies.
        """
        cell = self._cell_name
        p = self._params
        packed = {}
        for k in range(self.num_layers):
            for suffix in self._suffixes(k):
                packed[suffix] = functional.pack_weights(
                    cell, p[f"weight_ih{suffix}"], p[f"weight_hh{suffix}"], p.get(f"bias_ih{suffix}"),
                    p.get(f"bias_hh{suffix}"), weight_hr=p.get(f"weight_hr{suffix}"),
                )  # fmt: skip
        previous, self._packed = self._packed, packed
        try:
            yield self
        finally:
            self._packed = previous

    # ------------------------------------------------------------------ forward / backward
    def _state_shapes(self, B: int | None) -> list[tuple[int, ...]]:
        """Shapes of h (and c): (num_layers * num_directions, [B,] size)."""
        LD = self.num_layers * self.num_directions
        sizes = [self._out_size, self.hidden_size] if self._has_cell_state else [self._out_size]
        return [(LD, n) if B is None else (LD, B, n) for n in sizes]

    def _run_forward(self, x: Any, state: Any, lengths: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        x_arr = _checks.float_array(x, "x", self.dtype)
        if x_arr.ndim not in (2, 3) or x_arr.shape[-1] != self.input_size:
            order = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(
                f"x must have shape {order} or (T, I) unbatched, with I = input_size = {self.input_size}; "
                f"got {x_arr.shape}"
            )
        unbatched = x_arr.ndim == 2
        xt = x_arr[:, None, :] if unbatched else (x_arr.swapaxes(0, 1) if self.batch_first else x_arr)
        T, B = xt.shape[:2]
        states = self._split_state(state, self._state_shapes(None if unbatched else B))
        if unbatched:
            states = [s[:, None, :] for s in states]
            if lengths is not None:
                lengths = np.asarray(lengths).reshape(-1)
        lengths_arr = _checks.lengths_array(lengths, T, B)

        need_tape = self.training and is_grad_enabled()
        p = self._params
        out_states: list[list[np.ndarray]] = [[] for _ in states]
        tapes, masks = [], []
        inp = xt
        for k in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes(k)):
                idx = k * self.num_directions + d
                layer_states = [s[idx] for s in states]
                if self._packed is not None and not need_tape:
                    weights = self._packed[suffix]
                    y, *new_states = weights.forward(inp, *layer_states, lengths=lengths_arr, reverse=d == 1)
                    tape = None
                else:
                    y, new_states, tape = self._cell_forward(
                        inp, layer_states, p[f"weight_ih{suffix}"], p[f"weight_hh{suffix}"],
                        p.get(f"bias_ih{suffix}"), p.get(f"bias_hh{suffix}"), p.get(f"weight_hr{suffix}"),
                        lengths_arr, d == 1, need_tape,
                    )  # fmt: skip
                outs.append(y)
                tapes.append(tape)
                for out, s in zip(out_states, new_states):
                    out.append(s)
            if len(outs) == 1:
                inp = outs[0]
            else:  # into pooled memory (_checks.empty), as the kernels' own outputs
                width = sum(o.shape[2] for o in outs)
                inp = np.concatenate(outs, axis=2, out=_checks.empty((T, B, width), self.dtype))
            if self.dropout and self.training and k < self.num_layers - 1:
                keep = 1.0 - self.dropout  # inverted dropout: kept units scaled by 1/keep
                mask = (self._rng.random(inp.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                masks.append(mask)
                inp = inp * mask
        y = inp
        finals = [np.stack(s) for s in out_states]
        if unbatched:
            y, finals = y[:, 0], [s[:, 0] for s in finals]
        elif self.batch_first:
            y = y.swapaxes(0, 1)
        self._tape = None
        if need_tape:
            self._tape = {"tapes": tapes, "masks": masks, "y_shape": y.shape, "unbatched": unbatched, "B": B}
        return y, finals

    def _split_state(
        self, state: Any, shapes: list[tuple[int, ...]], names: tuple[str, str] = ("h0", "c0")
    ) -> list[np.ndarray]:
        """``state`` (h, or (h, c) for LSTM) as arrays of ``shapes``; ``names`` name them in errors."""
        cls = type(self).__name__
        names = names if self._has_cell_state else names[:1]
        if state is None:
            return [np.zeros(shape, self.dtype) for shape in shapes]
        if self._has_cell_state:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(
                    f"{cls} {'/'.join(names)}: expected a tuple ({', '.join(names)}) of arrays of shapes "
                    f"{shapes[0]} and {shapes[1]}"
                )
            parts = list(state)
        else:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{cls} {names[0]} must be one array of shape {shapes[0]}, not a {type(state).__name__}")
            parts = [state]
        arrays = []
        for name, part, shape in zip(names, parts, shapes):
            arr = _checks.float_array(part, name, self.dtype)
            _checks.shape(arr, name, shape)
            arrays.append(arr)
        return arrays

    def backward(self, dy: Any, state_grad: Any = None, *, accumulate: bool = False) -> tuple[np.ndarray, Any]:
        """Backpropagate through the most recent forward.

        Parameters
        ----------
        dy : array
            Gradient of the loss with respect to the forward's output ``y`` (same shape).
        state_grad : array, tuple of arrays, or None
            Gradient with respect to the final state (``h_n``, or ``(h_n, c_n)`` for LSTM);
            None means zeros.
        accumulate : bool
            Add the parameter gradients to ``grads`` instead of overwriting them.

        Returns
        -------
        dx : ndarray
            Gradient with respect to ``x`` (same shape as ``x``).
        dstate : ndarray or tuple of ndarrays
            Gradient with respect to the initial state (``dh0``, or ``(dh0, dc0)`` for LSTM).
        """
        if not isinstance(accumulate, (bool, np.bool_)):
            raise TypeError(f"accumulate must be a bool, got {type(accumulate).__name__}")
        rec = self._tape
        if rec is None:
            raise RuntimeError(
                "backward() needs the tape of a forward run in training mode outside fusedrnn.no_grad(); "
                "call the layer first (and not after eval())"
            )
        P, D = self._out_size, self.num_directions
        unbatched = rec["unbatched"]
        dy_arr = _checks.float_array(dy, "dy", self.dtype)
        _checks.shape(dy_arr, "dy", rec["y_shape"], "(the shape of y)")
        dstates = self._split_state(state_grad, self._state_shapes(None if unbatched else rec["B"]), ("dh_n", "dc_n"))
        if unbatched:
            dy_arr = dy_arr[:, None, :]
            dstates = [s[:, None, :] for s in dstates]
        elif self.batch_first:
            dy_arr = dy_arr.swapaxes(0, 1)

        grads: dict[str, np.ndarray] = {}
        d_initial: list[list[Any]] = [[None] * len(rec["tapes"]) for _ in dstates]
        d_out = dy_arr
        for k in reversed(range(self.num_layers)):
            if k < len(rec["masks"]):
                d_out = d_out * rec["masks"][k]
            d_in = None
            for d, suffix in enumerate(self._suffixes(k)):
                idx = k * D + d
                g = self._cell_backward(rec["tapes"][idx], d_out[:, :, d * P : (d + 1) * P], [s[idx] for s in dstates])
                d_in = g["x"] if d_in is None else np.add(d_in, g["x"], out=d_in)  # d_in: this call's own array
                for name, dinit in zip(("h0", "c0"), d_initial):
                    dinit[idx] = g[name]
                for kind in _PARAM_KINDS:
                    if g.get(kind) is not None:
                        grads[f"{kind}{suffix}"] = g[kind]
            d_out = d_in
        for name, g in grads.items():
            if accumulate:
                self.grads[name] += g
            else:
                np.copyto(self.grads[name], g)
        dx = d_out[:, 0] if unbatched else (d_out.swapaxes(0, 1) if self.batch_first else d_out)
        d_states = [np.stack(s) for s in d_initial]
        if unbatched:
            d_states = [s[:, 0] for s in d_states]
        return dx, (tuple(d_states) if self._has_cell_state else d_states[0])

    # ------------------------------------------------------------------ per cell
    def _cell_forward(
        self, x: np.ndarray, states: list[np.ndarray], w_ih: np.ndarray, w_hh: np.ndarray,
        b_ih: np.ndarray | None, b_hh: np.ndarray | None, w_hr: np.ndarray | None, lengths: np.ndarray | None,
        reverse: bool, need_tape: bool,
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:  # fmt: skip
        raise NotImplementedError

    def _cell_backward(self, tape: Any, dy: np.ndarray, dstates: list[np.ndarray]) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ printing
    def __repr__(self) -> str:
        s = f"{type(self).__name__}({self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += self._extra_repr()
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype}"
        return s + ")"

    def _extra_repr(self) -> str:
        return ""


class LSTM(_Recurrent):
    """Long short-term memory layer with ``torch.nn.LSTM``'s contract, on NumPy arrays.

    Gates i, f, g, o: ``c' = sig(f) c + sig(i) tanh(g)``, ``h' = sig(o) tanh(c')``.

    Parameters
    ----------
    input_size, hidden_size : int
        Features of the input and of the state (>= 1).
    num_layers : int
        Stacked layers; layer k+1 reads layer k's output (both directions concatenated).
    bias : bool
        Whether the layer has ``bias_ih``/``bias_hh``.
    batch_first : bool
        Input and output as (B, T, features) instead of (T, B, features); states stay (L*D, B, H).
    dropout : float in [0, 1)
        Dropout on each layer's output except the last, in training mode only (seedable masks,
        reused by :meth:`backward`).
    bidirectional : bool
        Add a reverse direction per layer; outputs are concatenated as torch does.
    proj_size : int
        With ``0 < proj_size < hidden_size``, ``h = W_hr (o * tanh(c))`` of size proj_size
        (parameters ``weight_hr_l{k}``); outputs and ``h`` have that size, ``c`` stays hidden_size.
    dtype : float32 or float64
    device : "cpu"
    seed : int, numpy Generator or None
        Seeds the initialisation ``U(-1/sqrt(H), 1/sqrt(H))`` and the dropout masks.

    Examples
    --------
    >>> lstm = fusedrnn.LSTM(10, 20)
    >>> y, (h_n, c_n) = lstm(x)                       # x: (T, B, 10)
    >>> dx, (dh0, dc0) = lstm.backward(dy)            # fills lstm.grads
    """

    _gates = 4
    _cell_name = "lstm"
    _has_cell_state = True

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Run the layer.

        Parameters
        ----------
        x : array, shape (T, B, input_size), (B, T, input_size) with batch_first, or (T, input_size)
        hx : tuple (h0, c0) of arrays of shape (num_layers * num_directions, B, hidden_size), optional
        lengths : integers of shape (B,), values in [1, T], optional
            Real steps per sequence (as ``pack_padded_sequence``; unsorted is fine).

        Returns
        -------
        y : ndarray, shape (T, B, num_directions * hidden_size) (batch_first: (B, T, ...))
        (h_n, c_n) : ndarrays, shape (num_layers * num_directions, B, hidden_size)
        """
        y, (h_n, c_n) = self._run_forward(x, hx, lengths)
        return y, (h_n, c_n)

    def _cell_forward(self, x, states, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_tape):  # type: ignore[no-untyped-def]
        y, h_n, c_n, tape = functional.lstm_forward(
            x, states[0], states[1], w_ih, w_hh, b_ih, b_hh, weight_hr=w_hr, lengths=lengths, reverse=reverse,
            need_tape=need_tape,
        )  # fmt: skip
        return y, [h_n, c_n], tape

    def _cell_backward(self, tape, dy, dstates):  # type: ignore[no-untyped-def]
        return functional.lstm_backward(tape, dy, dstates[0], dstates[1])


class _SingleState(_Recurrent):
    _forward_fn: ClassVar[Callable[..., Any]]
    _backward_fn: ClassVar[Callable[..., Any]]

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the layer.

        Parameters
        ----------
        x : array, shape (T, B, input_size), (B, T, input_size) with batch_first, or (T, input_size)
        hx : array of shape (num_layers * num_directions, B, hidden_size), optional
        lengths : integers of shape (B,), values in [1, T], optional

        Returns
        -------
        y : ndarray, shape (T, B, num_directions * hidden_size) (batch_first: (B, T, ...))
        h_n : ndarray, shape (num_layers * num_directions, B, hidden_size)
        """
        y, (h_n,) = self._run_forward(x, hx, lengths)
        return y, h_n

    def _cell_backward(self, tape, dy, dstates):  # type: ignore[no-untyped-def]
        return type(self)._backward_fn(tape, dy, dstates[0])


class GRU(_SingleState):
    """Gated recurrent unit layer with ``torch.nn.GRU``'s contract, on NumPy arrays.

    Gates r, z, n: ``n = tanh(W_n x + b_wn + r (R_n h + b_rn))``, ``h' = (1 - z) n + z h``.
    Parameters as :class:`LSTM` (without ``proj_size``); the state is one array ``h``.
    """

    _gates = 3
    _cell_name = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype: Any = np.float32,
        device: str = "cpu",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype=dtype, device=device, seed=seed,
        )  # fmt: skip

    def _cell_forward(self, x, states, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_tape):  # type: ignore[no-untyped-def]
        y, h_n, tape = functional.gru_forward(
            x, states[0], w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, need_tape=need_tape
        )
        return y, [h_n], tape

    _backward_fn = staticmethod(functional.gru_backward)


class RNN(_SingleState):
    """Elman RNN layer with ``torch.nn.RNN``'s contract: ``h' = act(W x + b_w + R h + b_r)``.

    Parameters as :class:`GRU`, plus ``nonlinearity`` ("tanh" or "relu") in torch's position.
    """

    _gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype: Any = np.float32,
        device: str = "cpu",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._cell_name = "rnn_" + nonlinearity
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype=dtype, device=device, seed=seed,
        )  # fmt: skip

    def _cell_forward(self, x, states, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_tape):  # type: ignore[no-untyped-def]
        y, h_n, tape = functional.rnn_forward(
            x, states[0], w_ih, w_hh, b_ih, b_hh, nonlinearity=self.nonlinearity,
            lengths=lengths, reverse=reverse, need_tape=need_tape,
        )  # fmt: skip
        return y, [h_n], tape

    _backward_fn = staticmethod(functional.rnn_backward)

    def _extra_repr(self) -> str:
        return f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else ""
