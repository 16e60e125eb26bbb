"""``fusedrnn.torch.RNN``/``LSTM``/``GRU``: drop-in ``torch.nn`` modules backed by fusedrnn's kernels.

Parity: torch's module is built with its own seeded initialisation, its ``state_dict`` is loaded
into the fusedrnn module, and both run the same forward and a backward of
``sum(y * dy) + sum(h_n * dh_n) [+ sum(c_n * dc_n)]``; outputs, final states, ``PackedSequence``
fields and the gradients of the input, of ``hx`` and of every parameter are compared, in float64
(1e-12 normwise relative) and float32 (the conftest tolerance). Then ``gradcheck`` in float64
through ``torch.func.functional_call`` (parameters as explicit inputs), the same training loop
with either module giving the same losses step for step, the ``torch.nn`` module behaviour
(``isinstance``, ``state_dict``, dtype conversion, ``repr``, ``no_grad``, dropout in eval and
train mode), bad input, untouched and non-contiguous inputs, and ``retain_graph``.

torch's global generator and default dtype are left as found by every test.
"""

from __future__ import annotations

import copy
import inspect
import io
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

import fusedrnn.torch as ft  # noqa: E402
from conftest import assert_close  # noqa: E402

DTYPES = (torch.float64, torch.float32)
DTYPE_IDS = ["f64", "f32"]
KINDS = ("lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu")
# float64 against torch in float64: both sides round differently but only at ~1e-16 per operation.
TIGHT = {"rtol": 1e-12, "atol": 1e-14}

T, B, I, H, P = 6, 4, 5, 7, 3
LENGTHS = [4, 6, 1, 5]  # unsorted, contains 1 and T

# torch's own CPU note (its float32 projected LSTM falls back from oneDNN): not ours to fail on.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """torch's intra-op threads on these tiny problems only cost (much, on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def torch_global_state_untouched() -> Any:
    """Every test leaves torch's global generator and default dtype as it found them."""
    rng_state = torch.random.get_rng_state()
    default_dtype = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == default_dtype
    assert torch.equal(torch.random.get_rng_state(), rng_state), "torch's global generator moved"


def is_lstm(kind: str) -> bool:
    return kind.startswith("lstm")


