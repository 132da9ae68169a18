"""Pretraining data: unlabelled texts (a .txt file or a table's text column) split into training and validation,
tokenized once without special tokens, and batched with fresh n-gram masks each epoch (masking.py)."""

import random
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from transformers import PreTrainedTokenizerBase

from lightning_albert.errors import InputError
from lightning_albert.loaders import check_max_length, check_shardable, loader, processes, training_seed
from lightning_albert.pretrain.masking import PretrainingCollator
from lightning_albert.sampler import EvalBatchSampler, TrainBatchSampler
from lightning_albert.tables import read_table
from lightning_albert.token_cache import TokenArrays
from lightning_albert.tokenizer import load_tokenizer, tokenizer_files, train_tokenizer


class TextCorpus(Dataset):
    """Token ids of texts without special tokens (the collator adds them), as flat arrays. An item carries its
    index as `row`, and its `epoch` when asked for by `(epoch, row)`: the collator seeds its masks with them."""

    def __init__(self, tokens: TokenArrays):
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = key if isinstance(key, tuple) else (None, key)
        ids = self.tokens.input_ids[self.tokens.offsets[i] : self.tokens.offsets[i + 1]]
        return {"input_ids": ids, "row": i, "epoch": epoch}


class EpochBatchSampler(TrainBatchSampler):
    """The training order of fine-tuning (length-grouped, seeded, sharded, resumable), each index as
    `(epoch, row)`, so every text gets fresh masks each epoch that depend on nothing but the seed: not on the
    loader workers, the number of processes, or where a resumed run took up the epoch."""

    def __iter__(self):
        for batch in super().__iter__():
            yield [(self.epoch, i) for i in batch]


