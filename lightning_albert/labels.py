"""Labels: a data set's class names, each row's label as a class id (with errors that name the row), and a
checkpoint's labels and tokenizer checked against the data's before its weights are restored."""

from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from lightning_albert.errors import InputError, row_list
from lightning_albert.tables import Table
from lightning_albert.tokenizer import tokenizer_from_files


def check_given_labels(labels: list[Any] | None) -> list[str] | None:
    """data.labels as text, refused when it repeats a name or names fewer than two classes."""
    if labels is None:
        return None
    names = [str(n) for n in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"data.labels lists {', '.join(repr(d) for d in duplicates)} more than once.")
    if len(names) < 2:
        raise InputError("data.labels needs at least two classes.")
    return names


def class_names(table: Table, column: str) -> list[str]:
    """The training table's classes in id order: a datasets ClassLabel's names, else its sorted distinct labels."""
    if column in table.class_names:
        return list(table.class_names[column])
    values = [label_text(v) for v in table.column(column, "label")]
    names = sorted({v for v in values if v is not None}, key=_label_sort_key)
    hint = task_hint(names)
    if hint:
        rank_zero_info(f"Note: {table.path}, column '{column}': {hint}")
    if len(names) < 2:
        found = f"only '{names[0]}'" if names else "no labels"
        raise InputError(
            f"{table.path}: the training data has {found} in column '{column}'; "
            "a classifier needs at least two classes."
        )
    return names


def label_ids(table: Table, rows: list[int], column: str, labels: list[str], given: bool) -> list[int]:
    """Each row's label as its id in `labels`. Integers are ids into a fixed list of names (`given`: data.labels,
    or a ClassLabel column); else they are names too."""
    index = {name: i for i, name in enumerate(labels)}
    values = table.column(column, "label")
    ids_allowed = given or column in table.class_names
    ids, missing, unknown = [], [], {}
    for r in rows:
        value, line = label_text(values[r]), table.lines[r]
        if value is None:
            missing.append(line)
        elif value in index:
            ids.append(index[value])
        elif ids_allowed and _is_int(value):
            if not 0 <= int(value) < len(labels):
                raise InputError(
                    f"{table.path}, {table.unit} {line}: integer label {value} is out of range: data.labels has "
                    f"{len(labels)} classes, ids 0 to {len(labels) - 1}."
                )
            ids.append(int(value))
        else:
            unknown.setdefault(value, line)
    if missing:
        raise InputError(
            f"{table.path}: {len(missing)} row(s) have no label in column '{column}' "
            f"({row_list(missing, table.unit)}). Every row of a training, validation or test file needs one."
        )
    if unknown:
        value, line = next(iter(unknown.items()))
        source = "data.labels" if given else "the training file's labels"
        raise InputError(
            f"{table.path}, {table.unit} {line}: label '{value}' is not one of {source} "
            f"({', '.join(labels)}){f' ({len(unknown)} unknown labels in all)' if len(unknown) > 1 else ''}. "
            "Fix the label, or list every class in data.labels."
        )
    return ids


def check_class_weights(weights: str | list[float], id2label: dict[int, str]) -> list[float] | None:
    """model.class_weights as given: None for `balanced` (computed when fit starts), else one weight per class."""
    if weights == "balanced":
        return None
    if isinstance(weights, str) or len(weights) != len(id2label):
        raise InputError(
            f"model.class_weights: give balanced, or {len(id2label)} weights (one per class, in the order "
            f"{', '.join(id2label.values())}), not {weights!r}."
        )
    if not all(w > 0 for w in weights):
        raise InputError(f"model.class_weights: every weight must be above 0, got {list(weights)}.")
    return [float(w) for w in weights]


def balanced_weights(label_ids, id2label: dict[int, str]) -> list[float]:
    """scikit-learn's `balanced` rule: n_samples / (n_classes * count) per class, from the training labels."""
    counts = [0] * len(id2label)
    for i in label_ids:
        counts[int(i)] += 1
    absent = [id2label[i] for i, n in enumerate(counts) if n == 0]
    if absent:
        raise InputError(
            f"model.class_weights: balanced needs every class in the training data; "
            f"{', '.join(repr(a) for a in absent)} has none. Give the weights as a list instead."
        )
    return [sum(counts) / (len(counts) * n) for n in counts]


def task_hint(names: list[str]) -> str | None:
    """A line when the distinct labels look like another task than single-label classification, read as one:
    label sets joined by a separator (multi-label), or numbers with many values (scores: regression)."""
    for sep in ("|", ",", ";"):
        joined = [n for n in names if sep in n]
        parts = {part.strip() for n in names for part in n.split(sep) if part.strip()}
        if len(joined) >= 2 and len(parts) < len(names):
            return (
                f"{len(joined)} of its {len(names)} labels join several with '{sep}' (e.g. '{joined[0]}'), read here "
                f"as single-label classes, one per combination ({len(names)} classes from {len(parts)} labels). If a "
                f"text may have several labels, you may have meant --data.task multi_label"
                f"{'' if sep == '|' else f' --data.label_separator {sep!r}'}; the run goes on as single-label."
            )
    numbers = [_number(n) for n in names]
    if all(x is not None for x in numbers) and (len(names) > 20 or any(not x.is_integer() for x in numbers)):
        return (
            f"every label is a number ({len(names)} distinct values, e.g. {', '.join(names[:3])}), read here as one "
            "class per value. If they are scores, you may have meant --data.task regression; the run goes on as "
            "classification."
        )
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def check_checkpoint_task(state: dict[str, Any], task: str) -> None:
    """Stop when a checkpoint was trained for another task than data.task (before its labels are read as this
    task's, which would fail less clearly)."""
    trained_for = state.get("task", "single_label")  # checkpoints from before tasks were single-label
    if trained_for != task:
        raise InputError(
            f"the checkpoint was trained for data.task {trained_for}, but data.task is {task}. "
            f"Set data.task: {trained_for} (the run's config.yaml has it)."
        )


def check_checkpoint_matches(state: dict[str, Any], labels: list[str], tokenizer, what: str) -> None:
    """Stop when a checkpoint was trained on other classes or another vocabulary than the data uses now.

    Called by the CLI before the weights are restored: a vocabulary of another size would otherwise fail as
    a shape mismatch deep inside torch.
    """
    if list(state.get("labels", labels)) != list(labels):
        raise InputError(
            f"the checkpoint was trained on labels {state['labels']}, but {what} has {labels}. "
            "Use the data.labels the checkpoint was trained with (or leave data.labels unset)."
        )
    files = state.get("tokenizer_files")
    if files is not None:
        if tokenizer_from_files(files).get_vocab() != tokenizer.get_vocab():
            raise InputError(
                f"the checkpoint's tokenizer differs from {what}'s (data.tokenizer). Leave data.tokenizer unset "
                "to use the tokenizer saved in the checkpoint."
            )


def label_text(value: Any) -> str | None:
    """Labels compare as text: JSON's 2 and CSV's "2" are the same class; empty means missing."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _label_sort_key(name: str) -> tuple:
    """Integer-looking labels sort as numbers (so "10" comes after "9"), the rest alphabetically."""
    return (0, int(name), "") if _is_int(name) else (1, 0, name)
