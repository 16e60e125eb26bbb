"""Argument checks shared by the functional layer and the layer classes.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (wrong shape or value)
with a message that names the argument and says what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _C

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def kernel_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype if the compiled kernels support it (float32/float64)."""
    if dtype is None:  # np.dtype(None) is float64, where torch's dtype=None means its default, float32
        raise TypeError("dtype must be float32 or float64, got None")
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in KERNEL_DTYPES:
        raise TypeError(
            f"dtype must be float32 or float64, got {dt} (fusedrnn.reference handles other float dtypes)"
        )
    return dt


def float_array(value: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """``value`` as a floating-point ndarray (cast to ``dtype`` if given); never a copy unless needed."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a floating-point array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: torch tensors that need grad, ...
        raise TypeError(f"{name} must be a floating-point array, got {type(value).__name__} ({exc})") from exc
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def shape(arr: np.ndarray, name: str, expected: tuple[int, ...], letters: str = "") -> None:
    """Raise ``ValueError`` unless ``arr.shape == expected``."""
    if arr.shape != tuple(expected):
        what = f"{tuple(expected)}" + (f" {letters}" if letters else "")
        raise ValueError(f"{name} must have shape {what}, got {arr.shape}")


def lengths_array(lengths: Any, T: int, B: int) -> np.ndarray | None:
    """Per-sequence lengths as a contiguous int64 array of shape (B,), values in [1, T]."""
    if lengths is None:
        return None
    try:
        arr = np.asarray(lengths)
    except (TypeError, ValueError, RuntimeError) as exc:  # a ragged list, a tensor without data, ...
        what = f"{type(lengths).__name__} ({exc})"
        raise ValueError(f"lengths must be an integer array of shape ({B},), got {what}") from exc
    if arr.size == 0 and isinstance(lengths, (list, tuple)):  # [] for B = 0: NumPy makes it float64
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per sequence), got {arr.shape}")
    if B and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths must lie in [1, {T}] (T = {T}), got values from {arr.min()} to {arr.max()}")
    return np.array(arr, dtype=np.int64, order="C", copy=True)  # a private copy: tapes keep it


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array; any unsatisfiable size raises ``MemoryError``.

    From 128 KB up its memory comes from the compiled module's pool
    (``csrc/bindings/array_pool.h``) and goes back there once the array and its views are gone,
    so that the next call of about that size does not fault in and clear fresh pages.
    """
    return _C.pooled_empty(tuple(shape), dtype)


def copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` in memory from :func:`empty`."""
    out = empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself if C-contiguous, else :func:`copy` of it."""
    return a if a.flags.c_contiguous else copy(a)
