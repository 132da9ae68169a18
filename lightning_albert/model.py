"""AlbertClassifier: the ALBERT model with a classification head, trained with the seed recipe, and the
metrics it reports per stage (torchmetrics, so DDP figures are exact)."""

import time
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from lightning_albert import attention
from lightning_albert.albert import build_albert
from lightning_albert.errors import InputError
from lightning_albert.labels import balanced_weights, check_class_weights
from lightning_albert.optim import adamw_with_schedule, check_scheduler_type, clip_gradients
from lightning_albert.options import check_model
from lightning_albert.process_state import restore_process_states, save_process_states


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
        class_weights: Literal["balanced"] | list[float] | None = None,
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
            class_weights: Weights of the classes in the cross-entropy, for imbalanced data: null (none, as the
                seed run), balanced (n / (classes x count) per class from the training labels, scikit-learn's
                rule, computed when fit starts) or one positive weight per class in id order. The validation and
                test losses are weighted alike; the card lists the weights. Accuracy, precision, recall and F1 are
                not weighted.
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
        # In the state dict (so a checkpoint carries the weights it was trained with), only when asked for: the
        # checkpoints of runs without weights keep their keys.
        if class_weights is None:
            self.loss_weights: torch.Tensor | None = None
        else:
            given = check_class_weights(class_weights, self.id2label)
            self.register_buffer("loss_weights", torch.tensor(given or [1.0] * num_labels, dtype=torch.float32))
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

    def setup(self, stage: str) -> None:
        """`class_weights: balanced` from the training labels (the DataModule is set up by now; a resumed fit
        then restores the same weights from its checkpoint)."""
        if stage == "fit" and self.hparams.class_weights == "balanced":
            train = getattr(self.trainer.datamodule, "split", None)
            if train is None:
                raise InputError("model.class_weights: balanced needs the TextClassificationDataModule's labels.")
            weights = balanced_weights(train("train").labels, self.id2label)
            self.loss_weights.copy_(torch.tensor(weights, dtype=torch.float32))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self(batch), batch["labels"], weight=self.loss_weights)
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
        # Weighted by the batch's share (its size, or its class weights' sum): the epoch's loss is then the mean
        # over all its samples, not over batches (the last one is smaller).
        share = labels.numel() if self.loss_weights is None else self.loss_weights[labels].sum()
        loss.update(torch.nn.functional.cross_entropy(logits, labels, weight=self.loss_weights), weight=share)
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
