"""The compact token arrays and their on-disk cache: same ids as the tokenizer, read back instead of re-tokenized,
invalidated by any change the ids depend on, never read half-written, and bytes (not kilobytes) per example."""

import csv
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ALBERT_BASE_TOKENIZER, PHRASEBANK

from lightning_albert import token_cache
from lightning_albert.data import TextClassificationDataModule
from lightning_albert.token_cache import PadCollator, TokenArrays

TEXTS = ["Profits rose sharply.", "The company cut its outlook for the year.", "word " * 300, "x"]
PAIRS = ["It did well.", "A bad year.", "Long text.", "word " * 300]


def _write(path: Path, rows: list[tuple[str, ...]], header=("text", "label")) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _rows() -> list[tuple[str, str]]:
    return [(t, y) for t, y in zip(TEXTS, ["a", "b", "a", "b"])] * 3


def _data(train: str, cache: Path, **kwargs) -> TextClassificationDataModule:
    kwargs = {"tokenizer": str(ALBERT_BASE_TOKENIZER), "cache_dir": str(cache), **kwargs}
    return TextClassificationDataModule(train_file=train, validation_file=train, **kwargs)


def _forbid_tokenizing(data: TextClassificationDataModule, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("tokenized although the cache holds this split")

    monkeypatch.setattr(type(data.tokenizer), "__call__", refuse)


@pytest.mark.parametrize("max_length", [16, 128])
def test_ids_equal_the_tokenizer_called_directly_pairs_and_truncation_too(tokenizer, max_length):
    for pairs in (None, PAIRS):
        tokens = token_cache.encode(tokenizer, TEXTS, pairs, max_length, chunk_size=3)  # chunks of uneven size
        expected = tokenizer(TEXTS, pairs, truncation=True, max_length=max_length, return_token_type_ids=True)
        assert len(tokens) == len(TEXTS)
        for i in range(len(TEXTS)):
            start, end = tokens.offsets[i], tokens.offsets[i + 1]
            assert tokens.input_ids[start:end].tolist() == expected["input_ids"][i]
            if pairs is None:
                assert tokens.token_type_ids is None
            else:
                assert tokens.token_type_ids[start:end].tolist() == expected["token_type_ids"][i]
        assert tokens.lengths.tolist() == [len(x) for x in expected["input_ids"]]
        assert tokens.truncated == sum(len(x) > max_length for x in tokenizer(TEXTS, pairs)["input_ids"])
        assert tokens.input_ids.dtype == np.int32 and tokens.offsets.dtype == np.int64


def test_second_setup_reads_the_cache_memory_mapped_without_tokenizing(tmp_path, monkeypatch, caplog):
    train = _write(tmp_path / "t.csv", _rows())
    first = _data(train, tmp_path / "cache", max_length=16)
    first.setup("fit")
    assert len(list((tmp_path / "cache").glob("*.tokens"))) == 1  # train and validation: same file, same rows
    second = _data(train, tmp_path / "cache", max_length=16)
    _forbid_tokenizing(second, monkeypatch)
    caplog.clear()
    with caplog.at_level("INFO"):
        second.setup("fit")
    split = second.split("train")
    assert isinstance(split.tokens.input_ids, np.memmap) and isinstance(split.tokens.offsets, np.memmap)
    assert split.features == first.split("train").features
    assert caplog.text.count("3 of 12 texts were longer than data.max_length=16") == 2  # still reported
    batch = next(iter(second.val_dataloader()))
    labels = dict(zip(split.rows, split.labels.tolist()))
    assert batch["input_ids"].dtype == torch.int64
    assert batch["labels"].tolist() == [labels[r] for r in batch["row"].tolist()]


def test_cache_off_writes_nothing(tmp_path):
    train = _write(tmp_path / "t.csv", _rows())
    data = _data(train, tmp_path / "cache", cache_tokens=False)
    data.setup("fit")
    assert not (tmp_path / "cache").exists()
    assert not isinstance(data.split("train").tokens.input_ids, np.memmap)


def test_default_cache_dir_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert TextClassificationDataModule().cache_dir == tmp_path / "lightning_albert" / "tokens"


def _changed_file(tmp_path: Path, train: str) -> dict:
    rows = _rows()
    rows[0] = ("Profits fell sharply.", "a")
    _write(Path(train), rows)
    return {}


def _other_tokenizer(tmp_path: Path, train: str) -> dict:
    """A SentencePiece tokenizer trained on the file instead of albert-base-v2's."""
    return {"tokenizer": None}


@pytest.mark.parametrize(
    "change",
    [_changed_file, _other_tokenizer, lambda tmp_path, train: {"max_length": 12}],
    ids=["file content", "tokenizer", "max_length"],
)
def test_cache_is_invalidated_by_what_the_ids_depend_on(tmp_path, change):
    train = _write(tmp_path / "t.csv", _rows())
    _data(train, tmp_path / "cache").setup("fit")
    kwargs = change(tmp_path, train)
    data = _data(train, tmp_path / "cache", **kwargs)
    calls = []
    tokenize = token_cache.encode

    def counting(*args, **kw):
        calls.append(1)
        return tokenize(*args, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(token_cache, "encode", counting)
        data.setup("fit")
    assert calls, "tokenized again"
    assert len(list((tmp_path / "cache").glob("*.tokens"))) == 2
    expected = data.tokenizer(
        [r[0] for r in _read(train)], truncation=True, max_length=data.max_length
    )["input_ids"]  # fmt: skip
    assert [f["input_ids"] for f in data.split("train").features] == expected


def _read(path: str) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))[1:]


