"""Pictures of a run: learning curves and the best checkpoint's confusion matrix, as PNG files.

Drawn with matplotlib's object API (`Figure`, no pyplot), so no GUI backend is touched and a notebook's own
plotting setup is left alone.
"""

from pathlib import Path

from matplotlib.figure import Figure

from lightning_albert.files import atomic_write
from lightning_albert.reporting.history import RunHistory


def plot_learning_curves(run: RunHistory) -> Figure:
    """Losses (train, validation) and validation accuracy / F1 per epoch, the best epoch marked."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    losses, scores = fig.subplots(1, 2)
    epochs = [e.epoch + 1 for e in run.evaluations]
    trained = [(e.epoch + 1, e.train_loss) for e in run.evaluations if e.train_loss is not None]
    if trained:
        losses.plot(*zip(*trained), marker="o", label="training loss")
    losses.plot(epochs, [e.val_loss for e in run.evaluations], marker="o", label="validation loss")
    losses.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    for metric in ("accuracy", "f1"):
        name = "accuracy" if metric == "accuracy" else "macro F1"
        scores.plot(epochs, [e.metrics[metric] for e in run.evaluations], marker="o", label=f"validation {name}")
    scores.set(title="Validation accuracy and macro F1", xlabel="epoch", ylim=(0, 1))
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


def save_png(fig: Figure, path: Path) -> Path:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return path
