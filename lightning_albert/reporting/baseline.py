"""A bag-of-words baseline beside every fit: TF-IDF + logistic regression on the same training split.

A transformer trained from scratch on a few thousand texts often trails this baseline, which fits in seconds.
The card shows both, so a user sees whether the minutes of training bought anything. scikit-learn is imported
only here, when a fit ends.
"""

import time
from typing import Any

import numpy as np

from lightning_albert.reporting.history import METRICS, RunHistory

# The settings a careful practitioner reaches for first: word 1-2-grams, sublinear term frequency, C=10.
DESCRIPTION = "TF-IDF (word 1-2-grams, sublinear tf) + logistic regression (C=10), scikit-learn"


def fit_baseline(texts: list[str], labels: np.ndarray) -> tuple[Any, float]:
    """The fitted pipeline and the seconds its fit took."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=10, max_iter=2000),  # lbfgs: deterministic
    )
    started = time.perf_counter()
    pipeline.fit(texts, labels)
    return pipeline, time.perf_counter() - started


def score(pipeline: Any, texts: list[str], labels: np.ndarray, num_labels: int) -> dict[str, Any]:
    """Loss (mean cross-entropy, as the model's), accuracy and macro precision / recall / F1, and the confusion
    matrix. Macro averages run over the classes present in the labels or the predictions, as torchmetrics'."""
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

    probabilities = pipeline.predict_proba(texts)
    classes = pipeline.classes_  # a class absent from the training split has no column
    predicted = classes[probabilities.argmax(axis=1)]
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    full = np.full((len(texts), num_labels), 1e-15)
    full[:, classes] = probabilities
    values = {"accuracy": accuracy_score(labels, predicted), "precision": precision, "recall": recall, "f1": f1}
    return {
        "examples": len(texts),
        "loss": float(log_loss(labels, full, labels=list(range(num_labels)))),
        "metrics": {m: float(values[m]) for m in METRICS},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=list(range(num_labels))).tolist(),
    }


def run_baseline(datamodule: Any, splits: list[str]) -> dict[str, Any]:
    """Fit on the DataModule's training split (the rows ALBERT trained on) and score each of `splits`."""
    train = datamodule.split("train")
    pipeline, seconds = fit_baseline(datamodule.texts("train"), train.labels)
    result: dict[str, Any] = {"model": DESCRIPTION, "fit_seconds": round(seconds, 3)}
    for name in splits:
        result[name] = score(pipeline, datamodule.texts(name), datamodule.split(name).labels, datamodule.num_labels)
    return result


def side_by_side(run: RunHistory) -> list[tuple[str, str, float, dict[str, float]]]:
    """(model, split, loss, metrics) of the best checkpoint and of the baseline, split by split."""
    ours = {"validation": (run.best.val_loss, run.best.metrics)} if run.best is not None else {}
    if run.test:
        ours["test"] = (run.test["loss"], run.test["metrics"])
    rows = []
    for split in ("validation", "test"):
        if split in ours:
            rows.append(("ALBERT", split, *ours[split]))
        if run.baseline and split in run.baseline:
            rows.append(("TF-IDF + LR", split, run.baseline[split]["loss"], run.baseline[split]["metrics"]))
    return rows


def verdict(run: RunHistory) -> str | None:
    """Whether the model beat the baseline, on the test split when both were scored there, else on validation."""
    scored: dict[str, dict[str, dict[str, float]]] = {}
    for model, split, _, metrics in side_by_side(run):
        scored.setdefault(split, {})[model] = metrics
    split = next((s for s in ("test", "validation") if len(scored.get(s, {})) == 2), None)
    if split is None:
        return None
    ours, theirs = scored[split]["ALBERT"], scored[split]["TF-IDF + LR"]
    wins = [m for m in ("accuracy", "f1") if ours[m] > theirs[m]]
    if len(wins) == 2:
        outcome = "beat the TF-IDF + LR baseline"
    elif not wins:
        outcome = "did not beat the TF-IDF + LR baseline"
    else:
        outcome = f"beat the TF-IDF + LR baseline on {_NAMES[wins[0]]} only"
    figures = ", ".join(f"{_NAMES[m]} {ours[m]:.4f} vs {theirs[m]:.4f}" for m in ("accuracy", "f1"))
    return f"ALBERT {outcome} on the {split} split ({figures})."


_NAMES = {"accuracy": "accuracy", "f1": "macro-F1"}
