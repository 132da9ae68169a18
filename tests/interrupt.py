"""A callback the resume tests put into `fit` from the command line: it kills the process at a chosen step.

    --trainer.callbacks+=tests.interrupt.KillAt --trainer.callbacks.step 7

SIGKILL cannot be caught: nothing is saved on the way out, as when a machine is lost or the OOM killer strikes.
"""

import os
import signal

from lightning.pytorch import Callback


class KillAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning runs callbacks before ModelCheckpoint, so a step checkpoint due at this step is not written.
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
