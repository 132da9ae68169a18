"""Writing a run's report: the model card (`README.md`) and its pictures, from the run folder alone.

    python -m lightning_albert report <run folder>

Run at the end of every fit; run it by hand to re-render the card of a finished (or killed) run.
"""

import argparse
from pathlib import Path

from lightning_albert.files import atomic_write
from lightning_albert.reporting.card import render_card
from lightning_albert.reporting.history import read_run


def write_report(folder: str | Path) -> Path:
    """Render `README.md`, `learning_curves.png`, `confusion_matrix.png` (and the test split's) into the run folder."""
    # matplotlib is imported here, not with the package: commands that draw nothing do not pay for it.
    from lightning_albert.reporting.plots import plot_confusion_matrix, plot_learning_curves, save_png

    run = read_run(folder)
    if run.evaluations:
        save_png(plot_learning_curves(run), run.folder / "learning_curves.png")
    if run.best is not None and run.best.confusion_matrix and run.labels:
        title = f"Validation, best checkpoint (epoch {run.best.epoch + 1})"
        save_png(
            plot_confusion_matrix(run.best.confusion_matrix, run.labels, title), run.folder / "confusion_matrix.png"
        )
    if run.test and run.labels:
        title = f"Test split, best checkpoint (epoch {run.best.epoch + 1})" if run.best else "Test split"
        save_png(
            plot_confusion_matrix(run.test["confusion_matrix"], run.labels, title),
            run.folder / "test_confusion_matrix.png",
        )
    card = run.folder / "README.md"
    with atomic_write(card, encoding="utf-8") as f:
        f.write(render_card(run))
    return card


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lightning_albert report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder: runs/<name>/lightning_logs/version_N")
    args = parser.parse_args(argv)
    print(f"Wrote {write_report(args.run)}")
