"""What every task answers: the interface that the data, the model, the reports, predict and serve ask."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection

from lightning_albert.errors import InputError
from lightning_albert.labels import check_given_labels
from lightning_albert.tables import Table

# What the card and the console call each metric a task logs (`val_<key>`, `test_<key>` in metrics.csv).
TITLES = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "micro_f1": "Micro F1",
    "subset_accuracy": "Subset Accuracy",
    "hamming_loss": "Hamming Loss",
    "mse": "MSE",
    "mae": "MAE",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "r2": "R2",
}
LOWER_IS_BETTER = {"loss", "hamming_loss", "mse", "mae"}


@dataclass(frozen=True)
class LabelFormat:
    """How a data set writes its labels (the DataModule's data.label_* settings)."""

    column: str = "label"
    separator: str = "|"  # multi-label: the names of a text's labels joined in one cell
    columns: tuple[str, ...] | None = None  # multi-label: one 0/1 column per label (the toxic-comment layout)


class Task:
    """One kind of problem. Subclasses set the class attributes and implement the methods that differ."""

    name: str  # the data.task value
    problem_type: str | None  # transformers' config.problem_type: the export's loss and its pipeline's activation
    metrics: tuple[str, ...]  # logged per evaluation, in the card's column order
    headline: tuple[str, str]  # the two metrics the curves, the summary's verdict and the baseline compare
    monitor: tuple[str, str]  # checkpoint.monitor and mode by default
    loss_name: str  # the loss, in words, for the curves' axis
    baseline_name: str  # the bag-of-words baseline's short name in tables
    baseline_description: str
    intended_use: str  # the card's first words on what the model is for
    caveat: str  # what the card asks a user to read before relying on the model
    plot_name: str | None = None  # the per-evaluation picture's file stem, when the task draws one
    titles: dict[str, str] = {}  # where the task names a metric otherwise than TITLES

    # --------------------------------------------------------------------------------------------- data
    def check_given_labels(self, labels: list[str] | None) -> list[str] | None:
        """data.labels, refused where the task cannot use it (classes: no repeats, at least two)."""
        return check_given_labels(labels)

    def names(self, table: Table, form: LabelFormat) -> list[str]:
        """The label names in id order, from the training table."""
        raise NotImplementedError

    def targets(self, table: Table, rows: list[int], form: LabelFormat, labels: list[str], given: bool) -> np.ndarray:
        """The training targets of `rows`: what the loss compares the model's outputs with."""
        raise NotImplementedError

    def strata(self, targets: np.ndarray) -> list[int]:
        """A group per row for the held-out validation split, which keeps each group's share (one group: a plain
        seeded random split)."""
        return [0] * len(targets)

    def check_training_targets(self, table: Table, targets: np.ndarray, labels: list[str]) -> None:
        """Warn about training targets that would train badly (a label that is never positive)."""

    def num_outputs(self, labels: list[str]) -> int:
        return len(labels)

    def describe(self, labels: list[str]) -> str:
        """What the model predicts, for the card's model description."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- model
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def loss_share(self, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor | int:
        """A batch's weight in the epoch's mean loss, so the epoch's loss is the mean over its samples."""
        return targets.shape[0]

    def loss_weights(self, given: str | list[float], train_targets: np.ndarray | None, labels: list[str]) -> list:
        """model.class_weights as the loss uses them (`balanced` from the training targets)."""
        raise InputError(f"model.class_weights: a {self.name} task has no classes to weight; leave it unset.")

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What predict writes and serve answers: class probabilities, or the predicted value."""
        raise NotImplementedError

    def metric_inputs(self, logits: torch.Tensor, thresholds: torch.Tensor | None) -> torch.Tensor:
        """What the metrics are updated with (logits, decisions at the thresholds, or values)."""
        return logits

    def metric_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """The targets as the metrics take them."""
        return targets

    def metric_collection(self, num_outputs: int, prefix: str) -> MetricCollection:
        raise NotImplementedError

    def record_metric(self, num_outputs: int) -> Metric:
        """What each evaluation keeps beside its scalar metrics for the card (a confusion matrix, value pairs);
        a torchmetrics object, so it is gathered across processes."""
        raise NotImplementedError

    def record(self, computed: Any) -> dict[str, Any]:
        """The record metric's value as report.json keeps it."""
        raise NotImplementedError

    def check_thresholds(self, threshold: float | list[float], labels: list[str]) -> list[float] | None:
        """model.threshold: where a score becomes a decision (multi-label only)."""
        return None

    # ------------------------------------------------------------------------------------- predictions
    def prediction_header(self, labels: list[str]) -> list[str]:
        raise NotImplementedError

    def prediction_cells(self, output: list[float], labels: list[str], thresholds: list[float] | None,
                         separator: str) -> list[str]:  # fmt: skip
        raise NotImplementedError

    def answer(self, output: list[float], labels: list[str], thresholds: list[float] | None) -> dict[str, Any]:
        """serve's JSON answer for one text."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- baseline
    def fit_baseline(self, texts: list[str], targets: np.ndarray, labels: list[str]) -> Any:
        """A TF-IDF model fitted on the training split; `baseline_outputs` gives what `outputs` gives."""
        raise NotImplementedError

    def baseline_outputs(self, model: Any, texts: list[str], labels: list[str]) -> np.ndarray:
        raise NotImplementedError

    def reference_scores(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str],
                         thresholds: list[float] | None) -> dict[str, Any]:  # fmt: skip
        """Loss, metrics and record from outputs, computed by scikit-learn / scipy (independent of torchmetrics):
        how the baseline is scored."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------- card
    def detail_tables(self, evaluation: dict[str, Any], labels: list[str]) -> list[tuple[str, list, list[list[str]]]]:
        """(caption, header, rows) tables the card shows for one evaluation's record (per class, per label)."""
        return []

    def plot(self, evaluation: dict[str, Any], labels: list[str], title: str):
        """The evaluation record's picture (a matplotlib Figure), or None."""
        return None

    def title(self, metric: str) -> str:
        """A metric as the card's and the console's column heads name it."""
        return self.titles.get(metric, TITLES[metric])

    def higher_is_better(self, metric: str) -> bool:
        return metric.removeprefix("val_").removeprefix("test_").removeprefix("train_") not in LOWER_IS_BETTER

    @property
    def logged(self) -> tuple[str, ...]:
        """Every validation metric this task logs, as checkpoint.monitor may name it."""
        return ("val_loss", *(f"val_{m}" for m in self.metrics), "train_loss")


def fmt4(value: float) -> str:
    return f"{value:.4f}"
