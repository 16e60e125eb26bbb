"""Gradient clipping with ``torch.nn.utils``'s semantics, in place on NumPy gradient arrays."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _arrays(grads: Any) -> list[np.ndarray]:
    """The gradient arrays of a mapping (``layer.grads``), a layer, one array, or an iterable of those."""
    if isinstance(grads, np.ndarray):
        return [grads]
    if hasattr(grads, "grads") and isinstance(grads.grads, Mapping):
        return list(grads.grads.values())
    if isinstance(grads, Mapping):
        return list(grads.values())
    if isinstance(grads, Iterable):
        out: list[np.ndarray] = []
        for g in grads:
            out += _arrays(g)
        return out
    raise TypeError(f"grads must be an array, a mapping of arrays, a layer or an iterable of those, got {type(grads).__name__}")


def clip_grad_norm_(
    grads: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Scale gradients in place so that their joint norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the ``norm_type``-norm of the
    per-array norms; every gradient is multiplied by ``min(1, max_norm / (total + 1e-6))``.

    Parameters
    ----------
    grads : mapping of arrays (``layer.grads``), a layer, an array, or an iterable of those
    max_norm : float
    norm_type : float
        ``2.0`` by default; ``float("inf")`` for the largest absolute value.
    error_if_nonfinite : bool
        Raise ``RuntimeError`` if the total norm is NaN or infinite (otherwise the gradients
        become NaN, as in torch).

    Returns
    -------
    float
        The total norm before clipping.
    """
    arrays = _arrays(grads)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not arrays:
        return 0.0
    if norm_type == np.inf:
        norms = [np.max(np.abs(g)) if g.size else 0.0 for g in arrays]
        total = float(np.max(norms))
    else:
        norms = [np.linalg.norm(g.ravel().astype(np.float64), norm_type) for g in arrays]
        total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite ({total})")
    coef = min(max_norm / (total + 1e-6), 1.0)
    with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, silently, as torch
        for g in arrays:
            g *= g.dtype.type(coef)
    return total


def clip_grad_value_(grads: Any, clip_value: float) -> None:
    """Clamp every gradient element in place to ``[-clip_value, clip_value]`` (as torch)."""
    v = float(clip_value)
    for g in _arrays(grads):
        np.clip(g, -v, v, out=g)
