"""`tune`: trials are real fit runs, the table and best.yaml agree with their folders, and the study resumes."""

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PHRASEBANK, TINY_ALBERT, assert_clear_error, logged_rows, read_csv, run_main

from lightning_albert.cli import main

pytest.importorskip("optuna")

SPACE = """\
model.learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
model.config.hidden_dropout_prob: {type: float, low: 0.0, high: 0.3}
trainer.max_epochs: {type: int, low: 1, high: 2}
"""


def _slice(source: Path, target: Path, rows: int) -> Path:
    data = read_csv(source)[:rows]
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    return target


@pytest.fixture(scope="module")
def base_config(tmp_path_factory, shared_data) -> Path:
    """The quickstart config on 160/60 phrasebank rows with a tiny ALBERT for one epoch; it has a test split,
    which trials must not touch."""
    root = tmp_path_factory.mktemp("tune")
    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "quickstart.yaml").read_text())
    config["model"]["config"] = dict(TINY_ALBERT)
    config["trainer"]["max_epochs"] = 1
    config["data"].update(
        train_file=str(_slice(PHRASEBANK / "train.csv", root / "train.csv", 160)),
        validation_file=str(_slice(PHRASEBANK / "validation.csv", root / "validation.csv", 60)),
        test_file=str(_slice(PHRASEBANK / "test.csv", root / "test.csv", 40)),
        predict_file=None,
    )
    path = root / "base.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "space.yaml").write_text(SPACE)
    return path


# What a trial's fit is given beside the config of its values, and the final fit beside best.yaml.
TRIAL_ONLY = {"trainer.default_root_dir", "trainer.enable_progress_bar", "test_after_fit", "baseline", "summary"}


def _tune(config: Path, *extra: str, output: Path | None = None, n_trials: int = 2) -> None:
    main(["tune", "--config", str(config), "--search_space", str(config.parent / "space.yaml"),
          "--output", str(output or config.parent / "out"), "--n_trials", str(n_trials), *extra])  # fmt: skip


