"""fusedrnn: fused LSTM, GRU and Elman-RNN kernels, forward and backward through time.

>>> import numpy as np, fusedrnn as fr
>>> lstm = fr.LSTM(10, 20)
>>> y, (h_n, c_n) = lstm(np.random.rand(5, 3, 10).astype(np.float32))
>>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))

Layers: :class:`RNN`, :class:`LSTM`, :class:`GRU` (``torch.nn``'s contract on NumPy arrays).
One layer, one direction with explicit arrays: :mod:`fusedrnn.functional` (compiled kernels)
and :mod:`fusedrnn.reference` (pure NumPy, the oracle).
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import functional, optim, reference
from ._grad_mode import is_grad_enabled, no_grad
from ._runtime import build_info, cpu_info, get_num_threads, set_num_threads
from .clip import clip_grad_norm_, clip_grad_value_
from .cuda import cuda_available
from .layers import GRU, LSTM, RNN

try:
    __version__ = _metadata.version("fusedrnn")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "RNN", "LSTM", "GRU", "no_grad", "is_grad_enabled", "clip_grad_norm_", "clip_grad_value_",
    "build_info", "cpu_info", "cuda_available", "get_num_threads", "set_num_threads", "functional", "reference",
    "optim", "__version__",
]  # fmt: skip
