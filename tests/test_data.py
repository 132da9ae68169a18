"""The DataModule's decisions: label ids, splits, truncation, batching."""

import collections
import csv
import os
from pathlib import Path

import pytest
from conftest import ALBERT_BASE_TOKENIZER, PHRASEBANK

from lightning_albert.data import TextClassificationDataModule
from lightning_albert.errors import InputError


def _write(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


ROWS = [("good news", "pos"), ("bad news", "neg"), ("some news", "neu")] * 4


def test_labels_are_the_sorted_training_labels_unless_given(tmp_path):
    train = _write(tmp_path / "train.csv", ROWS)
    data = TextClassificationDataModule(train_file=train, validation_file=train, tokenizer=str(ALBERT_BASE_TOKENIZER))
    assert data.labels == ["neg", "neu", "pos"] and data.id2label == {0: "neg", 1: "neu", 2: "pos"}
    data.setup("fit")
    assert [f["labels"] for f in data.split("train").features[:3]] == [2, 0, 1]
    fixed = TextClassificationDataModule(train_file=train, validation_file=train, labels=["pos", "neu", "neg"],
                                         tokenizer=str(ALBERT_BASE_TOKENIZER))  # fmt: skip
    fixed.setup("fit")
    assert [f["labels"] for f in fixed.split("train").features[:3]] == [0, 2, 1]


def test_integer_labels_sort_as_numbers_and_index_given_names(tmp_path):
    numeric = _write(tmp_path / "n.csv", [(f"text {i}", str(i % 11)) for i in range(22)])
    data = TextClassificationDataModule(train_file=numeric, tokenizer=str(ALBERT_BASE_TOKENIZER))
    assert data.labels == [str(i) for i in range(11)]  # "10" after "9", not after "1"
    ids = _write(tmp_path / "ids.csv", [("a", "2"), ("b", "0"), ("c", "1"), ("d", "pos")])
    named = TextClassificationDataModule(train_file=ids, validation_file=ids, labels=["neg", "neu", "pos"],
                                         tokenizer=str(ALBERT_BASE_TOKENIZER))  # fmt: skip
    named.setup("fit")
    assert [f["labels"] for f in named.split("train").features] == [2, 0, 1, 2]


def test_validation_split_is_stratified_seeded_and_disjoint(shared_data):
    kwargs = dict(train_file=str(PHRASEBANK / "train.csv"), tokenizer=str(ALBERT_BASE_TOKENIZER), val_split=0.2)
    a, b = TextClassificationDataModule(**kwargs), TextClassificationDataModule(**kwargs)
    for data in (a, b):
        data.setup("fit")
    train, val = a.split("train"), a.split("validation")
    assert val.rows == b.split("validation").rows  # seeded
    assert not set(train.rows) & set(val.rows) and len(train) + len(val) == 1808
    share = collections.Counter(f["labels"] for f in val.features)
    total = collections.Counter(f["labels"] for f in train.features + val.features)
    for label, n in total.items():
        assert share[label] / n == pytest.approx(0.2, abs=0.01)
    other = TextClassificationDataModule(**{**kwargs, "split_seed": 7})
    other.setup("fit")
    assert other.split("validation").rows != val.rows


def test_long_texts_are_truncated_and_counted_once(tmp_path, caplog):
    train = _write(tmp_path / "t.csv", [("word " * 300, "a"), ("short", "b"), ("word " * 5, "a"), ("x", "b")])
    data = TextClassificationDataModule(train_file=train, validation_file=train, max_length=16,
                                        tokenizer=str(ALBERT_BASE_TOKENIZER))  # fmt: skip
    with caplog.at_level("INFO"):
        data.setup("fit")
    lengths = [len(f["input_ids"]) for f in data.split("train").features]
    assert lengths[0] == 16 and lengths[1] < 16
    assert data.split("train").features[0]["input_ids"][-1] == 3  # still ends with [SEP]
    assert caplog.text.count("1 of 4 texts were longer than data.max_length=16") == 2  # train and validation


def test_batches_are_padded_per_batch_and_evaluation_is_sorted_by_length(tmp_path):
    train = _write(tmp_path / "t.csv", [("a b c d e f g h", "x"), ("a", "y")] * 4)
    data = TextClassificationDataModule(train_file=train, validation_file=train, eval_batch_size=3,
                                        tokenizer=str(ALBERT_BASE_TOKENIZER))  # fmt: skip
    data.setup("fit")
    batches = list(data.val_dataloader())
    long, short = (len(data.tokenizer(t)["input_ids"]) for t in ("a b c d e f g h", "a"))
    # Each batch is padded to its own longest text, and longest first: the last batch holds short texts only.
    assert all(b["input_ids"].shape[1] == b["attention_mask"].sum(1).max() for b in batches)
    assert batches[0]["input_ids"].shape[1] == long and batches[-1]["input_ids"].shape[1] == short
    mixed = next(b for b in batches if (b["attention_mask"].sum(1) == short).any() and b["input_ids"].shape[1] == long)
    i = int((mixed["attention_mask"].sum(1) == short).nonzero()[0])
    assert mixed["attention_mask"][i].tolist() == [1] * short + [0] * (long - short)
    assert mixed["input_ids"][i, short:].eq(data.tokenizer.pad_token_id).all()
    rows = [r for b in batches for r in b["row"].tolist()]
    labels = [y for b in batches for y in b["labels"].tolist()]
    assert sorted(rows) == list(range(8))  # every row once
    assert all(y == r % 2 for r, y in zip(rows, labels))  # labels travel with their rows


def test_max_samples_take_the_first_rows(shared_data):
    data = TextClassificationDataModule(
        train_file=str(PHRASEBANK / "train.csv"), validation_file=str(PHRASEBANK / "validation.csv"),
        tokenizer=str(ALBERT_BASE_TOKENIZER), max_train_samples=50, max_eval_samples=20,
    )  # fmt: skip
    data.setup("fit")
    assert data.split("train").rows == list(range(50)) and len(data.split("validation")) == 20


def test_workers_load_every_row_without_the_tokenizers_fork_warning(tmp_path, capfd, monkeypatch):
    """tokenizers < 0.23 warned (and disabled itself) when a DataLoader forked after a batch encode; 0.23 no
    longer prints it, so the guard that prevents it, parallelism off before the fork, is asserted directly."""
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    train = _write(tmp_path / "t.csv", ROWS)
    data = TextClassificationDataModule(train_file=train, validation_file=train, num_workers=2,
                                        tokenizer=str(ALBERT_BASE_TOKENIZER))  # fmt: skip
    data.setup("fit")
    assert sorted(r for b in data.train_dataloader() for r in b["row"].tolist()) == list(range(len(ROWS)))
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert "TOKENIZERS_PARALLELISM" not in capfd.readouterr().err


def test_options_are_checked_when_built():
    with pytest.raises(InputError, match="data.text_pair_column and data.text_column"):
        TextClassificationDataModule(text_pair_column="text")
    with pytest.raises(InputError, match="data.batch_size"):
        TextClassificationDataModule(batch_size=0)


def test_the_grouping_window_reaches_the_training_order(shared_data):
    """group_by_length_window is the sampler's window: one batch wide, the batches are the random ones."""

    def batches(**kwargs) -> list[list[int]]:
        data = TextClassificationDataModule(
            train_file=str(PHRASEBANK / "train.csv"), validation_file=str(PHRASEBANK / "validation.csv"),
            tokenizer=str(ALBERT_BASE_TOKENIZER), max_train_samples=200, seed=5, **kwargs,
        )  # fmt: skip
        data.setup("fit")
        return [sorted(b["row"].tolist()) for b in data.train_dataloader()]

    random_batches = batches()
    assert sorted(batches(group_by_length=True, group_by_length_window=1)) == sorted(random_batches)
    assert sorted(batches(group_by_length=True)) != sorted(random_batches)
    with pytest.raises(InputError, match="data.group_by_length_window"):
        TextClassificationDataModule(train_file=str(PHRASEBANK / "train.csv"), group_by_length_window=0)
