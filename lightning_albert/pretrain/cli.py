"""Pretrain ALBERT on the user's own texts: masked-language modelling with n-gram masking, optionally with
sentence-order prediction, then an export that `fit --model.pretrained <folder>` fine-tunes.

    python -m lightning_albert pretrain --config configs/pretrain.yaml --data.text_file texts.txt

Self-pretraining on the task's own texts (Krishna et al. 2022) lets a from-scratch ALBERT start fine-tuning
from weights that already model the domain; with `model.pretrained: albert-base-v2` (needs the hub) the same
command continues the pretraining of a published model on in-domain text.
"""

import random
import tempfile
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy
from transformers import AlbertForMaskedLM, AlbertForPreTraining, PreTrainedTokenizerBase

from lightning_albert.albert import albert_config, load_pretrained
from lightning_albert.checkpoints import load_checkpoint, resolve_checkpoint, stream_checkpoints
from lightning_albert.cli import default_loggers, tokenizer_follows_pretrained
from lightning_albert.data import check_checkpoint_matches
from lightning_albert.errors import InputError
from lightning_albert.export import EXPORT_FOLDER
from lightning_albert.faults import InterruptCheckpoint, NonFiniteLossCheck
from lightning_albert.optim import adamw_with_schedule, check_scheduler_type, clip_gradients
from lightning_albert.options import check_model, check_settings, parse_error
from lightning_albert.pretrain.masking import IGNORE, PretrainingCollator
from lightning_albert.pretrain.provenance import write_pretraining_record
from lightning_albert.resume import (
    RestoreTrainingOrder,
    RunConfigSaver,
    add_checkpoint_arguments,
    continue_run_folder,
    last_checkpoint,
    remove_refused_run_folder,
    restore_process_states,
    run_folder_of,
    save_process_states,
    use_last_checkpoint,
)
from lightning_albert.sampler import EvalBatchSampler, TrainBatchSampler
from lightning_albert.tables import read_table
from lightning_albert.token_cache import TokenArrays
from lightning_albert.tokenizer import load_tokenizer, tokenizer_files, tokenizer_from_files, train_tokenizer

DESCRIPTION = (
    "Pretrain ALBERT on unlabelled text (masked-language modelling with n-gram masking, optional sentence-order "
    "prediction) and export it for `fit --model.pretrained <export>`."
)


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
        if max_length < 8:
            raise InputError(f"data.max_length must be at least 8 tokens, got {max_length}.")
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
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        seed = self._seed()
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
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = EvalBatchSampler(split.tokens.lengths, self.hparams.eval_batch_size, True, world, rank)
        collator = PretrainingCollator(**self._masking(), seed=self.hparams.split_seed)
        return self._loader(split, sampler, collator)

    def _masking(self) -> dict[str, Any]:
        hp = self.hparams
        return dict(tokenizer=self.tokenizer, rate=hp.mlm_probability, sentence_order=hp.sentence_order)

    def _seed(self) -> int:
        return self.seed if self.seed is not None else torch.initial_seed() % 2**31

    def _loader(self, split: TextCorpus, sampler, collator: PretrainingCollator) -> StatefulDataLoader:
        workers = self.hparams.num_workers
        return StatefulDataLoader(  # it saves the sampler's position in checkpoints, for a resume mid-epoch
            split,
            batch_sampler=sampler,
            collate_fn=collator,
            num_workers=workers,
            persistent_workers=workers > 0,
            # Its own generator: a loader would otherwise draw from the global one each epoch, and a resumed run's
            # dropout would draw other numbers than the run it continues.
            generator=torch.Generator().manual_seed(0),
        )

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


