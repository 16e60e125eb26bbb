"""The compiled kernels' inner loops keep their accumulators in registers and their cell math
vectorized.

GCC once compiled the split-sum step products (B = 2 LSTM, forward and backward) with every
accumulator stored to the stack at every k, and once ran the cells' pointwise math one lane at a
time: right results, 1.2-2x slower, which no other test can see. ``benchmarks/codegen_check.py``
lists innermost loops holding both FMAs and as many vector moves through the stack, and scalar
divisions; there must be none, for each FMA instruction set compiled in. Skipped where
``objdump`` is missing or the module is not an x86-64 build.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fusedrnn

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "codegen_check.py"


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not found")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 builds only")
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_no_spilled_inner_loop_and_no_scalar_cell_math(isa: str) -> None:
    if isa not in fusedrnn.build_info()["isas"]:
        pytest.skip(f"{isa} not compiled in")
    result = subprocess.run([sys.executable, str(SCRIPT), "--isa", isa], capture_output=True, text=True, check=True)
    assert result.stdout == "", f"code generation faults ({isa}):\n{result.stdout}"
    assert "0 finding(s)" in result.stderr
