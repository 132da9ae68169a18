"""Hyperparameter search on the validation set with Optuna: each trial is a normal `fit` run folder.

    python -m lightning_albert tune --config configs/quickstart.yaml --n_trials 20
    python -m lightning_albert tune --config configs/quickstart.yaml --data.train_file t.csv --model.weight_decay 0

Any argument that is not tune's own is a fit setting, given as fit takes it, for every trial and best.yaml; a
setting the search space also has is set, not searched. TPE sampling (seeded), median pruning from each epoch's
validation metric, a budget of trials and of time, and a study file in the output folder, so running the same
command again continues the search. The output folder holds `trials.csv` (one row per trial), `best.yaml` (a
config `fit --config` takes) and `trials/lightning_logs/version_N` (the trials' run folders). Trials never test:
the test split is for the one final fit of best.yaml.
"""

import argparse
import shlex
from pathlib import Path

from lightning_albert.errors import InputError
from lightning_albert.fit import task_monitor
from lightning_albert.tune.config import overridden_keys, resolve
from lightning_albert.tune.space import (
    check_keys,
    default_search_space,
    model_source,
    read_search_space,
    unset_entries,
)
from lightning_albert.tune.study import (
    PRUNE_WARMUP_EPOCHS,
    Search,
    best_trial,
    open_study,
    shown,
    write_table,
)


def main(argv: list[str]) -> None:
    args, overrides = _parser().parse_known_args(argv)
    _refuse_set(overrides)
    optuna = _import_optuna()
    fit_args = [*(arg for config in args.config for arg in ("--config", config)), *overrides]
    resolved = resolve(fit_args)  # a config or an override fit would refuse stops here, before any trial
    source_kind = model_source(resolved)
    space_path = args.search_space or default_search_space(source_kind)
    space = read_search_space(space_path)
    check_keys(space, resolved)
    searched = unset_entries(space, overridden_keys(overrides), space_path)
    if searched.keys() != space.keys():
        print(f"Set on the command line, so not searched: {', '.join(k for k in space if k not in searched)}")
    space = searched
    task_monitor(resolved)  # regression's default is val_loss (min), as fit's
    checkpoint = resolved["checkpoint"]
    metric = args.metric or checkpoint["monitor"] or "val_f1"
    mode = args.mode or (checkpoint["mode"] if metric == checkpoint["monitor"] else None)
    mode = mode or ("min" if metric.endswith("loss") else "max")
    stem = Path(args.config[0]).stem
    name = args.study_name or stem
    output = Path(args.output or Path("runs") / "tune" / stem)
    warmup = PRUNE_WARMUP_EPOCHS[source_kind] if args.prune_warmup_epochs is None else args.prune_warmup_epochs
    pruner = optuna.pruners.MedianPruner(n_startup_trials=args.prune_startup_trials, n_warmup_steps=warmup)
    study = open_study(optuna, output, name, metric, mode, args.seed, pruner)
    search = Search(optuna, study, fit_args, resolved, space, output, metric, mode)
    try:
        ran = search.run(args.n_trials, args.timeout)
    finally:  # also when the search stops on an error: the table says which trials ran and why they failed
        write_table(optuna, study, space, output / "trials.csv")
    best = best_trial(optuna, study)
    if best is not None:
        search.write_best(best, name)
    print(summary(optuna, study, ran, best, metric, output))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_albert tune",
        description=__doc__.split("\n\n")[0],
        epilog="Any other argument is a fit setting for every trial and best.yaml, as fit takes it, e.g. "
        "--data.train_file train.csv --model.weight_decay 0.01 (python -m lightning_albert fit --help lists them); "
        "a key of the search space given there is set, not searched.",
        formatter_class=_HelpWithDefaults,
        allow_abbrev=False,  # an abbreviation of tune's own options would take a fit setting's place
    )
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        required=True,
        help="the fit config every trial starts from (repeatable, as for fit: later files override earlier ones)",
    )
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
    return parser


def _refuse_set(overrides: list[str]) -> None:
    """`--set KEY=VALUE` was tune's own way to give a fit setting; it is now given as fit takes it."""
    for i, arg in enumerate(overrides):
        if arg == "--set" or arg.startswith("--set="):
            setting = arg.removeprefix("--set=") if arg != "--set" else " ".join(overrides[i + 1 : i + 2])
            key, _, value = setting.partition("=")
            raise InputError(
                f"--set is gone: give fit settings as fit takes them, e.g. --{key or 'data.train_file'} "
                f"{shlex.quote(value) if key else 'train.csv'}"
            )


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
    width = max((len(k) for k in best.params), default=0)
    lines += [f"  {k:<{width}}  {shown(v)}" for k, v in best.params.items()]
    lines.append(f"Trials: {output / 'trials.csv'}")
    lines.append(f"Best config: {output / 'best.yaml'}")
    lines.append("Next:")
    lines.append(f"  python -m lightning_albert fit --config {output / 'best.yaml'}")
    return "\n".join(lines)
