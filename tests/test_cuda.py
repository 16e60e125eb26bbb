"""The CUDA backend (``fusedrnn.cuda``).

- Host-side tests run everywhere: ``cuda_available()``, ``build_info()``'s CUDA fields, the clear
  errors without a GPU, argument checks, recognising device arrays.
- GPU tests (``needs_gpu``) skip without a usable device: every cell x path (persistent, stepwise)
  x dtype against the CPU kernels and the float64 reference over odd shapes, lengths, reverse and
  the LSTM projection; every output and workspace poisoned with NaN first; bitwise determinism;
  CuPy and torch.cuda inputs when they are installed.

Tolerances (normwise, ``max|a - ref| <= rtol * max|ref| + atol``): float32 against the CPU
kernels in float32 1e-5; against the reference the table in conftest.py; float16 and bfloat16
against the reference on the same rounded inputs 1e-2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fusedrnn
from conftest import CELLS, GATES, TOLERANCE, functional, reference
from fusedrnn import cuda

needs_gpu = pytest.mark.skipif(not fusedrnn.cuda_available(), reason="no usable CUDA device (or a build without CUDA)")
PATHS = ("persistent", "stepwise")
LOW_PRECISION = {"float16": 1e-2, "bfloat16": 1e-2}


@pytest.fixture(autouse=True)
def poison_device_allocations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every device output and workspace starts as NaN bytes, so unwritten elements fail."""
    monkeypatch.setattr(cuda, "_POISON", True)


# ----------------------------------------------------------------------------------------------
# Host side: runs with or without a GPU
# ----------------------------------------------------------------------------------------------


def test_cuda_available_is_a_bool_and_never_raises() -> None:
    assert isinstance(fusedrnn.cuda_available(), bool)
    assert "cuda_available" in fusedrnn.__all__
    assert isinstance(cuda.device_count(), int) and cuda.device_count() >= 0
    assert fusedrnn.cuda_available() == (cuda.device_count() > 0)


def test_build_info_reports_cuda() -> None:
    info = fusedrnn.build_info()
    assert isinstance(info["cuda"], bool)
    archs = list(info["cuda_architectures"])
    assert info["cuda"] == (cuda._cuda is not None)
    if info["cuda"]:
        assert archs and all(isinstance(a, str) and a for a in archs)
        assert any(a.startswith("80") for a in archs) and any(a.startswith("90") for a in archs)
    else:
        assert archs == []


@pytest.mark.skipif(fusedrnn.cuda_available(), reason="a GPU is available")
def test_forward_without_gpu_raises_clearly() -> None:
    x = np.zeros((2, 3, 4), np.float32)
    w = np.zeros((16, 4), np.float32)
    with pytest.raises(RuntimeError, match="built without CUDA|no CUDA device is available"):
        cuda.forward("lstm", x, np.zeros((3, 4)), np.zeros((3, 4)), w, np.zeros((16, 4), np.float32), None, None,
                     None, False, True)  # fmt: skip
    with pytest.raises(RuntimeError, match="built without CUDA|no CUDA device is available"):
        cuda._require_cuda()


@pytest.mark.skipif(fusedrnn.cuda_available(), reason="a GPU is available")
def test_device_array_without_gpu_raises_clearly() -> None:
    with pytest.raises(RuntimeError, match="built without CUDA|no CUDA device is available"):
        cuda.DeviceArray((3, 4), np.float32)
    with pytest.raises(RuntimeError, match="built without CUDA|no CUDA device is available"):
        cuda.DeviceArray.from_numpy(np.zeros(3))


def test_bad_cell_and_path_are_named_before_any_device_work() -> None:
    with pytest.raises(ValueError, match="cell"):
        cuda.forward("lstmx", None, None, None, None, None, None, None, None, False, True)
    with pytest.raises(ValueError, match="path"):
        cuda.forward("gru", None, None, None, None, None, None, None, None, False, True, path="fast")
    with pytest.raises(TypeError, match="tape"):
        cuda.backward("gru", object(), None, None, None)


