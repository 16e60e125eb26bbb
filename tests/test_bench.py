"""``bench``'s timing helper: a median over enough calls (the benchmark CLI itself is exercised in
test_packed.py and test_gemm.py)."""

from __future__ import annotations

import time

from fusedrnn import bench


def test_median_covers_the_minimum_time_for_short_calls() -> None:
    calls = []
    bench._median_seconds(lambda: calls.append(time.perf_counter()), repeats=3, min_seconds=0.02)
    assert len(calls) > 4  # the warm-up call, three repeats, then more until 0.02 s of calls
    assert calls[-1] - calls[1] >= 0.015  # the timed calls span about the minimum


def test_median_stops_long_calls_at_the_budget() -> None:
    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.01)

    bench._median_seconds(slow, repeats=50, budget=0.03, min_seconds=1.0)
    assert 4 <= len(calls) <= 6  # warm-up, then three or four timed calls past the budget


def test_reference_style_call_takes_exactly_its_repeats() -> None:
    calls = []
    bench._median_seconds(lambda: calls.append(1), repeats=3, min_seconds=0.0)
    assert len(calls) == 4  # warm-up + three
