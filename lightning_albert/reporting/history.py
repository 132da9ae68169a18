"""A finished (or killed) run read back from its folder: every validation, and which one was the best.

The numbers come from `metrics.csv` (what the CSV logger wrote, so the card equals it row by row) and
`report.json` (what `RunFolderWriter` recorded beside it: optimizer steps, the task's records, run facts).
Which metrics a run has is its task's (tasks/).
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_albert.checkpoints import find_best_checkpoint, load_checkpoint
from lightning_albert.errors import InputError
from lightning_albert.tasks import Task, get_task
from lightning_albert.tasks.single_label import SingleLabel, per_class

METRICS = SingleLabel.metrics  # a single-label run's, the default task's


@dataclass
class Evaluation:
    """One validation: the row of the card's "Training results" table."""

    epoch: int  # 0-based, as Lightning counts
    step: int  # optimizer steps done when it ran
    val_loss: float
    metrics: dict[str, float]  # the task's: accuracy, precision, recall, f1 for single-label
    train_loss: float | None = None  # mean over the epoch's steps, once the epoch has ended
    confusion_matrix: list | None = None  # classification: rows true, columns predicted (per label for multi-label)
    record: dict[str, Any] = field(default_factory=dict)  # what report.json holds for it (the task's record)

    def __post_init__(self) -> None:
        if self.confusion_matrix is not None and "confusion_matrix" not in self.record:
            self.record = {**self.record, "confusion_matrix": self.confusion_matrix}


@dataclass
class RunHistory:
    folder: Path
    config: dict[str, Any]
    labels: list[str]
    evaluations: list[Evaluation]
    best: Evaluation | None
    best_checkpoint: Path | None
    facts: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] | None = None  # the best checkpoint on the test split, when fit ended by testing it
    baseline: dict[str, Any] | None = None  # the TF-IDF baseline's scores (baseline.py), when fit made it
    task: Task = field(default_factory=lambda: get_task(None))

    @property
    def last(self) -> Evaluation | None:
        return self.evaluations[-1] if self.evaluations else None

    @property
    def chosen_by(self) -> str:
        """How the best checkpoint was chosen, as the card and the summary say it: `max val_f1`."""
        checkpoint = self.config.get("checkpoint") or {}
        return f"{checkpoint.get('mode', 'max')} {checkpoint.get('monitor', 'val_f1')}"


def read_run(folder: str | Path) -> RunHistory:
    folder = Path(folder)
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        raise InputError(
            f"{folder}: not a run folder (no config.yaml). Give a lightning_logs/version_N folder of a fit."
        )
    config = yaml.safe_load(config_file.read_text())
    report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").is_file() else {}
    task = get_task(report.get("task") or (config.get("data") or {}).get("task"))
    evaluations = _evaluations(folder / "metrics.csv", report.get("evaluations", []), task.metrics)
    best_path, best = _best(folder / "checkpoints", evaluations, config)
    labels = report.get("labels") or []
    facts, test, baseline = report.get("facts", {}), report.get("test"), report.get("baseline")
    return RunHistory(folder, config, labels, evaluations, best, best_path, facts, test, baseline, task)


def _evaluations(metrics_csv: Path, recorded: list[dict], metrics: tuple[str, ...]) -> list[Evaluation]:
    if not metrics_csv.is_file():
        return []
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    train_loss = {int(r["epoch"]): float(r["train_loss"]) for r in rows if r.get("train_loss")}
    evaluations = []
    for i, row in enumerate(r for r in rows if r.get("val_loss")):
        epoch = int(row["epoch"])
        record = recorded[i] if i < len(recorded) and recorded[i]["epoch"] == epoch else {}
        evaluations.append(
            Evaluation(
                epoch=epoch,
                step=record.get("step", int(row["step"]) + 1),
                val_loss=float(row["val_loss"]),
                metrics={m: float(row[f"val_{m}"]) for m in metrics},
                train_loss=train_loss.get(epoch),
                confusion_matrix=record.get("confusion_matrix"),
                record=record,
            )
        )
    return evaluations


def _best(folder: Path, evaluations: list[Evaluation], config: dict) -> tuple[Path | None, Evaluation | None]:
    """The evaluation the best checkpoint was taken at; by the monitored metric if there is no checkpoint."""
    path = find_best_checkpoint(folder) if folder.is_dir() else None
    if path is not None:
        checkpoint = load_checkpoint(path)
        for e in evaluations:
            if (e.epoch, e.step) == (checkpoint["epoch"], checkpoint["global_step"]):
                return path, e
    monitor = (config.get("checkpoint") or {}).get("monitor") or "val_f1"
    mode = (config.get("checkpoint") or {}).get("mode") or "max"
    name = monitor.removeprefix("val_")
    scored = [e for e in evaluations if name in e.metrics or name == "loss"]
    if not scored:
        return path, None
    value = (lambda e: e.val_loss) if name == "loss" else (lambda e: e.metrics[name])
    # The first of equals, as ModelCheckpoint keeps a checkpoint only when strictly better.
    best = max(scored, key=value) if mode == "max" else min(scored, key=value)
    return path, best


__all__ = ["METRICS", "Evaluation", "RunHistory", "per_class", "read_run"]
