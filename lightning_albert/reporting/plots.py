"""Pictures of a run: learning curves, the best checkpoint's confusion matrix (classification) or its predicted
against true values (regression), as PNG files.

Drawn with matplotlib's object API (`Figure`, no pyplot), so no GUI backend is touched and a notebook's own
plotting setup is left alone.
"""

from pathlib import Path

from matplotlib.figure import Figure

from lightning_albert.files import atomic_write
from lightning_albert.reporting.history import RunHistory


def plot_learning_curves(run: RunHistory) -> Figure:
    """Losses (train, validation) and the task's two headline validation metrics (accuracy and macro F1 for
    single-label) per epoch, the best epoch marked."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    losses, scores = fig.subplots(1, 2)
    epochs = [e.epoch + 1 for e in run.evaluations]
    trained = [(e.epoch + 1, e.train_loss) for e in run.evaluations if e.train_loss is not None]
    if trained:
        losses.plot(*zip(*trained), marker="o", label="training loss")
    losses.plot(epochs, [e.val_loss for e in run.evaluations], marker="o", label="validation loss")
    losses.set(title="Loss", xlabel="epoch", ylabel=run.task.loss_name)
    names = [_NAMES.get(m, run.task.title(m)) for m in run.task.headline]
    values = []
    for metric, name in zip(run.task.headline, names):
        values += [e.metrics[metric] for e in run.evaluations]
        scores.plot(epochs, [e.metrics[metric] for e in run.evaluations], marker="o", label=f"validation {name}")
    low = min([0.0, *(v for v in values if v == v)])  # correlations may be negative; NaN (v != v) is not drawn
    scores.set(title=f"Validation {names[0]} and {names[1]}", xlabel="epoch", ylim=(low, 1))
    if run.best is not None:
        for ax in (losses, scores):
            ax.axvline(run.best.epoch + 1, color="grey", linestyle="--", linewidth=1, label="best checkpoint")
    for ax in (losses, scores):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_confusion_matrix(confusion: list[list[int]], labels: list[str], title: str) -> Figure:
    """Counts, rows true and columns predicted, shaded by each row's share so small classes show too."""
    n = len(labels)
    fig = Figure(figsize=(1.2 * n + 3, 1.0 * n + 2), layout="constrained")
    ax = fig.subplots()
    shares = [[c / max(sum(row), 1) for c in row] for row in confusion]
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(confusion[i][j]), ha="center", va="center",
                    color="white" if shares[i][j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    return fig


def plot_predicted_vs_true(pairs: list[list[float]], name: str, title: str) -> Figure:
    """Each text's predicted value against its true one, with the line where they are equal."""
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    predicted, true = zip(*pairs)
    ax.scatter(true, predicted, s=8, alpha=0.4)
    low, high = min(*true, *predicted), max(*true, *predicted)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="predicted = true")
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


_NAMES = {"f1": "macro F1", "accuracy": "accuracy", "micro_f1": "micro F1"}


def save_png(fig: Figure, path: Path) -> Path:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return path
