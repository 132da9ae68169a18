"""Hyperparameter search on the validation set with Optuna: each trial is a normal `fit` run folder.

    python -m lightning_albert tune --config configs/quickstart.yaml --n_trials 20

TPE sampling (seeded), median pruning from each epoch's validation metric, a budget of trials and of time, and a
study file in the output folder, so running the same command again continues the search. The output folder holds
`trials.csv` (one row per trial), `best.yaml` (a config `fit --config` takes) and `trials/lightning_logs/version_N`
(the trials' run folders). Trials never test: the test split is for the one final fit of best.yaml.
"""

import argparse
import copy
import csv
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_albert.cli import AlbertCLI, _input_error
from lightning_albert.errors import InputError
from lightning_albert.files import atomic_write
from lightning_albert.pretrain.provenance import pretraining_record

# What each distribution of a search-space entry needs, and what it may also have.
REQUIRED = {"float": {"low", "high"}, "int": {"low", "high"}, "categorical": {"choices"}}
OPTIONAL = {"float": {"log", "step"}, "int": {"log", "step"}, "categorical": set()}
# Lightning's per-Trainer lines ("GPU available: False", "Seed set to 42"), said once per trial: not worth reading.
TRIAL_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")
STUDY_FILE = "study.journal"
# Epochs a trial runs before it can be pruned (below the median of earlier trials at the same epoch), by what it
# starts from: the first epochs of a from-scratch model say little about its end; a published model's first
# epoch does, and its 2-5 epoch trials would otherwise never be pruned.
PRUNE_WARMUP_EPOCHS = {"scratch": 2, "self_pretrained": 2, "pretrained": 0}


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    optuna = _import_optuna()
    config_path = Path(args.config)
    base = apply_settings(read_yaml(config_path, "--config"), args.set)
    source = f"--config {config_path}" + (" with --set" if args.set else "")
    resolved = resolved_config(base, source)  # a bad base config stops here, before any trial
    source_kind = model_source(resolved)
    space = read_search_space(args.search_space or default_search_space(source_kind))
    check_keys(space, resolved)
    metric = args.metric or resolved["checkpoint"]["monitor"] or "val_f1"
    mode = args.mode or (resolved["checkpoint"]["mode"] if metric == resolved["checkpoint"]["monitor"] else None)
    mode = mode or ("min" if metric.endswith("loss") else "max")
    name = args.study_name or config_path.stem
    output = Path(args.output or Path("runs") / "tune" / config_path.stem)
    warmup = PRUNE_WARMUP_EPOCHS[source_kind] if args.prune_warmup_epochs is None else args.prune_warmup_epochs
    pruner = optuna.pruners.MedianPruner(n_startup_trials=args.prune_startup_trials, n_warmup_steps=warmup)
    study = open_study(optuna, output, name, metric, mode, args.seed, pruner)
    search = Search(optuna, study, base, space, output, metric, mode)
    try:
        ran = search.run(args.n_trials, args.timeout)
    finally:  # also when the search stops on an error: the table says which trials ran and why they failed
        write_table(optuna, study, space, output / "trials.csv")
    best = best_trial(optuna, study)
    if best is not None:
        write_best(base, best, metric, mode, name, output)
    print(summary(optuna, study, ran, best, metric, output))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_albert tune",
        description=__doc__.split("\n\n")[0],
        formatter_class=_HelpWithDefaults,
    )
    parser.add_argument("--config", required=True, help="the fit config every trial starts from")
    parser.add_argument(
        "--search_space",
        help="YAML mapping dotted fit keys to distributions, e.g. `model.learning_rate: {type: float, low: 1.0e-4, "
        "high: 3.0e-3, log: true}` (types: float, int with low/high and optional log/step; categorical with "
        "choices). Default: the shipped offline.yaml; self_pretrained.yaml when model.pretrained is an export of "
        "`pretrain`; pretrained.yaml for another model.pretrained (e.g. albert-base-v2)",
    )
    parser.add_argument("--output", help="folder of the study, its table and best.yaml (default: runs/tune/<stem>)")
    parser.add_argument("--n_trials", type=int, default=20, help="trials in the study, counting earlier runs of it")
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts (default: none)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the TPE sampler")
    parser.add_argument("--metric", help="validation metric to optimise (default: the config's checkpoint.monitor)")
    parser.add_argument("--mode", choices=("max", "min"), help="default: checkpoint.mode, or min for a loss")
    parser.add_argument(
        "--prune_warmup_epochs",
        type=_count,
        help="epochs a trial always runs: the median pruner may stop it after the next one at the earliest "
        "(default: 2 for a model from scratch or from an export of `pretrain`, whose first epochs say little about "
        "its end; 0 for another model.pretrained, e.g. albert-base-v2, whose first epoch already does)",
    )
    parser.add_argument(
        "--prune_startup_trials",
        type=_count,
        default=3,
        help="trials that run unpruned before any is pruned (the median needs them)",
    )
    parser.add_argument("--study_name", help="name of the study in the study file (default: the config's stem)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fit setting for every trial and best.yaml, VALUE read as YAML, e.g. --set data.train_file=x.csv "
        "(repeatable)",
    )
    return parser


