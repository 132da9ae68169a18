"""The Lightning callback that `speed.py` injects into `python -m lightning_albert fit` from the command line.

    --trainer.callbacks+=benchmarks.timing.StepTimer --trainer.callbacks.output=<json> ...

It records what `measurements.py` defines and writes it as JSON at the end of fit, for the parent to read.
"""

import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks.measurements import Measurements


class StepTimer(Callback):
    def __init__(self, output: str, warmup_steps: int = 5, threads: int = 2):
        """Record step times and tokens after warm-up, and the validation time; write them to `output` as JSON.

        Args:
            output: Where to write the JSON at the end of fit.
            warmup_steps: Optimizer steps not recorded (first steps: allocation, kernel choice, compilation).
            threads: torch intra-op threads, set before training.
        """
        self.output = output
        self.warmup_steps = warmup_steps
        self.threads = threads
        self.measurements = Measurements()
        self._last_step_end: float | None = None
        self._batch: dict[str, torch.Tensor] | None = None
        self._eval_start = 0.0
        self._eval_samples = 0
        torch.set_num_threads(threads)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        torch.set_num_threads(self.threads)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch = batch

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last_step_end is not None and trainer.global_step > self.warmup_steps:
            self.measurements.record_step(now - self._last_step_end, self._batch)
        self._last_step_end = now

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_samples = 0
        self._eval_start = time.perf_counter()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_samples += int(batch["input_ids"].shape[0])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = time.perf_counter() - self._eval_start
        if trainer.sanity_checking:  # the warm-up pass (run with --trainer.num_sanity_val_steps -1)
            self.measurements.eval_warmup_seconds = seconds
        else:
            self.measurements.eval_seconds = seconds
            self.measurements.eval_samples = self._eval_samples

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._last_step_end is not None:  # the next step's time starts after validation, not before it
            self._last_step_end = time.perf_counter()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dtype = torch.bfloat16 if "bf16" in str(trainer.precision) else torch.float32
        self.measurements.finish(dtype, self.output)
