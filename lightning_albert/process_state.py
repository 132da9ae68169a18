"""What each process holds that an exact resume needs, saved in and restored from every checkpoint: its random
streams (Python, NumPy, torch, CUDA) and its share of the epoch's training-loss sums."""

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule

from lightning_albert.resume import INTERRUPTED_VALIDATION

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
    try:
        fitting = module.trainer.state.fn == "fit"
    except RuntimeError:  # no Trainer: `AlbertClassifier.load_from_checkpoint(path)` in a notebook
        fitting = False
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
