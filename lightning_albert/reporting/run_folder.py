"""What a fit leaves in its run folder besides Lightning's logs and checkpoints.

tokenizer/       the tokenizer (a trained one exists only in memory until fit starts)
report.json      per validation: optimizer step and the task's record (a confusion matrix, or regression's value
                 pairs); the task, labels, run facts, how the run ended, and the best checkpoint's test results when
                 fit ends by testing it
README.md        the model card, with learning_curves.png and the task's pictures (confusion_matrix.png and
                 test_confusion_matrix.png; regression: predicted_vs_true.png)
hf_model/        the best checkpoint exported for transformers
"""

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping

from lightning_albert.checkpoints import load_checkpoint
from lightning_albert.export import EXPORT_FOLDER, export_checkpoint
from lightning_albert.files import atomic_write
from lightning_albert.pretrain.provenance import pretraining_record
from lightning_albert.reporting.report import write_report
from lightning_albert.resume import continued_report, run_folder_of


class RunFolderWriter(Callback):
    """Writes on rank 0 only; every number it records was already synced across processes by torchmetrics."""

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}
        self.folder = Path()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # On every rank: `trainer.log_dir` broadcasts from rank 0, so asking on rank 0 alone would deadlock.
        self.folder = Path(trainer.log_dir)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        data = trainer.datamodule
        data.tokenizer.save_pretrained(self.folder / "tokenizer")
        if trainer.ckpt_path and run_folder_of(trainer.ckpt_path) == self.folder.resolve():
            # (trainer.ckpt_path is set by now: on_fit_start runs after Lightning resolved it.)
            # Resuming this run: its evaluations up to the checkpoint stand; later ones will be made again.
            report = continued_report(self.folder, load_checkpoint(trainer.ckpt_path)["global_step"])
            if report is not None:
                self.report = report
                self._save()
                return
        self.report = {
            "task": pl_module.task.name,
            "labels": list(data.labels),
            "facts": {
                "world_size": trainer.world_size,
                "strategy": type(trainer.strategy).__name__,
                "precision": trainer.precision,
                "train_examples": len(data.split("train")),
                "validation_examples": len(data.split("validation")),
                "vocab_size": data.vocab_size,
                # What pretrained the starting weights, when `pretrain` did: kept, as its export may be removed.
                "pretraining": pretraining_record(pl_module.hparams.get("pretrained")),
                # The loss's class weights, as used (`balanced` resolved from the training labels by now).
                "class_weights": _weights(pl_module),
                # Multi-label: where a probability becomes a predicted label.
                "thresholds": pl_module.threshold_list,
            },
            "evaluations": [],
        }
        self._save()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or pl_module.evaluation_record is None:
            return
        self.report["evaluations"].append(
            {"epoch": trainer.current_epoch, "step": trainer.global_step, **pl_module.evaluation_record}
        )
        self._save()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.report["facts"]["epochs_run"] = trainer.current_epoch
        self.report["facts"]["max_epochs"] = trainer.max_epochs
        stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
        if stopper is not None and stopper.stopped_epoch:
            self.report["facts"]["early_stopping"] = {
                "stopped_after_epoch": stopper.stopped_epoch,  # 0-based, as Lightning counts
                "monitor": stopper.monitor,
                "mode": stopper.mode,
                "patience": stopper.patience,
                "min_delta": abs(stopper.min_delta),
                "reason": stopper.stopping_reason_message,
            }
        self._save()
        folder = self.folder
        checkpoint = trainer.checkpoint_callback
        best = checkpoint and (checkpoint.best_model_path or checkpoint.last_model_path)
        if best:
            export_checkpoint(best, folder / EXPORT_FOLDER, overwrite=True)
        for logger in trainer.loggers:  # metrics.csv complete before the card reads it
            logger.save()
        write_report(folder)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After fit, the CLI tests the best checkpoint: its scores and confusion matrix go on the card."""
        if not trainer.is_global_zero or not self.report or pl_module.evaluation_record is None:
            return
        checkpoint = trainer.checkpoint_callback
        metrics = {
            k.removeprefix("test_"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test_")
        }
        self.report["test"] = {
            "checkpoint": Path(checkpoint.best_model_path).name if checkpoint and checkpoint.best_model_path else None,
            "examples": len(trainer.datamodule.split("test")),
            "loss": metrics.pop("loss"),
            "metrics": metrics,
            **pl_module.evaluation_record,
        }
        self._save()
        write_report(self.folder)

    def add(self, key: str, value: Any) -> None:
        """Record something computed after training (the baseline), and render the card again."""
        self.report[key] = value
        self._save()
        write_report(self.folder)

    def _save(self) -> None:
        with atomic_write(self.folder / "report.json", encoding="utf-8") as f:
            json.dump(self.report, f, indent=1)


def _weights(module: LightningModule) -> list[float] | None:
    weights = getattr(module, "loss_weights", None)
    return None if weights is None else [round(float(w), 6) for w in weights]