class _FakeCAI:
    """Host memory dressed as a CUDA array (never dereferenced by these tests)."""

    def __init__(self, shape: tuple[int, ...], typestr: str, strides: Any = None, stream: Any = None) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (4096, False), "version": 3,
                                         "strides": strides, "stream": stream}  # fmt: skip


def test_recognises_device_arrays() -> None:
    assert not cuda.is_device_array(np.zeros(3))
    assert not cuda.is_device_array([1.0, 2.0])
    assert not cuda.is_device_array(None)
    assert cuda.is_device_array(_FakeCAI((2, 3), "<f4"))

    class CpuDLPack:
        def __dlpack__(self, **kw: Any) -> Any:  # pragma: no cover - never called
            raise AssertionError

        def __dlpack_device__(self) -> tuple[int, int]:
            return (1, 0)

    class CudaDLPack(CpuDLPack):
        def __dlpack_device__(self) -> tuple[int, int]:
            return (2, 0)

    assert not cuda.is_device_array(CpuDLPack())
    assert cuda.is_device_array(CudaDLPack())


def test_reads_the_cuda_array_interface() -> None:
    v = cuda._view(_FakeCAI((2, 3), "<f4", stream=7), "x")
    assert (v.ptr, v.shape, v.dtype, v.stream) == (4096, (2, 3), "float32", 7)
    assert v.contiguous()
    assert cuda._view(_FakeCAI((2, 3), "<f8", strides=(24, 8)), "x").contiguous()
    assert not cuda._view(_FakeCAI((2, 3), "<f8", strides=(8, 16)), "x").contiguous()
    assert cuda._view(_FakeCAI((1, 3), "<f2", strides=(999, 2)), "x").contiguous()  # size-1 dims
    with pytest.raises(TypeError, match="weight_ih"):
        cuda._view(np.zeros(3), "weight_ih")
    with pytest.raises(TypeError, match="x has unsupported"):
        cuda._view(_FakeCAI((2,), "<c8"), "x")


def test_stream_handles() -> None:
    assert cuda._stream_handle(0) == 0 and cuda._stream_handle(np.int64(5)) == 5

    class TorchLike:
        cuda_stream = 11

    class CupyLike:
        ptr = 12

    assert cuda._stream_handle(TorchLike()) == 11 and cuda._stream_handle(CupyLike()) == 12
    with pytest.raises(TypeError, match="stream"):
        cuda._stream_handle("default")


@pytest.mark.skipif(cuda._cuda is None, reason="built without CUDA")
def test_compiled_module_checks_arguments_without_a_device() -> None:
    m = cuda._cuda
    assert m.device_count() >= 0  # never raises, GPU or not
    args = [2, 3, 2, 4, 5, 5, False, 0] + [0] * 16
    with pytest.raises(ValueError, match="required array is missing"):
        m.forward(*args, dtype=0)
    with pytest.raises(ValueError, match="dtype"):
        m.forward(*args, dtype=9)
    with pytest.raises(ValueError, match="path"):
        m.forward(*args, dtype=0, path="fast")
    with pytest.raises(ValueError, match="cell"):
        m.forward(7, *args[1:], dtype=0)
    with pytest.raises(ValueError, match="required array is missing"):
        m.backward(*([2, 3, 2, 4, 5, 5, False, 0] + [0] * 23), dtype=0)


# ----------------------------------------------------------------------------------------------
# GPU helpers
# ----------------------------------------------------------------------------------------------


