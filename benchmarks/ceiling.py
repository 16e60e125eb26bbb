"""The best speed-ups any kernel could show in a ``bench --table`` run, from floors, not timings.

For each row, a floor on the time of *any* implementation on this machine:

- forward: the input projection's FLOPs at the FMA peak, plus per step the larger of the
  recurrent product's FLOPs at the peak and the bytes of R read at the measured bandwidth of
  where it lives: memory (or L3) when R is larger than the cores' L2 caches together, else the L2
  when it is larger than their L1 caches together (``--l2-bandwidth``, not counted unless given),
  plus one barrier;
- backward: the same recurrent walk (dgates R), and the dX, dW, dR products at the peak.

Each baseline's time (its ratio x fusedrnn's time in the same run) over that floor is, nearly,
the most any kernel could gain on the row (the L3 can hold part of a streamed R, so a memory-bound
row can come in a little under its floor); their geometric mean is the most the issue's mean could reach.
``--efficiency`` scales the peak (0.85: every product at the issue's own large-batch target).

Usage: ``python -m fusedrnn bench --table > t.txt; python benchmarks/ceiling.py t.txt
[--bandwidth 20] [--barrier-us 0.9] [--l2-mb 1] [--l2-bandwidth GB/s --l1-kb 96] [--efficiency 1.0]``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
ROW = re.compile(
    r"^(?P<cell>\w+) T=(?P<T>\d+) B=(?P<B>\d+) I=(?P<I>\d+) H=(?P<H>\d+)\s+(?P<f>[\d.]+)\s+\S+\s+\S+\s+"
    r"(?P<fb>[\d.]+)\s+\S+\s+\| torch\s+(?P<tf>[\d.]+)x\s+(?P<tfb>[\d.]+)x\s+\| ort\s+(?P<of>[\d.]+)x"
)
PEAK = re.compile(r"FMA peak measured on \d+ threads: (?P<peak>[\d.]+) GFLOP/s")


def floors_ms(cell: str, T: int, B: int, I: int, H: int, peak: float, bandwidth: float, barrier_us: float,
              l2_bytes: float, l2_bandwidth: float = math.inf, l1_bytes: float = 0.0) -> tuple[float, float]:  # fmt: skip
    """(forward, forward+backward) floors in ms; peak in GFLOP/s, bandwidths in GB/s."""
    GH = GATES[cell] * H
    projection = 2.0 * T * B * I * GH / peak / 1e6
    r_bytes = 4.0 * GH * H
    if r_bytes > l2_bytes:
        read_s = r_bytes / bandwidth / 1e9
    else:
        read_s = r_bytes / l2_bandwidth / 1e9 if r_bytes > l1_bytes else 0.0
    per_step_s = max(2.0 * B * H * GH / peak / 1e9, read_s)
    walk = T * (per_step_s * 1e3 + barrier_us / 1e3)
    forward = projection + walk
    backward = walk + (2 * projection + 2.0 * T * B * H * GH / peak / 1e6)  # dX, dW; dR
    return forward, forward + backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", nargs="?", help="bench --table output (default: stdin)")
    parser.add_argument("--bandwidth", type=float, default=20.0, help="GB/s read from memory, all cores, with prefetch")
    parser.add_argument("--barrier-us", type=float, default=0.9, help="one step barrier, microseconds")
    parser.add_argument("--l2-mb", type=float, default=1.0, help="the cores' L2 caches together, MB")
    parser.add_argument("--l2-bandwidth", type=float, default=math.inf,
                        help="GB/s read from the L2 caches, all cores (default: not a floor)")
    parser.add_argument("--l1-kb", type=float, default=0.0, help="the cores' L1 data caches together, KB")
    parser.add_argument("--efficiency", type=float, default=1.0, help="fraction of the FMA peak reachable")
    args = parser.parse_args()
    text = open(args.table).read() if args.table else sys.stdin.read()
    peak = float(PEAK.search(text)["peak"]) * args.efficiency
    logs: dict[str, list[float]] = {"torch fwd": [], "torch f+b": [], "ort fwd": []}
    print(f"peak {peak:.1f} GFLOP/s, bandwidth {args.bandwidth} GB/s (L2 {args.l2_bandwidth} GB/s), "
          f"barrier {args.barrier_us} us")
    print(f"{'config':<30} {'fwd ms':>8} {'floor':>7} {'f+b ms':>8} {'floor':>7} | best possible: torch fwd, f+b; ort")
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if not m:
            continue
        T, B, I, H = (int(m[k]) for k in "TBIH")
        f, fb = float(m["f"]), float(m["fb"])
        floor_f, floor_fb = floors_ms(m["cell"], T, B, I, H, peak, args.bandwidth, args.barrier_us,
                                      args.l2_mb * 2**20, args.l2_bandwidth, args.l1_kb * 2**10)  # fmt: skip
        best = {"torch fwd": float(m["tf"]) * f / floor_f, "torch f+b": float(m["tfb"]) * fb / floor_fb,
                "ort fwd": float(m["of"]) * f / floor_f}  # fmt: skip
        for k, v in best.items():
            logs[k].append(math.log(v))
        print(f"{m['cell']} T={T} B={B} H={H:<14} {f:8.2f} {floor_f:7.2f} {fb:8.2f} {floor_fb:7.2f} | "
              f"{best['torch fwd']:5.2f}x {best['torch f+b']:5.2f}x; {best['ort fwd']:5.2f}x")  # fmt: skip
    for k, v in logs.items():
        if v:
            print(f"geometric mean of the best possible speed-ups over {k}: {math.exp(sum(v) / len(v)):.2f}x")


if __name__ == "__main__":
    main()