def _flat(config: dict, prefix: str = "") -> dict:
    """`{"model": {"learning_rate": x}}` as `{"model.learning_rate": x}`; model.config stays one value."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and f"{prefix}{key}" != "model.config":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _without(config: dict, keys: set[str]) -> dict:
    return {k: v for k, v in _flat(config).items() if k not in keys}


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # the final fit runs in-process from pytest
def test_tune_writes_table_and_best_config_that_fit_runs(base_config, capsys):
    """Trials are fits of the base config, the command line's fit settings and their values; best.yaml is the
    config fit resolves for the best values, and the final fit of it runs with exactly that config."""
    out = base_config.parent / "out"
    overrides = ("--model.weight_decay", "0.05", "--data.max_length=48")  # both as fit takes them
    _tune(base_config, *overrides)
    trials = read_csv(out / "trials.csv")
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for trial in trials:
        run = Path(trial["run_folder"])
        best = max(row["val_f1"] for row in logged_rows(run, "val"))
        assert float(trial["value"]) == pytest.approx(best, abs=1e-6)
        assert not any(row.get("test_loss") for row in read_csv(run / "metrics.csv"))  # trials never test
        run_config = yaml.safe_load((run / "config.yaml").read_text())
        assert run_config["model"]["learning_rate"] == pytest.approx(float(trial["model.learning_rate"]))
        assert run_config["model"]["config"]["hidden_dropout_prob"] == pytest.approx(
            float(trial["model.config.hidden_dropout_prob"])
        )
        assert run_config["model"]["config"]["hidden_size"] == TINY_ALBERT["hidden_size"]  # merged, not replaced
        assert run_config["trainer"]["max_epochs"] == int(trial["trainer.max_epochs"])
        assert len(logged_rows(run, "val")) == run_config["trainer"]["max_epochs"]
        assert (run_config["model"]["weight_decay"], run_config["data"]["max_length"]) == (0.05, 48)
        assert run_config["test_after_fit"] is False and run_config["baseline"] is False
        assert run_config["summary"] is False
    best_trial = max(trials, key=lambda t: float(t["value"]))  # the first of equals, as the study keeps
    best = yaml.safe_load((out / "best.yaml").read_text())
    best_run = yaml.safe_load((Path(best_trial["run_folder"]) / "config.yaml").read_text())
    assert _without(best, TRIAL_ONLY) == _without(best_run, TRIAL_ONLY)  # the best trial's config, every key
    assert best["trainer"]["default_root_dir"] == "runs/base-best" and best["test_after_fit"] is True
    assert best["model"]["learning_rate"] == pytest.approx(float(best_trial["model.learning_rate"]))
    assert best["model"]["config"]["hidden_dropout_prob"] == pytest.approx(
        float(best_trial["model.config.hidden_dropout_prob"])
    )
    assert f"trial {best_trial['number']}," in (out / "best.yaml").read_text().splitlines()[0]
    said = capsys.readouterr().out
    assert f"fit --config {out / 'best.yaml'}" in said
    assert said.count("Trial ") == 2 and "Fit finished" not in said  # a line per trial, not each fit's summary
    assert best["summary"] is True  # the final fit says what it did

    # Resumed: the study file already holds the budget's two trials, so none runs.
    _tune(base_config, *overrides)
    assert "0 run now" in capsys.readouterr().out
    assert len(read_csv(out / "trials.csv")) == 2

    final = base_config.parent / "final"
    main(["fit", "--config", str(out / "best.yaml"), "--trainer.default_root_dir", str(final),
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    (run,) = (final / "lightning_logs").glob("version_*")
    assert logged_rows(run, "test")  # the final fit is the one that tests
    final_config = yaml.safe_load((run / "config.yaml").read_text())
    assert _without(final_config, TRIAL_ONLY) == _without(best, TRIAL_ONLY)


def test_setting_a_searched_key_on_the_command_line_fixes_it(base_config, tmp_path, capsys):
    """`--model.learning_rate` given to tune reaches every trial's config.yaml and best.yaml, and is not searched."""
    out = tmp_path / "out"
    _tune(base_config, "--model.learning_rate", "2.5e-3", "--trainer.max_epochs=1", output=out, n_trials=1)
    said = capsys.readouterr().out
    assert "Set on the command line, so not searched: model.learning_rate, trainer.max_epochs" in said
    (trial,) = read_csv(out / "trials.csv")
    assert trial["state"] == "complete" and "model.learning_rate" not in trial
    run_config = yaml.safe_load((Path(trial["run_folder"]) / "config.yaml").read_text())
    best = yaml.safe_load((out / "best.yaml").read_text())
    for config in (run_config, best):
        assert config["model"]["learning_rate"] == 2.5e-3 and config["trainer"]["max_epochs"] == 1
        assert config["model"]["config"]["hidden_dropout_prob"] == pytest.approx(
            float(trial["model.config.hidden_dropout_prob"])
        )