def make_inputs(rng: np.random.Generator, cell: str, T: int, B: int, I: int, H: int, *, P: int = 0,
                lengths: bool = False, bias: bool = True) -> dict[str, Any]:  # fmt: skip
    """Random float64 inputs (never zeros) for one layer; P > 0: an LSTM projection."""
    G = GATES[cell]
    Ph = P or H
    s = 1.0 / np.sqrt(H)
    a: dict[str, Any] = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, Ph)) * 0.5,
        "weight_ih": rng.uniform(-s, s, (G * H, I)),
        "weight_hh": rng.uniform(-s, s, (G * H, Ph)),
        "bias_ih": rng.uniform(-s, s, (G * H,)) if bias else None,
        "bias_hh": rng.uniform(-s, s, (G * H,)) if bias else None,
        "weight_hr": rng.uniform(-s, s, (P, H)) if P else None,
        "c0": rng.standard_normal((B, H)) * 0.5 if cell == "lstm" else None,
        "dy": rng.standard_normal((T, B, Ph)),
        "dh_n": rng.standard_normal((B, Ph)),
        "dc_n": rng.standard_normal((B, H)) if cell == "lstm" else None,
        "lengths": rng.integers(1, T + 1, B).astype(np.int64) if lengths else None,
    }
    return a


FLOATS = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "dy", "dh_n", "dc_n")


def rounded(a: dict[str, Any], dtype: str) -> dict[str, Any]:
    """The inputs rounded to ``dtype`` and held in float64 (the oracle's inputs)."""
    out = dict(a)
    for k in FLOATS:
        if a[k] is None:
            continue
        if dtype == "bfloat16":
            torch = pytest.importorskip("torch")
            out[k] = torch.from_numpy(a[k]).to(torch.bfloat16).to(torch.float64).numpy()
        else:
            out[k] = a[k].astype(dtype).astype(np.float64)
    return out


