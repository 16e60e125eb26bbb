"""Instruction-set dispatch and the thread team of the CPU kernels.

- every ISA this CPU runs, forced in turn with ``FUSEDRNN_ISA`` in a fresh interpreter, against the
  float64 reference: all cells and the projected LSTM, forward and backward, odd sizes that are not
  multiples of the vector width, lengths, reverse, float32 and float64, small (one thread) and
  threaded sizes; a bad or unsupported ``FUSEDRNN_ISA`` fails the import and says why;
- thread counts 1..4 give bitwise-identical outputs and gradients; ``set_num_threads`` validation;
  the default is the CPUs this process may run on;
- calls from several Python threads at once, and ``set_num_threads`` while they run;
- where the workers run: calls after pauses (a worker that wakes on the caller's CPU moves off it)
  leave every thread's affinity as it was, and a team of two on one CPU still agrees;
- no spinning after a call returns; denormal inputs (flushed in the kernels, never in the caller's
  floating-point state); a forked child after the parent has used the team.

Helpers here are also imported by the ISA subprocess (``check_forced_isa``), so the module has no
side effects at import.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import CELLS, Problem, assert_close, fusedrnn, functional, make_problem, nan_empty, reference

DTYPES = (np.float32, np.float64)
ALL_ISAS = ("generic", "avx2", "avx512")
TESTS_DIR = Path(__file__).resolve().parent
# The four cells and the LSTM with a projection (weight_hr).
KINDS = (*CELLS, "lstm_proj")

# A problem big enough for the whole team (above kTeamMinFlops, 2.5 MFLOP, for every cell: ~5-22
# MFLOP forward).
BIG = (40, 8, 50, 70)
# Steps large enough that the ranks share them (share_rows in kernels_impl.h: a block's product
# over all B rows at least 1 MFLOP): tasks of one block and a chunk of rows, taken by whichever
# rank is free, with B not a whole number of chunks. Every forward in float32 on AVX-512 and every
# fused backward walk is shared at this size (the Elman forward in chunks of 256 rows, the LSTM's
# of 64, the GRU's of 88). (With packed weights the input projection's rows are shared too:
# test_packed.py.)
SHARED = (5, 300, 17, 129)


# ----------------------------------------------------------------------------------------------
# Helpers (shared with the subprocess)
# ----------------------------------------------------------------------------------------------


def proj_size(H: int) -> int:
    """An odd projection size P with 1 <= P < H (H >= 2)."""
    return (H // 2) | 1


def random_lengths(rng: np.random.Generator, T: int, B: int) -> np.ndarray:
    """Unsorted lengths in [1, T], with 1 and T present where B >= 2."""
    lengths = rng.integers(1, T + 1, B)
    if B >= 2:
        lengths[rng.choice(B, 2, replace=False)] = [1, T]
    return lengths


def new_problem(
    rng: np.random.Generator, kind: str, T: int, B: int, I: int, H: int, *, reverse: bool = False,
    lengths: Any = None,
) -> Problem:  # fmt: skip
    """``make_problem`` plus the projected LSTM ("lstm_proj": weight_hr of shape (P, H))."""
    cell = "lstm" if kind == "lstm_proj" else kind
    p = make_problem(rng, cell, T, B, I, H, reverse=reverse, lengths=lengths)
    if kind == "lstm_proj":
        P, s = proj_size(H), 1.0 / np.sqrt(H)
        p.arrays.update(
            h0=rng.standard_normal((B, P)) * 0.5,
            weight_hh=rng.uniform(-s, s, (4 * H, P)),
            weight_hr=rng.uniform(-s, s, (P, H)),
            dy=rng.standard_normal((T, B, P)),
            dh_n=rng.standard_normal((B, P)),
        )
    return p


def run_problem(p: Problem, module: Any, dtype: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Forward and backward through ``module``; handles the projection that ``Problem.run`` lacks."""
    if "weight_hr" not in p.arrays:
        return p.run(module, dtype)
    a = p.cast(dtype)
    y, h_n, c_n, tape = module.lstm_forward(
        a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"],
        lengths=p.lengths, reverse=p.reverse, weight_hr=a["weight_hr"],
    )  # fmt: skip
    grads = module.lstm_backward(tape, a["dy"], a["dh_n"], a["dc_n"])
    return {"y": y, "h_n": h_n, "c_n": c_n}, grads


