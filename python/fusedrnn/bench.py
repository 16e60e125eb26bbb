"""``python -m fusedrnn bench``: check, then time the kernels next to their baselines.

Every configuration is first checked: the float32 kernels must agree with the float64 reference
(relative error <= 1e-4 on outputs and every gradient) before anything is timed. Timings are
medians over repeats of whole calls (argument checks and allocations included), and over at least a
quarter second of calls, so that a short call's median is not one burst of noise. Each
measurement's calls are spread over ``--rounds`` rounds (3) in which every library takes a turn,
so that a burst that lasts seconds reaches a third of one library's calls rather than all of them.
Baselines run in the same process: the NumPy reference (``--reference``; always in ``--quick``),
torch and ONNX Runtime when importable (forward only for ONNX Runtime, its inference engine), and
the forward through weights packed once (``functional.pack_weights``; ONNX Runtime's session
likewise packs once, so that is the like-for-like inference ratio). GFLOP/s use the forward's
``2*T*B*(I+H)*G*H`` FLOPs and three times that for forward+backward; "% peak" is against a float32
FMA loop on the same threads, the best reading so far: five at start-up and one per round
(interference only ever lowers a reading).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _runtime, functional, reference

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Config:
    cell: str
    T: int
    B: int
    I: int
    H: int

    @property
    def forward_flops(self) -> float:
        return 2.0 * self.T * self.B * (self.I + self.H) * GATES[self.cell] * self.H

    def __str__(self) -> str:
        return f"{self.cell} T={self.T} B={self.B} I={self.I} H={self.H}"


def _square(cell: str, H: int, B: int, T: int) -> Config:
    return Config(cell, T, B, H, H)


QUICK = [
    _square("lstm", 128, 1, 100),
    _square("lstm", 256, 16, 100),
    _square("gru", 128, 1, 100),
    _square("gru", 256, 32, 50),
    _square("rnn_tanh", 256, 16, 100),
]
# The fast-CPU issue's table (I = H), measured there for torch 2.13 and ONNX Runtime 1.32.
TABLE = [
    _square("lstm", 128, 1, 100),
    _square("lstm", 256, 16, 100),
    _square("lstm", 512, 64, 25),
    _square("lstm", 1024, 64, 50),
    _square("lstm", 1536, 4, 50),
    _square("gru", 128, 1, 100),
    _square("gru", 512, 32, 50),
    _square("gru", 1536, 4, 50),
]
# DeepBench's LSTM/GRU training sizes scaled to a 2-core machine: a diagonal through
# H in {256, 512, 1024, 1536} x B in {1, 4, 16, 64} x T in {25, 50, 100}.
DEEPBENCH = [
    _square(cell, H, B, T)
    for cell in ("lstm", "gru")
    for H, B, T in ((256, 1, 100), (256, 64, 50), (512, 4, 50), (512, 16, 25), (1024, 1, 25), (1024, 16, 25),
                    (1536, 4, 25), (1536, 64, 25))
]  # fmt: skip

# One step of one sequence per call, as in generation (sampling a token, feeding it back): the
# per-call cost of packing the weights is most of such a call; the packed forward skips it.
GENERATION = [_square(cell, H, 1, 1) for cell in ("lstm", "gru") for H in (256, 512, 1024)]


def _arrays(cfg: Config, dtype: Any, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    G, H, s = GATES[cfg.cell], cfg.H, 1.0 / np.sqrt(cfg.H)
    a = {
        "x": rng.standard_normal((cfg.T, cfg.B, cfg.I)),
        "h0": rng.standard_normal((cfg.B, H)) * 0.5,
        "c0": rng.standard_normal((cfg.B, H)) * 0.5,
        "weight_ih": rng.uniform(-s, s, (G * H, cfg.I)),
        "weight_hh": rng.uniform(-s, s, (G * H, H)),
        "bias_ih": rng.uniform(-s, s, G * H),
        "bias_hh": rng.uniform(-s, s, G * H),
        "dy": rng.standard_normal((cfg.T, cfg.B, H)),
    }
    return {k: v.astype(dtype) for k, v in a.items()}


def _runner(module: Any, cfg: Config, a: dict[str, np.ndarray]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(forward-only, forward+backward) closures through ``module`` (functional or reference)."""
    w = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    if cfg.cell == "lstm":

        def fwd(tape: bool) -> Any:
            return module.lstm_forward(a["x"], a["h0"], a["c0"], *w, need_tape=tape)

        def both() -> Any:
            out = fwd(True)
            return out[:3], module.lstm_backward(out[3], a["dy"])

    else:
        extra = {"nonlinearity": cfg.cell[4:]} if cfg.cell.startswith("rnn") else {}
        fwd_fn = module.gru_forward if cfg.cell == "gru" else module.rnn_forward
        bwd_fn = module.gru_backward if cfg.cell == "gru" else module.rnn_backward

        def fwd(tape: bool) -> Any:
            return fwd_fn(a["x"], a["h0"], *w, need_tape=tape, **extra)

        def both() -> Any:
            out = fwd(True)
            return out[:2], bwd_fn(out[2], a["dy"])

    return (lambda: fwd(False)), both


