"""A bag-of-words baseline beside every fit: TF-IDF and a linear model on the same training split (logistic
regression for classes and labels, ridge for regression: the task's, tasks/).

A transformer trained from scratch on a few thousand texts often trails this baseline, which fits in seconds.
The card shows both, so a user sees whether the minutes of training bought anything. scikit-learn is imported
only when a fit ends.
"""

import time
from typing import Any

from lightning_albert.reporting.history import RunHistory
from lightning_albert.tasks import Task


def run_baseline(datamodule: Any, splits: list[str], thresholds: list[float] | None = None) -> dict[str, Any]:
    """Fit on the DataModule's training split (the rows ALBERT trained on) and score each of `splits`, with the
    task's metrics computed by scikit-learn / scipy (multi-label decisions at the model's thresholds)."""
    task, labels = datamodule.task, datamodule.labels
    started = time.perf_counter()
    model = task.fit_baseline(datamodule.texts("train"), datamodule.split("train").labels, labels)
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {"model": task.baseline_description, "fit_seconds": round(seconds, 3)}
    for name in splits:
        outputs = task.baseline_outputs(model, datamodule.texts(name), labels)
        scores = task.reference_scores(outputs, datamodule.split(name).labels, labels, thresholds)
        result[name] = {"examples": len(outputs), **scores}
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
            rows.append((run.task.baseline_name, split, run.baseline[split]["loss"], run.baseline[split]["metrics"]))
    return rows


def verdict(run: RunHistory) -> str | None:
    """Whether the model beat the baseline on the task's two headline metrics, on the test split when both were
    scored there, else on validation."""
    task: Task = run.task
    scored: dict[str, dict[str, dict[str, float]]] = {}
    for model, split, _, metrics in side_by_side(run):
        scored.setdefault(split, {})[model] = metrics
    split = next((s for s in ("test", "validation") if len(scored.get(s, {})) == 2), None)
    if split is None:
        return None
    name = task.baseline_name
    ours, theirs = scored[split]["ALBERT"], scored[split][name]
    better = {m: ours[m] > theirs[m] if task.higher_is_better(m) else ours[m] < theirs[m] for m in task.headline}
    wins = [m for m in task.headline if better[m]]
    if len(wins) == 2:
        outcome = f"beat the {name} baseline"
    elif not wins:
        outcome = f"did not beat the {name} baseline"
    else:
        outcome = f"beat the {name} baseline on {metric_name(wins[0])} only"
    figures = ", ".join(f"{metric_name(m)} {ours[m]:.4f} vs {theirs[m]:.4f}" for m in task.headline)
    return f"ALBERT {outcome} on the {split} split ({figures})."


def metric_name(metric: str) -> str:
    """A metric as a sentence names it."""
    return _NAMES.get(metric, metric.replace("_", " "))


_NAMES = {"f1": "macro-F1", "micro_f1": "micro-F1", "pearson": "Pearson", "spearman": "Spearman"}
