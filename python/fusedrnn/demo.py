"""``python -m fusedrnn demo``: train a small recurrent model end to end, in NumPy around fusedrnn.

Three classic uses of a recurrent network, each a few hundred lines of plain NumPy around one
fusedrnn layer (``--cell lstm|gru|rnn``, stacked with ``--layers``):

- ``--task lm`` (default): a character-level language model of the Python documentation that
  ships with every Python (``pydoc_data.topics``): embedding -> RNN -> linear -> softmax, trained
  with truncated back-propagation through time; text is sampled from it every few hundred steps
  (one-to-many generation) and at the end.
- ``--task forecast``: many-to-many forecasting of a synthetic multi-frequency signal a few steps
  ahead, scored against the naive "the value stays as it is" forecast on held-out sequences.
- ``--task classify``: many-to-one classification of noisy waveforms of random period, phase,
  amplitude and length (sine, square, triangle or sawtooth), scored on held-out sequences.

The loss, its gradient, the embedding and the output layer are NumPy; the recurrent layer runs
forward and backward through time in fusedrnn; all parameters are updated by
``fusedrnn.optim.Adam`` after ``fusedrnn.clip_grad_norm_``. ``--seed`` makes a run repeatable;
``--save``/``--load`` keep the model in one ``.npz`` file; ``--plot`` draws the loss curve.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import fusedrnn

from . import layers
from .clip import clip_grad_norm_
from .optim import Adam

TASKS = ("lm", "forecast", "classify")
CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.RNN}

# Per-task defaults: on 2 quiet cores the language model takes about 50 s, the others 10-20 s.
DEFAULTS: dict[str, dict[str, Any]] = {
    "lm": {"hidden": 128, "layers": 1, "steps": 600, "batch": 32, "seq_len": 64, "lr": 5e-3, "sample_every": 200},
    "forecast": {"hidden": 64, "layers": 1, "steps": 600, "batch": 32, "seq_len": 96, "lr": 3e-3, "sample_every": 150},
    "classify": {"hidden": 64, "layers": 1, "steps": 1500, "batch": 32, "seq_len": 64, "lr": 1e-2, "sample_every": 300},
}
EMBED_DIM = 32  # size of the character embedding (lm)


# ====================================================================== data
class CharCorpus:
    """The text of ``pydoc_data.topics`` as integer ids over its own character vocabulary.

    The last 5% of the text is held out to measure the loss on text the model never trained on.
    """

    def __init__(self, text: str, vocab: str | None = None) -> None:
        self.vocab = vocab if vocab is not None else "".join(sorted(set(text)))
        self._index = {ch: i for i, ch in enumerate(self.vocab)}
        self.ids = self.encode(text)
        split = int(len(self.ids) * 0.95)
        self.train_ids, self.valid_ids = self.ids[:split], self.ids[split:]

    @classmethod
    def from_stdlib(cls, vocab: str | None = None) -> CharCorpus:
        from pydoc_data import topics

        text = "\n\n".join(topics.topics[key] for key in sorted(topics.topics))
        # Prose rather than layout: no indentation or trailing blanks, at most one empty line in a row.
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.splitlines()))
        return cls(text, vocab)

    def encode(self, text: str) -> np.ndarray:
        """Character ids; characters outside the vocabulary become a space (or the first character)."""
        fallback = self._index.get(" ", 0)
        return np.array([self._index.get(ch, fallback) for ch in text], dtype=np.int64)

    def decode(self, ids: Any) -> str:
        return "".join(self.vocab[i] for i in ids)

    def batch(self, rng: np.random.Generator, B: int, T: int, valid: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """B random windows of T+1 characters: inputs (T, B) and next-character targets (T, B)."""
        ids = self.valid_ids if valid else self.train_ids
        starts = rng.integers(0, len(ids) - T - 1, size=B)
        windows = ids[starts[None, :] + np.arange(T + 1)[:, None]]  # (T+1, B)
        return windows[:-1], windows[1:]


# Periods (in steps) of the components of the forecast signal: every sequence mixes the same
# three with its own amplitudes and phases, so the model must infer them from what it has seen.
SIGNAL_PERIODS = (5.3, 12.7, 29.1)
SIGNAL_NOISE = 0.05
HORIZON = 4  # forecast x[t + HORIZON] at every step t
WARMUP = 16  # steps of context before forecasts are scored on held-out data


def make_signal(rng: np.random.Generator, n: int, T: int) -> np.ndarray:
    """``n`` sequences of ``T`` steps, shape (T, n): sums of sines of SIGNAL_PERIODS plus noise."""
    t = np.arange(T)[:, None, None]  # (T, 1, K)
    periods = np.asarray(SIGNAL_PERIODS)[None, None, :]
    amp = rng.uniform(0.2, 1.0, size=(1, n, len(SIGNAL_PERIODS)))
    phase = rng.uniform(0.0, 2 * np.pi, size=(1, n, len(SIGNAL_PERIODS)))
    clean = np.sum(amp * np.sin(2 * np.pi * t / periods + phase), axis=2)
    return (clean + SIGNAL_NOISE * rng.standard_normal((T, n))).astype(np.float32)


SHAPES = ("sine", "square", "triangle", "sawtooth")
WAVE_NOISE = 0.35


def make_waves(rng: np.random.Generator, n: int, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy waveforms: values (T, n) zero past each length, labels (n,), lengths (n,).

    Each sequence is one of SHAPES with a random period (6 to 20 steps), phase, amplitude (0.5 to
    1.5) and length (T/2 to T), plus Gaussian noise: no single step tells the shapes apart, the
    network has to integrate over time.
    """
    labels = rng.integers(0, len(SHAPES), size=n)
    period = rng.uniform(6.0, 20.0, size=n)
    phase = rng.uniform(0.0, 1.0, size=n)
    amp = rng.uniform(0.5, 1.5, size=n)
    lengths = rng.integers(T // 2, T + 1, size=n)
    u = (np.arange(T)[:, None] / period + phase) % 1.0  # position within the period, (T, n)
    waves = np.stack([
        np.sin(2 * np.pi * u),
        np.where(u < 0.5, 1.0, -1.0),
        4.0 * np.abs(u - 0.5) - 1.0,
        2.0 * u - 1.0,
    ])  # fmt: skip
    x = amp * waves[labels, :, np.arange(n)].T + WAVE_NOISE * rng.standard_normal((T, n))
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0.0
    return x.astype(np.float32), labels, lengths


# ====================================================================== model
class Model:
    """[embedding ->] fusedrnn layer -> linear head, with a NumPy backward around the layer's.

    ``per_step=True``: the head reads the output at every step (language model, forecast);
    ``per_step=False``: it reads the last layer's final state ``h_n[-1]`` (many-to-one), which the
    layer takes after each sequence's last real step when ``lengths`` is given.
    """

    def __init__(self, config: dict[str, Any], rng: np.random.Generator, device: str = "cpu") -> None:
        self.config = dict(config)
        c = self.config
        cls = CELLS[c["cell"]]
        self.rnn = cls(c["n_in"], c["hidden"], num_layers=c["layers"], dtype=np.float32, device=device, seed=rng)
        bound = 1.0 / math.sqrt(c["hidden"])
        self.params: dict[str, np.ndarray] = {
            "head_weight": rng.uniform(-bound, bound, (c["n_out"], c["hidden"])).astype(np.float32),
            "head_bias": np.zeros(c["n_out"], np.float32),
        }
        if c["vocab_size"]:
            self.params["embedding"] = rng.standard_normal((c["vocab_size"], c["n_in"])).astype(np.float32)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache: dict[str, Any] = {}

    @property
    def per_step(self) -> bool:
        return bool(self.config["per_step"])

    def forward(self, x: np.ndarray, state: Any = None, lengths: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        """x: (T, B) ids or (T, B, n_in) values -> outputs (T, B, n_out) or (B, n_out), final state."""
        inp = self.params["embedding"][x] if "embedding" in self.params else x.astype(np.float32, copy=False)
        y, state = self.rnn(inp, state, lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers, B, H)
        feats = y if self.per_step else h_n[-1]  # (T, B, H) or (B, H)
        out = feats @ self.params["head_weight"].T + self.params["head_bias"]
        self._cache = {"x": x, "feats": feats, "y_shape": y.shape, "h_shape": h_n.shape}
        return out, state

    def backward(self, d_out: np.ndarray) -> None:
        """Fill ``self.grads`` and ``self.rnn.grads`` from the loss gradient wrt the outputs."""
        c = self._cache
        W, feats = self.params["head_weight"], c["feats"]
        n_out = W.shape[0]
        self.grads["head_weight"][...] = d_out.reshape(-1, n_out).T @ feats.reshape(-1, feats.shape[-1])
        self.grads["head_bias"][...] = d_out.reshape(-1, n_out).sum(axis=0)
        d_feats = d_out @ W
        if self.per_step:
            dx, _ = self.rnn.backward(d_feats)
        else:  # the loss reaches the layer only through the last layer's final h
            dh = np.zeros(c["h_shape"], np.float32)
            dh[-1] = d_feats
            dstate = (dh, np.zeros_like(dh)) if isinstance(self.rnn, layers.LSTM) else dh
            dx, _ = self.rnn.backward(np.zeros(c["y_shape"], np.float32), dstate)
        if "embedding" in self.params:
            self.grads["embedding"][...] = 0.0
            np.add.at(self.grads["embedding"], c["x"].reshape(-1), dx.reshape(-1, dx.shape[-1]))

    def all_grads(self) -> dict[str, np.ndarray]:
        return {**self.rnn.grads, **self.grads}

    # ---------------------------------------------------------------- save / load
    def save(self, path: str, vocab: str | None = None) -> None:
        arrays = {f"rnn.{k}": v for k, v in self.rnn.state_dict().items()}
        arrays.update(self.params)
        arrays["config"] = np.array(json.dumps(self.config))
        if vocab is not None:
            arrays["vocab"] = np.array(list(vocab))
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> tuple[Model, str | None]:
        with np.load(path) as f:
            config = json.loads(str(f["config"]))
            model = cls(config, np.random.default_rng(0), device)
            model.rnn.load_state_dict({k[4:]: f[k] for k in f.files if k.startswith("rnn.")})
            for k, v in model.params.items():
                np.copyto(v, f[k])
            vocab = "".join(f["vocab"].tolist()) if "vocab" in f.files else None
        return model, vocab


# ====================================================================== threads
@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run NumPy's BLAS (the embedding, head and loss of the demo) on one thread meanwhile.

    The fusedrnn kernels keep their own team of threads on every core; OpenBLAS's threads
    busy-wait for a while after each call, so with both pools on the same cores each slows the
    other down (about 1.7x per step on 2 cores). The demo's NumPy matrices are small: one thread
    is enough.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ====================================================================== losses
def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / np.asarray(temperature, logits.dtype)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy over all positions and its gradient wrt ``logits``."""
    p = softmax(logits)
    flat_p, flat_t = p.reshape(-1, p.shape[-1]), targets.reshape(-1)
    rows = np.arange(flat_t.size)
    loss = float(-np.mean(np.log(flat_p[rows, flat_t].astype(np.float64) + 1e-12)))
    flat_p[rows, flat_t] -= 1.0
    return loss, (p / np.float32(flat_t.size)).astype(np.float32, copy=False)


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error and its gradient wrt ``pred``."""
    diff = pred - target
    return float(np.mean(diff.astype(np.float64) ** 2)), (2.0 * diff / diff.size).astype(np.float32)


# ====================================================================== tasks
@dataclass
class Task:
    """What differs between the three demos: data, loss, a report and a unit for the bar."""

    name: str
    unit: str  # what the rate on the progress bar counts: "chars" or "samples"
    model_config: dict[str, Any]
    batch: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    loss: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    report: Callable[[Model], str]
    items_per_step: int
    vocab: str | None = None
    corpus: CharCorpus | None = None


def lm_task(args: argparse.Namespace, vocab: str | None) -> Task:
    corpus = CharCorpus.from_stdlib(vocab)
    B, T = args.batch, args.seq_len

    def report(model: Model) -> str:
        rng = np.random.default_rng(1234)  # the same held-out windows every time
        losses = []
        with fusedrnn.no_grad():
            for _ in range(4):
                x, t = corpus.batch(rng, 64, T, valid=True)
                losses.append(cross_entropy(model.forward(x)[0], t)[0])
        V = len(corpus.vocab)
        return f"held-out loss {np.mean(losses):.3f} (a uniform guess: ln {V} = {math.log(V):.3f})"

    return Task(
        "lm", "chars",
        {"n_in": EMBED_DIM, "n_out": len(corpus.vocab), "vocab_size": len(corpus.vocab), "per_step": True},
        lambda rng: (*corpus.batch(rng, B, T), None), cross_entropy, report, B * T, corpus.vocab, corpus,
    )  # fmt: skip


def forecast_task(args: argparse.Namespace) -> Task:
    T = args.seq_len
    train = make_signal(np.random.default_rng([args.seed, 1]), 4096, T + HORIZON)
    held_out = make_signal(np.random.default_rng([args.seed, 2]), 512, T + HORIZON)

    def split(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return signal[:T, :, None], signal[HORIZON:, :, None]  # inputs (T, B, 1), targets x[t + HORIZON]

    def batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, None]:
        x, target = split(train[:, rng.integers(0, train.shape[1], size=args.batch)])
        return x, target, None

    def report(model: Model) -> str:
        x, target = split(held_out)
        with fusedrnn.no_grad():
            pred = model.forward(x)[0]
        scored = slice(WARMUP, None)
        rmse = float(np.sqrt(np.mean((pred[scored] - target[scored]) ** 2)))
        naive = float(np.sqrt(np.mean((x[scored] - target[scored]) ** 2)))
        return (f"held-out RMSE {rmse:.3f} vs {naive:.3f} for the naive last-value forecast "
                f"({naive / rmse:.1f}x better; {HORIZON} steps ahead, after {WARMUP} steps of context)")  # fmt: skip

    return Task(
        "forecast", "samples", {"n_in": 1, "n_out": 1, "vocab_size": 0, "per_step": True},
        batch, mse, report, args.batch,
    )  # fmt: skip


def classify_task(args: argparse.Namespace) -> Task:
    T = args.seq_len
    train = make_waves(np.random.default_rng([args.seed, 3]), 16384, T)
    held_out = make_waves(np.random.default_rng([args.seed, 4]), 1024, T)

    def batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = rng.integers(0, train[0].shape[1], size=args.batch)
        return train[0][:, idx, None], train[1][idx], train[2][idx]

    def report(model: Model) -> str:
        x, labels, lengths = held_out
        with fusedrnn.no_grad():
            logits = model.forward(x[:, :, None], lengths=lengths)[0]
        acc = float(np.mean(np.argmax(logits, axis=1) == labels))
        return (f"held-out accuracy {acc:.1%} on {labels.size} sequences "
                f"(chance {1 / len(SHAPES):.0%}; classes {', '.join(SHAPES)})")  # fmt: skip

    return Task(
        "classify", "samples", {"n_in": 1, "n_out": len(SHAPES), "vocab_size": 0, "per_step": False},
        batch, cross_entropy, report, args.batch,
    )  # fmt: skip


# ====================================================================== sampling
def sample_text(
    model: Model, corpus: CharCorpus, prompt: str, n: int, temperature: float, rng: np.random.Generator
) -> str:
    """Continue ``prompt`` by ``n`` characters drawn one at a time, carrying the recurrent state."""
    ids = corpus.encode(prompt or "\n")
    out = []
    with fusedrnn.no_grad(), model.rnn.packed():  # one step per call: the weights packed once
        logits, state = model.forward(ids[:, None])  # (T, 1, V): read the prompt
        for _ in range(n):
            p = softmax(logits[-1, 0].astype(np.float64), temperature)
            nxt = int(rng.choice(p.size, p=p))
            out.append(nxt)
            logits, state = model.forward(np.array([[nxt]]), state)
    return prompt + corpus.decode(out)


# ====================================================================== training
@dataclass
class Result:
    """What :func:`run` returns: the per-step losses, the model and the texts it sampled."""

    losses: list[float]
    model: Model
    samples: list[str]
    report: str
    seconds: float


def _config_from_args(args: argparse.Namespace, task: Task) -> dict[str, Any]:
    return {"task": task.name, "cell": args.cell, "hidden": args.hidden, "layers": args.layers, **task.model_config,
            "batch": args.batch, "seq_len": args.seq_len, "lr": args.lr}  # fmt: skip


def run(args: argparse.Namespace, say: Callable[[str], None] = tqdm.write) -> Result:
    """Build (or load) the model, train it ``args.steps`` steps and report; see :func:`main`."""
    device = args.device
    vocab = None
    if args.load:
        model, vocab = Model.load(args.load, device)
        say(f"loaded {args.load}: {model.config['cell']} hidden {model.config['hidden']} "
            f"layers {model.config['layers']} ({model.config['task']})")  # fmt: skip
    task = {"lm": lambda: lm_task(args, vocab), "forecast": lambda: forecast_task(args),
            "classify": lambda: classify_task(args)}[args.task]()  # fmt: skip
    if not args.load:
        model = Model(_config_from_args(args, task), np.random.default_rng([args.seed, 0]), device)
    elif model.config["n_in"] != task.model_config["n_in"] or model.config["n_out"] != task.model_config["n_out"]:
        raise ValueError(f"{args.load} does not fit task {task.name!r}")

    optimizer = Adam([model.rnn, model.params], lr=args.lr)
    batch_rng = np.random.default_rng([args.seed, 5])
    losses: list[float] = []
    samples: list[str] = []

    def sample(tag: str, step: int) -> None:
        if task.corpus is None:
            return
        text = sample_text(model, task.corpus, args.prompt, args.sample_chars, args.temperature,
                           np.random.default_rng([args.seed, 6, step]))  # fmt: skip
        samples.append(text)
        say(f"--- {tag} ---\n{text}\n---")

    n_params = sum(v.size for v in model.rnn.state_dict().values()) + sum(v.size for v in model.params.values())
    say(f"demo {task.name}: {model.rnn!r}, {n_params:,} parameters, {args.steps} steps of batch {args.batch} "
        f"x {args.seq_len}, Adam lr {args.lr}, clip {args.clip}, {fusedrnn.get_num_threads()} threads")  # fmt: skip
    start = time.perf_counter()
    bar = tqdm(total=args.steps, disable=None if args.progress else True, file=sys.stderr, unit="step",
               dynamic_ncols=True, leave=False)  # fmt: skip
    smooth = None
    try:
        for step in range(1, args.steps + 1):
            x, target, lengths = task.batch(batch_rng)
            out, _ = model.forward(x, lengths=lengths)
            loss, d_out = task.loss(out, target)
            model.backward(d_out)
            clip_grad_norm_(model.all_grads(), args.clip)
            optimizer.step(model.all_grads())
            losses.append(loss)
            smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
            rate = step * task.items_per_step / (time.perf_counter() - start)
            bar.set_postfix({"loss": f"{smooth:.3f}", f"{task.unit}/s": f"{rate:,.0f}"}, refresh=False)
            bar.update()
            if step % args.sample_every == 0 or step == args.steps:
                if bar.disable:  # no bar (not a terminal): a line of progress instead
                    say(f"step {step}/{args.steps}  loss {smooth:.3f}  {rate:,.0f} {task.unit}/s")
                if step != args.steps:
                    sample(f"sample after {step} steps", step)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    sample("final sample" if args.steps else "sample", 0)
    report = task.report(model)
    if losses:
        k = max(1, min(20, len(losses) // 10))
        say(f"loss {np.mean(losses[:k]):.3f} -> {np.mean(losses[-k:]):.3f} (mean of the first and last {k} steps) "
            f"in {seconds:.1f} s, {len(losses) * task.items_per_step / seconds:,.0f} {task.unit}/s")  # fmt: skip
    say(report)
    if args.save:
        model.save(args.save, task.vocab)
        say(f"model saved to {args.save}")
    return Result(losses, model, samples, report, seconds)


def plot_losses(losses: list[float], path: str, title: str) -> bool:
    """Write the loss curve (raw and smoothed) to ``path``; False when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.35, label="loss per step")
    if len(losses) >= 20:
        w = max(5, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, label=f"mean over {w} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


# ====================================================================== command line
def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _per_task(key: str) -> str:
    return "default " + ", ".join(f"{task} {DEFAULTS[task][key]:g}" for task in TASKS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fusedrnn demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--task", choices=TASKS, default=None, help="what to learn (default lm, or the loaded model's)")
    p.add_argument("--cell", choices=tuple(CELLS), default=None, help="recurrent cell (default lstm)")
    p.add_argument("--hidden", type=_positive_int, metavar="N", help=f"hidden units ({_per_task('hidden')})")
    p.add_argument("--layers", type=_positive_int, metavar="N", help="stacked layers (default 1)")
    p.add_argument("--steps", type=_nonnegative_int, metavar="N",
                   help=f"training steps, 0 to only sample/evaluate ({_per_task('steps')})")
    p.add_argument("--batch", type=_positive_int, metavar="N", help=f"sequences per step ({_per_task('batch')})")
    p.add_argument("--seq-len", type=_positive_int, metavar="N", help=f"time steps per sequence ({_per_task('seq_len')})")
    p.add_argument("--lr", type=_positive_float, help=f"Adam learning rate ({_per_task('lr')})")
    p.add_argument("--clip", type=_positive_float, default=1.0, help="max gradient norm (default 1.0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the recurrent layer runs (default cpu)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads for the kernels (default: all)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed for data, initialisation and sampling (default 0)")
    p.add_argument("--sample-every", type=_positive_int, metavar="N",
                   help=f"steps between samples (lm) and progress lines without a terminal ({_per_task('sample_every')})")
    p.add_argument("--sample-chars", type=_nonnegative_int, default=200, metavar="N", help="characters per sample (lm; default 200)")
    p.add_argument("--temperature", type=_positive_float, default=0.7, metavar="T",
                   help="sampling temperature (lm; default 0.7): lower is more conservative")
    p.add_argument("--prompt", default="The ", help="text the samples start from (lm; default 'The ')")
    p.add_argument("--save", metavar="NPZ", help="save the model (parameters, vocabulary, configuration)")
    p.add_argument("--load", metavar="NPZ", help="start from a saved model (its task, cell and sizes)")
    p.add_argument("--plot", metavar="PNG", help="write the loss curve (needs matplotlib)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill the options left unset from the loaded model's configuration and the task's defaults."""
    if args.load:
        try:
            with np.load(args.load) as f:
                saved = json.loads(str(f["config"]))
        except (OSError, KeyError, ValueError) as exc:
            parser.error(f"--load {args.load}: not a model saved by this demo ({exc})")
        for key in ("task", "cell", "hidden", "layers"):
            given = getattr(args, key)
            if given is not None and given != saved[key]:
                parser.error(f"--{key} {given} differs from the loaded model's {saved[key]!r}; leave it out with --load")
            setattr(args, key, saved[key])
        for key in ("batch", "seq_len", "lr"):  # how it was trained: the defaults for more of the same
            if getattr(args, key) is None and key in saved:
                setattr(args, key, saved[key])
    args.task = args.task or "lm"
    args.cell = args.cell or "lstm"
    for key, value in DEFAULTS[args.task].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of ``argv``, completed with the loaded model's configuration and the task's defaults.

    Bad options exit through argparse (status 2) with a message.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve(args, parser)
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m fusedrnn demo [options]``; returns the exit status."""
    args = parse_args(argv)
    if args.device == "cuda":
        if not fusedrnn.cuda_available():
            reason = "this fusedrnn has no usable CUDA backend (not built with CUDA, or no GPU)"
        else:  # the CUDA kernels exist, the layer classes do not keep parameters on the GPU yet
            reason = "the layer classes cannot keep their parameters on the GPU yet"
        print(f"--device cuda: {reason}; run with --device cpu", file=sys.stderr)
        return 2
    if args.threads:
        fusedrnn.set_num_threads(args.threads)
    with single_threaded_blas():
        result = run(args)
    if args.plot:
        title = f"fusedrnn demo --task {args.task} ({args.cell}, hidden {args.hidden}, {args.layers} layer(s))"
        if not result.losses:
            print("--plot: no training steps, no loss curve written")
        elif plot_losses(result.losses, args.plot, title):
            print(f"loss curve written to {args.plot}")
        else:
            print("--plot: matplotlib is not installed (pip install matplotlib); no loss curve written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