def class_and_kwargs(kind: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    kw = dict(kw)
    if kind == "lstm_proj":
        kw["proj_size"] = P
    elif kind.startswith("rnn"):
        kw["nonlinearity"] = kind[4:]
    return {"lstm": "LSTM", "lstm_proj": "LSTM", "gru": "GRU"}.get(kind, "RNN"), kw


def make_pair(kind: str, dtype: Any, seed: int, **kw: Any) -> tuple[Any, Any]:
    """(fusedrnn module, torch.nn module) holding the same parameters (torch's seeded init)."""
    name, kw = class_and_kwargs(kind, **kw)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = getattr(torch.nn, name)(I, H, **kw)
        torch.manual_seed(seed + 1)  # a different init, overwritten below
        ours = getattr(ft, name)(I, H, **kw)
    assert type(ours).__name__ == name and isinstance(ours, getattr(torch.nn, name))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    ours.to(dtype)
    ref.to(dtype)
    for (k, a), (k2, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and a.dtype == dtype and torch.equal(a, b), k
    return ours, ref


def out_size(kind: str) -> int:
    return P if kind == "lstm_proj" else H


def make_data(
    rng: np.random.Generator, kind: str, dtype: Any, *, num_layers: int = 1, bidirectional: bool = False,
    batch_first: bool = False, batch: int | None = B, lengths: Any = None, steps: int = T, **_: Any,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Random x, hx and output gradients; batch None: unbatched shapes; lengths: packed dy.

    Other module keyword arguments (bias, dropout) are accepted and ignored.
    """
    D = 2 if bidirectional else 1
    LD = num_layers * D
    p = out_size(kind)
    if batch is None:
        lead: tuple[int, ...] = (steps,)
        state: tuple[int, ...] = (LD,)
    else:
        lead = (batch, steps) if batch_first else (steps, batch)
        state = (LD, batch)
    d = {
        "x": rng.standard_normal((*lead, I)),
        "h0": 0.5 * rng.standard_normal((*state, p)),
        "dy": rng.standard_normal((*lead, D * p)),
        "dh_n": rng.standard_normal((*state, p)),
    }
    if lengths is not None:
        d["dy"] = rng.standard_normal((int(np.sum(lengths)), D * p))  # like PackedSequence.data
    if is_lstm(kind):
        d["c0"] = 0.5 * rng.standard_normal((*state, H))
        d["dc_n"] = rng.standard_normal((*state, H))
    return {k: torch.tensor(v, dtype=dtype) for k, v in d.items()}


def run(
    m: Any, kind: str, d: dict[str, torch.Tensor], *, with_state: bool = True, lengths: Any = None,
    enforce_sorted: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:  # fmt: skip
    """Forward and backward; (outputs, gradients of x, h0, c0 and every parameter)."""
    lstm = is_lstm(kind)
    leaves = {k: d[k].clone().requires_grad_() for k in ("x", "h0", "c0") if k in d}
    hx = None
    if with_state:
        hx = (leaves["h0"], leaves["c0"]) if lstm else leaves["h0"]
    m.zero_grad()
    inp: Any = leaves["x"]
    if lengths is not None:
        inp = pack_padded_sequence(
            inp, torch.tensor(lengths), batch_first=m.batch_first, enforce_sorted=enforce_sorted
        )  # fmt: skip
    out, state = m(inp, hx)
    h_n, c_n = state if lstm else (state, None)
    result: dict[str, Any] = {"h_n": h_n, "c_n": c_n} if lstm else {"h_n": h_n}
    if lengths is not None:
        assert isinstance(out, PackedSequence)
        y = out.data
        result.update(batch_sizes=out.batch_sizes, sorted_indices=out.sorted_indices,
                      unsorted_indices=out.unsorted_indices)  # fmt: skip
    else:
        assert isinstance(out, torch.Tensor)
        y = out
    result["y"] = y
    loss = (y * d["dy"]).sum() + (h_n * d["dh_n"]).sum()
    if lstm:
        loss = loss + (c_n * d["dc_n"]).sum()
    loss.backward()
    grads = {"x": leaves["x"].grad}
    if with_state:
        grads.update({k: leaves[k].grad for k in ("h0", "c0") if k in leaves})
    for name, p in m.named_parameters():
        grads[name] = p.grad
    return {k: (v.detach() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
            for k, v in result.items()}, grads  # fmt: skip


def close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Normwise relative comparison: TIGHT in float64, the conftest tolerance in float32."""
    assert isinstance(actual, torch.Tensor), f"{name}: {type(actual).__name__}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().numpy(), expected.detach().numpy()
    if expected.dtype == torch.float64:
        assert np.all(np.isfinite(a)), f"{name}: non-finite values"
        if e.size:
            err, scale = np.max(np.abs(a - e)), np.max(np.abs(e))
            bound = TIGHT["rtol"] * scale + TIGHT["atol"]
            assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e}"
    else:
        assert_close(a, e, np.float32, name)


def compare(actual: dict[str, Any], expected: dict[str, Any], what: str = "") -> None:
    assert list(actual) == list(expected), f"{what}{list(actual)} != {list(expected)}"
    for k, e in expected.items():
        a = actual[k]
        if e is None or not e.is_floating_point():  # PackedSequence bookkeeping: exactly torch's
            assert (a is None) == (e is None), f"{what}{k}: {a} != {e}"
            if e is not None:
                assert a.dtype == e.dtype and torch.equal(a, e), f"{what}{k}: {a} != {e}"
        else:
            close(a, e, what + k)


def seed_of(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


# ----------------------------------------------------------------------------------------------
# Parity with torch.nn
# ----------------------------------------------------------------------------------------------

# name: (module kwargs, hx given)
CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    "L1": (dict(num_layers=1), True),
    "L1_nobias_nohx": (dict(num_layers=1, bias=False), False),
    "L3_bf_nohx": (dict(num_layers=3, batch_first=True), False),
    "L2_bi_bf_nobias": (dict(num_layers=2, bidirectional=True, batch_first=True, bias=False), True),
    "L3_bi": (dict(num_layers=3, bidirectional=True), True),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(kind: str, dtype: Any, config: str, rng: np.random.Generator) -> None:
    kw, with_state = CONFIGS[config]
    ours, ref = make_pair(kind, dtype, seed_of(rng), **kw)
    d = make_data(rng, kind, dtype, **kw)
    expected = run(ref, kind, d, with_state=with_state)
    actual = run(ours, kind, d, with_state=with_state)
    compare(actual[0], expected[0])
    compare(actual[1], expected[1], "d")


# name: (module kwargs, hx given, enforce_sorted)
PACKED_CONFIGS: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "L1_unsorted": (dict(num_layers=1), True, False),
    "L1_sorted_nohx": (dict(num_layers=1), False, True),
    "L2_bi_bf_nohx_unsorted": (dict(num_layers=2, bidirectional=True, batch_first=True), False, False),
    "L3_bi_nobias_unsorted": (dict(num_layers=3, bidirectional=True, bias=False), True, False),
    "L2_bi_sorted": (dict(num_layers=2, bidirectional=True), True, True),
}


@pytest.mark.parametrize("config", list(PACKED_CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_packed_matches_torch(kind: str, dtype: Any, config: str, rng: np.random.Generator) -> None:
    """PackedSequence in and out: data, batch_sizes, sorted/unsorted_indices, states, gradients."""
    kw, with_state, enforce_sorted = PACKED_CONFIGS[config]
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    ours, ref = make_pair(kind, dtype, seed_of(rng), **kw)
    d = make_data(rng, kind, dtype, lengths=lengths, **kw)
    expected = run(ref, kind, d, with_state=with_state, lengths=lengths, enforce_sorted=enforce_sorted)
    actual = run(ours, kind, d, with_state=with_state, lengths=lengths, enforce_sorted=enforce_sorted)
    assert (actual[0]["sorted_indices"] is None) == enforce_sorted
    compare(actual[0], expected[0])
    compare(actual[1], expected[1], "d")
    # Padding in x reaches nothing: the gradient there is exactly zero on both sides.
    x_grad = actual[1]["x"].transpose(0, 1) if kw.get("batch_first") else actual[1]["x"]
    pad = torch.arange(T)[:, None] >= torch.tensor(lengths)[None, :]
    assert torch.all(x_grad[pad] == 0)


@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "nohx"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_matches_torch(kind: str, dtype: Any, with_state: bool, rng: np.random.Generator) -> None:
    """2-D input (T, I) and 2-D states (L*D, P); batch_first does not apply to unbatched input."""
    kw = dict(num_layers=2, bidirectional=True, batch_first=not with_state)
    ours, ref = make_pair(kind, dtype, seed_of(rng), **kw)
    d = make_data(rng, kind, dtype, batch=None, **kw)
    expected = run(ref, kind, d, with_state=with_state)
    actual = run(ours, kind, d, with_state=with_state)
    assert actual[0]["y"].shape == (T, 2 * out_size(kind)) and actual[0]["h_n"].shape == (4, out_size(kind))
    compare(actual[0], expected[0])
    compare(actual[1], expected[1], "d")


@pytest.mark.parametrize("kind", KINDS)
def test_partial_requires_grad_matches_torch(kind: str, rng: np.random.Generator) -> None:
    """Frozen parameters and an input without grad: only the state gradients are produced."""
    kw = dict(num_layers=2, bidirectional=True)
    ours, ref = make_pair(kind, torch.float64, seed_of(rng), **kw)
    d = make_data(rng, kind, torch.float64, **kw)
    results = []
    for m in (ours, ref):
        m.requires_grad_(False)
        h0 = d["h0"].clone().requires_grad_()
        hx = (h0, d["c0"]) if is_lstm(kind) else h0
        y, state = m(d["x"], hx)
        h_n = state[0] if is_lstm(kind) else state
        ((y * d["dy"]).sum() + (h_n * d["dh_n"]).sum()).backward()
        assert all(p.grad is None for p in m.parameters())
        results.append(h0.grad)
    close(results[0], results[1], "dh0")


# ----------------------------------------------------------------------------------------------
# gradcheck (float64, parameters as explicit inputs through torch.func.functional_call)
# ----------------------------------------------------------------------------------------------

# name: (module kwargs, lengths (packed input) or None, fast_mode). Fast mode (a random projection
# of the Jacobian instead of every element) keeps the largest case cheap.
GC_CONFIGS: dict[str, tuple[dict[str, Any], list[int] | None, bool]] = {
    "L1": (dict(num_layers=1), None, False),
    "bi_bf_packed": (dict(num_layers=1, bidirectional=True, batch_first=True), [2, 3, 1], False),
    "L2_bi_packed_fast": (dict(num_layers=2, bidirectional=True), [3, 1, 2], True),
}


@pytest.mark.parametrize("config", list(GC_CONFIGS))
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind: str, config: str, rng: np.random.Generator) -> None:
    kw, lengths, fast = GC_CONFIGS[config]
    steps, batch, in_size, hidden, proj = 3, 3, 2, 3, 2
    name, kw = class_and_kwargs(kind, **kw)
    if kind == "lstm_proj":
        kw["proj_size"] = proj
    with torch.random.fork_rng():
        torch.manual_seed(seed_of(rng))
        m = getattr(ft, name)(in_size, hidden, **kw).double()
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    LD = kw["num_layers"] * (2 if kw.get("bidirectional") else 1)
    p_size = proj if kind == "lstm_proj" else hidden
    lead = (batch, steps) if kw.get("batch_first") else (steps, batch)
    x = torch.tensor(rng.standard_normal((*lead, in_size)), requires_grad=True)
    states = [torch.tensor(0.5 * rng.standard_normal((LD, batch, p_size)), requires_grad=True)]
    if is_lstm(kind):
        states.append(torch.tensor(0.5 * rng.standard_normal((LD, batch, hidden)), requires_grad=True))
    n_states = len(states)

    def f(x: Any, *rest: Any) -> tuple[torch.Tensor, ...]:
        st, ps = rest[:n_states], rest[n_states:]
        hx = tuple(st) if is_lstm(kind) else st[0]
        inp = x
        if lengths is not None:
            inp = pack_padded_sequence(x, torch.tensor(lengths), batch_first=m.batch_first, enforce_sorted=False)
        out, state = torch.func.functional_call(m, dict(zip(names, ps)), (inp, hx))
        y = out.data if lengths is not None else out
        return (y, *state) if is_lstm(kind) else (y, state)

    inputs = (x, *states, *params)
    # The parameters passed in are really the ones used: every one gets a nonzero gradient.
    total = sum((o * torch.randn_like(o, generator=torch.Generator().manual_seed(0))).sum() for o in f(*inputs))
    for n, g in zip(["x", "h0", "c0"][: 1 + n_states] + names, torch.autograd.grad(total, inputs)):
        assert g is not None and torch.count_nonzero(g) > 0, n
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast)


# ----------------------------------------------------------------------------------------------
# The swap: the same training loop with torch.nn's module or ours
# ----------------------------------------------------------------------------------------------


class Model(torch.nn.Module):
    """A recurrent layer (batch_first) and a linear head on every step (or only the last)."""

    def __init__(self, rnn: Any, n_out: int, last_only: bool) -> None:
        super().__init__()
        self.rnn = rnn
        D = 2 if rnn.bidirectional else 1
        self.head = torch.nn.Linear(D * (rnn.proj_size or rnn.hidden_size), n_out)
        self.last_only = last_only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y[:, -1] if self.last_only else y)


# name: (kind, module kwargs, optimiser, loss)
SWAPS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "lstm_L2_adam_mse": ("lstm", dict(num_layers=2), "adam", "mse"),
    "lstm_proj_bi_sgd_ce": ("lstm_proj", dict(bidirectional=True), "sgd", "ce"),
    "gru_L2_bi_sgd_mse": ("gru", dict(num_layers=2, bidirectional=True), "sgd", "mse"),
    "rnn_tanh_adam_ce": ("rnn_tanh", dict(), "adam", "ce"),
}


