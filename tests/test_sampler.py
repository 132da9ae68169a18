"""Batch samplers: coverage per epoch and per process, determinism, length grouping, exact resume."""

import csv
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import PHRASEBANK
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset, SequentialSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from lightning_albert.sampler import EvalBatchSampler, TrainBatchSampler


def phrasebank_lengths() -> np.ndarray:
    """Words per training text of the real data: realistic, skewed lengths (2 to 81, median 21)."""
    with open(PHRASEBANK / "train.csv", newline="", encoding="utf-8") as f:
        return np.array([len(row["text"].split()) for row in csv.DictReader(f)])


def ranks(cls, lengths, num_replicas: int, **kwargs) -> list[list[list[int]]]:
    """The batches each simulated process gets: one sampler per rank, as each DDP process builds its own."""
    return [list(cls(lengths, num_replicas=num_replicas, rank=r, **kwargs)) for r in range(num_replicas)]


def padded_share(batches: list[list[int]], lengths: np.ndarray) -> float:
    """Share of the tokens in padded batches that are padding."""
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1 - sum(int(lengths[b].sum()) for b in batches) / padded


# ---- TrainBatchSampler: coverage ----


@pytest.mark.parametrize("group_by_length", [False, True])
@pytest.mark.parametrize("n", [40, 37])  # 5 batches of 8 either way: an odd count over 2 processes
def test_train_one_process_sees_each_example_once_per_epoch(n, group_by_length):
    lengths = np.random.default_rng(0).integers(1, 100, n)
    batches = list(TrainBatchSampler(lengths, 8, group_by_length=group_by_length))
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert [len(b) for b in batches].count(8) == n // 8  # the one partial batch is kept
    dropped = list(TrainBatchSampler(lengths, 8, group_by_length=group_by_length, drop_last=True))
    assert all(len(b) == 8 for b in dropped) and len({i for b in dropped for i in b}) == n // 8 * 8


@pytest.mark.parametrize("group_by_length", [False, True])
@pytest.mark.parametrize("n", [32, 29])  # 4 batches of 8: divides evenly over 2 processes, whole or partial
def test_train_two_ranks_cover_each_example_exactly_once_when_batches_divide(n, group_by_length):
    per_rank = ranks(TrainBatchSampler, np.arange(1, n + 1), 2, batch_size=8, group_by_length=group_by_length)
    assert len(per_rank[0]) == len(per_rank[1]) == 2
    assert sorted(i for batches in per_rank for b in batches for i in b) == list(range(n))


@pytest.mark.parametrize("group_by_length", [False, True])
@pytest.mark.parametrize("n", [40, 37, 3])  # 5, 5 and 1 batches over 2 processes: one batch is repeated
def test_train_two_ranks_pad_with_the_first_batch_or_drop_the_remainder(n, group_by_length):
    lengths = np.random.default_rng(1).integers(1, 100, n)
    per_rank = ranks(TrainBatchSampler, lengths, 2, batch_size=8, group_by_length=group_by_length)
    assert len(per_rank[0]) == len(per_rank[1]) == -(-n // 16)
    counts = Counter(i for batches in per_rank for b in batches for i in b)
    assert set(counts) == set(range(n))  # every example at least once
    repeated = sorted(i for i, c in counts.items() if c == 2)
    assert max(counts.values()) == 2 and repeated == sorted(per_rank[0][0])  # the epoch's first batch, once more

    per_rank = ranks(TrainBatchSampler, lengths, 2, batch_size=8, group_by_length=group_by_length, drop_last=True)
    assert len(per_rank[0]) == len(per_rank[1]) == n // 16
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) == n // 16 * 16  # whole batches only, none twice


def test_train_len_is_what_every_rank_yields():
    lengths = np.random.default_rng(2).integers(1, 50, 41)
    for n in range(1, 42):
        for num_replicas in (1, 2, 3):
            for drop_last in (False, True):
                for group_by_length in (False, True):
                    kwargs = dict(batch_size=8, drop_last=drop_last, group_by_length=group_by_length)
                    per_rank = ranks(TrainBatchSampler, lengths[:n], num_replicas, **kwargs)
                    expected = len(TrainBatchSampler(lengths[:n], **kwargs, num_replicas=num_replicas))
                    assert [len(b) for b in per_rank] == [expected] * num_replicas, (n, num_replicas, kwargs)
                    assert all(1 <= len(b) <= 8 for batches in per_rank for b in batches)


# ---- TrainBatchSampler: order ----


@pytest.mark.parametrize("group_by_length", [False, True])
def test_train_order_depends_on_seed_and_epoch_only(group_by_length):
    lengths = phrasebank_lengths()

    def epoch(seed: int, e: int) -> list[list[int]]:
        sampler = TrainBatchSampler(lengths, 8, group_by_length=group_by_length, seed=seed)
        sampler.set_epoch(e)
        return list(sampler)

    assert epoch(42, 0) == epoch(42, 0)  # fresh samplers: nothing but seed and epoch decide
    assert epoch(42, 1) != epoch(42, 0)
    assert epoch(43, 0) != epoch(42, 0)
    sampler = TrainBatchSampler(lengths, 8, group_by_length=group_by_length)
    assert list(sampler) == list(sampler)  # without set_epoch the epoch repeats, as with DistributedSampler


