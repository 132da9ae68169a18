"""Multi-label classification end to end (tasks/multi_label.py), on real tweets: tweeteval_emotion's tweets joined
in ones and twos, each row labelled with the union of its tweets' emotions. Fitted through the shipped configs
(quickstart + multi_label), with data.max_length below most joined texts.

Every figure is checked against scikit-learn computed from the predictions file, and the export's pipeline and
serve against predict.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    GOOD,
    REPO,
    assert_clear_error,
    fit_args,
    joined_tweets,
    logged_rows,
    markdown_table,
    only_run,
    read_csv,
    run_cli,
    run_main,
    tiny_model_args,
    write_splits,
)

pytestmark = pytest.mark.usefixtures("typed_at_a_shell")

MAX_LENGTH = 40
ROWS = {"train": 360, "validation": 101, "test": 90}  # 101: uneven over 2 processes and over batches
THRESHOLDS = [0.5, 0.45, 0.55, 0.5]  # per label


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    """(run folder, test rows, predict's rows for them, the thresholds, `test`'s metrics with them).

    The thresholds split each label's test probabilities in two (a model two epochs old answers texts alike
    to a few decimals), so every metric below is computed on varied decisions; `test` and `predict` take them
    as model.threshold on the command line.
    """
    root = tmp_path_factory.mktemp("multi_label")
    files = {split: root / f"{split}.csv" for split in ROWS}
    test_rows = [joined_tweets(split, n, files[split]) for split, n in ROWS.items()][-1]
    run_cli(
        "fit", "--config", "configs/quickstart.yaml", "--config", "configs/multi_label.yaml",
        "--data.train_file", str(files["train"]), "--data.validation_file", str(files["validation"]),
        "--data.test_file", str(files["test"]), "--data.predict_file", str(files["test"]),
        "--data.max_length", str(MAX_LENGTH), "--model.threshold", json.dumps(THRESHOLDS),
        "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(root / "runs"), *tiny_model_args(),
    )  # fmt: skip
    folder = only_run(root / "runs")
    evaluate = ["--config", str(folder / "config.yaml"), "--ckpt_path", "best"]
    first = predict(evaluate, root / "first")
    probabilities = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in first])
    thresholds = [_middle(column) for column in probabilities.T]
    chosen = ["--model.threshold", json.dumps(thresholds)]
    in_process(["test", *evaluate, *chosen, "--trainer.default_root_dir", str(root / "test")])
    (tested,) = logged_rows(only_run(root / "test"), "test")
    return folder, test_rows, predict([*evaluate, *chosen], root / "second"), thresholds, tested


def in_process(args: list[str]) -> None:
    """A command in this process, as `python -m lightning_albert` runs it (a process each costs seconds)."""
    from unittest import mock

    from lightning_albert.cli import main

    with mock.patch("sys.argv", ["lightning_albert"]):
        main(args)


def predict(args: list[str], root: Path) -> list[dict[str, str]]:
    in_process(["predict", *args, "--predictions_file", str(root / "p.csv"), "--trainer.default_root_dir", str(root)])
    return read_csv(root / "p.csv")


def _middle(values: np.ndarray) -> float:
    """Halfway across the widest gap between the middle values (30 to 70 % of the texts above it): far from
    every probability, as float32 sees them too."""
    distinct = np.unique(values)
    ks = range(int(len(distinct) * 0.3), int(len(distinct) * 0.7) + 1)
    k = max(ks, key=lambda k: distinct[k] - distinct[k - 1])
    return float((distinct[k - 1] + distinct[k]) / 2)


def multi_hot(label_sets: list[str], labels: list[str]) -> np.ndarray:
    return np.array([[int(name in s.split("|")) for name in labels] for s in label_sets])


def test_test_metrics_are_scikit_learns_from_the_predictions_file(run):
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_score, recall_score

    folder, test_rows, predicted, thresholds, logged = run
    labels = json.loads((folder / "report.json").read_text())["labels"]
    assert labels == ["anger", "joy", "optimism", "sadness"]
    assert [p["text"] for p in predicted] == [r["text"] for r in test_rows]
    y = multi_hot([r["labels"] for r in test_rows], labels)
    p = multi_hot([r["labels"] for r in predicted], labels)
    probabilities = np.array([[float(r[f"prob_{n}"]) for n in labels] for r in predicted])
    assert (p == (probabilities > np.array(thresholds))).all()  # the labels column is the thresholded probabilities
    assert (p.mean(axis=0) > 0.2).all() and (p.mean(axis=0) < 0.8).all()  # each label split, as chosen
    expected = {
        "micro_f1": f1_score(y, p, average="micro", zero_division=0),
        "f1": f1_score(y, p, average="macro", zero_division=0),
        "precision": precision_score(y, p, average="macro", zero_division=0),
        "recall": recall_score(y, p, average="macro", zero_division=0),
        "subset_accuracy": accuracy_score(y, p),
        "hamming_loss": hamming_loss(y, p),
    }
    for metric, value in expected.items():
        assert logged[f"test_{metric}"] == pytest.approx(value, abs=1e-6), metric
    q = np.clip(probabilities, 1e-7, 1 - 1e-7)
    bce = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    assert logged["test_loss"] == pytest.approx(bce, abs=1e-5)


def test_the_export_in_a_transformers_pipeline_answers_as_predict(run):
    from transformers import AutoTokenizer, pipeline

    folder, test_rows, predicted, _, _ = run
    export = folder / "hf_model"
    assert json.loads((export / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert json.loads((export / "config.json").read_text())["thresholds"] == THRESHOLDS
    tokenizer = AutoTokenizer.from_pretrained(export)
    texts = [r["text"] for r in test_rows]
    assert sum(len(tokenizer(t)["input_ids"]) > MAX_LENGTH for t in texts) > len(texts) // 3  # truncation matters
    classify = pipeline("text-classification", model=str(export), top_k=None, truncation=True, device="cpu")
    for answer, row in zip(classify(texts, batch_size=16), predicted):
        for item in answer:  # a sigmoid per label (problem_type), not a softmax over them
            assert item["score"] == pytest.approx(float(row[f"prob_{item['label']}"]), abs=1e-5)


def test_serve_answers_the_labels_above_the_threshold_and_every_probability(run, tmp_path):
    from lightning_albert.serve import AlbertAPI

    folder, test_rows, _, _, _ = run
    predicted = predict(["--config", str(folder / "config.yaml"), "--ckpt_path", "best"], tmp_path)  # fit's thresholds
    api = AlbertAPI(str(folder / "hf_model"), pairs=False)
    api.setup("cpu")
    requests = [api.decode_request({"text": r["text"]}) for r in test_rows[:12]]
    for output, row in zip(api.predict(requests), predicted):
        answer = api.encode_response(output)
        assert answer["labels"] == [n for n in row["labels"].split("|") if n]
        for name, p in answer["probabilities"].items():
            assert p == pytest.approx(float(row[f"prob_{name}"]), abs=1e-5)


def test_the_card_shows_the_tasks_metrics_per_epoch_and_per_label_tables(run):
    folder = run[0]
    card = (folder / "README.md").read_text()
    table = markdown_table(card, "### Training results")
    logged = logged_rows(folder, "val")
    metrics = ["micro_f1", "f1", "precision", "recall", "subset_accuracy", "hamming_loss"]
    assert [row[4:] for row in table] == [[f"{r[f'val_{m}']:.4f}" for m in metrics] for r in logged]
    per_label = markdown_table(card, "### Per-label results of the best checkpoint")
    assert [row[0] for row in per_label] == ["anger", "joy", "optimism", "sadness"]
    report = json.loads((folder / "report.json").read_text())
    for evaluation in report["evaluations"]:  # one 2x2 matrix per label, over every validation row
        assert [sum(map(sum, m)) for m in evaluation["confusion_matrix"]] == [ROWS["validation"]] * 4
    assert sum(m[1][0] + m[1][1] for m in report["test"]["confusion_matrix"]) > ROWS["test"]  # several labels a row
    assert "decision_threshold: anger 0.5, joy 0.45, optimism 0.55, sadness 0.5 (model.threshold" in card
    assert "| TF-IDF + LR | test |" in card
    assert f"{report['baseline']['test']['metrics']['micro_f1']:.4f}" in card


# ----------------------------------------------------------------------------------- the forms labels come in
def _datamodule(tmp_path: Path, train: str, **settings):
    from lightning_albert.data import TextClassificationDataModule

    path = tmp_path / train
    data = TextClassificationDataModule(
        train_file=str(path), val_split=0.0, task="multi_label", tokenizer_vocab_size=100, cache_tokens=False,
        **settings,
    )  # fmt: skip
    return data, data._targets(data.table("train"), list(range(len(data.table("train")))))


SETS = [("billing|delivery",), ("returns",), ("delivery|technical|billing",), ("technical",)]


def test_a_delimited_column_a_json_list_and_one_column_per_label_read_alike(tmp_path):
    texts = [f"message number {i}" for i in range(len(SETS))]
    with open(tmp_path / "joined.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *((t, s[0]) for t, s in zip(texts, SETS))])
    with open(tmp_path / "lists.jsonl", "w", encoding="utf-8") as f:
        for t, s in zip(texts, SETS):
            f.write(json.dumps({"text": t, "label": s[0].split("|")}) + "\n")
    names = ["billing", "delivery", "returns", "technical"]
    with open(tmp_path / "columns.csv", "w", newline="", encoding="utf-8") as f:
        rows = [(t, *(int(n in s[0].split("|")) for n in names)) for t, s in zip(texts, SETS)]
        csv.writer(f).writerows([("text", *names), *rows])
    with open(tmp_path / "semicolons.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *((t, s[0].replace("|", "; ")) for t, s in zip(texts, SETS))])
    expected = multi_hot([s[0] for s in SETS], names)
    for train, settings in [
        ("joined.csv", {}),
        ("lists.jsonl", {}),
        ("columns.csv", {"label_columns": names}),
        ("semicolons.csv", {"label_separator": ";"}),
    ]:
        data, targets = _datamodule(tmp_path, train, **settings)
        assert data.labels == names, train
        assert (targets == expected).all(), train
        assert targets.dtype == np.float32


JOINED = [(text, label if i % 3 else f"{label}|positive") for i, (text, label) in enumerate(GOOD)]


@pytest.mark.parametrize(
    ("validation", "extra", "fragments"),
    [
        ([("Profits rose.", "positive|cheerful")], ["--data.task", "multi_label"],
         ["validation.csv, line 2: label 'cheerful' is not one of the training file's labels", "data.label_separator"]),
        (None, ["--data.label_columns", "[positive, negative]"],
         ["data.label_columns is for multi-label data: set data.task: multi_label"]),
        (None, ["--data.task", "multi_label", "--data.label_columns", "[label]"],
         ["data.label_columns names 1 column: give one 0/1 column per label, at least two"]),
        (None, ["--data.task", "multi_label", "--model.threshold", "[0.5, 0.5]"],
         ["model.threshold: give one number between 0 and 1, or 3"]),
        (None, ["--data.task", "multi_label", "--model.class_weights", "[1, 2]"],
         ["model.class_weights: give balanced, or 3 weights"]),
        (None, ["--data.task", "multi_label", "--checkpoint.monitor", "val_accuracy"],
         ["checkpoint.monitor: a multi_label run does not log 'val_accuracy'", "val_subset_accuracy"]),
    ],
    ids=["unknown label", "label_columns without the task", "one column", "thresholds", "weights", "monitor"],
)  # fmt: skip
def test_bad_multi_label_input_is_one_clear_line_and_leaves_no_run(tmp_path, capsys, validation, extra, fragments):
    write_splits(tmp_path, JOINED, validation or JOINED[:6])
    code, err = run_main(fit_args(tmp_path, *extra), capsys)
    assert_clear_error(code, err, fragments)
    assert len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "runs").glob("lightning_logs/*"))


def test_a_label_column_that_is_not_0_or_1_is_one_clear_line(tmp_path, capsys):
    write_splits(tmp_path, JOINED, JOINED[:6])
    rows = [("text", "billing", "delivery")] + [
        (t, str(i % 2), "2" if i == 4 else "0") for i, (t, _) in enumerate(GOOD)
    ]
    with open(tmp_path / "train.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    args = ["--data.task", "multi_label", "--data.label_columns", "[billing, delivery]"]
    code, err = run_main(fit_args(tmp_path, *args), capsys)
    assert_clear_error(code, err, ["train.csv, line 6: column 'delivery' (data.label_columns) holds '2'", "0 or 1"])


def test_empty_label_sets_and_a_label_never_positive_are_said_and_the_run_goes_on(tmp_path, capsys, caplog):
    train = [(text, "" if i % 4 == 0 else label) for i, (text, label) in enumerate(JOINED)]
    write_splits(tmp_path, train, JOINED[:6])
    with caplog.at_level("INFO"):
        code = _exit_code(fit_args(tmp_path, "--data.task", "multi_label", "--data.labels", "[negative, neutral,"
                                   " positive, surprise]"), capsys)  # fmt: skip
    assert code == 0
    said = caplog.text + capsys.readouterr().err
    assert "train.csv: 5 row(s) have no label in column 'label' (lines 2, 6, 10, 14, 18)" in said
    assert "read as negative for every label" in said
    assert "label(s) 'surprise' are never positive in the training data" in said


def _exit_code(args: list[str], capsys) -> int:
    from lightning_albert.cli import main

    try:
        main(args)
    except SystemExit as e:
        return e.code or 0
    return 0


def test_balanced_class_weights_are_each_labels_negatives_over_positives(tmp_path, capsys):
    """The pos_weight of `balanced` by hand from the training file, and the loss it gives by hand."""
    import torch

    from lightning_albert.tasks import get_task

    write_splits(tmp_path, JOINED, JOINED[:6])
    assert (
        _exit_code(fit_args(tmp_path, "--data.task", "multi_label", "--model.class_weights", "balanced"), capsys) == 0
    )
    report = json.loads(only_run(tmp_path / "runs").joinpath("report.json").read_text())
    names = report["labels"]
    given = [set(label.split("|")) for _, label in JOINED]
    positives = [sum(n in s for s in given) for n in names]
    assert report["facts"]["class_weights"] == pytest.approx([(len(given) - p) / p for p in positives], abs=1e-6)
    weights = torch.tensor(report["facts"]["class_weights"])
    sets = ["positive", "negative|positive", "neutral", "", "neutral|negative"]
    logits, targets = torch.randn(5, 3), torch.tensor(multi_hot(sets, names), dtype=torch.float32)
    p = logits.sigmoid()
    by_hand = -(weights * targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert get_task("multi_label").loss(logits, targets, weights).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert get_task("multi_label").loss(logits, targets, None).item() != pytest.approx(by_hand.item(), rel=1e-3)


def test_the_shipped_demo_config_reads_the_demo_set(tmp_path):
    """configs/multi_label.yaml over the quickstart: the demo set's labels are the four teams, some rows several."""
    from lightning_albert.data import TextClassificationDataModule

    data = TextClassificationDataModule(
        train_file=str(REPO / "data/demo_multilabel/train.csv"), label_column="labels", task="multi_label",
        val_split=0.0, cache_tokens=False,
    )  # fmt: skip
    table = data.table("train")
    targets = data._targets(table, list(range(len(table))))
    assert data.labels == ["billing", "delivery", "returns", "technical"]
    assert (targets.sum(axis=1) >= 1).all() and (targets.sum(axis=1) > 1).sum() > len(targets) // 4
