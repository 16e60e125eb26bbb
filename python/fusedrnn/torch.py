"""``torch.nn.RNN``, ``LSTM`` and ``GRU`` run by fusedrnn's kernels: change one import.

>>> import torch
>>> from fusedrnn.torch import LSTM          # instead of torch.nn.LSTM
>>> lstm = LSTM(10, 20, num_layers=2, batch_first=True)
>>> y, (h_n, c_n) = lstm(torch.randn(3, 5, 10))
>>> y.sum().backward()                       # gradients through fusedrnn's BPTT kernels

The classes subclass ``torch.nn.RNN``/``LSTM``/``GRU``: the constructor, the parameters (same
names, shapes and initialisation), ``state_dict``, ``.to()``/``.double()``, ``isinstance``
checks and the call signature (``hx``, ``batch_first``, unbatched 2-D input, ``PackedSequence``
in and out, ``proj_size``, ``dropout``, ``bidirectional``) are torch's own. Only ``forward``
differs: each layer and direction is one :class:`torch.autograd.Function` whose forward and
backward call :mod:`fusedrnn.functional` on NumPy views of CPU tensors (float32 or float64) or,
in a CUDA-enabled build with a GPU, on CUDA tensors in place through :mod:`fusedrnn.cuda`
(torch's current stream; float16/bfloat16 too). Dropout between layers uses ``torch.nn.functional.dropout`` (torch's generator), so it
differs from ``torch.nn``'s masks, as any two dropout draws do. Double backward is not supported.

For generation on the CPU (one step per call), ``with module.packed():`` packs the weights once
for the forwards inside it that record no graph (:meth:`LSTM.packed`).

Bad input raises ``ValueError``/``TypeError`` naming the argument (torch raises ``RuntimeError``
for some of the same mistakes).

Training on several processes or machines: wrap the module in
``torch.nn.parallel.DistributedDataParallel`` as usual (see the README).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import cuda, functional

__all__ = ["RNN", "LSTM", "GRU"]

_FLOAT_DTYPES = (torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)  # CUDA only


def _array(t: torch.Tensor | None) -> Any:
    """What fusedrnn.functional takes: a NumPy view of a CPU tensor (a copy only where torch must
    resolve a lazy conjugate or negation); a CUDA tensor as it is (the CUDA backend reads it in
    place, on torch's current stream)."""
    if t is None or t.is_cuda:
        return t
    return t.detach().resolve_conj().resolve_neg().numpy()


def _tensor(a: Any) -> torch.Tensor | None:
    """A kernel's output as a tensor: NumPy arrays are wrapped without a copy."""
    return a if a is None or isinstance(a, torch.Tensor) else torch.from_numpy(a)


class _SecondOrder(torch.autograd.Function):
    """The identity on first-order gradients; differentiating them again raises."""

    @staticmethod
    def forward(ctx, *grads):  # type: ignore[no-untyped-def]
        return tuple(g.view_as(g) for g in grads)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[no-untyped-def]
        raise RuntimeError(
            "fusedrnn.torch does not support double backward (differentiating a gradient taken with "
            "create_graph=True through one of its layers)"
        )


def _first_order_only(backward: Callable[..., Any]) -> Callable[..., Any]:
    """A backward that is not differentiable itself. Under ``create_graph=True`` (grad mode on in the
    backward) its gradients pass through _SecondOrder, so that differentiating them raises.

    ``torch.autograd.function.once_differentiable`` raises only when an incoming gradient requires
    grad; for a loss linear in the outputs (``y.sum()``) none does, and the gradients, which depend
    on x and the weights through the tape (NumPy copies, invisible to autograd), came back as
    constants: a gradient penalty silently lost its terms through this layer.
    """

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: Any) -> Any:
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled():
            return outputs
        present = [i for i, g in enumerate(outputs) if g is not None]
        if not present:
            return outputs
        guarded = _SecondOrder.apply(*(outputs[i].detach().requires_grad_() for i in present))
        result = list(outputs)
        for i, g in zip(present, guarded):
            result[i] = g
        return tuple(result)

    return wrapper


