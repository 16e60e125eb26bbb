"""Run a script with ``fusedrnn`` imported from another package copy (``benchmarks/ab_build.sh``).

Usage: ``python benchmarks/run_with.py DIR SCRIPT [ARGS...]``. An editable install puts its own
finder ahead of ``sys.path``, so ``PYTHONPATH=DIR`` alone would still import the installed build;
this drops that finder first.
"""

from __future__ import annotations

import runpy
import sys

if __name__ == "__main__":
    sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, sys.argv[1])
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
