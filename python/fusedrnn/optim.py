"""Small optimizers acting on a layer's ``state_dict()`` arrays in place (``torch.optim``'s math).

>>> opt = fusedrnn.optim.Adam(lstm, lr=1e-3)      # or Adam(lstm.state_dict(), ...)
>>> y, _ = lstm(x); lstm.backward(dy)
>>> opt.step()                                     # reads lstm.grads; or opt.step(grads)
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: holds ``(name, parameter array, layer or None)`` triples and per-parameter state.

    Parameters
    ----------
    params : a layer, a mapping of names to arrays (``layer.state_dict()``), or a list of those
        The arrays are updated in place. With layers, :meth:`step` reads their ``grads``.
    """

    def __init__(self, params: Any) -> None:
        self._entries: list[tuple[str, np.ndarray, Any]] = []
        is_source = isinstance(params, Mapping) or (hasattr(params, "state_dict") and hasattr(params, "grads"))
        sources = [params] if is_source else list(params)
        for source in sources:
            if hasattr(source, "state_dict") and hasattr(source, "grads"):
                self._entries += [(k, v, source) for k, v in source.state_dict().items()]
            elif isinstance(source, Mapping):
                for k, v in source.items():
                    if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
                        raise TypeError(f"params[{k!r}] must be a floating-point NumPy array, got {type(v).__name__}")
                    self._entries.append((k, v, None))
            else:
                raise TypeError(f"params must be layers or mappings of arrays, got {type(source).__name__}")
        if not self._entries:
            raise ValueError("params is empty")
        if len({id(p) for _, p, _ in self._entries}) != len(self._entries):
            raise ValueError("some parameter arrays appear more than once in params")
        self.state: list[dict[str, Any]] = [{} for _ in self._entries]

    def _grads(self, grads: Mapping[str, np.ndarray] | None) -> list[np.ndarray]:
        out = []
        for name, param, layer in self._entries:
            if grads is not None:
                if name not in grads:
                    raise ValueError(f"grads has no entry {name!r}")
                g = np.asarray(grads[name])
            elif layer is not None:
                g = layer.grads[name]
            else:
                raise ValueError("step() needs grads when the optimizer was given arrays, not layers")
            if g.shape != param.shape:
                raise ValueError(f"grads[{name!r}] must have shape {param.shape}, got {g.shape}")
            out.append(g.astype(param.dtype, copy=False))
        return out

    def zero_grad(self) -> None:
        """Zero the gradients of the layers this optimizer was given."""
        for _, _, layer in self._entries:
            if layer is not None:
                layer.zero_grad()

    def step(self, grads: Mapping[str, np.ndarray] | None = None) -> None:
        """Update every parameter in place from ``grads`` (default: the layers' ``grads``)."""
        for (_, param, _), g, state in zip(self._entries, self._grads(grads), self.state):
            self._update(param, g, state)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError


def _check_nonnegative(**values: float) -> None:
    for name, v in values.items():
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (as torch.optim.SGD)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _check_nonnegative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening == 0")
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        d = -grad if self.maximize else grad
        if self.weight_decay:
            d = d + self.weight_decay * param
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, copy=True)
            else:
                buf *= param.dtype.type(self.momentum)
                buf += (1 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        param -= param.dtype.type(self.lr) * d


class Adam(Optimizer):
    """Adam (as torch.optim.Adam): L2 ``weight_decay`` added to the gradient; ``amsgrad`` optional."""

    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _check_nonnegative(lr=lr, eps=eps, weight_decay=weight_decay)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        super().__init__(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.amsgrad, self.maximize = weight_decay, amsgrad, maximize

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        g = -grad if self.maximize else grad
        if self.weight_decay:
            if self._decoupled:
                param *= param.dtype.type(1 - self.lr * self.weight_decay)
            else:
                g = g + self.weight_decay * param
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (g - m) * param.dtype.type(1 - beta1)
        v *= param.dtype.type(beta2)
        v += param.dtype.type(1 - beta2) * g * g
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step = state["step"]
        step_size = self.lr / (1 - beta1**step)
        denom = np.sqrt(v) / param.dtype.type(math.sqrt(1 - beta2**step)) + param.dtype.type(self.eps)
        param -= param.dtype.type(step_size) * m / denom


class AdamW(Adam):
    """AdamW (as torch.optim.AdamW): decoupled weight decay, ``param *= 1 - lr * weight_decay``."""

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