class AlbertPretrainer(LightningModule):
    def __init__(
        self,
        pretrained: str | None = None,
        config: str | dict[str, Any] | None = None,
        vocab_size: int | None = None,
        sentence_order: bool = False,
        learning_rate: float = 5e-4,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_epsilon: float = 1e-6,
        weight_decay: float = 0.01,
        lr_scheduler_type: str = "linear",
        warmup_steps: int = 0,
        warmup_ratio: float = 0.06,
        fused_adamw: bool | None = None,
    ):
        """ALBERT with its masked-language head (and the sentence-order head with `sentence_order`).

        Args:
            pretrained: Hub name or folder to continue pretraining (e.g. albert-base-v2, needs the hub).
            config: Build a randomly initialised ALBERT instead: a JSON file path or inline AlbertConfig values.
            vocab_size: Rows of the embedding table (linked from the data's tokenizer).
            sentence_order: Add sentence-order prediction (linked from data.sentence_order).
            learning_rate: Peak learning rate of AdamW.
            adam_betas: AdamW's betas.
            adam_epsilon: AdamW's epsilon (1e-6, as BERT and ALBERT pretraining).
            weight_decay: AdamW's decoupled weight decay; biases and LayerNorm weights never decay.
            lr_scheduler_type: A transformers schedule name, stepped after every optimizer step.
            warmup_steps: Optimizer steps of linear warmup.
            warmup_ratio: Warmup as a share of all optimizer steps; used when warmup_steps is 0.
            fused_adamw: AdamW's fused kernel; None: wherever torch offers it for the device.
        """
        super().__init__()
        self.save_hyperparameters()
        check_model(self.hparams)
        check_scheduler_type(lr_scheduler_type)
        cls = AlbertForPreTraining if sentence_order else AlbertForMaskedLM
        if pretrained:
            self.model = load_pretrained(cls, pretrained, vocab_size)
        else:
            self.model = cls(albert_config(config, vocab_size))
        self.train_loss = MeanMetric()
        self.train_loss.persistent(True)  # in checkpoints: an epoch resumed mid-way reports the mean of all its steps
        self.val_loss = MeanMetric()  # masked-language loss, a mean over masked tokens
        self.val_mlm_accuracy = MulticlassAccuracy(self.model.config.vocab_size, average="micro")
        self.val_sop_accuracy = BinaryAccuracy() if sentence_order else None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Masked-language logits at the labelled (masked) positions only, in batch order, and sentence-order
        logits when that head exists.

        The loss reads only those ~15% of positions, so the vocabulary-wide projection and its softmax run on
        them alone: on a small model that head is as costly as the encoder (`AlbertForMaskedLM`'s own forward
        scores every position). Same loss and gradients, same weights and export.
        """
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.model.albert(**inputs, return_dict=True)
        mlm_logits = self.model.predictions(out.last_hidden_state[batch["labels"] != IGNORE])
        if self.hparams.sentence_order:
            return mlm_logits, self.model.sop_classifier(out.pooler_output)
        return mlm_logits, None

    def _losses(self, batch: dict[str, torch.Tensor]):
        mlm_logits, sop_logits = self(batch)
        targets = batch["labels"][batch["labels"] != IGNORE]  # the masked tokens, in mlm_logits' order
        mlm = torch.nn.functional.cross_entropy(mlm_logits, targets)
        sop = None
        if sop_logits is not None:
            sop = torch.nn.functional.cross_entropy(sop_logits, batch["sentence_order_label"], ignore_index=IGNORE)
        return mlm, sop, mlm_logits, targets, sop_logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        mlm, sop, *_ = self._losses(batch)
        # ALBERT's objective is the sum; a batch of one-token texts has no order to predict (nan): it adds 0.
        loss = mlm if sop is None else mlm + torch.nan_to_num(sop)
        self.train_loss.update(loss.detach())
        return loss

    def on_train_epoch_end(self) -> None:
        # Here, not in training_step: a run resumed inside an epoch's validation runs no training step in it.
        self.log("train_loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        mlm, _, mlm_logits, targets, sop_logits = self._losses(batch)
        self.val_loss.update(mlm, weight=targets.numel())  # weighted by masked tokens: a mean over tokens
        self.val_mlm_accuracy.update(mlm_logits.argmax(-1), targets)
        self.log("val_loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val_mlm_accuracy", self.val_mlm_accuracy, on_step=False, on_epoch=True, prog_bar=True)
        if sop_logits is not None:
            order = batch["sentence_order_label"]
            known = order != IGNORE
            self.val_sop_accuracy.update(sop_logits[known].argmax(-1), order[known])
            self.log("val_sop_accuracy", self.val_sop_accuracy, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)  # fused AdamW under bf16 too

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_process_states(self, checkpoint)  # random streams and training-loss sums, for an exact resume

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_process_states(self, checkpoint)


class PretrainCLI(LightningCLI):
    """One command, no subcommands: parse, build, then `main` fits and exports."""

    def __init__(self, args: list[str]):
        self.checkpoint: dict[str, Any] | None = None  # --ckpt_path, read safely before Lightning reads it
        self._temporary = tempfile.TemporaryDirectory(prefix="lightning_albert-")  # the checkpoint's tokenizer
        super().__init__(
            AlbertPretrainer,
            TextCorpusDataModule,
            seed_everything_default=42,
            trainer_defaults={
                "max_epochs": 5,
                "gradient_clip_val": 1.0,
                "enable_model_summary": False,
                # The batch samplers shard over processes themselves; Lightning would wrap them and fail.
                "use_distributed_sampler": False,
            },
            auto_configure_optimizers=False,  # the model owns its optimizer and schedule
            parser_kwargs={
                "prog": "python -m lightning_albert pretrain",
                "description": DESCRIPTION,
                "exit_on_error": False,
            },
            save_config_callback=RunConfigSaver,
            args=args,
            run=False,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.sentence_order", "model.sentence_order", apply_on="parse")
        parser.link_arguments(
            "seed_everything", "data.seed", compute_fn=lambda s: s if type(s) is int else None, apply_on="parse"
        )
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Continue a stopped run from a checkpoint: `last` (or `best`) with --config <run>/config.yaml, or "
            "a path. It carries on in that run's folder, from the batch the checkpoint was taken at.",
        )
        add_checkpoint_arguments(parser, "pretrain", monitor="val_loss", mode="min")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise parse_error(str(e), ["pretrain", *args], "python -m lightning_albert") from None
        self.config["ckpt_path"] = resolve_checkpoint(self.config.get("ckpt_path"), self.config.get("config"))
        if self.config["ckpt_path"]:
            self.checkpoint = load_checkpoint(self.config["ckpt_path"], "--ckpt_path")

    def before_instantiate_classes(self) -> None:
        check_settings(self.config)
        tokenizer_follows_pretrained(self.config)
        state = (self.checkpoint or {}).get(TextCorpusDataModule.__qualname__)  # where Lightning keeps its state
        if state and not self.config["data"].get("tokenizer"):
            # A resumed run reads texts with the tokenizer its checkpoint was trained with, not one trained anew.
            folder = Path(self._temporary.name) / "tokenizer"
            tokenizer_from_files(state["tokenizer_files"]).save_pretrained(folder)
            self.config["data"]["tokenizer"] = str(folder)

    def after_instantiate_classes(self) -> None:
        state = (self.checkpoint or {}).get(TextCorpusDataModule.__qualname__)
        if state:  # a data.tokenizer given with --ckpt_path must be the checkpoint's (not a shape error in torch)
            check_checkpoint_matches(state, [], self.datamodule.tokenizer, "the data")

    def instantiate_trainer(self, **kwargs: Any):
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            root = trainer_config.get("default_root_dir") or str(Path.cwd())
            kwargs["logger"] = default_loggers(root, run_folder_of(self.config["ckpt_path"]))
        callbacks = list(trainer_config.get("callbacks") or [])
        callbacks += [RestoreTrainingOrder(), InterruptCheckpoint("pretrain"), NonFiniteLossCheck("pretrain")]
        last = last_checkpoint(self.config)  # the one writer of last.ckpt
        kwargs["callbacks"] = callbacks + ([last] if last else [])
        trainer = super().instantiate_trainer(**kwargs)
        stream_checkpoints(trainer)
        if last is not None:
            use_last_checkpoint(trainer, last)
        return trainer


def export_best(trainer, model: AlbertPretrainer, data: TextCorpusDataModule, run: Path) -> Path:
    """Write the best checkpoint's model (or the last weights, without one) and the tokenizer with
    `save_pretrained` into `<run>/hf_model`, with a record (provenance.py) of what it was pretrained on, which step
    it is and how it scored: `tune` picks its search space by it, and a fit's card cites it."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint and checkpoint.best_model_path
    step, score = trainer.global_step, checkpoint.best_model_score if best else None
    if best:
        saved = load_checkpoint(best)
        model.load_state_dict(saved["state_dict"])
        step = saved["global_step"]
    folder = run / EXPORT_FOLDER
    model.model.save_pretrained(folder)
    data.tokenizer.save_pretrained(folder)
    record = {
        "made_by": "python -m lightning_albert pretrain",
        "run": str(run),
        "texts": [path for path in (data.hparams.text_file, data.hparams.train_file) if path],
        "train_texts": len(data.split("train")),
        "validation_texts": len(data.split("validation")),
        "checkpoint": best or None,
        "global_step": step,
        "max_steps": trainer.max_steps if trainer.max_steps > 0 else None,  # -1: a budget of epochs
        "best_val_loss": None if score is None else float(score),
        "continued_from": model.hparams.pretrained,
    }
    write_pretraining_record(folder, record)
    return folder


def main(argv: list[str]) -> None:
    with warnings.catch_warnings():
        # sys.argv also holds the word "pretrain" before these arguments, by design: nothing to warn about.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = PretrainCLI(argv)
    continue_run_folder(cli.trainer, cli.config["ckpt_path"], cli.checkpoint)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config["ckpt_path"])
    except InputError:
        remove_refused_run_folder(cli.trainer, cli.config["ckpt_path"])
        raise
    run = Path(cli.trainer.log_dir)  # on every process: it broadcasts from rank 0, so rank 0 alone would hang
    if not cli.trainer.is_global_zero:
        return
    export = export_best(cli.trainer, cli.model, cli.datamodule, run)
    best = cli.trainer.checkpoint_callback.best_model_score
    score = f" (best val_loss {float(best):.4f})" if best is not None else ""
    print(f"\nPretrained{score}; export: {export}")
    print(
        f"Fine-tune from it (its tokenizer comes along):\n  python -m lightning_albert fit --config <fit config> "
        f"--model.pretrained {export} --model.config null"
    )
