"""Regression end to end (tasks/regression.py), on real sentences as an STS-B-like pair task: two sst5
sentences per row, scored with the mean of their sentiment classes (very negative 0 ... very positive 4).
Fitted through the shipped configs (quickstart + regression), with data.max_length below most pairs.

Every figure is checked against scikit-learn / scipy computed from the predictions file, and the export's
pipeline and serve against predict.
"""

import json

import numpy as np
import pytest
from conftest import (
    GOOD,
    REPO,
    assert_clear_error,
    fit_args,
    logged_rows,
    markdown_table,
    only_run,
    read_csv,
    run_cli,
    run_main,
    scored_pairs,
    tiny_model_args,
    write_splits,
)

pytestmark = pytest.mark.usefixtures("typed_at_a_shell")

MAX_LENGTH = 48
# A from-scratch model first learns the label prior, answering every text alike; at this rate two epochs leave its
# outputs text-dependent, so each metric below is computed on varied predictions.
LEARNING_RATE = "1e-4"
ROWS = {"train": 400, "validation": 101, "test": 90}


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    """(run folder, test rows, predict's rows for them)."""
    root = tmp_path_factory.mktemp("regression")
    files = {split: root / f"{split}.csv" for split in ROWS}
    test_rows = [scored_pairs(split, n, files[split]) for split, n in ROWS.items()][-1]
    run_cli(
        "fit", "--config", "configs/quickstart.yaml", "--config", "configs/regression.yaml",
        "--data.label_column", "score", "--data.text_pair_column", "text_pair",
        "--data.train_file", str(files["train"]), "--data.validation_file", str(files["validation"]),
        "--data.test_file", str(files["test"]), "--data.predict_file", str(files["test"]),
        "--data.max_length", str(MAX_LENGTH), "--trainer.max_epochs", "2",
        "--trainer.default_root_dir", str(root / "runs"),
        *tiny_model_args(), "--model.learning_rate", LEARNING_RATE,
    )  # fmt: skip
    folder = only_run(root / "runs")
    predictions = root / "predictions.csv"
    run_cli("predict", "--config", str(folder / "config.yaml"), "--ckpt_path", "best",
            "--predictions_file", str(predictions), "--trainer.default_root_dir", str(root / "predict"))  # fmt: skip
    return folder, test_rows, read_csv(predictions)


def test_test_metrics_are_scipy_and_scikit_learns_from_the_predictions_file(run):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    folder, test_rows, predicted = run
    assert list(predicted[0])[-1] == "prediction"
    true = np.array([float(r["score"]) for r in test_rows])
    values = np.array([float(r["prediction"]) for r in predicted])
    assert values.std() > 0  # not one answer for every pair
    (logged,) = logged_rows(folder, "test")
    expected = {
        "mse": mean_squared_error(true, values),
        "mae": mean_absolute_error(true, values),
        "pearson": pearsonr(values, true).statistic,
        "spearman": spearmanr(values, true).statistic,
        "r2": r2_score(true, values),
    }
    for metric, value in expected.items():
        assert logged[f"test_{metric}"] == pytest.approx(value, abs=2e-5), metric
    assert logged["test_loss"] == pytest.approx(expected["mse"], abs=2e-5)
    config = (folder / "config.yaml").read_text()
    assert "monitor: val_loss" in config and "mode: min" in config


