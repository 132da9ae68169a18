"""How a fit ends: the best checkpoint tested on the test split, early stopping, and what the console says."""

import json
import shlex

import numpy as np
import pytest
from conftest import PHRASEBANK, logged_rows, only_run, read_csv, run_cli, tiny_model_args

from lightning_albert.reporting.history import METRICS, read_run


def _test_section(card: str) -> str:
    return card[card.index("### Test results") : card.index("### Framework versions")]


def test_fit_tests_the_best_checkpoint_as_a_fresh_test_command_does(fitted, tmp_path):
    report = json.loads((fitted / "report.json").read_text())
    best = read_run(fitted).best_checkpoint
    assert report["test"]["checkpoint"] == best.name
    assert report["test"]["examples"] == len(read_csv(PHRASEBANK / "test.csv"))
    run_cli("test", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path))  # fmt: skip
    (tested,) = logged_rows(only_run(tmp_path), "test")
    assert report["test"]["loss"] == tested["test_loss"]
    for m in METRICS:
        assert report["test"]["metrics"][m] == tested[f"test_{m}"], m
    confusion = report["test"]["confusion_matrix"]
    assert sum(map(sum, confusion)) == report["test"]["examples"]
    accuracy = sum(confusion[i][i] for i in range(3)) / report["test"]["examples"]
    assert accuracy == pytest.approx(tested["test_accuracy"], abs=1e-6)


