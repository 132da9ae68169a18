"""The command line: LightningCLI with the seed recipe's defaults, the data-to-model links, and run folders.

python -m lightning_albert fit --config configs/quickstart.yaml
python -m lightning_albert test --config <run>/config.yaml --ckpt_path best
"""

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_albert.checkpoints import DATA_STATE_KEY, load_checkpoint, resolve_checkpoint, stream_checkpoints
from lightning_albert.data import TextClassificationDataModule, check_checkpoint_matches
from lightning_albert.errors import InputError, TrainingError
from lightning_albert.export import EXPORT_FOLDER
from lightning_albert.faults import InterruptCheckpoint, NonFiniteLossCheck, after_training
from lightning_albert.model import AlbertClassifier
from lightning_albert.options import check_config_files, check_settings, parse_error
from lightning_albert.predictions import PredictionsWriter
from lightning_albert.reporting.baseline import run_baseline
from lightning_albert.reporting.history import read_run
from lightning_albert.reporting.run_folder import RunFolderWriter
from lightning_albert.reporting.summary import fit_summary
from lightning_albert.resume import (
    RestoreTrainingOrder,
    RunConfigSaver,
    add_checkpoint_arguments,
    continue_run_folder,
    last_checkpoint,
    remove_refused_run_folder,
    run_folder_of,
    use_last_checkpoint,
)
from lightning_albert.tokenizer import tokenizer_from_files

EVALUATING = ("validate", "test", "predict")
# Every command beside LightningCLI's fit / validate / test / predict: its name and the module whose `main(argv)`
# runs it. The one place a command is registered (litgpt's pattern).
COMMANDS = {
    "report": "lightning_albert.reporting.report",
    "export": "lightning_albert.export",
    "serve": "lightning_albert.serve",
    "pretrain": "lightning_albert.pretrain.cli",
    "tune": "lightning_albert.tune.cli",
}
DESCRIPTION = (
    "Fine-tune ALBERT for text classification (fit), and validate, test or predict on a checkpoint. "
    "On a finished run: `report RUN_FOLDER` re-renders its model card, `export CHECKPOINT OUTPUT` writes a "
    "transformers folder, `serve SOURCE` answers predictions over HTTP (LitServe). Before fit: `pretrain "
    "--config configs/pretrain.yaml` pretrains ALBERT on unlabelled text, for fit --model.pretrained <export>; "
    "`tune --config CONFIG` searches hyperparameters on the validation set (Optuna) and writes the best config."
)


