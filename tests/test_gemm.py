"""The kernels' own GEMM, exposed as ``_C.gemm`` for ``python -m fusedrnn bench --gemm``.

Against float64 products on shapes that are not multiples of the register tiles (6 rows, and on
AVX-512 12 rows from 192 rows up) or of the cache blocks (MC = 96; KC = 256 and NC = 2048, or on
AVX-512 from the caches: 128-1024 and 64-4096, e.g. 512 and 512 with a 48 KB L1 and a 2 MB L2),
bitwise identical for 1..3 threads and for either tile, and the bench mode end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import fusedrnn
from fusedrnn import _C, bench


SHAPES = [(1, 1, 1), (2, 40, 30), (3, 70, 1100), (7, 33, 5), (97, 65, 257), (300, 17, 600), (40, 50, 2100), (5, 2100, 3), (4, 6, 0),
          (203, 45, 1030), (385, 70, 9), (200, 1700, 1100)]


@pytest.mark.parametrize("M,N,K", SHAPES)
def test_gemm_matches_float64(M: int, N: int, K: int, rng: np.random.Generator) -> None:
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    a_before, b_before = a.copy(), b.copy()
    c = _C.gemm(a, b)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert c.shape == (M, N) and c.dtype == np.float32
    assert np.all(np.isfinite(c))
    assert np.max(np.abs(c - want), initial=0.0) <= 1e-5 * max(np.max(np.abs(want), initial=0.0), 1.0) * np.sqrt(K + 1)
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("transpose_a,transpose_b", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("M,N,K", [(7, 33, 5), (97, 65, 257), (40, 50, 2100), (205, 33, 1100)])
def test_gemm_transposed_operands(M: int, N: int, K: int, transpose_a: bool, transpose_b: bool,
                                  rng: np.random.Generator) -> None:  # fmt: skip
    a = rng.standard_normal((K, M) if transpose_a else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if transpose_b else (K, N), dtype=np.float32)
    c = _C.gemm(a, b, transpose_a, transpose_b)
    want = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    assert c.shape == (M, N) and np.all(np.isfinite(c))
    assert np.max(np.abs(c - want)) <= 1e-5 * max(np.max(np.abs(want)), 1.0) * np.sqrt(K + 1)


def test_gemm_is_the_same_for_every_thread_count(rng: np.random.Generator) -> None:
    a = rng.standard_normal((150, 300), dtype=np.float32)
    b = rng.standard_normal((300, 70), dtype=np.float32)
    before = fusedrnn.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            fusedrnn.set_num_threads(n)
            results.append(_C.gemm(a, b))
    finally:
        fusedrnn.set_num_threads(before)
    for c in results[1:]:
        np.testing.assert_array_equal(c, results[0])


@pytest.mark.parametrize("transpose_a", [False, True])
def test_gemm_rows_are_the_same_whichever_tile_computes_them(transpose_a: bool, rng: np.random.Generator) -> None:
    # 250 rows take the wide tile on AVX-512, their first 100 alone the narrow one; each element is
    # the same sum in the same order either way.
    a = rng.standard_normal((1030, 250) if transpose_a else (250, 1030), dtype=np.float32)
    b = rng.standard_normal((1030, 37), dtype=np.float32)
    whole = _C.gemm(a, b, transpose_a, False)
    first = _C.gemm(np.ascontiguousarray(a[:, :100] if transpose_a else a[:100]), b, transpose_a, False)
    np.testing.assert_array_equal(first, whole[:100])


def test_gemm_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"a must have shape \(M, K\)"):
        _C.gemm(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"with transpose_b"):
        _C.gemm(np.ones((2, 3), np.float32), np.ones((3, 5), np.float32), False, True)
    with pytest.raises(ValueError, match="2-D"):
        _C.gemm(np.ones(3, np.float32), np.ones((3, 5), np.float32))


def test_bench_gemm_mode_prints_every_shape(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = bench.Config("gru", 3, 2, 5, 7)
    assert bench.gemm_table([cfg], repeats=2, threads=1, peak=100.0) == 0
    out = capsys.readouterr().out
    for what, *_ in bench.gemm_shapes(cfg):
        assert f"{cfg} {what}" in out
    assert "geometric mean speed-up over NumPy's sgemm" in out
