"""The DataModule: a labelled data set's splits read (sources.py), labelled (labels.py), tokenized once
(token_cache.py) and batched (sampler.py, loaders.py) with per-batch padding."""

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from lightning_albert import token_cache
from lightning_albert.errors import InputError, row_list
from lightning_albert.loaders import check_max_length, check_shardable, loader, processes, training_seed
from lightning_albert.sampler import EvalBatchSampler, TrainBatchSampler
from lightning_albert.sources import Sources, stratified_split
from lightning_albert.tables import Table
from lightning_albert.tasks import LabelFormat, TaskName, get_task
from lightning_albert.token_cache import PadCollator, TokenArrays
from lightning_albert.tokenizer import load_tokenizer, tokenizer_files, train_tokenizer


class EncodedSplit(Dataset):
    """Token ids of one split, tokenized once and held as flat arrays (`token_cache.TokenArrays`).

    `rows` are the 0-based data-row indices in the source file, `labels` the task's targets (class ids, multi-hot
    rows or values; None for predict), `ids`
    the values of data.id_column. An item is what `PadCollator` batches: `input_ids` (and `token_type_ids` for
    pairs) as numpy views, `labels` and `row`.
    """

    def __init__(
        self, tokens: TokenArrays, rows: list[int], labels: np.ndarray | None = None, ids: list[Any] | None = None
    ):
        self.tokens = tokens
        self.rows = rows
        self.labels = labels
        self.ids = ids

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def lengths(self) -> np.ndarray:
        """Tokens per example (special tokens included)."""
        return self.tokens.lengths

    def __getitem__(self, i: int) -> dict[str, Any]:
        start, end = self.tokens.offsets[i], self.tokens.offsets[i + 1]
        item: dict[str, Any] = {"input_ids": self.tokens.input_ids[start:end]}
        if self.tokens.token_type_ids is not None:
            item["token_type_ids"] = self.tokens.token_type_ids[start:end]
        if self.labels is not None:
            item["labels"] = self.labels[i]
        item["row"] = self.rows[i]
        return item

    @property
    def features(self) -> list[dict[str, Any]]:
        """Every example as a dict of Python lists, with its attention mask: for inspection, it costs kilobytes
        an example."""
        features = []
        for i in range(len(self)):
            item = self[i]
            feature = {k: v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v for k, v in item.items()}
            feature["attention_mask"] = [1] * len(feature["input_ids"])
            features.append(feature)
        return features