class _LayerFunction(torch.autograd.Function):
    """One layer, one direction: fusedrnn.functional's forward and backward as an autograd node.

    apply(grad_enabled, cell, reverse, lengths, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr) -> (y, h_n, c_n);
    c0/c_n are None except for the LSTM, b_* may both be None, w_hr only for a projected LSTM.
    ``grad_enabled`` is the caller's ``torch.is_grad_enabled()`` (always False inside forward):
    no tape is kept under ``torch.no_grad()``/``inference_mode()``.
    """

    @staticmethod
    def forward(ctx, grad_enabled, cell, reverse, lengths, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):  # type: ignore[no-untyped-def]
        need_tape = grad_enabled and any(ctx.needs_input_grad[4:])
        y, h_n, c_n, tape = functional._forward(
            cell, _array(x), _array(h0), _array(c0), _array(w_ih), _array(w_hh), _array(b_ih), _array(b_hh),
            lengths, reverse, need_tape, _array(w_hr),
        )  # fmt: skip
        ctx.tape = tape
        ctx.has_c = c0 is not None
        return _tensor(y), _tensor(h_n), _tensor(c_n)

    @staticmethod
    @_first_order_only
    def backward(ctx, dy, dh_n, dc_n):  # type: ignore[no-untyped-def]
        tape = ctx.tape
        g = functional._backward(tape.cell, tape, _array(dy), _array(dh_n), _array(dc_n) if ctx.has_c else None)
        names = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        return (None, None, None, None) + tuple(_tensor(g.get(n)) for n in names)


