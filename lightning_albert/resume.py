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
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger

from lightning_albert.errors import InputError


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


class LastCheckpoint(ModelCheckpoint):
    """The one writer of `last.ckpt`: after every training epoch, and every N optimizer steps when asked.

    Lightning 2.6's `save_last` writes last.ckpt only at a step where the ModelCheckpoint also wrote another
    checkpoint (a new best), so on its own last.ckpt is the last improvement, not the last epoch: a kill would
    lose every epoch since, and `--ckpt_path last` after a fit would not be its final weights. This one writes
    it regardless. Put last among the callbacks (`use_last_checkpoint`), so what it saves includes the
    best-keeping ModelCheckpoint's record of the epoch that just ended.
    """

    def __init__(self, every_n_train_steps: int | None = None):
        # No version counter: last.ckpt is replaced in place (atomically), never kept beside as last-v1.ckpt.
        super().__init__(
            save_top_k=0, save_last=True, every_n_train_steps=every_n_train_steps, enable_version_counter=False
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Not at an epoch's last step: the epoch-end save comes moments later, after that epoch's validation.
        if batch_idx + 1 != trainer.num_training_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # On every process (each takes part in a save); after the epoch's validation, which runs inside its last
        # batch. ModelCheckpoint's own epoch-end logic would save nothing here: it keeps no top-k.
        if not trainer.fast_dev_run:
            self.last_model_path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
            # ModelCheckpoint's own save, not trainer.save_checkpoint: loggers hear of it (W&B's log_model uploads).
            self._save_checkpoint(trainer, self.last_model_path)


def add_checkpoint_arguments(parser: LightningArgumentParser, command: str, monitor: str, mode: str) -> None:
    """The settings of the best-keeping checkpoint and of last.ckpt, which fit and pretrain share."""
    parser.add_argument(
        "--save_every_n_steps",
        type=int | None,
        default=None,
        help=f"Also write checkpoints/last.ckpt every N optimizer steps, so a killed {command} resumes mid-epoch "
        f"({command} --ckpt_path last) and loses at most N steps. Off when unset: last.ckpt is written every epoch.",
    )
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.set_defaults(
        {
            "checkpoint.monitor": monitor,
            "checkpoint.mode": mode,
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-epoch={epoch}-step={step}",
            "checkpoint.auto_insert_metric_name": False,
        }
    )


def last_checkpoint(config: dict[str, Any]) -> LastCheckpoint | None:
    """The writer of last.ckpt a fit or pretrain config asks for (`checkpoint.save_last`, `save_every_n_steps`).

    `save_last: link` is refused: Lightning's link points at the last checkpoint it saved, the best one, so
    `--ckpt_path last` would resume from the last improvement instead of the last epoch.
    """
    if config["checkpoint"]["save_last"] == "link":
        raise InputError(
            "checkpoint.save_last: link is not supported (last.ckpt is a copy written after every epoch, so a "
            "resume loses no epoch): set it to true, or false for no last.ckpt."
        )
    if config["checkpoint"]["save_last"] or config["save_every_n_steps"]:
        return LastCheckpoint(config["save_every_n_steps"])
    return None


def use_last_checkpoint(trainer: Trainer, last: LastCheckpoint) -> None:
    """Make `last` the one writer of last.ckpt, after the best-keeping ModelCheckpoint.

    Last, so `trainer.checkpoint_callback` (the first ModelCheckpoint) stays the one that keeps the best, and so
    the epoch's last.ckpt comes after the best one's save. The best-keeping one writes no last.ckpt of its own.
    """
    trainer.callbacks = [c for c in trainer.callbacks if c is not last] + [last]
    if isinstance(trainer.checkpoint_callback, ModelCheckpoint) and trainer.checkpoint_callback is not last:
        trainer.checkpoint_callback.save_last = False


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


TRAIN_LOSS_STATE = ("train_loss.mean_value", "train_loss.weight")  # the MeanMetric's sums, in the state dict


def save_process_states(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Put into `checkpoint` what each process holds that a resume needs: its random streams and its share of the
    epoch's training-loss sums (the module's `train_loss` MeanMetric).

    Rank 0 alone writes the file, but Lightning calls `on_save_checkpoint` on every process (each saves together),
    so what the others hold is gathered here. A single process gathers only its own.
    """
    # Random streams differ per process: dropout draws as many numbers as its input has, and batch shapes differ.
    checkpoint["rng_states"] = _gather_objects(random_states())
    state = checkpoint["state_dict"]
    own = {key: state[key].detach().cpu() for key in TRAIN_LOSS_STATE if key in state}
    # Each process's own sums: a resume on as many processes restores them as they were, so the epoch's mean
    # adds the same floats in the same order as the uninterrupted run (summing first changes the last bit).
    checkpoint["train_loss_per_process"] = _gather_objects(own)
    for key in own:  # summed over processes, for a resume on another number of them: rank 0 takes the sums
        state[key] = module.trainer.strategy.reduce(state[key].clone(), reduce_op="sum")


def restore_process_states(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """The other half of `save_process_states`, called from `on_load_checkpoint` (before the weights load)."""
    fitting = module.trainer.state.fn == "fit"
    states = checkpoint.get("rng_states")
    if states and fitting:
        # One per process (a dict alone in checkpoints before 2026-12): this process's own, where it has one.
        states = states if isinstance(states, dict) else states[module.global_rank % len(states)]
        set_random_states(states)
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    # Taken at the end of an epoch (after its validation), a resumed fit starts the next epoch, whose
    # training-loss mean must not start from this epoch's sums (Lightning skips on_train_epoch_start then).
    # Mid-epoch, or during the epoch's validation (which the resumed fit runs again before the epoch ends), each
    # process takes back its own sums; on another number of processes, or from a checkpoint without them, rank 0
    # carries all processes' sums alone.
    epoch_done = progress.get("is_last_batch") and not checkpoint.get(INTERRUPTED_VALIDATION)
    state = checkpoint["state_dict"]
    per_process = checkpoint.get("train_loss_per_process")
    if fitting and not epoch_done and per_process and len(per_process) == module.trainer.world_size:
        state.update(per_process[module.global_rank])
    elif epoch_done or (fitting and module.global_rank != 0):
        for key in TRAIN_LOSS_STATE:
            if key in state:
                state[key] = torch.zeros_like(state[key])


def _gather_objects(value: Any) -> list[Any]:
    """`value` from every process, in rank order: all processes must call it (one item without distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def random_states() -> dict[str, Any]:
    """torch's CPU and CUDA generators, numpy's and Python's, as tensors and plain values (safe to unpickle)."""
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": _python_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal.tolist()), gauss_next))


def _numpy_state() -> list:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]


def _python_state() -> list:
    version, internal, gauss_next = random.getstate()
    return [version, torch.tensor(internal, dtype=torch.int64), gauss_next]