class TextClassificationDataModule(LightningDataModule):
    def __init__(
        self,
        train_file: str | None = None,
        validation_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        id_column: str | None = None,
        labels: list[str] | None = None,
        task: TaskName = "single_label",
        label_separator: str = "|",
        label_columns: list[str] | None = None,
        tokenizer: str | None = None,
        tokenizer_vocab_size: int = 8000,
        max_length: int = 128,
        cache_tokens: bool = True,
        cache_dir: str | None = None,
        pad_to_multiple_of: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        group_by_length: bool = False,
        group_by_length_window: int = 50,
        sort_eval_by_length: bool = True,
        seed: int | None = None,
        num_workers: int = 0,
        val_split: float = 0.1,
        split_seed: int = 42,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        drop_empty_texts: bool = False,
        encoding: str = "utf-8",
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_split: str = "train",
        validation_split: str | None = "validation",
        test_split: str | None = "test",
        predict_split: str | None = None,
    ):
        """Labelled text files in, padded batches of token ids out.

        Data comes from files (by extension) or from a Hugging Face dataset; a file given for a stage wins over
        the dataset's split.

        Args:
            train_file: Training data: .csv, .tsv, .jsonl, .json (array of objects), .parquet, or a folder written
                by `datasets.Dataset.save_to_disk`.
            validation_file: Evaluated every epoch. If unset, `val_split` of the training file is held out.
            test_file: Used by the `test` subcommand.
            predict_file: Used by the `predict` subcommand; its label column, if any, is ignored.
            text_column: Column holding the text to classify.
            text_pair_column: Optional second text column, for sentence-pair tasks.
            label_column: Column holding the label: a class name, or an integer index into `labels` (multi-label:
                the names joined by `label_separator`, or a list; regression: a number).
            id_column: Optional column copied into the predictions file beside each prediction.
            labels: The classes, in id order. If unset: the sorted distinct labels of the training file.
            task: single_label (each text has one class, the seed run's), multi_label (any number of labels: one
                sigmoid each, binary cross-entropy) or regression (one number: mean squared error). The model
                follows it (model.task is linked to it).
            label_separator: Multi-label: what joins a text's label names in one cell ("billing|delivery").
                Lists (JSON Lines, JSON, Parquet, datasets) need none.
            label_columns: Multi-label: one 0/1 column per label, named here, instead of label_column (the
                Kaggle toxic-comment layout); the column names are the labels.
            tokenizer: A hub name or a folder for AutoTokenizer. If unset, a SentencePiece tokenizer is trained
                on the training texts (the offline path) and saved with the run.
            tokenizer_vocab_size: Vocabulary size asked of a trained tokenizer; small corpora give fewer pieces.
            max_length: Tokens per example (special tokens included); longer texts are truncated.
            cache_tokens: Keep the token ids of each split in `cache_dir`, so a later fit, validate or test on the
                same file, tokenizer and max_length reads them (memory-mapped) instead of tokenizing again.
            cache_dir: Folder of that cache; default `$XDG_CACHE_HOME/lightning_albert/tokens`, or
                `~/.cache/lightning_albert/tokens`. A file is named by a digest of the data file's content, the
                rows used, the tokenizer's files, max_length and the text columns, so an edit is never served
                stale; to clear the cache, delete the folder.
            pad_to_multiple_of: Pad each batch's length up to a multiple of this (8 helps tensor cores and gives
                torch.compile fewer shapes to recompile for); unset pads to the batch's longest example.
            batch_size: Training examples per batch per device.
            eval_batch_size: Examples per batch for validation, test and predict.
            group_by_length: Train on batches of texts of similar length (as the HF Trainer's group_by_length):
                far less padding, so much faster, but it changes which texts share a batch, so the seed recipe
                keeps it off. Still shuffled every epoch.
            group_by_length_window: With group_by_length, texts are sorted by length within windows of this many
                batches of each epoch's random permutation (the HF Trainer's mega_batch_mult, 50 there too).
                Wider windows pad less; narrower ones mix more kinds of text into each batch.
            sort_eval_by_length: Evaluate and predict in batches sorted by length (less padding); outputs keep
                the input order and metrics do not depend on the order.
            seed: Seed of the training order (epoch e uses seed + e). Linked from seed_everything.
            num_workers: DataLoader worker processes.
            val_split: Share of the training file held out for validation when no validation_file is given
                (stratified by label, seeded by `split_seed`).
            split_seed: Seed of that split, independent of the training seed.
            max_train_samples: Use only the first N training rows (quick runs).
            max_eval_samples: Use only the first N validation and test rows (quick runs).
            drop_empty_texts: Drop rows with an empty text instead of stopping with an error.
            encoding: Text encoding of the files (UTF-8 with or without byte-order mark by default).
            dataset: A Hugging Face dataset: a hub name (needs the network and the datasets package) or a folder
                written by `DatasetDict.save_to_disk`. Read by the split names below.
            dataset_config: The dataset's configuration name, if it has several.
            train_split: Split of `dataset` to train on.
            validation_split: Split of `dataset` to validate on; if the dataset lacks it, `val_split` of the
                training split is held out.
            test_split: Split of `dataset` for the `test` subcommand.
            predict_split: Split of `dataset` for the `predict` subcommand.
        """
        super().__init__()
        self.save_hyperparameters()
        self.text_column, self.text_pair_column, self.label_column, self.id_column = (
            text_column, text_pair_column, label_column, id_column,
        )  # fmt: skip
        self.tokenizer_name = tokenizer
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.max_length = max_length
        self.cache_tokens = cache_tokens
        self.cache_dir = Path(cache_dir) if cache_dir else token_cache.default_cache_dir()
        self.pad_to_multiple_of = pad_to_multiple_of
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.group_by_length = group_by_length
        self.group_by_length_window = group_by_length_window
        self.sort_eval_by_length = sort_eval_by_length
        self.seed = seed
        self.num_workers = num_workers
        self.val_split = val_split
        self.split_seed = split_seed
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.drop_empty_texts = drop_empty_texts
        self.encoding = encoding
        self.sources = Sources(
            {"train": train_file, "validation": validation_file, "test": test_file, "predict": predict_file},
            dataset,
            dataset_config,
            {"train": train_split, "validation": validation_split, "test": test_split, "predict": predict_split},
            encoding,
        )
        self.task = get_task(task)
        self.label_format = LabelFormat(label_column, label_separator, tuple(label_columns) if label_columns else None)
        self._given_labels = self.task.check_given_labels(labels)
        self._check_options()
        self._splits: dict[str, EncodedSplit] = {}

    # ----------------------------------------------------------------------------------------- options
    def _check_options(self) -> None:
        columns = {"text_column": self.text_column, "label_column": self.label_column}
        if self.text_pair_column:
            columns["text_pair_column"] = self.text_pair_column
        if self.id_column:
            columns["id_column"] = self.id_column
        seen: dict[str, str] = {}
        for key, name in columns.items():
            if name in seen:
                raise InputError(f"data.{key} and data.{seen[name]} both name column '{name}': give each its own.")
            seen[name] = key
        if self.label_format.columns and self.task.name != "multi_label":
            raise InputError("data.label_columns is for multi-label data: set data.task: multi_label, or unset it.")
        if self.label_format.columns and len(self.label_format.columns) < 2:
            raise InputError(
                f"data.label_columns names {len(self.label_format.columns)} column: give one 0/1 column per label, "
                "at least two (one yes/no label is single-label classification)."
            )
        if not self.label_format.separator.strip():
            raise InputError("data.label_separator must be a character such as | or ; (not empty or a space).")
        if not 0.0 <= self.val_split < 1.0:
            raise InputError(f"data.val_split must be in [0, 1), got {self.val_split}.")
        check_max_length(self.max_length)
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise InputError(f"data.{key} must be at least 1.")
        if self.group_by_length_window < 1:
            raise InputError(
                f"data.group_by_length_window must be at least 1 batch, got {self.group_by_length_window}."
            )
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise InputError(f"data.pad_to_multiple_of must be at least 1, got {self.pad_to_multiple_of}.")

    # ------------------------------------------------------------------------------------ labels, tokenizer
    @cached_property
    def labels(self) -> list[str]:
        """Class (or label) names in id order: as given, or those of the training data; a regression's one name."""
        if self._given_labels is not None:
            return self._given_labels
        return self.task.names(self.table("train"), self.label_format)

    @property
    def num_labels(self) -> int:
        """The model's outputs: one per class or label, one for regression."""
        return self.task.num_outputs(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer_name:
            return load_tokenizer(self.tokenizer_name)
        if not self.sources.has("train"):
            raise InputError(
                "data.tokenizer is unset and there is no data.train_file to train one on: give data.tokenizer "
                "(a folder or hub name), data.train_file, or a --ckpt_path whose checkpoint carries its tokenizer."
            )
        texts = self._texts(self.table("train"), self.text_column, "text")
        if self.text_pair_column:
            texts += self._texts(self.table("train"), self.text_pair_column, "text_pair")
        tokenizer = train_tokenizer(texts, self.tokenizer_vocab_size)
        rank_zero_info(f"Trained a SentencePiece tokenizer of {len(tokenizer)} pieces on {self.table('train').path}.")
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """Size of the tokenizer's vocabulary: the model's embedding table must have this many rows."""
        return len(self.tokenizer)

    # ---------------------------------------------------------------------------------------- reading
    def has_split(self, split: str) -> bool:
        """Whether data for a split ("train", "validation", "test", "predict") was given."""
        return self.sources.has(split)

    def table(self, split: str) -> Table:
        """The source rows of a split's file or dataset split, read once."""
        return self.sources.table(split)

    def _texts(self, table: Table, column: str, role: str) -> list[str]:
        """A text column as strings; a missing value (JSON null, absent key) reads as empty."""
        return ["" if v is None else str(v) for v in table.column(column, role)]

    def _targets(self, table: Table, rows: list[int]) -> np.ndarray:
        given = self._given_labels is not None
        return self.task.targets(table, rows, self.label_format, self.labels, given)

    @cached_property
    def _held_out_targets(self) -> np.ndarray:
        """Every training row's target, when validation is held out of the training file."""
        table = self.table("train")
        return self._targets(table, list(range(len(table.rows))))

    # ------------------------------------------------------------------------------------ splitting, encoding
    def _rows(self, split: str) -> tuple[Table, list[int]]:
        """The table a split reads from and which of its rows belong to the split."""
        if self.sources.held_out(split):
            if self.val_split <= 0:
                raise InputError("no validation data: give data.validation_file, or set data.val_split above 0.")
            table = self.table("train")
            train, val = stratified_split(self.task.strata(self._held_out_targets), self.val_split, self.split_seed)
            rows = train if split == "train" else val
        else:
            table = self.table(split)
            rows = list(range(len(table.rows)))
        limit = self.max_train_samples if split == "train" else self.max_eval_samples if split != "predict" else None
        return table, rows[:limit] if limit else rows

    def _encode_split(self, split: str) -> EncodedSplit:
        table, rows = self._rows(split)
        labelled = split != "predict"
        texts = self._texts(table, self.text_column, "text")
        pairs = self._texts(table, self.text_pair_column, "text_pair") if self.text_pair_column else None
        if labelled:
            empty = [r for r in rows if not texts[r].strip()]
            if empty and not self.drop_empty_texts:
                raise InputError(
                    f"{table.path}: {len(empty)} row(s) have an empty or missing '{self.text_column}' "
                    f"({row_list([table.lines[r] for r in empty], table.unit)}). Fill them in, remove them, "
                    "or set data.drop_empty_texts: true to drop them."
                )
            if empty:
                rank_zero_info(f"{table.path}: dropped {len(empty)} row(s) with an empty text.")
                rows = [r for r in rows if texts[r].strip()]
        ids = table.column(self.id_column, "id") if self.id_column else None
        if not labelled:
            labels = None
        elif self.sources.held_out(split):  # read once for the split, so each note about the labels is said once
            labels = self._held_out_targets[rows]
        else:
            labels = self._targets(table, rows)
        if split == "train":
            self.task.check_training_targets(table, labels, self.labels)
        tokens = self._tokenize([texts[r] for r in rows], [pairs[r] for r in rows] if pairs else None, table, rows)
        return EncodedSplit(tokens, rows, labels, [ids[r] for r in rows] if ids else None)

    def _tokenize(self, texts: list[str], pairs: list[str] | None, table: Table, rows: list[int]) -> TokenArrays:
        """Read the split's token ids from the cache, or tokenize in chunks (and cache them); report truncation."""
        path = None
        if self.cache_tokens and table.source is not None:
            key = token_cache.cache_key(
                token_cache.file_digest(table.source), rows, self._tokenizer_files, self.max_length,
                [self.text_column, self.text_pair_column], self.encoding,
            )  # fmt: skip
            path = token_cache.cache_path(self.cache_dir, key)
        tokens = token_cache.load(path) if path else None
        if tokens is None:
            tokens = token_cache.encode(self.tokenizer, texts, pairs, self.max_length)
            if path:  # every DDP rank may write it: each write is whole, and they are the same
                token_cache.save(path, tokens)
                mapped = token_cache.load(path)  # memory-mapped: its pages are the OS's to share and drop
                tokens = mapped if mapped is not None else tokens
        if tokens.truncated:
            rank_zero_info(
                f"{table.path}: {tokens.truncated} of {len(texts)} texts were longer than data.max_length="
                f"{self.max_length} tokens and were truncated."
            )
        return tokens

    # -------------------------------------------------------------------------------------- lightning hooks
    def setup(self, stage: str) -> None:
        needed = {"fit": ["train", "validation"], "validate": ["validation"], "test": ["test"], "predict": ["predict"]}
        for split in needed[stage]:
            if split not in self._splits:
                self._splits[split] = self._encode_split(split)

    def split(self, name: str) -> EncodedSplit:
        """An encoded split (after `setup`): "train", "validation", "test" or "predict"."""
        return self._splits[name]

    def texts(self, name: str) -> list[str]:
        """The raw texts of an encoded split, row for row (a pair joined by " [SEP] "): for models that read
        words rather than token ids, such as the bag-of-words baseline."""
        split, table = self._splits[name], self.table("train" if self.sources.held_out(name) else name)
        texts = self._texts(table, self.text_column, "text")
        if not self.text_pair_column:
            return [texts[r] for r in split.rows]
        pairs = self._texts(table, self.text_pair_column, "text_pair")
        return [f"{texts[r]} [SEP] {pairs[r]}" for r in split.rows]

    def train_dataloader(self) -> DataLoader:
        split = self._splits["train"]
        world, rank = processes(self.trainer)
        sampler = TrainBatchSampler(
            split.lengths,
            self.batch_size,
            self.group_by_length,
            seed=training_seed(self.seed),
            num_replicas=world,
            rank=rank,
            mega_batch_mult=self.group_by_length_window,
        )
        return loader(split, sampler, self._collator, self.num_workers, stateful=True)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")

    def _eval_loader(self, name: str) -> DataLoader:
        """Every example exactly once over all processes, in the same number of batches on each (exact metrics
        under DDP with no hang); predictions carry their row, so the writer restores the input order."""
        split = self._splits[name]
        world, rank = processes(self.trainer)
        check_shardable(name, len(split), world)
        sampler = EvalBatchSampler(split.lengths, self.eval_batch_size, self.sort_eval_by_length, world, rank)
        return loader(split, sampler, self._collator, self.num_workers)

    @property
    def _collator(self) -> PadCollator:
        return PadCollator(self.tokenizer.pad_token_id, self.pad_to_multiple_of)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the label names, the tokenizer files and where texts are truncated, so a
        checkpoint stands alone and its export reads texts as training did."""
        return {
            "task": self.task.name,
            "labels": self.labels,
            "tokenizer_files": self._tokenizer_files,
            "tokenizer_source": self.tokenizer_name,
            "max_length": self.max_length,
        }

    @cached_property
    def _tokenizer_files(self) -> dict[str, bytes]:
        return tokenizer_files(self.tokenizer)
