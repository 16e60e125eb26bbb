"""Command line: ``python -m fusedrnn bench [...]`` (time the kernels) and ``python -m fusedrnn demo [...]`` (train a model)."""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"bench": "fusedrnn.bench", "demo": "fusedrnn.demo"}
    if not argv or argv[0] not in commands:
        print(
            "usage: python -m fusedrnn bench [--quick | --table | --deepbench] [--repeats N] [--threads N] [--plot PNG] ...\n"
            "       python -m fusedrnn demo [--task lm|forecast|classify] [--cell lstm|gru|rnn] [--hidden N] [--layers N]\n"
            "                               [--steps N] [--device cpu|cuda] [--seed N] [--save NPZ] [--load NPZ] [--plot PNG] ...\n"
            "(python -m fusedrnn COMMAND --help for every option)"
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(commands[argv[0]])
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
