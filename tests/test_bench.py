"""``bench``'s timing helpers: a median over enough calls, and variants taking turns call by call
(the benchmark CLI itself is exercised in test_packed.py and test_gemm.py)."""

from __future__ import annotations

import os
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


def test_alternating_times_take_turns_with_an_untimed_call_first() -> None:
    order: list[str] = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    times = bench._alternating_times(calls, 0.0, min_calls=3)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert order == ["a", "a", "b", "b"] * 3  # each timed call after an untimed one of its own variant


def test_rounds_give_every_call_a_block_in_each_round() -> None:
    order: list[str] = []
    calls = {"ours": lambda: order.append("ours"), "theirs": lambda: order.append("theirs")}
    medians = bench._rounds_of_times(calls, rounds=3, repeats=4, pause=0.0)
    assert set(medians) == {"ours", "theirs"} and all(m >= 0.0 for m in medians.values())
    blocks = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert blocks == ["ours", "theirs"] * 3  # one block each per round, in turn
    # per round: a warm-up, then ceil(4 / 3) calls and more until the round's share of the minimum time
    assert min(order.count("ours"), order.count("theirs")) >= 3 * (1 + 2)


def test_rounds_stop_a_long_call_after_one_timed_run_per_round() -> None:
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.02)

    bench._call_times(slow, repeats=5, budget=0.01, min_seconds=1.0, min_calls=1)
    assert len(calls) == 2  # warm-up, then one timed call past the budget


def test_cpu_description_names_the_processor_and_where_known_its_caches() -> None:
    text = bench._cpu_description()
    assert isinstance(text, str) and text and "\n" not in text
    if os.path.isfile("/sys/devices/system/cpu/cpu0/cache/index0/size"):
        assert "L1d " in text and text.endswith(" KB")
