"""AlbertClassifier: the ALBERT model, the seed run's optimizer and schedule, and the metrics it reports."""

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType, rank_zero_info
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    PreTrainedModel,
    SchedulerType,
    get_scheduler,
)
from transformers.utils import logging as hf_logging

from lightning_albert import attention
from lightning_albert.errors import InputError
from lightning_albert.options import check_albert_config, check_model
from lightning_albert.resume import restore_process_states, save_process_states


class AlbertClassifier(LightningModule):
    def __init__(
        self,
        pretrained: str | None = None,
        config: str | dict[str, Any] | None = None,
        num_labels: int = 2,
        id2label: dict[int, str] | None = None,
        vocab_size: int | None = None,
        learning_rate: float = 1e-5,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        lr_scheduler_type: str = "linear",
        warmup_steps: int = 0,
        warmup_ratio: float = 0.0,
        fused_adamw: bool | None = None,
        compile: bool = False,
        attn_implementation: str = "sdpa",
    ):
        """ALBERT with a classification head, trained with the seed card's recipe by default.

        Args:
            pretrained: Hub name or local folder of pretrained weights (`from_pretrained`), e.g. albert-base-v2.
            config: Build a randomly initialised ALBERT instead: a JSON file path or inline AlbertConfig values.
                Used when `pretrained` is unset (the offline path).
            num_labels: Number of classes (linked from the data).
            id2label: Class names by id (linked from the data); written into the model's config.
            vocab_size: Rows of the embedding table (linked from the data's tokenizer).
            learning_rate: Peak learning rate of AdamW.
            adam_betas: AdamW's betas.
            adam_epsilon: AdamW's epsilon.
            weight_decay: AdamW's decoupled weight decay; biases and LayerNorm weights never decay.
            lr_scheduler_type: A transformers schedule name (linear, cosine, constant_with_warmup, ...), stepped
                after every optimizer step over all of training's steps; linear decays to 0 at the last step.
            warmup_steps: Optimizer steps of linear warmup before the linear decay to 0.
            warmup_ratio: Warmup as a share of all optimizer steps; used when warmup_steps is 0.
            fused_adamw: AdamW's fused kernel (one kernel for all parameters). None: wherever torch offers it for
                the device the model trains on; False: torch's default (for-each) implementation.
            compile: torch.compile the ALBERT forward (dynamic shapes, so batches of new lengths do not recompile).
                The first batches are slow while it compiles; the time is reported once.
            attn_implementation: sdpa (torch's fused kernel, transformers' default) or matmul (attention.py: plain
                matmuls and a float32 softmax). Compiled on a CPU, matmul trained albert-base 1.13x as fast, but
                over 8 seeds of the tiny learning benchmark it scored 0.015 lower macro-F1 than sdpa, so it is a
                switch to try, not a default. The export does not record it.
        """
        super().__init__()
        self.save_hyperparameters()
        check_model(self.hparams)
        check_scheduler_type(lr_scheduler_type)
        self.id2label = {int(k): str(v) for k, v in (id2label or {i: f"LABEL_{i}" for i in range(num_labels)}).items()}
        if len(self.id2label) != num_labels:
            raise InputError(f"model.id2label has {len(self.id2label)} names but model.num_labels is {num_labels}.")
        if attn_implementation not in ATTENTION_CHOICES:
            raise InputError(
                f"model.attn_implementation: '{attn_implementation}' is not one of {', '.join(ATTENTION_CHOICES)}."
            )
        self.model = build_albert(pretrained, config, self.id2label, vocab_size)
        if attn_implementation == "matmul":
            self.model.set_attn_implementation(attention.NAME)
        if compile:
            # In place: the module and its state_dict keys stay as they are (no `_orig_mod.` prefix), so
            # checkpoints and the export do not depend on whether the run compiled.
            self.model.compile(dynamic=True)
        self._first_step_started: float | None = None  # to report the compile time once

        def metrics(prefix: str) -> MetricCollection:
            # Accuracy is micro (share of correct predictions), as in the seed card; torchmetrics' default is
            # macro, which is balanced accuracy. Precision, recall and F1 are macro averages over classes.
            return MetricCollection(
                {
                    "accuracy": MulticlassAccuracy(num_labels, average="micro"),
                    "precision": MulticlassPrecision(num_labels, average="macro"),
                    "recall": MulticlassRecall(num_labels, average="macro"),
                    "f1": MulticlassF1Score(num_labels, average="macro"),
                },
                prefix=prefix,
            )

        self.val_metrics = metrics("val_")
        self.test_metrics = metrics("test_")
        # Means as metric objects: summed across processes under DDP before dividing, so epoch figures are exact.
        self.train_loss = MeanMetric()
        # Saved in checkpoints, so an epoch resumed mid-way reports the mean over all of its steps.
        self.train_loss.persistent(True)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # Not logged (a matrix is no scalar): kept after each evaluation for the report's per-class table.
        self.val_confusion = MulticlassConfusionMatrix(num_labels)
        self.test_confusion = MulticlassConfusionMatrix(num_labels)
        self.confusion_matrix: torch.Tensor | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a batch from the DataModule (extra keys such as `labels` and `row` are ignored)."""
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return self.model(**inputs).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self(batch), batch["labels"])
        # The card's "Training Loss" is the plain mean of the epoch's per-step losses. Accumulated on the device
        # and shown once an epoch: a per-step value in the progress bar would wait for the device every step.
        self.train_loss.update(loss.detach())
        return loss

    def on_train_epoch_end(self) -> None:
        # Logged here, not in training_step: a fit resumed inside an epoch's validation runs no training step in
        # that epoch, and its loss (the sums restored from the checkpoint) must still be logged.
        self.log("train_loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_start(self) -> None:
        if self.hparams.compile:
            self._first_step_started = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._first_step_started is not None:
            seconds = time.perf_counter() - self._first_step_started
            rank_zero_info(f"torch.compile: the first training step took {seconds:.1f} s, compilation included.")
            self._first_step_started = None

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_metrics, self.val_confusion, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_metrics, self.test_confusion, "test")

    def _evaluate(self, batch, loss: MeanMetric, metrics: MetricCollection, confusion, stage: str) -> None:
        logits = self(batch)
        labels = batch["labels"]
        # Weighted by batch size: the loss is a mean over samples, not over batches (the last one is smaller).
        loss.update(torch.nn.functional.cross_entropy(logits, labels), weight=labels.numel())
        metrics.update(logits, labels)
        confusion.update(logits, labels)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.confusion_matrix = self.val_confusion.compute().cpu()  # synced across processes by torchmetrics
        self.val_confusion.reset()

    def on_test_epoch_end(self) -> None:
        self.confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The full transformers config, so a checkpoint exports or rebuilds without the hub or a config file.
        checkpoint["albert_config"] = self.model.config.to_dict()
        save_process_states(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_process_states(self, checkpoint)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        probs = self(batch).float().softmax(dim=-1)
        label_ids = probs.argmax(dim=-1)
        return {
            "row": batch["row"].cpu(),
            "label_id": label_ids.cpu(),
            "label": [self.id2label[i] for i in label_ids.tolist()],
            "probs": probs.cpu(),
        }

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self)


ATTENTION_CHOICES = ("sdpa", "matmul")


def check_scheduler_type(name: str) -> None:
    if name not in {t.value for t in SchedulerType}:
        names = ", ".join(t.value for t in SchedulerType)
        raise InputError(f"model.lr_scheduler_type: '{name}' is not one of {names}.")


def adamw_with_schedule(module: LightningModule) -> dict[str, Any]:
    """AdamW and a per-step schedule from the module's hyperparameters (learning_rate, adam_betas, adam_epsilon,
    weight_decay, lr_scheduler_type, warmup_steps, warmup_ratio, fused_adamw): shared by fine-tuning and
    pretraining, so both follow the seed recipe's optimizer."""
    hp = module.hparams
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            # By name, not by shape: FSDP hands over flattened (1-D) parameters.
            (no_decay if _never_decays(name) else decay).append(param)
    # A GradScaler (16-mixed) leaves its scale in the gradients until a fused optimizer's step removes it, so they
    # cannot be clipped before: "auto" leaves fused off there. bf16 has no scaler (see `clip_gradients`).
    trainer = module.trainer
    clipping = bool(trainer.gradient_clip_val)
    scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
    fused = hp.fused_adamw
    if fused is None:
        fused = module.device.type in _FUSED_ADAMW_DEVICES and not (scaled and clipping)
    elif fused and scaled and clipping:
        raise InputError(
            "model.fused_adamw: true cannot be combined with 16-mixed precision and gradient clipping "
            "(trainer.gradient_clip_val): the gradient scaler's scale is still in the gradients when they are "
            "clipped. Leave model.fused_adamw unset, or use bf16-mixed."
        )
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp.learning_rate,
        betas=tuple(hp.adam_betas),
        eps=hp.adam_epsilon,
        fused=fused or None,
    )
    total = trainer.estimated_stepping_batches
    warmup = hp.warmup_steps or math.ceil(total * hp.warmup_ratio)
    scheduler = get_scheduler(hp.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    # "step": the seed's schedule decays every optimizer step (Lightning's default interval is "epoch").
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def clip_gradients(module: LightningModule, optimizer, clip_val, algorithm) -> None:
    """Lightning's gradient clipping, also for a fused AdamW under bf16-mixed (the HF Trainer's default optimizer).

    Lightning's MixedPrecision plugin refuses to clip for any optimizer that unscales gradients in its step (fused
    AdamW), guarding against a GradScaler's scale. bf16-mixed has no scaler, so nothing is left to unscale: there
    the plugin's base-class clipping (the same `clip_grad_norm_` over the same parameters) is called directly.
    """
    plugin = module.trainer.precision_plugin
    if type(plugin) is MixedPrecision and plugin.scaler is None:
        Precision.clip_gradients(plugin, optimizer, clip_val or 0.0, GradClipAlgorithmType(algorithm or "norm"))
    else:
        module.clip_gradients(optimizer, gradient_clip_val=clip_val, gradient_clip_algorithm=algorithm)


def _never_decays(name: str) -> bool:
    """Biases and layer-norm weights (ALBERT names them LayerNorm and full_layer_layer_norm), as the HF Trainer."""
    return name.endswith("bias") or "layernorm" in name.lower().replace("_", "")


# Where torch >= 2.4 has a fused AdamW kernel for floating-point parameters.
_FUSED_ADAMW_DEVICES = ("cuda", "cpu", "mps", "xpu")


def build_albert(
    pretrained: str | None,
    config: str | dict[str, Any] | None,
    id2label: dict[int, str],
    vocab_size: int | None,
) -> AlbertForSequenceClassification:
    """Load pretrained ALBERT weights, or build a fresh ALBERT from a config (file or inline values)."""
    labels = dict(id2label=id2label, label2id={v: k for k, v in id2label.items()})  # num_labels follows id2label
    if pretrained:
        return load_pretrained(AlbertForSequenceClassification, pretrained, vocab_size, **labels)
    return AlbertForSequenceClassification(albert_config(config, vocab_size, **labels))


def load_pretrained(cls: type[PreTrainedModel], pretrained: str, vocab_size: int | None, **settings) -> PreTrainedModel:
    """`cls.from_pretrained`, refusing a source that lacks encoder weights: only task heads may start fresh.

    The pooler is the one exception: it is trained by sentence-order prediction, so an export of masked-language
    pretraining alone has none, and a classifier starts it fresh (as it does its head). A head of another shape
    (a classifier for another number of labels) starts fresh too. One line says what started fresh and what the
    source had that is not used, in place of transformers' table of keys (the same keys, logged as a warning).
    """
    try:
        with _quiet_loading():
            model, info = cls.from_pretrained(
                pretrained, output_loading_info=True, ignore_mismatched_sizes=True, **settings
            )
    except OSError as e:
        raise InputError(
            f"model.pretrained: cannot load '{pretrained}' ({str(e).splitlines()[0]}). Give a local folder with "
            "config.json and weights, a hub name (needs the network), or use model.config to build from scratch."
        ) from None
    # from_pretrained returns the model in eval mode, and Lightning 2.6 keeps each submodule's mode when training
    # starts: without this, dropout would stay off for the whole fit.
    model.train()
    encoder = f"{model.base_model_prefix}."
    reshaped = {key: (old, new) for key, old, new in info["mismatched_keys"]}
    fresh = sorted({*info["missing_keys"], *reshaped})
    missing = [k for k in fresh if k.startswith(encoder) and not k.startswith(f"{encoder}pooler.")]
    if missing:
        shapes = [f"{k} {list(reshaped[k][0])} there, {list(reshaped[k][1])} here" if k in reshaped else k
                  for k in missing[:3]]  # fmt: skip
        raise InputError(
            f"model.pretrained: '{pretrained}' lacks {len(missing)} encoder weight(s) the model needs "
            f"({', '.join(shapes)}{', ...' if len(missing) > 3 else ''}); they would start random. "
            "Give a folder written by save_pretrained of an ALBERT model (fit's or pretrain's hf_model)."
        )
    if vocab_size is not None and vocab_size > model.config.vocab_size:
        raise InputError(
            f"the tokenizer has {vocab_size} pieces but '{pretrained}' has embeddings for "
            f"{model.config.vocab_size}: use the model's own tokenizer (data.tokenizer: {pretrained})."
        )
    rank_zero_info(_loading_summary(pretrained, encoder, fresh, sorted(info["unexpected_keys"]), reshaped))
    return model


def _loading_summary(
    pretrained: str, encoder: str, fresh: list[str], unused: list[str], reshaped: dict[str, tuple]
) -> str:
    """One line: every encoder weight came from `pretrained`; which modules start fresh, and why; what is unused."""

    def module(key: str) -> str:
        return key.removeprefix(encoder).split(".")[0]

    why = {"pooler": "pooler (no sentence-order prediction in its pretraining)"}
    for key, (old, new) in reshaped.items():  # a Linear's weight and bias both lead with its outputs
        why.setdefault(module(key), f"{module(key)} ({old[0]} outputs there, {new[0]} here)")
    line = f"model.pretrained '{pretrained}': every encoder weight loaded"
    if fresh:
        line += "; starting fresh: " + ", ".join(why.get(m, m) for m in dict.fromkeys(map(module, fresh)))
    if unused:
        line += "; not used here: " + ", ".join(dict.fromkeys(map(module, unused)))
    return line + "."


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Drop the LOAD REPORT table transformers 5 logs as a warning on every load: load_pretrained checks the same
    keys. A filter, not a level: modeling_utils runs more checks (that warn) when its logger's level is raised."""
    log = hf_logging.get_logger("transformers.modeling_utils")
    report = _DropLoadReport()
    log.addFilter(report)
    try:
        yield
    finally:
        log.removeFilter(report)


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def albert_config(config: str | dict[str, Any] | None, vocab_size: int | None, **settings) -> AlbertConfig:
    """An AlbertConfig from a JSON file or inline values; `vocab_size` (the tokenizer's) and `settings` win."""
    if config is None:
        raise InputError(
            "the model needs model.pretrained (a hub name or folder, e.g. albert-base-v2) or model.config "
            "(an AlbertConfig JSON file or inline values, to train from scratch)."
        )
    if isinstance(config, dict):
        check_albert_config(config)
    values = dict(config) if isinstance(config, dict) else _read_config_file(config)
    if vocab_size is not None:
        values["vocab_size"] = vocab_size
    try:
        return AlbertConfig(**{**values, **settings})
    except (TypeError, ValueError) as e:
        raise InputError(f"model.config: {e}") from None


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"model.config: no such file '{path}'.") from None
    except json.JSONDecodeError as e:
        raise InputError(f"model.config: {path}, line {e.lineno}: not valid JSON ({e.msg}).") from None
