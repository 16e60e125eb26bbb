"""``fusedrnn.torch`` modules under ``DistributedDataParallel``: 2 processes, gloo, loopback.

Two ranks (subprocesses running ``_worker`` from this module) each build the same float64 model
(``fusedrnn.torch.LSTM``/``GRU`` and a ``torch.nn.Linear`` head, same seed), wrap it in
``DistributedDataParallel`` and take a few SGD steps on their half of a fixed batch. DDP averages
the gradients over the ranks, and the loss is a mean over equal halves, so the result must equal
training the same model in this process, without DDP, on the whole batch: the parameters agree to
1e-10 (relative) with that run and bitwise between the ranks. The subprocesses are killed after
``TIMEOUT`` seconds, so a hang fails the test instead of blocking the suite; they run with
``-W error`` as the suite does (``filterwarnings = error``), and no warning appears.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)

import fusedrnn  # noqa: E402
import fusedrnn.torch as ft  # noqa: E402

WORLD = 2
TIMEOUT = 120.0
KINDS = ("lstm", "gru")
B, T, I, H, OUT = 4, 5, 3, 6, 2
STEPS = 3
SEED = 1234


# ----------------------------------------------------------------------------------------------
# What both the ranks and the single-process reference run
# ----------------------------------------------------------------------------------------------


class Model(torch.nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind == "lstm":
            self.rnn: Any = ft.LSTM(I, H, num_layers=2, batch_first=True)
        else:
            self.rnn = ft.GRU(I, H, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear((2 if self.rnn.bidirectional else 1) * H, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y)


def build(kind: str) -> Model:
    """The same float64 model in every process (seeded; torch's global generator restored)."""
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return Model(kind).double()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(SEED)
    return torch.tensor(rng.standard_normal((B, T, I))), torch.tensor(rng.standard_normal((B, T, OUT)))


def train(model: Any, x: torch.Tensor, target: torch.Tensor) -> list[float]:
    """STEPS steps of SGD with momentum on the mean squared error (a mean over the batch, as DDP's
    averaging needs). Written out rather than ``torch.optim.SGD``, whose first use imports
    ``torch._dynamo`` (seconds, in each rank)."""
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    losses = []
    for _ in range(STEPS):
        for p in params:
            p.grad = None
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        with torch.no_grad():
            for p, v in zip(params, velocity):
                v.mul_(0.9).add_(p.grad)
                p.sub_(0.5 * v)
        losses.append(loss.item())
    return losses


def _worker(out_dir: str) -> None:
    """One rank (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment): join the gloo
    group, train each kind under DDP, save the final parameters and losses."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    fusedrnn.set_num_threads(1)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=TIMEOUT))
    rank = dist.get_rank()
    assert dist.get_world_size() == WORLD
    try:
        x, target = batch()
        half = B // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        results: dict[str, Any] = {}
        for kind in KINDS:
            model = build(kind)
            losses = train(DistributedDataParallel(model), x[rows], target[rows])
            results[kind] = {"losses": torch.tensor(losses, dtype=torch.float64), "params": model.state_dict()}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Run the two ranks once for the module; each rank's saved results."""
    out = tmp_path_factory.mktemp("ddp")
    tests_dir = str(Path(__file__).resolve().parent)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(WORLD))
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo picks its interface from the hostname otherwise
    procs, logs = [], []
    for rank in range(WORLD):
        code = f"import sys; sys.path.insert(0, {tests_dir!r}); import test_ddp; test_ddp._worker({str(out)!r})"
        log = open(out / f"rank{rank}.log", "w+b")  # noqa: SIM115 (closed below)
        logs.append(log)
        # -W error: warnings fail the ranks as the suite's filterwarnings = error fails a test
        # (none appear with torch 2.13; filter any that do by message, here, with a reason).
        cmd = [sys.executable, "-W", "error", "-c", code]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(env, RANK=str(rank))))
    deadline = time.monotonic() + TIMEOUT
    try:  # wait for both, or for the first failure (the other rank would block until it times out)
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.05)
        running = [rank for rank, p in enumerate(procs) if p.poll() is None]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        text = []
        for rank, log in enumerate(logs):
            log.seek(0)
            output = log.read().decode(errors="replace")
            text.append(f"--- rank {rank} (exit {procs[rank].returncode}) ---\n{output}")
            log.close()
    report = "\n".join(text)
    failed = [rank for rank, p in enumerate(procs) if p.returncode != 0 and rank not in running]
    assert not failed, f"ranks {failed} failed\n{report}"
    assert not running, f"ranks {running} still running after {TIMEOUT:.0f} s, killed\n{report}"
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD)]


@pytest.mark.parametrize("kind", KINDS)
def test_ddp_matches_single_process(kind: str, ddp_results: list[dict[str, Any]]) -> None:
    # This process keeps fusedrnn's default thread count: its results are bitwise the same for any.
    x, target = batch()
    model = build(kind)
    losses = train(model, x, target)
    expected = model.state_dict()
    rank0, rank1 = (r[kind] for r in ddp_results)
    # Both ranks hold exactly the same parameters.
    assert list(rank0["params"]) == list(rank1["params"]) == list(expected)
    for k in expected:
        assert torch.equal(rank0["params"][k], rank1["params"][k]), k
    # Each rank's loss is the mean over its half: their average is the whole batch's loss.
    np.testing.assert_allclose(((rank0["losses"] + rank1["losses"]) / 2).numpy(), losses, rtol=1e-10, atol=0)
    assert losses[-1] < losses[0]  # it really trained
    for k, e in expected.items():
        a = rank0["params"][k]
        assert a.dtype == torch.float64 and a.shape == e.shape, k
        assert not torch.equal(e, build(kind).state_dict()[k]), f"{k} did not change"
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-10, atol=1e-14, err_msg=k)
