"""Weights packed once for inference: ``functional.pack_weights`` and ``PackedWeights.forward``.

- bitwise the plain forward's results (which the other suites hold to the float64 reference), and
  within the reference's tolerance directly: every cell and the projected LSTM, float32 and
  float64, odd sizes, T * B below the GEMM's register tile (one step of one sequence, as in
  generation), input sizes past the GEMM's depth block, lengths, reverse, empty sizes;
- a snapshot: changing the arrays it was packed from changes nothing; inputs are never modified;
- packed with one thread count and run with another, and from several Python threads at once;
- every ISA this CPU runs, forced in turn in a fresh interpreter;
- bad input: a clear ``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest

from conftest import assert_close, fusedrnn, functional, reference
from test_isa_threads import (  # noqa: F401 (restore_threads: a fixture)
    ALL_ISAS, KINDS, assert_identical, new_problem, proj_size, random_lengths, restore_threads, run_python,
)

DTYPES = (np.float32, np.float64)

# (T, B, I, H): T * B from 1 (below the GEMM's 6-row tile) up; I = 1030 spans two GEMM depth
# blocks on every ISA (KC = 256, or 512 on AVX-512 with a 48 KB L1); the last eight run on the
# whole team. In (21, 70, ...) the ranks share the input projection's rows and the steps (T * B =
# 1470: 16 tasks of 96 rows; see SHARED in test_isa_threads.py); in (100, 1, ...) they split its
# columns and share its 100 rows in small tasks (gemm_task_rows in kernels_impl.h). The plain
# forward of one step packs R block by block as it reaches each block (one block in a partial
# block's place at H = 300, 515 and 1030; shared in tasks of whole blocks at H = 1030; h packed at
# B = 9), except where a block's rows are split into chunks (1, 70, ...): there R is packed whole.
SHAPES = [
    (1, 1, 5, 7), (1, 3, 9, 16), (2, 2, 1030, 13), (9, 5, 11, 33), (40, 8, 50, 70), (3, 1, 300, 260),
    (21, 70, 17, 129), (100, 1, 17, 129), (1, 4, 40, 300), (1, 9, 33, 515), (1, 3, 100, 1030), (1, 70, 17, 129),
]  # fmt: skip


def plain_and_packed(p: Any, dtype: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The same forward through the weights and through their PackedWeights."""
    a = p.cast(dtype)
    kw = {"lengths": p.lengths, "reverse": p.reverse}
    cell = p.cell
    weights = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    hr = {"weight_hr": a["weight_hr"]} if "weight_hr" in a else {}
    packed = functional.pack_weights(cell, *weights, **hr)
    if cell == "lstm":
        y, h_n, c_n, tape = functional.lstm_forward(a["x"], a["h0"], a["c0"], *weights, need_tape=False, **hr, **kw)
        assert tape is None
        y2, h_n2, c_n2 = packed.forward(a["x"], a["h0"], a["c0"], **kw)
        return {"y": y, "h_n": h_n, "c_n": c_n}, {"y": y2, "h_n": h_n2, "c_n": c_n2}
    if cell == "gru":
        y, h_n, _ = functional.gru_forward(a["x"], a["h0"], *weights, need_tape=False, **kw)
    else:
        y, h_n, _ = functional.rnn_forward(a["x"], a["h0"], *weights, nonlinearity=cell[4:], need_tape=False, **kw)
    y2, h_n2 = packed.forward(a["x"], a["h0"], **kw)
    return {"y": y, "h_n": h_n}, {"y": y2, "h_n": h_n2}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_packed_forward_is_the_plain_forward(kind: str, dtype: Any, rng: np.random.Generator) -> None:
    for i, (T, B, I, H) in enumerate(SHAPES):
        lengths = random_lengths(rng, T, B) if i % 2 else None
        p = new_problem(rng, kind, T, B, I, H, reverse=i % 3 == 1, lengths=lengths)
        plain, packed = plain_and_packed(p, dtype)
        assert_identical(packed, plain, f"[{kind} T={T} B={B} I={I} H={H}] ")


