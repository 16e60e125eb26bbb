"""Benchmark sizes: the CLI's lists (``fusedrnn.bench``), shared with the pytest-benchmark suite."""

from fusedrnn.bench import FULL, QUICK, Config

__all__ = ["Config", "QUICK", "FULL"]
