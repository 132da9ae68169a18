"""AlbertClassifier: the ALBERT model with a classification (or regression) head, trained with the seed recipe,
and the metrics it reports per stage (torchmetrics, so DDP figures are exact). What differs by task (the loss,
the metrics, the outputs) is the task's (tasks/)."""

import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric, Metric, MetricCollection

from lightning_albert import attention
from lightning_albert.albert import build_albert
from lightning_albert.errors import InputError
from lightning_albert.optim import adamw_with_schedule, check_scheduler_type, clip_gradients
from lightning_albert.options import check_model
from lightning_albert.process_state import restore_process_states, save_process_states
from lightning_albert.tasks import TaskName, get_task


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
        task: TaskName = "single_label",
        threshold: float | list[float] = 0.5,
    ):
        """ALBERT with a classification head, trained with the seed card's recipe by default.

        Args:
            pretrained: Hub name or local folder of pretrained weights (`from_pretrained`), e.g. albert-base-v2.
            config: Build a randomly initialised ALBERT instead: a JSON file path or inline AlbertConfig values.
                Used when `pretrained` is unset (the offline path).
            num_labels: Number of outputs: classes, labels, or 1 for regression (linked from the data).
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
                rule, computed when fit starts) or one positive weight per class in id order. Multi-label: the
                binary cross-entropy's pos_weight per label (balanced: negatives / positives). The validation and
                test losses are weighted alike; the card lists the weights. The other metrics are not weighted.
            task: single_label, multi_label or regression (linked from data.task).
            threshold: Multi-label: a label is predicted when its probability is above this; one number, or one
                per label in id order. Used by the metrics, predict, the export (and so serve) and the card.
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
        self.task = get_task(task)
        labels = [self.id2label[i] for i in range(num_labels)]
        self.model = build_albert(pretrained, config, self.id2label, vocab_size, self.task.problem_type)
        # In the state dict (so a checkpoint carries the weights it was trained with), only when asked for: the
        # checkpoints of runs without weights keep their keys.
        if class_weights is None:
            self.loss_weights: torch.Tensor | None = None
        else:
            # A list is checked now; `balanced` is ones until fit starts (setup). A task without classes refuses both.
            given = [1.0] * num_labels if class_weights == "balanced" else class_weights
            weights = self.task.loss_weights(given, None, labels)
            self.register_buffer("loss_weights", torch.tensor(weights, dtype=torch.float32))
        thresholds = self.task.check_thresholds(threshold, labels)
        # Not in the state dict: set by model.threshold (hyperparameters), so checkpoints keep their keys.
        given = None if thresholds is None else torch.tensor(thresholds, dtype=torch.float32)
        self.register_buffer("thresholds", given, persistent=False)
        if attn_implementation == "matmul":
            self.model.set_attn_implementation(attention.NAME)
        if compile:
            # In place: the module and its state_dict keys stay as they are (no `_orig_mod.` prefix), so
            # checkpoints and the export do not depend on whether the run compiled.
            self.model.compile(dynamic=True)
        self._first_step_started: float | None = None  # to report the compile time once
        # Another runtime's forward (predict --runtime onnx: an ONNX Runtime session), in place of the torch model's.
        self.runtime: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None

        self.val_metrics = self.task.metric_collection(num_labels, "val_")
        self.test_metrics = self.task.metric_collection(num_labels, "test_")
        # Means as metric objects: summed across processes under DDP before dividing, so epoch figures are exact.
        self.train_loss = MeanMetric()
        # Saved in checkpoints, so an epoch resumed mid-way reports the mean over all of its steps.
        self.train_loss.persistent(True)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # Not logged (no scalar: a confusion matrix, value pairs): kept after each evaluation for the card.
        self.val_record = self.task.record_metric(num_labels)
        self.test_record = self.task.record_metric(num_labels)
        self.evaluation_record: dict[str, Any] | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a batch from the DataModule (extra keys such as `labels` and `row` are ignored)."""
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        if self.runtime is not None:
            return self.runtime(inputs).to(self.device)
        return self.model(**inputs).logits

    def setup(self, stage: str) -> None:
        """`class_weights: balanced` from the training labels (the DataModule is set up by now; a resumed fit
        then restores the same weights from its checkpoint)."""
        if stage == "fit" and self.hparams.class_weights == "balanced":
            train = getattr(self.trainer.datamodule, "split", None)
            if train is None:
                raise InputError("model.class_weights: balanced needs the TextClassificationDataModule's labels.")
            labels = [self.id2label[i] for i in range(len(self.id2label))]
            weights = self.task.loss_weights("balanced", train("train").labels, labels)
            self.loss_weights.copy_(torch.tensor(weights, dtype=torch.float32))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.task.loss(self(batch), batch["labels"], self.loss_weights)
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
        self._evaluate(batch, self.val_loss, self.val_metrics, self.val_record, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_metrics, self.test_record, "test")

    def _evaluate(self, batch, loss: MeanMetric, metrics: MetricCollection, record: Metric, stage: str) -> None:
        logits = self(batch)
        targets = batch["labels"]
        # Weighted by the batch's share (its size, or its class weights' sum): the epoch's loss is then the mean
        # over all its samples, not over batches (the last one is smaller).
        share = self.task.loss_share(targets, self.loss_weights)
        loss.update(self.task.loss(logits, targets, self.loss_weights), weight=share)
        inputs, truth = self.task.metric_inputs(logits, self.thresholds), self.task.metric_targets(targets)
        metrics.update(inputs, truth)
        record.update(inputs, truth)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.evaluation_record = self.task.record(self.val_record.compute().cpu())  # synced across processes
        self.val_record.reset()

    def on_test_epoch_end(self) -> None:
        self.evaluation_record = self.task.record(self.test_record.compute().cpu())
        self.test_record.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The full transformers config, so a checkpoint exports or rebuilds without the hub or a config file.
        checkpoint["albert_config"] = self.model.config.to_dict()
        save_process_states(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_process_states(self, checkpoint)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        """Each row's outputs: class probabilities (softmax, or a sigmoid per label), or the predicted value."""
        return {"row": batch["row"].cpu(), "outputs": self.task.outputs(self(batch)).cpu()}

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    @property
    def threshold_list(self) -> list[float] | None:
        return None if self.thresholds is None else self.thresholds.tolist()

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self)


ATTENTION_CHOICES = ("sdpa", "matmul")
