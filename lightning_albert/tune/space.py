"""Search spaces: the YAML files mapping dotted fit keys to distributions, which one fits the config, and the
values a trial draws from them.

    model.learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    data.batch_size: {type: categorical, choices: [8, 16, 32]}
"""

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lightning_albert.errors import InputError
from lightning_albert.options import ALBERT_KEYS
from lightning_albert.pretrain.provenance import pretraining_record
from lightning_albert.tune.config import ALBERT_CONFIG

# What each distribution of a search-space entry needs, and what it may also have.
REQUIRED = {"float": {"low", "high"}, "int": {"low", "high"}, "categorical": {"choices"}}
OPTIONAL = {"float": {"log", "step"}, "int": {"log", "step"}, "categorical": set()}


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
    space = _read_yaml(Path(path))
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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"--search_space: cannot read {path} ({e.strerror}).") from None
    except yaml.YAMLError as e:
        raise InputError(f"--search_space: {path} is not valid YAML ({' '.join(str(e).split())}).") from None
    if not isinstance(data, dict):
        raise InputError(f"--search_space: {path} must hold a mapping of keys to values.")
    return data


def check_keys(space: dict[str, dict[str, Any]], resolved: dict[str, Any]) -> None:
    """A misspelt key would otherwise fail every trial alike; model.config.* are AlbertConfig values, not fit's."""
    for key in space:
        if key.startswith(ALBERT_CONFIG):
            if key.removeprefix(ALBERT_CONFIG) not in ALBERT_KEYS:
                raise InputError(f"--search_space: {key} is not an AlbertConfig value (model.config takes those).")
            continue
        node = resolved
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise InputError(f"--search_space: {key} is not a fit setting (see fit --print_config).")
            node = node[part]


def unset_entries(space: dict[str, dict[str, Any]], keys: set[str], path: str | Path) -> dict[str, dict[str, Any]]:
    """The entries of `space` whose key the command line does not set: a setting given there is kept, not searched."""
    searched = {key: spec for key, spec in space.items() if key not in keys}
    if not searched:
        raise InputError(f"--search_space {path}: each of its keys is set on the command line, so none is searched.")
    return searched


def suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    if spec["type"] == "int":  # Optuna's int step is 1 unless given; None is refused
        return trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1))
    return trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step"))
