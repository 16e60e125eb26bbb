"""The compiled CPU kernels (``fusedrnn.functional``) against the float64 NumPy oracle.

- a grid over cells, dtypes, directions, variable lengths and bias with awkward sizes, and a
  hypothesis property test over random sizes: outputs, final states and every gradient;
- memory layouts: Fortran-ordered, strided, transposed-view and read-only inputs give bitwise the
  contiguous results, and no input is ever modified;
- determinism, NaN containment (one real position; padding positions reach nothing), exact zeros
  at padding, empty sizes (T = 0, B = 0), the tape's private copies, ``need_tape=False``, and two
  calls running at once from two Python threads (the GIL is released).

The kernel runs in float32 or float64; the reference always runs in float64 on the *same* values
(the inputs rounded to the kernel's dtype first), so the comparison measures only the kernel's
arithmetic error.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CELLS, GATES, Problem, assert_close, functional, make_problem, reference

DTYPES = (np.float32, np.float64)
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def reference_problem(p: Problem, dtype: Any) -> Problem:
    """``p`` with its inputs rounded to ``dtype`` and held in float64: the oracle's inputs."""
    return dataclasses.replace(p, arrays={k: v.astype(dtype).astype(np.float64) for k, v in p.arrays.items()})


def check_against_reference(p: Problem, dtype: Any) -> None:
    """Kernel in ``dtype`` vs the reference in float64 on the same rounded inputs: everything."""
    out, grads = p.run(functional, dtype)
    ref_out, ref_grads = reference_problem(p, dtype).run(reference, np.float64)
    assert set(out) == set(ref_out)
    for name, ref in ref_out.items():
        assert out[name].dtype == np.dtype(dtype), name
        assert_close(out[name], ref, dtype, name)
    assert set(grads) == set(ref_grads)
    expected_keys = {"x", "h0", *PARAMS} | ({"c0"} if p.cell == "lstm" else set())
    assert set(grads) == expected_keys
    for name, ref in ref_grads.items():
        if ref is None:
            assert not p.bias and name.startswith("bias"), name
            assert grads[name] is None, f"d{name} should be None without bias"
            continue
        assert grads[name] is not None, name
        assert grads[name].dtype == np.dtype(dtype), name
        assert_close(grads[name], ref, dtype, "d" + name)
    if p.lengths is not None:  # the contract's zeros at padding, exactly
        pad = np.arange(p.T)[:, None] >= p.lengths[None, :]
        assert np.all(out["y"][pad] == 0)


def forward(cell: str, a: dict[str, Any], *, bias: bool = True, lengths: Any = None, reverse: bool = False,
            need_tape: bool = True) -> tuple[dict[str, np.ndarray], Any]:  # fmt: skip
    """One functional forward from the arrays in ``a`` (any layout); outputs by name and the tape."""
    w = [a["weight_ih"], a["weight_hh"]] + ([a["bias_ih"], a["bias_hh"]] if bias else [None, None])
    kw = {"lengths": lengths, "reverse": reverse, "need_tape": need_tape}
    if cell == "lstm":
        y, h_n, c_n, tape = functional.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
        return {"y": y, "h_n": h_n, "c_n": c_n}, tape
    if cell == "gru":
        y, h_n, tape = functional.gru_forward(a["x"], a["h0"], *w, **kw)
    else:
        y, h_n, tape = functional.rnn_forward(a["x"], a["h0"], *w, nonlinearity=cell[4:], **kw)
    return {"y": y, "h_n": h_n}, tape


def backward(cell: str, tape: Any, a: dict[str, Any]) -> dict[str, Any]:
    if cell == "lstm":
        return functional.lstm_backward(tape, a["dy"], a["dh_n"], a["dc_n"])
    if cell == "gru":
        return functional.gru_backward(tape, a["dy"], a["dh_n"])
    return functional.rnn_backward(tape, a["dy"], a["dh_n"])


