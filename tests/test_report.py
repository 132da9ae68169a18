"""What a fit leaves for people and for transformers: the card, the pictures, the export."""

import re

import pytest
from conftest import PHRASEBANK, logged_rows, markdown_table, only_run, read_csv, run_cli
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from lightning_albert.reporting.history import METRICS, per_class, read_run
from lightning_albert.reporting.report import write_report


def test_card_results_table_equals_metrics_csv_row_by_row(fitted):
    card = (fitted / "README.md").read_text()
    table = markdown_table(card, "### Training results")
    val = logged_rows(fitted, "val")
    train = {int(r["epoch"]): r["train_loss"] for r in logged_rows(fitted, "train")}
    assert len(table) == len(val) == 2
    steps_per_epoch = -(-320 // 16)  # 320 training rows in batches of 16
    for cells, row in zip(table, val):
        epoch = int(row["epoch"])
        expected = [f"{train[epoch]:.4f}", f"{epoch + 1:.1f}", str((epoch + 1) * steps_per_epoch)]
        expected += [f"{row['val_loss']:.4f}"] + [f"{row[f'val_{m}']:.4f}" for m in METRICS]
        assert cells == expected


def test_card_reports_the_best_checkpoint_and_validate_reproduces_it(fitted, tmp_path):
    card = (fitted / "README.md").read_text()
    run = read_run(fitted)
    best = run.best
    assert best_name(run) in {p.name for p in (fitted / "checkpoints").iterdir()}
    assert f"epoch {best.epoch + 1} (step {best.step})" in card
    assert card.startswith("---\nlicense: apache-2.0")
    for key in ("learning_rate: 0.001", "train_batch_size: 16", "eval_batch_size: 32", "seed: 42",
                "optimizer: AdamW with betas=(0.9,0.999) and epsilon=1e-08", "lr_scheduler_type: linear",
                "num_epochs: 2"):  # fmt: skip
        assert f"- {key}\n" in card, key
    order = [card.index(f"- {k}:") for k in ("learning_rate", "train_batch_size", "eval_batch_size", "seed",
                                             "optimizer", "lr_scheduler_type", "num_epochs")]  # fmt: skip
    assert order == sorted(order)
    for framework in ("Transformers", "Pytorch", "Tokenizers", "Lightning", "torchmetrics"):
        assert re.search(rf"^- {framework} \d", card, re.M), framework
    run_cli("validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path))  # fmt: skip
    (again,) = logged_rows(only_run(tmp_path), "val")
    summary = card[: card.index("## Model description")]
    assert f"- Loss: {again['val_loss']:.4f}" in summary
    for m in METRICS:
        assert f"- {m.title()}: {again[f'val_{m}']:.4f}" in summary


def best_name(run) -> str:
    return run.best_checkpoint.name


def test_per_class_table_agrees_with_the_macro_metrics(fitted):
    run = read_run(fitted)
    rows = per_class(run.best.confusion_matrix, run.labels)
    assert [r["label"] for r in rows] == ["negative", "neutral", "positive"]
    assert sum(r["support"] for r in rows) == len(read_csv(PHRASEBANK / "validation.csv"))
    for m in ("precision", "recall", "f1"):
        assert sum(r[m] for r in rows) / len(rows) == pytest.approx(run.best.metrics[m], abs=1e-6)
    correct = sum(run.best.confusion_matrix[i][i] for i in range(len(rows)))
    assert correct / sum(r["support"] for r in rows) == pytest.approx(run.best.metrics["accuracy"], abs=1e-6)
    card = (fitted / "README.md").read_text()
    assert len(markdown_table(card, "### Per-class results")) == 3


def test_pictures_are_pngs_linked_from_the_card(fitted):
    card = (fitted / "README.md").read_text()
    for name in ("learning_curves.png", "confusion_matrix.png"):
        data = (fitted / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
        assert f"]({name})" in card


def test_report_rerenders_the_same_card_from_the_run_folder(fitted, tmp_path):
    original = (fitted / "README.md").read_text()
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(fitted, copy)
    (copy / "README.md").unlink()
    (copy / "learning_curves.png").unlink()
    run_cli("report", str(copy))
    assert (copy / "README.md").read_text() == original
    assert (copy / "learning_curves.png").is_file()
    assert write_report(copy).read_text() == original


def test_export_loads_with_auto_classes_and_pipeline_and_predicts_like_predict(fitted, tmp_path):
    """Texts longer than the run's max_length (64 in the quickstart) are cut where predict cuts them."""
    export = fitted / "hf_model"
    predictions = tmp_path / "predictions.csv"
    run_cli("predict", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path), "--predictions_file", str(predictions))  # fmt: skip
    rows = read_csv(predictions)
    model = AutoModelForSequenceClassification.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.max_position_embeddings == 128
    assert tokenizer.model_max_length == 64  # the run's data.max_length, not the model's positions
    long = [r for r in rows if len(tokenizer(r["text"])["input_ids"]) > 64]
    assert long, "the test needs texts longer than max_length"
    assert {p.name for p in export.iterdir()} >= {"model.safetensors"}
    assert not list(export.glob("*.bin")), "the export is safetensors only"
    classify = pipeline("text-classification", model=str(export), top_k=None)
    _assert_pipeline_equals_predictions(classify([r["text"] for r in rows], truncation=True), rows)


def _assert_pipeline_equals_predictions(outputs: list, rows: list[dict]) -> None:
    for row, scores in zip(rows, outputs, strict=True):
        probs = {s["label"]: s["score"] for s in scores}
        assert max(probs, key=probs.get) == row["label"]
        for label, p in probs.items():
            assert p == pytest.approx(float(row[f"prob_{label}"]), abs=1e-5)


def test_export_of_a_sentence_pair_run_predicts_like_predict(pair_run):
    """Pairs are truncated longest-first to max_length by both; most pairs here are longer than it."""
    run, rows = pair_run
    tokenizer = AutoTokenizer.from_pretrained(run / "hf_model")
    assert tokenizer.model_max_length == 32
    assert sum(len(tokenizer(r["text"], r["text_pair"])["input_ids"]) > 32 for r in rows) > len(rows) // 2
    classify = pipeline("text-classification", model=str(run / "hf_model"), top_k=None)
    inputs = [{"text": r["text"], "text_pair": r["text_pair"]} for r in rows]
    _assert_pipeline_equals_predictions(classify(inputs, truncation=True), rows)


def test_export_command_writes_a_folder_and_keeps_an_existing_one(fitted, tmp_path):
    target = tmp_path / "exported"
    run_cli("export", str(fitted), str(target))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in target.iterdir()
    }
    again = run_cli("export", str(fitted / "checkpoints" / "last.ckpt"), str(target), check=False)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    assert (target / "model.safetensors").is_file()
