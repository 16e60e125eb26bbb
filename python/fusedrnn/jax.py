"""JAX functions backed by fusedrnn's compiled CPU kernels: :func:`rnn`, :func:`lstm`, :func:`gru`.

One layer, one direction, every array explicit, with the argument names, order and shapes of
:mod:`fusedrnn.functional` (``docs/functional-contract.md``), returning JAX arrays and
differentiable with :func:`jax.grad` / :func:`jax.vjp` through :func:`jax.custom_vjp`::

    import jax, jax.numpy as jnp, numpy as np
    import fusedrnn.jax as frj

    T, B, I, H = 20, 8, 16, 32
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((T, B, I)), jnp.float32)
    h0 = c0 = jnp.zeros((B, H), jnp.float32)
    params = {"weight_ih": jnp.asarray(rng.uniform(-0.2, 0.2, (4 * H, I)), jnp.float32),
              "weight_hh": jnp.asarray(rng.uniform(-0.2, 0.2, (4 * H, H)), jnp.float32),
              "bias_ih": jnp.zeros(4 * H, jnp.float32), "bias_hh": jnp.zeros(4 * H, jnp.float32)}

    @jax.jit
    def loss(params, x, lengths):
        y, h_n, c_n = frj.lstm(x, h0, c0, **params, lengths=lengths)
        return jnp.sum(h_n ** 2)

    grads = jax.grad(loss)(params, x, jnp.full(B, T))   # a dict like params

Shapes (letters: T steps, B batch, I input, H hidden, G gates: RNN 1, LSTM 4 (i f g o), GRU 3
(r z n), P the LSTM projection size, P = H without one): ``x (T, B, I)``, ``h0 (B, P)``,
``c0 (B, H)``, ``weight_ih (G*H, I)``, ``weight_hh (G*H, P)``, ``bias_ih, bias_hh (G*H,)`` or both
``None``, ``weight_hr (P, H)`` (LSTM only), ``lengths`` integers ``(B,)`` in ``[1, T]`` or ``None``;
outputs ``y (T, B, P)``, ``h_n (B, P)``, ``c_n (B, H)``. Padding steps (``t >= lengths[b]``) give
``y = 0``, leave the state alone, and pass no gradient.

Gradients flow to ``x``, the states, the weights and the biases; ``lengths`` is integer data
and gets none. Only first-order reverse mode is defined (``grad``, ``vjp``, ``jacrev``):
forward mode (``jvp``, ``jacfwd``) and gradients of gradients are not, as for any
``custom_vjp`` whose backward is a host callback.

Dtypes: the kernels run in float32 or float64, the dtype of ``weight_ih``; the other arrays are
cast to it (the casts are differentiated as usual, so each gradient has its argument's dtype).
float64 needs ``jax.config.update("jax_enable_x64", True)``; without it JAX turns float64
inputs into float32 before they reach us. Other dtypes (bfloat16, float16) raise ``TypeError``.

How it runs:

- The forward and the backward each call the compiled kernels of :mod:`fusedrnn.functional`
  once through :func:`jax.pure_callback`. The forward used for a gradient also returns what the
  kernels' backward reads (the activated gates, the state entering each step, the LSTM's cell
  states, the GRU's ``R_n h + b_rn``, the projection's input: the fields of
  :class:`fusedrnn.functional.Tape`) as outputs of the callback, so they are ordinary JAX arrays
  kept as ``custom_vjp`` residuals; the backward callback rebuilds the tape from them and the
  primal inputs. A forward that is not differentiated keeps nothing.
- ``jax.jit``: works; shapes are static, so every argument check (types, dtypes, shapes, the
  ``bias_ih``/``bias_hh`` pairing, ``nonlinearity``, ``reverse``) happens while tracing and
  raises ``TypeError``/``ValueError`` naming the argument. ``reverse`` and ``nonlinearity``
  are Python values: mark them static (``static_argnames``) if they are arguments of the jitted
  function. The values of a traced ``lengths`` are known only when it runs: out-of-range values
  then surface from the callback as a ``jax.errors.JaxRuntimeError`` carrying fusedrnn's
  message (a concrete ``lengths`` is checked at once, with ``ValueError``).
- ``jax.vmap``: works, over any arguments, nested too. Both callbacks use
  ``vmap_method="expand_dims"``: they receive the mapped axes as leading axes (of size 1 for
  unmapped arguments) and handle them in Python, so XLA sees one callback and no loop. The
  forward folds the mapped axes into the batch when only ``x``, the states and ``lengths``
  carry them (the usual case: an extra batch axis over shared weights), and the kernels then
  run once on ``V*B`` sequences; when weights or biases are mapped too, it loops over the
  mapped elements. The backward always loops, one kernel call per mapped element, because each
  element has its own weight gradients (``vmap(grad(f))`` asks for them; under
  ``grad(vmap(f))`` JAX sums them).
- Devices: the kernels run on the CPU. Arrays on another JAX device (a GPU) are copied to the
  host for each callback and the results copied back; it works, but the CUDA kernels are not
  used from JAX.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Any, NamedTuple

import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:  # tests/test_jax.py hides jax to check this message
    raise ImportError(
        'fusedrnn.jax needs JAX, which is not installed: install the jax extra, pip install "fusedrnn[jax]"'
    ) from exc

from . import functional

__all__ = ["rnn", "lstm", "gru"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# The axis of B (the batch of sequences) in every per-sequence array; vmap folds into it.
_SEQ_AXIS = {
    "x": 1, "h0": 0, "c0": 0, "lengths": 0,  # inputs
    "y": 1, "h_n": 0, "c_n": 0,  # outputs
    "gates": 1, "h_prev": 1, "c_prev": 1, "aux": 1, "m": 1,  # residuals (Tape fields)
}  # fmt: skip
_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
# Tape fields the forward callback hands out as residuals, and those the backward callback
# rebuilds from the primal inputs and the static configuration (a test checks they cover Tape).
_RESIDUALS = ("gates", "h_prev", "c_prev", "aux", "m")
_REBUILT = ("cell", "reverse", "lengths", "x", "weight_ih", "weight_hh", "weight_hr", "has_bias")


class _Config(NamedTuple):
    """Everything static about one call (hashable: a ``custom_vjp`` non-differentiable argument)."""

    cell: str  # rnn_tanh | rnn_relu | lstm | gru
    reverse: bool
    T: int
    B: int
    I: int
    H: int
    P: int
    dtype: np.dtype
    has_bias: bool

    def output_shapes(self, need_tape: bool) -> dict[str, tuple[int, ...]]:
        """The forward callback's results, in order: outputs, then (``need_tape``) residuals."""
        T, B, H, P, GH = self.T, self.B, self.H, self.P, _GATES[self.cell] * self.H
        shapes = {"y": (T, B, P), "h_n": (B, P)}
        if self.cell == "lstm":
            shapes["c_n"] = (B, H)
        if need_tape:
            shapes["gates"] = (T, B, GH)
            shapes["h_prev"] = (T, B, P)
            if self.cell == "lstm":
                shapes["c_prev"] = (T, B, H)
                if P != H:
                    shapes["m"] = (T, B, H)
            if self.cell == "gru":
                shapes["aux"] = (T, B, H)
        return shapes

    def grad_shapes(self) -> dict[str, tuple[int, ...]]:
        """The backward callback's results, in order (the keys of functional's grads dict)."""
        T, B, I, H, P, GH = self.T, self.B, self.I, self.H, self.P, _GATES[self.cell] * self.H
        shapes = {"x": (T, B, I), "h0": (B, P)}
        if self.cell == "lstm":
            shapes["c0"] = (B, H)
        shapes.update(weight_ih=(GH, I), weight_hh=(GH, P))
        if self.has_bias:
            shapes.update(bias_ih=(GH,), bias_hh=(GH,))
        if P != H:
            shapes["weight_hr"] = (P, H)
        return shapes


