"""Pretrain ALBERT on the user's own texts: masked-language modelling with n-gram masking, optionally with
sentence-order prediction, then an export that `fit --model.pretrained <folder>` fine-tunes.

    python -m lightning_albert pretrain --config configs/pretrain.yaml --data.text_file texts.txt

Self-pretraining on the task's own texts (Krishna et al. 2022) lets a from-scratch ALBERT start fine-tuning
from weights that already model the domain; with `model.pretrained: albert-base-v2` (needs the hub) the same
command continues the pretraining of a published model on in-domain text.
"""

import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser

from lightning_albert.checkpoints import load_checkpoint
from lightning_albert.errors import InputError
from lightning_albert.export import EXPORT_FOLDER
from lightning_albert.pretrain.data import TextCorpusDataModule
from lightning_albert.pretrain.model import AlbertPretrainer
from lightning_albert.pretrain.provenance import write_pretraining_record
from lightning_albert.resume import continue_run_folder, remove_refused_run_folder
from lightning_albert.training import TrainingCLI

DESCRIPTION = (
    "Pretrain ALBERT on unlabelled text (masked-language modelling with n-gram masking, optional sentence-order "
    "prediction) and export it for `fit --model.pretrained <export>`."
)


class PretrainCLI(TrainingCLI):
    """One command, no subcommands: parse, build, then `main` fits and exports."""

    command = "pretrain"
    monitor = ("val_loss", "min")

    def __init__(self, args: list[str]):
        super().__init__(
            AlbertPretrainer,
            TextCorpusDataModule,
            args=args,
            run=False,
            description=DESCRIPTION,
            trainer_defaults={"max_epochs": 5},
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.sentence_order", "model.sentence_order", apply_on="parse")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Continue a stopped run from a checkpoint: `last` (or `best`) with --config <run>/config.yaml, or "
            "a path. It carries on in that run's folder, from the batch the checkpoint was taken at.",
        )

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        if self.checkpoint_data and not self.config["data"].get("tokenizer"):
            # A resumed run reads texts with the tokenizer its checkpoint was trained with, not one trained anew.
            self.config["data"]["tokenizer"] = self.checkpoint_tokenizer()


def export_best(trainer, model: AlbertPretrainer, data: TextCorpusDataModule, run: Path) -> Path:
    """Write the best checkpoint's model (or the last weights, without one) and the tokenizer with
    `save_pretrained` into `<run>/hf_model`, with a record (provenance.py) of what it was pretrained on, which step
    it is and how it scored: `tune` picks its search space by it, and a fit's card cites it."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint and checkpoint.best_model_path
    step, score = trainer.global_step, checkpoint.best_model_score if best else None
    if best:
        saved = load_checkpoint(best)
        model.load_state_dict(saved["state_dict"])
        step = saved["global_step"]
    folder = run / EXPORT_FOLDER
    model.model.save_pretrained(folder)
    data.tokenizer.save_pretrained(folder)
    record = {
        "made_by": "python -m lightning_albert pretrain",
        "run": str(run),
        "texts": [path for path in (data.hparams.text_file, data.hparams.train_file) if path],
        "train_texts": len(data.split("train")),
        "validation_texts": len(data.split("validation")),
        "checkpoint": best or None,
        "global_step": step,
        "max_steps": trainer.max_steps if trainer.max_steps > 0 else None,  # -1: a budget of epochs
        "best_val_loss": None if score is None else float(score),
        "continued_from": model.hparams.pretrained,
    }
    write_pretraining_record(folder, record)
    return folder


def main(argv: list[str]) -> None:
    with warnings.catch_warnings():
        # sys.argv also holds the word "pretrain" before these arguments, by design: nothing to warn about.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = PretrainCLI(argv)
    continue_run_folder(cli.trainer, cli.config["ckpt_path"], cli.checkpoint)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config["ckpt_path"])
    except InputError:
        remove_refused_run_folder(cli.trainer, cli.config["ckpt_path"])
        raise
    run = Path(cli.trainer.log_dir)  # on every process: it broadcasts from rank 0, so rank 0 alone would hang
    if not cli.trainer.is_global_zero:
        return
    export = export_best(cli.trainer, cli.model, cli.datamodule, run)
    best = cli.trainer.checkpoint_callback.best_model_score
    score = f" (best val_loss {float(best):.4f})" if best is not None else ""
    print(f"\nPretrained{score}; export: {export}")
    print(
        f"Fine-tune from it (its tokenizer comes along):\n  python -m lightning_albert fit --config <fit config> "
        f"--model.pretrained {export} --model.config null"
    )
