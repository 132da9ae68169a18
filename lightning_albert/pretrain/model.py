"""AlbertPretrainer: ALBERT with its masked-language head (and sentence-order head), trained with the shared
AdamW recipe; the masked-language projection runs on the masked positions only."""

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy
from transformers import AlbertForMaskedLM, AlbertForPreTraining

from lightning_albert.albert import albert_config, load_pretrained
from lightning_albert.optim import adamw_with_schedule, check_scheduler_type, clip_gradients
from lightning_albert.options import check_model
from lightning_albert.pretrain.masking import IGNORE
from lightning_albert.process_state import restore_process_states, save_process_states


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
