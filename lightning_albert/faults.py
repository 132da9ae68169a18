"""A fit that meets a signal or a non-finite loss ends cleanly, and can be resumed from its last good checkpoint.

Signals (SIGTERM from a preempting cluster or SLURM, SIGINT from Ctrl+C): Lightning's signal connector already turns
SIGTERM into `trainer.received_sigterm`, and its loops raise `SIGTERMException` at the next batch boundary.
`InterruptCheckpoint` routes a first Ctrl+C into that same path (a `KeyboardInterrupt` lands mid-step, where no
checkpoint is consistent) and, in `on_exception`, saves `checkpoints/last.ckpt` through `trainer.save_checkpoint`
(atomic on disk), prints the resume command and exits with 128 + the signal's number (143 for SIGTERM, 130 for
SIGINT), as a shell reports a process a signal stopped: a requeue script or `fit && test` sees the run did not finish.
Lightning alone exits 0 and saves nothing. Under DDP the processes first agree, after each batch, whether any was
signalled (`_agree_to_stop`), so they all stop after the same batch and save together. A signal inside fit's
validation is saved so that the resumed fit runs that validation again (`resume.rerun_interrupted_validation`); one
after training (the test of the best checkpoint, the baseline) saves nothing and says how to finish
(`after_training`).

Non-finite losses: `NonFiniteLossCheck` records the first optimizer step whose loss was NaN or infinite in a device
tensor (no host sync per step) and looks at it, across ranks, every `log_every_n_steps`, at epoch end and before any
checkpoint is written; a fault raises `TrainingError`, which the CLI prints as one paragraph with exit status 1.
"""

import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_albert.checkpoints import last_checkpoint_path
from lightning_albert.errors import TrainingError
from lightning_albert.resume import rerun_interrupted_validation

NO_FAULT = torch.iinfo(torch.int64).max  # "no bad step yet": the minimum over ranks is then the first bad step


def resume_command(trainer: Trainer, command: str) -> str:
    # `--ckpt_path last` finds checkpoints/ beside the run's config.yaml (checkpoints.py), written by LightningCLI.
    config = last_checkpoint_path(trainer).parent.parent / "config.yaml"
    return f"python -m lightning_albert {command} --config {shlex.quote(str(config))} --ckpt_path last"


class InterruptCheckpoint(Callback):
    """On SIGTERM or a first Ctrl+C, stop at the end of the batch, save a resumable `last.ckpt` and say how to resume.

    A second Ctrl+C stops at once, without a checkpoint (Lightning's KeyboardInterrupt shutdown, exit status 1).
    `command` (fit, pretrain) is the one the resume line names.
    """

    def __init__(self, command: str = "fit") -> None:
        self.command = command
        self.signal: signal.Signals | None = None  # SIGINT once a Ctrl+C was routed to Lightning's SIGTERM path
        self.validating = False  # while saving the checkpoint of a signal that landed in fit's validation
        self.noted = False  # under DDP: this process received the signal, and the others may not know yet
        self.agreed = False  # under DDP: every process stops at the same batch (`_agree_to_stop`)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Installed after Lightning registered its handlers, so its teardown restores the original ones.
        self.signal, self.noted, self.agreed = None, False, False
        # Under DDP a Ctrl+C reaches every process of the terminal: rank 0 alone takes it, the others learn of it
        # when they agree to stop.
        handler = self._on_sigint if trainer.is_global_zero else signal.SIG_IGN
        signal.signal(signal.SIGINT, handler)
        if trainer.world_size > 1:
            # Lightning 2.6's SIGTERM handler broadcasts from inside the handler, so the processes part at different
            # batches and a collective save would hang. This one only notes the signal.
            signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.noted = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        self._agree_to_stop(trainer)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._agree_to_stop(trainer)  # every process runs as many validation batches (EvalBatchSampler)

    def _agree_to_stop(self, trainer: Trainer) -> None:
        """Under DDP, after every batch: has any process been signalled? Then all stop after this same batch.

        One all-reduce of one number a batch (Lightning broadcasts its own flag as often). The stop itself is
        Lightning's: with its flag set on every process at once, each loop raises SIGTERMException at the same
        boundary, and `on_exception` saves last.ckpt together.
        """
        if trainer.world_size == 1 or self.agreed:
            return
        noted = torch.tensor(int(self.noted), device=trainer.strategy.root_device)
        if int(trainer.strategy.reduce(noted, reduce_op="max")):
            self.agreed = True
            # Private: Lightning has no public way to set the flag its loops read (trainer.received_sigterm is
            # read-only; no upstream issue asks for one yet). tests/test_distributed.py fails if this stops stopping
            # the run, tests/test_private_api.py if the member goes.
            trainer._signal_connector.received_sigterm = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.SIGINT
        print(
            "Interrupted: stopping at the end of this batch and saving a checkpoint "
            "(press Ctrl+C again to stop at once, without one).",
            file=sys.stderr,
        )
        lightning_handler = signal.getsignal(signal.SIGTERM)  # sets trainer.received_sigterm
        if callable(lightning_handler):
            lightning_handler(signum, frame)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        signum = self.signal or signal.SIGTERM
        exception.code = 128 + signum  # SIGTERMException is a SystemExit
        if trainer.state.fn != TrainerFn.FITTING:
            return  # the test that ends fit: training is over and its last.ckpt must stay (`after_training`)
        where = f"Interrupted by {signum.name} at optimizer step {trainer.global_step} (epoch {trainer.current_epoch})"
        path = last_checkpoint_path(trainer)
        if trainer.world_size > 1 and not self.agreed:
            # Stopped by Lightning's own handling (before training started): the processes may be at different
            # batches, and a collective save would hang. Keep the last saved one.
            if trainer.is_global_zero:
                saved = f"the last checkpoint saved before it is {path}" if path.is_file() else "no checkpoint yet"
                command = resume_command(trainer, self.command)
                print(f"{where}: not saved under DDP; {saved}. To resume:\n  {command}", file=sys.stderr)
            return
        # Stopped inside fit's validation: the resumed fit runs it again (see on_save_checkpoint).
        self.validating = trainer.state.fn == TrainerFn.FITTING and trainer.validating and not trainer.sanity_checking
        try:
            trainer.save_checkpoint(path, weights_only=False)  # on every process: each takes part in the save
        except TrainingError as fault:  # the weights went bad before the signal: keep the last good checkpoint
            if trainer.is_global_zero:
                print(f"{where}, and: {fault}", file=sys.stderr)
            exception.code = 1
            return
        finally:
            self.validating = False
        if trainer.is_global_zero:
            print(f"{where}: saved {path}. To resume:\n  {resume_command(trainer, self.command)}", file=sys.stderr)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.validating:
            rerun_interrupted_validation(checkpoint)