def _packed_forward(cfg: Config, a: dict[str, np.ndarray]) -> Callable[[], Any]:
    """The forward through weights packed once (``functional.pack_weights``), checked bitwise."""
    packed = functional.pack_weights(cfg.cell, a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    states = (a["h0"], a["c0"]) if cfg.cell == "lstm" else (a["h0"],)
    fwd = _runner(functional, cfg, a)[0]
    if not np.array_equal(packed.forward(a["x"], *states)[0], fwd()[0]):
        raise RuntimeError(f"{cfg}: the packed forward differs from the plain one")
    return lambda: packed.forward(a["x"], *states)


def _max_rel_error(cfg: Config) -> float:
    """Largest normwise relative error of the float32 kernels against the float64 reference."""
    a32 = _arrays(cfg, np.float32)
    a64 = {k: v.astype(np.float64) for k, v in a32.items()}
    outs, grads = _runner(functional, cfg, a32)[1]()
    ref_outs, ref_grads = _runner(reference, cfg, a64)[1]()
    pairs = list(zip(outs, ref_outs)) + [(grads[k], ref_grads[k]) for k in ref_grads]
    return max(float(np.max(np.abs(x - r)) / max(np.max(np.abs(r)), 1e-30)) for x, r in pairs)


def _call_times(
    fn: Callable[[], Any], repeats: int, budget: float = 3.0, min_seconds: float = 0.25, min_calls: int = 3
) -> list[float]:
    """Seconds of each of at least ``repeats`` calls and at least ``min_seconds`` of them, after one
    untimed call (a long call stops at ``budget``, after ``min_calls``). The minimum matters for
    short calls: 30 calls of 0.5 ms fit inside one of this machine's bursts of neighbour load (tens
    of ms at 2-5x the time) or the slow start after a pause, and their median then measured the
    burst (LSTM T=1 H=512: 2.3 ms against 0.5; ``benchmarks/small_calls.py after-pause`` shows
    such bursts)."""
    fn()  # warm up
    times: list[float] = []
    total = 0.0
    while len(times) < repeats or total < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        total += times[-1]
        if total > budget and len(times) >= min_calls:
            break
    return times


def _median_seconds(fn: Callable[[], Any], repeats: int, budget: float = 3.0, min_seconds: float = 0.25) -> float:
    return statistics.median(_call_times(fn, repeats, budget, min_seconds))


def _alternating_times(
    calls: dict[str, Callable[[], Any]], seconds: float, pause: float = 0.0, min_calls: int = 5
) -> dict[str, list[float]]:
    """Seconds of each variant's calls, the variants taking turns call by call (each timed call after
    an untimed one of the same variant, and ``pause`` seconds before that), for ``seconds`` and at
    least ``min_calls`` each: the benchmark scripts' in-process A/B, in which bursts of neighbour
    load hit every variant alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or min(map(len, times.values())) < min_calls:
        for name, call in calls.items():
            time.sleep(pause)
            call()
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def _call_for_mode(cfg: Config, a: dict[str, np.ndarray], mode: str) -> Callable[[], Any]:
    """The benchmark scripts' modes: ``f`` forward, ``fb`` forward + backward, ``p`` forward through
    weights packed once."""
    if mode == "p":
        return _packed_forward(cfg, a)
    fwd, both = _runner(functional, cfg, a)
    return {"f": fwd, "fb": both}[mode]


def _torch_runners(cfg: Config, a: dict[str, np.ndarray]) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    try:
        import torch
    except Exception:  # not installed, or a broken install: compare without it
        return None
    kinds = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    m = kinds[cfg.cell](cfg.I, cfg.H) if cfg.cell in kinds else torch.nn.RNN(cfg.I, cfg.H, nonlinearity=cfg.cell[4:])
    x, dy = torch.from_numpy(a["x"]), torch.from_numpy(a["dy"])

    def fwd() -> Any:
        with torch.no_grad():
            return m(x)

    def both() -> Any:
        xg = x.clone().requires_grad_(True)
        y, _ = m(xg)
        y.backward(dy)
        return xg.grad

    return fwd, both


def _ort_forward(
    cfg: Config, a: dict[str, np.ndarray], threads: int, spinning: bool = True
) -> Callable[[], Any] | None:
    """ONNX Runtime's forward on the same weights (gate orders permuted to ONNX's), checked once.
    ``spinning=False`` stops its worker threads from busy-waiting after each run (ORT's default)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except Exception:
        return None
    H = cfg.H
    order = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}.get(cfg.cell, [0])  # torch's gates -> ONNX's (iofc, zrh)

    def permute(m: np.ndarray) -> np.ndarray:
        return np.concatenate([m[g * H : (g + 1) * H] for g in order])[None]

    W, R = permute(a["weight_ih"]), permute(a["weight_hh"])
    bias = np.concatenate([permute(a["bias_ih"][:, None])[0, :, 0], permute(a["bias_hh"][:, None])[0, :, 0]])[None]
    op = {"lstm": "LSTM", "gru": "GRU"}.get(cfg.cell, "RNN")
    attrs: dict[str, Any] = {"hidden_size": H}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    if op == "RNN":
        attrs["activations"] = ["Tanh" if cfg.cell == "rnn_tanh" else "Relu"]
    inputs = ["X", "W", "R", "B", "", "h0"] + (["c0"] if op == "LSTM" else [])
    node = helper.make_node(op, inputs, ["Y"], **attrs)
    init = [helper.make_tensor(n, TensorProto.FLOAT, v.shape, v.ravel()) for n, v in (("W", W), ("R", R), ("B", bias))]
    feeds = {"X": a["x"], "h0": a["h0"][None]}
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(a["x"].shape)),
                    helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, cfg.B, H])]  # fmt: skip
    if op == "LSTM":
        feeds["c0"] = a["c0"][None]
        graph_inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, cfg.B, H]))
    graph = helper.make_graph([node], "rnn", graph_inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    y_ort = session.run(["Y"], feeds)[0][:, 0]
    y_ours = _runner(functional, cfg, a)[0]()[0]
    err = float(np.max(np.abs(y_ort - y_ours)) / np.max(np.abs(y_ours)))
    if not err <= 1e-3:
        raise RuntimeError(f"{cfg}: ONNX Runtime disagrees with fusedrnn (max relative error {err:.1e})")
    return lambda: session.run(["Y"], feeds)


def _rounds_of_times(
    calls: dict[str, Callable[[], Any]], rounds: int, repeats: int, pause: float,
    each_round: Callable[[], Any] | None = None,
) -> dict[str, float]:  # fmt: skip
    """The median seconds of each call, its timed calls spread over ``rounds`` rounds in which every
    call takes a block in turn (``ceil(repeats / rounds)`` calls and a share of the minimum time
    each), ``pause`` seconds before each round. A burst of neighbour load on the shared VM lasts
    seconds: with one block per call it moved a row's ratio against torch by up to 2x (perf-notes,
    thirteenth and fourteenth sessions); spread over rounds it lands in a third of a call's samples
    and the median passes over it, while the blocks stay long enough (calls back to back) for the
    libraries' threads to run as in a loop of calls. ``each_round`` runs after each pause."""
    per_round = math.ceil(repeats / rounds)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        time.sleep(pause)
        if each_round is not None:
            each_round()
        for name, fn in calls.items():
            times[name] += _call_times(fn, per_round, 3.0 / rounds, 0.25 / rounds, min_calls=1)
    return {name: statistics.median(t) for name, t in times.items()}


def run(configs: list[Config], repeats: int, with_reference: bool, with_torch: bool, with_ort: bool,
        peak: float, rounds: int = 3) -> list[dict[str, Any]]:  # fmt: skip
    """Check and time each configuration; prints and returns one row per configuration. ``peak``: the
    best FMA-loop reading so far; each round takes another, and a row's "% peak" is against the best
    reading up to it (one reading in a burst of neighbour load read half the peak: perf-notes,
    fourteenth session)."""
    from threadpoolctl import threadpool_limits

    from . import _C

    def read_peak() -> None:
        nonlocal peak
        peak = max(peak, _C.fma_peak_gflops())

    rows = []
    threads = _runtime.get_num_threads()
    for cfg in configs:
        # The check's NumPy products on one BLAS thread: OpenBLAS's threads spin on the cores for a
        # while after a call, and the first timing below (our plain forward) ran 1.5-2x slow beside
        # them on short configurations (GRU T=25 B=16 H=512: 14.7 ms in the table, 7.0 ms alone).
        with threadpool_limits(limits=1):
            err = _max_rel_error(Config(cfg.cell, min(cfg.T, 6), min(cfg.B, 4), cfg.I, cfg.H))
        if not err <= 1e-4:
            raise RuntimeError(f"{cfg}: kernels disagree with the reference (max relative error {err:.2e})")
        a = _arrays(cfg, np.float32)
        fwd, both = _runner(functional, cfg, a)
        row: dict[str, Any] = {"config": str(cfg), "check": err, "flops": cfg.forward_flops}
        calls = {"fwd": fwd, "fwdbwd": both, "packed_fwd": _packed_forward(cfg, a)}
        torch_fns = _torch_runners(cfg, a) if with_torch else None
        if torch_fns is not None:
            calls["torch_fwd"], calls["torch_fwdbwd"] = torch_fns
        ort_fwd = _ort_forward(cfg, a, threads) if with_ort else None
        if ort_fwd is not None:
            calls["ort_fwd"] = ort_fwd
        # Each round starts with ours after the baselines' calls, which leave threads spinning on the
        # cores for a while (ONNX Runtime's pool and torch's OpenMP team spin-wait by default): our
        # first timing ran 1.5-2x slow beside them on short configurations. Let them go to sleep first.
        row.update(_rounds_of_times(calls, rounds, repeats, pause=0.5, each_round=read_peak))
        row["peak"] = peak
        if with_reference:
            rfwd, rboth = _runner(reference, cfg, a)
            row["ref_fwd"] = _median_seconds(rfwd, 3, min_seconds=0.0)
            row["ref_fwdbwd"] = _median_seconds(rboth, 3, min_seconds=0.0)
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def _format_row(row: dict[str, Any]) -> str:
    f, fb = row["fwd"], row["fwdbwd"]
    gf, gfb = row["flops"] / f / 1e9, 3 * row["flops"] / fb / 1e9
    s = f"{row['config']:<32} {f * 1e3:9.3f} {gf:7.1f} {100 * gf / row['peak']:5.1f}% {fb * 1e3:10.3f} {gfb:7.1f}"
    for key, label in (("ref", "numpy"), ("torch", "torch")):
        if f"{key}_fwd" in row:
            s += f" | {label} {row[f'{key}_fwd'] / f:5.2f}x {row[f'{key}_fwdbwd'] / fb:5.2f}x"
    if "ort_fwd" in row:
        s += f" | ort {row['ort_fwd'] / f:5.2f}x"
    s += f" | packed {row['packed_fwd'] * 1e3:.3f} ms"
    if "ort_fwd" in row:
        s += f" ort {row['ort_fwd'] / row['packed_fwd']:5.2f}x"
    return s


def _summary(rows: list[dict[str, Any]]) -> str:
    lines = []
    for key, label in (("torch", "torch"), ("ort", "ONNX Runtime"), ("ref", "NumPy reference")):
        fwd = [r[f"{key}_fwd"] / r["fwd"] for r in rows if f"{key}_fwd" in r]
        both = [r[f"{key}_fwdbwd"] / r["fwdbwd"] for r in rows if f"{key}_fwdbwd" in r]
        if fwd:
            s = f"geometric mean speed-up over {label}: forward {math.exp(np.mean(np.log(fwd))):.2f}x"
            if both:
                s += f", forward+backward {math.exp(np.mean(np.log(both))):.2f}x"
            if key == "ort":  # ORT's session packs its weights once; so does pack_weights
                packed = [r["ort_fwd"] / r["packed_fwd"] for r in rows if "ort_fwd" in r]
                s += f"; forward with weights packed once {math.exp(np.mean(np.log(packed))):.2f}x"
            lines.append(s)
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not installed; no chart written")
        return
    labels = [r["config"] for r in rows]
    series = [("fusedrnn", [r["flops"] / r["fwd"] / 1e9 for r in rows])]
    for key, label in (("torch", "torch"), ("ort", "ONNX Runtime")):
        if all(f"{key}_fwd" in r for r in rows):
            series.append((label, [r["flops"] / r[f"{key}_fwd"] / 1e9 for r in rows]))
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    height = 0.8 / len(series)
    for k, (label, values) in enumerate(series):
        ax.barh([i + k * height for i in range(len(rows))], values, height, label=label)
    ax.axvline(max(row["peak"] for row in rows), color="k", linestyle="--", label="FMA peak")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], labels)
    ax.set_xlabel("forward GFLOP/s (float32)")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"chart written to {path}")


