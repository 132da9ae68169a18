"""Every file a user would reasonably have works: formats, encodings, line ends, label styles, datasets folders."""

import csv
import json
from pathlib import Path

import pytest
from conftest import ALBERT_BASE_TOKENIZER, DATA, GOOD, fit_args, logged_rows, only_run

from lightning_albert.cli import main
from lightning_albert.data import TextClassificationDataModule
from lightning_albert.tables import read_table

datasets = pytest.importorskip("datasets")
pyarrow_parquet = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(autouse=True)
def _argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["lightning_albert"])


def write_rows(path: Path, rows: list[dict], encoding: str = "utf-8", newline: str = "\n") -> Path:
    """Write rows in the format the extension names (what a user's tools would produce)."""
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding=encoding) as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",",
                                    lineterminator=newline)  # fmt: skip
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif suffix == ".parquet":
        import pyarrow as pa

        pyarrow_parquet.write_table(pa.Table.from_pylist(rows), path)
    return path


def _good(n=None) -> list[dict]:
    return [{"text": t, "label": y} for t, y in GOOD[:n]]


def _train_one_step(tmp_path: Path, train: str, validation: str, *extra: str) -> Path:
    args = fit_args(tmp_path, *extra)
    args[args.index("--data.train_file") + 1] = train
    args[args.index("--data.validation_file") + 1] = validation
    main(args)
    run = only_run(tmp_path / "runs")
    assert logged_rows(run, "val"), "validation ran"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_each_file_format_trains(tmp_path, suffix):
    """Every row of every format reaches training and validation with its label: the run's record of what it read
    (rows, classes, and a validation whose confusion matrix counts each text once) is the CSV's."""
    train = write_rows(tmp_path / f"train{suffix}", _good())
    validation = write_rows(tmp_path / f"validation{suffix}", _good(6))
    run = _train_one_step(tmp_path, str(train), str(validation), "--trainer.limit_val_batches", "1.0")
    report = json.loads((run / "report.json").read_text())
    assert report["labels"] == ["negative", "neutral", "positive"]
    assert (report["facts"]["train_examples"], report["facts"]["validation_examples"]) == (len(GOOD), 6)
    (evaluation,) = report["evaluations"]
    assert [sum(row) for row in evaluation["confusion_matrix"]] == [2, 2, 2]  # the true classes of the 6 texts


def test_utf8_with_byte_order_mark_and_crlf_line_ends(tmp_path):
    train = write_rows(tmp_path / "train.csv", _good(), encoding="utf-8-sig", newline="\r\n")
    assert train.read_bytes().startswith(b"\xef\xbb\xbftext,label\r\n")
    _train_one_step(tmp_path, str(train), str(write_rows(tmp_path / "v.csv", _good(6))))


def test_latin1_file_with_the_encoding_option(tmp_path):
    rows = [{"text": f"Café {r['text']}", "label": r["label"]} for r in _good()]
    train = write_rows(tmp_path / "train.csv", rows, encoding="latin-1")
    val = write_rows(tmp_path / "v.csv", rows[:6], encoding="latin-1")
    assert b"Caf\xe9" in train.read_bytes()
    _train_one_step(tmp_path, str(train), str(val), "--data.encoding", "latin-1")
    assert read_table(train, "latin-1").rows[0]["text"].startswith("Café ")


def test_integer_labels_with_names(tmp_path):
    names = ["negative", "neutral", "positive"]
    rows = [{"text": r["text"], "label": names.index(r["label"])} for r in _good()]
    train = write_rows(tmp_path / "train.jsonl", rows)
    val = write_rows(tmp_path / "v.jsonl", rows[:6])
    run = _train_one_step(tmp_path, str(train), str(val), "--data.labels", "[negative, neutral, positive]")
    assert json.loads((run / "report.json").read_text())["labels"] == names


