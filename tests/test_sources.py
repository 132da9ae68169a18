"""Where each split's rows come from: the stratified, seeded hold-out of validation, and the split's table."""

import pytest

from lightning_albert.errors import InputError
from lightning_albert.sources import Sources, stratified_split


def test_stratified_split_keeps_every_class_in_training():
    train, held = stratified_split([0] * 10 + [1] * 2 + [2], 0.1, seed=0)
    assert {0, 1} <= {([0] * 10 + [1] * 2 + [2])[i] for i in held}
    assert 12 in train  # a class with one row stays in training


def test_held_out_validation_keeps_each_class_share_and_is_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    train, held = stratified_split(labels, 0.2, seed=3)
    assert sorted(train + held) == list(range(100)) and not set(train) & set(held)
    assert [sum(labels[i] == c for i in held) for c in range(3)] == [10, 6, 4]
    assert stratified_split(labels, 0.2, seed=3) == (train, held)
    assert stratified_split(labels, 0.2, seed=4)[1] != held


def test_a_split_without_data_names_the_setting_and_the_step(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\nfine,a\nbad,b\n")
    files = {"train": str(train), "validation": None, "test": None, "predict": None}
    sources = Sources(files, None, None, dict.fromkeys(files), "utf-8")
    assert sources.has("train") and not sources.has("test")
    assert sources.held_out("validation") and sources.held_out("train") and not sources.held_out("test")
    assert sources.table("train") is sources.table("train")  # read once
    assert sources.table("train").column("label", "label") == ["a", "b"]
    with pytest.raises(InputError, match="data.test_file is not set, and the test step needs it"):
        sources.table("test")
