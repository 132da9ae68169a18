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
from lightning.pytorch import Trainer
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


def stream_checkpoints(trainer: Trainer) -> None:
    """Use StreamingCheckpointIO where the strategy would use Lightning's plain one (not where a user set theirs)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = StreamingCheckpointIO()
