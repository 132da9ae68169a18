"""What the console says when a fit ends: what the run achieved, where its files are, and what to run next.

Built from the run folder (`history.read_run`), the same source as the model card, so the two never disagree.
"""

import shlex
from pathlib import Path

from lightning_albert.reporting.baseline import side_by_side, verdict
from lightning_albert.reporting.history import RunHistory


def fit_summary(run: RunHistory, export: Path | None) -> str:
    folder = run.folder
    facts = run.facts
    epochs = facts.get("epochs_run")
    lines = ["", f"Fit finished after {epochs} epoch{'s' if epochs != 1 else ''}" + _stop_note(run) + "."]
    if run.best is not None:
        best = run.best
        checkpoint = f" -> checkpoints/{run.best_checkpoint.name}" if run.best_checkpoint else ""
        lines.append(f"Best checkpoint: epoch {best.epoch + 1}, step {best.step}, by {run.chosen_by}{checkpoint}")
        rows = [("validation", best.val_loss, best.metrics)]
        if run.last is not None and run.last is not best:
            rows.append((f"last (epoch {run.last.epoch + 1})", run.last.val_loss, run.last.metrics))
        if run.test:
            rows.append((f"test ({run.test['examples']})", run.test["loss"], run.test["metrics"]))
        baseline = [(f"{model} {s}", loss, m) for model, s, loss, m in side_by_side(run) if model != "ALBERT"]
        rows += baseline
        lines.append(_table(rows, run.task.metrics))
        said = verdict(run)
        if said:
            lines.append(said)
        if said and "did not beat" in said and not (run.config.get("model") or {}).get("pretrained"):
            lines.append(
                "  Common from scratch on a few thousand texts. Pretraining on the same texts first can help (README: "
                "Offline quality):\n  python -m lightning_albert pretrain --config configs/pretrain.yaml "
                "--data.train_file <train>"
            )
    else:
        lines.append("No validation ran, so there is no best checkpoint.")
    lines.append(f"Run folder: {folder}")
    lines.append(f"  model card  {folder / 'README.md'}")
    if export is not None and export.is_dir():
        lines.append(f"  export      {export}  (transformers' pipeline loads it)")
    lines.append(f"  metrics     {folder / 'metrics.csv'}  (tensorboard --logdir {folder.parent})")
    config = shlex.quote(str(folder / "config.yaml"))  # commands to paste into a shell: a space must not split
    # Without a validation there is no best checkpoint: the hints name what exists (last.ckpt), or nothing.
    checkpoint = "best" if run.best_checkpoint else "last" if (folder / "checkpoints" / "last.ckpt").is_file() else None
    if checkpoint is None:
        return "\n".join(lines)
    lines.append("Next:")
    for command in ("validate", "test"):
        lines.append(f"  python -m lightning_albert {command} --config {config} --ckpt_path {checkpoint}")
    lines.append(
        f"  python -m lightning_albert predict --config {config} --ckpt_path {checkpoint} "
        "--data.predict_file <texts.csv>"
    )
    if export is not None and export.is_dir():
        lines.append(f"  python -m lightning_albert serve {shlex.quote(str(folder))}")
    return "\n".join(lines)


def _table(rows: list[tuple[str, float, dict[str, float]]], metrics: tuple[str, ...]) -> str:
    """The task's metrics, a column each (as wide as its name)."""
    width = max(len(name) for name, _, _ in rows)
    columns = ("loss", *metrics)
    widths = [max(11, len(c) + 2) for c in columns]
    out = ["  " + " " * width + "".join(f"{c:>{w}}" for c, w in zip(columns, widths))]
    for name, loss, scores in rows:
        values = [loss, *(scores[m] for m in metrics)]
        out.append(f"  {name:<{width}}" + "".join(f"{v:>{w}.4f}" for v, w in zip(values, widths)))
    return "\n".join(out)


def _stop_note(run: RunHistory) -> str:
    stop = run.facts.get("early_stopping")
    if stop:
        return (
            f" of {run.facts.get('max_epochs')}: stopped early, {stop['monitor']} did not improve for "
            f"{stop['patience']} evaluations"
        )
    return ""
