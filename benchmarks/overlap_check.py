"""Bitwise check of ``benchmarks/patches/projection_overlap.patch``: forwards with the input
projection computed in chunks during the steps (``OVERLAP=K`` steps per chunk, ``OVERLAP_PF=1``
also asking for the next R block meanwhile) against ``OVERLAP=0``, for LSTM, GRU and Elman cells,
reverse, lengths, tapes, weights packed once, one and two threads. A call with other weights runs
before each checked one, so that kept scratch and pooled arrays hold other values.

    python benchmarks/run_with.py /tmp/ovl benchmarks/overlap_check.py   (a build with the patch)
"""
import os, numpy as np, fusedrnn
from fusedrnn import functional as F
rng = np.random.default_rng(1)
bad = 0; n = 0
def run(cell, x, h0, w, tape, kw):
    if cell == "lstm": out = F.lstm_forward(x, h0, h0, *w, need_tape=tape, **kw); return out[0], out[1], (out[3].gates if tape else None)
    if cell == "gru": out = F.gru_forward(x, h0, *w, need_tape=tape, **kw); return out[0], out[1], (out[2].gates if tape else None)
    out = F.rnn_forward(x, h0, *w, need_tape=tape, nonlinearity="tanh", **kw); return out[0], out[1], (out[2].gates if tape else None)
for th in (2, 1):
  fusedrnn.set_num_threads(th)
  for cell, H, B, T, I, rev, lens in [("lstm", 640, 3, 23, 300, False, None), ("lstm", 640, 4, 17, 640, True, None),
                              ("gru", 768, 2, 20, 100, False, [20, 11]), ("lstm", 1100, 1, 9, 37, False, None),
                              ("rnn_tanh", 1400, 4, 12, 50, True, [5, 12, 1, 9]), ("lstm", 600, 8, 10, 1030, False, None),
                              ("gru", 900, 5, 13, 700, True, None)]:
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    mk = lambda: [rng.uniform(-.05, .05, s).astype(np.float32) for s in [(G*H, I), (G*H, H), (G*H,), (G*H,)]]
    w, w_other = mk(), mk()
    x = rng.standard_normal((T, B, I), dtype=np.float32); h0 = rng.standard_normal((B, H), dtype=np.float32)
    kw = dict(reverse=rev, lengths=None if lens is None else np.array(lens))
    for tape in (False, True):
        os.environ["OVERLAP"] = "0"
        ref = [None if a is None else np.array(a) for a in run(cell, x, h0, w, tape, kw)]
        for k in ("1", "3", "8", "40"):
            os.environ["OVERLAP"] = "0"; run(cell, x, h0, w_other, tape, kw)
            os.environ["OVERLAP"] = k
            out = run(cell, x, h0, w, tape, kw); n += 1
            if not all((a is None and b is None) or np.array_equal(a, np.array(b)) for a, b in zip(ref, out)):
                bad += 1; print("DIFF", th, cell, H, B, T, rev, lens, tape, k)
    if cell != "rnn_tanh":
        pk, pk_other = F.pack_weights(cell, *w), F.pack_weights(cell, *w_other)
        st = (h0, h0) if cell == "lstm" else (h0,)
        os.environ["OVERLAP"] = "0"; r0 = np.array(pk.forward(x, *st)[0]); pk_other.forward(x, *st)
        os.environ["OVERLAP"] = "3"; r1 = pk.forward(x, *st)[0]; n += 1
        if not np.array_equal(r0, r1): bad += 1; print("DIFF packed", th, cell, H, B, T)
print("checked", n, "bad", bad)
raise SystemExit(1 if bad else 0)