def test_random_batches_are_slices_of_a_permutation_seeded_with_seed_plus_epoch():
    sampler = TrainBatchSampler(np.ones(20, dtype=int), 8, seed=40)
    sampler.set_epoch(2)
    permutation = torch.randperm(20, generator=torch.Generator().manual_seed(42)).tolist()
    assert list(sampler) == [permutation[:8], permutation[8:16], permutation[16:]]


def test_length_grouping_pads_far_less_than_random_batches_on_real_texts():
    lengths = phrasebank_lengths()
    random_share = padded_share(list(TrainBatchSampler(lengths, 8)), lengths)
    grouped_share = padded_share(list(TrainBatchSampler(lengths, 8, group_by_length=True)), lengths)
    assert random_share > 0.3  # measured 0.43: a random batch of 8 is padded to its longest text
    assert grouped_share < random_share / 5  # measured 0.03


def test_the_grouping_window_trades_padding_for_mixing():
    """A window of one batch only sorts within each random batch; wider windows pad less and less."""
    lengths = phrasebank_lengths()
    random_batches = list(TrainBatchSampler(lengths, 8, seed=3))
    one = list(TrainBatchSampler(lengths, 8, group_by_length=True, seed=3, mega_batch_mult=1))
    assert sorted(map(sorted, one)) == sorted(map(sorted, random_batches))  # the same batches, reordered
    shares = [
        padded_share(list(TrainBatchSampler(lengths, 8, group_by_length=True, seed=3, mega_batch_mult=m)), lengths)
        for m in (1, 4, 16, 50)
    ]
    assert shares == sorted(shares, reverse=True) and shares[0] > 2 * shares[-1], shares


def test_length_grouped_batches_start_with_the_longest_and_are_shuffled():
    lengths = phrasebank_lengths()
    for e in range(3):
        sampler = TrainBatchSampler(lengths, 8, group_by_length=True)
        sampler.set_epoch(e)
        batches = list(sampler)
        assert lengths[batches[0]].max() == lengths.max()
        # Each mega-batch is sorted longest first; without the shuffle of the batches the longest would all
        # come at the start of each mega-batch, and a batch would be longer than the one before it only where
        # a new mega-batch starts (5 times here).
        maxima = [lengths[b].max() for b in batches]
        assert sum(later > earlier for earlier, later in zip(maxima, maxima[1:])) > len(batches) // 4
    # Under DDP every process starts with its own longest batch, so an out-of-memory shows on the first step.
    for batches in ranks(TrainBatchSampler, lengths, 2, batch_size=8, group_by_length=True):
        assert lengths[batches[0]].max() == max(lengths[b].max() for b in batches)


def test_train_sampler_refuses_what_lightning_would_pass_when_injecting_a_distributed_sampler():
    # With use_distributed_sampler=True, Lightning calls cls(sampler, batch_size=..., drop_last=...).
    with pytest.raises(TypeError, match="use_distributed_sampler=False"):
        TrainBatchSampler(SequentialSampler(range(10)), batch_size=8, drop_last=False)


def test_lightning_sets_the_epoch_through_the_loader():
    from lightning.fabric.utilities.data import _set_sampler_epoch

    sampler = TrainBatchSampler(np.arange(10), 4)
    _set_sampler_epoch(StatefulDataLoader(Indices(10), batch_sampler=sampler), 3)
    assert sampler.epoch == 3


# ---- TrainBatchSampler: exact resume through torchdata's StatefulDataLoader ----


