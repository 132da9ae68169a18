"""Continuing a killed or stopped fit from its checkpoint, in its own run folder, so the run reads as one.

`fit --config <run>/config.yaml --ckpt_path last` restores the weights, optimizer, schedule and loops (Lightning),
the training order mid-epoch (the StatefulDataLoader and `sampler.TrainBatchSampler`'s state) and the random
number generators (`AlbertClassifier.on_save_checkpoint`). What is left to us is the run folder: the resumed fit
logs into the checkpoint's `version_N`, and the history the killed process wrote after that checkpoint (rows of
metrics.csv, evaluations in report.json) is dropped, because the resumed fit computes it again.
"""

import csv
import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger


def run_folder_of(ckpt_path: str | Path | None) -> Path | None:
    """`<root>/lightning_logs/version_N` when the checkpoint lies in that run's `checkpoints/`, else None."""
    if not ckpt_path:
        return None
    folder = Path(ckpt_path).resolve().parent.parent
    if Path(ckpt_path).resolve().parent.name == "checkpoints" and (folder / "config.yaml").is_file():
        return folder
    return None


def continue_metrics(logger: CSVLogger, step: int) -> None:
    """Keep the rows of metrics.csv logged before optimizer step `step`, and let the logger append after them.

    Lightning's CSV writer deletes an existing metrics.csv when it opens a used folder; it is given the kept rows
    back and writes them at once, so a second kill loses nothing either.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    rows, keys = [], []
    if path.is_file():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            # A row's "step" is the optimizer steps done when it was logged, less one (Lightning's convention).
            rows = [r for r in reader if r.get("step") not in (None, "") and int(r["step"]) < step]
    writer = logger.experiment  # opening it deletes the old file
    writer.metrics = [{k: v for k, v in r.items() if v != ""} for r in rows] + writer.metrics
    writer.metrics_keys = sorted(set(writer.metrics_keys) | set(keys))
    writer.save()


def continued_report(folder: Path, step: int) -> dict[str, Any] | None:
    """report.json with the evaluations made up to optimizer step `step`, or None if there is none."""
    path = folder / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    report["evaluations"] = [e for e in report.get("evaluations", []) if e["step"] <= step]
    report.pop("test", None)
    return report


class StepCheckpoint(ModelCheckpoint):
    """Refreshes last.ckpt every N optimizer steps, except at an epoch's last step: the checkpoint the best-keeping
    ModelCheckpoint writes after that epoch's validation comes moments later and is the one to resume from."""

    def __init__(self, every_n_train_steps: int):
        super().__init__(save_top_k=0, save_last=True, every_n_train_steps=every_n_train_steps)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)


class RunConfigSaver(SaveConfigCallback):
    """Lightning's config.yaml writer, except that a resumed fit keeps the config its run started with."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        resumed = run_folder_of(self.config.get("ckpt_path"))
        if resumed is not None and resumed == Path(trainer.log_dir).resolve():
            return
        super().setup(trainer, pl_module, stage)


class RestoreTrainingOrder(Callback):
    """Give the training loader the position the checkpoint recorded, which Lightning 2.6 drops.

    Lightning loads a stateful loader's state only when it builds the loader after the restore; the model's
    `configure_optimizers` asks for `trainer.estimated_stepping_batches` (the schedule's length), which builds it
    before, so a resumed fit would start its epoch over (Lightning-AI/pytorch-lightning#20550, open). This hands
    the recorded state over at the start of training and makes the iterator again. tests/test_resume.py fails
    without it.
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        fit_loop = trainer.fit_loop
        if fit_loop.restarting and fit_loop._combined_loader_states_to_load:
            fit_loop._load_combined_loader_states()
            iter(fit_loop._data_fetcher)  # a fresh iterator, from the loaded position
