"""Writing a run's report: the model card (`README.md`) and its pictures, from the run folder alone.

    python -m lightning_albert report <run folder>

Run at the end of every fit; run it by hand to re-render the card of a finished (or killed) run.
"""

import argparse
from pathlib import Path

from lightning_albert.files import atomic_write
from lightning_albert.reporting.card import LEARNING_CURVES, plot_files, render_card
from lightning_albert.reporting.history import read_run


def write_report(folder: str | Path) -> Path:
    """Render `README.md`, `learning_curves.png` and the task's pictures of the best validation and the test split
    (`confusion_matrix.png`, `test_confusion_matrix.png`; regression: `predicted_vs_true.png`) into the run folder."""
    # matplotlib is imported here, not with the package: commands that draw nothing do not pay for it.
    from lightning_albert.reporting.plots import plot_learning_curves, save_png

    run = read_run(folder)
    task, validation_file, test_file = run.task, *plot_files(run.task)
    if run.evaluations:
        save_png(plot_learning_curves(run), run.folder / LEARNING_CURVES)
    figure = None
    if validation_file and run.best is not None and run.labels:
        figure = task.plot(run.best.record, run.labels, f"Validation, best checkpoint (epoch {run.best.epoch + 1})")
    if figure is not None:
        save_png(figure, run.folder / validation_file)
    figure = None
    if test_file and run.test and run.labels:
        title = f"Test split, best checkpoint (epoch {run.best.epoch + 1})" if run.best else "Test split"
        figure = task.plot(run.test, run.labels, title)
    if figure is not None:
        save_png(figure, run.folder / test_file)
    card = run.folder / "README.md"
    with atomic_write(card, encoding="utf-8") as f:
        f.write(render_card(run))
    return card


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lightning_albert report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder: runs/<name>/lightning_logs/version_N")
    args = parser.parse_args(argv)
    print(f"Wrote {write_report(args.run)}")