class AlbertCLI(LightningCLI):
    checkpoint: dict[str, Any] | None = None  # --ckpt_path, read safely before Lightning reads it
    checkpoint_data: dict[str, Any] | None = None  # the DataModule state of --ckpt_path, when one is given

    def __init__(self, args: Any = None, run: bool = True, extra_callbacks: Sequence[Callback] = ()):
        """`extra_callbacks` join the Trainer's for this run only, never its saved config (`tune`'s pruning)."""
        self.extra_callbacks = list(extra_callbacks)
        self._temporary = tempfile.TemporaryDirectory(prefix="lightning_albert_")  # removed when the command ends
        try:
            self._init(args, run)
        except InputError:
            trainer = getattr(self, "trainer", None)  # built when the refusal came in setup (a bad validation row)
            if trainer is not None:
                config = self.config[self.subcommand] if self.subcommand else self.config
                remove_refused_run_folder(trainer, config.get("ckpt_path"))
            raise
        finally:
            self._temporary.cleanup()

    def _init(self, args: Any, run: bool) -> None:
        super().__init__(
            AlbertClassifier,
            TextClassificationDataModule,
            seed_everything_default=42,  # seeded before the model (and its new head) is built, as the seed run
            trainer_defaults={
                "max_epochs": 20,
                "gradient_clip_val": 1.0,  # the HF Trainer's max_grad_norm default; Lightning's is no clipping
                "check_val_every_n_epoch": 1,
                # Lists metric objects and "Total FLOPs: 0": nothing a user acts on (enable it to see the table).
                "enable_model_summary": False,
                # Our batch samplers shard over processes themselves (exactly once per example in evaluation).
                "use_distributed_sampler": False,
            },
            auto_configure_optimizers=False,  # the model owns its optimizer and schedule
            save_config_callback=RunConfigSaver,
            # Refusals are raised (and said in one line by `options.parse_error`), not printed as the usage screen.
            parser_kwargs={"prog": "python -m lightning_albert", "description": DESCRIPTION, "exit_on_error": False},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Computed when the DataModule is built (labels from the training file, vocabulary of a trained
        # tokenizer), before the model is: so the links apply on instantiation.
        parser.link_arguments("data.num_labels", "model.num_labels", apply_on="instantiate")
        parser.link_arguments("data.id2label", "model.id2label", apply_on="instantiate")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        # The training order follows the run's seed (seed_everything: true picks one at random: left to torch's).
        parser.link_arguments(
            "seed_everything", "data.seed", compute_fn=lambda s: s if type(s) is int else None, apply_on="parse"
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="When the data has a test split, fit ends by testing the best checkpoint on it; its results go "
            "on the model card and into the summary.",
        )
        parser.add_argument(
            "--baseline",
            type=bool,
            default=True,
            help="When fit ends, fit a TF-IDF + logistic-regression baseline on the same training split (seconds, "
            "scikit-learn) and score it where the model was scored; the card and the summary show both.",
        )
        parser.add_argument(
            "--early_stopping.patience",
            type=int | None,
            default=None,
            help="Stop fit when checkpoint.monitor has not improved for this many validations (off when unset). "
            "The best checkpoint is kept, and the card says where and why the run stopped.",
        )
        parser.add_argument(
            "--early_stopping.min_delta",
            type=float,
            default=0.0,
            help="The smallest change of checkpoint.monitor that counts as an improvement for early stopping.",
        )
        add_checkpoint_arguments(parser, "fit", monitor="val_f1", mode="max")

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
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise parse_error(str(e), sys.argv[1:] if args is None else args) from None
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            config["ckpt_path"] = resolve_checkpoint(config.get("ckpt_path"), config.get("config"))
            # Read here, safely: LightningCLI reads it next (`_parse_ckpt_path`), and a refused or broken file
            # would surface there as a traceback.
            self.checkpoint = load_checkpoint(config["ckpt_path"], "--ckpt_path") if config["ckpt_path"] else None

    def before_instantiate_classes(self) -> None:
        """For validate/test/predict on a checkpoint, take labels and tokenizer from it, not from train_file;
        fit from pretrained weights reads texts with their tokenizer."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_settings(config)  # before the DataModule trains a tokenizer and the Trainer makes a run folder
        if self.subcommand in ("fit", None):  # None: run=False, the programmatic way to build what fit trains
            tokenizer_follows_pretrained(config)
        ckpt_path = config.get("ckpt_path")
        checkpoint = self.checkpoint or {}
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

    def _checkpoint_tokenizer(self, ckpt_path: str, state: dict[str, Any]) -> str:
        """The run's saved tokenizer folder when it is the checkpoint's, else the checkpoint's copy unpacked."""
        run_tokenizer = Path(ckpt_path).resolve().parent.parent / "tokenizer"
        files = state["tokenizer_files"]
        if run_tokenizer.is_dir() and all(
            (run_tokenizer / name).is_file() and (run_tokenizer / name).read_bytes() == data
            for name, data in files.items()
        ):
            return str(run_tokenizer)
        folder = Path(self._temporary.name) / "tokenizer"
        tokenizer_from_files(files).save_pretrained(folder)
        return str(folder)

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
        config = self.config[self.subcommand] if self.subcommand else self.config
        resumed = run_folder_of(config.get("ckpt_path")) if self.subcommand == "fit" else None
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or os.getcwd(), resumed)
        callbacks = list(trainer_config.get("callbacks") or []) + self.extra_callbacks
        last = None
        if self.subcommand == "fit":
            callbacks += [RunFolderWriter(), RestoreTrainingOrder(), InterruptCheckpoint(), NonFiniteLossCheck()]
            # A second ModelCheckpoint that only writes last.ckpt, beside the one that keeps the best.
            last = last_checkpoint(config)
            callbacks += [last] if last else []
            if config["early_stopping"]["patience"] is not None:
                # Watches what ModelCheckpoint watches, so "best" and "stopped improving" mean the same thing.
                checkpoint = config["checkpoint"]
                callbacks.append(
                    EarlyStopping(
                        monitor=checkpoint["monitor"],
                        mode=checkpoint["mode"],
                        patience=config["early_stopping"]["patience"],
                        min_delta=config["early_stopping"]["min_delta"],
                    )
                )
        if self.subcommand == "predict":
            config = self.config["predict"]
            callbacks.append(PredictionsWriter(config.get("predictions_file")))
        kwargs["callbacks"] = callbacks
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (ValueError, MisconfigurationException) as e:
            # Lightning checks the trainer settings as it builds the Trainer (a strategy the accelerator cannot
            # run, such as FSDP on a CPU): its message is the user's to act on, without the traceback. A
            # ValueError from elsewhere (our callbacks, torch) is a defect, and keeps its traceback.
            if not isinstance(e, MisconfigurationException) and not _raised_by_lightning(e):
                raise
            raise InputError(f"trainer: {str(e).strip()}") from e
        stream_checkpoints(trainer)
        if last is not None:
            use_last_checkpoint(trainer, last)
        return trainer

    def before_fit(self) -> None:
        """Read and check the test split now, so a problem with it stops the run before training, not after;
        when resuming a run in its own folder, keep its metrics.csv up to the checkpoint."""
        if self.config["fit"]["test_after_fit"] and self.datamodule.has_split("test"):
            self.datamodule.setup("test")
        continue_run_folder(self.trainer, self.config["fit"]["ckpt_path"], self.checkpoint)

    def after_fit(self) -> None:
        """Test the best checkpoint when there is a test split, then say what the run did and where it is."""
        trainer = self.trainer
        with after_training(trainer):
            if self.config["fit"]["test_after_fit"] and self.datamodule.has_split("test"):
                best = trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path
                trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None, verbose=False)
            folder = Path(trainer.log_dir)  # on every rank: it broadcasts from rank 0, so rank 0 alone would hang
            if not trainer.is_global_zero:
                return
            writer = next((c for c in trainer.callbacks if isinstance(c, RunFolderWriter)), None)
            if self.config["fit"]["baseline"] and writer is not None:
                splits = ["validation"] + (["test"] if writer.report.get("test") else [])
                writer.add("baseline", run_baseline(self.datamodule, splits))
        print(fit_summary(read_run(folder), folder / EXPORT_FOLDER))

    def before_predict(self) -> None:
        """Refuse to replace an existing predictions file before spending time on predicting."""
        config = self.config["predict"]
        writer = next(c for c in self.trainer.callbacks if isinstance(c, PredictionsWriter))
        path = writer.resolved_path(self.trainer)
        if path.exists() and not config.get("overwrite"):
            raise InputError(f"--predictions_file: {path} exists. Choose another path, or add --overwrite true.")


