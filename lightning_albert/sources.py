"""Where each split's rows come from: its own file, a split of a `datasets` data set, or (for validation) a
stratified, seeded share held out of the training rows."""

import random
from functools import cached_property

from lightning_albert.errors import InputError
from lightning_albert.tables import Table, dataset_splits, read_dataset, read_table

STAGE_OF = {"train": "fit", "validation": "validate", "test": "test", "predict": "predict"}


class Sources:
    """The data.*_file paths and the data.dataset splits, each table read once when first asked for."""

    def __init__(
        self,
        files: dict[str, str | None],
        dataset: str | None,
        dataset_config: str | None,
        dataset_splits: dict[str, str | None],
        encoding: str,
    ):
        self.files, self.dataset, self.dataset_config = files, dataset, dataset_config
        self.dataset_splits, self.encoding = dataset_splits, encoding
        self._tables: dict[str, Table] = {}

    def has(self, split: str) -> bool:
        """Whether data for a split ("train", "validation", "test", "predict") was given."""
        if self.files[split]:
            return True
        name = self.dataset_splits[split]
        return bool(self.dataset and name and name in self._available_splits)

    @cached_property
    def _available_splits(self) -> list[str]:
        return dataset_splits(self.dataset, self.dataset_config)

    def table(self, split: str) -> Table:
        """The source rows of a split's file or dataset split, read once."""
        if split not in self._tables:
            path = self.files[split]
            if path:
                self._tables[split] = read_table(path, self.encoding, key=f"data.{split}_file")
            elif self.dataset and self.dataset_splits[split]:
                self._tables[split] = read_dataset(self.dataset, self.dataset_config, self.dataset_splits[split])
            else:
                raise InputError(f"data.{split}_file is not set, and the {STAGE_OF[split]} step needs it.")
        return self._tables[split]

    def held_out(self, split: str) -> bool:
        """Whether `split` is train or validation carved out of the training rows (no validation data given)."""
        return split in ("train", "validation") and not self.has("validation")


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out `fraction` of each class (at least one row of any class with two or more), seeded."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    held: list[int] = []
    for y in sorted(by_class):
        rows = by_class[y]
        rng.shuffle(rows)
        n = round(len(rows) * fraction)
        held += rows[: max(n, 1) if len(rows) > 1 else 0]
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)