def test_the_card_has_a_test_section_marked_as_such_and_both_splits_in_its_model_index(fitted):
    card = (fitted / "README.md").read_text()
    test = json.loads((fitted / "report.json").read_text())["test"]
    section = _test_section(card)
    assert "**test split** (225 examples)" in section
    for m in METRICS:
        assert f"- {m.title()}: {test['metrics'][m]:.4f}" in section
    lines = section.splitlines()
    assert sum(line.startswith("| negative |") for line in lines) == 1  # the per-class table
    assert sum(line.startswith("| **negative** |") for line in lines) == 1  # the confusion matrix
    assert "![Test confusion matrix](test_confusion_matrix.png)" in section
    assert (fitted / "test_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    front = card[: card.index("\n---\n", 4)]
    assert "split: validation" in front and "split: test" in front
    # The validation results at the top stay those of the best epoch.
    summary = card[: card.index("## Model description")]
    assert "On the test split (225 examples" in summary


def test_fit_ends_with_a_summary_and_no_noise(fitted):
    console = (fitted.parents[1] / "console.txt").read_text()
    run = read_run(fitted)
    summary = console[console.index("Fit finished after 2 epochs.") :]
    assert f"Best checkpoint: epoch {run.best.epoch + 1}, step {run.best.step}, by max val_f1" in summary
    validation = next(line for line in summary.splitlines() if line.strip().startswith("validation"))
    assert validation.split()[1:] == [f"{run.best.val_loss:.4f}", *(f"{run.best.metrics[m]:.4f}" for m in METRICS)]
    test = next(line for line in summary.splitlines() if line.strip().startswith("test (225)"))
    assert test.split()[2:] == [f"{run.test['loss']:.4f}", *(f"{run.test['metrics'][m]:.4f}" for m in METRICS)]
    for path in (fitted / "README.md", fitted / "hf_model", fitted / "config.yaml"):
        assert str(path) in summary, path
    for command in ("validate", "test", "predict", "serve"):
        assert f"python -m lightning_albert {command} " in summary
    for noise in ("Tip:", "litlogger", "Total FLOPs", "Writing model shards", "Loading weights", "set_vital"):
        assert noise not in console, noise


def test_early_stopping_stops_keeps_the_best_and_says_why(tmp_path, shared_data):
    # min_delta 1.0: no F1 can improve by a whole point, so patience 1 stops after the second validation.
    root = tmp_path / "runs"
    result = run_cli(
        "fit", "--config", "configs/quickstart.yaml",
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"),
        "--data.max_train_samples", "96", "--trainer.max_epochs", "6", "--trainer.default_root_dir", str(root),
        "--early_stopping.patience", "1", "--early_stopping.min_delta", "1.0", "--test_after_fit", "false",
        "--baseline", "false", *tiny_model_args(),
    )  # fmt: skip
    run = only_run(root)
    assert [r["epoch"] for r in logged_rows(run, "val")] == [0, 1]
    card = (run / "README.md").read_text()
    assert "Training stopped early after epoch 2 of 6: val_f1 did not improve" in card
    assert "for 1 evaluations in a row (early_stopping.patience)" in card
    table = card[card.index("### Training results") :].split("\n\n")[1]
    assert len(table.splitlines()) == 2 + 2  # header, rule, and every epoch that ran
    assert read_run(run).best_checkpoint.is_file()
    assert "Fit finished after 2 epochs of 6: stopped early, val_f1 did not improve" in result.stdout
    # --test_after_fit false: the quickstart's test file is not scored.
    assert "### Test results" not in card and not (run / "test_confusion_matrix.png").exists()
    assert "test (" not in result.stdout
    # --baseline false: no TF-IDF + LR is fitted, shown or compared with.
    assert "baseline" not in json.loads((run / "report.json").read_text())
    assert "TF-IDF" not in card and "TF-IDF" not in result.stdout


def test_the_printed_commands_work_pasted_into_a_shell_and_name_what_exists(tmp_path):
    """A run folder with a space in its path, and a fit that ran no validation (so no best checkpoint and no
    export): the Next commands are quoted, name last.ckpt instead of best, and leave out serve."""
    root = tmp_path / "my runs"
    result = run_cli(
        "fit", "--config", "configs/quickstart.yaml", "--data.max_train_samples", "32", "--data.test_file", "null",
        "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0", "--baseline", "false",
        "--trainer.default_root_dir", str(root), *tiny_model_args(),
    )  # fmt: skip
    run = only_run(root)
    next_lines = result.stdout[result.stdout.index("Next:") :].splitlines()[1:]
    assert [shlex.split(line)[3] for line in next_lines] == ["validate", "test", "predict"]  # no serve
    validate = shlex.split(next_lines[0])
    assert validate[4:] == ["--config", str(run / "config.yaml"), "--ckpt_path", "last"]
    run_cli(*validate[3:], "--trainer.default_root_dir", str(tmp_path / "validate"))


def test_balanced_class_weights_are_sklearns_and_a_later_validate_uses_them(tmp_path, shared_data):
    from sklearn.utils.class_weight import compute_class_weight

    from lightning_albert.checkpoints import load_checkpoint

    root = tmp_path / "runs"
    run_cli("fit", "--config", "configs/quickstart.yaml",
            "--data.train_file", str(PHRASEBANK / "train.csv"),
            "--data.validation_file", str(PHRASEBANK / "validation.csv"),
            "--data.test_file", "null", "--data.max_train_samples", "120", "--data.max_eval_samples", "40",
            "--model.class_weights", "balanced", "--trainer.max_epochs", "1", "--baseline", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
            *tiny_model_args())  # fmt: skip
    run = only_run(root)
    labels = json.loads((run / "report.json").read_text())["labels"]
    names = [row["label"] for row in read_csv(PHRASEBANK / "train.csv")[:120]]  # the first 120 rows: max_train_samples
    expected = compute_class_weight("balanced", classes=np.array(labels), y=names)
    assert len(set(names)) == 3 and max(expected) > 1.5 * min(expected)  # imbalanced, so the weights matter
    weights = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]["loss_weights"]
    assert weights.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert json.loads((run / "report.json").read_text())["facts"]["class_weights"] == pytest.approx(expected, rel=1e-5)
    shown = ", ".join(f"{name} {w:g}" for name, w in zip(labels, expected.astype("float32").astype(float).round(6)))
    assert f"- class_weights: balanced (from the training labels): {shown}" in (run / "README.md").read_text()
    (fitted_loss,) = [row["val_loss"] for row in logged_rows(run, "val")]
    run_cli("validate", "--config", str(run / "config.yaml"), "--ckpt_path", "last",
            "--trainer.default_root_dir", str(tmp_path / "validate"))  # fmt: skip
    (validated,) = logged_rows(only_run(tmp_path / "validate"), "val")
    assert validated["val_loss"] == pytest.approx(fitted_loss, rel=1e-6)  # weighted as in fit: no train file read