class Indices(Dataset):
    """Example i is i: the loader's batches show which indices the sampler chose."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def make_loader(num_workers: int) -> tuple[StatefulDataLoader, TrainBatchSampler]:
    lengths = np.random.default_rng(3).integers(1, 100, 101)  # 26 batches of 4, the last partial
    sampler = TrainBatchSampler(lengths, 4, group_by_length=True, mega_batch_mult=2)
    return StatefulDataLoader(Indices(101), batch_sampler=sampler, num_workers=num_workers), sampler


def run_epochs(loader, sampler, epochs, stop_after: int | None = None) -> list[list[int]]:
    """The batches of `epochs`, set_epoch before each as Lightning does; stop after `stop_after` batches."""
    out = []
    for e in epochs:
        sampler.set_epoch(e)
        for batch in loader:
            out.append(batch.tolist())
            if len(out) == stop_after:
                return out
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("stop_after", [5, 26])  # mid-epoch, and after the epoch's last batch
def test_resume_through_stateful_dataloader_continues_exactly(num_workers, stop_after):
    uninterrupted = run_epochs(*make_loader(num_workers), epochs=[0, 1])
    assert len(uninterrupted) == 52

    loader, sampler = make_loader(num_workers)
    before = run_epochs(loader, sampler, epochs=[0], stop_after=stop_after)
    state = loader.state_dict()
    if num_workers:  # the sampler has run ahead to feed the workers: only the loader knows what was consumed
        assert sampler.state_dict()["batches_yielded"] > min(stop_after, 25)
    del loader

    # A fresh process builds these from the config, loads the state, and goes on in Lightning's order:
    # iter() on the loader (FitLoop.setup_data; workers prefetch at once), then set_epoch with the epoch in
    # progress (FitLoop.on_advance_start), then the batches.
    loader, sampler = make_loader(num_workers)
    loader.load_state_dict(state)
    epoch_in_progress = 0 if stop_after < 26 else 1
    batches = iter(loader)
    sampler.set_epoch(epoch_in_progress)
    rest = [batch.tolist() for batch in batches]
    later = run_epochs(loader, sampler, epochs=range(epoch_in_progress + 1, 2))
    assert before + rest + later == uninterrupted


def test_sampler_state_alone_resumes_its_epoch():
    lengths = np.arange(40)
    sampler = TrainBatchSampler(lengths, 4, seed=7)
    sampler.set_epoch(2)
    full = list(sampler)
    it = iter(sampler)
    taken = [next(it) for _ in range(3)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "seed": 7, "batches_yielded": 3}
    fresh = TrainBatchSampler(lengths, 4)  # seed 42: the saved seed wins
    fresh.load_state_dict(state)
    fresh.set_epoch(2)  # Lightning sets the same epoch again after loading: the resume point stays
    assert taken + list(fresh) == full
    assert list(fresh) == full  # the next pass is the whole epoch again


# ---- EvalBatchSampler ----


@pytest.mark.parametrize("sort_by_length", [True, False])
def test_eval_every_example_exactly_once_with_equal_batch_counts(sort_by_length):
    rng = np.random.default_rng(4)
    for n in [*range(1, 41), 149]:
        for num_replicas in (1, 2) if n > 1 else (1,):
            lengths = rng.integers(1, 100, n)
            per_rank = ranks(EvalBatchSampler, lengths, num_replicas, batch_size=8, sort_by_length=sort_by_length)
            assert len({len(batches) for batches in per_rank}) == 1, n  # same number of steps everywhere
            assert len(per_rank[0]) == -(-n // (8 * num_replicas))  # no more steps than needed
            assert all(1 <= len(b) <= 8 for batches in per_rank for b in batches), n
            assert sorted(i for batches in per_rank for b in batches for i in b) == list(range(n)), n


def test_eval_sorted_batches_pad_little_and_alternate_over_ranks():
    lengths = phrasebank_lengths()[:149]
    per_rank = ranks(EvalBatchSampler, lengths, 2, batch_size=8)
    dealt = [b for pair in zip(*per_rank) for b in pair]  # batch k of rank r is batch 2k + r
    flat = lengths[[i for b in dealt for i in b]]
    assert (np.diff(flat) <= 0).all()  # longest first, over all batches in turn
    # Sizes 8 and 7 (149 over 20 batches): the processes' work differs by little.
    assert sorted({len(b) for b in dealt}) == [7, 8]
    assert padded_share(dealt, lengths) < padded_share(list(EvalBatchSampler(lengths, 8, False)), lengths) / 5
    assert list(EvalBatchSampler(np.ones(10, dtype=int), 4, sort_by_length=False)) == [
        [0, 1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
    ]


def test_eval_refuses_fewer_examples_than_processes():
    with pytest.raises(ValueError, match="3 examples cannot be split over 4 processes"):
        EvalBatchSampler([1, 2, 3], 8, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="batch size of at least 2"):
        EvalBatchSampler([1, 2, 3], 1, num_replicas=2, rank=0)


class RecordBatches(LightningModule):
    """The smallest model that trains: it records which examples each training step saw."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.tolist())
        return (self.weight * batch.float()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lightning_resume_mid_epoch_sees_the_batches_an_uninterrupted_fit_saw(tmp_path, num_workers):
    def fit(ckpt_path=None) -> list[list[int]]:
        loader, _ = make_loader(num_workers)
        model = RecordBatches()
        every_5 = ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=5, save_top_k=-1)
        trainer = Trainer(max_epochs=2, callbacks=[every_5], logger=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
        trainer.fit(model, loader, ckpt_path=ckpt_path)
        return model.seen

    uninterrupted = fit()
    assert len(uninterrupted) == 52 and uninterrupted[:26] != uninterrupted[26:]  # set_epoch reached the sampler
    assert fit(tmp_path / "step=5.ckpt") == uninterrupted[5:]
    assert fit(tmp_path / "step=30.ckpt") == uninterrupted[30:]  # 4 batches into epoch 1