def test_the_export_in_a_transformers_pipeline_answers_as_predict(run):
    from transformers import AutoTokenizer, pipeline

    folder, test_rows, predicted = run
    export = folder / "hf_model"
    config = json.loads((export / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    tokenizer = AutoTokenizer.from_pretrained(export)
    pairs = [{"text": r["text"], "text_pair": r["text_pair"]} for r in test_rows]
    lengths = [len(tokenizer(p["text"], p["text_pair"])["input_ids"]) for p in pairs]
    assert sum(n > MAX_LENGTH for n in lengths) > len(pairs) // 3  # truncation matters
    score = pipeline("text-classification", model=str(export), truncation=True, device="cpu")
    for answer, row in zip(score(pairs, batch_size=16), predicted):
        assert answer["label"] == "score"
        assert answer["score"] == pytest.approx(float(row["prediction"]), abs=1e-5)  # the raw value, no sigmoid


def test_serve_answers_the_value(run):
    from lightning_albert.serve import AlbertAPI

    folder, test_rows, predicted = run
    api = AlbertAPI(str(folder / "hf_model"), pairs=True)
    api.setup("cpu")
    requests = [api.decode_request({"text": r["text"], "text_pair": r["text_pair"]}) for r in test_rows[:12]]
    for output, row in zip(api.predict(requests), predicted):
        answer = api.encode_response(output)
        assert list(answer) == ["value"]
        assert answer["value"] == pytest.approx(float(row["prediction"]), abs=1e-5)


def test_the_card_shows_the_tasks_metrics_and_the_predicted_against_true_picture(run):
    folder, _, _ = run
    card = (folder / "README.md").read_text()
    table = markdown_table(card, "### Training results")
    logged = logged_rows(folder, "val")
    metrics = ["mse", "mae", "pearson", "spearman", "r2"]
    assert [row[4:] for row in table] == [[f"{r[f'val_{m}']:.4f}" for m in metrics] for r in logged]
    report = json.loads((folder / "report.json").read_text())
    assert all(len(e["pairs"]) == ROWS["validation"] for e in report["evaluations"])
    assert "![Predicted vs true](predicted_vs_true.png)" in card and "(test_predicted_vs_true.png)" in card
    assert (folder / "predicted_vs_true.png").read_bytes()[:4] == b"\x89PNG"
    assert "| TF-IDF + ridge | test |" in card
    assert "Confusion" not in card and "Per-class" not in card


SCORED = [(text, str(i / 4)) for i, (text, _) in enumerate(GOOD)]


@pytest.mark.parametrize(
    ("validation", "extra", "fragments"),
    [
        ([("Profits rose.", "high")], [],
         ["validation.csv, line 2: 'label' holds 'high', not a finite number; a regression task"]),
        ([("Profits rose.", "nan")], [], ["validation.csv, line 2: 'label' holds 'nan', not a finite number"]),
        ([("Profits rose.", "")], [], ["validation.csv: 1 row(s) have no value in column 'label' (line 2)"]),
        (None, ["--model.class_weights", "balanced"], ["model.class_weights: a regression task has no classes"]),
        (None, ["--data.labels", "[a, b]"], ["data.labels: a regression task has one output"]),
        (None, ["--checkpoint.monitor", "val_accuracy"],
         ["checkpoint.monitor: a regression run does not log 'val_accuracy'", "val_pearson"]),
        (None, ["--checkpoint.monitor", "val_pearson", "--checkpoint.mode", "min"],
         ["checkpoint.mode: min with checkpoint.monitor val_pearson keeps the worst checkpoint", "mode: max"]),
    ],
    ids=["not a number", "nan", "missing", "class weights", "labels", "monitor", "mode"],
)  # fmt: skip
def test_bad_regression_input_is_one_clear_line_and_leaves_no_run(tmp_path, capsys, validation, extra, fragments):
    write_splits(tmp_path, SCORED, validation or SCORED[:6])
    code, err = run_main(fit_args(tmp_path, "--data.task", "regression", *extra), capsys)
    assert_clear_error(code, err, fragments)
    assert len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "runs").glob("lightning_logs/*"))


def test_a_checkpoint_of_another_task_is_refused_before_its_weights_are_read(run, tmp_path, capsys):
    folder, _, _ = run
    code, err = run_main(["validate", "--config", str(folder / "config.yaml"), "--ckpt_path", "best",
                          "--data.task", "single_label"], capsys)  # fmt: skip
    assert_clear_error(code, err, ["the checkpoint was trained for data.task regression", "Set data.task: regression"])


def test_the_held_out_validation_split_spans_the_scores(tmp_path):
    """Without a validation file, the held-out rows come from every decile of the scores."""
    from lightning_albert.data import TextClassificationDataModule

    rows = [(f"text {i}", str(i)) for i in range(200)]
    write_splits(tmp_path, rows, rows[:2])
    data = TextClassificationDataModule(
        train_file=str(tmp_path / "train.csv"), task="regression", val_split=0.1, cache_tokens=False
    )
    table, held = data._rows("validation")
    scores = sorted(int(table.column("label", "label")[r]) for r in held)
    assert len(scores) == 20 and all(any(d * 20 <= s < (d + 1) * 20 for s in scores) for d in range(10))


def test_the_shipped_demo_config_reads_the_demo_set():
    from lightning_albert.data import TextClassificationDataModule

    data = TextClassificationDataModule(
        train_file=str(REPO / "data/demo_regression/train.csv"), label_column="billing_share", task="regression",
        val_split=0.0, cache_tokens=False,
    )  # fmt: skip
    targets = data._targets(data.table("train"), list(range(len(data.table("train")))))
    assert data.labels == ["billing_share"] and data.num_labels == 1
    assert targets.dtype == np.float32 and 0 <= targets.min() < 0.5 < targets.max() <= 1
    assert len(set(targets.tolist())) > 3
