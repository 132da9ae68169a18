"""Regression: one number per text or text pair (a rating, a similarity score as in GLUE STS-B)."""

import warnings
from typing import Any

import numpy as np
import torch
from torchmetrics import (
    MeanAbsoluteError,
    MeanSquaredError,
    Metric,
    MetricCollection,
    PearsonCorrCoef,
    R2Score,
    SpearmanCorrCoef,
)
from torchmetrics.utilities import dim_zero_cat

from lightning_albert.errors import InputError, row_list
from lightning_albert.labels import label_text
from lightning_albert.tables import Table
from lightning_albert.tasks.base import LabelFormat, Task
from lightning_albert.tasks.single_label import TFIDF, _tfidf

PAIRS_KEPT = 2000  # (predicted, true) pairs a report keeps per evaluation for the scatter plot


class Regression(Task):
    name = "regression"
    problem_type = "regression"
    metrics = ("mse", "mae", "pearson", "spearman", "r2")
    headline = ("pearson", "spearman")
    monitor = ("val_loss", "min")  # the mean squared error
    loss_name = "mean squared error"
    baseline_name = "TF-IDF + ridge"
    baseline_description = f"{TFIDF} + ridge regression (alpha=1), scikit-learn"
    intended_use = "Scores texts like those it was trained on."
    caveat = "look at the predicted-against-true picture below: a good correlation can hide a squeezed range"
    plot_name = "predicted_vs_true"

    def check_given_labels(self, labels):
        if labels is None:
            return None
        if len(labels) != 1:
            raise InputError(
                "data.labels: a regression task has one output, named after data.label_column; leave data.labels unset."
            )
        return [str(labels[0])]

    def names(self, table: Table, form: LabelFormat) -> list[str]:
        table.column(form.column, "label")
        return [form.column]  # the one output, named for what it predicts

    def targets(self, table, rows, form, labels, given) -> np.ndarray:
        values = table.column(form.column, "label")
        targets = np.zeros(len(rows), dtype=np.float32)
        missing = []
        for k, r in enumerate(rows):
            text = label_text(values[r])
            if text is None:
                missing.append(int(table.lines[r]))
                continue
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is None or not np.isfinite(number):
                raise InputError(
                    f"{table.path}, {table.unit} {table.lines[r]}: '{form.column}' holds {values[r]!r}, not a finite "
                    "number; a regression task (data.task: regression) needs a number in every row."
                )
            targets[k] = number
        if missing:
            raise InputError(
                f"{table.path}: {len(missing)} row(s) have no value in column '{form.column}' "
                f"({row_list(missing, table.unit)}). Every row of a training, validation or test file needs one."
            )
        return targets

    def strata(self, targets: np.ndarray) -> list[int]:
        # Deciles of the targets: the held-out rows span the range as the training rows do.
        edges = np.quantile(targets, np.linspace(0, 1, 11)[1:-1])
        return np.searchsorted(edges, targets, side="right").tolist()

    def num_outputs(self, labels):
        return 1

    def describe(self, labels):
        return f"ALBERT with a regression head: one value per text (`{labels[0]}`), trained with the mean squared error"

    def loss(self, logits, targets, weights):
        return torch.nn.functional.mse_loss(logits.float().squeeze(-1), targets)

    def outputs(self, logits):
        return logits.float()

    def metric_inputs(self, logits, thresholds):
        return logits.float().squeeze(-1)

    def metric_collection(self, num_outputs: int, prefix: str) -> MetricCollection:
        with warnings.catch_warnings():  # that Spearman keeps every value: one evaluation's, which is small
            warnings.filterwarnings("ignore", message=".*will save all targets and predictions")
            spearman = SpearmanCorrCoef()
        return MetricCollection(
            {
                "mse": MeanSquaredError(),
                "mae": MeanAbsoluteError(),
                "pearson": PearsonCorrCoef(),
                "spearman": spearman,
                "r2": R2Score(),
            },
            prefix=prefix,
        )

    def record_metric(self, num_outputs: int) -> Metric:
        return Pairs()

    def record(self, computed) -> dict[str, Any]:
        return {"pairs": _kept(computed.tolist())}

    def prediction_header(self, labels):
        return ["prediction"]

    def prediction_cells(self, output, labels, thresholds, separator):
        return [f"{output[0]:.8g}"]

    def answer(self, output, labels, thresholds):
        return {"value": output[0]}

    def fit_baseline(self, texts, targets, labels):
        from sklearn.linear_model import Ridge

        return _tfidf(Ridge(alpha=1.0)).fit(texts, targets)

    def baseline_outputs(self, model, texts, labels):
        return np.asarray(model.predict(texts), dtype=np.float64).reshape(-1, 1)

    def reference_scores(self, outputs, targets, labels, thresholds):
        from scipy.stats import pearsonr, spearmanr
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        predicted, true = np.asarray(outputs, dtype=np.float64).reshape(-1), np.asarray(targets, dtype=np.float64)
        values = {
            "mse": mean_squared_error(true, predicted),
            "mae": mean_absolute_error(true, predicted),
            "pearson": pearsonr(predicted, true).statistic,
            "spearman": spearmanr(predicted, true).statistic,
            "r2": r2_score(true, predicted),
        }
        return {
            "loss": float(values["mse"]),
            "metrics": {m: float(values[m]) for m in self.metrics},
            "pairs": _kept(np.stack([predicted, true], axis=1).tolist()),
        }

    def plot(self, evaluation, labels, title):
        from lightning_albert.reporting.plots import plot_predicted_vs_true

        pairs = evaluation.get("pairs")
        return plot_predicted_vs_true(pairs, labels[0], title) if pairs else None


class Pairs(Metric):
    """Every (predicted, true) value of an evaluation, gathered across processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("predicted", default=[], dist_reduce_fx="cat")
        self.add_state("true", default=[], dist_reduce_fx="cat")

    def update(self, predicted: torch.Tensor, true: torch.Tensor) -> None:
        self.predicted.append(predicted.detach().float().reshape(-1))
        self.true.append(true.detach().float().reshape(-1))

    def compute(self) -> torch.Tensor:
        return torch.stack([dim_zero_cat(self.predicted), dim_zero_cat(self.true)], dim=1)


def _kept(pairs: list[list[float]]) -> list[list[float]]:
    """At most PAIRS_KEPT pairs, evenly spaced, at 5 significant digits: enough for a picture."""
    step = max(1, -(-len(pairs) // PAIRS_KEPT))
    return [[float(f"{p:.5g}"), float(f"{t:.5g}")] for p, t in pairs[::step]]
