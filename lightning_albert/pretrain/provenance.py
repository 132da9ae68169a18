"""Where a model's weights came from: the record `pretrain` leaves beside its export.

`tune` picks its search space by it (a small self-pretrained model still wants from-scratch learning rates) and
the model card of a fit from that export says what pretrained it.
"""

import json
from pathlib import Path
from typing import Any

from lightning_albert.errors import InputError
from lightning_albert.files import atomic_write

PRETRAINING_RECORD = "pretraining.json"


def write_pretraining_record(folder: Path, record: dict[str, Any]) -> None:
    with atomic_write(folder / PRETRAINING_RECORD) as f:
        f.write(json.dumps(record, indent=1) + "\n")


def pretraining_record(source: str | Path | None) -> dict[str, Any] | None:
    """The record of an export of `pretrain`; None for a hub name, another folder, or a folder since removed.

    A damaged record is an error, not "no record": tune would silently search the ranges of a published model.
    """
    path = Path(str(source)) / PRETRAINING_RECORD if source else None
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        record = error
    if not isinstance(record, dict):
        raise InputError(
            f"{path}: not a pretraining record that `pretrain` wrote (a JSON object was expected). "
            "Export the pretraining run again, or delete the file if that folder was not made by `pretrain`."
        )
    return record