def train(model: Any, opt_name: str, loss_name: str, x: torch.Tensor, target: torch.Tensor, steps: int = 5
          ) -> list[float]:  # fmt: skip
    if opt_name == "adam":
        opt: Any = torch.optim.Adam(model.parameters(), lr=0.05)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        if loss_name == "mse":
            loss = torch.nn.functional.mse_loss(out, target)
        else:
            loss = torch.nn.functional.cross_entropy(out, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("case", list(SWAPS))
def test_swap_training_loop(case: str, rng: np.random.Generator) -> None:
    kind, kw, opt_name, loss_name = SWAPS[case]
    kw = dict(kw, batch_first=True)
    n_out = 3
    last_only = loss_name == "ce"
    ours_rnn, ref_rnn = make_pair(kind, torch.float64, seed_of(rng), **kw)
    with torch.random.fork_rng():
        torch.manual_seed(seed_of(rng))
        ref = Model(ref_rnn, n_out, last_only).double()
        ours = Model(ours_rnn, n_out, last_only).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.tensor(rng.standard_normal((B, T, I)))
    if loss_name == "mse":
        target = torch.tensor(rng.standard_normal((B, T, n_out)))
    else:
        target = torch.tensor(rng.integers(0, n_out, B))
    expected = train(ref, opt_name, loss_name, x, target)
    actual = train(ours, opt_name, loss_name, x, target)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=0)
    assert expected[-1] < expected[0]  # it really trained
    for (k, a), (k2, e) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and a.dtype == e.dtype == torch.float64, k
        err, scale = (a - e).abs().max().item(), e.abs().max().item()
        assert err <= 1e-10 * scale, f"{k}: max abs error {err:.3e} (rel {err / scale:.3e})"


