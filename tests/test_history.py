"""reporting/history.py: a run read back from its folder equals what its files say, read here with csv, json and
torch; the best evaluation is the best checkpoint's; per-class figures are scikit-learn's."""

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import GOOD, fit_args, only_run, read_csv
from sklearn.metrics import precision_recall_fscore_support

from lightning_albert.cli import main
from lightning_albert.errors import InputError
from lightning_albert.reporting.history import METRICS, per_class, read_run

TRAIN, VALIDATION, TEST, BATCH = GOOD, GOOD[:9], GOOD[:7], 4


def _write(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Three epochs of a tiny ALBERT on the hand-written rows, ending by testing the best checkpoint."""
    folder = tmp_path_factory.mktemp("history")
    _write(folder / "train.csv", TRAIN)
    _write(folder / "validation.csv", VALIDATION)
    args = fit_args(folder, "--data.test_file", str(_write(folder / "test.csv", TEST)), "--data.batch_size", str(BATCH),
                    "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1.0",
                    "--trainer.limit_val_batches", "1.0")  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["lightning_albert"])
        main(args)
    return only_run(folder / "runs")


def test_every_evaluation_is_its_metrics_csv_row(run):
    rows = read_csv(run / "metrics.csv")
    validations = [r for r in rows if r["val_loss"]]
    train_loss = {int(r["epoch"]): float(r["train_loss"]) for r in rows if r["train_loss"]}
    history = read_run(run)
    assert len(history.evaluations) == len(validations) == 3
    for evaluation, row in zip(history.evaluations, validations):
        assert evaluation.epoch == int(row["epoch"])
        assert evaluation.val_loss == float(row["val_loss"])
        assert evaluation.metrics == {m: float(row[f"val_{m}"]) for m in METRICS}
        assert evaluation.train_loss == train_loss[evaluation.epoch]
    assert history.last is history.evaluations[-1]


def test_steps_confusion_matrices_labels_and_results_come_from_report_json(run):
    report = json.loads((run / "report.json").read_text())
    history = read_run(run)
    steps_per_epoch = math.ceil(len(TRAIN) / BATCH)
    assert [e.step for e in history.evaluations] == [(e.epoch + 1) * steps_per_epoch for e in history.evaluations]
    assert [e.step for e in history.evaluations] == [r["step"] for r in report["evaluations"]]
    assert [e.confusion_matrix for e in history.evaluations] == [r["confusion_matrix"] for r in report["evaluations"]]
    assert all(sum(map(sum, e.confusion_matrix)) == len(VALIDATION) for e in history.evaluations)
    assert history.labels == report["labels"] == sorted({label for _, label in TRAIN})
    assert (history.facts, history.test, history.baseline) == (report["facts"], report["test"], report["baseline"])
    assert history.test["examples"] == len(TEST) and set(history.baseline) >= {"validation", "test"}
    assert history.config == yaml.safe_load((run / "config.yaml").read_text())


def test_the_best_evaluation_is_the_one_the_best_checkpoint_was_saved_at(run):
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = [s for k, s in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    best_file = run / "checkpoints" / Path(state["best_model_path"]).name
    saved = torch.load(best_file, weights_only=True)
    history = read_run(run)
    assert history.best_checkpoint == best_file
    assert (history.best.epoch, history.best.step) == (saved["epoch"], saved["global_step"])
    # ModelCheckpoint keeps a new checkpoint only when strictly better: the first of the highest F1s.
    f1 = [e.metrics["f1"] for e in history.evaluations]
    assert history.best is history.evaluations[f1.index(max(f1))]
    checkpoint = history.config["checkpoint"]
    assert history.chosen_by == f"{checkpoint['mode']} {checkpoint['monitor']}" == "max val_f1"


def test_without_report_json_steps_follow_metrics_csv_and_nothing_else_is_made_up(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "report.json").unlink()
    history = read_run(copy)
    recorded = json.loads((run / "report.json").read_text())["evaluations"]
    assert [e.step for e in history.evaluations] == [r["step"] for r in recorded]
    assert all(e.confusion_matrix is None for e in history.evaluations)
    assert (history.labels, history.facts, history.test, history.baseline) == ([], {}, None, None)
    assert history.best is not None  # still found through the checkpoints


def _hand_made_run(folder: Path, f1: list[float], losses: list[float], checkpoint: dict | None) -> Path:
    """A run folder of config.yaml and metrics.csv only, one validation per epoch with the given figures."""
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"checkpoint": checkpoint} if checkpoint else {}))
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train_loss", "val_loss", *(f"val_{m}" for m in METRICS)])
        for epoch, (score, loss) in enumerate(zip(f1, losses)):
            writer.writerow([epoch, 10 * epoch + 9, "", loss, 0.5, 0.5, 0.5, score])
            writer.writerow([epoch, 10 * epoch + 9, 2.0 - epoch, "", "", "", "", ""])
    return folder


@pytest.mark.parametrize(
    ("checkpoint", "best_epoch", "chosen_by"),
    [(None, 1, "max val_f1"), ({"monitor": "val_loss", "mode": "min"}, 2, "min val_loss"),
     ({"monitor": "val_f1", "mode": "min"}, 0, "min val_f1")],
    ids=["default", "min-loss", "min-f1"],
)  # fmt: skip
def test_without_checkpoints_the_best_is_the_first_of_the_best_by_the_monitored_metric(
    tmp_path, checkpoint, best_epoch, chosen_by
):
    run = _hand_made_run(tmp_path / "run", f1=[0.3, 0.7, 0.7, 0.5], losses=[0.9, 0.8, 0.6, 0.6], checkpoint=checkpoint)
    history = read_run(run)
    assert [e.epoch for e in history.evaluations] == [0, 1, 2, 3]
    assert [e.step for e in history.evaluations] == [10, 20, 30, 40]  # logged step + 1: optimizer steps done
    assert [e.train_loss for e in history.evaluations] == [2.0, 1.0, 0.0, -1.0]
    assert history.best is history.evaluations[best_epoch] and history.best_checkpoint is None
    assert history.chosen_by == chosen_by


def test_a_run_without_metrics_has_no_evaluations_and_no_best(tmp_path):
    (tmp_path / "config.yaml").write_text("seed_everything: 1\n")
    history = read_run(tmp_path)
    assert (history.evaluations, history.best, history.last, history.best_checkpoint) == ([], None, None, None)


def test_a_folder_without_config_yaml_is_not_a_run_folder(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,step,val_loss\n")
    with pytest.raises(InputError, match="not a run folder .no config.yaml."):
        read_run(tmp_path)


def test_per_class_figures_are_scikit_learns_from_the_same_confusion_matrix():
    """Class 1 is never predicted (precision 0/0) and class 3 never occurs (recall 0/0): both read 0, as
    scikit-learn's zero_division=0 gives."""
    confusion = [[5, 0, 2, 1], [3, 0, 1, 0], [1, 0, 7, 0], [0, 0, 2, 0]]
    labels = ["a", "b", "c", "d"]
    truth = [i for i, row in enumerate(confusion) for j, count in enumerate(row) for _ in range(count)]
    predicted = [j for i, row in enumerate(confusion) for j, count in enumerate(row) for _ in range(count)]
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=range(4), zero_division=0)
    rows = per_class(confusion, labels)
    assert [r["label"] for r in rows] == labels
    assert [r["precision"] for r in rows] == pytest.approx(list(precision))
    assert [r["recall"] for r in rows] == pytest.approx(list(recall))
    assert [r["f1"] for r in rows] == pytest.approx(list(f1))
    assert [r["support"] for r in rows] == list(support)
