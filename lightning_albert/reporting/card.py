"""The model card: the Hugging Face Trainer's card format, reporting the best checkpoint and the last epoch.

Keys and order follow `../shared/seed-model-card.md`, so the two can be compared line by line; what a Trainer
card hides (which epoch was best, per-class results, the confusion matrix) is added after. The columns, tables
and pictures are the run's task's (tasks/): a multi-label card has per-label tables, a regression card a
predicted-against-true picture.
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from lightning_albert.reporting.baseline import side_by_side, verdict
from lightning_albert.reporting.history import Evaluation, RunHistory
from lightning_albert.tasks import Task

LEARNING_CURVES = "learning_curves.png"


def plot_files(task: Task) -> tuple[str | None, str | None]:
    """The task's picture of the best validation and of the test split, as files of the run folder."""
    if task.plot_name is None:
        return None, None
    return f"{task.plot_name}.png", f"test_{task.plot_name}.png"


def _plot_title(task: Task) -> str:
    return task.plot_name.replace("_", " ").capitalize()


def render_card(run: RunHistory) -> str:
    model, data, trainer = (run.config.get(k) or {} for k in ("model", "data", "trainer"))
    base = model.get("pretrained")
    name = _model_name(base, data.get("train_file"))
    best, last, task = run.best, run.last, run.task
    parts = [_front_matter(run, name, base), f"# {name}\n"]
    if base:
        link = f"[{base}](https://huggingface.co/{base})" if not Path(str(base)).exists() else f"`{base}`"
        parts.append(f"This model is a fine-tuned version of {link} on {_data_name(data)}.{_pretraining(run)}")
    else:
        parts.append(f"This model is an ALBERT trained from scratch ({_architecture(model)}) on {_data_name(data)}.")
    if best is not None:
        parts.append(
            f"It achieves the following results on the evaluation set with its best checkpoint, "
            f"epoch {best.epoch + 1} (step {best.step}), chosen by {run.chosen_by}:"
        )
        parts.append(_results(best, task))
        if last is not None and last is not best:
            parts.append(f"The last evaluation, epoch {last.epoch + 1} (step {last.step}), gave:")
            parts.append(_results(last, task))
        if run.test:
            parts.append(f"On the test split ({run.test['examples']} examples, not used for any choice), it gives:")
            parts.append(_scores(run.test["loss"], run.test["metrics"], task))
    else:
        parts.append("The run recorded no evaluation.")
    stopped = _early_stop(run)
    if stopped:
        parts.append(stopped)
    if run.baseline:
        parts.append(_baseline(run))
    labels = run.labels or [str(v) for v in (run.facts.get("labels") or [])]
    parts.append("## Model description\n")
    parts.append(f"{task.describe(labels)}. The label names are in the exported `config.json` (`id2label`).")
    parts.append("## Intended uses & limitations\n")
    parts.append(
        f"{task.intended_use} It has seen only {run.facts.get('train_examples', 'the')} training examples; check "
        f"it on your own data before relying on it, and {task.caveat}."
    )
    parts.append("## Training and evaluation data\n")
    parts.append(_data_section(data, run.facts))
    parts.append("## Training procedure\n")
    parts.append("### Training hyperparameters\n")
    parts.append("The following hyperparameters were used during training:")
    parts.append("\n".join(f"- {k}: {v}" for k, v in _hyperparameters(run, model, data, trainer)))
    parts.append("### Training results\n")
    parts.append(_results_table(run.evaluations, task))
    tables = task.detail_tables(best.record, labels) if best is not None and labels else []
    for i, (caption, header, rows) in enumerate(tables):
        where = f" of the best checkpoint (epoch {best.epoch + 1}, validation set)"
        parts.append(f"### {caption}{where}\n" if i == 0 else f"{caption}:\n")
        parts.append(_markdown(header, rows))
    validation_plot = plot_files(task)[0]
    pictures = [("Learning curves", LEARNING_CURVES)]
    pictures += [(_plot_title(task), validation_plot)] if validation_plot else []
    pictures = [f"![{title}]({file})" for title, file in pictures if (run.folder / file).is_file()]
    if pictures:
        parts.append("\n".join(pictures))
    if run.test and labels:
        parts.append(_test_section(run, labels))
    parts.append("### Framework versions\n")
    parts.append("\n".join(f"- {label} {_version(pkg)}" for label, pkg in _FRAMEWORKS))
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