@pytest.mark.parametrize(
    ("where", "fragments"),
    [
        ("override", ["--model.learnin_rate: unknown setting 'model.learnin_rate'", "(did you mean model.lea"]),
        ("config", ["--config {config}: unknown setting 'model.learnin_rate'", "(did you mean model.lea"]),
        ("value", ['"trainer.max_epochs"', "many"]),
        ("--set", ["--set is gone", "--model.learning_rate 0.002"]),
    ],
)
def test_fit_setting_tune_cannot_give_is_one_clear_line(base_config, tmp_path, capsys, where, fragments):
    """Refused by fit's own parser before any study exists, as fit would refuse it, on one line."""
    config = base_config
    extra = {
        "override": ["--model.learnin_rate", "0.002"],
        "value": ["--trainer.max_epochs", "many"],
        "--set": ["--set", "model.learning_rate=0.002"],
    }.get(where, [])
    if where == "config":
        values = yaml.safe_load(base_config.read_text())
        values["model"]["learnin_rate"] = 0.002
        config = tmp_path / "typo.yaml"
        config.write_text(yaml.safe_dump(values))
    code, err = run_main(["tune", "--config", str(config), "--output", str(tmp_path / "out"), *extra], capsys)
    assert_clear_error(code, err, [f.format(config=config) for f in fragments])
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_resolving_the_fit_config_prints_nothing_and_swaps_no_stream(base_config, monkeypatch, capsys):
    """fit's parser runs in this process and is read, not `fit --print_config` run with its output captured."""
    from jsonargparse import ArgumentParser

    from lightning_albert.errors import InputError
    from lightning_albert.tune.config import resolve

    streams = []
    parse_args = ArgumentParser.parse_args

    def watched(self, *args, **kwargs):
        streams.append((sys.stdout, sys.stderr))
        return parse_args(self, *args, **kwargs)

    monkeypatch.setattr(ArgumentParser, "parse_args", watched)
    resolved = resolve(["--config", str(base_config), "--model.weight_decay", "0.05"])
    with pytest.raises(InputError) as refused:
        resolve(["--config", str(base_config), "--trainer.max_epochs", "many"])
    assert streams and all(seen == (sys.stdout, sys.stderr) for seen in streams)
    assert capsys.readouterr() == ("", "")
    assert "trainer.max_epochs" in str(refused.value) and "\n" not in str(refused.value)
    assert resolved["model"]["weight_decay"] == 0.05  # the override
    assert resolved["model"]["config"]["hidden_size"] == TINY_ALBERT["hidden_size"]  # the config file
    # Defaults neither gives: AlbertCLI's (the best-keeping checkpoint's metric, no model summary) and the classes'.
    assert resolved["checkpoint"]["monitor"] == "val_f1" and resolved["trainer"]["enable_model_summary"] is False
    assert resolved["data"]["num_workers"] == 0 and resolved["model"]["pretrained"] is None


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ("model.learning_rate: {type: flot, low: 1.0e-4, high: 1.0e-3}\n", "model.learning_rate: unknown type"),
        ("model.weight_decay: {type: float, low: 0.2, high: 0.1}\n", "model.weight_decay: low (0.2) is above"),
        ("data.batch_size: {type: int, low: 8}\n", "data.batch_size: missing high"),
        ("model.learnin_rate: {type: float, low: 1.0e-4, high: 1.0e-3}\n", "model.learnin_rate is not a fit setting"),
        ("model.config.hiden_size: {type: int, low: 8, high: 16}\n", "model.config.hiden_size is not an AlbertConfig"),
    ],
)
def test_bad_search_space_is_one_line_naming_the_key(base_config, tmp_path, capsys, space, named):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--config", str(base_config), "--search_space", str(path), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and named in error, error
    assert not (tmp_path / "out").exists()  # refused before a study was created


@pytest.mark.parametrize(
    ("config", "export", "space"),
    [
        ("quickstart.yaml", None, "offline.yaml"),
        ("albert-base-v2.yaml", None, "pretrained.yaml"),
        ("offline.yaml", ("pretraining.json", {"continued_from": None}), "self_pretrained.yaml"),  # offline default
        ("offline.yaml", ("pretraining.json", {"continued_from": "albert-base-v2"}), "pretrained.yaml"),
        ("offline.yaml", ("config.json", {}), "pretrained.yaml"),  # a folder that `pretrain` did not write
    ],
)
def test_shipped_search_spaces_fit_their_configs(config, export, space, tmp_path):
    """The default space follows model.pretrained (an export of `pretrain` is known by its record), and each of
    its keys is a setting fit takes."""
    from lightning_albert.tune.config import resolve
    from lightning_albert.tune.space import check_keys, default_search_space, model_source, read_search_space, suggest
    from lightning_albert.tune.study import PRUNE_WARMUP_EPOCHS

    fit_args = ["--config", str(Path(__file__).parents[1] / "configs" / config)]
    if export:
        (tmp_path / export[0]).write_text(json.dumps(export[1]))
        fit_args += ["--model.pretrained", str(tmp_path)]
    resolved = resolve(fit_args)
    source = model_source(resolved)
    path = default_search_space(source)
    assert path.name == space
    # A published model's first epoch already tells: its 2-5 epoch trials may be pruned from the first one.
    assert PRUNE_WARMUP_EPOCHS[source] == (0 if space == "pretrained.yaml" else 2)
    entries = read_search_space(path)
    check_keys(entries, resolved)
    # Every entry can be drawn by a real Optuna trial, inside its range (int entries need a step Optuna takes).
    optuna = pytest.importorskip("optuna")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    for key, spec in entries.items():
        value = suggest(trial, key, spec)
        assert value in spec["choices"] if spec["type"] == "categorical" else spec["low"] <= value <= spec["high"]


