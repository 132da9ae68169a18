"""What a fit leaves in its run folder besides logs and checkpoints."""

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer


class SaveTokenizer(Callback):
    """Saves the data's tokenizer to `<run>/tokenizer/` when fit starts, beside config.yaml and checkpoints.

    A trained tokenizer exists only in memory until then; with it saved, the run folder is complete even if
    the checkpoints (which carry the tokenizer too) are moved away.
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and trainer.log_dir:
            trainer.datamodule.tokenizer.save_pretrained(Path(trainer.log_dir) / "tokenizer")