def test_sentence_pairs_get_token_type_ids(tmp_path):
    rows = [{"premise": r["text"], "hypothesis": "The outlook is good.", "label": r["label"]} for r in _good()]
    train = write_rows(tmp_path / "train.csv", rows)
    data = TextClassificationDataModule(train_file=str(train), validation_file=str(train),
                                        text_column="premise", text_pair_column="hypothesis")  # fmt: skip
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch["token_type_ids"].unique().tolist()) == {0, 1}
    _train_one_step(tmp_path, str(train), str(train), "--data.text_column", "premise",
                    "--data.text_pair_column", "hypothesis")  # fmt: skip


def test_datasets_folders_from_save_to_disk(tmp_path):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "neutral", "positive"])}
    )
    rows = {"text": [t for t, _ in GOOD], "label": [y for _, y in GOOD]}
    train = datasets.Dataset.from_dict(rows, features=features)
    train.save_to_disk(str(tmp_path / "train_ds"))
    datasets.DatasetDict({"train": train, "validation": train.select(range(6))}).save_to_disk(str(tmp_path / "dd"))
    # A single Dataset as the training "file"; a DatasetDict through data.dataset and its split names.
    _train_one_step(tmp_path / "one", str(tmp_path / "train_ds"), str(write_rows(tmp_path / "v.csv", _good(6))))
    run = _train_one_step(tmp_path / "dict", "null", "null", "--data.dataset", str(tmp_path / "dd"))
    report = json.loads((run / "report.json").read_text())
    assert report["labels"] == ["negative", "neutral", "positive"]  # the ClassLabel's names, in its order
    assert report["facts"]["validation_examples"] == 6


def test_multi_label_lists_in_parquet_and_in_a_datasets_sequence_of_class_labels(tmp_path):
    """The two list forms of multi-label data: names in a Parquet list column, ids in Sequence(ClassLabel)."""
    names = ["anger", "joy", "sadness"]
    sets = [[0], [1, 2], [], [2], [0, 1]]
    texts = [f"text {i}" for i in range(len(sets))]
    pyarrow_parquet.write_table(
        pytest.importorskip("pyarrow").table({"text": texts, "label": [[names[i] for i in s] for s in sets]}),
        tmp_path / "lists.parquet",
    )
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Sequence(datasets.ClassLabel(names=names))}
    )
    datasets.Dataset.from_dict({"text": texts, "label": sets}, features=features).save_to_disk(str(tmp_path / "ds"))
    expected = [[int(i in s) for i in range(3)] for s in sets]
    for train in (tmp_path / "lists.parquet", tmp_path / "ds"):
        data = TextClassificationDataModule(train_file=str(train), task="multi_label", val_split=0.0)
        table = data.table("train")
        assert data.labels == names, train
        assert data._targets(table, list(range(len(sets)))).tolist() == expected, train


@pytest.mark.parametrize("name", ["financial_phrasebank_allagree", "tweeteval_emotion", "sst5"])
def test_shared_data_sets_read_the_same_through_every_format(tmp_path, name, shared_data):
    """Converted on the fly from the shared CSVs: every format must give the same token ids and labels."""
    splits = {}
    for split in ("train", "validation", "test"):
        with open(DATA / name / f"{split}.csv", newline="", encoding="utf-8") as f:
            splits[split] = list(csv.DictReader(f))
    encoded = {}
    for suffix in (".csv", ".tsv", ".jsonl", ".json", ".parquet"):
        files = {s: str(write_rows(tmp_path / f"{s}{suffix}", rows)) for s, rows in splits.items()}
        data = TextClassificationDataModule(
            train_file=files["train"], validation_file=files["validation"], test_file=files["test"],
            tokenizer=str(ALBERT_BASE_TOKENIZER),
        )  # fmt: skip
        data.setup("fit")
        data.setup("test")
        encoded[suffix] = (data.labels, [data.split(s).features for s in ("train", "validation", "test")])
    reference = encoded.pop(".csv")
    assert len(reference[1][0]) == len(splits["train"]) and len(reference[0]) >= 3
    for suffix, value in encoded.items():
        assert value == reference, suffix
