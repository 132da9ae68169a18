"""Single-label classification: each text has exactly one class (the seed run, and the default)."""

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from lightning_albert.labels import balanced_weights, check_class_weights, class_names, label_ids
from lightning_albert.tables import Table
from lightning_albert.tasks.base import LabelFormat, Task, fmt4

# The settings a careful practitioner reaches for first: word 1-2-grams, sublinear term frequency, C=10.
TFIDF = "TF-IDF (word 1-2-grams, sublinear tf)"


class SingleLabel(Task):
    name = "single_label"
    problem_type = None  # transformers' default for more than one label (softmax); exports as before tasks
    metrics = ("accuracy", "precision", "recall", "f1")
    headline = ("accuracy", "f1")
    monitor = ("val_f1", "max")
    loss_name = "cross-entropy"
    baseline_name = "TF-IDF + LR"
    baseline_description = f"{TFIDF} + logistic regression (C=10), scikit-learn"
    intended_use = "Classifies texts like those it was trained on into the classes above."
    caveat = "read the per-class results below: a good average can hide a weak class"
    plot_name = "confusion_matrix"

    def names(self, table: Table, form: LabelFormat) -> list[str]:
        return class_names(table, form.column)

    def targets(self, table: Table, rows: list[int], form: LabelFormat, labels: list[str], given: bool) -> np.ndarray:
        return np.asarray(label_ids(table, rows, form.column, labels, given), dtype=np.int64)

    def strata(self, targets: np.ndarray) -> list[int]:
        return targets.tolist()

    def describe(self, labels: list[str]) -> str:
        return (
            f"ALBERT with a sequence-classification head over {len(labels)} classes: "
            f"{', '.join(f'`{x}`' for x in labels)}"
        )

    def loss(self, logits, targets, weights):
        return torch.nn.functional.cross_entropy(logits, targets, weight=weights)

    def loss_share(self, targets, weights):
        # With class weights, cross-entropy's mean divides by the batch's weight sum: weigh the batch by it.
        return targets.numel() if weights is None else weights[targets].sum()

    def loss_weights(self, given, train_targets, labels):
        id2label = dict(enumerate(labels))
        checked = check_class_weights(given, id2label)
        return checked if checked is not None else balanced_weights(train_targets, id2label)

    def outputs(self, logits):
        return logits.float().softmax(dim=-1)

    def metric_collection(self, num_outputs: int, prefix: str) -> MetricCollection:
        # Accuracy is micro (share of correct predictions), as in the seed card; torchmetrics' default is macro,
        # which is balanced accuracy. Precision, recall and F1 are macro averages over classes.
        return MetricCollection(
            {
                "accuracy": MulticlassAccuracy(num_outputs, average="micro"),
                "precision": MulticlassPrecision(num_outputs, average="macro"),
                "recall": MulticlassRecall(num_outputs, average="macro"),
                "f1": MulticlassF1Score(num_outputs, average="macro"),
            },
            prefix=prefix,
        )

    def record_metric(self, num_outputs: int) -> Metric:
        return MulticlassConfusionMatrix(num_outputs)

    def record(self, computed) -> dict[str, Any]:
        return {"confusion_matrix": computed.tolist()}

    def prediction_header(self, labels):
        return ["label"] + [f"prob_{n}" for n in labels]

    def prediction_cells(self, output, labels, thresholds, separator):
        best = max(range(len(output)), key=output.__getitem__)
        return [labels[best]] + [f"{p:.8g}" for p in output]

    def answer(self, output, labels, thresholds):
        best = max(range(len(output)), key=output.__getitem__)
        return {"label": labels[best], "probabilities": dict(zip(labels, output))}

    def fit_baseline(self, texts, targets, labels):
        from sklearn.linear_model import LogisticRegression

        return _tfidf(LogisticRegression(C=10, max_iter=2000)).fit(texts, targets)  # lbfgs: deterministic

    def baseline_outputs(self, model, texts, labels):
        probabilities = model.predict_proba(texts)
        full = np.full((len(texts), len(labels)), 1e-15)  # a class absent from the training split has no column
        full[:, model.classes_] = probabilities
        return full

    def reference_scores(self, outputs, targets, labels, thresholds):
        """Macro averages run over the classes present in the labels or the predictions, as torchmetrics'."""
        from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

        predicted = outputs.argmax(axis=1)
        precision, recall, f1, _ = precision_recall_fscore_support(targets, predicted, average="macro", zero_division=0)
        values = {"accuracy": accuracy_score(targets, predicted), "precision": precision, "recall": recall, "f1": f1}
        every = list(range(len(labels)))
        return {
            "loss": float(log_loss(targets, outputs, labels=every)),
            "metrics": {m: float(values[m]) for m in self.metrics},
            "confusion_matrix": confusion_matrix(targets, predicted, labels=every).tolist(),
        }

    def detail_tables(self, evaluation, labels):
        confusion = evaluation.get("confusion_matrix")
        if not confusion:
            return []
        per = [
            [r["label"], fmt4(r["precision"]), fmt4(r["recall"]), fmt4(r["f1"]), str(r["support"])]
            for r in per_class(confusion, labels)
        ]
        counts = [[f"**{name}**", *map(str, row)] for name, row in zip(labels, confusion)]
        return [
            ("Per-class results", ["Class", "Precision", "Recall", "F1", "Support"], per),
            ("Confusion matrix (rows: true class, columns: predicted class)", ["true \\ predicted", *labels], counts),
        ]

    def plot(self, evaluation, labels, title):
        from lightning_albert.reporting.plots import plot_confusion_matrix

        confusion = evaluation.get("confusion_matrix")
        return plot_confusion_matrix(confusion, labels, title) if confusion else None


def per_class(confusion: list[list[int]], labels: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each class from a confusion matrix (rows true, columns predicted)."""
    rows = []
    for i, name in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(len(labels)))
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


def _tfidf(estimator):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), estimator)
