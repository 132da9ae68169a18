"""reporting/summary.py: what the console says when a fit ends: the run's figures, where its files are, and
commands that work when pasted into a shell."""

import shlex

import pytest

from lightning_albert.reporting.history import METRICS, Evaluation, RunHistory
from lightning_albert.reporting.summary import fit_summary


def _evaluation(epoch: int, val_loss: float, accuracy: float, f1: float) -> Evaluation:
    metrics = {"accuracy": accuracy, "precision": f1 + 0.02, "recall": f1 - 0.02, "f1": f1}
    return Evaluation(epoch, 20 * (epoch + 1), val_loss, metrics)


def _scores(loss: float, accuracy: float, f1: float) -> dict:
    return {"loss": loss, "metrics": {"accuracy": accuracy, "precision": f1 + 0.01, "recall": f1 - 0.01, "f1": f1}}


def _run(folder, baseline_accuracy: float = 0.9, pretrained: str | None = None, **fields) -> RunHistory:
    """A run folder (with a space in its path) whose best checkpoint is epoch 2 of 3, tested and beside a baseline
    that scores `baseline_accuracy` and as much F1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints").mkdir(exist_ok=True)
    best_file = folder / "checkpoints" / "best-epoch=1-step=40.ckpt"
    best_file.write_bytes(b"")
    evaluations = [_evaluation(0, 0.9, 0.5, 0.4), _evaluation(1, 0.6, 0.8, 0.75), _evaluation(2, 0.65, 0.78, 0.7)]
    baseline = {
        "validation": _scores(0.55, baseline_accuracy, baseline_accuracy),
        "test": _scores(0.58, baseline_accuracy, baseline_accuracy),
    }
    values = {
        "folder": folder, "config": {"model": {"pretrained": pretrained}}, "labels": ["a", "b"],
        "evaluations": evaluations, "best": evaluations[1], "best_checkpoint": best_file,
        "facts": {"epochs_run": 3, "max_epochs": 3}, "test": {"examples": 57, **_scores(0.62, 0.79, 0.72)},
        "baseline": baseline, **fields,
    }  # fmt: skip
    return RunHistory(**values)


def _table(summary: str) -> dict[str, list[str]]:
    """The figures table: row name -> the five figures, as printed."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["loss", *METRICS])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or len(line.split()) < 6:
            break
        *name, loss, accuracy, precision, recall, f1 = line.split()
        rows[" ".join(name)] = [loss, accuracy, precision, recall, f1]
    return rows


def _printed(loss: float, metrics: dict) -> list[str]:
    return [f"{loss:.4f}", *(f"{metrics[m]:.4f}" for m in METRICS)]


def _next_commands(summary: str) -> list[list[str]]:
    return [shlex.split(line) for line in summary[summary.index("Next:") :].splitlines()[1:]]


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "my runs" / "lightning_logs" / "version_0"


def test_the_table_shows_the_best_the_last_the_test_split_and_the_baseline(folder):
    run = _run(folder)
    summary = fit_summary(run, None)
    assert "\nFit finished after 3 epochs.\n" in summary
    assert "Best checkpoint: epoch 2, step 40, by max val_f1 -> checkpoints/best-epoch=1-step=40.ckpt" in summary
    base = run.baseline
    assert _table(summary) == {
        "validation": _printed(run.best.val_loss, run.best.metrics),
        "last (epoch 3)": _printed(run.last.val_loss, run.last.metrics),
        "test (57)": _printed(run.test["loss"], run.test["metrics"]),
        "TF-IDF + LR validation": _printed(base["validation"]["loss"], base["validation"]["metrics"]),
        "TF-IDF + LR test": _printed(base["test"]["loss"], base["test"]["metrics"]),
    }
    run.best = run.last  # the last evaluation was the best: one row
    assert "last (epoch 3)" not in _table(fit_summary(run, None))


@pytest.mark.parametrize(
    ("baseline_accuracy", "pretrained", "outcome", "hint"),
    [(0.9, None, "did not beat the TF-IDF + LR baseline on the test split", True),
     (0.9, "albert-base-v2", "did not beat the TF-IDF + LR baseline on the test split", False),
     (0.5, None, "beat the TF-IDF + LR baseline on the test split", False)],
    ids=["lost-from-scratch", "lost-pretrained", "won"],
)  # fmt: skip
def test_the_verdict_and_a_pointer_to_pretraining_only_for_a_from_scratch_model_that_lost(
    folder, baseline_accuracy, pretrained, outcome, hint
):
    summary = fit_summary(_run(folder, baseline_accuracy, pretrained), None)
    (verdict,) = [line for line in summary.splitlines() if line.startswith("ALBERT ")]
    assert f"ALBERT {outcome} (accuracy 0.7900 vs {baseline_accuracy:.4f}, macro-F1 0.7200 vs" in verdict
    assert ("python -m lightning_albert pretrain --config configs/pretrain.yaml" in summary) == hint


def test_the_commands_are_quoted_for_the_shell_and_name_the_run_config_and_its_best_checkpoint(folder):
    export = folder / "hf_model"
    export.mkdir(parents=True)
    summary = fit_summary(_run(folder), export)
    config = str(folder / "config.yaml")
    commands = _next_commands(summary)
    assert [c[:4] for c in commands] == [["python", "-m", "lightning_albert", c] for c in
                                         ("validate", "test", "predict", "serve")]  # fmt: skip
    for command in commands[:3]:
        assert command[4:8] == ["--config", config, "--ckpt_path", "best"]
    assert commands[2][8:] == ["--data.predict_file", "<texts.csv>"]
    assert commands[3][4:] == [str(folder)]
    assert f"  export      {export}  (transformers' pipeline loads it)" in summary
    for name in ("README.md", "metrics.csv"):
        assert str(folder / name) in summary
    assert f"(tensorboard --logdir {folder.parent})" in summary


def test_without_a_best_checkpoint_the_commands_use_last_ckpt_or_are_left_out(folder):
    """No validation ran: no best checkpoint, no table, no export to serve."""
    run = _run(folder, evaluations=[], best=None, best_checkpoint=None, test=None, baseline=None)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    summary = fit_summary(run, folder / "hf_model")
    assert "No validation ran, so there is no best checkpoint." in summary
    assert "export " not in summary
    commands = _next_commands(summary)
    assert [c[3] for c in commands] == ["validate", "test", "predict"]
    assert all(c[6:8] == ["--ckpt_path", "last"] for c in commands)
    (folder / "checkpoints" / "last.ckpt").unlink()
    assert "Next:" not in fit_summary(run, None)


def test_the_epoch_count_and_an_early_stop_are_said_as_they_happened(folder):
    one = fit_summary(_run(folder, facts={"epochs_run": 1, "max_epochs": 1}), None)
    assert "\nFit finished after 1 epoch.\n" in one
    stop = {"monitor": "val_f1", "patience": 2, "stopped_after_epoch": 4}
    stopped = fit_summary(_run(folder, facts={"epochs_run": 5, "max_epochs": 20, "early_stopping": stop}), None)
    assert "\nFit finished after 5 epochs of 20: stopped early, val_f1 did not improve for 2 evaluations.\n" in stopped
