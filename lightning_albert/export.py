"""Exporting a checkpoint as a Hugging Face folder that `transformers` loads directly.

    python -m lightning_albert export <checkpoint.ckpt | run folder> <output folder> [--format onnx [--quantize int8]]

Built from what the checkpoint carries (the transformers config, the weights, the tokenizer files), so it
needs neither the hub nor the files the run was trained from.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from transformers import AlbertConfig, AlbertForSequenceClassification

from lightning_albert.checkpoints import DATA_STATE_KEY, best_checkpoint, load_checkpoint
from lightning_albert.errors import InputError
from lightning_albert.files import current_umask
from lightning_albert.onnx_agreement import describe, validation_agreement
from lightning_albert.onnx_export import QUANTIZE, check_onnx_available, write_onnx
from lightning_albert.tasks import get_task
from lightning_albert.tokenizer import tokenizer_from_files

EXPORT_FOLDER = "hf_model"  # where a run folder keeps the export of its best checkpoint (fit and pretrain alike)


def export_checkpoint(
    ckpt_path: str | Path,
    output: str | Path,
    overwrite: bool = False,
    format: str = "transformers",
    quantize: str | None = None,
) -> Path:
    """Write `save_pretrained` model and tokenizer files of `ckpt_path` into `output` (with `format="onnx"`, the
    config, the tokenizer and `model.onnx`, int8 weights with `quantize="int8"`); return `output`."""
    output = Path(output)
    if quantize and format != "onnx":
        raise InputError("export: --quantize needs --format onnx (the transformers export keeps float32 weights).")
    if format == "onnx":
        check_onnx_available()
    if output.exists() and not output.is_dir():
        raise InputError(f"export: {output} is a file; give a folder to write the export into.")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise InputError(f"export: {output} exists and is not empty. Choose another folder, or pass --overwrite.")
    checkpoint = load_checkpoint(ckpt_path, "export")
    if "albert_config" not in checkpoint or DATA_STATE_KEY not in checkpoint:
        raise InputError(f"export: {ckpt_path} was not written by lightning_albert (no ALBERT config or tokenizer).")
    config = AlbertConfig.from_dict(checkpoint["albert_config"])
    model = AlbertForSequenceClassification(config)
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(weights)
    hparams = checkpoint.get("hyper_parameters") or {}
    labels = [config.id2label[i] for i in range(config.num_labels)]
    thresholds = get_task(hparams.get("task")).check_thresholds(hparams.get("threshold", 0.5), labels)
    if thresholds is not None:  # multi-label: serve (and a user's code) decides where the run did
        config.thresholds = thresholds
    data = checkpoint[DATA_STATE_KEY]
    tokenizer = tokenizer_from_files(
        data["tokenizer_files"],
        # `truncation=True` then cuts where the run did (data.max_length), so a pipeline sees what training and
        # `predict` saw; checkpoints from before max_length was saved fall back to the model's positions.
        model_max_length=data.get("max_length") or config.max_position_embeddings,
        # transformers 5 tokenizers leave token_type_ids out unless named: a pair model needs them (the second
        # text is segment 1), and for single texts they are the zeros the model assumes anyway.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    # Written beside the target and renamed into place: a crash leaves no half-written export.
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would outlive the rename: what mkdir gives
    try:
        if format == "onnx":
            model.config.save_pretrained(staging)
            write_onnx(model, tokenizer, staging, quantize)
        else:
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if format == "onnx":  # what the ONNX form costs in answers, said in the folder's card
            agreement = validation_agreement(checkpoint, model, staging)
            (staging / "README.md").write_text(
                f"# ONNX export of {Path(ckpt_path).name}\n\n"
                f"Written by `python -m lightning_albert export --format onnx"
                f"{f' --quantize {quantize}' if quantize else ''}` for ONNX Runtime: `model.onnx` (inputs input_ids, "
                "attention_mask, token_type_ids; output logits), with `config.json` (labels, problem_type) and the "
                "tokenizer (the run's truncation).\n\n" + describe(agreement, quantize) + "\n",
                encoding="utf-8",
            )
        for file in staging.iterdir():  # safetensors writes its file 0600 whatever the umask
            file.chmod(0o666 & ~current_umask())
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lightning_albert export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file, or a run folder (its best checkpoint is exported)")
    parser.add_argument("output", help="folder to write (must not exist or be empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument(
        "--format",
        choices=["transformers", "onnx"],
        default="transformers",
        help="transformers (default: save_pretrained files) or onnx (model.onnx for ONNX Runtime, with the config "
        "and tokenizer; needs pip install 'lightning-albert[onnx]')",
    )
    parser.add_argument("--quantize", choices=QUANTIZE, help="with --format onnx: int8 weights (dynamic quantization)")
    args = parser.parse_args(argv)
    source = Path(args.checkpoint)
    if source.is_dir():
        source = best_checkpoint(source / "checkpoints" if (source / "checkpoints").is_dir() else source)
    folder = export_checkpoint(source, args.output, args.overwrite, args.format, args.quantize)
    kind = "" if args.format == "transformers" else f" as ONNX{' (int8 weights)' if args.quantize else ''}"
    print(f"Exported {source}{kind} to {folder}")
    if args.format == "onnx":
        print((folder / "README.md").read_text(encoding="utf-8").strip().splitlines()[-1])
