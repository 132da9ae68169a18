"""The Optuna study: its file, the trials (each a fit in this process, pruned from its validations), the trials
table and the best config.
"""

import csv
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_albert.cli import _input_error
from lightning_albert.errors import InputError
from lightning_albert.files import atomic_write
from lightning_albert.fit import AlbertCLI
from lightning_albert.tune.config import resolve, with_values
from lightning_albert.tune.space import suggest

STUDY_FILE = "study.journal"
# Epochs a trial runs before it can be pruned (below the median of earlier trials at the same epoch), by what it
# starts from: the first epochs of a from-scratch model say little about its end; a published model's first
# epoch does, and its 2-5 epoch trials would otherwise never be pruned.
PRUNE_WARMUP_EPOCHS = {"scratch": 2, "self_pretrained": 2, "pretrained": 0}
# Lightning's per-Trainer lines ("GPU available: False", "Seed set to 42"), said once per trial: not worth reading.
TRIAL_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")
# What only a trial's fit is given: the test split is for the final fit only (choosing on it would leak it), and
# the baseline is the same for every trial (the best config's fit shows it).
# Its summary is said in one line by the search instead (the trial's card holds the rest).
TRIAL_ONLY = [
    "--test_after_fit", "false", "--baseline", "false", "--summary", "false", "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def open_study(optuna, output: Path, name: str, metric: str, mode: str, seed: int, pruner):
    """The study in `<output>/study.journal` (a file, no database server): created, or loaded to continue. The
    pruner is not stored in it: each run of the command brings its own."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    output.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(output / STUDY_FILE)))
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        direction="maximize" if mode == "max" else "minimize",
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("metric")
    if recorded is None:
        study.set_user_attr("metric", metric)
        study.set_user_attr("mode", mode)
    elif (recorded, study.user_attrs.get("mode")) != (metric, mode):
        raise InputError(
            f"--output {output}: study '{name}' optimises {recorded} ({study.user_attrs.get('mode')}), not "
            f"{metric} ({mode}). Give another --output or --study_name."
        )
    return study


class PruneOnValidation(Callback):
    """Reports the metric of each validation to the trial, and stops the fit once the pruner says so.

    Stopping through `trainer.should_stop` (not by raising) lets the run end as any fit does: its card, metrics
    and checkpoints are written, and the pruned trial's folder reads like an early-stopped run.
    """

    def __init__(self, trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.history: list[tuple[int, float]] = []  # (epoch, value) of each validation
        self.pruned = False
        self.folder: str | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.folder = trainer.log_dir

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.metric not in trainer.callback_metrics:
            logged = ", ".join(sorted(k for k in trainer.callback_metrics if k.startswith("val_")))
            raise InputError(f"--metric {self.metric} is not logged by validation (it logs {logged}).")
        value = float(trainer.callback_metrics[self.metric])
        self.history.append((trainer.current_epoch, value))
        self.trial.report(value, trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


class Search:
    """Runs trials with ask/tell, so a trial's failure is recorded with its reason and the search goes on.

    `fit_args` is the fit command line every trial starts from (the base config files and the user's overrides),
    `resolved` what it resolves to.
    """

    def __init__(
        self, optuna, study, fit_args: list[str], resolved: dict, space: dict, output: Path, metric: str, mode: str
    ) -> None:
        self.optuna, self.study, self.fit_args, self.resolved = optuna, study, fit_args, resolved
        self.space, self.output, self.metric, self.mode = space, output, metric, mode

    def run(self, n_trials: int, timeout: float | None) -> int:
        """Trials until the study has `n_trials` (interrupted ones do not count) or `timeout` seconds have passed;
        returns how many ran now. Two failures alike with different values stop it: the cause is not the values."""
        start = time.monotonic()
        ran = 0
        last_error: tuple[str, dict] | None = None
        while counted(self.optuna, self.study) < n_trials:
            if timeout is not None and time.monotonic() - start >= timeout:
                print(f"Time budget of {timeout:g} s spent: no new trial started.")
                break
            trial = self.study.ask()
            ran += 1
            error = self._run_trial(trial)
            if error is not None:
                if last_error and last_error[0] == error and last_error[1] != trial.params:
                    raise InputError(error)
                last_error = (error, trial.params)
            write_table(self.optuna, self.study, self.space, self.output / "trials.csv")
        return ran

    def _run_trial(self, trial) -> str | None:
        """Run one fit and tell the study how it went; return the reason when it failed on an InputError."""
        states = self.optuna.trial.TrialState
        pruning = PruneOnValidation(trial, self.metric)
        started = time.monotonic()
        try:
            params = {key: suggest(trial, key, spec) for key, spec in self.space.items()}
            with quiet_trial():
                fit_in_process(self.trial_args(params), [pruning])
            if not pruning.history:
                raise InputError(f"the trial ran no validation, so it has no {self.metric}.")
        except BaseException as e:
            trial.set_user_attr("duration_s", round(time.monotonic() - started, 1))
            trial.set_user_attr("run_folder", pruning.folder)
            error = _input_error(e) if isinstance(e, Exception) else None
            trial.set_user_attr("error", " ".join(str(error or repr(e)).split()))
            if error is None:  # interrupted, or a bug: recorded, not counted, and the search stops
                trial.set_user_attr("interrupted", True)
                self.study.tell(trial, state=states.FAIL)
                raise
            self.study.tell(trial, state=states.FAIL)
            print(f"Trial {trial.number} failed: {trial.user_attrs['error']}", flush=True)
            return trial.user_attrs["error"]
        trial.set_user_attr("duration_s", round(time.monotonic() - started, 1))
        trial.set_user_attr("run_folder", pruning.folder)
        epoch, value = best_of(pruning.history, self.mode)
        trial.set_user_attr("best_epoch", epoch + 1)  # 1-based, as the card counts
        if pruning.pruned:
            self.study.tell(trial, state=states.PRUNED)
        else:
            self.study.tell(trial, value)
        ended = f"pruned after epoch {len(pruning.history)}" if pruning.pruned else "complete"
        print(
            f"Trial {trial.number} {ended}: {self.metric} {value:.4f} (epoch {epoch + 1}) in "
            f"{trial.user_attrs['duration_s']} s -> "
            f"{pruning.folder}  {', '.join(f'{k}={shown(v)}' for k, v in params.items())}",
            flush=True,
        )
        return None

    def config_args(self, params: dict[str, Any]) -> list[str]:
        """The fit command line of the base with a trial's values, keeping its best checkpoint by the searched
        metric: a trial's, and (with its own root folder) best.yaml's."""
        values = {**params, "checkpoint.monitor": self.metric, "checkpoint.mode": self.mode}
        return with_values(self.fit_args, self.resolved, values)

    def trial_args(self, params: dict[str, Any]) -> list[str]:
        root = ["--trainer.default_root_dir", str(self.output / "trials")]
        return ["fit", *self.config_args(params), *root, *TRIAL_ONLY]

    def write_best(self, best, name: str) -> Path:
        """The resolved config of the best trial's values, as fit writes a run's config.yaml: what `fit --config`
        takes for the final run (which tests, and fits the baseline)."""
        config = resolve([*self.config_args(best.params), "--trainer.default_root_dir", f"runs/{name}-best"])
        path = self.output / "best.yaml"
        header = (
            f"# Best trial of study '{name}' ({self.output / STUDY_FILE}): trial {best.number}, {self.metric} "
            f"{best.value:.4f} on validation (epoch {best.user_attrs.get('best_epoch')}), run "
            f"{best.user_attrs.get('run_folder')}.\n"
            f"#   python -m lightning_albert fit --config {path}\n"
        )
        with atomic_write(path, encoding="utf-8") as f:
            f.write(header + yaml.safe_dump(config, sort_keys=False))
        return path


def fit_in_process(args: list[str], callbacks: list[Callback] = ()) -> AlbertCLI:
    """The fit CLI in this process (so a callback can reach the trial). Lightning warns when `args` come beside a
    command line of other arguments: tune's own command line is meant to differ from its trials'."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return AlbertCLI(args=args, extra_callbacks=callbacks)


def best_of(history: list[tuple[int, float]], mode: str) -> tuple[int, float]:
    """The first of equals, as ModelCheckpoint keeps a checkpoint only when strictly better."""
    pick = max if mode == "max" else min
    return pick(history, key=lambda item: item[1])


@contextmanager
def quiet_trial() -> Iterator[None]:
    """Lightning's per-Trainer lines stay off the console (a trial's summary is off by `--summary false`);
    warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in TRIAL_QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def counted(optuna, study) -> int:
    """Trials that count against --n_trials: finished ones, however they ended, except interrupted ones."""
    states = optuna.trial.TrialState
    finished = (states.COMPLETE, states.PRUNED, states.FAIL)
    return sum(t.state in finished and not t.user_attrs.get("interrupted") for t in study.trials)


def write_table(optuna, study, space: dict, path: Path) -> None:
    """One row per trial of the study (earlier runs of it included), written after every trial."""
    trials = study.get_trials(deepcopy=False)
    params = list(space) + [k for t in trials for k in t.params if k not in space]
    params = list(dict.fromkeys(params))
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "best_epoch", "duration_s", *params, "run_folder", "error"])
        for t in trials:
            attrs = t.user_attrs
            value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
            writer.writerow(
                [t.number, t.state.name.lower(), value, attrs.get("best_epoch"), attrs.get("duration_s")]
                + [t.params.get(k) for k in params]
                + [attrs.get("run_folder"), attrs.get("error")]
            )


def best_trial(optuna, study):
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    return study.best_trial


def shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
