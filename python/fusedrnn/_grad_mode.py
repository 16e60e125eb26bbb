"""Whether layers keep a tape for ``backward`` (per thread, like torch's grad mode)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless the calling thread is inside :class:`no_grad`."""
    return getattr(_state, "disabled", 0) == 0


class no_grad(contextlib.ContextDecorator):
    """Context manager (or decorator) under which layers keep no tape: inference only.

    Examples
    --------
    >>> with fusedrnn.no_grad():
    ...     y, h_n = gru(x)
    """

    def __enter__(self) -> no_grad:
        _state.disabled = getattr(_state, "disabled", 0) + 1
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.disabled -= 1