# ----------------------------------------------------------------------------------------------
# torch.nn module behaviour
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_is_a_torch_module_with_torch_init(kind: str) -> None:
    """Same class hierarchy, state_dict keys, shapes and (seeded) initialisation as torch.nn's."""
    name, kw = class_and_kwargs(kind, num_layers=2, bidirectional=True)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        ours = getattr(ft, name)(I, H, **kw)
        torch.manual_seed(7)
        ref = getattr(torch.nn, name)(I, H, **kw)
    assert isinstance(ours, getattr(torch.nn, name))
    assert isinstance(ours, torch.nn.RNNBase) and isinstance(ours, torch.nn.Module)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert a.dtype == torch.float32 and torch.equal(a, b), k
    assert repr(ours) == repr(ref)
    # Copies (deepcopy, torch.save/torch.load of the whole module) stay fusedrnn modules.
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    for copy_ in (copy.deepcopy(ours), torch.load(buffer, weights_only=False)):
        assert type(copy_) is type(ours)
        for (k, a), b in zip(copy_.state_dict().items(), ours.state_dict().values()):
            assert torch.equal(a, b), k


def test_repr_matches_torch() -> None:
    cases = [
        ("LSTM", dict(num_layers=2, batch_first=True, proj_size=2)),
        ("GRU", dict(bias=False, bidirectional=True)),
        ("RNN", dict(nonlinearity="relu", dropout=0.5, num_layers=2)),
    ]
    with torch.random.fork_rng():  # the constructors draw the initial parameters
        for name, kw in cases:
            assert repr(getattr(ft, name)(3, 5, **kw)) == repr(getattr(torch.nn, name)(3, 5, **kw))
        assert repr(ft.LSTM(3, 5)) == "LSTM(3, 5)"