def tokenizer_follows_pretrained(config) -> None:
    """With model.pretrained and no data.tokenizer, use the pretrained source's tokenizer: a tokenizer trained
    anew on the data would give ids that the pretrained embeddings do not mean."""
    if config["model"].get("pretrained") and not config["data"].get("tokenizer"):
        config["data"]["tokenizer"] = config["model"]["pretrained"]


def default_loggers(root: str, resumed: Path | None = None) -> list:
    """CSV (for metrics.csv, the card and the notebook) and TensorBoard, in one `lightning_logs/version_N/`:
    the next free one, or the `resumed` run's own folder.

    Built here from `default_root_dir` rather than in a config, so no config carries a logger's save_dir into
    the later runs that reuse it (validate/test/predict --config <run>/config.yaml).
    """
    if resumed is not None:
        root, version = str(resumed.parent.parent), resumed.name
    else:
        version = None
    csv_logger = CSVLogger(root, name="lightning_logs", version=version)
    tensorboard = TensorBoardLogger(root, name="lightning_logs", version=csv_logger.version, default_hp_metric=False)
    return [csv_logger, tensorboard]


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a problem with the user's input prints one paragraph and exits with status 2, a training
    fault (a non-finite loss) with status 1.

    `report` and `export` work on finished runs and need no Trainer: they are plain commands beside
    LightningCLI's fit / validate / test / predict.
    """
    argv = sys.argv[1:] if args is None else list(args)
    quiet_library_noise()
    try:
        check_config_files(argv)
        if argv and argv[0] in COMMANDS:
            import_module(COMMANDS[argv[0]]).main(argv[1:])
        else:
            AlbertCLI(args=None if args is None else argv)  # None: LightningCLI reads sys.argv itself
    except Exception as e:
        error = _input_error(e)
        if error is None or os.environ.get("LIGHTNING_ALBERT_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1 if isinstance(error, TrainingError) else 2)


def quiet_library_noise() -> None:
    """Silence what a user cannot act on, through each library's own switches; keep progress and real warnings."""
    # A deprecation inside Lightning 2.6 with torch >= 2.10, printed on every run.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # torchdata 0.11's StatefulDataLoader calls a torch function that torch deprecated since.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated")
    # A resumed fit logs into its own run folder again; resume.py keeps what these say would be deleted.
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Lightning advertises its cloud products ("💡 Tip: ... litlogger") on every Trainer through this logger.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_an_advert)  # once, however often
    # "Writing model shards" / "Loading weights" bars for a model of a few megabytes.
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _not_an_advert(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def _input_error(e: BaseException | None) -> InputError | TrainingError | None:
    """Our own error, also when a library (jsonargparse instantiating a class) wrapped it in another."""
    while e is not None:
        if isinstance(e, (InputError, TrainingError)):
            return e
        e = e.__cause__ or e.__context__
    return None


def _raised_by_lightning(error: BaseException) -> bool:
    """Whether the innermost frame of `error`'s traceback is in Lightning's own code (a check of its settings)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    import lightning

    package = os.path.dirname(os.path.abspath(lightning.__file__)) + os.sep
    return tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package)
