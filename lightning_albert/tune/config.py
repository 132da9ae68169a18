"""The fit config of a search, resolved in this process by fit's own parser: the base config files, the user's
overrides, and each trial's values, given to it as fit's command line gives them.

A trial is `fit` with these arguments, so its run folder's config.yaml is what that fit command writes; the
parser is AlbertCLI's (built once, never run), so tune takes exactly the settings fit takes, with fit's defaults
and fit's refusals.
"""

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningArgumentParser

from lightning_albert.errors import InputError
from lightning_albert.fit import AlbertCLI
from lightning_albert.options import parse_error

# Search-space keys under model.config are AlbertConfig values merged into the config model.config gives (fit
# would replace a JSON file's whole config by the one value).
ALBERT_CONFIG = "model.config."


class _ParserReady(Exception):
    """Carries the parser out of AlbertCLI's constructor, which would go on to parse and build the classes."""

    def __init__(self, parser: LightningArgumentParser) -> None:
        self.parser = parser


class _ParserOnly(AlbertCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        raise _ParserReady(parser)


@functools.cache
def fit_parser() -> LightningArgumentParser:
    """`python -m lightning_albert`'s parser (fit, validate, test, predict), as AlbertCLI builds it: LightningCLI
    makes it before parsing, and parsing is where this stops, so no class is built and nothing runs."""
    try:
        _ParserOnly(args=[])
    except _ParserReady as ready:
        return ready.parser
    raise AssertionError("AlbertCLI no longer parses through parse_arguments")  # pragma: no cover


def resolve(fit_args: list[str]) -> dict[str, Any]:
    """The config `fit <fit_args>` runs with, every default included, as a plain dict (what fit writes into its
    run folder's config.yaml); a command line fit would refuse raises InputError with fit's reason, on one line."""
    parser = fit_parser()
    argv = ["fit", *fit_args]
    try:
        config = parser.parse_args(argv)
    except ArgumentError as e:
        raise parse_error(str(e), argv) from None
    return yaml.safe_load(parser.dump(config, skip_unset=False))["fit"]


def with_values(fit_args: list[str], resolved: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """`fit_args` with `values` (dotted fit keys: a trial's, the searched metric) after them, as one more config."""
    plain = {key: value for key, value in values.items() if not key.startswith(ALBERT_CONFIG)}
    albert = {key.removeprefix(ALBERT_CONFIG): value for key, value in values.items() if key.startswith(ALBERT_CONFIG)}
    if albert:
        plain["model.config"] = {**albert_config(resolved["model"]["config"]), **albert}
    return [*fit_args, "--config", yaml.safe_dump(plain, sort_keys=False)]


def albert_config(config: str | dict[str, Any] | None) -> dict[str, Any]:
    """model.config's values: inline, or read from the JSON file it names."""
    if not isinstance(config, str):
        return dict(config or {})
    try:
        values = json.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"model.config: cannot read {config} ({e}).") from None
    if not isinstance(values, dict):
        raise InputError(f"model.config: {config} must hold a JSON object of AlbertConfig values.")
    return values


def overridden_keys(overrides: Iterable[str]) -> set[str]:
    """The fit keys a command line of overrides sets (`--data.batch_size 8`, `--data.batch_size=8`)."""
    return {arg[2:].split("=", 1)[0] for arg in overrides if arg.startswith("--") and len(arg) > 2}