_FRAMEWORKS = [
    ("Transformers", "transformers"),
    ("Pytorch", "torch"),
    ("Tokenizers", "tokenizers"),
    ("Lightning", "lightning"),
    ("torchmetrics", "torchmetrics"),
]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def _front_matter(run: RunHistory, name: str, base: str | None) -> str:
    meta: dict[str, Any] = {"license": "apache-2.0", "library_name": "transformers"}
    if base:
        meta["base_model"] = str(base)
    meta["tags"] = ["text-classification", "albert", "lightning", "generated_from_lightning_albert"]
    meta["metrics"] = list(run.task.metrics)
    data_name = _data_name((run.config.get("data") or {}), plain=True)
    results = []
    if run.best is not None:
        results.append(_model_index_result(data_name, "validation", run.best.val_loss, run.best.metrics, run.task))
    if run.test:
        results.append(_model_index_result(data_name, "test", run.test["loss"], run.test["metrics"], run.task))
    meta["model-index"] = [{"name": name, "results": results}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"


def _model_index_result(data_name: str, split: str, loss: float, metrics: dict[str, float], task: Task) -> dict:
    return {
        "task": {"type": "text-classification", "name": "Text Classification"},
        "dataset": {"name": data_name, "type": data_name, "split": split},
        "metrics": [
            {"type": "loss", "value": round(loss, 4), "name": "Loss"},
            *({"type": m, "value": round(metrics[m], 4), "name": task.title(m)} for m in task.metrics),
        ],
    }


def _results(e: Evaluation, task: Task) -> str:
    return _scores(e.val_loss, e.metrics, task)


def _scores(loss: float, metrics: dict[str, float], task: Task) -> str:
    return "\n".join([f"- Loss: {loss:.4f}"] + [f"- {task.title(m)}: {metrics[m]:.4f}" for m in task.metrics])


def _test_section(run: RunHistory, labels: list[str]) -> str:
    test, task = run.test, run.task
    which = f"the best checkpoint (epoch {run.best.epoch + 1})" if run.best else "the final model"
    parts = [
        "### Test results\n",
        f"{which[0].upper()}{which[1:]} on the **test split** ({test['examples']} examples), evaluated once at the "
        "end of training; nothing was chosen on it.",
        _scores(test["loss"], test["metrics"], task),
    ]
    for i, (caption, header, rows) in enumerate(task.detail_tables(test, labels)):
        parts.append(f"{caption} on the test split:\n" if i == 0 else f"Test {caption[0].lower()}{caption[1:]}:\n")
        parts.append(_markdown(header, rows))
    test_plot = plot_files(task)[1]
    if test_plot and (run.folder / test_plot).is_file():
        parts.append(f"![Test {_plot_title(task).lower()}]({test_plot})")
    return "\n\n".join(p.rstrip("\n") for p in parts)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A table whose first column is left-aligned and the others centred."""
    lines = ["| " + " | ".join(header) + " |", "|:--|" + ":--:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _baseline(run: RunHistory) -> str:
    metrics = run.task.metrics
    rows = ["| Model | Split | Loss | " + " | ".join(run.task.title(m) for m in metrics) + " |"]
    rows.append("|:--|:--|" + "--:|" * (len(metrics) + 1))
    for model, split, loss, scores in side_by_side(run):
        rows.append(f"| {model} | {split} | {loss:.4f} | " + " | ".join(f"{scores[m]:.4f}" for m in metrics) + " |")
    said = verdict(run)
    intro = (
        f"A bag-of-words baseline for scale: {run.baseline['model']}, fitted on the same training split in "
        f"{run.baseline['fit_seconds']:.1f} s."
    )
    return "\n\n".join([intro, "\n".join(rows), *([said] if said else [])])


def _early_stop(run: RunHistory) -> str | None:
    stop = run.facts.get("early_stopping")
    if not stop:
        return None
    best = f" The best checkpoint is from epoch {run.best.epoch + 1}." if run.best else ""
    return (
        f"Training stopped early after epoch {stop['stopped_after_epoch'] + 1} of {run.facts.get('max_epochs')}: "
        f"{stop['monitor']} did not improve ({stop['mode']}, by more than {stop['min_delta']:g}) for "
        f"{stop['patience']} evaluations in a row (early_stopping.patience).{best}"
    )


def _results_table(evaluations: list[Evaluation], task: Task) -> str:
    """The Trainer card's table (the seed card's header, to the space, for single-label), with the task's metrics."""
    titles = ["Training Loss", "Epoch", "Step", "Validation Loss", *(task.title(m).ljust(6) for m in task.metrics)]
    rows = ["| " + " | ".join(titles) + " |", "|" + "|".join(f":{'-' * len(t)}:" for t in titles) + "|"]
    for e in evaluations:
        train = f"{e.train_loss:.4f}" if e.train_loss is not None else "No log"
        values = [train, f"{e.epoch + 1:.1f}", str(e.step), f"{e.val_loss:.4f}"]
        values += [f"{e.metrics[m]:.4f}" for m in task.metrics]
        rows.append("| " + " | ".join(values) + " |")
    return "\n".join(rows)


