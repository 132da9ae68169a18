"""Writing `predict`'s output: one CSV row per input row, in input order, with the task's columns (the label
and each class's probability; the labels and each label's probability; the predicted value)."""

import csv
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_albert.files import atomic_write


class PredictionsWriter(Callback):
    """Collects each batch's predictions and writes them once at the end, on rank 0.

    Rows carry their index in the input file, so the output is in input order and, under DDP, rows the
    distributed sampler repeated to even out the ranks are written once.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.target: Path | None = None  # resolved in setup, on every rank
        self._rows: dict[int, dict[str, Any]] = {}

    def resolved_path(self, trainer: Trainer) -> Path:
        """Call on every rank: `trainer.log_dir` broadcasts from rank 0."""
        return self.path or Path(trainer.log_dir or ".") / "predictions.csv"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.target = self.resolved_path(trainer)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for i, row in enumerate(outputs["row"].tolist()):
            self._rows[row] = outputs["outputs"][i].tolist()

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows = self._rows
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[dict] = [{} for _ in range(trainer.world_size)]
            dist.all_gather_object(gathered, rows)
            rows = {k: v for part in gathered for k, v in part.items()}
        if trainer.is_global_zero:
            self.write(trainer, pl_module, rows)

    def write(self, trainer: Trainer, pl_module: LightningModule, rows: dict[int, dict[str, Any]]) -> None:
        data = trainer.datamodule
        split = data.split("predict")
        table = data.table("predict")
        task, names, thresholds = pl_module.task, pl_module.labels, pl_module.threshold_list
        columns = task.prediction_header(names)
        header = ["row"] + ([data.id_column] if data.id_column else []) + [data.text_column]
        header += [data.text_pair_column] if data.text_pair_column else []
        header += columns
        texts = table.column(data.text_column, "text")
        pairs = table.column(data.text_pair_column, "text_pair") if data.text_pair_column else None
        path = self.target
        empty = []
        with atomic_write(path, newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for k, r in enumerate(split.rows):
                values = [r] + ([split.ids[k]] if data.id_column else []) + [texts[r] or ""]
                values += [pairs[r] or ""] if pairs else []
                if (texts[r] or "").strip() or (pairs and (pairs[r] or "").strip()):
                    values += task.prediction_cells(rows[r], names, thresholds, data.label_format.separator)
                else:  # nothing to classify: the row stays (rows match the input), without a made-up label
                    empty.append(r)
                    values += [""] * len(columns)
                writer.writerow(values)
        print(f"Wrote {len(split.rows)} predictions to {path}")
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
            print(f"{len(empty)} text(s) were empty (row {shown}): their rows have no label or probabilities.")


def read_predictions(path: str | Path) -> list[dict[str, str]]:
    """The predictions file as a list of dicts (a convenience for tests and notebooks)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