def forward_flops(p: Problem) -> float:
    """The kernels' own estimate of the forward's work (what decides whether the team runs)."""
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[p.cell]
    P = p.arrays["weight_hh"].shape[1]
    proj = 2.0 * p.T * p.B * P * p.H if "weight_hr" in p.arrays else 0.0
    return 2.0 * p.T * p.B * G * p.H * (p.I + P) + proj


def rounded(p: Problem, dtype: Any) -> Problem:
    """``p`` with its inputs rounded to ``dtype`` and held in float64: the oracle's inputs."""
    return dataclasses.replace(p, arrays={k: v.astype(dtype).astype(np.float64) for k, v in p.arrays.items()})


def check_against_reference(p: Problem, dtype: Any, what: str = "", atol: float | None = None) -> None:
    """Kernel in ``dtype`` vs the float64 reference on the same rounded inputs, every result.

    With ``atol`` the bound is ``rtol * max|ref| + atol`` (the conftest rtol) instead of the
    conftest table's.
    """
    out, grads = run_problem(p, functional, dtype)
    ref_out, ref_grads = run_problem(rounded(p, dtype), reference, np.float64)
    assert set(out) == set(ref_out), what
    assert set(grads) == set(ref_grads), what
    both = [(k, out[k], v) for k, v in ref_out.items()] + [("d" + k, grads[k], v) for k, v in ref_grads.items()]
    for name, actual, ref in both:
        assert actual is not None and ref is not None, f"{what}{name}"
        assert actual.dtype == np.dtype(dtype), f"{what}{name}: dtype {actual.dtype}"
        if atol is None:
            assert_close(actual, ref, dtype, what + name)
        else:
            assert np.all(np.isfinite(actual)), f"{what}{name}: non-finite values"
            err = np.max(np.abs(actual.astype(np.float64) - ref), initial=0.0)
            bound = (1e-4 if np.dtype(dtype) == np.float32 else 1e-10) * np.max(np.abs(ref), initial=0.0) + atol
            assert err <= bound, f"{what}{name}: max abs error {err:.3e} > {bound:.3e}"
    if p.lengths is not None:  # zeros at padding, exactly
        pad = np.arange(p.T)[:, None] >= p.lengths[None, :]
        assert np.all(out["y"][pad] == 0), f"{what}y at padding"


def isa_cases() -> list[tuple[int, int, int, int, bool, bool]]:
    """(T, B, I, H, reverse, with lengths): odd sizes, plus two threaded ones."""
    cases, k = [], 0
    for H in (1, 7, 13, 33):
        for T in (1, 9):
            for B in (1, 3, 5):
                k += 1
                cases.append((T, B, 5, H, k % 2 == 0, k % 3 != 0))
    cases += [(*BIG, True, True), (*BIG, False, False)]
    return cases


def check_forced_isa(isa: str, seed: int) -> None:
    """Run in a subprocess with FUSEDRNN_ISA=isa: exits non-zero with the mismatches."""
    from fusedrnn import _checks

    info = fusedrnn.cpu_info()
    if info["isa"] != isa:
        sys.exit(f"FUSEDRNN_ISA={isa}: cpu_info()['isa'] is {info['isa']!r}")
    _checks.empty = nan_empty  # the conftest poisoning
    rng = np.random.default_rng(seed)
    failures = []
    threaded = 0
    for T, B, I, H, reverse, with_lengths in isa_cases():
        for kind in KINDS:
            if kind == "lstm_proj" and H < 2:
                continue
            lengths = random_lengths(rng, T, B) if with_lengths else None
            p = new_problem(rng, kind, T, B, I, H, reverse=reverse, lengths=lengths)
            threaded += forward_flops(p) > 3e6  # kTeamMinFlops is 2.5 MFLOP
            for dtype in DTYPES:
                what = f"[{isa} {kind} {np.dtype(dtype).name} T={T} B={B} I={I} H={H} rev={reverse} len={lengths}] "
                try:
                    check_against_reference(p, dtype, what)
                except AssertionError as e:
                    failures.append(str(e) or what + traceback.format_exc())
    if threaded < 2 * len(KINDS):
        failures.append(f"only {threaded} problems above the threading threshold")
    if failures:
        sys.exit(f"{len(failures)} mismatches with FUSEDRNN_ISA={isa}:\n" + "\n".join(failures[:25]))