class NonFiniteLossCheck(Callback):
    """Stop with a clear error at the first NaN or infinite training loss; write no checkpoint after it."""

    def __init__(self, command: str = "fit") -> None:
        self.command = command  # the one the resume line names
        self.fault_step: torch.Tensor | None = None  # first bad optimizer step on this rank, NO_FAULT if none
        self.fault_loss: torch.Tensor | None = None  # the loss at that step (nan, inf or -inf)
        self.step = 0  # the optimizer step the current batch contributes to (1-based)
        self.checked_at = -1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.fault_step = torch.full((), NO_FAULT, dtype=torch.int64, device=pl_module.device)
        self.fault_loss = torch.zeros((), dtype=torch.float32, device=pl_module.device)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self.step = trainer.global_step + 1  # also right for the accumulating batches before a step

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and self.fault_step is not None:
            loss = loss.detach().float()
            # On the device, without a sync: keep the first step whose loss is not finite.
            first = ~torch.isfinite(loss) & (self.fault_step == NO_FAULT)
            self.fault_step = torch.where(first, torch.full_like(self.fault_step, self.step), self.fault_step)
            self.fault_loss = torch.where(first, loss, self.fault_loss)
        if trainer.global_step % trainer.log_every_n_steps == 0 and trainer.global_step != self.checked_at:
            self.checked_at = trainer.global_step
            self.check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer)  # so a fault found later is always in the current epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer)  # max_steps may end training mid-epoch

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self.check(trainer)  # raising here writes nothing: dump_checkpoint runs before the file is opened

    def check(self, trainer: Trainer) -> None:
        """Raise `TrainingError` if any rank saw a non-finite loss. Called on every rank: it gathers across them."""
        if self.fault_step is None:
            return
        first = int(trainer.strategy.reduce(self.fault_step.clone(), reduce_op="min"))  # the one host sync
        if first == NO_FAULT:
            return
        steps = trainer.strategy.all_gather(self.fault_step).reshape(-1)
        loss = float(trainer.strategy.all_gather(self.fault_loss).reshape(-1)[steps.argmin()])
        raise TrainingError(
            f"the training loss was {loss} at optimizer step {first} (epoch {trainer.current_epoch}), so training "
            f"stopped there and wrote no checkpoint after it; those in {last_checkpoint_path(trainer).parent} are "
            f"from before. Try a lower model.learning_rate, more warmup (model.warmup_ratio), gradient clipping "
            f"(trainer.gradient_clip_val, now {trainer.gradient_clip_val}) or, if it ran in 16-bit, "
            f"trainer.precision 32-true; then start again, or continue from the last good checkpoint: "
            f"{resume_command(trainer, self.command)} plus the changed setting."
        )


class _Stopped(BaseException):
    """A signal after training (not an Exception: nothing on the way may take it for an error and go on)."""


@contextmanager
def after_training(trainer: Trainer, command: str = "fit") -> Iterator[None]:
    """Around what a fit does once training is over (testing the best checkpoint, the baseline, the summary).

    A signal there loses no training: the checkpoints, the export and the card are written. It stops the work left,
    says what is missing and the command that finishes it (a fit resumed from its final last.ckpt trains no
    further: it tests and scores the baseline again), and exits with 128 + the signal's number. During the test,
    Lightning's own SIGTERM handling stops the loop (InterruptCheckpoint then saves nothing); elsewhere this one.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except (_Stopped, SIGTERMException) as stopped:
        if isinstance(stopped, _Stopped):
            signum = signal.Signals(stopped.args[0])
        else:  # InterruptCheckpoint set its code to 128 + the signal's number; without it, Lightning's SIGTERM
            code = stopped.code if isinstance(stopped.code, int) else 0
            signum = signal.Signals(code - 128) if code - 128 in (signal.SIGTERM, signal.SIGINT) else signal.SIGTERM
        if trainer.is_global_zero:
            print(
                f"Interrupted by {signum.name} after training had finished, before the test of the best checkpoint "
                f"and the baseline were done: the checkpoints, the export and the model card are written, without "
                f"those results. To add them:\n  {resume_command(trainer, command)}",
                file=sys.stderr,
            )
        raise SystemExit(128 + signum) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
