"""What a training or evaluation command is given, checked before any work: no tokenizer trained, no run folder
made and no text predicted for a setting that was wrong from the start.

- config files: YAML syntax (file and line) and keys the command does not take (file and key), in place of
  jsonargparse's usage screen;
- numeric settings outside their range (a negative learning rate, a warmup ratio above 1, a dropout of 1.5), which
  torch would refuse only once training starts, or take silently;
- `model.config` keys that AlbertConfig does not have (a typo there was written into config.json and ignored);
- output folders and files that cannot be written (found before the work whose results they hold).
"""

import difflib
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AlbertConfig

from lightning_albert.errors import InputError


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is outside
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        low = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low and high

    def __str__(self) -> str:
        if self.high is None:
            return f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
SHARE = Range(0, 1)
DROPOUT = Range(0, 1, high_open=True)  # a dropout of 1 drops everything
BETA = Range(0, 1, high_open=True)

# Settings of the classifier and of the pretrainer alike (model.*), of the top level, and of model.config.
MODEL_RANGES = {
    "learning_rate": POSITIVE,
    "adam_epsilon": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "warmup_steps": NON_NEGATIVE,
    "warmup_ratio": SHARE,
}
TOP_RANGES = {
    "save_every_n_steps": AT_LEAST_ONE,
    "early_stopping.patience": NON_NEGATIVE,
    "early_stopping.min_delta": NON_NEGATIVE,
}
DATA_RANGES = {
    "num_workers": NON_NEGATIVE,
    "max_train_samples": AT_LEAST_ONE,
    "max_eval_samples": AT_LEAST_ONE,
}
ALBERT_RANGES = {
    "hidden_dropout_prob": DROPOUT,
    "attention_probs_dropout_prob": DROPOUT,
    "classifier_dropout_prob": DROPOUT,
    "embedding_size": AT_LEAST_ONE,
    "hidden_size": AT_LEAST_ONE,
    "num_hidden_layers": AT_LEAST_ONE,
    "num_hidden_groups": AT_LEAST_ONE,
    "num_attention_heads": AT_LEAST_ONE,
    "intermediate_size": AT_LEAST_ONE,
    "inner_group_num": AT_LEAST_ONE,
    "max_position_embeddings": AT_LEAST_ONE,
    "type_vocab_size": AT_LEAST_ONE,
    "layer_norm_eps": POSITIVE,
    "initializer_range": NON_NEGATIVE,
}
ALBERT_KEYS = frozenset(AlbertConfig().to_dict())


def check_value(key: str, value: Any, allowed: Range) -> None:
    """`value` of setting `key` within `allowed` (None: unset, fine)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if not allowed.holds(value):
        raise InputError(f"{key} must be {allowed}, got {value}.")


def check_model(model: Mapping[str, Any], section: str = "model") -> None:
    """The optimizer recipe's numbers and the `config` values of a classifier's or a pretrainer's arguments."""
    for key, allowed in MODEL_RANGES.items():
        check_value(f"{section}.{key}", model.get(key), allowed)
    for i, beta in enumerate(model.get("adam_betas") or ()):
        check_value(f"{section}.adam_betas[{i}]", beta, BETA)
    if isinstance(model.get("config"), Mapping):
        check_albert_config(model["config"], f"{section}.config")


def check_albert_config(values: Mapping[str, Any], section: str = "model.config") -> None:
    """Inline AlbertConfig values: every key one AlbertConfig has, every number in its range.

    AlbertConfig takes unknown keys as extra attributes, so `num_hiden_layers: 1` built the default depth and wrote
    both keys into config.json. A config file is not held to the keys: hub files carry keys of older versions.
    """
    unknown = [key for key in values if key not in ALBERT_KEYS]
    if unknown:
        raise InputError(f"{section}: {_unknown(unknown[0], ALBERT_KEYS)}; AlbertConfig has no such field.")
    for key, allowed in ALBERT_RANGES.items():
        check_value(f"{section}.{key}", values.get(key), allowed)


def check_settings(config: Mapping[str, Any]) -> None:
    """A parsed fit / validate / test / predict / pretrain config: ranges, model.config keys, writable outputs."""
    check_model(config.get("model") or {})
    for key, allowed in DATA_RANGES.items():
        check_value(f"data.{key}", (config.get("data") or {}).get(key), allowed)
    for key, allowed in TOP_RANGES.items():
        section, _, name = key.rpartition(".")
        values = config.get(section) if section else config  # a jsonargparse Namespace, or a dict
        check_value(key, values.get(name) if hasattr(values, "get") else None, allowed)
    trainer = config.get("trainer") or {}
    if trainer.get("max_epochs") == 0 and not (trainer.get("max_steps") or -1) > 0:
        raise InputError("trainer.max_epochs is 0, so nothing would be trained: give at least 1 (or -1, unbounded).")
    check_strategy(trainer.get("strategy"))
    check_writable_folder("trainer.default_root_dir", trainer.get("default_root_dir") or os.getcwd())
    if config.get("predictions_file"):
        check_writable_file("--predictions_file", config["predictions_file"])