def gemm_shapes(cfg: Config) -> list[tuple[str, int, int, int, bool, bool]]:
    """(what, M, N, K, transpose_a, transpose_b) of the GEMMs one forward + backward of ``cfg`` runs
    (without a projection), with the operands stored as the kernels find them: W_ih [G*H, I] (used
    transposed in the forward), dgates [T*B, G*H] (transposed in the weight gradients)."""
    rows, gh = cfg.T * cfg.B, GATES[cfg.cell] * cfg.H
    return [("x W_ih^T", rows, gh, cfg.I, False, True), ("dgates W_ih", rows, cfg.I, gh, False, False),
            ("dgates^T x", gh, cfg.I, rows, True, False), ("dgates^T h", gh, cfg.H, rows, True, False)]  # fmt: skip


def gemm_table(configs: list[Config], repeats: int, threads: int, peak: float) -> int:
    """The kernels' GEMM (``_C.gemm``) against NumPy's ``@`` (its BLAS, limited to ``threads``) on
    the shapes of ``configs``, after checking that they agree. Each is timed in a block of its own:
    alternating call by call made ours 2x slower, since OpenBLAS's threads spin on the cores for a
    while after each of its calls; a pause before our block lets the previous shape's spin end."""
    from threadpoolctl import threadpool_limits

    from . import _C

    print(f"{'GEMM (float32; ^T: a transposed operand)':<40} {'M':>6} {'N':>6} {'K':>6} {'ours ms':>9}"
          f" {'GFLOP/s':>7} {'peak':>6} {'numpy ms':>9} {'GFLOP/s':>7} {'ratio':>6}")  # fmt: skip
    rng = np.random.default_rng(0)
    ratios = []
    with threadpool_limits(limits=threads):
        for cfg in configs:
            for what, M, N, K, ta, tb in gemm_shapes(cfg):
                a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
                b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
                op_a, op_b = (a.T if ta else a), (b.T if tb else b)  # views: NumPy's BLAS reads them as stored
                want = op_a.astype(np.float64) @ op_b.astype(np.float64)
                err = float(np.max(np.abs(_C.gemm(a, b, ta, tb) - want)) / np.max(np.abs(want)))
                if not err <= 1e-5:
                    print(f"{cfg} {what}: the GEMM DISAGREES with float64: max relative error {err:.2e}")
                    return 1
                time.sleep(0.2)
                t_ours = _median_seconds(lambda: _C.gemm(a, b, ta, tb), repeats)
                t_np = _median_seconds(lambda: op_a @ op_b, repeats)
                gf = 2.0 * M * N * K / 1e9
                ratios.append(t_np / t_ours)
                print(f"{str(cfg) + ' ' + what:<40} {M:6d} {N:6d} {K:6d} {t_ours * 1e3:9.3f} {gf / t_ours:7.1f}"
                      f" {100 * gf / t_ours / peak:5.1f}% {t_np * 1e3:9.3f} {gf / t_np:7.1f} {t_np / t_ours:5.2f}x")
    print(f"geometric mean speed-up over NumPy's sgemm: {float(np.exp(np.mean(np.log(ratios)))):.2f}x")
    return 0