# Two depth blocks of the GEMM; the size where the ranks share its rows and the steps; and few rows
# shared in small tasks.
@pytest.mark.parametrize(
    "size", [(7, 3, 1030, 21), (21, 70, 17, 129), (100, 1, 17, 129)], ids=["deep", "shared", "few_rows"]
)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_packed_forward_matches_reference(
    kind: str, dtype: Any, size: tuple[int, int, int, int], rng: np.random.Generator
) -> None:
    T, B, I, H = size
    p = new_problem(rng, kind, T, B, I, H, reverse=True, lengths=random_lengths(rng, T, B))
    a = {k: v.astype(dtype) for k, v in p.arrays.items()}
    r = {k: v.astype(np.float64) for k, v in a.items()}  # the oracle sees the same rounded inputs
    kw = {"lengths": p.lengths, "reverse": True}
    hr = ("weight_hr",) if "weight_hr" in a else ()
    packed = functional.pack_weights(
        p.cell, a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"], **{k: a[k] for k in hr}
    )
    if p.cell == "lstm":
        got = packed.forward(a["x"], a["h0"], a["c0"], **kw)
        want = reference.lstm_forward(
            r["x"], r["h0"], r["c0"], r["weight_ih"], r["weight_hh"], r["bias_ih"], r["bias_hh"],
            **{k: r[k] for k in hr}, **kw,
        )[:3]  # fmt: skip
    elif p.cell == "gru":
        got = packed.forward(a["x"], a["h0"], **kw)
        want = reference.gru_forward(
            r["x"], r["h0"], r["weight_ih"], r["weight_hh"], r["bias_ih"], r["bias_hh"], **kw
        )[:2]
    else:
        got = packed.forward(a["x"], a["h0"], **kw)
        want = reference.rnn_forward(
            r["x"], r["h0"], r["weight_ih"], r["weight_hh"], r["bias_ih"], r["bias_hh"], nonlinearity=p.cell[4:], **kw
        )[:2]
    for name, g, w in zip(("y", "h_n", "c_n"), got, want):
        assert g.dtype == np.dtype(dtype), name
        assert_close(g, w, dtype, f"{kind} {name}")
    pad = np.arange(T)[:, None] >= p.lengths[None, :]
    assert np.all(got[0][pad] == 0), "y at padding"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_packed_without_bias(cell: str, rng: np.random.Generator) -> None:
    p = new_problem(rng, cell, 4, 3, 6, 9)
    a = p.cast(np.float32)
    packed = functional.pack_weights(cell, a["weight_ih"], a["weight_hh"])
    if cell == "lstm":
        want = functional.lstm_forward(a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"], need_tape=False)
        got = packed.forward(a["x"], a["h0"], a["c0"])
    elif cell == "gru":
        want = functional.gru_forward(a["x"], a["h0"], a["weight_ih"], a["weight_hh"], need_tape=False)
        got = packed.forward(a["x"], a["h0"])
    else:
        want = functional.rnn_forward(a["x"], a["h0"], a["weight_ih"], a["weight_hh"], nonlinearity="relu",
                                      need_tape=False)  # fmt: skip
        got = packed.forward(a["x"], a["h0"])
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_packed_empty_sizes(T: int, B: int, rng: np.random.Generator) -> None:
    p = new_problem(rng, "lstm", T, B, 5, 6)
    plain, packed = plain_and_packed(p, np.float32)
    assert_identical(packed, plain, f"[T={T} B={B}] ")


def test_packed_is_a_snapshot_and_inputs_are_unchanged(rng: np.random.Generator) -> None:
    p = new_problem(rng, "lstm_proj", 5, 4, 12, 17)
    a = p.cast(np.float32)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    packed = functional.pack_weights("lstm", *(a[k] for k in names), weight_hr=a["weight_hr"])
    before = {k: v.copy() for k, v in a.items()}
    first = packed.forward(a["x"], a["h0"], a["c0"])
    for k, v in a.items():
        assert np.array_equal(v, before[k]), f"{k} modified"
    for k in (*names, "weight_hr"):
        a[k] *= 3.0  # the caller's arrays change after packing; the packed copy must not
    again = packed.forward(before["x"], before["h0"], before["c0"])
    for f, g in zip(first, again):
        assert np.array_equal(f, g)


def test_packed_thread_counts_and_concurrent_calls(rng: np.random.Generator, restore_threads: int) -> None:
    # Few rows shared in small tasks (T * B = 100; bitwise only), then large enough that the ranks
    # share the input projection's rows and the steps.
    for T, B in [(100, 1), (21, 70)]:
        p = new_problem(rng, "gru", T, B, 50, 129, lengths=random_lengths(rng, T, B))
        a = p.cast(np.float32)
        expected = None
        for pack_threads, run_threads in [(1, 1), (3, 1), (1, 2), (2, 4), (4, 3)]:
            fusedrnn.set_num_threads(pack_threads)
            packed = functional.pack_weights("gru", a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
            fusedrnn.set_num_threads(run_threads)
            got = packed.forward(a["x"], a["h0"], lengths=p.lengths)
            if expected is None:
                expected = got
            for g, e in zip(got, expected):
                assert np.array_equal(g, e), f"T={T} B={B}: packed on {pack_threads} threads, run on {run_threads}"
    fusedrnn.set_num_threads(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(packed.forward(a["x"], a["h0"], lengths=p.lengths))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 15
    for got in results:
        for g, e in zip(got, expected):
            assert np.array_equal(g, e)


CHECK_ISA = """
import sys
import numpy as np
import fusedrnn
from test_isa_threads import new_problem
from test_packed import SHAPES, plain_and_packed
isa = sys.argv[1]
assert fusedrnn.cpu_info()["isa"] == isa, fusedrnn.cpu_info()
rng = np.random.default_rng(7)
bad = []
for kind in ("rnn_tanh", "rnn_relu", "lstm", "gru", "lstm_proj"):
    for T, B, I, H in SHAPES:
        p = new_problem(rng, kind, T, B, I, H)
        for dtype in (np.float32, np.float64):
            plain, packed = plain_and_packed(p, dtype)
            bad += [f"{kind} {T} {B} {I} {H} {k}" for k in plain if not np.array_equal(plain[k], packed[k])]
if bad:
    sys.exit("\\n".join(bad))
"""


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_packed_on_every_isa(isa: str) -> None:
    if isa not in fusedrnn.cpu_info()["supported"]:
        pytest.skip(f"this CPU cannot run {isa}")
    done = run_python(CHECK_ISA, isa, env={"FUSEDRNN_ISA": isa}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_packed_bad_input(rng: np.random.Generator) -> None:
    p = new_problem(rng, "lstm", 3, 2, 5, 6)
    a = p.cast(np.float32)
    w = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    with pytest.raises(ValueError, match="cell must be one of"):
        functional.pack_weights("elman", *w)
    with pytest.raises(ValueError, match="weight_hh must have shape"):
        functional.pack_weights("gru", a["weight_ih"][:18], a["weight_hh"])
    with pytest.raises(ValueError, match="weight_hr is for an LSTM only"):
        functional.pack_weights("gru", *w, weight_hr=np.ones((3, 6), np.float32))
    with pytest.raises(ValueError, match="both be arrays or both be None"):
        functional.pack_weights("lstm", a["weight_ih"], a["weight_hh"], a["bias_ih"])
    with pytest.raises(TypeError, match="weight_ih"):
        functional.pack_weights("lstm", a["weight_ih"].astype(np.int32), a["weight_hh"])
    packed = functional.pack_weights("lstm", *w)
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, 5\)"):
        packed.forward(a["x"][:, :, :4], a["h0"], a["c0"])
    with pytest.raises(ValueError, match="h0"):
        packed.forward(a["x"], a["h0"][:1], a["c0"])
    with pytest.raises(TypeError, match="c0 is required"):
        packed.forward(a["x"], a["h0"])
    with pytest.raises(ValueError, match="lengths"):
        packed.forward(a["x"], a["h0"], a["c0"], lengths=[4, 1])
    gru = functional.pack_weights("gru", a["weight_ih"][:18], a["weight_hh"][:18, :6])
    with pytest.raises(TypeError, match="c0 is for an LSTM only"):
        gru.forward(a["x"], a["h0"], a["c0"])
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(packed)
    assert "PackedWeights('lstm', input_size=5, hidden_size=6" in repr(packed)
    P = proj_size(6)
    proj = functional.pack_weights("lstm", a["weight_ih"], np.ones((24, P), np.float32),
                                   weight_hr=np.ones((P, 6), np.float32))  # fmt: skip
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3\)"):
        proj.forward(a["x"], a["h0"], a["c0"])


def test_packed_float64_weights_cast_inputs(rng: np.random.Generator) -> None:
    """The packed dtype is the weights'; float32 inputs are cast to it, as in the plain forward."""
    p = new_problem(rng, "rnn_tanh", 4, 2, 3, 5)
    a = p.cast(np.float64)
    packed = functional.pack_weights("rnn_tanh", a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    y, h_n = packed.forward(a["x"].astype(np.float32), a["h0"].astype(np.float32))
    assert y.dtype == np.float64 and h_n.dtype == np.float64


@pytest.mark.parametrize(
    "cls,kw",
    [
        (fusedrnn.LSTM, {"num_layers": 2, "bidirectional": True}),
        (fusedrnn.LSTM, {"proj_size": 5, "batch_first": True}),
        (fusedrnn.GRU, {"num_layers": 3, "bias": False}),
        (fusedrnn.RNN, {"nonlinearity": "relu", "bidirectional": True}),
    ],
    ids=["lstm", "lstm_proj", "gru", "rnn_relu"],
)
def test_layer_packed_block(cls: Any, kw: dict[str, Any], rng: np.random.Generator) -> None:
    layer = cls(7, 11, seed=int(rng.integers(1 << 30)), **kw).eval()
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    lengths = np.array([5, 2, 4]) if kw.get("batch_first") else np.array([3, 1, 2, 3, 3])

    def flat(result: Any) -> list[np.ndarray]:
        y, state = result
        return [y, *(state if isinstance(state, tuple) else (state,))]

    plain = flat(layer(x, lengths=lengths))
    step = flat(layer(x[:1] if not kw.get("batch_first") else x[:, :1]))
    with layer.packed() as same:
        assert same is layer
        for got, want in zip(flat(layer(x, lengths=lengths)), plain):
            assert np.array_equal(got, want)
        for got, want in zip(flat(layer(x[:1] if not kw.get("batch_first") else x[:, :1])), step):
            assert np.array_equal(got, want)
        # A snapshot: parameters changed inside the block reach only forwards that keep a tape.
        for name, value in layer.state_dict().items():
            layer.load_state_dict({**layer.state_dict(), name: value * 2})
        for got, want in zip(flat(layer(x, lengths=lengths)), plain):
            assert np.array_equal(got, want)
        layer.train()
        y, _ = layer(x, lengths=lengths)  # with a tape: the live (changed) parameters
        assert not np.array_equal(y, plain[0])
        layer.backward(np.ones_like(y))
        layer.eval()
    assert layer._packed is None
    assert not np.array_equal(flat(layer(x, lengths=lengths))[0], plain[0])  # the changed weights again


def test_layer_packed_block_restores_on_error(rng: np.random.Generator) -> None:
    layer = fusedrnn.GRU(4, 6, seed=1).eval()
    with pytest.raises(RuntimeError, match="inside"):
        with layer.packed():
            with layer.packed():
                assert layer._packed is not None
            assert layer._packed is not None
            raise RuntimeError("inside")
    assert layer._packed is None


def test_bench_times_the_packed_forward(capsys: pytest.CaptureFixture[str]) -> None:
    from fusedrnn import bench

    rows = bench.run([bench.Config("gru", 2, 1, 8, 8)], 1, with_reference=False, with_torch=False, with_ort=False,
                     peak=100.0)  # fmt: skip
    assert rows[0]["packed_fwd"] > 0
    assert "| packed " in capsys.readouterr().out
