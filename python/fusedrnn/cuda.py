"""The CUDA backend: one layer, one direction, on arrays that live on a CUDA device.

Call contract (the same meaning as :func:`fusedrnn.functional._forward` / ``_backward``; the
functional layer and the layer classes dispatch here for device arrays)::

    y, h_n, c_n, tape = fusedrnn.cuda.forward(
        cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, need_tape,
        weight_hr=None, *, path="auto", stream=None)
    grads = fusedrnn.cuda.backward(cell, tape, dy, dh_n, dc_n, *, path="auto", stream=None)

- ``cell``: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"``. Shapes exactly as in
  ``functional``: ``x (T, B, I)``, ``h0 (B, P)``, ``c0 (B, H)`` (LSTM; else ignored, pass None),
  ``weight_ih (G*H, I)``, ``weight_hh (G*H, P)``, biases ``(G*H,)`` or both None, ``weight_hr
  (P, H)`` (LSTM projection, 1 <= P < H) or None, ``lengths`` integer ``(B,)`` in ``[1, T]`` or
  None (host or device), ``reverse`` a bool, ``need_tape`` a bool.
- Arrays: :class:`DeviceArray`, CuPy arrays, torch CUDA tensors, or any object exposing
  ``__cuda_array_interface__`` (v2/v3) or ``__dlpack__`` with ``__dlpack_device__() == (2, id)``.
  NumPy (host) arrays are accepted for any input and copied to the device. At least ``x`` or
  ``weight_ih`` must be on a device; every device array must be on that same device.
- dtype: that of ``weight_ih``: float32, float64, float16 or bfloat16 (bfloat16 through torch
  or DLPack). Every other float input must have the same dtype (no implicit casts on the device;
  host inputs are cast on the host). float16/bfloat16 are storage types: products accumulate in
  float32 and the recurrent state is carried in float32.
- Non-C-contiguous inputs are copied on the device (CuPy, torch); for other kinds they raise
  ``ValueError``.
- Outputs are arrays of the same kind as ``x`` (or as ``weight_ih`` when ``x`` is on the host):
  CuPy in -> CuPy out, torch in -> torch out, anything else -> :class:`DeviceArray`.
- ``forward`` returns ``(y (T, B, P), h_n (B, P), c_n (B, H) or None, tape or None)``; the tape
  (:class:`CudaTape`) keeps device copies of ``x`` (padding zeroed), ``lengths`` and the weights.
- ``backward`` returns the dict of ``functional``: ``"x"``, ``"h0"``, (``"c0"``),
  ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``, ``"bias_hh"`` (None without bias), and
  ``"weight_hr"`` with a projection. ``dh_n``/``dc_n`` of None mean zeros. Gradients are written,
  not accumulated.
- ``path``: ``"auto"`` (persistent kernel for batches <= 32 when its slices fit in shared memory,
  else stepwise), ``"persistent"`` (raises ``RuntimeError`` with the reason when it cannot run the
  problem; the backward has no persistent form with a projection) or ``"stepwise"``.
- ``stream``: an int (``cudaStream_t``; 0 = the legacy default stream), a CuPy/torch stream
  object, or None: torch's current stream for torch inputs, CuPy's current stream for CuPy
  inputs, else the legacy default stream. Work is queued on it and the call returns without
  waiting (only copies back to NumPy wait). Inputs whose ``__cuda_array_interface__`` names a
  different stream are waited for on the device (an event), never on the host.
- Errors: ``TypeError``/``ValueError`` naming the argument for bad inputs; ``RuntimeError`` when
  fusedrnn was built without CUDA, when no device is available, or for a CUDA failure (the
  message carries the CUDA error string).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks

try:  # the compiled CUDA module exists only in CUDA-enabled builds
    from . import _cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

__all__ = ["cuda_available", "device_count", "DeviceArray", "CudaTape", "forward", "backward", "is_device_array"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_CELL_CODE = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
_DTYPE_CODE = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}
_PATHS = ("auto", "persistent", "stepwise")
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int32": 4, "int64": 8, "uint8": 1}
# DLPack type codes: kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4.
_DLPACK = {(2, 16): "float16", (2, 32): "float32", (2, 64): "float64", (4, 16): "bfloat16", (0, 32): "int32",
           (0, 64): "int64", (1, 8): "uint8"}  # fmt: skip
_DLPACK_CODE = {name: code for code, name in _DLPACK.items()}
_KDLCUDA = 2

# Tests set this to True: every output and workspace is then filled with NaN bytes (0xFF) before
# the kernels run, so that an element the kernels fail to write shows up.
_POISON = False


def cuda_available() -> bool:
    """True when fusedrnn was built with CUDA and a CUDA device is usable. Never raises."""
    if _cuda is None:
        return False
    try:
        return int(_cuda.device_count()) > 0
    except Exception:  # pragma: no cover - device_count itself never raises
        return False


def device_count() -> int:
    """Usable CUDA devices (0 without a CUDA build, a driver or a GPU). Never raises."""
    if _cuda is None:
        return 0
    try:
        return int(_cuda.device_count())
    except Exception:  # pragma: no cover
        return 0


def _require_cuda() -> Any:
    if _cuda is None:
        raise RuntimeError(
            "fusedrnn was built without CUDA: rebuild with a CUDA compiler "
            "(pip install . -Ccmake.define.FUSEDRNN_CUDA=ON) to use device arrays"
        )
    if _cuda.device_count() <= 0:
        raise RuntimeError("no CUDA device is available (no NVIDIA driver, or no GPU visible to this process)")
    return _cuda


# ----------------------------------------------------------------------------------------------
# Owned device buffers
# ----------------------------------------------------------------------------------------------


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str) and dtype == "bfloat16":
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"unsupported dtype {dtype!r}") from exc
    if name not in _ITEMSIZE:
        raise TypeError(f"unsupported dtype {name} (float16, float32, float64, int32, int64, uint8)")
    return name


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


class DeviceArray:
    """A small owned, C-contiguous array in CUDA device memory.

    ``DeviceArray(shape, dtype, device=None, stream=None)`` allocates (uninitialised; stream-ordered
    where the device supports memory pools, freed on the same stream when collected).
    ``DeviceArray.from_numpy(a)`` copies a host array in, ``.numpy()`` copies it back (waiting for
    the stream). Exposes ``__cuda_array_interface__`` (version 3) and ``__dlpack__`` /
    ``__dlpack_device__``, so CuPy (``cupy.asarray``), torch (``torch.from_dlpack``) and others
    can use it without a copy. dtypes: float16, float32, float64, int32, int64, uint8 (bfloat16
    arrays come through torch or DLPack).
    """

    __slots__ = ("_buffer", "shape", "dtype", "device", "stream", "__weakref__")

    def __init__(self, shape: Any, dtype: Any = np.float32, device: int | None = None, stream: Any = None) -> None:
        cuda = _require_cuda()
        name = _dtype_name(dtype)
        if name == "bfloat16":
            raise TypeError("DeviceArray does not hold bfloat16; use torch tensors for bfloat16")
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"shape must have non-negative sizes, got {shape}")
        self.shape: tuple[int, ...] = shape
        self.dtype = np.dtype(name)
        self.device = int(cuda.current_device()) if device is None else int(device)
        if not 0 <= self.device < cuda.device_count():
            raise ValueError(f"device must be in [0, {cuda.device_count()}), got {self.device}")
        self.stream = _stream_handle(stream) if stream is not None else 0
        self._buffer = cuda.DeviceBuffer(int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize, self.device,
                                         self.stream)  # fmt: skip
        if _POISON:
            self._fill_bytes(0xFF)

    @classmethod
    def from_numpy(cls, a: Any, device: int | None = None, stream: Any = None) -> DeviceArray:
        """A device copy of the host array ``a`` (returns once the copy is done)."""
        arr = np.ascontiguousarray(a)
        out = cls(arr.shape, arr.dtype, device, stream)
        if arr.size:
            _cuda.memcpy_htod(out.ptr, arr, out.stream, out.device)
        return out

    def numpy(self) -> np.ndarray:
        """A host copy (waits for the work queued on the array's stream)."""
        out = np.empty(self.shape, self.dtype)
        if out.size:
            _cuda.memcpy_dtoh(out, self.ptr, self.stream, self.device)
        return out

    def copy(self) -> DeviceArray:
        out = DeviceArray(self.shape, self.dtype, self.device, self.stream)
        _cuda.memcpy_dtod(out.ptr, self.ptr, self.nbytes, self.stream, self.device)
        return out

    def _fill_bytes(self, value: int) -> None:
        _cuda.memset(self.ptr, value, self.nbytes, self.stream, self.device)

    @property
    def ptr(self) -> int:
        return int(self._buffer.ptr)

    @property
    def nbytes(self) -> int:
        return int(self._buffer.nbytes)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype.name}, device={self.device})"

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "version": 3,
            "strides": None,
            # CAI v3: 1 names the legacy default stream (0 is not allowed).
            "stream": self.stream if self.stream else 1,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_KDLCUDA, self.device)

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None, copy: Any = None) -> Any:
        if dl_device is not None and tuple(dl_device) != (_KDLCUDA, self.device):
            raise BufferError(f"DeviceArray lives on CUDA device {self.device}; cannot export to {dl_device}")
        if copy:
            raise BufferError("DeviceArray.__dlpack__ does not copy")
        # The consumer's stream (None: legacy default, -1: no synchronisation) waits for ours.
        if stream != -1:
            consumer = 1 if stream is None else int(stream)
            producer = self.stream if self.stream else 1
            if consumer != producer:
                _cuda.stream_wait(consumer, producer, self.device)
        code, bits = _DLPACK_CODE[self.dtype.name]
        return _cuda.to_dlpack(self, self.ptr, list(self.shape), [], code, bits, self.device)


