"""Finding and reading the checkpoints of a finished run, in a process other than the one that trained, and
writing them without holding a second copy in memory.

Lightning resolves `--ckpt_path best` only inside the process that trained. Here `best` and `last` mean those
of the run whose folder holds the `--config` given (Lightning writes `config.yaml` into the run folder), so
`test --config runs/x/lightning_logs/version_0/config.yaml --ckpt_path best` works from any later process.
"""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_albert.errors import InputError
from lightning_albert.files import atomic_write

DATA_STATE_KEY = "TextClassificationDataModule"  # where Lightning stores the DataModule's state_dict


def load_checkpoint(path: str | Path, key: str = "checkpoint") -> dict[str, Any]:
    """Read a checkpoint on the CPU without running pickled code; mmap keeps large ones cheap.

    Only tensors and plain values are unpickled (`weights_only=True`): a checkpoint from someone else cannot run
    code here. A refused, truncated or foreign file gets one line that says which, and never the advice torch
    gives to turn the safe load off.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{key}: no such checkpoint file '{path}'.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise InputError(
            f"{key}: refused '{path}': it holds pickled Python objects other than tensors and plain values, and "
            "unpickling them could run code. lightning_albert only loads checkpoints it can read safely; use a "
            "checkpoint written by lightning_albert, or export the model from a source you trust."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        raise InputError(
            f"{key}: '{path}' is truncated or not a PyTorch checkpoint (it could not be read as one). "
            "Was it copied completely?"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"{key}: '{path}' is not a Lightning checkpoint (it has no state_dict).")
    return checkpoint


def resolve_checkpoint(value: str | None, config_files: list[Any]) -> str | None:
    """Turn `best` / `last` into a path inside the run folder of the given `--config`; check plain paths exist."""
    if value is None:
        return None
    if value not in ("best", "last"):
        path = Path(value)
    else:
        folder = run_checkpoints_folder(config_files)
        path = folder / "last.ckpt"
        if value == "last" and not path.is_file():
            raise InputError(f"--ckpt_path last: {folder} has no last.ckpt (was checkpoint.save_last off?).")
        if value == "best":
            path = best_checkpoint(folder)
    if path.is_dir():
        inside = ", ".join(p.name for p in sorted(path.glob("*.ckpt"))[:4]) or "no .ckpt file"
        raise InputError(
            f"--ckpt_path: '{path}' is a folder ({inside}); give a checkpoint file, or best / last with the run's "
            "--config."
        )
    if not path.is_file():
        raise InputError(f"--ckpt_path: no such checkpoint file '{path}'.")
    return str(path)


def run_checkpoints_folder(config_files: list[Any]) -> Path:
    """The `checkpoints/` folder beside the run's `config.yaml`."""
    for config in reversed(config_files or []):
        folder = Path(str(config)).resolve().parent / "checkpoints"
        if folder.is_dir():
            return folder
    for config in reversed(config_files or []):
        run = Path(str(config)).resolve().parent
        if Path(str(config)).name == "config.yaml" and run.name.startswith("version_"):  # a run's own config
            raise InputError(
                f"--ckpt_path best/last: {run} has no checkpoint yet (the run stopped before saving its first): "
                "start it again without --ckpt_path."
            )
    given = ", ".join(str(c) for c in config_files) if config_files else "no --config"
    raise InputError(
        f"--ckpt_path best/last names a checkpoint of a finished run, but {given} is not in a run folder with "
        "checkpoints/. Pass that run's config, e.g. --config runs/quickstart/lightning_logs/version_0/config.yaml, "
        "or give the checkpoint's path."
    )


def find_best_checkpoint(folder: Path) -> Path | None:
    """The best checkpoint as recorded by ModelCheckpoint's state in last.ckpt, else the only `best-*` file."""
    last = folder / "last.ckpt"
    if last.is_file():
        for key, state in load_checkpoint(last).get("callbacks", {}).items():
            if key.startswith("ModelCheckpoint") and state.get("best_model_path"):
                # Look it up by name in this folder: the run may have been moved since it was written.
                best = folder / Path(state["best_model_path"]).name
                if best.is_file():
                    return best
    candidates = sorted(folder.glob("best-*.ckpt"))
    return candidates[0] if len(candidates) == 1 else None


def best_checkpoint(folder: Path) -> Path:
    """`find_best_checkpoint`, or an error that says why there is none."""
    best = find_best_checkpoint(folder)
    if best is not None:
        return best
    candidates = sorted(folder.glob("best-*.ckpt"))
    raise InputError(
        f"--ckpt_path best: cannot tell which checkpoint in {folder} is the best "
        f"({len(candidates)} best-*.ckpt files and no record in last.ckpt). Give the checkpoint's path."
    )


class StreamingCheckpointIO(TorchCheckpointIO):
    """Writes a local checkpoint straight into a temporary file beside it, then renames it into place.

    Lightning's own writer serializes the whole checkpoint into memory first (for object stores), so every save
    briefly holds one more copy of the weights and optimizer state: +134 MB of peak memory for albert-base with
    AdamW, gigabytes for the larger ALBERTs. The rename keeps the write atomic: a kill mid-save leaves the previous
    file. Remote paths (s3://, ...) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)


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
            # ModelCheckpoint's own (protected, for subclasses) save, not trainer.save_checkpoint: loggers hear of it
            # (W&B's log_model uploads). tests/test_private_api.py fails if it goes.
            self._save_checkpoint(trainer, self.last_model_path)


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


def last_checkpoint_path(trainer: Trainer) -> Path:
    """Where `--ckpt_path last` looks: the ModelCheckpoint's `last.ckpt` (`<run>/checkpoints/` by default)."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    # Not trainer.log_dir: it broadcasts, and this runs on one rank alone too.
    run = trainer.loggers[0].log_dir if trainer.loggers else None
    return Path(run or trainer.default_root_dir) / "checkpoints" / "last.ckpt"
