"""Benchmark sizes: the CLI's lists (``fusedrnn.bench``), shared with the pytest-benchmark suite,
and the positional ``CELL H B T`` arguments of the scripts that time one configuration."""

from __future__ import annotations

import argparse

from fusedrnn.bench import DEEPBENCH, QUICK, TABLE, Config

__all__ = ["Config", "QUICK", "TABLE", "DEEPBENCH", "config_arguments"]


def config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the positional arguments ``cell H B T`` (hidden size, batch, steps) to ``parser``."""
    parser.add_argument("cell", choices=("lstm", "gru", "rnn_tanh", "rnn_relu"))
    parser.add_argument("H", type=int)
    parser.add_argument("B", type=int)
    parser.add_argument("T", type=int)
    return parser