class _FusedForward:
    """The forward shared by the three modules (mixed in before ``torch.nn.RNNBase``'s subclasses)."""

    _cell: str
    _has_cell_state = False
    _packed: tuple[torch.dtype, list[functional.PackedWeights]] | None = None  # inside packed()

    def _cell_name(self) -> str:
        return self._cell

    @contextlib.contextmanager
    def packed(self) -> Iterator[Any]:
        """Within the block, CPU forwards that record no graph use the weights packed once on entry.

        Every forward packs its weights into the layout the kernels read; for one step at a time
        (generation) that is most of the call (``fusedrnn.functional.pack_weights``). Inside
        ``with module.packed():``, forwards under ``torch.no_grad()``/``inference_mode()`` (or
        with nothing requiring a gradient) skip it and use the parameters' values at entry:
        changing them inside the block reaches only forwards that record a graph. CPU parameters
        only (float32 or float64); leaving the block frees the packed copies.
        """
        weights = [getattr(self, n) for n in self._flat_weights_names]
        if weights[0].is_cuda or weights[0].dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.packed(): CPU float32/float64 parameters only, got "
                            f"{weights[0].dtype} on {weights[0].device}")  # fmt: skip
        P = self.proj_size if getattr(self, "proj_size", 0) else self.hidden_size
        per_dir = len(weights) // (self.num_layers * (2 if self.bidirectional else 1))
        packed = []
        for start in range(0, len(weights), per_dir):
            params = [_array(w) for w in weights[start : start + per_dir]]
            biases = (params[2], params[3]) if self.bias else (None, None)
            w_hr = params[-1] if P != self.hidden_size else None
            packed.append(functional.pack_weights(self._cell_name(), params[0], params[1], *biases, weight_hr=w_hr))
        previous, self._packed = self._packed, (weights[0].dtype, packed)
        try:
            yield self
        finally:
            self._packed = previous

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:  # noqa: A002 (torch's name)
        name = type(self).__name__
        P = self.proj_size if getattr(self, "proj_size", 0) else self.hidden_size
        D = 2 if self.bidirectional else 1
        LD = self.num_layers * D

        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths_t = pad_packed_sequence(input)  # original batch order, (T, B, I)
            lengths = lengths_t.numpy().astype(np.int64)
            unbatched = False
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"{name} input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"{name} input must be 2-D (T, I) unbatched or 3-D, got {input.dim()}-D")
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
            lengths = None
        if x.dtype not in _FLOAT_DTYPES and not (x.is_cuda and x.dtype in _HALF_DTYPES):
            raise TypeError(f"{name} input must be float32 or float64 (or, on CUDA, float16/bfloat16), got {x.dtype}")
        if x.device.type not in ("cpu", "cuda") or (x.is_cuda and not cuda.cuda_available()):
            raise ValueError(f"{name} input is on {x.device}, which fusedrnn cannot run here (cuda_available() is False)")
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"{name} input must have {self.input_size} features (input_size), got {I}")
        weights = [getattr(self, n) for n in self._flat_weights_names]
        if weights[0].device != x.device:
            raise ValueError(f"{name} input is on {x.device} but the parameters are on {weights[0].device}")
        if weights[0].dtype != x.dtype:
            raise TypeError(f"{name} input has dtype {x.dtype} but the parameters are {weights[0].dtype}")
        states = self._initial_states(hx, LD, B, P, unbatched, x)

        cell = self._cell_name()
        grad_enabled = torch.is_grad_enabled()
        per_dir = len(weights) // LD
        out_states: list[list[torch.Tensor]] = [[] for _ in states]
        inp = x
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                idx = k * D + d
                params = weights[idx * per_dir : (idx + 1) * per_dir]
                w_ih, w_hh = params[0], params[1]
                b_ih, b_hh = (params[2], params[3]) if self.bias else (None, None)
                w_hr = params[-1] if P != self.hidden_size else None
                c0 = states[1][idx] if self._has_cell_state else None
                tensors = (inp, states[0][idx], c0, *params)
                graph = grad_enabled and any(t is not None and t.requires_grad for t in tensors)
                if self._packed is not None and not graph and self._packed[0] == inp.dtype and not inp.is_cuda:
                    outs_np = self._packed[1][idx].forward(
                        _array(inp), _array(states[0][idx]), *((_array(c0),) if c0 is not None else ()),
                        lengths=lengths, reverse=d == 1,
                    )  # fmt: skip
                    y, h_n, c_n = (_tensor(a) for a in (*outs_np, None)[:3])
                else:
                    y, h_n, c_n = _LayerFunction.apply(
                        grad_enabled, cell, d == 1, lengths, inp, states[0][idx], c0, w_ih, w_hh, b_ih, b_hh, w_hr
                    )
                outs.append(y)
                out_states[0].append(h_n)
                if self._has_cell_state:
                    out_states[1].append(c_n)
            inp = outs[0] if D == 1 else torch.cat(outs, dim=2)
            if self.dropout and self.training and k < self.num_layers - 1:
                inp = torch.nn.functional.dropout(inp, self.dropout, training=True)
        finals = [torch.stack(s) for s in out_states]

        if packed:
            order = input.sorted_indices
            y_sorted = inp if order is None else inp.index_select(1, order)
            lengths_sorted = lengths_t if order is None else lengths_t.index_select(0, order.cpu())
            data = pack_padded_sequence(y_sorted, lengths_sorted, enforce_sorted=True).data
            output: Any = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif unbatched:
            output, finals = inp.squeeze(1), [s.squeeze(1) for s in finals]
        else:
            output = inp.transpose(0, 1) if self.batch_first else inp
        return output, (tuple(finals) if self._has_cell_state else finals[0])

    def _initial_states(
        self, hx: Any, LD: int, B: int, P: int, unbatched: bool, x: torch.Tensor
    ) -> list[torch.Tensor]:
        name = type(self).__name__
        sizes = [("h0", P), ("c0", self.hidden_size)] if self._has_cell_state else [("h0", P)]
        if hx is None:
            return [x.new_zeros(LD, B, n) for _, n in sizes]
        if self._has_cell_state:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{name} hx must be a tuple (h0, c0) of tensors, got {type(hx).__name__}")
            parts = list(hx)
        else:
            if not isinstance(hx, torch.Tensor):
                raise TypeError(f"{name} hx must be a tensor, got {type(hx).__name__}")
            parts = [hx]
        states = []
        for (label, n), part in zip(sizes, parts):
            expected = (LD, n) if unbatched else (LD, B, n)
            if not isinstance(part, torch.Tensor):
                raise TypeError(f"{name} {label} must be a tensor, got {type(part).__name__}")
            if tuple(part.shape) != expected:
                raise ValueError(f"{name} {label} must have shape {expected}, got {tuple(part.shape)}")
            if part.dtype != x.dtype:
                raise TypeError(f"{name} {label} must have dtype {x.dtype} like the input, got {part.dtype}")
            if part.device != x.device:
                raise ValueError(f"{name} {label} must be on {x.device} like the input, got {part.device}")
            states.append(part.unsqueeze(1) if unbatched else part)
        return states


class LSTM(_FusedForward, torch.nn.LSTM):
    """``torch.nn.LSTM`` (same constructor and call) running fusedrnn's kernels."""

    _cell = "lstm"
    _has_cell_state = True


class GRU(_FusedForward, torch.nn.GRU):
    """``torch.nn.GRU`` (same constructor and call) running fusedrnn's kernels."""

    _cell = "gru"


class RNN(_FusedForward, torch.nn.RNN):
    """``torch.nn.RNN`` (same constructor and call, ``nonlinearity="tanh"|"relu"``) running fusedrnn's kernels."""

    def _cell_name(self) -> str:
        return "rnn_" + self.nonlinearity
