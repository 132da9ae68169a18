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