def forward_reference(p: Problem) -> tuple[dict[str, np.ndarray], Any]:
    """The oracle's forward (float64) on the problem's arrays."""
    a = p.cast(np.float64)
    w = [a["weight_ih"], a["weight_hh"]] + ([a["bias_ih"], a["bias_hh"]] if p.bias else [None, None])
    kw = {"lengths": p.lengths, "reverse": p.reverse}
    if p.cell == "lstm":
        y, h_n, c_n, tape = reference.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
        return {"y": y, "h_n": h_n, "c_n": c_n}, tape
    if p.cell == "gru":
        y, h_n, tape = reference.gru_forward(a["x"], a["h0"], *w, **kw)
    else:
        y, h_n, tape = reference.rnn_forward(a["x"], a["h0"], *w, nonlinearity=p.cell[4:], **kw)
    return {"y": y, "h_n": h_n}, tape


def run(cell: str, a: dict[str, Any], **kw: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    out, tape = forward(cell, a, **kw)
    return out, backward(cell, tape, a)


def assert_identical(actual: dict[str, Any], expected: dict[str, Any], what: str = "") -> None:
    """Bitwise equality, name by name (None where the other is None)."""
    assert set(actual) == set(expected), what
    for k, e in expected.items():
        if e is None:
            assert actual[k] is None, f"{what}{k}"
            continue
        assert actual[k].dtype == e.dtype, f"{what}{k}"
        np.testing.assert_array_equal(actual[k], e, err_msg=f"{what}{k}", strict=True)


def padding_mask(T: int, lengths: np.ndarray) -> np.ndarray:
    return np.arange(T)[:, None] >= np.asarray(lengths)[None, :]  # (T, B) True at padding


# ----------------------------------------------------------------------------------------------
# Against the reference: a grid of awkward sizes
# ----------------------------------------------------------------------------------------------

# name: (T, B, I, H, lengths, bias); lengths None, a list (unsorted, with 1 and T where B >= 2) or
# "random" (drawn per test, with 1 and T).
GRID: dict[str, tuple[int, int, int, int, Any, bool]] = {
    "tiny": (1, 1, 1, 1, None, True),
    "T1_lengths": (1, 3, 5, 7, [1, 1, 1], False),
    "T2": (2, 4, 3, 7, [2, 1, 2, 1], True),
    "T2_B1_nobias": (2, 1, 9, 64, [1], False),
    "T17_H129": (17, 5, 9, 129, [9, 17, 1, 3, 17], True),
    "I1_H129": (17, 1, 1, 129, None, False),
    "H1": (17, 6, 64, 1, [5, 17, 1, 17, 2, 8], False),
    "H64": (17, 3, 33, 64, None, True),
    "I_eq_H": (17, 4, 7, 7, [17, 1, 17, 4], False),
    "T70": (70, 2, 70, 7, [1, 70], True),
    # B >= 8 (kPrefetchRFromBatch): the forward's step prefetches R although it is in cache.
    "B70": (3, 70, 20, 64, "random", False),
    "I70_H70": (5, 9, 70, 70, None, True),
    # B >= 8 without lengths: an AVX-512 LSTM's or GRU's float32 step reads h packed in groups of 8
    # (4 whole groups and one of 5), its rows shared in tasks of 32.
    "B37_packed_h": (4, 37, 20, 64, None, True),
    # R over 4 MB for every cell: the step products prefetch it as a stream from memory.
    "H1100_streams": (2, 3, 5, 1100, [2, 1, 2], True),
}


@pytest.mark.parametrize("case", list(GRID))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference(cell: str, dtype: Any, reverse: bool, case: str, rng: np.random.Generator) -> None:
    T, B, I, H, lengths, bias = GRID[case]
    if lengths == "random":  # unsorted, with 1 and T somewhere
        lengths = rng.integers(1, T + 1, B)
        lengths[rng.choice(B, 2, replace=False)] = [1, T]
    p = make_problem(rng, cell, T, B, I, H, reverse=reverse, lengths=lengths, bias=bias)
    check_against_reference(p, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference_without_state_grads(cell: str, dtype: Any, rng: np.random.Generator) -> None:
    """``dh_n``/``dc_n`` of None mean zeros."""
    p = make_problem(rng, cell, 6, 3, 5, 9, lengths=[6, 1, 4])
    for k in ("dh_n", "dc_n"):
        if k in p.arrays:
            p.arrays[k] = np.zeros_like(p.arrays[k])
    a = p.cast(dtype)
    _, tape = forward(cell, a, lengths=p.lengths)
    explicit = backward(cell, tape, a)
    if cell == "lstm":
        implicit = functional.lstm_backward(tape, a["dy"])
    elif cell == "gru":
        implicit = functional.gru_backward(tape, a["dy"])
    else:
        implicit = functional.rnn_backward(tape, a["dy"])
    assert_identical(implicit, explicit)
    check_against_reference(p, dtype)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cell=st.sampled_from(CELLS),
    dtype=st.sampled_from(DTYPES),
    T=st.integers(1, 40),
    B=st.integers(1, 40),
    I=st.integers(1, 40),
    H=st.integers(1, 40),
    reverse=st.booleans(),
    variable=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_reference_property(
    cell: str, dtype: Any, T: int, B: int, I: int, H: int, reverse: bool, variable: bool, bias: bool, seed: int
) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, B) if variable else None
    p = make_problem(rng, cell, T, B, I, H, reverse=reverse, lengths=lengths, bias=bias)
    check_against_reference(p, dtype)


# ----------------------------------------------------------------------------------------------
# Memory layouts, read-only inputs, inputs never modified
# ----------------------------------------------------------------------------------------------


def strided_copy(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The values of ``a`` as a view with steps of 2 in every axis (the gaps hold junk)."""
    big = rng.standard_normal(tuple(2 * n + 1 for n in a.shape)).astype(a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def transposed_copy(a: np.ndarray) -> np.ndarray:
    """The values of ``a`` as the transpose of a C-contiguous array (Fortran-ordered for 2-D)."""
    return np.ascontiguousarray(a.T).T


def layouts(a: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    out["fortran"] = {k: np.asfortranarray(v) for k, v in a.items()}
    out["strided"] = {k: strided_copy(v, rng) for k, v in a.items()}
    out["transposed"] = {k: transposed_copy(v) for k, v in a.items()}
    mixed = {k: v.copy() for k, v in a.items()}  # x[::2]-style time stride, weights as transposed views
    x2 = np.repeat(a["x"], 2, axis=0)
    x2[1::2] = np.nan  # never seen: only the even steps are the input
    mixed["x"] = x2[::2]
    mixed["weight_ih"] = transposed_copy(a["weight_ih"])
    mixed["weight_hh"] = strided_copy(np.ascontiguousarray(a["weight_hh"].T), rng).T  # transposed, strided
    mixed["dy"] = np.asfortranarray(a["dy"])
    out["mixed"] = mixed
    readonly = {k: v.copy() for k, v in a.items()}
    for v in readonly.values():
        v.flags.writeable = False
    out["readonly"] = readonly
    ro_strided = {k: strided_copy(v, rng) for k, v in a.items()}
    for v in ro_strided.values():
        v.flags.writeable = False
    out["readonly_strided"] = ro_strided
    for name, arrays in out.items():
        for k, v in arrays.items():
            np.testing.assert_array_equal(v, a[k], err_msg=f"{name}:{k}", strict=True)
        if name != "readonly":
            assert not arrays["x"].flags.c_contiguous or a["x"].shape[1] * a["x"].shape[2] <= 1, name
    return out


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_layouts_bitwise_equal_and_inputs_untouched(
    cell: str, dtype: Any, reverse: bool, rng: np.random.Generator
) -> None:  # fmt: skip
    p = make_problem(rng, cell, 7, 5, 6, 9, reverse=reverse, lengths=[7, 1, 4, 7, 2])
    a = p.cast(dtype)
    expected_out, expected_grads = run(cell, a, lengths=p.lengths, reverse=reverse)
    for name, arrays in layouts(a, rng).items():
        before = {k: v.copy() for k, v in arrays.items()}
        lengths = p.lengths.copy()
        lengths.flags.writeable = False
        out, grads = run(cell, arrays, lengths=lengths, reverse=reverse)
        assert_identical(out, expected_out, f"{name}: ")
        assert_identical(grads, expected_grads, f"{name}: d")
        for k, v in arrays.items():
            np.testing.assert_array_equal(v, before[k], err_msg=f"{name}: input {k} was modified", strict=True)
        np.testing.assert_array_equal(lengths, p.lengths)


@pytest.mark.parametrize("cell", CELLS)
def test_inputs_never_modified(cell: str, rng: np.random.Generator) -> None:
    """Contiguous, writable inputs (the kernels could write through them): compared bit for bit."""
    for dtype in DTYPES:
        p = make_problem(rng, cell, 9, 4, 5, 11, lengths=[3, 9, 1, 6], reverse=True)
        a = p.cast(dtype)
        before = {k: v.copy() for k, v in a.items()}
        lengths = p.lengths.copy()
        run(cell, a, lengths=lengths, reverse=True)
        forward(cell, a, lengths=lengths, need_tape=False)
        assert_identical(a, before)
        np.testing.assert_array_equal(lengths, p.lengths, strict=True)


@pytest.mark.parametrize("cell", CELLS)
def test_lengths_integer_kinds_equal(cell: str, rng: np.random.Generator) -> None:
    """lengths as a list, int32, uint8 or int64 array: the same results, bit for bit."""
    p = make_problem(rng, cell, 6, 4, 3, 5, lengths=[6, 2, 1, 5])
    a = p.cast(np.float32)
    expected = run(cell, a, lengths=p.lengths)
    for lengths in ([6, 2, 1, 5], p.lengths.astype(np.int32), p.lengths.astype(np.uint8), p.lengths[::-1][::-1]):
        out, grads = run(cell, a, lengths=lengths)
        assert_identical(out, expected[0])
        assert_identical(grads, expected[1])


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("B", [8, 13, 37])
@pytest.mark.parametrize("cell", CELLS)
def test_full_lengths_equal_no_lengths(cell: str, B: int, reverse: bool, rng: np.random.Generator) -> None:
    """lengths of T everywhere give bit for bit the results of no lengths. Without lengths an AVX-512
    LSTM's float32 step reads h packed in groups of 8; with them it reads h's rows 6 at a time."""
    T = 5
    p = make_problem(rng, cell, T, B, 20, 64)
    a = p.cast(np.float32)
    expected = run(cell, a, reverse=reverse)
    out, grads = run(cell, a, lengths=np.full(B, T), reverse=reverse)
    assert_identical(out, expected[0])
    assert_identical(grads, expected[1])


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_deterministic(cell: str, dtype: Any, rng: np.random.Generator) -> None:
    p = make_problem(rng, cell, 13, 6, 37, 67, lengths=[13, 5, 1, 13, 8, 2], reverse=True)
    a = p.cast(dtype)
    first = run(cell, a, lengths=p.lengths, reverse=True)
    for _ in range(2):
        again = run(cell, a, lengths=p.lengths, reverse=True)
        assert_identical(again[0], first[0])
        assert_identical(again[1], first[1])


@pytest.mark.parametrize("cell", CELLS)
def test_kept_scratch_carries_nothing_between_calls(cell: str, rng: np.random.Generator) -> None:
    """The packing storage a thread keeps across calls is left uninitialised: a small call with
    partial blocks of units gives bitwise the same results before and after a larger call has
    filled that storage, and both match the reference."""
    small = make_problem(rng, cell, 5, 3, 7, 11, lengths=[5, 2, 4])
    large = make_problem(rng, cell, 3, 7, 40, 300)
    first = run(cell, small.cast(np.float32), lengths=small.lengths)
    check_against_reference(large, np.float32)
    again = run(cell, small.cast(np.float32), lengths=small.lengths)
    assert_identical(again[0], first[0])
    assert_identical(again[1], first[1])
    check_against_reference(small, np.float32)


# ----------------------------------------------------------------------------------------------
# NaN containment, zeros at padding, full lengths
# ----------------------------------------------------------------------------------------------

NAN_LENGTHS = np.array([6, 3, 1, 5, 6])


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_nan_in_one_sequence_stays_there(cell: str, dtype: Any, reverse: bool, rng: np.random.Generator) -> None:
    p = make_problem(rng, cell, 6, 5, 4, 9, reverse=reverse, lengths=NAN_LENGTHS)
    a = p.cast(dtype)
    clean_out, clean_grads = run(cell, a, lengths=p.lengths, reverse=reverse)
    bad, others = 1, np.array([0, 2, 3, 4])
    a_nan = {k: v.copy() for k, v in a.items()}
    a_nan["x"][1, bad, 2] = np.nan  # a real step of sequence 1 (length 3)
    out, grads = run(cell, a_nan, lengths=p.lengths, reverse=reverse)
    for k in out:  # y, h_n, c_n: the other sequences are untouched
        sel = out[k][:, others] if k == "y" else out[k][others]
        ref = clean_out[k][:, others] if k == "y" else clean_out[k][others]
        assert np.all(np.isfinite(sel)), k
        np.testing.assert_array_equal(sel, ref, err_msg=k, strict=True)
    for k in ("x",):
        assert np.all(np.isfinite(grads[k][:, others])), "d" + k
        np.testing.assert_array_equal(grads[k][:, others], clean_grads[k][:, others], err_msg="d" + k, strict=True)
    for k in ("h0", "c0"):
        if k in grads:
            assert np.all(np.isfinite(grads[k][others])), "d" + k
            np.testing.assert_array_equal(grads[k][others], clean_grads[k][others], err_msg="d" + k, strict=True)
    # The padding of the poisoned sequence is still exactly zero.
    assert np.all(out["y"][3:, bad] == 0)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_nan_propagates_like_reference(cell: str, dtype: Any, reverse: bool, rng: np.random.Generator) -> None:
    """NaN at a real input is not silently dropped: the NaN pattern of y and h_n is the oracle's.

    (torch.nn.RNN/LSTM/GRU propagate it the same way; relu(NaN) is NaN in torch and NumPy.)
    """
    p = make_problem(rng, cell, 6, 5, 4, 9, reverse=reverse, lengths=NAN_LENGTHS)
    p.arrays["x"][1, 1, 2] = np.nan  # a real step of sequence 1 (length 3)
    out, _ = forward(cell, p.cast(dtype), lengths=p.lengths, reverse=reverse)
    ref_out, _ = forward_reference(reference_problem(p, dtype))
    for k in out:
        np.testing.assert_array_equal(
            np.isnan(out[k]), np.isnan(ref_out[k]), err_msg=f"{k}: NaN positions differ from the reference"
        )
    assert np.isnan(out["h_n"][1]).all()


@pytest.mark.parametrize("scale", [1e10, 1e30], ids=["1e10", "1e30"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_huge_pre_activations_saturate_like_reference(cell: str, dtype: Any, scale: float,
                                                      rng: np.random.Generator) -> None:  # fmt: skip
    """Gates far past saturation (one input row scaled to +-1e10 or +-1e30) give the oracle's
    outputs and gradients: the kernels' exp and tanh reduced such arguments to garbage and NaN
    before 2026-11-23 (fifth session)."""
    p = make_problem(rng, cell, 5, 3, 4, 9)
    p.arrays["x"][2, 1] = np.sign(p.arrays["x"][2, 1]) * scale  # every gate of step 2, sequence 1
    p.arrays["weight_ih"] = np.sign(p.arrays["weight_ih"]) * 0.5  # no tiny weight: every gate sees ~scale
    out, grads = p.run(functional, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        ref_out, ref_grads = reference_problem(p, dtype).run(reference, np.float64)
    for k, ref in ref_out.items():
        assert np.all(np.isfinite(ref)), k
        assert_close(out[k], ref, dtype, k)
    for k, ref in ref_grads.items():
        if k == "x" or not np.all(np.isfinite(ref)):  # d/dx of a saturated gate: 0 * inf in the oracle
            continue
        assert_close(grads[k], ref, dtype, "d" + k)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_nan_at_padding_reaches_nothing(cell: str, dtype: Any, reverse: bool, rng: np.random.Generator) -> None:
    p = make_problem(rng, cell, 6, 5, 4, 9, reverse=reverse, lengths=NAN_LENGTHS)
    a = p.cast(dtype)
    clean_out, clean_grads = run(cell, a, lengths=p.lengths, reverse=reverse)
    pad = padding_mask(6, NAN_LENGTHS)
    for what in ("x", "dy", "both"):
        a_nan = {k: v.copy() for k, v in a.items()}
        if what in ("x", "both"):
            a_nan["x"][pad] = np.nan
        if what in ("dy", "both"):
            a_nan["dy"][pad] = np.inf if what == "both" else np.nan
        out, grads = run(cell, a_nan, lengths=p.lengths, reverse=reverse)
        assert_identical(out, clean_out, f"NaN in {what} at padding: ")
        assert_identical(grads, clean_grads, f"NaN in {what} at padding: d")
        out_nt, tape = forward(cell, a_nan, lengths=p.lengths, reverse=reverse, need_tape=False)
        assert tape is None
        assert_identical(out_nt, clean_out, f"NaN in {what} at padding, no tape: ")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_padding_zero_and_full_lengths_equal_none(
    cell: str, dtype: Any, reverse: bool, rng: np.random.Generator
) -> None:  # fmt: skip
    T, B = 8, 5
    p = make_problem(rng, cell, T, B, 3, 10, reverse=reverse)
    a = p.cast(dtype)
    out, grads = run(cell, a, reverse=reverse)
    out_full, grads_full = run(cell, a, lengths=np.full(B, T), reverse=reverse)
    assert_identical(out_full, out)
    assert_identical(grads_full, grads)
    lengths = np.array([8, 1, 5, 2, 7])
    out_var, _ = run(cell, a, lengths=lengths, reverse=reverse)
    pad = padding_mask(T, lengths)
    assert np.all(out_var["y"][pad] == 0)
    assert not np.any(np.signbit(out_var["y"][pad])), "padding should be +0.0"
    if cell != "rnn_relu":  # relu may give exact zeros at real steps
        assert np.all(out_var["y"][~pad] != 0)
    # The full-length sequence 0 is the same as in the full run.
    for k in out:
        sel = (slice(None), 0) if k == "y" else (0,)
        np.testing.assert_array_equal(out_var[k][sel], out[k][sel], strict=True)


# ----------------------------------------------------------------------------------------------
# Empty sizes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_T0(cell: str, dtype: Any, reverse: bool, bias: bool, rng: np.random.Generator) -> None:
    B, I, H = 3, 4, 5
    p = make_problem(rng, cell, 0, B, I, H, reverse=reverse, bias=bias)
    a = p.cast(dtype)
    out, grads = run(cell, a, reverse=reverse, bias=bias)
    assert out["y"].shape == (0, B, H) and out["y"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out["h_n"], a["h0"], strict=True)
    if cell == "lstm":
        np.testing.assert_array_equal(out["c_n"], a["c0"], strict=True)
        np.testing.assert_array_equal(grads["c0"], a["dc_n"], strict=True)
    np.testing.assert_array_equal(grads["h0"], a["dh_n"], strict=True)
    assert grads["x"].shape == (0, B, I) and grads["x"].dtype == np.dtype(dtype)
    for k in PARAMS:
        if not bias and k.startswith("bias"):
            assert grads[k] is None
            continue
        assert grads[k].shape == a[k].shape and grads[k].dtype == np.dtype(dtype), k
        assert np.all(grads[k] == 0), k
    out_nt, tape = forward(cell, a, reverse=reverse, bias=bias, need_tape=False)
    assert tape is None
    assert_identical(out_nt, out)
    check_against_reference(p, dtype)


@pytest.mark.parametrize("lengths", [None, "empty"], ids=["nolengths", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_B0(cell: str, dtype: Any, reverse: bool, lengths: Any, rng: np.random.Generator) -> None:
    T, I, H = 4, 3, 6
    lengths = np.zeros(0, np.int64) if lengths == "empty" else None
    p = make_problem(rng, cell, T, 0, I, H, reverse=reverse, lengths=lengths)
    a = p.cast(dtype)
    out, grads = run(cell, a, reverse=reverse, lengths=lengths)
    assert out["y"].shape == (T, 0, H)
    assert out["h_n"].shape == (0, H)
    assert grads["x"].shape == (T, 0, I)
    assert grads["h0"].shape == (0, H)
    if cell == "lstm":
        assert out["c_n"].shape == (0, H) and grads["c0"].shape == (0, H)
    for k in PARAMS:
        assert grads[k].shape == a[k].shape and grads[k].dtype == np.dtype(dtype), k
        assert np.all(grads[k] == 0), k
    check_against_reference(p, dtype)


# ----------------------------------------------------------------------------------------------
# The tape, need_tape
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_tape_immune_to_mutation(cell: str, dtype: Any, rng: np.random.Generator) -> None:
    """Overwriting the caller's inputs and the returned outputs after the forward changes nothing."""
    p = make_problem(rng, cell, 7, 4, 5, 8, lengths=[7, 2, 1, 6], reverse=True)
    a = p.cast(dtype)
    expected_out, expected_grads = run(cell, a, lengths=p.lengths, reverse=True)
    mine = {k: v.copy() for k, v in a.items()}
    lengths = p.lengths.copy()
    out, tape = forward(cell, mine, lengths=lengths, reverse=True)
    assert_identical(out, expected_out)
    for k in ("x", "h0", "c0", *PARAMS):
        if k in mine:
            mine[k][...] = rng.standard_normal(mine[k].shape)
    for v in out.values():
        v[...] = rng.standard_normal(v.shape)
    grads = backward(cell, tape, mine)
    assert_identical(grads, expected_grads)
    # The same tape can be used twice.
    assert_identical(backward(cell, tape, mine), expected_grads)


@pytest.mark.parametrize("cell", CELLS)
def test_tape_immune_to_mutating_lengths(cell: str, rng: np.random.Generator) -> None:
    """The caller's ``lengths`` array (int64, contiguous) changed after the forward: no effect."""
    p = make_problem(rng, cell, 7, 4, 5, 8, lengths=[7, 2, 1, 6])
    a = p.cast(np.float64)
    expected_out, expected_grads = run(cell, a, lengths=p.lengths.copy())
    lengths = p.lengths.copy()
    out, tape = forward(cell, a, lengths=lengths)
    assert_identical(out, expected_out)
    lengths[...] = 7
    assert_identical(backward(cell, tape, a), expected_grads)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_need_tape_false(cell: str, dtype: Any, reverse: bool, rng: np.random.Generator) -> None:
    for lengths, bias in ((None, True), (np.array([4, 9, 1]), False)):
        p = make_problem(rng, cell, 9, 3, 4, 13, reverse=reverse, lengths=lengths, bias=bias)
        a = p.cast(dtype)
        with_tape, tape = forward(cell, a, lengths=lengths, reverse=reverse, bias=bias)
        assert tape is not None
        without, none = forward(cell, a, lengths=lengths, reverse=reverse, bias=bias, need_tape=False)
        assert none is None
        assert_identical(without, with_tape)


def test_need_tape_false_workspace_reused_across_shapes(rng: np.random.Generator) -> None:
    """Without a tape the gates live in the kernels' kept scratch: calls of other shapes in
    between (larger, smaller, another cell) leave nothing behind that a later call reads."""
    shapes = (("lstm", 30, 5, 40), ("gru", 3, 2, 9), ("lstm", 50, 8, 64), ("rnn_tanh", 30, 5, 40), ("lstm", 30, 5, 40))
    problems = [make_problem(rng, cell, T, B, 7, H) for cell, T, B, H in shapes]
    for p in problems:
        a = p.cast(np.float32)
        with_tape, _ = forward(p.cell, a)
        without, _ = forward(p.cell, a, need_tape=False)
        assert_identical(without, with_tape)


# ----------------------------------------------------------------------------------------------
# The GIL is released: two calls at once from two threads
# ----------------------------------------------------------------------------------------------


def test_two_threads_at_once(rng: np.random.Generator) -> None:
    jobs = []
    for cell, dtype in (("lstm", np.float64), ("gru", np.float32), ("rnn_tanh", np.float64), ("lstm", np.float32)):
        p = make_problem(rng, cell, 120, 16, 64, 128, lengths=rng.integers(1, 121, 16), reverse=cell == "gru")
        jobs.append((cell, p.cast(dtype), p.lengths, p.reverse))
    sequential = [run(cell, a, lengths=lengths, reverse=rev) for cell, a, lengths, rev in jobs]

    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(indices: list[int]) -> None:
        try:
            start.wait()
            for _ in range(2):
                for i in indices:
                    cell, a, lengths, rev = jobs[i]
                    results[i] = run(cell, a, lengths=lengths, reverse=rev)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=([0, 1],)), threading.Thread(target=worker, args=([2, 3],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    for i, (seq, par) in enumerate(zip(sequential, results)):
        assert par is not None, i
        assert_identical(par[0], seq[0], f"job {i}: ")
        assert_identical(par[1], seq[1], f"job {i}: d")


def test_gates_table_matches_weights(rng: np.random.Generator) -> None:
    """Sanity of the helpers: conftest's GATES agree with the kernels' weight shapes."""
    for cell in CELLS:
        p = make_problem(rng, cell, 2, 2, 3, 4)
        assert p.arrays["weight_ih"].shape == (GATES[cell] * 4, 3)
        out, _ = forward(cell, p.cast(np.float64))
        assert out["y"].shape == (2, 2, 4)