# ----------------------------------------------------------------------------------------------
# Host side: NumPy arrays in, NumPy arrays out (run inside jax.pure_callback).
# ----------------------------------------------------------------------------------------------


def _forward_one(cfg: _Config, need_tape: bool, a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One unbatched forward through fusedrnn.functional; outputs and (``need_tape``) residuals."""
    kw = {"lengths": a.get("lengths"), "reverse": cfg.reverse, "need_tape": need_tape}
    w = (a["weight_ih"], a["weight_hh"], a.get("bias_ih"), a.get("bias_hh"))
    out: dict[str, np.ndarray] = {}
    if cfg.cell == "lstm":
        y, h_n, c_n, tape = functional.lstm_forward(a["x"], a["h0"], a["c0"], *w, weight_hr=a.get("weight_hr"), **kw)
        out.update(y=y, h_n=h_n, c_n=c_n)
    elif cfg.cell == "gru":
        y, h_n, tape = functional.gru_forward(a["x"], a["h0"], *w, **kw)
        out.update(y=y, h_n=h_n)
    else:
        y, h_n, tape = functional.rnn_forward(a["x"], a["h0"], *w, nonlinearity=cfg.cell[4:], **kw)
        out.update(y=y, h_n=h_n)
    if need_tape:
        assert tape is not None
        for name in _RESIDUALS:
            value = getattr(tape, name)
            if value is not None:
                out[name] = value
    return out


def _fold(arr: np.ndarray, levels: int, batch: tuple[int, ...], axis: int) -> np.ndarray:
    """``batch + core`` (leading axes broadcast) -> core with the batch merged into B at ``axis``."""
    core = arr.shape[levels:]
    V = math.prod(batch)
    arr = np.broadcast_to(arr, batch + core).reshape((V,) + core)
    arr = np.moveaxis(arr, 0, axis)  # core[:axis] + (V, B) + core[axis+1:]
    return arr.reshape(core[:axis] + (V * core[axis],) + core[axis + 1 :])


def _unfold(arr: np.ndarray, batch: tuple[int, ...], axis: int, B: int) -> np.ndarray:
    """Inverse of :func:`_fold`: the axis ``axis`` holds ``V*B`` -> ``batch + core``."""
    V = math.prod(batch)
    shape = arr.shape
    arr = arr.reshape(shape[:axis] + (V, B) + shape[axis + 1 :])
    arr = np.moveaxis(arr, axis, 0)
    return np.ascontiguousarray(arr).reshape(batch + shape[:axis] + (B,) + shape[axis + 1 :])


def _forward_host(cfg: _Config, need_tape: bool, arrays: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """The forward callback. Under ``vmap`` (``expand_dims``) every array has the same number of
    extra leading axes, of size 1 where the argument is not mapped."""
    a = {k: np.asarray(v) for k, v in arrays.items()}
    shapes = cfg.output_shapes(need_tape)
    levels = a["x"].ndim - 3
    if levels == 0:
        out = _forward_one(cfg, need_tape, a)
        return tuple(out[k] for k in shapes)
    batch = tuple(int(s) for s in np.broadcast_shapes(*(v.shape[:levels] for v in a.values())))
    if all(math.prod(a[k].shape[:levels]) == 1 for k in _WEIGHTS if k in a):
        # Shared weights: one kernel call on the batch of all mapped elements' sequences.
        folded = {
            k: _fold(v, levels, batch, _SEQ_AXIS[k]) if k in _SEQ_AXIS else v.reshape(v.shape[levels:])
            for k, v in a.items()
        }
        out = _forward_one(cfg, need_tape, folded)
        return tuple(_unfold(out[k], batch, _SEQ_AXIS[k], cfg.B) for k in shapes)
    # Mapped weights: one kernel call per mapped element.
    return _per_element(partial(_forward_one, cfg, need_tape), levels, a, shapes, cfg.dtype)


def _per_element(
    fn: Any, levels: int, a: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], dtype: np.dtype
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """``fn`` (unbatched dict -> dict) on each element of ``levels`` leading (broadcast) axes."""
    batch = tuple(int(s) for s in np.broadcast_shapes(*(v.shape[:levels] for v in a.values())))
    results = {k: np.empty(batch + shape, dtype) for k, shape in shapes.items()}
    full = {k: np.broadcast_to(v, batch + v.shape[levels:]) for k, v in a.items()}
    for idx in np.ndindex(*batch):
        out = fn({k: v[idx] for k, v in full.items()})
        for k in shapes:
            results[k][idx] = out[k]
    return tuple(results.values())


def _backward_host(cfg: _Config, arrays: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """The backward callback; under ``vmap`` (``expand_dims``) one kernel call per mapped element,
    since each element has its own weight gradients."""
    a = {k: np.asarray(v) for k, v in arrays.items()}
    shapes = cfg.grad_shapes()
    levels = a["x"].ndim - 3
    if levels == 0:
        grads = _backward_one(cfg, a)
        return tuple(grads[k] for k in shapes)
    return _per_element(partial(_backward_one, cfg), levels, a, shapes, cfg.dtype)


def _backward_one(cfg: _Config, a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One unbatched backward: rebuild the Tape from residuals and inputs, run BPTT."""
    lengths = a.get("lengths")
    x = np.ascontiguousarray(a["x"])
    if lengths is not None:
        lengths = np.array(lengths, dtype=np.int64, order="C")
        if x.size:  # as the functional forward's private copy: padding zeroed, reaching no gradient
            x = np.array(x, order="C", copy=True)
            x[np.arange(cfg.T)[:, None] >= lengths[None, :]] = 0
    tape = functional.Tape(
        cell=cfg.cell,
        reverse=cfg.reverse,
        lengths=lengths,
        x=x,
        weight_ih=np.ascontiguousarray(a["weight_ih"]),
        weight_hh=np.ascontiguousarray(a["weight_hh"]),
        weight_hr=np.ascontiguousarray(a["weight_hr"]) if "weight_hr" in a else None,
        has_bias=cfg.has_bias,
        **{k: np.ascontiguousarray(a[k]) if k in a else None for k in _RESIDUALS},
    )
    if cfg.cell == "lstm":
        grads = functional.lstm_backward(tape, a["dy"], a["dh_n"], a["dc_n"])
    elif cfg.cell == "gru":
        grads = functional.gru_backward(tape, a["dy"], a["dh_n"])
    else:
        grads = functional.rnn_backward(tape, a["dy"], a["dh_n"])
    return {k: g for k, g in grads.items() if g is not None}


# ----------------------------------------------------------------------------------------------
# The custom_vjp: cfg static; inputs already checked and cast to cfg.dtype. None: absent.
# ----------------------------------------------------------------------------------------------


def _inputs(x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, w_hr: Any, lengths: Any) -> dict:
    named = {"x": x, "h0": h0, "c0": c0, "weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    named.update(weight_hr=w_hr, lengths=lengths)
    return {k: v for k, v in named.items() if v is not None}


@lru_cache(maxsize=256)
def _callback(host: Any, *static: Any) -> Any:
    """One callable per static configuration, so that JAX's caches (keyed on it) hit on reuse."""
    return partial(host, *static)


def _call_forward(cfg: _Config, need_tape: bool, arrays: dict[str, Any]) -> tuple[Any, ...]:
    shapes = cfg.output_shapes(need_tape)
    result = tuple(jax.ShapeDtypeStruct(s, cfg.dtype) for s in shapes.values())
    callback = _callback(_forward_host, cfg, need_tape)
    return jax.pure_callback(callback, result, arrays, vmap_method="expand_dims")


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn_core(
    cfg: _Config, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, w_hr: Any, lengths: Any
) -> tuple[Any, ...]:  # fmt: skip
    return _call_forward(cfg, False, _inputs(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths))


def _rnn_core_fwd(
    cfg: _Config, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, w_hr: Any, lengths: Any
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:  # fmt: skip
    results = _call_forward(cfg, True, _inputs(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths))
    n_out = 3 if cfg.cell == "lstm" else 2
    saved = (results[n_out:], x, w_ih, w_hh, w_hr, lengths)
    return results[:n_out], saved


def _rnn_core_bwd(cfg: _Config, saved: tuple[Any, ...], cotangents: tuple[Any, ...]) -> tuple[Any, ...]:
    residuals, x, w_ih, w_hh, w_hr, lengths = saved
    names = [k for k in cfg.output_shapes(True) if k in _RESIDUALS]
    arrays = dict(zip(names, residuals))
    arrays.update(x=x, weight_ih=w_ih, weight_hh=w_hh, dy=cotangents[0], dh_n=cotangents[1])
    if cfg.cell == "lstm":
        arrays["dc_n"] = cotangents[2]
    if w_hr is not None:
        arrays["weight_hr"] = w_hr
    if lengths is not None:
        arrays["lengths"] = lengths
    shapes = cfg.grad_shapes()
    result = tuple(jax.ShapeDtypeStruct(s, cfg.dtype) for s in shapes.values())
    callback = _callback(_backward_host, cfg)
    grads = dict(zip(shapes, jax.pure_callback(callback, result, arrays, vmap_method="expand_dims")))
    # One entry per primal argument of _rnn_core; None for absent ones and for lengths (integers).
    order = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "lengths")
    return tuple(grads.get(k) for k in order)


_rnn_core.defvjp(_rnn_core_fwd, _rnn_core_bwd)


# ----------------------------------------------------------------------------------------------
# Argument checks (trace time: shapes and dtypes are static under jit) and the public functions.
# ----------------------------------------------------------------------------------------------


def _float(value: Any, name: str) -> Any:
    """``value`` as a JAX array of a floating dtype, or TypeError naming it."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a floating-point array, got {type(value).__name__}")
    try:
        arr = jnp.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a floating-point array, got {type(value).__name__}") from exc
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr


def _shape(arr: Any, name: str, expected: tuple[int, ...], letters: str) -> None:
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} {letters}, got {tuple(arr.shape)}")


def _lengths(lengths: Any, T: int, B: int) -> Any:
    """Check ``lengths``' dtype and shape (and its values when they are known while tracing)."""
    if lengths is None:
        return None
    if isinstance(lengths, (str, bytes)):
        raise TypeError(f"lengths must be an integer array, got {type(lengths).__name__}")
    try:
        arr = jnp.asarray(lengths)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"lengths must be an integer array, got {type(lengths).__name__}") from exc
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"lengths must be an integer array, got dtype {arr.dtype}")
    _shape(arr, "lengths", (B,), "(one per sequence)")
    try:
        values = np.asarray(arr)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return arr  # traced (jit, vmap): its values are checked when the callback runs
    if B and (values.min() < 1 or values.max() > T):
        raise ValueError(f"lengths must lie in [1, {T}] (T = {T}), got values from {values.min()} to {values.max()}")
    return arr


