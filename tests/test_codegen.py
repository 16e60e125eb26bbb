"""The compiled kernels' inner loops keep their accumulators in registers and their cell math
vectorized.

GCC once compiled the split-sum step products (B = 2 LSTM, forward and backward) with every
accumulator stored to the stack at every k, and once ran the cells' pointwise math one lane at a
time: right results, 1.2-2x slower, which no other test can see. ``benchmarks/codegen_check.py``
lists innermost loops holding both FMAs and as many vector moves through the stack, and scalar
divisions; there must be none beyond the two small known ones below, for each FMA instruction
set compiled in. The check reads the ISA's object file in the build tree (the installed module is
stripped; until 2026-11-30 this test read it and passed on no functions at all). Skipped where
``objdump`` is missing, the module is not an x86-64 build, or no build tree is at hand.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fusedrnn

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "codegen_check.py"
# Found in the GCC 12 Release build when the check first read real symbols, and left: both are in
# the Elman cell's pointwise code, O(B*H) per step beside the O(B*H*H) product.
KNOWN = {
    # float64 on AVX2 is 4 lanes; GCC leaves the tanh of those 4 scalar (float64 Elman forward only).
    "avx2": re.compile(r"^scalar: \d+ scalar divisions: "
                       r".*forward_step<fusedrnn::avx2::RnnCell<false>, false, (true|false), false, double>"),
    # a few vectors kept on the stack around the tanh derivative (Elman backward).
    "avx512": re.compile(r"^spill: .*backward_block<fusedrnn::avx512::RnnCell<false>, (float|double)>"),
}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not found")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 builds only")
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_no_spilled_inner_loop_and_no_scalar_cell_math(isa: str) -> None:
    if isa not in fusedrnn.build_info()["isas"]:
        pytest.skip(f"{isa} not compiled in")
    result = subprocess.run([sys.executable, str(SCRIPT), "--isa", isa], capture_output=True, text=True)
    if result.returncode == 2:
        pytest.skip(f"no symbols to read: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    unknown = [line for line in result.stdout.splitlines() if not KNOWN[isa].match(line)]
    assert not unknown, f"code generation faults ({isa}):\n" + "\n".join(unknown)
