"""reporting/plots.py: what the pictures draw is the run's numbers, read back from the matplotlib figures."""

import numpy as np
import pytest
from matplotlib.image import imread

from lightning_albert.reporting.history import Evaluation, RunHistory
from lightning_albert.reporting.plots import plot_confusion_matrix, plot_learning_curves, save_png

LABELS = ["negative", "neutral", "positive"]


def _evaluation(epoch: int, val_loss: float, accuracy: float, f1: float, train_loss: float | None) -> Evaluation:
    metrics = {"accuracy": accuracy, "precision": f1 + 0.01, "recall": f1 - 0.01, "f1": f1}
    return Evaluation(epoch, 10 * (epoch + 1), val_loss, metrics, train_loss, [[3, 1, 0], [1, 2, 1], [0, 0, 4]])


def _run(tmp_path, evaluations: list[Evaluation], best: Evaluation | None) -> RunHistory:
    return RunHistory(tmp_path, {}, LABELS, evaluations, best, None)


@pytest.fixture
def three_epochs(tmp_path) -> RunHistory:
    """The last epoch was cut short (a killed run): validated, but no training loss logged for it."""
    evaluations = [
        _evaluation(0, 1.05, 0.40, 0.30, 1.10),
        _evaluation(1, 0.85, 0.62, 0.55, 0.95),
        _evaluation(2, 0.90, 0.60, 0.52, None),
    ]
    return _run(tmp_path, evaluations, evaluations[1])


def _lines(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_learning_curves_plot_each_evaluation_by_epoch_and_mark_the_best(three_epochs):
    losses, scores = plot_learning_curves(three_epochs).axes
    run = three_epochs.evaluations
    drawn = _lines(losses)
    assert drawn["training loss"] == ([1, 2], [run[0].train_loss, run[1].train_loss])  # epoch 3 has none
    assert drawn["validation loss"] == ([1, 2, 3], [e.val_loss for e in run])
    assert drawn["best checkpoint"][0] == [2, 2]  # a vertical line at the best epoch, 1-based
    drawn = _lines(scores)
    assert drawn["validation accuracy"] == ([1, 2, 3], [e.metrics["accuracy"] for e in run])
    assert drawn["validation macro F1"] == ([1, 2, 3], [e.metrics["f1"] for e in run])
    assert drawn["best checkpoint"][0] == [2, 2]
    assert scores.get_ylim() == (0, 1)
    for ax in (losses, scores):
        assert {t.get_text() for t in ax.get_legend().get_texts()} == set(_lines(ax))


def test_learning_curves_without_a_best_or_any_training_loss_draw_what_there_is(tmp_path):
    evaluations = [_evaluation(0, 1.0, 0.3, 0.2, None), _evaluation(1, 0.9, 0.4, 0.3, None)]
    losses, scores = plot_learning_curves(_run(tmp_path, evaluations, None)).axes
    assert set(_lines(losses)) == {"validation loss"}
    assert set(_lines(scores)) == {"validation accuracy", "validation macro F1"}


def test_confusion_matrix_writes_each_count_and_shades_by_the_true_class_share():
    """A class with no example (row of zeros) is shaded 0, not divided by zero."""
    confusion = [[8, 2, 0], [0, 0, 0], [1, 1, 6]]
    fig = plot_confusion_matrix(confusion, LABELS, "Validation, best checkpoint (epoch 2)")
    ax, colorbar = fig.axes
    shares = np.array([[0.8, 0.2, 0.0], [0.0, 0.0, 0.0], [1 / 8, 1 / 8, 6 / 8]])
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), shares)
    assert ax.images[0].get_clim() == (0, 1)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    counts = {(i, j): str(confusion[i][j]) for i in range(3) for j in range(3)}
    assert {k: t.get_text() for k, t in cells.items()} == counts
    # Light text on dark cells (over half the row), dark text elsewhere, so every count is readable.
    assert cells[(0, 0)].get_color() == "white" and cells[(2, 2)].get_color() == "white"
    assert cells[(0, 1)].get_color() == "black" and cells[(1, 1)].get_color() == "black"
    assert [t.get_text() for t in ax.get_xticklabels()] == LABELS
    assert [t.get_text() for t in ax.get_yticklabels()] == LABELS
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert ax.get_title() == "Validation, best checkpoint (epoch 2)"
    assert colorbar.get_ylabel() == "share of the true class"


def test_save_png_writes_a_png_of_the_figure_size_at_110_dpi(three_epochs, tmp_path):
    path = tmp_path / "pictures" / "learning_curves.png"
    fig = plot_learning_curves(three_epochs)
    assert save_png(fig, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = fig.get_size_inches() * 110
    assert imread(path).shape[:2] == (round(height), round(width))
    assert [p.name for p in path.parent.iterdir()] == ["learning_curves.png"]