def _call(
    cell: str, x: Any, h0: Any, c0: Any, weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any,
    weight_hr: Any, lengths: Any, reverse: Any,
) -> tuple[Any, ...]:  # fmt: skip
    G = _GATES[cell]
    w_ih = _float(weight_ih, "weight_ih")
    dtype = np.dtype(w_ih.dtype)
    if dtype not in _KERNEL_DTYPES:
        raise TypeError(f"dtype must be float32 or float64 (the dtype of weight_ih), got {dtype}")

    def cast(value: Any, name: str) -> Any:
        arr = _float(value, name)
        return arr if arr.dtype == dtype else arr.astype(dtype)

    if w_ih.ndim != 2 or w_ih.shape[0] == 0 or w_ih.shape[0] % G or w_ih.shape[1] == 0:
        raise ValueError(f"weight_ih must have shape ({G}*H, I) with H, I >= 1, got {tuple(w_ih.shape)}")
    H, I = w_ih.shape[0] // G, w_ih.shape[1]
    P = H
    w_hr = None
    if weight_hr is not None:
        w_hr = cast(weight_hr, "weight_hr")
        if w_hr.ndim != 2 or w_hr.shape[1] != H or not 1 <= w_hr.shape[0] < H:
            raise ValueError(
                f"weight_hr must have shape (P, {H}) (proj_size P, H) with 1 <= P < H, got {tuple(w_hr.shape)}"
            )
        P = w_hr.shape[0]
    w_hh = cast(weight_hh, "weight_hh")
    _shape(w_hh, "weight_hh", (G * H, P), "(G*H, P)" if w_hr is not None else "(G*H, H)")
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("bias_ih and bias_hh must both be arrays or both be None")
    b_ih = b_hh = None
    if bias_ih is not None:
        b_ih, b_hh = cast(bias_ih, "bias_ih"), cast(bias_hh, "bias_hh")
        _shape(b_ih, "bias_ih", (G * H,), "(G*H,)")
        _shape(b_hh, "bias_hh", (G * H,), "(G*H,)")
    xa = cast(x, "x")
    if xa.ndim != 3 or xa.shape[2] != I:
        raise ValueError(f"x must have shape (T, B, {I}) (T, B, I), got {tuple(xa.shape)}")
    T, B = int(xa.shape[0]), int(xa.shape[1])
    h0a = cast(h0, "h0")
    _shape(h0a, "h0", (B, P), "(B, P)" if w_hr is not None else "(B, H)")
    c0a = None
    if cell == "lstm":
        c0a = cast(c0, "c0")
        _shape(c0a, "c0", (B, H), "(B, H)")
    lengths_a = _lengths(lengths, T, B)
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(
            f"reverse must be a bool, got {type(reverse).__name__} (under jax.jit, make it a static argument)"
        )
    cfg = _Config(cell, bool(reverse), T, B, int(I), int(H), int(P), dtype, b_ih is not None)
    return _rnn_core(cfg, xa, h0a, c0a, w_ih, w_hh, b_ih, b_hh, w_hr, lengths_a)


