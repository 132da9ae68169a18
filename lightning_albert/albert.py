"""Building and loading the Hugging Face ALBERT: from a config (file or inline values, the offline path) or from
pretrained weights, refusing a source that lacks encoder weights and saying in one line what started fresh."""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub.errors import StrictDataclassError
from lightning.pytorch.utilities import rank_zero_info
from transformers import AlbertConfig, AlbertForSequenceClassification, PreTrainedModel
from transformers.utils import logging as hf_logging

from lightning_albert.errors import InputError
from lightning_albert.options import check_albert_config


def build_albert(
    pretrained: str | None,
    config: str | dict[str, Any] | None,
    id2label: dict[int, str],
    vocab_size: int | None,
    problem_type: str | None = None,
) -> AlbertForSequenceClassification:
    """Load pretrained ALBERT weights, or build a fresh ALBERT from a config (file or inline values).

    `problem_type` makes the export's loss and its pipeline's activation the task's (sigmoid per label for
    multi-label, none for regression)."""
    # num_labels follows id2label
    labels = dict(id2label=id2label, label2id={v: k for k, v in id2label.items()}, problem_type=problem_type)
    if pretrained:
        return load_pretrained(AlbertForSequenceClassification, pretrained, vocab_size, **labels)
    return AlbertForSequenceClassification(albert_config(config, vocab_size, **labels))


def load_pretrained(cls: type[PreTrainedModel], pretrained: str, vocab_size: int | None, **settings) -> PreTrainedModel:
    """`cls.from_pretrained`, refusing a source that lacks encoder weights: only task heads may start fresh.

    The pooler is the one exception: it is trained by sentence-order prediction, so an export of masked-language
    pretraining alone has none, and a classifier starts it fresh (as it does its head). A head of another shape
    (a classifier for another number of labels) starts fresh too. One line says what started fresh and what the
    source had that is not used, in place of transformers' table of keys (the same keys, logged as a warning).
    """
    if not Path(pretrained).exists() and (Path(pretrained).is_absolute() or pretrained.startswith((".", "~"))):
        raise InputError(f"model.pretrained: no such folder '{pretrained}' (relative paths start from {Path.cwd()}).")
    try:
        with _quiet_loading():
            model, info = cls.from_pretrained(
                pretrained, output_loading_info=True, ignore_mismatched_sizes=True, **settings
            )
    except OSError as e:
        raise InputError(
            f"model.pretrained: cannot load '{pretrained}' ({str(e).splitlines()[0]}). Give a local folder with "
            "config.json and weights, a hub name (needs the network), or use model.config to build from scratch."
        ) from None
    # from_pretrained returns the model in eval mode, and Lightning 2.6 keeps each submodule's mode when training
    # starts: without this, dropout would stay off for the whole fit.
    model.train()
    encoder = f"{model.base_model_prefix}."
    reshaped = {key: (old, new) for key, old, new in info["mismatched_keys"]}
    fresh = sorted({*info["missing_keys"], *reshaped})
    missing = [k for k in fresh if k.startswith(encoder) and not k.startswith(f"{encoder}pooler.")]
    if missing:
        shapes = [f"{k} {list(reshaped[k][0])} there, {list(reshaped[k][1])} here" if k in reshaped else k
                  for k in missing[:3]]  # fmt: skip
        raise InputError(
            f"model.pretrained: '{pretrained}' lacks {len(missing)} encoder weight(s) the model needs "
            f"({', '.join(shapes)}{', ...' if len(missing) > 3 else ''}); they would start random. "
            "Give a folder written by save_pretrained of an ALBERT model (fit's or pretrain's hf_model)."
        )
    if vocab_size is not None and vocab_size > model.config.vocab_size:
        raise InputError(
            f"the tokenizer has {vocab_size} pieces but '{pretrained}' has embeddings for "
            f"{model.config.vocab_size}: use the model's own tokenizer (data.tokenizer: {pretrained})."
        )
    rank_zero_info(_loading_summary(pretrained, encoder, fresh, sorted(info["unexpected_keys"]), reshaped))
    return model


def _loading_summary(
    pretrained: str, encoder: str, fresh: list[str], unused: list[str], reshaped: dict[str, tuple]
) -> str:
    """One line: every encoder weight came from `pretrained`; which modules start fresh, and why; what is unused."""

    def module(key: str) -> str:
        return key.removeprefix(encoder).split(".")[0]

    why = {"pooler": "pooler (no sentence-order prediction in its pretraining)"}
    for key, (old, new) in reshaped.items():  # a Linear's weight and bias both lead with its outputs
        why.setdefault(module(key), f"{module(key)} ({old[0]} outputs there, {new[0]} here)")
    line = f"model.pretrained '{pretrained}': every encoder weight loaded"
    if fresh:
        line += "; starting fresh: " + ", ".join(why.get(m, m) for m in dict.fromkeys(map(module, fresh)))
    if unused:
        line += "; not used here: " + ", ".join(dict.fromkeys(map(module, unused)))
    return line + "."


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Drop the LOAD REPORT table transformers 5 logs as a warning on every load: load_pretrained checks the same
    keys. A filter, not a level: modeling_utils runs more checks (that warn) when its logger's level is raised."""
    log = hf_logging.get_logger("transformers.modeling_utils")
    report = _DropLoadReport()
    log.addFilter(report)
    try:
        yield
    finally:
        log.removeFilter(report)


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def albert_config(config: str | dict[str, Any] | None, vocab_size: int | None, **settings) -> AlbertConfig:
    """An AlbertConfig from a JSON file or inline values; `vocab_size` (the tokenizer's) and `settings` win."""
    if config is None:
        raise InputError(
            "the model needs model.pretrained (a hub name or folder, e.g. albert-base-v2) or model.config "
            "(an AlbertConfig JSON file or inline values, to train from scratch)."
        )
    if isinstance(config, dict):
        check_albert_config(config)
    values = dict(config) if isinstance(config, dict) else _read_config_file(config)
    if vocab_size is not None:
        values["vocab_size"] = vocab_size
    try:
        built = AlbertConfig(**{**values, **settings})
    except (TypeError, ValueError, StrictDataclassError) as e:  # transformers 5 checks types through the hub's
        raise InputError(f"model.config: {' '.join(str(e).split())}") from None
    if built.hidden_size % built.num_attention_heads:  # transformers leaves this to the first forward pass
        raise InputError(
            f"model.config: hidden_size {built.hidden_size} is not a multiple of num_attention_heads "
            f"{built.num_attention_heads}: each head takes an equal share of it."
        )
    return built


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"model.config: no such file '{path}'.") from None
    except json.JSONDecodeError as e:
        raise InputError(f"model.config: {path}, line {e.lineno}: not valid JSON ({e.msg}).") from None