@pytest.mark.parametrize("damage", ['{"continued_from": nul', "[]"])
def test_damaged_pretraining_record_is_named_not_ignored(base_config, tmp_path, capsys, damage):
    """Read as "no record", tune would search a published model's ranges for a small self-pretrained one."""
    export = tmp_path / "hf_model"
    export.mkdir()
    (export / "pretraining.json").write_text(damage)
    config = yaml.safe_load(base_config.read_text())
    config["model"]["pretrained"] = str(export)
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--config", str(tmp_path / "fit.yaml"), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{export / 'pretraining.json'}: not a pretraining record" in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_trial_behind_the_median_is_pruned_and_its_run_folder_is_complete(base_config, tmp_path, capsys):
    """A real study and pruner: the second trial, whose learning rate is too small to learn anything, is behind
    the first after its first epoch and stops there, with its card and checkpoints written."""
    import optuna

    from lightning_albert.tune.study import open_study

    config = yaml.safe_load(base_config.read_text())
    config["trainer"]["max_epochs"] = 3
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "space.yaml").write_text("model.learning_rate: {type: float, low: 1.0e-9, high: 3.0e-3, log: true}\n")
    out = tmp_path / "out"
    # The two trials' values, queued in the study that tune then continues (the same name, metric and mode).
    study = open_study(optuna, out, "base", "val_loss", "min", 42, optuna.pruners.NopPruner())
    study.enqueue_trial({"model.learning_rate": 3.0e-3})
    study.enqueue_trial({"model.learning_rate": 1.0e-9})
    main(["tune", "--config", str(path), "--search_space", str(tmp_path / "space.yaml"), "--output", str(out),
          "--n_trials", "2", "--metric", "val_loss", "--prune_startup_trials", "1",
          "--prune_warmup_epochs", "0"])  # fmt: skip
    first, second = read_csv(out / "trials.csv")
    assert (first["state"], second["state"]) == ("complete", "pruned")
    assert float(second["model.learning_rate"]) == pytest.approx(1e-9)
    assert len(logged_rows(Path(first["run_folder"]), "val")) == 3
    pruned = Path(second["run_folder"])
    assert len(logged_rows(pruned, "val")) == 1
    assert (pruned / "README.md").is_file() and list((pruned / "checkpoints").glob("best-*.ckpt"))
    assert "Trial 1 pruned after epoch 1" in capsys.readouterr().out


def test_negative_pruning_setting_is_refused_by_name(base_config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--config", str(base_config), "--prune_warmup_epochs", "-1"])
    assert exit_info.value.code == 2
    assert "--prune_warmup_epochs: give a whole number >= 0, not '-1'" in capsys.readouterr().err


def test_pruned_trial_stops_its_fit_after_that_validation():
    """The pruner's verdict stops the Trainer as early stopping would, so the trial's run folder is complete."""
    from types import SimpleNamespace

    from lightning_albert.tune.study import PruneOnValidation

    class Trial:
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) == 2

    trial = Trial()
    callback = PruneOnValidation(trial, "val_f1")
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={}, current_epoch=0, should_stop=False)
    for epoch, value in enumerate((0.4, 0.3)):
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val_f1": value}
        callback.on_validation_end(trainer, None)
    assert trial.reports == [(0, 0.4), (1, 0.3)] and callback.history == trial.reports
    assert callback.pruned and trainer.should_stop


def test_missing_optuna_says_which_extra_to_install(base_config, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--config", str(base_config)])
    assert exit_info.value.code == 2
    assert "pip install lightning-albert[tune]" in capsys.readouterr().err