def _cpu_description() -> str:
    """The processor's name and its L1d and L2 sizes where the system tells them (on AVX-512 the
    GEMM's blocks follow the caches, so a table names them)."""
    name = platform.processor() or "processor unknown"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass

    def read(index: str, leaf: str) -> str:
        with open(os.path.join(index, leaf)) as f:
            return f.read().strip()

    caches = {}
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            level, kind, size = read(index, "level"), read(index, "type"), read(index, "size")
        except OSError:
            continue
        if kind in ("Data", "Unified") and level in ("1", "2"):
            caches[f"L{level}{'d' if kind == 'Data' else ''}"] = size.replace("K", " KB")
    return ", ".join([name, *(f"{label} {size}" for label, size in caches.items())])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusedrnn bench", description=__doc__)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="a few small sizes (the default)")
    which.add_argument("--table", action="store_true", help="the fast-CPU issue's table of sizes")
    which.add_argument("--deepbench", action="store_true", help="DeepBench training sizes scaled to this machine")
    which.add_argument("--generation", action="store_true", help="one step of one sequence per call (T = B = 1)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (median)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over which each measurement's runs are spread, every library taking a turn in each")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library (default: all CPUs)")
    parser.add_argument("--reference", action="store_true", help="also time the NumPy reference (slow)")
    parser.add_argument("--no-torch", action="store_true", help="skip torch even when importable")
    parser.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime even when importable")
    parser.add_argument("--plot", metavar="PNG", help="write a chart (needs matplotlib)")
    parser.add_argument("--gemm", action="store_true",
                        help="time the kernels' own GEMM against NumPy's sgemm on the chosen configs' shapes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the CUDA kernels against cuDNN through torch (its own table of sizes)")
    parser.add_argument("--cuda-path", choices=("auto", "persistent", "stepwise"), default="auto",
                        help="with --device cuda: force one kernel path")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.threads is not None and not 1 <= args.threads <= _runtime.MAX_THREADS:
        parser.error(f"--threads must be in [1, {_runtime.MAX_THREADS}]")
    if args.device == "cuda":
        from . import bench_cuda

        return bench_cuda.main(None, args.repeats, args.cuda_path)
    configs = TABLE if args.table else DEEPBENCH if args.deepbench else GENERATION if args.generation else QUICK
    if args.threads:
        _runtime.set_num_threads(args.threads)
    threads = _runtime.get_num_threads()
    notes = []
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            notes.append(f"torch {torch.__version__}")
        except Exception:  # not installed, or a broken install
            with_torch = False
    with_ort = not args.no_ort
    if with_ort:
        try:
            import onnxruntime

            notes.append(f"onnxruntime {onnxruntime.__version__}")
        except Exception:
            with_ort = False
    with_reference = args.reference or not (args.table or args.deepbench or args.generation)
    info = _runtime.cpu_info()
    from . import _C

    peak = max(_C.fma_peak_gflops() for _ in range(5))
    print(f"fusedrnn bench: {platform.machine()}, {os.cpu_count()} CPUs ({_cpu_description()}), ISA {info['isa']}, "
          f"{threads} threads (all libraries), numpy {np.__version__}, {', '.join(notes) or 'no torch/onnxruntime'}")  # fmt: skip
    print(f"float32 FMA peak measured on {threads} threads: {peak:.0f} GFLOP/s; times are medians; "
          "ratios are baseline time / fusedrnn time")
    if args.gemm:
        return gemm_table(configs, args.repeats, threads, peak)
    print(f"{'config (float32)':<32} {'fwd ms':>9} {'GFLOP/s':>7} {'peak':>6} {'f+b ms':>10} {'GFLOP/s':>7}")
    rows = run(configs, args.repeats, with_reference, with_torch, with_ort, peak, args.rounds)
    best_peak = max(row["peak"] for row in rows)
    if best_peak > peak:
        print(f"float32 FMA peak, best reading over the run: {best_peak:.0f} GFLOP/s (rows against the best so far)")
    summary = _summary(rows)
    if summary:
        print(summary)
    if args.plot:
        _plot(rows, args.plot)
    return 0
