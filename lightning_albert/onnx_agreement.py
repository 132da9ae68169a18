"""How closely an ONNX export answers as the float32 PyTorch model it came from, on the run's validation split.

Measured by `export --format onnx` when the checkpoint's validation data is still where the run read it, and
written into the export's README.md (its card), so a user sees what int8 cost before deploying it.
"""

from inspect import signature
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_albert.errors import InputError
from lightning_albert.onnx_export import OnnxClassifier
from lightning_albert.tasks import get_task
from lightning_albert.token_cache import PadCollator

BATCH = 32


def validation_agreement(checkpoint: dict[str, Any], model, folder: Path) -> dict[str, Any] | None:
    """Labels equal (classification) and the largest output difference between `model` (torch, float32) and
    the ONNX model in `folder`, over the validation split of the checkpoint's data; None when it is not found."""
    from lightning_albert.data import TextClassificationDataModule  # here: data.py imports this package's peers

    saved = checkpoint.get("datamodule_hyper_parameters") or {}
    accepted = signature(TextClassificationDataModule).parameters
    settings = {k: v for k, v in saved.items() if k in accepted}  # not Lightning's own keys (`_instantiator`)
    if not settings:
        return None
    labels = list(checkpoint[TextClassificationDataModule.__qualname__]["labels"])
    settings.update(tokenizer=str(folder), labels=labels, cache_tokens=False)
    try:
        data = TextClassificationDataModule(**settings)
        data.setup("validate")
    except (InputError, OSError):
        return None  # the files moved, or the dataset needs the network: said as "not measured"
    split = data.split("validation")
    task = get_task((checkpoint.get("hyper_parameters") or {}).get("task"))
    thresholds = getattr(model.config, "thresholds", None)
    onnx, collate = OnnxClassifier(folder), PadCollator(data.tokenizer.pad_token_id)
    order = np.argsort(split.lengths, kind="stable")
    reference, exported = [], []
    with torch.inference_mode():
        for start in range(0, len(order), BATCH):
            batch = collate([split[int(i)] for i in order[start : start + BATCH]])
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            reference.append(task.outputs(model.eval()(**inputs).logits))
            exported.append(task.outputs(onnx(inputs)))
    a, b = torch.cat(reference).numpy(), torch.cat(exported).numpy()
    result: dict[str, Any] = {
        "texts": len(split),
        "source": str(settings.get("validation_file") or settings.get("train_file") or settings.get("dataset")),
        "largest_difference": float(np.abs(a - b).max()),
    }
    if task.name == "single_label":
        result["labels_equal"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    elif task.name == "multi_label":
        result["labels_equal"] = float(np.mean((a > np.asarray(thresholds)) == (b > np.asarray(thresholds))))
    return result


def describe(agreement: dict[str, Any] | None, quantize: str | None) -> str:
    """The export card's sentence (and the line export prints)."""
    kind = "int8 weights" if quantize else "float32"
    if agreement is None:
        return f"ONNX ({kind}): not compared with the float32 model (the run's validation data is not found)."
    equal = f"the same labels on {agreement['labels_equal']:.2%}, " if "labels_equal" in agreement else ""
    return (
        f"ONNX ({kind}) against the float32 PyTorch model on the validation split ({agreement['texts']} texts of "
        f"{agreement['source']}): {equal}largest output difference {agreement['largest_difference']:.1e}."
    )
