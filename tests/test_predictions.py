"""predictions.py: `predict` writes one row per input row, in input order however the batches were sorted, each
with the probabilities the checkpoint's model gives that text alone."""

import contextlib
import csv
import io
from pathlib import Path

import pytest
import torch
from conftest import GOOD, fit_args, only_run, write_good_splits
from transformers import AutoTokenizer

from lightning_albert.cli import main
from lightning_albert.model import AlbertClassifier
from lightning_albert.predictions import read_predictions

LABELS = ["negative", "neutral", "positive"]
LONG = " ".join(text for text, _ in GOOD[:6])
# Lengths up and down, so batches sorted by length (predict's default) come in another order than the file's; an
# empty text and a blank one, which get a row without a label.
TEXTS = [
    "Sales increased by 12 percent.", LONG, "", "Profits rose.", "The outlook was cut again this year.", "Loss.",
    "   ", LONG[: len(LONG) // 2], "The report is published on Tuesday.", "Operating loss widened.",
]  # fmt: skip


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> dict:
    """A one-step fit, then `predict` of TEXTS (with an id column) in batches of 3, to the default path."""
    folder = tmp_path_factory.mktemp("predictions")
    write_good_splits(folder)
    with open(folder / "texts.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("id", "text"), *((f"id-{9 - i}", t) for i, t in enumerate(TEXTS))])
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr("sys.argv", ["lightning_albert"])
        main(fit_args(folder, "--baseline", "false"))
        run = only_run(folder / "runs")
        stdout.truncate(0)
        main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", "last",
              "--data.predict_file", str(folder / "texts.csv"), "--data.id_column", "id",
              "--data.eval_batch_size", "3", "--trainer.default_root_dir", str(folder / "predict")])  # fmt: skip
    return {"run": run, "out": only_run(folder / "predict") / "predictions.csv", "stdout": stdout.getvalue()}


def _probabilities_of_each_text_alone(run: Path, texts: list[str]) -> list[list[float]]:
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    model = AlbertClassifier(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k != "_instantiator"})
    model.load_state_dict(checkpoint["state_dict"])
    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    with torch.no_grad():
        return [
            model.eval()(dict(tokenizer(text, truncation=True, max_length=64, return_tensors="pt")))
            .softmax(-1)[0]
            .tolist()
            for text in texts
        ]


def test_the_file_has_a_row_per_input_row_in_input_order_with_its_id_and_text(predicted):
    with open(predicted["out"], newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["row", "id", "text", "label", *(f"prob_{name}" for name in LABELS)]
    rows = read_predictions(predicted["out"])
    assert [r["row"] for r in rows] == [str(i) for i in range(len(TEXTS))]
    assert [r["id"] for r in rows] == [f"id-{9 - i}" for i in range(len(TEXTS))]
    assert [r["text"] for r in rows] == TEXTS
    assert f"Wrote {len(TEXTS)} predictions to {predicted['out']}" in predicted["stdout"]


def test_each_row_has_the_probabilities_of_its_own_text_and_the_likeliest_label(predicted):
    rows = read_predictions(predicted["out"])
    scored = [(r, text) for r, text in zip(rows, TEXTS) if text.strip()]
    expected = _probabilities_of_each_text_alone(predicted["run"], [text for _, text in scored])
    for (row, text), probabilities in zip(scored, expected):
        written = [float(row[f"prob_{name}"]) for name in LABELS]
        assert written == pytest.approx(probabilities, abs=1e-5), text
        assert sum(written) == pytest.approx(1, abs=1e-6)
        assert row["label"] == LABELS[written.index(max(written))]


def test_an_empty_text_keeps_its_row_without_a_made_up_label(predicted):
    rows = read_predictions(predicted["out"])
    empty = [i for i, text in enumerate(TEXTS) if not text.strip()]
    for i in empty:
        assert rows[i]["label"] == "" and all(rows[i][f"prob_{name}"] == "" for name in LABELS)
        assert rows[i]["id"] == f"id-{9 - i}"
    assert all(rows[i]["label"] in LABELS for i in range(len(TEXTS)) if i not in empty)
    assert f"{len(empty)} text(s) were empty (row {', '.join(map(str, empty))})" in predicted["stdout"]
