"""Benchmark sizes: the CLI's lists (``fusedrnn.bench``), shared with the pytest-benchmark suite."""

from fusedrnn.bench import DEEPBENCH, QUICK, TABLE, Config

__all__ = ["Config", "QUICK", "TABLE", "DEEPBENCH"]
