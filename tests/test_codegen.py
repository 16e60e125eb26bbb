"""The compiled kernels' inner loops keep their accumulators in registers.

GCC once compiled the split-sum step products (B = 2 LSTM, forward and backward) with every
accumulator stored to the stack at every k: right results at half the speed, which no other test
can see. ``benchmarks/loop_spills.py`` lists innermost loops holding both FMAs and as many vector
moves through the stack; there must be none, for each FMA instruction set compiled in. Skipped
where ``objdump`` is missing or the module is not an x86-64 build.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fusedrnn

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "loop_spills.py"


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not found")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 builds only")
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_no_inner_loop_moves_accumulators_through_the_stack(isa: str) -> None:
    if isa not in fusedrnn.build_info()["isas"]:
        pytest.skip(f"{isa} not compiled in")
    result = subprocess.run([sys.executable, str(SCRIPT), "--isa", isa], capture_output=True, text=True, check=True)
    assert result.stdout == "", f"inner loops spilling accumulators ({isa}):\n{result.stdout}"
    assert "0 loop(s) listed" in result.stderr
