"""The array pool behind ``_checks.empty`` (``csrc/bindings/array_pool.h``).

Outputs, tapes and workspaces from 128 KB up reuse the memory of freed ones. What must hold: a
block is reused only once no array or view uses it; a kernel writes every element whatever stale
values a reused block holds; the idle blocks stay under the cap; threads never share a block.
Every other test already runs through the pool (the conftest poisoning fills pooled arrays).
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from fusedrnn import _C, _checks, functional

from conftest import make_problem, pooled_empty

MB = 1 << 20
CAP = 256 * MB  # array_pool.h's kMaxIdleBytes


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    """Start from an empty pool, with no garbage collection to free other tests' arrays meanwhile."""
    gc.collect()
    gc.disable()
    _C.pool_release_idle()
    yield
    gc.enable()


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_small_arrays_are_numpy_owned_and_large_ones_pooled() -> None:
    small = pooled_empty((100, 300), np.float32)  # 120 KB
    large = pooled_empty((100, 400), np.float32)  # 160 KB
    assert small.flags.owndata and small.base is None
    assert not large.flags.owndata and large.base is not None
    for a, shape in ((small, (100, 300)), (large, (100, 400))):
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    assert address(large) % 64 == 0


def test_freed_block_is_reused_for_the_same_size() -> None:
    a = pooled_empty((64, 1024), np.float64)
    where = address(a)
    del a
    assert _C.pool_idle_bytes() == 512 * 1024
    b = pooled_empty((1024, 64), np.float64)  # same bytes, another shape
    assert address(b) == where and _C.pool_idle_bytes() == 0
    c = pooled_empty((1024, 64), np.float32)  # half the size: not within a quarter of the block
    assert address(c) != where


def test_a_view_keeps_its_block() -> None:
    a = pooled_empty((256, 256), np.float32)
    a[:] = 7.0
    view = a[10:20].T
    where = address(a)
    del a
    assert _C.pool_idle_bytes() == 0  # the view still holds the block
    b = pooled_empty((256, 256), np.float32)
    b[:] = -1.0
    assert address(b) != where
    assert np.all(view == 7.0)
    del view
    assert address(pooled_empty((256, 256), np.float32)) == where


def test_idle_blocks_stay_under_the_cap() -> None:
    blocks = [pooled_empty((60 * MB,), np.uint8) for _ in range(6)]  # never touched: no memory used
    del blocks
    assert 0 < _C.pool_idle_bytes() <= CAP
    huge = pooled_empty((CAP + MB,), np.uint8)
    del huge
    assert _C.pool_idle_bytes() <= CAP
    _C.pool_release_idle()
    assert _C.pool_idle_bytes() == 0


def test_packed_weights_live_in_the_pool(rng: np.random.Generator) -> None:
    """pack_weights' buffers come from the pool (huge pages from 2 MB up) and go back to it."""
    H = 512  # LSTM: W_ih and R packed, 4 MB each
    w = [rng.uniform(-0.1, 0.1, shape).astype(np.float32) for shape in ((4 * H, H), (4 * H, H), (4 * H,), (4 * H,))]
    packed = functional.pack_weights("lstm", *w)
    assert _C.pool_idle_bytes() == 0
    del packed
    assert _C.pool_idle_bytes() >= 2 * 4 * H * H * 4


def test_unsatisfiable_sizes_are_memory_errors() -> None:
    for shape in ((2**40, 2**40), (2**70,), (2**31, 2**31, 4)):
        with pytest.raises(MemoryError, match="cannot allocate an array of shape"):
            _checks.empty(shape, np.float32)
    assert _checks.empty((0, 5), np.float64).shape == (0, 5)


def test_threads_never_share_a_block() -> None:
    errors: list[str] = []

    def churn(k: int) -> None:
        for i in range(300):
            a = pooled_empty((32 + (i % 3) * 16, 1024), np.float32)
            a.fill(k)
            if not np.all(a == k):
                errors.append(f"thread {k}: its array was overwritten")
            del a

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_reused_blocks_full_of_nan_give_the_same_results(cell: str, rng: np.random.Generator) -> None:
    """Without the conftest poisoning: a forward + backward, every array it returned (tape included)
    filled with NaN and freed into the pool, then the same call again, which gets those blocks back
    and must write them all."""
    _checks.empty = pooled_empty  # undo the poisoning: the kernels get the pool's stale blocks
    T, B, I, H = 40, 8, 112, 128  # x, y, weights, tape and workspaces all from 128 KB up
    lengths = np.sort(rng.integers(1, T + 1, B))[::-1].copy()
    p = make_problem(rng, cell, T, B, I, H, lengths=lengths, reverse=True)
    a = p.cast(np.float32)
    w = (a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    kw = {"lengths": lengths, "reverse": True}

    def forward_backward() -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(outputs and gradients, the tape's arrays, whose padding steps need not be written)"""
        if cell == "lstm":
            *outs, tape = functional.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
            grads = functional.lstm_backward(tape, a["dy"], a["dh_n"], a["dc_n"])
        elif cell == "gru":
            *outs, tape = functional.gru_forward(a["x"], a["h0"], *w, **kw)
            grads = functional.gru_backward(tape, a["dy"], a["dh_n"])
        else:
            *outs, tape = functional.rnn_forward(a["x"], a["h0"], *w, nonlinearity="tanh", **kw)
            grads = functional.rnn_backward(tape, a["dy"], a["dh_n"])
        kept = [getattr(tape, f.name) for f in dataclasses.fields(tape)]
        floats = [v for v in kept if isinstance(v, np.ndarray) and v.dtype == np.float32]
        return [*outs, *(g for g in grads.values() if g is not None)], floats

    results, tape = forward_backward()
    expected = [v.copy() for v in results]
    pooled = {address(v) for v in results + tape if not v.flags.owndata}
    assert len(pooled) >= 5
    for v in results + tape:
        v.fill(np.nan)
    del v, results, tape
    results, tape = forward_backward()
    # the NaN blocks came back (some serve the backward's workspaces of the same sizes instead)
    assert len({address(v) for v in results + tape} & pooled) >= len(pooled) // 2
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_a_torch_tensor_keeps_its_block() -> None:
    """fusedrnn.torch wraps the kernels' arrays with torch.from_numpy, without a copy."""
    torch = pytest.importorskip("torch")
    a = pooled_empty((256, 256), np.float32)
    a[:] = 3.0
    tensor = torch.from_numpy(a)
    where = address(a)
    del a
    other = pooled_empty((256, 256), np.float32)
    other[:] = -1.0
    assert address(other) != where and bool(torch.all(tensor == 3.0))
    del tensor
    assert address(pooled_empty((256, 256), np.float32)) == where
