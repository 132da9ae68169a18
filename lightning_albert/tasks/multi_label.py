"""Multi-label classification: each text has any number of labels (topics, emotions, toxicity types).

Labels come as the names joined in one cell (`a|b`, data.label_separator), as a list (JSON Lines, JSON, Parquet,
datasets), or as one 0/1 column per label (data.label_columns). The model gives each label its own sigmoid,
trained with binary cross-entropy; a label is predicted when its probability is above model.threshold.
"""

import ast
import json
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MultilabelConfusionMatrix,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelPrecision,
    MultilabelRecall,
)

from lightning_albert.errors import InputError, row_list
from lightning_albert.labels import check_class_weights, label_text
from lightning_albert.tables import Table
from lightning_albert.tasks.base import LabelFormat, Task, fmt4
from lightning_albert.tasks.single_label import TFIDF, _tfidf


class MultiLabel(Task):
    name = "multi_label"
    problem_type = "multi_label_classification"
    metrics = ("micro_f1", "f1", "precision", "recall", "subset_accuracy", "hamming_loss")
    headline = ("micro_f1", "f1")
    monitor = ("val_f1", "max")  # macro-F1: every label counts alike, as rare labels are the hard ones
    loss_name = "binary cross-entropy"
    baseline_name = "TF-IDF + LR"
    titles = {"f1": "Macro F1", "precision": "Macro Precision", "recall": "Macro Recall"}
    intended_use = "Tags texts like those it was trained on with any of the labels above."
    caveat = "read the per-label results below: a good average can hide a label that is never predicted"
    baseline_description = f"{TFIDF} + one-vs-rest logistic regression (C=10), scikit-learn"

    def check_given_labels(self, labels):
        names = super().check_given_labels(labels)
        if names is not None and any(n == "" for n in names):
            raise InputError("data.labels: a label name must not be empty.")
        return names

    # --------------------------------------------------------------------------------------------- data
    def names(self, table: Table, form: LabelFormat) -> list[str]:
        if form.columns:
            for column in form.columns:
                table.column(column, "label")
            return list(form.columns)
        if form.column in table.class_names:  # a datasets Sequence(ClassLabel) column
            return list(table.class_names[form.column])
        seen: set[str] = set()
        for value in table.column(form.column, "label"):
            seen.update(_names_in(value, form.separator, table, form.column))
        if len(seen) < 2:
            found = f"only '{next(iter(seen))}'" if seen else "no labels"
            raise InputError(
                f"{table.path}: the training data has {found} in column '{form.column}' (labels joined by "
                f"'{form.separator}', data.label_separator); multi-label classification needs at least two labels."
            )
        return sorted(seen)

    def targets(self, table, rows, form, labels, given) -> np.ndarray:
        if form.columns:
            return _from_columns(table, rows, form.columns)
        index = {name: i for i, name in enumerate(labels)}
        ids_allowed = given or form.column in table.class_names
        values = table.column(form.column, "label")
        targets = np.zeros((len(rows), len(labels)), dtype=np.float32)
        empty, unknown = [], {}
        for k, r in enumerate(rows):
            names = _names_in(values[r], form.separator, table, form.column)
            if not names:
                empty.append(int(table.lines[r]))
            for name in names:
                if name in index:
                    targets[k, index[name]] = 1
                elif ids_allowed and name.isdigit() and int(name) < len(labels):
                    targets[k, int(name)] = 1
                else:
                    unknown.setdefault(name, int(table.lines[r]))
        if unknown:
            name, line = next(iter(unknown.items()))
            source = "data.labels" if given else "the training file's labels"
            raise InputError(
                f"{table.path}, {table.unit} {line}: label '{name}' is not one of {source} ({', '.join(labels)})"
                f"{f' ({len(unknown)} unknown labels in all)' if len(unknown) > 1 else ''}. Fix the label, list "
                f"every label in data.labels, or check data.label_separator ('{form.separator}')."
            )
        if empty:
            rank_zero_info(
                f"Note: {table.path}: {len(empty)} row(s) have no label in column '{form.column}' "
                f"({row_list(empty, table.unit)}); they are read as negative for every label."
            )
        return targets

    def check_training_targets(self, table, targets, labels) -> None:
        never = [labels[i] for i in np.flatnonzero(targets.sum(axis=0) == 0)]
        if never:
            rank_zero_info(
                f"Warning: {table.path}: label(s) {', '.join(repr(n) for n in never)} are never positive in the "
                "training data; the model will learn never to predict them."
            )

    def describe(self, labels):
        return (
            f"ALBERT with a multi-label classification head over {len(labels)} labels: "
            f"{', '.join(f'`{x}`' for x in labels)}; each label has its own sigmoid, so a text gets any number of them"
        )

    # -------------------------------------------------------------------------------------------- model
    def loss(self, logits, targets, weights):
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=weights)

    def loss_weights(self, given, train_targets, labels):
        """`pos_weight` per label: balanced is negatives / positives in the training data, which weighs a
        label's positives as much as its negatives in the loss (scikit-learn's balanced rule, per label)."""
        checked = check_class_weights(given, dict(enumerate(labels)))
        if checked is not None:
            return checked
        positives = train_targets.sum(axis=0)
        absent = [labels[i] for i in np.flatnonzero(positives == 0)]
        if absent:
            raise InputError(
                f"model.class_weights: balanced needs a positive example of every label in the training data; "
                f"{', '.join(repr(a) for a in absent)} has none. Give the weights as a list instead."
            )
        return [float((len(train_targets) - p) / p) for p in positives]

    def outputs(self, logits):
        return logits.float().sigmoid()

    def metric_inputs(self, logits, thresholds):
        return (logits.float().sigmoid() > thresholds).long()

    def metric_targets(self, targets):
        return targets.long()

    def metric_collection(self, num_outputs: int, prefix: str) -> MetricCollection:
        # Updated with decisions (0/1, from the per-label thresholds), so torchmetrics applies no threshold.
        n = num_outputs
        return MetricCollection(
            {
                "micro_f1": MultilabelF1Score(n, average="micro"),
                "f1": MultilabelF1Score(n, average="macro"),
                "precision": MultilabelPrecision(n, average="macro"),
                "recall": MultilabelRecall(n, average="macro"),
                "subset_accuracy": MultilabelExactMatch(n),
                "hamming_loss": MultilabelHammingDistance(n, average="micro"),
            },
            prefix=prefix,
        )

    def record_metric(self, num_outputs: int) -> Metric:
        return MultilabelConfusionMatrix(num_outputs)

    def record(self, computed) -> dict[str, Any]:
        return {"confusion_matrix": computed.tolist()}  # per label [[tn, fp], [fn, tp]], as scikit-learn's

    def check_thresholds(self, threshold, labels):
        values = [threshold] * len(labels) if isinstance(threshold, (int, float)) else list(threshold)
        if len(values) != len(labels) or not all(0 < float(t) < 1 for t in values):
            raise InputError(
                f"model.threshold: give one number between 0 and 1, or {len(labels)} (one per label, in the order "
                f"{', '.join(labels)}), not {threshold!r}."
            )
        return [float(t) for t in values]

    # ------------------------------------------------------------------------------------- predictions
    def prediction_header(self, labels):
        return ["labels"] + [f"prob_{n}" for n in labels]

    def prediction_cells(self, output, labels, thresholds, separator):
        chosen = [n for n, p, t in zip(labels, output, thresholds) if p > t]
        return [separator.join(chosen)] + [f"{p:.8g}" for p in output]

    def answer(self, output, labels, thresholds):
        return {
            "labels": [n for n, p, t in zip(labels, output, thresholds) if p > t],
            "probabilities": dict(zip(labels, output)),
        }

    # ----------------------------------------------------------------------------------------- baseline
    def fit_baseline(self, texts, targets, labels):
        import warnings

        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        with warnings.catch_warnings():  # a label never positive gets a constant predictor, with a warning
            warnings.simplefilter("ignore", UserWarning)
            return _tfidf(OneVsRestClassifier(LogisticRegression(C=10, max_iter=2000))).fit(texts, targets)

    def baseline_outputs(self, model, texts, labels):
        return np.asarray(model.predict_proba(texts), dtype=np.float64)

    def reference_scores(self, outputs, targets, labels, thresholds):
        from sklearn.metrics import (
            accuracy_score,
            f1_score,
            hamming_loss,
            multilabel_confusion_matrix,
            precision_score,
            recall_score,
        )

        y = np.asarray(targets).astype(int)
        decided = (outputs > np.asarray(thresholds)).astype(int)
        p = np.clip(outputs, 1e-7, 1 - 1e-7)
        values = {
            "micro_f1": f1_score(y, decided, average="micro", zero_division=0),
            "f1": f1_score(y, decided, average="macro", zero_division=0),
            "precision": precision_score(y, decided, average="macro", zero_division=0),
            "recall": recall_score(y, decided, average="macro", zero_division=0),
            "subset_accuracy": accuracy_score(y, decided),
            "hamming_loss": hamming_loss(y, decided),
        }
        return {
            "loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "metrics": {m: float(values[m]) for m in self.metrics},
            "confusion_matrix": multilabel_confusion_matrix(y, decided).tolist(),
        }

    # --------------------------------------------------------------------------------------------- card
    def detail_tables(self, evaluation, labels):
        matrices = evaluation.get("confusion_matrix")
        if not matrices:
            return []
        per, counts = [], []
        for name, ((tn, fp), (fn, tp)) in zip(labels, matrices):
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            per.append([name, fmt4(precision), fmt4(recall), fmt4(f1), str(tp + fn), str(tp + fp)])
            counts.append([f"**{name}**", str(tp), str(fp), str(fn), str(tn)])
        return [
            ("Per-label results", ["Label", "Precision", "Recall", "F1", "Support", "Predicted"], per),
            (
                "Per-label confusion (true positives, false positives, false negatives, true negatives)",
                ["Label", "TP", "FP", "FN", "TN"],
                counts,
            ),
        ]