def rnn(
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
) -> tuple[Any, Any]:
    """Elman RNN, ``h' = act(W x + b_w + R h + b_r)`` with act tanh or relu; differentiable.

    Parameters
    ----------
    x : array, shape (T, B, I)
    h0 : array, shape (B, H)
    weight_ih, weight_hh : arrays, shapes (H, I) and (H, H); ``weight_ih``'s dtype (float32 or
        float64) is the dtype of the computation
    bias_ih, bias_hh : arrays of shape (H,), or both None
    nonlinearity : {"tanh", "relu"}
    lengths : integer array of shape (B,) with values in [1, T], optional (no gradient)
    reverse : bool
        Walk time backwards, from each sequence's last real step.

    Returns
    -------
    y : jax.Array, shape (T, B, H)
    h_n : jax.Array, shape (B, H)
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    y, h_n = _call(
        "rnn_" + nonlinearity, x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, None, lengths, reverse
    )
    return y, h_n


def lstm(
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
) -> tuple[Any, Any, Any]:
    """LSTM, gates i f g o: ``c' = sig(f) c + sig(i) tanh(g)``, ``h' = sig(o) tanh(c')``; differentiable.

    With a projection ``weight_hr`` of shape (P, H): ``h' = W_hr (sig(o) tanh(c'))`` of size P.

    Parameters
    ----------
    x : array, shape (T, B, I)
    h0 : array, shape (B, P) (P = H without projection)
    c0 : array, shape (B, H)
    weight_ih, weight_hh : arrays, shapes (4*H, I) and (4*H, P); ``weight_ih``'s dtype (float32 or
        float64) is the dtype of the computation
    bias_ih, bias_hh : arrays of shape (4*H,), or both None
    weight_hr : array of shape (P, H) with 1 <= P < H, optional
    lengths : integer array of shape (B,) with values in [1, T], optional (no gradient)
    reverse : bool

    Returns
    -------
    y : jax.Array, shape (T, B, P)
    h_n : jax.Array, shape (B, P)
    c_n : jax.Array, shape (B, H)
    """
    y, h_n, c_n = _call("lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, lengths, reverse)
    return y, h_n, c_n


def gru(
    x: Any,
    h0: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
    *,
    lengths: Any = None,
    reverse: bool = False,
) -> tuple[Any, Any]:
    """GRU, gates r z n: ``n = tanh(W_n x + b_wn + r (R_n h + b_rn))``, ``h' = (1-z) n + z h``; differentiable.

    Parameters
    ----------
    x : array, shape (T, B, I)
    h0 : array, shape (B, H)
    weight_ih, weight_hh : arrays, shapes (3*H, I) and (3*H, H); ``weight_ih``'s dtype (float32 or
        float64) is the dtype of the computation
    bias_ih, bias_hh : arrays of shape (3*H,), or both None
    lengths : integer array of shape (B,) with values in [1, T], optional (no gradient)
    reverse : bool

    Returns
    -------
    y : jax.Array, shape (T, B, H)
    h_n : jax.Array, shape (B, H)
    """
    y, h_n = _call("gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, None, lengths, reverse)
    return y, h_n
