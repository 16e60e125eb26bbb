"""Two code-generation faults no test of results can see, listed from the compiled kernels.

1. Innermost loops that move vector registers through the stack. A product loop whose accumulators the compiler could not keep in registers stores (and reloads)
each of them at every iteration; that halved the B = 2 LSTM forward until 2026-11-23 and no test
can see it, since the results are right. This disassembles the built extension (``objdump``) and
lists, per function, the innermost loops (a backward jump with no other backward jump inside)
that hold both vector FMAs and ``ymm``/``zmm`` loads or stores addressed off the stack (``%rsp``,
or ``%rbp`` where a function realigns its frame for 64-byte vectors). The cell's
pointwise loops spill legitimately (many live vectors); a block product should never appear.

2. Scalar divisions (``vdivss``/``vdivsd``) in the functions the cells' math is inlined into:
each of their divisions is in a cell's pointwise math, which must be vectorized; a float select in exp's argument clamp once made GCC give up
("control flow in loop") and run the whole cell math one lane at a time, 1.2-1.35x slower.

Usage: ``python benchmarks/codegen_check.py [OBJECT_OR_LIBRARY] [--isa avx2] [--all]`` (``--all``
also lists loops whose stack traffic is smaller than their FMA count). It needs the kernels'
symbols: the default is the ISA's object file in the build tree (``build/*/CMakeFiles/
fusedrnn_isa_<isa>.dir``, the code linked into ``_C``), since the installed ``_C`` is stripped;
with no symbols of the ISA it says so and exits 2, never reporting a vacuous zero. Prints one line
per finding and the count on stderr.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

FUNCTION = re.compile(r"^[0-9a-f]+ <(?P<name>.*)>:$")
INSTRUCTION = re.compile(r"^\s+(?P<addr>[0-9a-f]+):\s+(?P<text>.*)$")
JUMP = re.compile(r"^j\w+\s+(?P<target>[0-9a-f]+)\b")
CELL_MATH = re.compile(r"::(forward_step|backward_block|backward_walk\w*)<")  # where the cells' math is inlined
SCALAR_DIVISION = re.compile(r"^vdivs[sd]\b")
PACKED_FMA = re.compile(r"^vf(?:n?m(?:add|sub)|maddsub|msubadd)\d+p[sd]\b")
# A ymm/zmm operand off the stack, or a whole-xmm vector move to or from it (GCC 12 built AVX-512
# broadcasts from four 16-byte stores and a 64-byte reload: the FMAs' stack reads alone were fewer
# than the FMAs, so counting only ymm/zmm missed it). The stack is addressed off %rsp, or off %rbp
# in a function that realigns its frame for 64-byte vectors (an experiment build's Elman product
# kept its accumulators there, 3x slower, and an %rsp-only check saw nothing).
STACK = r"\(%r[sb]p\)"
STACK_VECTOR = re.compile(rf"[yz]mm\d+.*{STACK}|{STACK}.*[yz]mm\d+"
                          rf"|^vmov(?:aps|ups|apd|upd|dq[au]\d*)\s.*%xmm\d+.*{STACK}"
                          rf"|^vmov(?:aps|ups|apd|upd|dq[au]\d*)\s.*{STACK}.*%xmm\d+")


def functions(disassembly: str) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    for line in disassembly.splitlines():
        if m := FUNCTION.match(line):
            current = out.setdefault(m["name"], [])
        elif current is not None and (m := INSTRUCTION.match(line)):
            current.append((int(m["addr"], 16), m["text"]))
    return out


def innermost_loops(code: list[tuple[int, str]]) -> list[list[str]]:
    back = [(addr, int(m["target"], 16)) for addr, text in code if (m := JUMP.match(text)) and int(m["target"], 16) < addr]
    loops = []
    for end, start in back:
        if any(start <= a < end for a, _ in back if a != end):
            continue  # holds another loop
        loops.append([text for addr, text in code if start <= addr <= end])
    return loops


def default_object(isa: str) -> Path:
    """The newest object file of ``isa``'s kernels in the build tree, or else the installed ``_C``."""
    root = Path(__file__).resolve().parent.parent / "build"
    objects = sorted(root.glob(f"*/CMakeFiles/fusedrnn_isa_{isa}.dir/csrc/cpu/isa_{isa}.cpp.o"),
                     key=lambda p: p.stat().st_mtime)  # fmt: skip
    if objects:
        return objects[-1]
    from fusedrnn import _C

    return Path(_C.__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", nargs="?",
                        help="object file or extension module (default: the build tree's object of --isa)")
    parser.add_argument("--isa", default="avx2", help="only functions of this ISA's namespace")
    parser.add_argument("--all", action="store_true", help="also loops with less stack traffic than FMAs")
    args = parser.parse_args()
    if args.library is None:
        args.library = default_object(args.isa)
    text = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(Path(args.library))],
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    isa_functions = {name: code for name, code in functions(text).items() if f"::{args.isa}::" in name}
    if not isa_functions:
        print(f"no functions of namespace ::{args.isa}:: in {args.library} (stripped, or not compiled in)",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    found = 0
    for name, code in isa_functions.items():
        for body in innermost_loops(code):
            # Vector FMAs only (ps/pd): a scalar one is not a product's (a function's set-up code
            # jumping back from a cold block once read as a loop with two scalar FMAs).
            fmas = sum(bool(PACKED_FMA.match(t)) for t in body)
            stack = sum(bool(STACK_VECTOR.search(t)) for t in body)
            if fmas >= 2 and stack > 0 and (args.all or stack >= fmas):
                found += 1
                print(f"spill: {len(body):5d} instructions, {fmas:3d} FMAs, {stack:3d} stack moves: {name}")
        if not CELL_MATH.search(name):
            continue
        divisions = sum(bool(SCALAR_DIVISION.match(text)) for _, text in code)
        if divisions:
            found += 1
            print(f"scalar: {divisions} scalar divisions: {name}")
    print(f"{found} finding(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