def test_a_half_written_cache_file_is_never_read(tmp_path, monkeypatch):
    train = _write(tmp_path / "t.csv", _rows())
    _data(train, tmp_path / "cache").setup("fit")
    (path,) = (tmp_path / "cache").glob("*.tokens")
    whole = path.read_bytes()
    assert token_cache.load(path) is not None
    for cut in (len(whole) - 1, len(whole) // 2, 40, 0):
        path.write_bytes(whole[:cut])  # as if killed while writing in place (save never does: temp + rename)
        assert token_cache.load(path) is None
    data = _data(train, tmp_path / "cache")
    data.setup("fit")  # tokenizes again and rewrites the file whole
    assert path.read_bytes() == whole
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_a_write_that_fails_midway_leaves_no_file(tmp_path, tokenizer, monkeypatch):
    tokens = token_cache.encode(tokenizer, TEXTS, None, 16)
    path = tmp_path / "cache" / "x.tokens"
    written = []

    def fail_after_two(f, array, allow_pickle=False):
        if len(written) == 2:
            raise KeyboardInterrupt  # a kill between two arrays
        written.append(array)
        np.lib.format.write_array(f, array, allow_pickle=allow_pickle)

    monkeypatch.setattr(np, "save", fail_after_two)
    with pytest.raises(KeyboardInterrupt):
        token_cache.save(path, tokens)
    assert not path.exists() and not list(path.parent.iterdir())


def test_partial_files_of_killed_writes_are_removed_once_old(tmp_path, tokenizer):
    """SIGKILL mid-write leaves the temporary file (no cleanup runs): the next write removes it once it is a day
    old, and leaves a fresh one, which may be another process writing now."""
    cache = tmp_path / "cache"
    cache.mkdir()
    old, fresh = cache / ".a.tokens.x1.tmp", cache / ".b.tokens.x2.tmp"
    for partial in (old, fresh):
        partial.write_bytes(b"\0" * 100)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    token_cache.save(cache / "c.tokens", token_cache.encode(tokenizer, TEXTS, None, 16))
    assert sorted(p.name for p in cache.iterdir()) == [fresh.name, "c.tokens"]


def test_memory_is_a_few_bytes_per_token(shared_data, tokenizer):
    with open(PHRASEBANK / "train.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:1000]
    for pairs in (None, texts[::-1]):
        tokens = token_cache.encode(tokenizer, texts, pairs, 128)
        n_tokens = int(tokens.lengths.sum())
        per_token = 4 + (1 if pairs else 0)  # int32 ids, int8 token types
        assert tokens.nbytes == n_tokens * per_token + 8 * (len(texts) + 1)  # + int64 offsets


def test_pad_collator_pads_to_a_multiple_with_mask_and_types():
    examples = [
        {"input_ids": np.array([2, 5, 3], np.int32), "token_type_ids": np.array([0, 0, 1], np.int8), "labels": 1,
         "row": 4},
        {"input_ids": np.array([2, 3], np.int32), "token_type_ids": np.array([0, 1], np.int8), "labels": 0, "row": 7},
    ]  # fmt: skip
    batch = PadCollator(pad_token_id=0, pad_to_multiple_of=8)(examples)
    assert list(batch) == ["input_ids", "attention_mask", "token_type_ids", "labels", "row"]
    assert all(v.dtype == torch.int64 for v in batch.values())
    assert batch["input_ids"].tolist() == [[2, 5, 3, 0, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [3, 2] and batch["token_type_ids"][0, :3].tolist() == [0, 0, 1]
    assert batch["labels"].tolist() == [1, 0] and batch["row"].tolist() == [4, 7]
    unlabelled = PadCollator(pad_token_id=9)([{"input_ids": np.array([2, 3], np.int32), "row": 0}])
    assert list(unlabelled) == ["input_ids", "attention_mask", "row"] and unlabelled["input_ids"].shape == (1, 2)


def test_split_exposes_lengths_and_pairs_batch_with_token_types(tmp_path):
    train = _write(tmp_path / "p.csv", [(t, p, y) for t, p, y in zip(TEXTS, PAIRS, "abab")], ("a", "b", "label"))
    data = _data(train, tmp_path / "cache", text_column="a", text_pair_column="b", max_length=32,
                 pad_to_multiple_of=8)  # fmt: skip
    data.setup("fit")
    split = data.split("train")
    expected = data.tokenizer(TEXTS, PAIRS, truncation=True, max_length=32, return_token_type_ids=True)
    assert split.lengths.tolist() == [len(x) for x in expected["input_ids"]]
    batch = next(iter(data.val_dataloader()))
    assert batch["input_ids"].shape[1] % 8 == 0
    first = int(batch["row"][0])  # evaluation batches are sorted by length
    assert batch["token_type_ids"][0, : split.lengths[first]].tolist() == expected["token_type_ids"][first]


def test_empty_split_arrays_round_trip(tmp_path, tokenizer):
    tokens = token_cache.encode(tokenizer, [], None, 16)
    token_cache.save(tmp_path / "e.tokens", tokens)
    loaded = token_cache.load(tmp_path / "e.tokens")
    assert isinstance(loaded, TokenArrays) and len(loaded) == 0 and loaded.offsets.tolist() == [0]