def run_host(module: Any, cell: str, a: dict[str, Any], reverse: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Forward + backward through ``functional`` or ``reference`` (the arrays' dtype decides)."""
    kw: dict[str, Any] = {"lengths": a["lengths"], "reverse": reverse}
    w = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    if cell == "lstm":
        if a["weight_hr"] is not None:
            kw["weight_hr"] = a["weight_hr"]
        y, h_n, c_n, tape = module.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
        return {"y": y, "h_n": h_n, "c_n": c_n}, dict(module.lstm_backward(tape, a["dy"], a["dh_n"], a["dc_n"]))
    if cell == "gru":
        y, h_n, tape = module.gru_forward(a["x"], a["h0"], *w, **kw)
        return {"y": y, "h_n": h_n}, dict(module.gru_backward(tape, a["dy"], a["dh_n"]))
    y, h_n, tape = module.rnn_forward(a["x"], a["h0"], *w, nonlinearity=cell[4:], **kw)
    return {"y": y, "h_n": h_n}, dict(module.rnn_backward(tape, a["dy"], a["dh_n"]))


def to_device(value: Any, kind: str, dtype: str) -> Any:
    if value is None:
        return None
    if kind == "torch" or dtype == "bfloat16":
        torch = pytest.importorskip("torch")
        t = torch.from_numpy(np.ascontiguousarray(value)).to("cuda")
        return t.to(getattr(torch, dtype)) if t.is_floating_point() else t
    if kind == "cupy":
        cupy = pytest.importorskip("cupy")
        return cupy.asarray(value.astype(dtype) if value.dtype.kind == "f" else value)
    return cuda.DeviceArray.from_numpy(value.astype(dtype) if value.dtype.kind == "f" else value)


def to_host(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, cuda.DeviceArray):
        return value.numpy().astype(np.float64)
    if type(value).__module__.startswith("cupy"):
        return value.get().astype(np.float64)
    return value.detach().to("cpu").double().numpy()  # torch


def run_gpu(cell: str, a: dict[str, Any], reverse: bool, dtype: str, path: str, kind: str = "device",
            backward_path: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    d = {k: to_device(a[k], kind, dtype) for k in FLOATS}
    lengths = to_device(a["lengths"], kind, dtype)
    y, h_n, c_n, tape = cuda.forward(cell, d["x"], d["h0"], d["c0"], d["weight_ih"], d["weight_hh"], d["bias_ih"],
                                     d["bias_hh"], lengths, reverse, True, d["weight_hr"], path=path)  # fmt: skip
    if kind == "device" and dtype != "bfloat16":
        assert isinstance(y, cuda.DeviceArray) and isinstance(h_n, cuda.DeviceArray)
    grads = cuda.backward(cell, tape, d["dy"], d["dh_n"], d["dc_n"], path=backward_path or path)
    outs = {"y": to_host(y), "h_n": to_host(h_n)}
    if cell == "lstm":
        outs["c_n"] = to_host(c_n)
    return outs, {k: to_host(v) for k, v in grads.items()}


def assert_all_close(actual: tuple[dict, dict], ref: tuple[dict, dict], rtol: float, atol: float, what: str) -> None:
    for got, want in zip(actual, ref):
        assert set(got) == set(want), f"{what}: keys {sorted(got)} != {sorted(want)}"
        for k, r in want.items():
            g = got[k]
            if r is None:
                assert g is None, f"{what} {k}: expected None"
                continue
            r = np.asarray(r, np.float64)
            assert g.shape == r.shape, f"{what} {k}: shape {g.shape} != {r.shape}"
            if r.size == 0:
                continue
            assert np.all(np.isfinite(g)), f"{what} {k}: non-finite values (unwritten output?)"
            err, bound = np.max(np.abs(g - r)), rtol * np.max(np.abs(r)) + atol
            assert err <= bound, f"{what} {k}: max abs error {err:.3e} > {bound:.3e}"


def check_against_cpu_and_reference(cell: str, a: dict[str, Any], reverse: bool, dtype: str, path: str,
                                    kind: str = "device", backward_path: str | None = None) -> None:  # fmt: skip
    got = run_gpu(cell, a, reverse, dtype, path, kind, backward_path)
    ref = run_host(reference, cell, rounded(a, dtype), reverse)
    if dtype in LOW_PRECISION:
        assert_all_close(got, ref, LOW_PRECISION[dtype], 1e-3, f"{dtype} vs reference")
        return
    tol = TOLERANCE[np.dtype(dtype)]
    assert_all_close(got, ref, tol["rtol"], tol["atol"], f"{dtype} vs reference")
    cpu = run_host(functional, cell, {k: (v.astype(dtype) if k in FLOATS and v is not None else v)
                                      for k, v in a.items()}, reverse)  # fmt: skip
    rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-14)
    assert_all_close(got, cpu, rtol, atol, f"{dtype} vs the CPU kernels")


# ----------------------------------------------------------------------------------------------
# GPU: correctness
# ----------------------------------------------------------------------------------------------

SHAPES = [(T, B, H) for T in (1, 2, 17) for B in (1, 3, 16) for H in (1, 7, 64, 129)]


@needs_gpu
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,H", SHAPES)
def test_float32_every_shape(cell: str, path: str, T: int, B: int, H: int, rng: np.random.Generator) -> None:
    a = make_inputs(rng, cell, T, B, 5, H)
    check_against_cpu_and_reference(cell, a, False, "float32", path)


@needs_gpu
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16", "bfloat16"))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("T,B,H,lengths", [(17, 3, 7, True), (2, 16, 64, True), (17, 1, 129, False), (1, 3, 1, True)])
def test_dtypes_lengths_reverse(cell: str, path: str, dtype: str, reverse: bool, T: int, B: int, H: int,
                                lengths: bool, rng: np.random.Generator, request: pytest.FixtureRequest) -> None:  # fmt: skip
    if (cell, path, dtype, reverse, T, B, H) == ("gru", "persistent", "bfloat16", False, 1, 3, 1):
        # dh0 = -0.665 (dh * z) + 0.459 (through R): the bf16 tape's rounding of z alone is 4.3e-3 of
        # error, over this test's bound of 3.9e-3 (benchmarks/bf16_gru_tape_emulation.py reproduces
        # the GPU's 4.315e-3; with the tape in float32 it would be 4e-4).
        request.applymarker(pytest.mark.xfail(strict=True, reason="bf16 tape: cancellation in dh0"))
    a = make_inputs(rng, cell, T, B, 3, H, lengths=lengths, bias=not (T == 1 and B == 3))
    check_against_cpu_and_reference(cell, a, reverse, dtype, path)


@needs_gpu
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("T,B,H,P", [(17, 3, 7, 3), (2, 16, 64, 1), (5, 1, 129, 64)])
def test_lstm_projection(path: str, dtype: str, reverse: bool, T: int, B: int, H: int, P: int,
                         rng: np.random.Generator) -> None:  # fmt: skip
    a = make_inputs(rng, "lstm", T, B, 4, H, P=P, lengths=True)
    # The backward has no persistent form with a projection: forced, it raises; auto runs stepwise.
    check_against_cpu_and_reference("lstm", a, reverse, dtype, path, backward_path="auto")
    if path == "persistent":
        with pytest.raises(RuntimeError, match="projection"):
            run_gpu("lstm", a, reverse, dtype, "persistent")


@needs_gpu
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("path", ("auto",) + PATHS)
def test_deterministic(cell: str, path: str, rng: np.random.Generator) -> None:
    a = make_inputs(rng, cell, 17, 16, 9, 129, lengths=True)
    first = run_gpu(cell, a, True, "float32", path)
    second = run_gpu(cell, a, True, "float32", path)
    for one, two in zip(first, second):
        for k in one:
            if one[k] is not None:
                assert np.array_equal(one[k], two[k]), f"{k} differs between two runs"


@needs_gpu
@pytest.mark.parametrize("cell", CELLS)
def test_padding_is_exactly_zero_and_paths_agree(cell: str, rng: np.random.Generator) -> None:
    a = make_inputs(rng, cell, 9, 5, 4, 33, lengths=True)
    per_path = {path: run_gpu(cell, a, False, "float32", path) for path in PATHS}
    y = per_path["persistent"][0]["y"]
    pad = np.arange(9)[:, None] >= a["lengths"][None, :]
    assert np.all(y[pad] == 0)
    assert_all_close(per_path["persistent"], per_path["stepwise"], 1e-6, 1e-7, "persistent vs stepwise")


@needs_gpu
@pytest.mark.parametrize("cell", CELLS)
def test_empty_sizes(cell: str, rng: np.random.Generator) -> None:
    for T, B in ((0, 3), (4, 0)):
        a = make_inputs(rng, cell, max(T, 1), max(B, 1), 3, 5)
        a["x"], a["dy"] = a["x"][:T, :B], a["dy"][:T, :B]
        for k in ("h0", "c0", "dh_n", "dc_n"):
            if a[k] is not None:
                a[k] = a[k][:B]
        check_against_cpu_and_reference(cell, a, False, "float32", "auto")


@needs_gpu
@pytest.mark.parametrize("dtype", ("float32", "bfloat16"))
@pytest.mark.parametrize("exchange", ("tagged", "flags", "shared"))
@pytest.mark.parametrize("cell,H", [("lstm", 1000), ("gru", 700), ("rnn_tanh", 1030)])
def test_persistent_kernels_at_large_hidden_sizes(cell: str, H: int, exchange: str, dtype: str,
                                                  rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Register-resident blocks whose rows take several 32-column chunks per slice, the state passed
    # through tagged words or flags; "shared" forces the shared-memory kernel.
    monkeypatch.setenv("FUSEDRNN_CUDA_PERSISTENT", exchange)
    a = make_inputs(rng, cell, 3, 5, 8, H, lengths=True)
    check_against_cpu_and_reference(cell, a, True, dtype, "persistent", backward_path="auto")


@needs_gpu
@pytest.mark.parametrize("exchange", ("tagged", "flags"))
@pytest.mark.parametrize("cell,T,B,H,dtype", [("lstm", 2, 1000, 64, "float32"), ("lstm", 2, 48, 1024, "float32"),
                                              ("gru", 2, 1000, 64, "float32"), ("gru", 2, 48, 1030, "float32"),
                                              ("gru", 2, 1000, 64, "bfloat16")])  # fmt: skip
def test_persistent_kernels_in_chunks_of_sequences(cell: str, T: int, B: int, H: int, dtype: str, exchange: str,
                                                   rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # More sequences than one block's shared memory holds at once: the state (and, backward, the
    # gate gradients) pass through the product in chunks. GRU: its recurrent gate gradients
    # (dgates_rec) in chunks; G*H = 3090 and bfloat16 take the backward's plain-load exchange
    # instead of cp.async.
    monkeypatch.setenv("FUSEDRNN_CUDA_PERSISTENT", exchange)
    a = make_inputs(rng, cell, T, B, 8, H, lengths=True)
    check_against_cpu_and_reference(cell, a, False, dtype, "persistent")


@needs_gpu
def test_persistent_override_is_checked(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEDRNN_CUDA_PERSISTENT", "fast")
    with pytest.raises(ValueError, match="FUSEDRNN_CUDA_PERSISTENT"):
        run_gpu("gru", make_inputs(rng, "gru", 2, 2, 3, 5), False, "float32", "persistent")


@needs_gpu
def test_persistent_reports_why_it_cannot_run() -> None:
    # A float64 LSTM with H = 1024 needs 256 KiB of R per block on 132 SMs (more with fewer SMs):
    # more shared memory than any current GPU gives a block.
    with pytest.raises(RuntimeError, match="persistent"):
        run_gpu("lstm", make_inputs(np.random.default_rng(0), "lstm", 1, 1, 2, 1024), False, "float64",
                "persistent")  # fmt: skip
    reason = cuda._cuda.persistent_unsupported(2, 0, 1, 1, 2, 8192, 8192)
    assert "shared memory" in reason
    assert cuda._cuda.persistent_unsupported(2, 0, 1, 1, 2, 64, 64) == ""


@needs_gpu
@pytest.mark.parametrize("kind", ("cupy", "torch"))
def test_framework_arrays_in_and_out(kind: str, rng: np.random.Generator) -> None:
    pytest.importorskip(kind)
    a = make_inputs(rng, "gru", 6, 3, 4, 9, lengths=True)
    check_against_cpu_and_reference("gru", a, True, "float32", "auto", kind=kind)
    d = {k: to_device(a[k], kind, "float32") for k in FLOATS}
    y, h_n, _, _ = cuda.forward("gru", d["x"], d["h0"], None, d["weight_ih"], d["weight_hh"], d["bias_ih"],
                                d["bias_hh"], None, False, False)  # fmt: skip
    assert type(y) is type(d["x"]) and type(h_n) is type(d["x"])


@needs_gpu
def test_device_array_round_trip_and_protocols() -> None:
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    arr = cuda.DeviceArray.from_numpy(host)
    assert arr.shape == (3, 4) and arr.dtype == np.float32 and np.array_equal(arr.numpy(), host)
    cai = arr.__cuda_array_interface__
    assert cai["version"] == 3 and cai["typestr"] == "<f4" and cai["data"][0] == arr.ptr
    assert arr.__dlpack_device__() == (2, arr.device)
    assert np.array_equal(arr.copy().numpy(), host)
    torch = pytest.importorskip("torch")
    t = torch.from_dlpack(arr)
    assert t.is_cuda and np.array_equal(t.cpu().numpy(), host)


@needs_gpu
def test_mismatched_dtype_is_named(rng: np.random.Generator) -> None:
    a = make_inputs(rng, "rnn_tanh", 2, 2, 3, 4)
    d = {k: to_device(a[k], "device", "float32") for k in FLOATS}
    h0 = cuda.DeviceArray.from_numpy(a["h0"])  # float64
    with pytest.raises(TypeError, match="h0"):
        cuda.forward("rnn_tanh", d["x"], h0, None, d["weight_ih"], d["weight_hh"], None, None, None, False, True)
    with pytest.raises(ValueError, match="x must have shape"):
        cuda.forward("rnn_tanh", d["h0"], d["h0"], None, d["weight_ih"], d["weight_hh"], None, None, None, False,
                     True)  # fmt: skip