def _count(text: str) -> int:
    """A whole number >= 0, refused by argparse with the option's name otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"give a whole number >= 0, not {text!r}")
    return value


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where there is a value; the options without one say what they fall back to in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default in (None, []) else super()._get_help_string(action)


def _import_optuna():
    """Optuna is an optional extra: the other commands do not need it, nor pay for importing it."""
    try:
        import optuna
    except ImportError:
        raise InputError("tune needs Optuna: pip install lightning-albert[tune]") from None
    return optuna


def read_yaml(path: Path, option: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{option}: cannot read {path} ({e.strerror}).") from None
    except yaml.YAMLError as e:
        raise InputError(f"{option}: {path} is not valid YAML ({' '.join(str(e).split())}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{option}: {path} must hold a mapping of keys to values.")
    return data


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts. A model.config that names a JSON file is read first, so that one of its
    values can change (model.config.hidden_dropout_prob) and the rest stays as the file says."""
    *parents, last = key.split(".")
    node = config
    for i, part in enumerate(parents):
        child = node.get(part)
        if isinstance(child, str) and parents[: i + 1] == ["model", "config"]:
            try:
                child = json.loads(Path(child).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise InputError(f"{key}: cannot read the model.config file {node[part]} ({e}).") from None
        elif not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[last] = value


def apply_settings(config: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise InputError(f"--set {setting}: give KEY=VALUE, e.g. --set data.train_file=train.csv.")
        set_dotted(config, key, yaml.safe_load(value))
    return config


def resolved_config(base: dict[str, Any], source: str) -> dict[str, Any]:
    """Every fit setting of the base config with its default, as `fit --print_config` shows it; a config fit
    would refuse raises InputError with jsonargparse's reason, on one line."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            fit_in_process(["fit", "--config", yaml.safe_dump(base), "--print_config"])
    except SystemExit as e:  # --print_config prints the config, then exits
        if e.code:
            raise InputError(f"{source}: fit refuses it: {' '.join(err.getvalue().split())}") from None
    except InputError as e:  # a refusal of jsonargparse's, said in one line (options.parse_error), or ours
        raise InputError(f"{source}: fit refuses it: {e}") from None
    return yaml.safe_load(out.getvalue())


def fit_in_process(args: list[str], callbacks: list[Callback] = ()) -> AlbertCLI:
    """The fit CLI in this process (so a callback can reach the trial). Lightning warns when `args` come beside a
    command line of other arguments: tune's own command line is meant to differ from its trials'."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return AlbertCLI(args=args, extra_callbacks=callbacks)


def model_source(resolved: dict[str, Any]) -> str:
    """What the trials start from: `scratch` (no model.pretrained), `self_pretrained` (an export of `pretrain` from
    scratch) or `pretrained` (a published model, also one whose pretraining `pretrain` continued)."""
    pretrained = resolved["model"].get("pretrained")
    if not pretrained:
        return "scratch"
    record = pretraining_record(pretrained)
    return "self_pretrained" if record is not None and not record.get("continued_from") else "pretrained"


def default_search_space(source: str) -> Path:
    """From-scratch ranges; for an export of `pretrain` (a small model that still needs from-scratch learning rates
    and many epochs) ranges around configs/offline.yaml; for a published model BERT fine-tuning's."""
    name = {"scratch": "offline.yaml", "self_pretrained": "self_pretrained.yaml", "pretrained": "pretrained.yaml"}
    return Path(str(resources.files("lightning_albert.tune") / "search_spaces" / name[source]))


def read_search_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """Each entry checked before any trial runs, with the key named in the message."""
    space = read_yaml(Path(path), "--search_space")
    for key, spec in space.items():
        where = f"--search_space {path}: {key}"
        if not isinstance(spec, dict):
            raise InputError(f"{where}: give a mapping such as {{type: float, low: 0.0, high: 0.3}}.")
        kind = spec.get("type")
        if kind not in REQUIRED:
            raise InputError(f"{where}: unknown type {kind!r} (float, int or categorical).")
        missing = REQUIRED[kind] - spec.keys()
        unknown = spec.keys() - REQUIRED[kind] - OPTIONAL[kind] - {"type"}
        if missing or unknown:
            problem = f"missing {', '.join(sorted(missing))}" if missing else f"unknown {', '.join(sorted(unknown))}"
            takes = ", ".join(sorted(REQUIRED[kind] | OPTIONAL[kind]))
            raise InputError(f"{where}: {problem} (a {kind} takes {takes}).")
        if kind == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise InputError(f"{where}: choices must be a non-empty list.")
            if any(not isinstance(c, (bool, int, float, str, type(None))) for c in choices):
                raise InputError(f"{where}: choices must be numbers, strings, booleans or null.")
            continue
        number = int if kind == "int" else (int, float)
        if any(isinstance(spec[b], bool) or not isinstance(spec[b], number) for b in ("low", "high")):
            raise InputError(f"{where}: low and high must be {'integers' if kind == 'int' else 'numbers'}.")
        if spec["low"] > spec["high"]:
            raise InputError(f"{where}: low ({spec['low']}) is above high ({spec['high']}).")
        if spec.get("log") and spec["low"] <= 0:
            raise InputError(f"{where}: a log scale needs low > 0 (got {spec['low']}).")
    return space


def check_keys(space: dict[str, dict[str, Any]], resolved: dict[str, Any]) -> None:
    """A misspelt key would otherwise fail every trial alike; model.config.* are AlbertConfig values, not fit's."""
    for key in space:
        if key.startswith("model.config."):
            continue
        node = resolved
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise InputError(f"--search_space: {key} is not a fit setting (see fit --print_config).")
            node = node[part]


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
    """Runs trials with ask/tell, so a trial's failure is recorded with its reason and the search goes on."""

    def __init__(self, optuna, study, base: dict, space: dict, output: Path, metric: str, mode: str) -> None:
        self.optuna, self.study, self.base, self.space = optuna, study, base, space
        self.output, self.metric, self.mode = output, metric, mode

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
                fit_in_process(self.fit_args(params), [pruning])
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
            f"{pruning.folder}  {', '.join(f'{k}={_shown(v)}' for k, v in params.items())}",
            flush=True,
        )
        return None

    def fit_args(self, params: dict[str, Any]) -> list[str]:
        config = with_params(self.base, params, self.metric, self.mode)
        return [
            "fit",
            "--config",
            yaml.safe_dump(config, sort_keys=False),
            "--trainer.default_root_dir",
            str(self.output / "trials"),
            "--test_after_fit",
            "false",  # the test split is for the final fit only: choosing on it would leak it
            "--baseline",
            "false",  # the same for every trial: the best config's fit shows it
            "--trainer.enable_progress_bar",
            "false",
        ]


def suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    if spec["type"] == "int":  # Optuna's int step is 1 unless given; None is refused
        return trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1))
    return trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step"))


