"""The one assembly of a training command: `fit` (and tune's trials, which are fits) and `pretrain` build their
Trainer, checkpoints, loggers and fault handling here, and keep only their own links and defaults.

`TrainingCLI` is LightningCLI with: refusals said in one line (`options.parse_error`) and checked before any
work (`options.check_settings`); `--ckpt_path best|last|path` resolved and read safely before Lightning reads it;
a resumed run reading texts with its checkpoint's own tokenizer; CSV and TensorBoard loggers in one run folder
(the resumed run's own); the callbacks that make a run resumable (last.ckpt, signals, non-finite losses, the
training order); checkpoints written streamed and atomically (a CheckpointIO plugin); a refused run leaves no
empty run folder behind.
"""

import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO

from lightning_albert.checkpoints import (
    StreamingCheckpointIO,
    last_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    use_last_checkpoint,
)
from lightning_albert.errors import InputError
from lightning_albert.faults import InterruptCheckpoint, NonFiniteLossCheck
from lightning_albert.labels import check_checkpoint_matches
from lightning_albert.options import check_settings, parse_error
from lightning_albert.resume import RestoreTrainingOrder, remove_refused_run_folder, run_folder_of
from lightning_albert.tokenizer import tokenizer_from_files

# What every training command's Trainer defaults to, beside the command's own defaults.
TRAINER_DEFAULTS = {
    "gradient_clip_val": 1.0,  # the HF Trainer's max_grad_norm default; Lightning's is no clipping
    # Lists metric objects and "Total FLOPs: 0": nothing a user acts on (enable it to see the table).
    "enable_model_summary": False,
    # Our batch samplers shard over processes themselves (exactly once per example in evaluation).
    "use_distributed_sampler": False,
}


class TrainingCLI(LightningCLI):
    """What fit and pretrain assemble alike. A subclass names its `command`, passes its classes and defaults,
    and adds its own arguments (`add_arguments_to_parser`) and callbacks (`command_callbacks`)."""

    command = "fit"  # in messages, the resume command and the checkpoint arguments' help
    monitor = ("val_f1", "max")  # the best-keeping checkpoint's default metric and mode

    def __init__(
        self,
        model_class: type,
        datamodule_class: type,
        *,
        args: Any,
        run: bool,
        description: str,
        trainer_defaults: dict[str, Any],
        extra_callbacks: Sequence[Callback] = (),
    ):
        """`extra_callbacks` join the Trainer's for this run only, never its saved config (`tune`'s pruning)."""
        self.checkpoint: dict[str, Any] | None = None  # --ckpt_path, read safely before Lightning reads it
        self.checkpoint_data: dict[str, Any] | None = None  # the DataModule state of --ckpt_path
        self.extra_callbacks = list(extra_callbacks)
        # The checkpoint's tokenizer, unpacked: removed when the command ends (a run=False caller's, when the
        # object goes; the tokenizer is loaded by then, as the vocabulary link reads it on instantiation).
        self._temporary = tempfile.TemporaryDirectory(prefix="lightning_albert_")
        prog = "python -m lightning_albert" + ("" if self.command == "fit" else f" {self.command}")
        try:
            super().__init__(
                model_class,
                datamodule_class,
                seed_everything_default=42,  # seeded before the model (and its new head) is built, as the seed run
                trainer_defaults={**TRAINER_DEFAULTS, **trainer_defaults},
                auto_configure_optimizers=False,  # the model owns its optimizer and schedule
                save_config_callback=RunConfigSaver,
                # Refusals are raised (and said in one line by `options.parse_error`), not printed as the usage screen.
                parser_kwargs={"prog": prog, "description": description, "exit_on_error": False},
                args=args,
                run=run,
            )
        except InputError:
            trainer = getattr(self, "trainer", None)  # built when the refusal came in setup (a bad validation row)
            if trainer is not None:
                remove_refused_run_folder(trainer, self.settings.get("ckpt_path"))
            raise
        finally:
            if run:
                self._temporary.cleanup()

    @property
    def settings(self):
        """The parsed settings of the command that runs (a subcommand's section, or the whole config)."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def training(self) -> bool:
        """Whether this invocation trains (fit, pretrain), rather than evaluates a checkpoint."""
        return self.config.get("subcommand") in ("fit", None)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Computed when the DataModule is built (the vocabulary of a trained tokenizer), before the model is.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        # The training order follows the run's seed (seed_everything: true picks one at random: left to torch's).
        parser.link_arguments(
            "seed_everything", "data.seed", compute_fn=lambda s: s if type(s) is int else None, apply_on="parse"
        )
        add_checkpoint_arguments(parser, self.command, *self.monitor)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            argv = sys.argv[1:] if args is None else list(args)
            if self.command != "fit":
                argv = [self.command, *argv]
            raise parse_error(str(e), argv) from None
        settings = self.settings
        if "ckpt_path" not in settings:  # run=False for fit: no subcommand, so no checkpoint to read
            return
        settings["ckpt_path"] = resolve_checkpoint(settings.get("ckpt_path"), settings.get("config"))
        # Read here, safely: LightningCLI reads it next (`_parse_ckpt_path`), and a refused or broken file
        # would surface there as a traceback.
        self.checkpoint = load_checkpoint(settings["ckpt_path"], "--ckpt_path") if settings["ckpt_path"] else None

    def before_instantiate_classes(self) -> None:
        settings = self.settings
        check_settings(settings)  # before the DataModule trains a tokenizer and the Trainer makes a run folder
        if self.training():
            tokenizer_follows_pretrained(settings)
        # Where Lightning keeps a DataModule's state_dict in a checkpoint: under its class's qualified name.
        self.checkpoint_data = (self.checkpoint or {}).get(self.datamodule_class.__qualname__)

    def checkpoint_tokenizer(self, ckpt_path: str | None = None) -> str:
        """The checkpoint's tokenizer as a folder: the run's saved `tokenizer/` when it holds the very same files,
        else the checkpoint's copy unpacked into a temporary folder."""
        files = self.checkpoint_data["tokenizer_files"]
        if ckpt_path:
            saved = Path(ckpt_path).resolve().parent.parent / "tokenizer"
            if saved.is_dir() and all(
                (saved / name).is_file() and (saved / name).read_bytes() == data for name, data in files.items()
            ):
                return str(saved)
        folder = Path(self._temporary.name) / "tokenizer"
        tokenizer_from_files(files).save_pretrained(folder)
        return str(folder)

    def after_instantiate_classes(self) -> None:
        if self.checkpoint_data:  # before Lightning restores weights, whose shapes would fail less clearly
            labels = getattr(self.datamodule, "labels", [])
            check_checkpoint_matches(self.checkpoint_data, labels, self.datamodule.tokenizer, "the data")
        positions = self.model.model.config.max_position_embeddings
        if self.datamodule.max_length > positions:
            raise InputError(
                f"data.max_length is {self.datamodule.max_length} but the model has only {positions} positions "
                f"(max_position_embeddings): set data.max_length to {positions} or less."
            )

    def command_callbacks(self, settings: dict[str, Any]) -> list[Callback]:
        """The command's own callbacks (fit: the run folder writer, early stopping; predict: the writer)."""
        return []

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        built = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = built.get("trainer") or {}
        settings = self.settings
        training = self.training()
        if trainer_config.get("logger") in (None, True):
            resumed = run_folder_of(settings.get("ckpt_path")) if training else None
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or os.getcwd(), resumed)
        callbacks = [*(trainer_config.get("callbacks") or []), *self.extra_callbacks, *self.command_callbacks(settings)]
        last = None
        if training:
            callbacks += [RestoreTrainingOrder(), InterruptCheckpoint(self.command), NonFiniteLossCheck(self.command)]
            last = last_checkpoint(settings)  # the one writer of last.ckpt
            callbacks += [last] if last else []
        else:
            quiet_evaluation_warnings()
        kwargs["callbacks"] = callbacks
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):  # a user's own writer stays theirs
            kwargs["plugins"] = [*plugins, StreamingCheckpointIO()]
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (ValueError, MisconfigurationException) as e:
            # Lightning checks the trainer settings as it builds the Trainer (a strategy the accelerator cannot
            # run, such as FSDP on a CPU): its message is the user's to act on, without the traceback. A
            # ValueError from elsewhere (our callbacks, torch) is a defect, and keeps its traceback.
            if not isinstance(e, MisconfigurationException) and not _raised_by_lightning(e):
                raise
            raise InputError(f"trainer: {str(e).strip()}") from e
        if last is not None:
            use_last_checkpoint(trainer, last)
        return trainer