class TextCorpusDataModule(LightningDataModule):
    def __init__(
        self,
        text_file: str | None = None,
        train_file: str | None = None,
        text_column: str = "text",
        tokenizer: str | None = None,
        tokenizer_vocab_size: int = 8000,
        max_length: int = 128,
        mlm_probability: float = 0.15,
        sentence_order: bool = False,
        val_fraction: float = 0.05,
        split_seed: int = 42,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        group_by_length: bool = True,
        seed: int | None = None,
        num_workers: int = 0,
        encoding: str = "utf-8",
    ):
        """Unlabelled texts in, masked and padded pretraining batches out.

        Args:
            text_file: Texts to pretrain on: a .txt file (one text per line; blank lines skipped) or a table
                (.csv, .tsv, .jsonl, .json, .parquet) whose `text_column` holds them.
            train_file: A classification data set's training file: its texts are used, its labels ignored
                (pretraining on the task's own texts). With `text_file` too, both are used.
            text_column: The column holding the texts in a table.
            tokenizer: A hub name or folder for AutoTokenizer. If unset, a SentencePiece tokenizer is trained on
                the texts (the offline path); it is exported with the model, and fit uses it from there.
            tokenizer_vocab_size: Vocabulary size asked of a trained tokenizer; small corpora give fewer pieces.
            max_length: Tokens per sequence, special tokens included; longer texts are truncated.
            mlm_probability: Share of each sequence's non-special tokens covered by masked n-gram spans.
            sentence_order: Also train sentence-order prediction: each text is cut at a random token into two
                segments, swapped half of the time. It also trains the pooler that a classifier starts from.
            val_fraction: Share of the texts held out (seeded by `split_seed`) for val_loss and accuracy.
            split_seed: Seed of that split.
            batch_size: Training sequences per batch per device.
            eval_batch_size: Sequences per validation batch.
            group_by_length: Batches of texts of similar length (reshuffled every epoch): far less padding, so
                faster. On by default here: unlike fine-tuning with the seed recipe, no result is being reproduced.
            seed: Seed of the training order and of the masks (linked from seed_everything).
            num_workers: DataLoader worker processes.
            encoding: Text encoding of the files.
        """
        super().__init__()
        self.save_hyperparameters()
        if not text_file and not train_file:
            raise InputError("pretrain needs texts: give data.text_file (a .txt or a table) or data.train_file.")
        if not 0.0 < mlm_probability < 1.0:
            raise InputError(f"data.mlm_probability must be between 0 and 1, got {mlm_probability}.")
        if not 0.0 < val_fraction < 1.0:
            raise InputError(f"data.val_fraction must be between 0 and 1, got {val_fraction}.")
        check_max_length(max_length)
        self.max_length = max_length
        self.seed = seed
        self._splits: dict[str, TextCorpus] = {}

    @cached_property
    def texts(self) -> list[str]:
        """Every non-empty text of `text_file` and `train_file`, in file order."""
        hp = self.hparams
        texts = []
        for key, path in (("data.text_file", hp.text_file), ("data.train_file", hp.train_file)):
            if path:
                texts += [t for t in read_texts(path, hp.text_column, hp.encoding, key) if t.strip()]
        if len(texts) < 2:
            raise InputError(
                f"{hp.text_file or hp.train_file}: has {len(texts)} non-empty text(s); pretraining "
                "needs at least two (one to train on, one to validate)."
            )
        return texts

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        hp = self.hparams
        if hp.tokenizer:
            return load_tokenizer(hp.tokenizer)
        tokenizer = train_tokenizer(self.texts, hp.tokenizer_vocab_size)
        rank_zero_info(f"Trained a SentencePiece tokenizer of {len(tokenizer)} pieces on {len(self.texts)} texts.")
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """Rows of the model's embedding table: the tokenizer's vocabulary."""
        return len(self.tokenizer)

    def setup(self, stage: str) -> None:
        if self._splits:
            return
        texts = self.texts
        order = list(range(len(texts)))
        random.Random(self.hparams.split_seed).shuffle(order)
        held = max(1, round(len(texts) * self.hparams.val_fraction))
        for name, rows in (("validation", sorted(order[:held])), ("train", sorted(order[held:]))):
            self._splits[name] = TextCorpus(self._encode([texts[r] for r in rows]))

    def _encode(self, texts: list[str]) -> TokenArrays:
        """Ids without special tokens, truncated to leave room for [CLS] and one or two [SEP]."""
        room = self.max_length - (3 if self.hparams.sentence_order else 2)
        ids = [x[:room] for x in self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return TokenArrays(np.fromiter((i for x in ids for i in x), dtype=np.int32, count=int(offsets[-1])), offsets)

    def split(self, name: str) -> TextCorpus:
        return self._splits[name]

    def train_dataloader(self) -> StatefulDataLoader:
        split = self._splits["train"]
        world, rank = processes(self.trainer)
        seed = training_seed(self.seed)
        sampler = EpochBatchSampler(
            split.tokens.lengths,
            self.hparams.batch_size,
            self.hparams.group_by_length,
            seed=seed,
            num_replicas=world,
            rank=rank,
        )
        return self._loader(split, sampler, PretrainingCollator(**self._masking(), seed=seed))

    def val_dataloader(self) -> StatefulDataLoader:
        split = self._splits["validation"]
        world, rank = processes(self.trainer)
        check_shardable("validation", len(split), world)
        sampler = EvalBatchSampler(split.tokens.lengths, self.hparams.eval_batch_size, True, world, rank)
        collator = PretrainingCollator(**self._masking(), seed=self.hparams.split_seed)
        return self._loader(split, sampler, collator)

    def _masking(self) -> dict[str, Any]:
        hp = self.hparams
        return dict(tokenizer=self.tokenizer, rate=hp.mlm_probability, sentence_order=hp.sentence_order)

    def _loader(self, split: TextCorpus, sampler, collator: PretrainingCollator) -> StatefulDataLoader:
        # Stateful, so a checkpoint saves the sampler's position, for a resume mid-epoch.
        return loader(split, sampler, collator, self.hparams.num_workers, stateful=True)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the tokenizer's files, so a resumed run reads texts with the very tokenizer
        its weights were trained with (one trained anew is not promised to be the same)."""
        return {"tokenizer_files": self._tokenizer_files}

    @cached_property
    def _tokenizer_files(self) -> dict[str, bytes]:
        return tokenizer_files(self.tokenizer)  # once, not at every checkpoint


def read_texts(path: str, column: str, encoding: str, key: str) -> list[str]:
    """The lines of a .txt file, or the `column` of any table `tables.read_table` reads."""
    if Path(path).suffix.lower() != ".txt":
        table = read_table(path, encoding, key)
        return ["" if v is None else str(v) for v in table.column(column, "text")]
    try:
        return Path(path).read_text(encoding=encoding).splitlines()
    except FileNotFoundError:
        raise InputError(f"{key}: {path}: no such file (relative paths start from {Path.cwd()}).") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{key}: {path}: not valid {encoding} ({e.reason}); set data.encoding.") from None
