"""What a task is: single-label classification, multi-label classification or regression.

One small class per task (single_label.py, multi_label.py, regression.py) holds everything that differs between
them: how a row's label becomes a target, the loss and the output activation, the metrics of each evaluation and
the monitored one, the predictions file's columns and serve's answer, the card's tables, the bag-of-words
baseline and the export's `problem_type`. The data, the model, the reports, predict and serve ask the task; none
of them branches on its name. A new task is one more class here.
"""

from typing import Any, Literal

from lightning_albert.errors import InputError
from lightning_albert.tasks.base import LabelFormat, Task
from lightning_albert.tasks.multi_label import MultiLabel
from lightning_albert.tasks.regression import Regression
from lightning_albert.tasks.single_label import SingleLabel

TASKS: dict[str, Task] = {t.name: t for t in (SingleLabel(), MultiLabel(), Regression())}
TaskName = Literal["single_label", "multi_label", "regression"]


def get_task(name: str | None) -> Task:
    """The task named by data.task (runs from before tasks existed are single-label)."""
    if name is None:
        return TASKS["single_label"]
    if name not in TASKS:
        raise InputError(f"data.task: '{name}' is not one of {', '.join(TASKS)}.")
    return TASKS[name]


def task_of_config(config: Any) -> Task:
    """The task of an exported model, from its transformers config's problem_type."""
    by_problem = {t.problem_type: t for t in TASKS.values()}
    return by_problem.get(getattr(config, "problem_type", None), TASKS["single_label"])


__all__ = ["TASKS", "LabelFormat", "Task", "TaskName", "get_task", "task_of_config"]
