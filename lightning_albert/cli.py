"""The command line: every command of `python -m lightning_albert`, registered in one table, and its errors.

    python -m lightning_albert fit --config configs/quickstart.yaml
    python -m lightning_albert test --config <run>/config.yaml --ckpt_path best
    python -m lightning_albert serve <run>/hf_model

fit / validate / test / predict are LightningCLI's subcommands (fit.AlbertCLI); every other command is a module
with a `main(argv)`, named in `COMMANDS`.
"""

import logging
import os
import sys
import warnings
from importlib import import_module

from lightning_albert.errors import InputError, TrainingError
from lightning_albert.options import check_config_files

# Every command beside LightningCLI's fit / validate / test / predict: its name and the module whose `main(argv)`
# runs it. The one place a command is registered (litgpt's pattern).
COMMANDS = {
    "report": "lightning_albert.reporting.report",
    "export": "lightning_albert.export",
    "serve": "lightning_albert.serve",
    "pretrain": "lightning_albert.pretrain.cli",
    "tune": "lightning_albert.tune.cli",
}


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
            from lightning_albert.fit import AlbertCLI  # here: `serve` and `report` need no Lightning import

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
