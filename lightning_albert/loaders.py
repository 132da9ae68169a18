"""DataLoaders as every DataModule here builds them: sharded by our own batch samplers over the Trainer's
processes, seeded so a resumed run draws what the run it continues drew, and workers that only pad."""

import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lightning_albert.errors import InputError


def processes(trainer) -> tuple[int, int]:
    """Data-parallel world size and this process's rank (the samplers shard the data themselves)."""
    return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)


def training_seed(seed: int | None) -> int:
    """The training order's seed: the run's (linked from seed_everything), else torch's, which that seeded."""
    return seed if seed is not None else torch.initial_seed() % 2**31


def check_shardable(name: str, rows: int, world: int) -> None:
    """Every process needs an example of each evaluation split, or the processes would wait on each other."""
    if rows < world:
        raise InputError(
            f"the {name} data has {rows} rows but there are {world} processes: give at least one row "
            "per process, or run on fewer devices."
        )


def check_max_length(max_length: int) -> None:
    if max_length < 8:
        raise InputError(f"data.max_length must be at least 8 tokens, got {max_length}.")


def loader(dataset: Dataset, batch_sampler, collate_fn, num_workers: int, stateful: bool = False) -> DataLoader:
    """A DataLoader over `batch_sampler`'s batches; `stateful` (torchdata) for training, so a checkpoint taken
    mid-epoch records where the epoch's order stands."""
    if num_workers > 0:
        # Tokenizing used the Rust thread pool; forking after that makes tokenizers < 0.23 warn and disable
        # it. The workers only pad, so switching parallelism off before the fork loses nothing.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    options: dict[str, Any] = dict(
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        # Its own generator: a loader would otherwise draw its workers' base seed from the global one each
        # epoch, and a fit resumed mid-epoch would then draw different dropout masks than the one it continues.
        generator=torch.Generator().manual_seed(0),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
    return StatefulDataLoader(dataset, **options) if stateful else DataLoader(dataset, **options)
