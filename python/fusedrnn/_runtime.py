"""Threads and instruction set of the CPU kernels."""

from __future__ import annotations

from typing import Any

from . import _C

# The most threads set_num_threads takes: CPU_SETSIZE, the most CPUs the kernels' thread team knows
# of. A larger n would start that many threads (or fail to, with a delayed error) at the next call.
MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to 1024) in the CPU kernels; results are bitwise identical for any ``n``.

    The default is the number of CPUs this process may run on. Waits for a running kernel call.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > MAX_THREADS:
        raise ValueError(f"n must be <= {MAX_THREADS}, got {n}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the CPU kernels use."""
    return int(_C.get_num_threads())


def cpu_info() -> dict[str, Any]:
    """The instruction set the kernels run with, and which ones were built and are supported.

    ``{"isa": "avx2", "compiled": [...], "supported": [...], "num_threads": 2}``. Set the
    environment variable ``FUSEDRNN_ISA`` (generic, avx2, avx512) before import to force one.
    """
    info = dict(_C.cpu_info())
    info["num_threads"] = get_num_threads()
    return info


def build_info() -> dict[str, Any]:
    """How this copy of fusedrnn was built.

    ``{"version", "compiler", "build_type", "isas": [compiled CPU instruction sets],
    "cuda": bool, "cuda_architectures": [...]}``; ``version`` equals ``fusedrnn.__version__``.
    """
    info = dict(_C.build_info())
    try:  # the CUDA module exists only in CUDA-enabled builds
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError:
        return info
    info.update(_cuda.build_info())  # "cuda": True, "cuda_architectures": [...], "cuda_compiler_version"
    return info