@pytest.mark.parametrize("kind", ["lstm_proj", "gru"])
def test_double_and_float(kind: str, rng: np.random.Generator) -> None:
    """.double()/.float() convert every parameter; forward then runs (and matches) in that dtype."""
    ours, ref = make_pair(kind, torch.float32, seed_of(rng), num_layers=2)
    for dtype, convert in ((torch.float64, "double"), (torch.float32, "float")):
        assert getattr(ours, convert)() is ours
        getattr(ref, convert)()
        assert all(p.dtype == dtype for p in ours.parameters())
        d = make_data(rng, kind, dtype, num_layers=2)
        compare(run(ours, kind, d)[0], run(ref, kind, d)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_no_grad_keeps_no_graph(kind: str, rng: np.random.Generator) -> None:
    ours, _ = make_pair(kind, torch.float64, seed_of(rng), num_layers=2, bidirectional=True)
    d = make_data(rng, kind, torch.float64, num_layers=2, bidirectional=True)
    x = d["x"].clone().requires_grad_()
    y_grad, state_grad = ours(x)
    with torch.no_grad():
        y, state = ours(x)
    outs = [y, *(state if is_lstm(kind) else [state])]
    for t in outs:
        assert not t.requires_grad and t.grad_fn is None
    close(y, y_grad.detach(), "y")
    assert ours(x)[0].grad_fn is not None  # grad mode is back


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_no_grad_records_no_tape(mode: str, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    """With grad disabled no tape is kept: ``Function.forward`` always runs with grad off and
    ``ctx.needs_input_grad`` ignores the grad mode, so the module passes ``torch.is_grad_enabled()``.
    """
    from fusedrnn import functional

    calls: list[bool] = []
    real = functional._forward

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(bool(inspect.signature(real).bind(*args, **kwargs).arguments["need_tape"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(functional, "_forward", spy)
    ours, _ = make_pair("lstm", torch.float64, seed_of(rng), num_layers=2, bidirectional=True)
    x = torch.tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    ours(x)
    assert calls == [True] * 4  # grad mode: every layer and direction keeps its tape
    calls.clear()
    ours.requires_grad_(False)
    ours(x.detach())
    assert calls == [False] * 4  # nothing requires grad: no tape
    calls.clear()
    ours.requires_grad_(True)
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
        ours(x)
    assert calls == [False] * 4, f"tapes recorded under {mode}: {calls}"


@pytest.mark.parametrize("kind", KINDS)
def test_eval_dropout_matches_torch(kind: str, rng: np.random.Generator) -> None:
    """In eval mode dropout is off: deterministic and equal to torch.nn's eval output."""
    kw = dict(num_layers=3, dropout=0.5, bidirectional=True)
    ours, ref = make_pair(kind, torch.float64, seed_of(rng), **kw)
    ours.eval()
    ref.eval()
    d = make_data(rng, kind, torch.float64, **kw)
    expected = run(ref, kind, d)
    first = run(ours, kind, d)
    second = run(ours, kind, d)
    compare(first[0], expected[0])
    compare(first[1], expected[1], "d")
    for k in first[0]:
        assert torch.equal(first[0][k], second[0][k]), k


@pytest.mark.parametrize("kind", KINDS)
def test_train_dropout_runs(kind: str, rng: np.random.Generator) -> None:
    """Train mode with dropout: torch's generator draws the masks (same seed, same output); backward works."""
    kw = dict(num_layers=2, dropout=0.5)
    ours, _ = make_pair(kind, torch.float64, seed_of(rng), **kw)
    d = make_data(rng, kind, torch.float64, **kw)
    ours.eval()
    y_eval = ours(d["x"])[0]
    ours.train()
    with torch.random.fork_rng():
        torch.manual_seed(3)
        out1, grads1 = run(ours, kind, d)
        torch.manual_seed(3)
        out2, grads2 = run(ours, kind, d)
    assert not torch.allclose(out1["y"], y_eval.detach())  # dropout really acted
    for k in out1:
        assert torch.equal(out1[k], out2[k]), k
    for k in grads1:
        assert torch.all(torch.isfinite(grads1[k])) and torch.equal(grads1[k], grads2[k]), k


# ----------------------------------------------------------------------------------------------
# Bad input: ValueError/TypeError naming the argument
# ----------------------------------------------------------------------------------------------


def _bad_cases() -> dict[str, tuple[str, Any, type, str]]:
    """name: (kind, callable(module, x3, x2) -> call args, exception, match)."""
    f64 = torch.float64
    LD = 2

    def st(b: int | None, p: int, dtype: Any = f64) -> torch.Tensor:
        return torch.zeros((LD, p) if b is None else (LD, b, p), dtype=dtype)

    return {
        "features": ("lstm", lambda x3, x2: (torch.zeros(T, B, I + 1, dtype=f64),), ValueError, "input_size"),
        "features_gru": ("gru", lambda x3, x2: (torch.zeros(T, B, I - 1, dtype=f64),), ValueError, "input_size"),
        "h0_shape": ("lstm", lambda x3, x2: (x3, (st(B + 1, H), st(B, H))), ValueError, "h0"),
        "c0_shape": ("lstm", lambda x3, x2: (x3, (st(B, H), st(B, H + 1))), ValueError, "c0"),
        "h0_proj_shape": ("lstm_proj", lambda x3, x2: (x3, (st(B, H), st(B, H))), ValueError, "h0"),
        "h0_gru_shape": ("gru", lambda x3, x2: (x3, st(B, H - 1)), ValueError, "h0"),
        "h0_rnn_layers": ("rnn_tanh", lambda x3, x2: (x3, torch.zeros(1, B, H, dtype=f64)), ValueError, "h0"),
        "h0_unbatched_3d": ("gru", lambda x3, x2: (x2, st(B, H)), ValueError, "h0"),
        "input_dtype": ("lstm", lambda x3, x2: (x3.float(),), TypeError, "input.*dtype"),
        "h0_dtype": ("gru", lambda x3, x2: (x3, st(B, H, torch.float32)), TypeError, "h0.*dtype"),
        "c0_dtype": ("lstm", lambda x3, x2: (x3, (st(B, H), st(B, H, torch.float32))), TypeError, "c0.*dtype"),
        "int_input": ("rnn_relu", lambda x3, x2: (torch.zeros(T, B, I, dtype=torch.int64),), TypeError, "input"),
        "half_input": ("gru", lambda x3, x2: (torch.zeros(T, B, I, dtype=torch.float16),), TypeError, "input"),
        "1d": ("lstm", lambda x3, x2: (torch.zeros(I, dtype=f64),), ValueError, "input.*1-D"),
        "4d": ("gru", lambda x3, x2: (torch.zeros(2, T, B, I, dtype=f64),), ValueError, "input.*4-D"),
        "numpy_input": ("rnn_tanh", lambda x3, x2: (x3.numpy(),), TypeError, "input"),
        "lstm_hx_tensor": ("lstm", lambda x3, x2: (x3, st(B, H)), TypeError, "hx"),
        "lstm_hx_triple": ("lstm", lambda x3, x2: (x3, (st(B, H), st(B, H), st(B, H))), TypeError, "hx"),
        "lstm_c0_not_tensor": ("lstm", lambda x3, x2: (x3, (st(B, H), st(B, H).numpy())), TypeError, "c0"),
        "gru_hx_tuple": ("gru", lambda x3, x2: (x3, (st(B, H),)), TypeError, "hx"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case: str) -> None:
    kind, args, exc, match = BAD[case]
    ours, _ = make_pair(kind, torch.float64, 0, num_layers=2)
    x3 = torch.zeros(T, B, I, dtype=torch.float64)
    x2 = torch.zeros(T, I, dtype=torch.float64)
    with pytest.raises(exc, match=match):
        ours(*args(x3, x2))


# ----------------------------------------------------------------------------------------------
# Inputs untouched, non-contiguous inputs, retain_graph
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("packed", [False, True], ids=["full", "packed"])
@pytest.mark.parametrize("kind", KINDS)
def test_inputs_not_modified(kind: str, packed: bool, rng: np.random.Generator) -> None:
    kw = dict(num_layers=2, bidirectional=True)
    ours, _ = make_pair(kind, torch.float64, seed_of(rng), **kw)
    lengths = LENGTHS if packed else None
    d = make_data(rng, kind, torch.float64, lengths=lengths, **kw)
    before = {k: v.clone() for k, v in d.items()}
    params_before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = d["x"].requires_grad_()
    h0 = d["h0"].requires_grad_()
    hx = (h0, d["c0"].requires_grad_()) if is_lstm(kind) else h0
    inp: Any = x
    if packed:
        inp = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        data_before = inp.data.clone()
    out, state = ours(inp, hx)
    y = out.data if packed else out
    h_n, c_n = state if is_lstm(kind) else (state, None)
    grads = [d["dy"], d["dh_n"]] + ([d["dc_n"]] if c_n is not None else [])
    torch.autograd.backward([y, h_n] + ([c_n] if c_n is not None else []), grads)
    for k, v in before.items():
        assert torch.equal(d[k].detach(), v), k
    for k, v in ours.state_dict().items():
        assert torch.equal(v, params_before[k]), k
    if packed:
        assert torch.equal(inp.data, data_before)


@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_inputs(kind: str, rng: np.random.Generator) -> None:
    """Transposed views of x, hx and dy give the results of their contiguous copies."""
    kw = dict(num_layers=2, bidirectional=True)
    ours, _ = make_pair(kind, torch.float64, seed_of(rng), **kw)
    d = make_data(rng, kind, torch.float64, **kw)
    nc = {k: v.transpose(0, 1).contiguous().transpose(0, 1) for k, v in d.items()}
    for k, v in nc.items():
        assert torch.equal(v, d[k]) and not v.is_contiguous(), k
    expected = run(ours, kind, d)
    actual = run(ours, kind, nc)
    for k in expected[0]:
        assert torch.equal(actual[0][k], expected[0][k]), k
    for k in expected[1]:
        assert torch.equal(actual[1][k], expected[1][k]), "d" + k
    # Output gradients that torch hands over as stride-0 (y.sum()) or negated (-y.sum()) views.
    for sign in (1.0, -1.0):
        via_sum = torch.autograd.grad(sign * ours(d["x"])[0].sum(), list(ours.parameters()))
        y = ours(d["x"])[0]
        explicit = torch.autograd.grad(y, list(ours.parameters()), torch.full_like(y, sign))
        for a, b in zip(via_sum, explicit):
            assert torch.equal(a, b)
    # batch_first input given as a transposed view of a time-major tensor (contiguous inside).
    ours.batch_first = True
    bf = dict(d, x=d["x"].transpose(0, 1), dy=d["dy"].transpose(0, 1))
    actual_bf = run(ours, kind, bf)
    close(actual_bf[0]["y"].transpose(0, 1), expected[0]["y"], "y batch_first")
    close(actual_bf[1]["x"].transpose(0, 1), expected[1]["x"], "dx batch_first")


@pytest.mark.parametrize("packed", [False, True], ids=["full", "packed"])
@pytest.mark.parametrize("kind", KINDS)
def test_retain_graph_backward_twice(kind: str, packed: bool, rng: np.random.Generator) -> None:
    kw = dict(num_layers=2, bidirectional=True)
    ours, _ = make_pair(kind, torch.float64, seed_of(rng), **kw)
    lengths = LENGTHS if packed else None
    d = make_data(rng, kind, torch.float64, lengths=lengths, **kw)
    x = d["x"].clone().requires_grad_()
    h0 = d["h0"].clone().requires_grad_()
    inp: Any = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False) if packed else x
    out, state = ours(inp, (h0, d["c0"]) if is_lstm(kind) else h0)
    y = out.data if packed else out
    h_n = state[0] if is_lstm(kind) else state
    loss = (y * d["dy"]).sum() + (h_n * d["dh_n"]).sum()
    tensors = [x, h0, *ours.parameters()]
    first = torch.autograd.grad(loss, tensors, retain_graph=True)
    second = torch.autograd.grad(loss, tensors, retain_graph=True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # .grad accumulation through two backwards of the same graph: exactly twice one gradient.
    loss.backward(retain_graph=True)
    loss.backward()
    for p, g in zip(ours.parameters(), first[2:]):
        assert torch.equal(p.grad, 2 * g)


# ----------------------------------------------------------------------------------------------
# module.packed(): weights packed once for the forwards that record no graph
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_packed_block_matches_plain_forward(kind: str, dtype: Any, rng: np.random.Generator) -> None:
    ours, _ = make_pair(kind, dtype, seed_of(rng), num_layers=2, bidirectional=True)
    x = torch.tensor(rng.standard_normal((T, B, I)), dtype=dtype)
    seq = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)

    def flat(result: Any) -> list[torch.Tensor]:
        out, state = result
        out = out.data if isinstance(out, PackedSequence) else out
        return [out, *(state if isinstance(state, tuple) else (state,))]

    with torch.no_grad():
        want = [flat(ours(x)), flat(ours(seq)), flat(ours(x[:, 0]))]
        with ours.packed() as same:
            assert same is ours
            got = [flat(ours(x)), flat(ours(seq)), flat(ours(x[:, 0]))]
    for w, g in zip(want, got):
        for a, b in zip(w, g):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_packed_block_is_a_snapshot_and_graphs_use_live_parameters(rng: np.random.Generator) -> None:
    ours, _ = make_pair("lstm", torch.float64, seed_of(rng))
    x = torch.tensor(rng.standard_normal((T, B, I)))
    with torch.no_grad():
        before = ours(x)[0]
    with ours.packed():
        with torch.no_grad():
            for p in ours.parameters():
                p.mul_(2.0)
            assert torch.equal(ours(x)[0], before)  # the snapshot
        y, _ = ours(x)  # records a graph: the live (doubled) parameters
        assert y.requires_grad and not torch.equal(y.detach(), before)
        y.sum().backward()
        assert all(p.grad is not None for p in ours.parameters())
    assert ours._packed is None
    with torch.no_grad():
        assert not torch.equal(ours(x)[0], before)


def test_packed_block_restores_on_error_and_refuses_other_dtypes(rng: np.random.Generator) -> None:
    ours, _ = make_pair("gru", torch.float32, seed_of(rng))
    with pytest.raises(RuntimeError, match="inside"):
        with ours.packed():
            with ours.packed():
                pass
            assert ours._packed is not None
            raise RuntimeError("inside")
    assert ours._packed is None
    with pytest.raises(TypeError, match="float32/float64"):
        with ours.half().packed():
            pass
