"""The command line: LightningCLI with the seed recipe's defaults, the data-to-model links, and run folders.

python -m lightning_albert fit --config configs/quickstart.yaml
python -m lightning_albert test --config <run>/config.yaml --ckpt_path best
"""

import os
import sys
import tempfile
import warnings
from importlib import import_module
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_albert.checkpoints import DATA_STATE_KEY, load_checkpoint, resolve_checkpoint
from lightning_albert.data import TextClassificationDataModule, check_checkpoint_matches
from lightning_albert.errors import InputError, TrainingError
from lightning_albert.faults import InterruptCheckpoint, NonFiniteLossCheck
from lightning_albert.model import AlbertClassifier
from lightning_albert.predictions import PredictionsWriter
from lightning_albert.run_folder import RunFolderWriter
from lightning_albert.tokenizer import tokenizer_from_files

EVALUATING = ("validate", "test", "predict")
TOOLS = ("report", "export")
DESCRIPTION = (
    "Fine-tune ALBERT for text classification (fit), and validate, test or predict on a checkpoint. "
    "On a finished run: `report RUN_FOLDER` re-renders its model card, `export CHECKPOINT OUTPUT` writes a "
    "transformers folder."
)


class AlbertCLI(LightningCLI):
    checkpoint_data: dict[str, Any] | None = None  # the DataModule state of --ckpt_path, when one is given

    def __init__(self, args: Any = None, run: bool = True):
        super().__init__(
            AlbertClassifier,
            TextClassificationDataModule,
            seed_everything_default=42,  # seeded before the model (and its new head) is built, as the seed run
            trainer_defaults={
                "max_epochs": 20,
                "gradient_clip_val": 1.0,  # the HF Trainer's max_grad_norm default; Lightning's is no clipping
                "check_val_every_n_epoch": 1,
            },
            auto_configure_optimizers=False,  # the model owns its optimizer and schedule
            parser_kwargs={"prog": "python -m lightning_albert", "description": DESCRIPTION},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Computed when the DataModule is built (labels from the training file, vocabulary of a trained
        # tokenizer), before the model is: so the links apply on instantiation.
        parser.link_arguments("data.num_labels", "model.num_labels", apply_on="instantiate")
        parser.link_arguments("data.id2label", "model.id2label", apply_on="instantiate")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_f1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch={epoch}-step={step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument(
                "--predictions_file",
                type=str | None,
                default=None,
                help="Where to write the predictions CSV (default: predictions.csv in the run's log folder).",
            )
            parser.add_argument("--overwrite", type=bool, default=False, help="Replace an existing --predictions_file.")
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            config["ckpt_path"] = resolve_checkpoint(config.get("ckpt_path"), config.get("config"))

    def before_instantiate_classes(self) -> None:
        """For validate/test/predict on a checkpoint, take labels and tokenizer from it, not from train_file."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        checkpoint = load_checkpoint(ckpt_path) if ckpt_path else {}
        self.checkpoint_data = state = checkpoint.get(DATA_STATE_KEY)
        if self.subcommand not in EVALUATING or not state:
            return
        albert_config = checkpoint.get("albert_config")
        if albert_config:
            # Build the architecture the checkpoint holds: no hub download of weights about to be replaced,
            # and no config file that may have moved since.
            config["model"]["pretrained"] = None
            config["model"]["config"] = albert_config
        data = config["data"]
        if data.get("labels") is None:
            data["labels"] = list(state["labels"])
        # Unset, or the one the run was trained with: use the checkpoint's copy (no hub, no moved folder).
        if not data.get("tokenizer") or data["tokenizer"] == state.get("tokenizer_source"):
            data["tokenizer"] = self._checkpoint_tokenizer(ckpt_path, state)

    @staticmethod
    def _checkpoint_tokenizer(ckpt_path: str, state: dict[str, Any]) -> str:
        """The run's saved tokenizer folder when it is the checkpoint's, else the checkpoint's copy unpacked."""
        run_tokenizer = Path(ckpt_path).resolve().parent.parent / "tokenizer"
        files = state["tokenizer_files"]
        if run_tokenizer.is_dir() and all(
            (run_tokenizer / name).is_file() and (run_tokenizer / name).read_bytes() == data
            for name, data in files.items()
        ):
            return str(run_tokenizer)
        folder = tempfile.mkdtemp(prefix="lightning_albert_tokenizer_")
        tokenizer_from_files(files).save_pretrained(folder)
        return folder

    def after_instantiate_classes(self) -> None:
        if self.checkpoint_data:  # before Lightning restores weights, whose shapes would fail less clearly
            check_checkpoint_matches(
                self.checkpoint_data, self.datamodule.labels, self.datamodule.tokenizer, "the data"
            )
        positions = self.model.model.config.max_position_embeddings
        if self.datamodule.max_length > positions:
            raise InputError(
                f"data.max_length is {self.datamodule.max_length} but the model has only {positions} positions "
                f"(max_position_embeddings): set data.max_length to {positions} or less."
            )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or os.getcwd())
        callbacks = list(trainer_config.get("callbacks") or [])
        if self.subcommand == "fit":
            callbacks += [RunFolderWriter(), InterruptCheckpoint(), NonFiniteLossCheck()]
        if self.subcommand == "predict":
            config = self.config["predict"]
            callbacks.append(PredictionsWriter(config.get("predictions_file")))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def before_predict(self) -> None:
        """Refuse to replace an existing predictions file before spending time on predicting."""
        config = self.config["predict"]
        writer = next(c for c in self.trainer.callbacks if isinstance(c, PredictionsWriter))
        path = writer.resolved_path(self.trainer)
        if path.exists() and not config.get("overwrite"):
            raise InputError(f"--predictions_file: {path} exists. Choose another path, or add --overwrite true.")


def default_loggers(root: str) -> list:
    """CSV (for metrics.csv, the card and the notebook) and TensorBoard, in one `lightning_logs/version_N/`.

    Built here from `default_root_dir` rather than in a config, so no config carries a logger's save_dir into
    the later runs that reuse it (validate/test/predict --config <run>/config.yaml).
    """
    csv_logger = CSVLogger(root, name="lightning_logs")
    tensorboard = TensorBoardLogger(root, name="lightning_logs", version=csv_logger.version, default_hp_metric=False)
    return [csv_logger, tensorboard]


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a problem with the user's input prints one paragraph and exits with status 2, a training
    fault (a non-finite loss) with status 1.

    `report` and `export` work on finished runs and need no Trainer: they are plain commands beside
    LightningCLI's fit / validate / test / predict.
    """
    argv = sys.argv[1:] if args is None else list(args)
    # A deprecation inside Lightning 2.6 with torch >= 2.10, printed on every run; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    try:
        if argv and argv[0] in TOOLS:
            import_module(f"lightning_albert.{argv[0]}").main(argv[1:])
        else:
            AlbertCLI(args=None if args is None else argv)  # None: LightningCLI reads sys.argv itself
    except Exception as e:
        error = _input_error(e)
        if error is None or os.environ.get("LIGHTNING_ALBERT_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1 if isinstance(error, TrainingError) else 2)


def _input_error(e: BaseException | None) -> InputError | TrainingError | None:
    """Our own error, also when a library (jsonargparse instantiating a class) wrapped it in another."""
    while e is not None:
        if isinstance(e, (InputError, TrainingError)):
            return e
        e = e.__cause__ or e.__context__
    return None
