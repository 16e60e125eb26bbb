"""``python -m fusedrnn demo``: each task learns in a few steps, runs repeat, models round-trip."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fusedrnn
from fusedrnn import demo
from fusedrnn.__main__ import main as cli_main

# Tiny configurations: each trains in about a second or less on one core.
TINY = {
    "lm": ["--task", "lm", "--hidden", "32", "--batch", "8", "--seq-len", "16", "--steps", "30", "--lr", "1e-2",
           "--sample-chars", "20", "--sample-every", "10"],
    "forecast": ["--task", "forecast", "--hidden", "16", "--batch", "8", "--seq-len", "32", "--steps", "30",
                 "--lr", "2e-2"],
    "classify": ["--task", "classify", "--hidden", "32", "--batch", "64", "--seq-len", "32", "--steps", "150",
                 "--lr", "2e-2"],
}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """These sizes are tiny: one kernel thread is fastest, and immune to other jobs on the cores.

    (Results are bitwise identical for any thread count.)
    """
    before = fusedrnn.get_num_threads()
    fusedrnn.set_num_threads(1)
    yield
    fusedrnn.set_num_threads(before)


def _run(argv: list[str]) -> demo.Result:
    return demo.run(demo.parse_args(argv), say=lambda text: None)


# The Elman RNN does not get past chance on the waveforms within a test's budget of steps.
@pytest.mark.parametrize(
    "task, cell", [(t, c) for t in demo.TASKS for c in ("lstm", "gru", "rnn") if (t, c) != ("classify", "rnn")]
)
def test_loss_decreases(task: str, cell: str) -> None:
    result = _run([*TINY[task], "--cell", cell])
    losses = np.array(result.losses)
    assert losses.size == int(TINY[task][TINY[task].index("--steps") + 1])
    assert np.all(np.isfinite(losses))
    k = max(5, losses.size // 10)
    assert losses[-k:].mean() < 0.9 * losses[:k].mean(), f"{task}/{cell}: {losses[:k].mean():.3f} -> {losses[-k:].mean():.3f}"


@pytest.mark.parametrize("task", demo.TASKS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_model_gradients_match_finite_differences(task: str, cell: str) -> None:
    """Directional derivatives of the demo's loss: the NumPy head/embedding/loss backward around fusedrnn's."""
    args = demo.parse_args(["--task", task, "--cell", cell, "--hidden", "8", "--seq-len", "12", "--batch", "4"])
    spec = {"lm": lambda: demo.lm_task(args, None), "forecast": lambda: demo.forecast_task(args),
            "classify": lambda: demo.classify_task(args)}[task]()  # fmt: skip
    model = demo.Model(demo._config_from_args(args, spec), np.random.default_rng(0))
    x, target, lengths = spec.batch(np.random.default_rng(1))

    def loss() -> float:
        return spec.loss(model.forward(x, lengths=lengths)[0], target)[0]

    out, _ = model.forward(x, lengths=lengths)
    model.backward(spec.loss(out, target)[1])
    grads = {k: v.copy() for k, v in model.all_grads().items()}
    rng = np.random.default_rng(2)
    for name, param in {**model.rnn.state_dict(), **model.params}.items():
        direction = rng.standard_normal(param.shape).astype(np.float32)
        if name == "embedding":  # only the rows of characters in the batch matter
            direction *= np.isin(np.arange(param.shape[0]), x)[:, None]
        original, eps = param.copy(), 1e-2
        param[...] = original + eps * direction
        up = loss()
        param[...] = original - eps * direction
        down = loss()
        param[...] = original
        numeric, analytic = (up - down) / (2 * eps), float(np.sum(grads[name] * direction))
        assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 1e-4, f"{name}: {numeric} vs {analytic}"


def test_lm_samples_text_from_the_vocabulary() -> None:
    result = _run(TINY["lm"] + ["--prompt", "def "])
    assert len(result.samples) == 3  # after steps 10 and 20, and at the end
    corpus = demo.CharCorpus.from_stdlib()
    for text in result.samples:
        assert text.startswith("def ") and len(text) == 4 + 20
        assert set(text) <= set(corpus.vocab)


def test_stacked_layers_train() -> None:
    result = _run([*TINY["lm"], "--layers", "2"])
    assert result.model.rnn.num_layers == 2
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])


def test_same_seed_same_run_other_seed_other_run() -> None:
    a, b = _run([*TINY["lm"], "--seed", "3"]), _run([*TINY["lm"], "--seed", "3"])
    assert a.losses == b.losses and a.samples == b.samples
    c = _run([*TINY["lm"], "--seed", "4"])
    assert c.losses != a.losses


@pytest.mark.parametrize("task", demo.TASKS)
def test_save_load_round_trip(task: str, tmp_path) -> None:
    path = str(tmp_path / f"{task}.npz")
    trained = _run([*TINY[task], "--steps", "5", "--save", path])
    loaded = _run(["--load", path, "--steps", "0", "--sample-chars", "20"])  # the rest comes from the file
    assert loaded.model.config == trained.model.config
    for name, value in trained.model.rnn.state_dict().items():
        np.testing.assert_array_equal(loaded.model.rnn.state_dict()[name], value, err_msg=name)
    for name, value in trained.model.params.items():
        np.testing.assert_array_equal(loaded.model.params[name], value, err_msg=name)
    assert loaded.report == trained.report  # the same held-out score
    if task == "lm":
        assert loaded.samples[-1] == trained.samples[-1]  # the same text for the same seed
    resumed = _run(["--load", path, "--steps", "3"])  # and training goes on from there
    assert len(resumed.losses) == 3


def test_main_end_to_end_with_plot(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    png, npz = tmp_path / "loss.png", tmp_path / "m.npz"
    assert cli_main(["demo", *TINY["forecast"], "--plot", str(png), "--save", str(npz)]) == 0
    out = capsys.readouterr().out
    assert "naive last-value forecast" in out and f"loss curve written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert npz.exists()


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    png = tmp_path / "loss.png"
    assert demo.main([*TINY["forecast"], "--steps", "3", "--plot", str(png)]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not png.exists()


@pytest.mark.parametrize(
    "argv",
    [["--cell", "foo"], ["--steps", "-1"], ["--task", "translate"], ["--hidden", "0"], ["--lr", "0"],
     ["--device", "tpu"], ["--steps", "many"]],
)  # fmt: skip
def test_bad_options_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_load_rejects_conflicting_options_and_bad_files(tmp_path, capsys) -> None:
    path = str(tmp_path / "m.npz")
    _run([*TINY["forecast"], "--steps", "1", "--save", path])
    with pytest.raises(SystemExit) as exc:
        demo.main(["--load", path, "--cell", "gru", "--steps", "0"])
    assert exc.value.code == 2 and "differs from the loaded model" in capsys.readouterr().err
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, x=np.zeros(3))
    with pytest.raises(SystemExit) as exc:
        demo.main(["--load", str(bogus)])
    assert exc.value.code == 2 and "not a model saved by this demo" in capsys.readouterr().err


def test_cuda_device_exits_cleanly_until_layers_run_on_the_gpu(capsys) -> None:
    assert demo.main([*TINY["lm"], "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err


def test_cli_lists_demo(capsys) -> None:
    assert cli_main([]) == 2
    usage = capsys.readouterr().out
    assert "python -m fusedrnn bench" in usage and "python -m fusedrnn demo" in usage


def test_single_threaded_blas_restores() -> None:
    a = np.ones((64, 64), np.float32)
    with demo.single_threaded_blas():
        assert (a @ a)[0, 0] == 64
    assert (a @ a)[0, 0] == 64