def quiet_evaluation_warnings() -> None:
    """validate / test / predict read only a checkpoint's weights: Lightning's warnings about the training
    callbacks' state it holds (callbacks not given, another checkpoint folder) and about our length-sorted
    predict sampler (which yields every index) ask a user to act where nothing is wrong."""
    warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create")
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from .* won't be reloaded")
    warnings.filterwarnings("ignore", message=r"You are using a custom batch sampler `EvalBatchSampler` for prediction")


def add_checkpoint_arguments(parser: LightningArgumentParser, command: str, monitor: str, mode: str) -> None:
    """The settings of the best-keeping checkpoint and of last.ckpt, which fit and pretrain share."""
    parser.add_argument(
        "--save_every_n_steps",
        type=int | None,
        default=None,
        help=f"Also write checkpoints/last.ckpt every N optimizer steps, so a killed {command} resumes mid-epoch "
        f"({command} --ckpt_path last) and loses at most N steps. Off when unset: last.ckpt is written every epoch.",
    )
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.set_defaults(
        {
            "checkpoint.monitor": monitor,
            "checkpoint.mode": mode,
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-epoch={epoch}-step={step}",
            "checkpoint.auto_insert_metric_name": False,
        }
    )


class RunConfigSaver(SaveConfigCallback):
    """Lightning's config.yaml writer, except that a resumed fit keeps the config its run started with."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        resumed = run_folder_of(self.config.get("ckpt_path"))
        if resumed is not None and resumed == Path(trainer.log_dir).resolve():
            return
        super().setup(trainer, pl_module, stage)


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


def _raised_by_lightning(error: BaseException) -> bool:
    """Whether the innermost frame of `error`'s traceback is in Lightning's own code (a check of its settings)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    import lightning

    package = os.path.dirname(os.path.abspath(lightning.__file__)) + os.sep
    return tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package)