def run_python(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """``python -W error -c code args`` in the tests directory; the completed process."""
    full_env = dict(os.environ)
    full_env.pop("FUSEDRNN_ISA", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *args], cwd=TESTS_DIR, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def assert_identical(actual: dict[str, Any], expected: dict[str, Any], what: str = "") -> None:
    """Bitwise equality, name by name."""
    assert set(actual) == set(expected), what
    for k, e in expected.items():
        assert actual[k].dtype == e.dtype, f"{what}{k}"
        assert np.array_equal(actual[k], e), f"{what}{k}: not bitwise identical"


def threaded_problems(rng: np.random.Generator, size: tuple[int, int, int, int] = BIG) -> list[Problem]:
    """One threaded-size problem per kind, alternating direction, with lengths."""
    out = []
    for i, kind in enumerate(KINDS):
        p = new_problem(rng, kind, *size, reverse=i % 2 == 1, lengths=random_lengths(rng, size[0], size[1]))
        assert forward_flops(p) > 3e6, kind  # above kTeamMinFlops (2.5 MFLOP)
        out.append(p)
    return out


@pytest.fixture
def restore_threads() -> Any:
    """The thread count before the test, restored after it whatever happens."""
    n = fusedrnn.get_num_threads()
    try:
        yield n
    finally:
        fusedrnn.set_num_threads(n)
    assert fusedrnn.get_num_threads() == n


# ----------------------------------------------------------------------------------------------
# ISA dispatch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_forced_isa_matches_reference(isa: str, rng: np.random.Generator) -> None:
    info = fusedrnn.cpu_info()
    if isa not in info["compiled"]:
        pytest.skip(f"{isa}: not compiled into this build")
    if isa not in info["supported"]:
        pytest.skip(f"{isa}: compiled, but this CPU cannot run it")
    seed = str(int(rng.integers(2**32)))
    code = f"from test_isa_threads import check_forced_isa; check_forced_isa({isa!r}, {seed})"
    proc = run_python(code, env={"FUSEDRNN_ISA": isa})
    assert proc.returncode == 0, f"FUSEDRNN_ISA={isa} (seed {seed}):\n{proc.stderr[-6000:]}"


def test_cpu_info_consistent() -> None:
    info = fusedrnn.cpu_info()
    assert set(info) == {"isa", "compiled", "supported", "num_threads"}
    assert "generic" in info["supported"]
    assert set(info["supported"]) <= set(info["compiled"]) <= set(ALL_ISAS)
    assert info["num_threads"] == fusedrnn.get_num_threads()


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_default_isa_is_best_supported(value: str | None) -> None:
    """Unset or empty FUSEDRNN_ISA: the best ISA this CPU runs (the candidates are best first)."""
    code = (
        "import fusedrnn; i = fusedrnn.cpu_info()\n"
        "best = [n for n in ('avx512', 'avx2', 'generic') if n in i['supported']][0]\n"
        "assert i['isa'] == best, (i, best)"
    )
    proc = run_python(code, env={} if value is None else {"FUSEDRNN_ISA": value})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_bogus_isa_fails_import() -> None:
    proc = run_python("import fusedrnn", env={"FUSEDRNN_ISA": "bogus"})
    assert proc.returncode != 0
    assert "FUSEDRNN_ISA" in proc.stderr, proc.stderr[-3000:]
    assert "bogus" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_unsupported_isa_fails_import(isa: str) -> None:
    info = fusedrnn.cpu_info()
    if isa not in info["compiled"] or isa in info["supported"]:
        pytest.skip(f"{isa}: not compiled, or this CPU runs it (nothing to refuse)")
    proc = run_python("import fusedrnn", env={"FUSEDRNN_ISA": isa})
    assert proc.returncode != 0
    assert f"FUSEDRNN_ISA={isa}" in proc.stderr, proc.stderr[-3000:]


# ----------------------------------------------------------------------------------------------
# Thread counts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_thread_counts_bitwise_identical(dtype: Any, rng: np.random.Generator, restore_threads: int) -> None:
    problems = threaded_problems(rng) + threaded_problems(rng, SHARED)
    # Also a wide H and a B that does not split evenly, threaded too.
    problems += [new_problem(rng, kind, 30, 3, 17, 129, reverse=True, lengths=[30, 1, 17]) for kind in KINDS]
    assert all(forward_flops(p) > 2e6 for p in problems)
    fusedrnn.set_num_threads(1)
    expected = [run_problem(p, functional, dtype) for p in problems]
    for n in (2, 3, 4, 1):
        fusedrnn.set_num_threads(n)
        assert fusedrnn.get_num_threads() == n
        assert fusedrnn.cpu_info()["num_threads"] == n
        for p, (out, grads) in zip(problems, expected):
            what = f"{p.cell} H={p.H} P={p.arrays['weight_hh'].shape[1]} threads={n}: "
            got_out, got_grads = run_problem(p, functional, dtype)
            assert_identical(got_out, out, what)
            assert_identical(got_grads, grads, what + "d")


def test_threaded_sizes_match_reference(rng: np.random.Generator, restore_threads: int) -> None:
    """With 3 threads (uneven split of the blocks), in the default ISA."""
    fusedrnn.set_num_threads(3)
    for p in threaded_problems(rng) + threaded_problems(rng, SHARED):
        for dtype in DTYPES:
            check_against_reference(p, dtype, f"{p.cell} {np.dtype(dtype).name}: ")


def test_set_num_threads_validation(restore_threads: int) -> None:
    before = fusedrnn.get_num_threads()
    assert isinstance(before, int) and before >= 1
    for bad in (0, -1):
        with pytest.raises(ValueError, match=">= 1"):
            fusedrnn.set_num_threads(bad)
    for bad in ("2", 2.0, None, True):
        with pytest.raises(TypeError):
            fusedrnn.set_num_threads(bad)  # type: ignore[arg-type]
    assert fusedrnn.get_num_threads() == before
    fusedrnn.set_num_threads(np.int64(2).item())
    assert fusedrnn.get_num_threads() == 2


def test_default_num_threads_is_affinity() -> None:
    code = (
        "import os, fusedrnn\n"
        "n, want = fusedrnn.get_num_threads(), len(os.sched_getaffinity(0))\n"
        "assert n == want, (n, want)\n"
        "assert fusedrnn.cpu_info()['num_threads'] == n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_default_num_threads_follows_restricted_affinity() -> None:
    """A process limited to one CPU (as by taskset) defaults to one thread."""
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "import fusedrnn\n"
        "assert fusedrnn.get_num_threads() == 1, fusedrnn.get_num_threads()"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------------------------------------------
# Several Python threads at once
# ----------------------------------------------------------------------------------------------


def run_in_threads(work: Any, n: int, timeout: float = 60) -> list[BaseException]:
    """``work(k)`` on ``n`` daemon threads; asserts they all finish in time; their exceptions."""
    errors: list[BaseException] = []

    def target(k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running: deadlock?"
    return errors


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_concurrent_calls_equal_sequential(dtype: Any, rng: np.random.Generator, restore_threads: int) -> None:
    fusedrnn.set_num_threads(2)
    problems = threaded_problems(rng)[:4]
    problems.append(new_problem(rng, "gru", 9, 3, 5, 13, lengths=[9, 1, 4]))  # a one-thread call too
    expected = [run_problem(p, functional, dtype) for p in problems]
    results: dict[tuple[int, int], Any] = {}

    def work(k: int) -> None:
        for j in range(3):
            i = (k + j) % len(problems)
            results[k, j] = (i, run_problem(problems[i], functional, dtype))

    errors = run_in_threads(work, 4)
    assert not errors, errors
    assert len(results) == 12
    for (k, j), (i, (out, grads)) in results.items():
        assert_identical(out, expected[i][0], f"thread {k} call {j}: ")
        assert_identical(grads, expected[i][1], f"thread {k} call {j}: d")


def test_set_num_threads_during_calls(rng: np.random.Generator, restore_threads: int) -> None:
    """Resizing the team from another thread while calls run: no crash, no deadlock, same bits."""
    problems = threaded_problems(rng)
    expected = [run_problem(p, functional, np.float32) for p in problems]
    results: dict[tuple[int, int], Any] = {}
    stop = threading.Event()
    sizes_set: list[int] = []

    def resize() -> None:
        k = 0
        while not stop.is_set():
            n = (1, 3, 2, 4)[k % 4]
            fusedrnn.set_num_threads(n)
            sizes_set.append(n)
            assert 1 <= fusedrnn.get_num_threads() <= 4
            k += 1
            time.sleep(0.001)

    finished: list[int] = []

    def work(k: int) -> None:
        if k == 4:
            resize()
            return
        try:
            # Three calls each, and more while the resizing thread has not yet resized twice: on a
            # loaded machine the calls can all finish before it gets a turn (seen once in CI).
            j = 0
            while j < 3 or (len(sizes_set) < 2 and j < 200):
                i = (k + j) % len(problems)
                results[k, j] = (i, run_problem(problems[i], functional, np.float32))
                j += 1
        finally:
            finished.append(k)
            if len(finished) == 4:
                stop.set()

    errors = run_in_threads(work, 5)
    stop.set()
    assert not errors, errors
    assert len(results) >= 12
    assert len(sizes_set) >= 2, "the resizing thread never ran"
    for (k, j), (i, (out, grads)) in results.items():
        assert_identical(out, expected[i][0], f"thread {k} call {j}: ")
        assert_identical(grads, expected[i][1], f"thread {k} call {j}: d")


# ----------------------------------------------------------------------------------------------
# No spinning after a call returns
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [2, 4])
def test_no_spinning_after_return(threads: int, rng: np.random.Generator, restore_threads: int) -> None:
    fusedrnn.set_num_threads(threads)
    for p in threaded_problems(rng)[2:4]:  # lstm and gru, forward and backward
        run_problem(p, functional, np.float32)
    t0 = time.process_time()
    time.sleep(0.5)
    used = time.process_time() - t0
    assert used < 0.1, f"{used:.3f} s of CPU time during a 0.5 s sleep after the calls: workers spinning?"


# ----------------------------------------------------------------------------------------------
# Where the workers run (threads.cpp, CpuClaims)
# ----------------------------------------------------------------------------------------------


def thread_affinities() -> dict[int, set[int]]:
    """The CPU affinity of every thread of this process, by thread id (Linux)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            out[int(tid)] = os.sched_getaffinity(int(tid))
        except OSError:  # a thread that ended meanwhile
            pass
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity: Linux only")
def test_calls_after_idling_leave_affinity_alone(rng: np.random.Generator, restore_threads: int) -> None:
    """Calls after pauses (where this VM woke the worker on the caller's CPU, and the worker moved
    off it by pinning itself for a moment) give the same results, and leave no thread pinned."""
    fusedrnn.set_num_threads(2)
    before = thread_affinities()
    p = threaded_problems(rng)[2]  # lstm
    first = run_problem(p, functional, np.float32)
    for _ in range(4):
        time.sleep(0.1)
        again = run_problem(p, functional, np.float32)
        assert_identical(again[0], first[0], "after a pause: ")
        assert_identical(again[1], first[1], "after a pause: ")
    after = thread_affinities()
    for tid, cpus in after.items():
        assert cpus == before.get(tid, os.sched_getaffinity(0)), f"thread {tid}: affinity {cpus} after the calls"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity: Linux only")
def test_two_threads_on_one_cpu() -> None:
    """A team of two in a process limited to one CPU (the worker cannot move off the caller's
    CPU) finishes, agrees bitwise with one thread, and stays on that CPU."""
    code = (
        "import os, sys, numpy as np\n"
        "cpu = min(os.sched_getaffinity(0))\n"
        "os.sched_setaffinity(0, {cpu})\n"
        "import fusedrnn\n"
        "from test_isa_threads import threaded_problems, run_problem, assert_identical, thread_affinities\n"
        "from conftest import functional\n"
        "p = threaded_problems(np.random.default_rng(int(sys.argv[1])))[3]\n"
        "fusedrnn.set_num_threads(1)\n"
        "one = run_problem(p, functional, np.float32)\n"
        "old = set(thread_affinities())\n"
        "fusedrnn.set_num_threads(2)\n"
        "two = run_problem(p, functional, np.float32)\n"
        "assert_identical(two[0], one[0]); assert_identical(two[1], one[1])\n"
        "now = thread_affinities()\n"
        "worker = [c for t, c in now.items() if t not in old]\n"
        "assert worker == [{cpu}] and os.sched_getaffinity(0) == {cpu}, (cpu, now)\n"
    )
    proc = run_python(code, str(np.random.SeedSequence().entropy % 2**32))
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------------------------------------------
# Denormals
# ----------------------------------------------------------------------------------------------

# Inputs, weights and output gradients of size s (a normal number) and biases of s^2 (subnormal):
# the pre-activations (~s^2) and dW, dx, dh0 (~s^2) are below the smallest normal number. The LSTM's
# c0 is O(1) so that its y stays O(1) (tiny *normal* tanh arguments are a separate matter, tested
# below); the Elman-ReLU's biases are s, so that the sign of each pre-activation (relu') does not
# hinge on a subnormal that the kernels flush.
DENORMAL_SCALE = {np.dtype(np.float32): 1e-20, np.dtype(np.float64): 1e-160}


def denormal_problem(rng: np.random.Generator, kind: str, T: int, B: int, I: int, H: int, s: float,
                     **kw: Any) -> Problem:  # fmt: skip
    p = new_problem(rng, kind, T, B, I, H, **kw)
    for k in p.arrays:
        if k == "c0":
            continue
        factor = (s if kind == "rnn_relu" else s * s) if k.startswith("bias") else s
        p.arrays[k] = p.arrays[k] * factor
    return p


def assert_subnormals_survive(where: str) -> None:
    """The calling thread does not flush: NumPy still makes and keeps subnormal numbers."""
    assert np.float32(1e-39) * np.float32(1.0) != 0, f"{where}: float32 subnormal flushed (FTZ/DAZ left on)"
    assert np.float64(1e-310) * np.float64(1.0) != 0, f"{where}: float64 subnormal flushed (FTZ/DAZ left on)"
    assert np.float32(2e-38) / np.float32(4.0) != 0, f"{where}: float32 subnormal result flushed"


@pytest.mark.parametrize("big", [False, True], ids=["one_thread", "threaded"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_denormal_inputs(kind: str, dtype: Any, big: bool, rng: np.random.Generator) -> None:
    s = DENORMAL_SCALE[np.dtype(dtype)]
    tiny = float(np.finfo(dtype).tiny)
    T, B, I, H = BIG if big else (9, 3, 5, 13)
    p = denormal_problem(rng, kind, T, B, I, H, s, reverse=big, lengths=random_lengths(rng, T, B))
    if kind != "rnn_relu":
        assert np.any(np.abs(p.arrays["bias_ih"].astype(dtype)) < tiny)  # truly subnormal inputs
    if big:
        assert forward_flops(p) > 2e6
    assert_subnormals_survive("before the call")
    # Errors from flushing stay below a thousand smallest normals; results of size s (or 1) are
    # still held to the conftest rtol.
    check_against_reference(p, dtype, f"{kind} denormal: ", atol=1e3 * tiny)
    assert_subnormals_survive("after the call")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru", "lstm_proj"])
def test_small_normal_tanh_arguments(kind: str, dtype: Any, rng: np.random.Generator) -> None:
    """Every pre-activation and c of size s (normal, far above the subnormals): y ~ tanh(s) ~ s.

    Normwise *relative* per array (the conftest rtol; the atol only a thousand smallest normals,
    not the conftest's 1e-6 / 1e-13, which would call any array below it "zero"). libm's and
    torch's tanh keep the relative accuracy there (tanh(1e-12) = 1e-12).
    """
    scales = (1e-3, 1e-6, 1e-12, 1e-30) if np.dtype(dtype) == np.float32 else (1e-6, 1e-12, 1e-18, 1e-100)
    for s in scales:
        p = new_problem(rng, kind, 9, 3, 5, 13, lengths=[9, 1, 5])
        for k in ("x", "h0", "c0", "bias_ih", "bias_hh"):
            if k in p.arrays:
                p.arrays[k] = p.arrays[k] * s
        check_against_reference(p, dtype, f"{kind} s={s:g}: ", atol=1e3 * float(np.finfo(dtype).tiny))


# ----------------------------------------------------------------------------------------------
# fork
# ----------------------------------------------------------------------------------------------


def fork_child(p: Problem, q: Any) -> None:
    try:
        first = run_problem(p, functional, np.float32)
        fusedrnn.set_num_threads(3)
        second = run_problem(p, functional, np.float32)
        q.put(("ok", first, second, fusedrnn.get_num_threads()))
    except BaseException:  # noqa: BLE001 - reported to the parent
        q.put(("error", traceback.format_exc()))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_fork_after_team_used(rng: np.random.Generator, restore_threads: int) -> None:
    fusedrnn.set_num_threads(2)
    p = threaded_problems(rng)[2]  # LSTM, threaded size
    expected = run_problem(p, functional, np.float32)  # the parent's team is up and has run
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=fork_child, args=(p, q), daemon=True)
    child.start()
    try:
        try:
            msg = q.get(timeout=60)
        except queue.Empty:
            pytest.fail("forked child sent nothing in 60 s: deadlocked in the kernels?")
        child.join(30)
        assert not child.is_alive(), "forked child did not exit"
        assert child.exitcode == 0, child.exitcode
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
        q.close()
        q.join_thread()
    assert msg[0] == "ok", msg[1]
    _, first, second, child_threads = msg
    assert child_threads == 3
    for got in (first, second):
        assert_identical(got[0], expected[0], "child: ")
        assert_identical(got[1], expected[1], "child: d")
    # The parent's team still works after the fork.
    again = run_problem(p, functional, np.float32)
    assert_identical(again[0], expected[0], "parent after fork: ")
    assert_identical(again[1], expected[1], "parent after fork: d")
