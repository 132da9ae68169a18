"""Continuing a killed or stopped fit from its checkpoint, in its own run folder, so the run reads as one.

`fit --config <run>/config.yaml --ckpt_path last` (and `pretrain` alike) restores the weights, optimizer, schedule
and loops (Lightning), the training order mid-epoch (the StatefulDataLoader and `sampler.TrainBatchSampler`'s
state), and what each process holds (`save_process_states`: its random streams and its share of the training-loss
sums). What is left to us is the run folder: the resumed fit logs into the checkpoint's `version_N`, and the
history the killed process wrote after that checkpoint (rows of metrics.csv, evaluations in report.json) is
dropped, because the resumed fit computes it again.
"""

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger


def run_folder_of(ckpt_path: str | Path | None) -> Path | None:
    """`<root>/lightning_logs/version_N` when the checkpoint lies in that run's `checkpoints/`, else None."""
    if not ckpt_path:
        return None
    folder = Path(ckpt_path).resolve().parent.parent
    if Path(ckpt_path).resolve().parent.name == "checkpoints" and (folder / "config.yaml").is_file():
        return folder
    return None


def remove_refused_run_folder(trainer: Trainer, ckpt_path: str | None) -> None:
    """A run refused once its Trainer was built (a bad row found in setup) leaves no `version_N` behind: only a
    folder this process made (not a resumed run's), and only while it holds nothing but the loggers' first files."""
    if not trainer.loggers or not trainer.is_global_zero:
        return
    folder = Path(trainer.loggers[0].log_dir)  # not trainer.log_dir: it broadcasts, and the other ranks are gone
    made_here = {"config.yaml", "hparams.yaml"}
    if (
        folder.is_dir()
        and folder.resolve() != run_folder_of(ckpt_path)
        and all(p.name in made_here or p.name.startswith("events.out.tfevents.") for p in folder.iterdir())
    ):
        shutil.rmtree(folder)
        if not any(folder.parent.iterdir()):
            folder.parent.rmdir()  # lightning_logs/, when this was its first run


def continue_metrics(logger: CSVLogger, step: int) -> None:
    """Keep the rows of metrics.csv logged before optimizer step `step`, and let the logger append after them.

    Lightning's CSV writer deletes an existing metrics.csv when it opens a used folder; the kept rows are logged
    to it again (as the text they were) and written at once, so a second kill loses nothing either.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            # A row's "step" is the optimizer steps done when it was logged, less one (Lightning's convention).
            rows = [r for r in csv.DictReader(f) if r.get("step") not in (None, "") and int(r["step"]) < step]
    writer = logger.experiment  # opening it deletes the old file
    for row in rows:
        writer.log_metrics({k: v for k, v in row.items() if v != "" and k != "step"}, int(row["step"]))
    writer.save()


def continue_run_folder(trainer: Trainer, ckpt_path: str | None, checkpoint: dict[str, Any] | None) -> None:
    """Resuming in the checkpoint's own run folder: keep its metrics.csv up to the checkpoint, and say so."""
    resumed = run_folder_of(ckpt_path)
    csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    if resumed and csv_logger and Path(csv_logger.log_dir).resolve() == resumed and trainer.is_global_zero:
        step = checkpoint["global_step"]
        continue_metrics(csv_logger, step)
        print(
            f"Resuming {resumed} at optimizer step {step} (epoch {checkpoint['epoch'] + 1}); its history up to that "
            "step is kept."
        )


def continued_report(folder: Path, step: int) -> dict[str, Any] | None:
    """report.json with the evaluations made up to optimizer step `step`, or None if there is none."""
    path = folder / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    report["evaluations"] = [e for e in report.get("evaluations", []) if e["step"] <= step]
    report.pop("test", None)
    return report


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


INTERRUPTED_VALIDATION = "interrupted_validation"  # set in a checkpoint saved part-way through fit's validation


def rerun_interrupted_validation(checkpoint: dict[str, Any]) -> None:
    """Make a checkpoint saved between two batches of fit's validation resume by running that validation again.

    Lightning resumes a validation only from a checkpoint saved inside one of its batches (the validation loop's
    progress then has one batch started but not processed); saved between batches, where a signal stops the loop,
    the progress reads as finished, and the resumed fit would go on to the next epoch without that epoch's
    metrics, checkpoint decision or card row. The validation runs again in full (its metric states are not in the
    checkpoint, so a partial one could not be completed).
    """
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    total = progress["total"]
    total["processed"] = total["completed"] = total["started"] - 1  # what Lightning reads as "mid-evaluation"
    # From its first batch: the resumed loop counts the current run's batches as already fetched.
    progress["current"] = {key: 0 for key in progress["current"]}
    checkpoint[INTERRUPTED_VALIDATION] = True
