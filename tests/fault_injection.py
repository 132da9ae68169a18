"""Callbacks that inject faults into a fit run through the CLI: `--trainer.callbacks+=tests.fault_injection.X`."""

import os
import signal

import torch
from lightning.pytorch import Callback


class SendSignal(Callback):
    """Send this process a signal once optimizer step `step` is done, as a cluster or a Ctrl+C would."""

    def __init__(self, step: int, signal_name: str = "SIGTERM", rank: int | None = None) -> None:
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.rank = rank  # None: every rank signals itself, as SLURM signals every task

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signum)


class PoisonWeights(Callback):
    """Set the word embeddings to NaN before the batch of optimizer step `step`, so its loss is NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    @torch.no_grad()
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 == self.step:
            pl_module.model.albert.embeddings.word_embeddings.weight.fill_(float("nan"))


class SendSignalInEvaluation(Callback):
    """Send this process a signal after batch `batch` of fit's validation in epoch `epoch` (`stage` validate, not the
    sanity check) or of the test that ends fit (`stage` test), as a preempting scheduler would; not in a resumed fit,
    which runs that evaluation again. `stage` after_test: once that test is over, while the baseline is fitted."""

    def __init__(self, stage: str = "validate", epoch: int = 0, batch: int = 0, signal_name: str = "SIGTERM") -> None:
        self.stage, self.epoch, self.batch = stage, epoch, batch
        self.signum = signal.Signals[signal_name]

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        first_run = trainer.ckpt_path is None
        if self.stage == "validate" and first_run and not trainer.sanity_checking:
            if trainer.current_epoch == self.epoch:
                self._send_at(batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "test":
            self._send_at(batch_idx)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.stage == "after_test" and stage == "test":
            os.kill(os.getpid(), self.signum)

    def _send_at(self, batch_idx: int) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)
