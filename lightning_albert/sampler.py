"""Which example indices form each batch: shuffled or length-grouped for training, length-sorted for evaluation.

Both samplers shard over data-parallel processes themselves (give them `num_replicas` and `rank`), so a Trainer
using them runs with `use_distributed_sampler=False`: Lightning would otherwise try to rebuild them around a
DistributedSampler, which `TrainBatchSampler` refuses with a TypeError saying so.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def _as_lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Lengths as a 1-D integer array; anything else (Lightning passing a sampler in their place) is refused."""
    array = np.asarray(lengths)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(
            f"`lengths` must be a 1-D sequence of integers (one token count per example), got {type(lengths).__name__}."
            " These batch samplers shard over processes themselves: run the Trainer with use_distributed_sampler=False."
        )
    if array.size == 0:
        raise ValueError("There are no examples to batch.")
    return array.astype(np.int64)


def _check_replicas(batch_size: int, num_replicas: int, rank: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, num_replicas), got rank={rank}, num_replicas={num_replicas}.")


class TrainBatchSampler(Sampler[list[int]]):
    """Training batches: a fresh permutation every epoch, optionally grouped by length, sharded over processes.

    Every process builds the same global list of batches from a generator seeded with `seed + epoch` and takes
    every `num_replicas`-th batch from `rank` on, so the processes agree without communicating and every one of
    them gets the same number of batches.

    Epochs: call `set_epoch(epoch)` before each epoch, as with DistributedSampler; the order stays the same
    otherwise. Lightning 2.6 calls `set_epoch` on `dataloader.batch_sampler.sampler` (never on the batch sampler
    itself; `lightning.fabric.utilities.data._set_sampler_epoch`), which is why `sampler` points here.

    Resuming mid-epoch, with torchdata's `StatefulDataLoader(dataset, batch_sampler=this)`: the loader calls
    `state_dict()` on this sampler and saves it inside its own state; `loader.load_state_dict(state)` calls
    `load_state_dict` on it when the next iterator is built, then `iter()` on it, which yields the rest of the
    saved epoch. `batches_yielded` counts the batches this sampler handed to the loader, before it hands the
    next: with `num_workers=0` that is exactly the batches the loader delivered. With workers the sampler runs
    ahead of the loader (prefetching), so its own `state_dict()` is not where training stands; the loader
    records it at the moment each batch is handed to a worker and keeps the record of the last batch it
    delivered. Save and load the loader's state, not the sampler's. A state saved after the last batch of an
    epoch resumes at the start of the next.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        group_by_length: bool = False,
        seed: int = 42,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        mega_batch_mult: int = 50,
    ):
        """
        Args:
            lengths: token count of every example; only their order matters, to group similar lengths.
            batch_size: examples per batch on each process.
            group_by_length: batch examples of similar length, so that batches pad little (fast); otherwise
                consecutive slices of a random permutation, as a shuffled DataLoader does (seed-faithful).
            seed: the permutation of epoch `e` is drawn from a generator seeded with `seed + e`.
            num_replicas: data-parallel processes (world size).
            rank: this process's index among them.
            drop_last: drop the last, partial batch, and the batches that do not divide evenly over the
                processes; otherwise keep the partial batch and repeat batches from the start of the epoch
                until they divide evenly (a few examples are seen twice, as with DistributedSampler).
            mega_batch_mult: with `group_by_length`, examples are sorted by length within windows of at most
                `mega_batch_mult * batch_size` of the permutation; wider windows pad less but vary less.
        """
        self.lengths = _as_lengths(lengths)
        _check_replicas(batch_size, num_replicas, rank)
        if mega_batch_mult < 1:
            raise ValueError(f"mega_batch_mult must be at least 1, got {mega_batch_mult}.")
        self.batch_size = batch_size
        self.group_by_length = group_by_length
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.mega_batch_mult = mega_batch_mult
        self.epoch = 0
        self.batches_yielded = 0  # in the current epoch, counted before each batch is handed out
        self._resume = False  # the next __iter__ continues the epoch from batches_yielded

    @property
    def sampler(self) -> "TrainBatchSampler":
        """Where Lightning looks for `set_epoch` (see the class docstring)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s order next. The same epoch again keeps a resume point that was loaded for it."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches_yielded = 0
            self._resume = False

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All processes' batches of `epoch`, in order; process `rank` takes every `num_replicas`-th from `rank`."""
        n, size = len(self.lengths), self.batch_size
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator).numpy()
        if self.group_by_length:
            # As transformers' get_length_grouped_indices (trainer_pt_utils.py): sort by length, descending,
            # within mega-batches of the permutation, and use at most mega_batch_mult batches per mega-batch but
            # keep at least 4 mega-batches, so that tiny data sets still draw different batches each epoch.
            mega = max(1, min(self.mega_batch_mult, n // (4 * size))) * size
            order = np.concatenate(
                [w[np.argsort(-self.lengths[w], kind="stable")] for w in np.split(order, list(range(mega, n, mega)))]
            )
        # Mega-batches are whole batches, so the only partial batch is the last slice.
        batches = [order[i : i + size].tolist() for i in range(0, n, size)]
        if self.drop_last and len(batches[-1]) < size:
            batches.pop()
        if self.group_by_length and batches:
            # Unlike transformers, shuffle the batches (same generator), or each mega-batch starts long and ends
            # short; then put the num_replicas batches with the longest examples first, one for each process, so
            # that an out-of-memory shows at the first step rather than hours in.
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
            longest = np.argsort([-self.lengths[b].max() for b in batches], kind="stable")[: self.num_replicas]
            rest = set(range(len(batches))) - set(longest.tolist())
            batches = [batches[i] for i in longest] + [batches[i] for i in sorted(rest)]
        remainder = len(batches) % self.num_replicas
        if self.drop_last and remainder:
            batches = batches[: len(batches) - remainder]
        elif remainder:
            batches += [batches[i % len(batches)] for i in range(self.num_replicas - remainder)]
        return batches

    def __len__(self) -> int:
        """Batches this process yields per epoch (the same on every process)."""
        batches = len(self.lengths) // self.batch_size if self.drop_last else -(-len(self.lengths) // self.batch_size)
        return batches // self.num_replicas if self.drop_last else -(-batches // self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: nothing is read until the first batch is asked for, so a set_epoch between iter() and
        # next() (Lightning's order for the first epoch after a (re)start) still applies.
        batches = self.global_batches(self.epoch)[self.rank :: self.num_replicas]
        start = self.batches_yielded if self._resume else 0
        self._resume = False
        self.batches_yielded = start
        for batch in batches[start:]:
            self.batches_yielded += 1  # before the yield: a state_dict taken right after this batch counts it
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Where this sampler stands: the epoch, its seed, and the batches handed out in it so far."""
        return {"epoch": self.epoch, "seed": self.seed, "batches_yielded": self.batches_yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`: the next `__iter__` yields the rest of its epoch (its seed wins over ours)."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.batches_yielded = int(state["batches_yielded"])
        self._resume = True
        if self.batches_yielded >= len(self):  # saved after the epoch's last batch: the next epoch is due
            self.set_epoch(self.epoch + 1)


class EvalBatchSampler(Sampler[list[int]]):
    """Validation, test and predict batches: every example exactly once over all processes, no state.

    Metrics under DDP sum their states over processes, so a repeated example would count twice; and every
    process must run the same number of steps, or the collectives of the last step wait forever. So the
    examples are split into `len(self) * num_replicas` batches of nearly equal size (at most `batch_size`,
    never empty) and dealt to the processes in turn.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        sort_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        """
        Args:
            lengths: token count of every example.
            batch_size: at most this many examples per batch on each process.
            sort_by_length: order the examples by length, longest first, so that each batch pads little and
                the first batch is the largest; dealing batches in turn balances the processes' work. Otherwise
                input order.
            num_replicas: data-parallel processes (world size).
            rank: this process's index among them.
        """
        self.lengths = _as_lengths(lengths)
        _check_replicas(batch_size, num_replicas, rank)
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.num_replicas = num_replicas
        self.rank = rank
        # No `drop_last` attribute on purpose: Lightning's predict path would then try to rebuild this class.
        n = len(self.lengths)
        if n < num_replicas:
            raise ValueError(
                f"{n} examples cannot be split over {num_replicas} processes without repeating one:"
                " use fewer devices for evaluation or more examples."
            )
        # ceil(n / (batch_size * num_replicas)) batches each; they can all be non-empty unless batch_size is 1.
        self.num_batches = -(-n // (batch_size * num_replicas))
        if self.num_batches * num_replicas > n:
            raise ValueError(
                f"{n} examples in batches of {batch_size} cannot give each of {num_replicas} processes the same"
                " number of batches without an empty one: use a batch size of at least 2."
            )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        order = np.argsort(-self.lengths, kind="stable") if self.sort_by_length else np.arange(n)
        batches = np.array_split(order, self.num_batches * self.num_replicas)  # sizes differ by at most 1
        for batch in batches[self.rank :: self.num_replicas]:
            yield batch.tolist()