def check_strategy(strategy: Any) -> None:
    """FSDP runs on CUDA GPUs only (Lightning 2.6). Said naming the setting: Lightning's own refusal of the shipped
    configs/devices/fsdp.yaml on a CPU ("No supported gpu backend found!") names neither."""
    from lightning.pytorch.strategies import FSDPStrategy

    name = strategy if isinstance(strategy, str) else str(getattr(strategy, "class_path", "") or "")
    fsdp = name in FSDPStrategy.get_registered_strategies() or name.endswith("FSDPStrategy")
    if fsdp and not torch.cuda.is_available():
        raise InputError(
            "trainer.strategy: FSDP needs a CUDA GPU (Lightning runs FSDP on CUDA only) and torch finds none here: "
            "run it on a CUDA machine, or choose another strategy (e.g. --trainer.strategy ddp --trainer.accelerator "
            "cpu)."
        )


def check_writable_folder(key: str, folder: str | Path) -> None:
    """That `folder` exists or can be made, and a file can be written there, without making it."""
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{key}: cannot write into {path}: {existing} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        where = "" if existing == path else f" (it does not exist, and {existing} is where it would be made)"
        raise InputError(
            f"{key}: cannot write into {path}{where}: {e.strerror}. Choose a folder you can write to."
        ) from None


def check_writable_file(key: str, file: str | Path) -> None:
    path = Path(file)
    if path.is_dir():
        raise InputError(f"{key}: {path} is a folder; give a file name.")
    check_writable_folder(key, path.parent)


# ------------------------------------------------------------------------------------------------- config files
def config_files(argv: Iterable[str]) -> list[str]:
    """The files of `--config X`, `--config=X` and `-c X` in a command line, in order."""
    files, argv = [], list(argv)
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.removeprefix("--config="))
    return files


def check_config_files(argv: Iterable[str]) -> None:
    """Each config file can be read and is a YAML mapping; else one line naming the file and line."""
    argv = list(argv)
    for file in config_files(argv):
        if not Path(file).is_file():
            continue  # jsonargparse also takes YAML text there, and names a missing file itself
        try:
            values = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"--config {file}: cannot read it ({e.strerror}).") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise InputError(f"--config {file}{line}: not valid YAML ({problem}).") from None
        if values is not None and not isinstance(values, Mapping):
            raise InputError(f"--config {file}: must hold a mapping of settings (key: value), not a list or value.")
        architecture = ((values or {}).get("model") or {}).get("config")
        key = next((a.split("=")[0] for a in argv if a.startswith("--model.config.")), None)
        if isinstance(architecture, str) and key:
            # jsonargparse would make model.config the one key given, dropping every other value of the file.
            raise InputError(
                f"{key}: model.config is the file {architecture} (--config {file}), and one key given this way "
                f"would replace the whole architecture, not change that key. Copy {architecture}, change the "
                "key there and pass --model.config <the copy>, or give model.config inline in the YAML."
            )


def parse_error(message: str, argv: Iterable[str], prog: str = "python -m lightning_albert") -> InputError:
    """jsonargparse's refusal as one line: an unknown key is named with the config file that holds it."""
    argv = list(argv)
    text = " ".join(message.split())
    unknown = re.search(r"does not accept options? '?([\w.\-]+)'?", text) or re.search(
        r"unrecognized arguments: --?([\w.\-]+)", text, re.IGNORECASE
    )
    subcommand = next((a for a in argv if a in ("fit", "validate", "test", "predict", "pretrain")), "")
    help_line = f" ({prog} {subcommand} --help lists them)".replace("  ", " ")
    if unknown:
        key = unknown.group(1).split("=")[0]
        holder = next((f for f in config_files(argv) if key in _flat_keys(f)), None)
        where = f"--config {holder}" if holder else f"--{key}"
        return InputError(f"{where}: unknown setting '{key}'{_suggestion(key)}.{help_line}")
    return InputError(text.removeprefix("error: "))


def _flat_keys(file: str) -> set[str]:
    try:
        values = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    keys: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                keys.add(prefix + str(k))
                walk(v, f"{prefix}{k}.")

    walk(values, "")
    return keys


def _suggestion(key: str) -> str:
    """' (did you mean model.learning_rate?)' from the keys the shipped configs use, when one is close."""
    known: set[str] = set()
    for file in Path(__file__).resolve().parents[1].glob("configs/*.yaml"):
        known |= _flat_keys(str(file))
    section = key.rpartition(".")[0]
    known = [k for k in known if k.rpartition(".")[0] == section and k != key]  # a fit key pretrain lacks: no hint
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
    return f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