# ----------------------------------------------------------------------------------------------
# Recognising and reading device arrays
# ----------------------------------------------------------------------------------------------


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "data_ptr")


def _is_cupy(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "cupy" and hasattr(obj, "data")


def is_device_array(obj: Any) -> bool:
    """True for arrays on a CUDA device: DeviceArray, CuPy, torch CUDA tensors, or any object with
    ``__cuda_array_interface__`` or a ``__dlpack_device__()`` of type kDLCUDA (2). Never raises."""
    if type(obj) is np.ndarray:  # the common case, first: asking NumPy for its DLPack device costs ~0.8 us
        return False
    try:
        if isinstance(obj, DeviceArray):
            return True
        if _is_torch(obj):
            return bool(obj.is_cuda)
        if hasattr(obj, "__cuda_array_interface__"):
            return True
        if hasattr(obj, "__dlpack_device__"):
            return int(obj.__dlpack_device__()[0]) == _KDLCUDA
    except Exception:
        return False
    return False


def _kind(obj: Any) -> str:
    if _is_torch(obj):
        return "torch"
    if _is_cupy(obj):
        return "cupy"
    return "device"


@dataclass
class _View:
    """What the kernels need from a device array: pointer, shape, dtype, device; the object is
    kept so the memory stays alive."""

    obj: Any
    ptr: int
    shape: tuple[int, ...]
    dtype: str
    device: int
    strides: tuple[int, ...] | None  # bytes; None: C-contiguous
    stream: int | None  # the producer's stream (CAI v3), or None
    keep: Any = None  # a DLPack capsule that owns the memory

    def contiguous(self) -> bool:
        if self.strides is None or 0 in self.shape:
            return True
        expected = _c_strides(self.shape, _ITEMSIZE[self.dtype])
        return all(n == 1 or s == e for n, s, e in zip(self.shape, self.strides, expected))


def _view(obj: Any, name: str) -> _View:
    """Reads the device array ``obj``; raises TypeError naming ``name`` if it is not one."""
    if isinstance(obj, DeviceArray):
        return _View(obj, obj.ptr, obj.shape, obj.dtype.name, obj.device, None, None)
    if _is_torch(obj):
        if not obj.is_cuda:
            raise TypeError(f"{name} is a torch tensor on {obj.device}, not on a CUDA device")
        dtype = str(obj.dtype).replace("torch.", "")
        if dtype not in _ITEMSIZE:
            raise TypeError(f"{name} has unsupported dtype {obj.dtype}")
        itemsize = _ITEMSIZE[dtype]
        return _View(obj, int(obj.data_ptr()), tuple(obj.shape), dtype, int(obj.device.index or 0),
                     tuple(int(s) * itemsize for s in obj.stride()), None)  # fmt: skip
    if hasattr(obj, "__cuda_array_interface__"):
        cai = obj.__cuda_array_interface__
        if cai.get("mask") is not None:
            raise ValueError(f"{name}: masked arrays are not supported")
        try:
            dtype = np.dtype(cai["typestr"]).name
        except TypeError as exc:
            raise TypeError(f"{name} has unsupported typestr {cai['typestr']!r}") from exc
        if dtype not in _ITEMSIZE:
            raise TypeError(f"{name} has unsupported dtype {dtype}")
        ptr = int(cai["data"][0])
        device = _cuda.pointer_device(ptr) if (_cuda is not None and ptr) else -1
        if device < 0:
            device = int(_cuda.current_device()) if _cuda is not None and _cuda.device_count() > 0 else 0
        strides = cai.get("strides")
        stream = cai.get("stream")
        return _View(obj, ptr, tuple(int(n) for n in cai["shape"]), dtype, int(device),
                     tuple(int(s) for s in strides) if strides is not None else None,
                     int(stream) if stream is not None else None)  # fmt: skip
    if hasattr(obj, "__dlpack_device__") and hasattr(obj, "__dlpack__"):
        dev_type, dev_id = obj.__dlpack_device__()
        if int(dev_type) != _KDLCUDA:
            raise TypeError(f"{name} is a DLPack array on device type {dev_type}, not CUDA ({_KDLCUDA})")
        capsule = obj.__dlpack__(stream=-1)  # ordering: see the contract (the caller's stream)
        info = _require_cuda().dlpack_info(capsule)
        dtype = _DLPACK.get((info["code"], info["bits"]))
        if dtype is None or info["lanes"] != 1:
            raise TypeError(f"{name} has unsupported DLPack dtype code {info['code']} bits {info['bits']}")
        strides = info["strides"]
        itemsize = _ITEMSIZE[dtype]
        return _View(obj, int(info["data"]), tuple(info["shape"]), dtype, int(dev_id),
                     tuple(int(s) * itemsize for s in strides) if strides is not None else None, None,
                     keep=capsule)  # fmt: skip
    raise TypeError(f"{name} must be an array on a CUDA device, got {type(obj).__name__}")


def _stream_handle(stream: Any) -> int:
    if isinstance(stream, (int, np.integer)) and not isinstance(stream, bool):
        return int(stream)
    for attr in ("cuda_stream", "ptr", "handle"):  # torch.cuda.Stream, cupy Stream, others
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise TypeError(f"stream must be an int (cudaStream_t), a torch/CuPy stream or None, got {type(stream).__name__}")


# ----------------------------------------------------------------------------------------------
# The context of one call: device, stream, dtype, the kind of arrays to allocate
# ----------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    device: int
    stream: int
    dtype: str
    kind: str
    like: Any  # an array of that kind on that device (torch: for its device)

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Any:
        dtype = dtype or self.dtype
        shape = tuple(int(n) for n in shape)
        if self.kind == "torch":
            import torch

            out = torch.empty(shape, dtype=getattr(torch, dtype), device=self.like.device)
        elif self.kind == "cupy":
            import cupy

            if dtype == "bfloat16":
                raise TypeError("CuPy has no bfloat16; use torch tensors for bfloat16")
            with cupy.cuda.Device(self.device):
                out = cupy.empty(shape, dtype=dtype)
        else:
            if dtype == "bfloat16":
                raise TypeError("bfloat16 needs torch (or DLPack) arrays: DeviceArray does not hold bfloat16")
            return DeviceArray(shape, dtype, self.device, self.stream)  # poisons itself under _POISON
        if _POISON:
            self.fill(out, 0xFF)
        return out

    def zeros(self, shape: tuple[int, ...], dtype: str | None = None) -> Any:
        out = self.empty(shape, dtype)
        self.fill(out, 0)
        return out

    def fill(self, arr: Any, byte: int) -> None:
        v = _view(arr, "array")
        nbytes = int(np.prod(v.shape, dtype=np.int64)) * _ITEMSIZE[v.dtype]
        _cuda.memset(v.ptr, byte, nbytes, self.stream, self.device)

    def copy(self, v: _View) -> Any:
        """A C-contiguous device copy of ``v`` (of this call's kind)."""
        out = self.empty(v.shape, v.dtype)
        nbytes = int(np.prod(v.shape, dtype=np.int64)) * _ITEMSIZE[v.dtype]
        if nbytes:
            _cuda.memcpy_dtod(_view(out, "copy").ptr, v.ptr, nbytes, self.stream, self.device)
        return out

    def from_host(self, a: np.ndarray) -> Any:
        a = np.ascontiguousarray(a)
        out = self.empty(a.shape, a.dtype.name)
        if a.size:
            _cuda.memcpy_htod(_view(out, "copy").ptr, a, self.stream, self.device)
        return out


def _context(anchor: Any, dtype: str, stream: Any) -> _Ctx:
    v = _view(anchor, "x")
    kind = _kind(anchor)
    if stream is not None:
        handle = _stream_handle(stream)
    elif kind == "torch":
        import torch

        handle = int(torch.cuda.current_stream(anchor.device).cuda_stream)
    elif kind == "cupy":
        import cupy

        with cupy.cuda.Device(v.device):
            handle = int(cupy.cuda.get_current_stream().ptr)
    elif isinstance(anchor, DeviceArray):
        handle = anchor.stream
    else:
        handle = 0
    ctx = _Ctx(v.device, handle, dtype, kind, None)
    ctx.like = anchor if kind != "torch" else anchor.new_empty((0,))  # torch: only its device is used
    return ctx


def _float_input(value: Any, name: str, ctx: _Ctx, shape: tuple[int, ...], letters: str = "") -> tuple[Any, _View]:
    """``value`` as a C-contiguous device array of the call's dtype, device and the given shape."""
    if is_device_array(value):
        v = _view(value, name)
        if v.dtype != ctx.dtype:
            raise TypeError(f"{name} must have dtype {ctx.dtype} (that of weight_ih), got {v.dtype}")
        if v.device != ctx.device:
            raise ValueError(f"{name} is on CUDA device {v.device}, the other arrays on device {ctx.device}")
        _check_shape(v.shape, name, shape, letters)
        if v.stream is not None and v.stream != (ctx.stream or 1):
            _cuda.stream_wait(ctx.stream, v.stream, ctx.device)
        if not v.contiguous():
            if ctx.kind == "torch" and _is_torch(value):
                value = value.contiguous()
            elif _is_cupy(value):
                import cupy

                value = cupy.ascontiguousarray(value)
            else:
                raise ValueError(f"{name} must be C-contiguous")
            v = _view(value, name)
        return value, v
    # A host array: checked and cast here, then copied in.
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a floating-point array, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if ctx.dtype == "bfloat16":
        raise TypeError(f"{name} is a host array; bfloat16 calls need every array on the device")
    _check_shape(arr.shape, name, shape, letters)
    dev = ctx.from_host(arr.astype(ctx.dtype, copy=False))
    return dev, _view(dev, name)


def _check_shape(actual: tuple[int, ...], name: str, expected: tuple[int, ...], letters: str = "") -> None:
    if tuple(actual) != tuple(expected):
        what = f"{tuple(expected)}" + (f" {letters}" if letters else "")
        raise ValueError(f"{name} must have shape {what}, got {tuple(actual)}")


def _lengths(lengths: Any, T: int, B: int, ctx: _Ctx) -> Any:
    """A device int64 copy of ``lengths`` (checked on the host), or None."""
    if lengths is None:
        return None
    if is_device_array(lengths):
        v = _view(lengths, "lengths")
        if v.dtype not in ("int32", "int64"):
            raise ValueError(f"lengths must be integers, got dtype {v.dtype}")
        host = np.empty(v.shape, v.dtype)
        if not v.contiguous():
            raise ValueError("lengths must be C-contiguous")
        if host.size:
            _cuda.memcpy_dtoh(host, v.ptr, ctx.stream, ctx.device)
        lengths = host
    return ctx.from_host(_checks.lengths_array(lengths, T, B))  # the host path's checks


def _ptr(arr: Any) -> int:
    return 0 if arr is None else _view(arr, "array").ptr


# ----------------------------------------------------------------------------------------------
# Forward and backward
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CudaTape:
    """What :func:`forward` keeps for :func:`backward`: the fields of
    :class:`fusedrnn.functional.Tape`, as device arrays (private copies of ``x``, ``lengths`` and
    the weights), plus the call's device, dtype name and array kind."""

    cell: str
    reverse: bool
    lengths: Any
    x: Any
    weight_ih: Any
    weight_hh: Any
    weight_hr: Any
    has_bias: bool
    gates: Any
    h_prev: Any
    c_prev: Any
    aux: Any
    m: Any
    device: int
    dtype: str
    kind: str
    like: Any


def _check_cell_and_path(cell: str, path: str) -> None:
    if cell not in _GATES:
        raise ValueError(f"cell must be one of {tuple(_GATES)}, got {cell!r}")
    if path not in _PATHS:
        raise ValueError(f"path must be one of {_PATHS}, got {path!r}")


def forward(
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
    *,
    path: str = "auto",
    stream: Any = None,
) -> tuple[Any, Any, Any, CudaTape | None]:
    """One layer and direction on the GPU; see the module docstring for the contract."""
    _check_cell_and_path(cell, path)
    cuda = _require_cuda()
    G = _GATES[cell]
    lstm = cell == "lstm"
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")
    anchor = x if is_device_array(x) else weight_ih
    if not is_device_array(anchor):
        raise TypeError("fusedrnn.cuda.forward needs x or weight_ih on a CUDA device (got host arrays)")
    w_view = _view(weight_ih, "weight_ih") if is_device_array(weight_ih) else None
    dtype = w_view.dtype if w_view is not None else np.asarray(weight_ih).dtype.name
    if dtype not in _DTYPE_CODE:
        raise TypeError(f"weight_ih must have dtype float32, float64, float16 or bfloat16, got {dtype}")
    ctx = _context(anchor, dtype, stream)
    token = ctx.empty((0,))  # what the tape keeps to recall the device, stream and kind
    ctx.like = token

    w_shape = w_view.shape if w_view is not None else np.shape(weight_ih)
    if len(w_shape) != 2 or w_shape[0] == 0 or w_shape[0] % G or w_shape[1] == 0:
        raise ValueError(f"weight_ih must have shape ({G}*H, I) with H, I >= 1, got {tuple(w_shape)}")
    H, I = w_shape[0] // G, w_shape[1]
    w_ih, w_ih_v = _float_input(weight_ih, "weight_ih", ctx, (G * H, I))
    P = H
    w_hr = w_hr_v = None
    if weight_hr is not None:
        if not lstm:
            raise ValueError("weight_hr (a projection) is only for the LSTM")
        hr_shape = _view(weight_hr, "weight_hr").shape if is_device_array(weight_hr) else np.shape(weight_hr)
        if len(hr_shape) != 2 or hr_shape[1] != H or not 1 <= hr_shape[0] < H:
            raise ValueError(f"weight_hr must have shape (P, {H}) (proj_size P, H) with 1 <= P < H, got {tuple(hr_shape)}")
        P = hr_shape[0]
        w_hr, w_hr_v = _float_input(weight_hr, "weight_hr", ctx, (P, H))
    w_hh, _ = _float_input(weight_hh, "weight_hh", ctx, (G * H, P), "(G*H, P)" if weight_hr is not None else "(G*H, H)")
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("bias_ih and bias_hh must both be arrays or both be None")
    has_bias = bias_ih is not None
    if has_bias:
        b_ih, _ = _float_input(bias_ih, "bias_ih", ctx, (G * H,), "(G*H,)")
        b_hh, _ = _float_input(bias_hh, "bias_hh", ctx, (G * H,), "(G*H,)")
    else:
        b_ih = ctx.zeros((G * H,))
        b_hh = ctx.zeros((G * H,))
    x_shape = _view(x, "x").shape if is_device_array(x) else np.shape(x)
    if len(x_shape) != 3 or x_shape[2] != I:
        raise ValueError(f"x must have shape (T, B, {I}) (T, B, I), got {tuple(x_shape)}")
    T, B = int(x_shape[0]), int(x_shape[1])
    x_dev, x_v = _float_input(x, "x", ctx, (T, B, I))
    h0_dev, _ = _float_input(h0, "h0", ctx, (B, P), "(B, P)" if weight_hr is not None else "(B, H)")
    c0_dev = _float_input(c0, "c0", ctx, (B, H), "(B, H)")[0] if lstm else None
    lengths_dev = _lengths(lengths, T, B, ctx)

    if need_tape:  # private copies; padding zeroed so that whatever it holds reaches no gradient
        x_c = ctx.copy(x_v)
        if lengths_dev is not None and T * B:
            cuda.zero_padding(_DTYPE_CODE[dtype], _ptr(x_c), T, B, I, _ptr(lengths_dev), ctx.stream, ctx.device)
        w_ih_c, w_hh_c = ctx.copy(w_ih_v), ctx.copy(_view(w_hh, "weight_hh"))
        w_hr_c = ctx.copy(w_hr_v) if w_hr_v is not None else None
    else:
        x_c, w_ih_c, w_hh_c, w_hr_c = x_dev, w_ih, w_hh, w_hr
    y = ctx.empty((T, B, P))
    h_n = ctx.empty((B, P))
    c_n = ctx.empty((B, H)) if lstm else None
    gates = ctx.empty((T, B, G * H))
    h_prev = ctx.empty((T, B, P)) if need_tape else None
    c_prev = ctx.empty((T, B, H)) if need_tape and lstm else None
    aux = ctx.empty((T, B, H)) if need_tape and cell == "gru" else None
    m = ctx.empty((T, B, H)) if need_tape and w_hr_c is not None else None
    if B > 0 and T > 0:
        cuda.forward(
            _CELL_CODE[cell], T, B, I, H, P, bool(reverse), _ptr(lengths_dev),
            _ptr(x_c), _ptr(h0_dev), _ptr(c0_dev), _ptr(w_ih_c), _ptr(w_hh_c), _ptr(b_ih), _ptr(b_hh), _ptr(w_hr_c),
            _ptr(y), _ptr(h_n), _ptr(c_n), _ptr(gates), _ptr(h_prev), _ptr(c_prev), _ptr(aux), _ptr(m),
            dtype=_DTYPE_CODE[dtype], stream=ctx.stream, path=path, device=ctx.device,
        )  # fmt: skip
    elif B > 0:  # T == 0: the state passes through
        h_n = ctx.copy(_view(h0_dev, "h0"))
        c_n = ctx.copy(_view(c0_dev, "c0")) if lstm else None
    tape = None
    if need_tape:
        tape = CudaTape(cell, bool(reverse), lengths_dev, x_c, w_ih_c, w_hh_c, w_hr_c, has_bias, gates, h_prev,
                        c_prev, aux, m, ctx.device, dtype, ctx.kind, ctx.like)  # fmt: skip
    return y, h_n, c_n, tape


def backward(
    cell: str, tape: Any, dy: Any, dh_n: Any, dc_n: Any, *, path: str = "auto", stream: Any = None
) -> dict[str, Any]:
    """Backward through time of :func:`forward`; see the module docstring for the contract."""
    _check_cell_and_path(cell, path)
    if not isinstance(tape, CudaTape) or tape.cell != cell:
        raise TypeError(f"tape must be the CudaTape returned by fusedrnn.cuda.forward for cell {cell!r}")
    cuda = _require_cuda()
    x_v = _view(tape.x, "tape.x")
    T, B, I = x_v.shape
    GH, P = _view(tape.weight_hh, "tape.weight_hh").shape
    H = GH // _GATES[cell]
    lstm = cell == "lstm"
    projected = tape.weight_hr is not None
    ctx = _context(tape.like, tape.dtype, stream)
    dy_dev, _ = _float_input(dy, "dy", ctx, (T, B, P), "(T, B, P)" if P != H else "(T, B, H)")

    def state_grad(value: Any, name: str, size: int) -> Any:
        if value is None:
            return ctx.zeros((B, size))
        return _float_input(value, name, ctx, (B, size))[0]

    dh_n_dev = state_grad(dh_n, "dh_n", P)
    dc_n_dev = state_grad(dc_n, "dc_n", H) if lstm else None
    grads: dict[str, Any] = {"x": ctx.empty((T, B, I)), "h0": ctx.empty((B, P))}
    if lstm:
        grads["c0"] = ctx.empty((B, H))
    grads["weight_ih"] = ctx.empty((GH, I))
    grads["weight_hh"] = ctx.empty((GH, P))
    db_ih, db_hh = ctx.empty((GH,)), ctx.empty((GH,))
    dw_hr = ctx.empty((P, H)) if projected else None
    if T > 0 and B > 0:
        dgates = ctx.empty((T, B, GH))
        dgates_rec = ctx.empty((T, B, GH)) if cell == "gru" else None
        dh_total = ctx.empty((T, B, P)) if projected else None
        cuda.backward(
            _CELL_CODE[cell], T, B, I, H, P, tape.reverse, _ptr(tape.lengths),
            _ptr(tape.x), _ptr(tape.weight_ih), _ptr(tape.weight_hh), _ptr(tape.weight_hr), _ptr(tape.gates),
            _ptr(tape.h_prev), _ptr(tape.c_prev), _ptr(tape.aux), _ptr(tape.m),
            _ptr(dy_dev), _ptr(dh_n_dev), _ptr(dc_n_dev),
            _ptr(grads["x"]), _ptr(grads["h0"]), _ptr(grads.get("c0")), _ptr(grads["weight_ih"]),
            _ptr(grads["weight_hh"]), _ptr(db_ih), _ptr(db_hh), _ptr(dw_hr),
            _ptr(dgates), _ptr(dgates_rec), _ptr(dh_total),
            dtype=_DTYPE_CODE[tape.dtype], stream=ctx.stream, path=path, device=ctx.device,
        )  # fmt: skip
    else:  # no steps or no sequences: the state gradients pass through, the others are zero
        if B > 0:
            grads["h0"] = ctx.copy(_view(dh_n_dev, "dh_n"))
            if lstm:
                grads["c0"] = ctx.copy(_view(dc_n_dev, "dc_n"))
        for arr in (grads["weight_ih"], grads["weight_hh"], db_ih, db_hh) + ((dw_hr,) if projected else ()):
            ctx.fill(arr, 0)
    grads["bias_ih"] = db_ih if tape.has_bias else None
    grads["bias_hh"] = db_hh if tape.has_bias else None
    if projected:
        grads["weight_hr"] = dw_hr
    return grads