def _hyperparameters(run: RunHistory, model: dict, data: dict, trainer: dict) -> list[tuple[str, Any]]:
    betas = tuple(model.get("adam_betas") or (0.9, 0.999))
    items: list[tuple[str, Any]] = [
        ("learning_rate", _number(model.get("learning_rate", 1e-5))),
        ("train_batch_size", data.get("batch_size", 8)),
        ("eval_batch_size", data.get("eval_batch_size", 8)),
        ("seed", run.config.get("seed_everything")),
        (
            "optimizer",
            f"AdamW with betas=({betas[0]},{betas[1]}) and epsilon={_number(model.get('adam_epsilon', 1e-8))}",
        ),
        ("lr_scheduler_type", model.get("lr_scheduler_type", "linear")),
    ]
    if model.get("warmup_steps"):
        items.append(("lr_scheduler_warmup_steps", model["warmup_steps"]))
    elif model.get("warmup_ratio"):
        items.append(("lr_scheduler_warmup_ratio", model["warmup_ratio"]))
    items.append(("num_epochs", trainer.get("max_epochs")))
    if model.get("weight_decay"):
        items.append(("weight_decay", model["weight_decay"]))
    thresholds = run.facts.get("thresholds")
    if thresholds:
        same = len(set(thresholds)) == 1
        shown = (
            f"{thresholds[0]:g} for every label"
            if same
            else ", ".join(f"{name} {t:g}" for name, t in zip(run.labels, thresholds))
        )
        items.append(("decision_threshold", f"{shown} (model.threshold; a label is predicted above it)"))
    weights = run.facts.get("class_weights")
    if weights:
        how = "balanced (from the training labels)" if model.get("class_weights") == "balanced" else "given"
        shown = ", ".join(f"{name} {_number(w)}" for name, w in zip(run.labels, weights))
        items.append(("class_weights", f"{how}: {shown}; in the training, validation and test losses"))
    accumulate = trainer.get("accumulate_grad_batches") or 1
    world = run.facts.get("world_size", 1)
    if accumulate != 1:
        items.append(("gradient_accumulation_steps", accumulate))
    if accumulate * world != 1:
        items.append(("total_train_batch_size", data.get("batch_size", 8) * accumulate * world))
    if world != 1:
        items.append(("distributed_type", run.facts.get("strategy", "multi-process")))
        items.append(("num_devices", world))
    precision = str(run.facts.get("precision", trainer.get("precision") or "32-true"))
    if precision not in ("32", "32-true"):
        items.append(("mixed_precision_training", precision))
    clip = trainer.get("gradient_clip_val")
    if clip != 1.0:  # the Trainer card's hidden default is 1.0; say so when it differs
        items.append(("max_grad_norm", clip if clip else "none"))
    return items


def _number(value: Any) -> str:
    """1e-05 as the Trainer prints it, whatever YAML made of it."""
    return f"{float(value):g}" if isinstance(value, (int, float, str)) else str(value)


def _architecture(model: dict) -> str:
    config = model.get("config")
    if isinstance(config, dict):
        keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "embedding_size")
        return ", ".join(f"{k} {config[k]}" for k in keys if k in config) or "configuration in config.yaml"
    return f"configuration {config}"


def _model_name(base: str | None, train_file: str | None) -> str:
    stem = Path(str(base)).name if base else "albert-from-scratch"
    return f"{stem}-{_dataset_stem(train_file)}" if train_file else stem


def _dataset_stem(path: str | None) -> str:
    p = Path(str(path))
    generic = p.stem.lower() in {"train", "training", "data", "dataset"}
    return p.parent.name if generic and p.parent.name else p.stem


def _data_name(data: dict, plain: bool = False) -> str:
    name = _dataset_stem(data.get("train_file")) if data.get("train_file") else "an unknown dataset"
    return name if plain else f"`{name}`" if data.get("train_file") else name


def _data_section(data: dict, facts: dict) -> str:
    lines = []
    for key, role, fact in (
        ("train_file", "Training", "train_examples"),
        ("validation_file", "Validation", "validation_examples"),
        ("test_file", "Test", None),
    ):
        if data.get(key):
            count = facts.get(fact) if fact else None
            lines.append(f"- {role}: `{data[key]}`" + (f" ({count} examples)" if count else ""))
    if not data.get("validation_file") and data.get("train_file"):
        lines.append(
            f"- Validation: a stratified {data.get('val_split', 0.1):.0%} of the training file "
            f"(seed {data.get('split_seed', 42)})"
            + (f", {facts['validation_examples']} examples" if facts.get("validation_examples") else "")
        )
    lines.append(f"- Texts are truncated to {data.get('max_length', 128)} tokens.")
    return "\n".join(lines)


def _pretraining(run: RunHistory) -> str:
    """What pretrained the starting weights, from the record of `pretrain` (run_folder.py keeps it in the facts)."""
    record = run.facts.get("pretraining")
    if not record:
        return ""
    texts = " and ".join(f"`{Path(p).name}`" for p in record.get("texts") or []) or "unlabelled text"
    loss = record.get("best_val_loss")
    scored = f", held-out masked-language loss {loss:.4f}" if loss is not None else ""
    budget = f" of {record['max_steps']}" if record.get("max_steps") else ""
    return (
        f" Those weights were pretrained by `python -m lightning_albert pretrain` (masked-language modelling) on "
        f"{texts} ({record.get('train_texts', '?')} texts): the checkpoint of step {record.get('global_step', '?')}"
        f"{budget}{scored}."
    )