def with_params(base: dict[str, Any], params: dict[str, Any], metric: str, mode: str) -> dict[str, Any]:
    """The base config with a trial's values, keeping its best checkpoint by the searched metric."""
    config = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(config, key, value)
    set_dotted(config, "checkpoint.monitor", metric)
    set_dotted(config, "checkpoint.mode", mode)
    return config


def best_of(history: list[tuple[int, float]], mode: str) -> tuple[int, float]:
    """The first of equals, as ModelCheckpoint keeps a checkpoint only when strictly better."""
    pick = max if mode == "max" else min
    return pick(history, key=lambda item: item[1])


@contextmanager
def quiet_trial() -> Iterator[None]:
    """A trial's end-of-fit summary (its card holds the same) and Lightning's per-Trainer lines stay off the
    console; warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in TRIAL_QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with redirect_stdout(io.StringIO()):
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


def write_best(base: dict, best, metric: str, mode: str, name: str, output: Path) -> Path:
    """The base config with the best trial's values: what `fit --config` takes for the final run (which tests)."""
    config = with_params(base, best.params, metric, mode)
    set_dotted(config, "trainer.default_root_dir", f"runs/{name}-best")
    path = output / "best.yaml"
    header = (
        f"# Best trial of study '{name}' ({output / STUDY_FILE}): trial {best.number}, {metric} {best.value:.4f} on "
        f"validation (epoch {best.user_attrs.get('best_epoch')}), run {best.user_attrs.get('run_folder')}.\n"
        f"#   python -m lightning_albert fit --config {path}\n"
    )
    with atomic_write(path, encoding="utf-8") as f:
        f.write(header + yaml.safe_dump(config, sort_keys=False))
    return path


def summary(optuna, study, ran: int, best, metric: str, output: Path) -> str:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in (states.COMPLETE, states.PRUNED, states.FAIL)}
    lines = [
        "",
        f"Study '{study.study_name}': {len(trials)} trials ({count[states.COMPLETE]} complete, "
        f"{count[states.PRUNED]} pruned, {count[states.FAIL]} failed), {ran} run now.",
    ]
    if best is None:
        lines.append(f"No trial completed, so there is no best config. Reasons: {output / 'trials.csv'}")
        return "\n".join(lines)
    lines.append(
        f"Best: trial {best.number}, {metric} {best.value:.4f} (epoch {best.user_attrs.get('best_epoch')}) -> "
        f"{best.user_attrs.get('run_folder')}"
    )
    width = max(len(k) for k in best.params)
    lines += [f"  {k:<{width}}  {_shown(v)}" for k, v in best.params.items()]
    lines.append(f"Trials: {output / 'trials.csv'}")
    lines.append(f"Best config: {output / 'best.yaml'}")
    lines.append("Next:")
    lines.append(f"  python -m lightning_albert fit --config {output / 'best.yaml'}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