def _names_in(value: Any, separator: str, table: Table, column: str) -> list[str]:
    """The label names of one cell: a list, a JSON / Python list written as text, or names joined by the
    separator. A datasets ClassLabel sequence's ids become its names."""
    if isinstance(value, str) and value.strip().startswith("["):
        value = _parse_list(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        names = [label_text(v) for v in value]
        ids = table.class_names.get(column)
        if ids is not None:
            names = [ids[int(n)] if n is not None and n.isdigit() and int(n) < len(ids) else n for n in names]
        return [n for n in names if n is not None]
    text = label_text(value)
    if text is None:
        return []
    return [part.strip() for part in text.split(separator) if part.strip()]


def _parse_list(text: str) -> Any:
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    return text


_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def _from_columns(table: Table, rows: list[int], columns: tuple[str, ...]) -> np.ndarray:
    """data.label_columns: one 0/1 column per label."""
    targets = np.zeros((len(rows), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        values = table.column(column, "label")
        for k, r in enumerate(rows):
            text = label_text(values[r])
            if text is not None and text.lower() in _TRUE:
                targets[k, j] = 1
            elif text is None or text.lower() not in _FALSE:
                raise InputError(
                    f"{table.path}, {table.unit} {table.lines[r]}: column '{column}' (data.label_columns) holds "
                    f"{values[r]!r}; each label column needs 0 or 1 in every row."
                )
    return targets
