"""Command line: ``python -m fusedrnn bench [--quick | --full]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"bench": "fusedrnn.bench"}
    if not argv or argv[0] not in commands:
        print("usage: python -m fusedrnn bench [--quick | --full] [--repeats N] [--no-reference] [--no-torch]")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from . import bench

    return bench.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
