"""Labels: class names, each row's id with errors naming the row, and the hint when labels look like another task."""

import csv

import pytest

from lightning_albert.errors import InputError
from lightning_albert.labels import balanced_weights, check_given_labels, class_names, label_ids, task_hint
from lightning_albert.tables import read_table


def _table(tmp_path, labels):
    path = tmp_path / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *((f"text {i}", label) for i, label in enumerate(labels))])
    return read_table(str(path), "utf-8", key="data.train_file")


def test_names_sort_numbers_as_numbers_and_rows_map_to_their_ids(tmp_path):
    table = _table(tmp_path, ["10", "9", "2", "9"])
    names = class_names(table, "label")
    assert names == ["2", "9", "10"]
    assert label_ids(table, [0, 1, 2, 3], "label", names, given=False) == [2, 1, 0, 1]


def test_an_unknown_label_names_its_line_and_the_classes(tmp_path):
    table = _table(tmp_path, ["a", "b", "c"])
    with pytest.raises(InputError, match=r"train.csv, line 4: label 'c' is not one of data.labels \(a, b\)"):
        label_ids(table, [0, 1, 2], "label", ["a", "b"], given=True)


def test_given_labels_are_refused_when_they_repeat_or_are_too_few():
    assert check_given_labels([0, 1]) == ["0", "1"]
    with pytest.raises(InputError, match="lists 'a' more than once"):
        check_given_labels(["a", "b", "a"])
    with pytest.raises(InputError, match="at least two classes"):
        check_given_labels(["a"])


def test_label_sets_joined_by_a_separator_get_the_multi_label_hint(tmp_path, caplog):
    sets = ["positive", "negative", "positive|very negative", "negative|neutral", "neutral|positive", "neutral"]
    hint = task_hint(sorted(set(sets)))
    assert "--data.task multi_label" in hint and "'|'" in hint and "(6 classes from 4 labels)" in hint
    with caplog.at_level("INFO"):
        names = class_names(_table(tmp_path, sets), "label")
    assert len(names) == 6  # it still runs, as single-label over the combinations
    assert "train.csv, column 'label': 3 of its 6 labels join several with '|'" in caplog.text


def test_scores_get_the_regression_hint_and_class_names_do_not():
    assert "regression" in task_hint(["0.0", "0.25", "0.5", "0.75", "1.0"])
    assert "regression" in task_hint([str(i) for i in range(40)])  # many distinct numbers
    assert task_hint(["1", "2", "3", "4", "5"]) is None  # star ratings: five classes
    assert task_hint(["negative", "neutral", "positive"]) is None
    assert task_hint(["Arts, Culture", "Business", "Sports"]) is None  # one name with a comma is no label set


def test_balanced_weights_are_sklearns_rule_and_need_every_class():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    ids = [0] * 7 + [1] * 2 + [2]
    expected = compute_class_weight("balanced", classes=np.arange(3), y=ids)
    assert balanced_weights(ids, {0: "a", 1: "b", 2: "c"}) == pytest.approx(expected.tolist())
    with pytest.raises(InputError, match="balanced needs every class in the training data; 'c' has none"):
        balanced_weights([0, 1, 1], {0: "a", 1: "b", 2: "c"})
