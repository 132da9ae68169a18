"""The bag-of-words baseline every fit reports beside ALBERT: the same figures scikit-learn gives on the same split."""

import json

import pytest
from conftest import PHRASEBANK, read_csv
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

from lightning_albert.reporting.history import METRICS, read_run


def _scikit_learn_scores(train: list[dict[str, str]], split: list[dict[str, str]]) -> dict[str, float]:
    """The baseline written out from scikit-learn's own parts, independent of baseline.py."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    classifier = LogisticRegression(C=10, max_iter=2000).fit(
        vectorizer.fit_transform([r["text"] for r in train]), [r["label"] for r in train]
    )
    features = vectorizer.transform([r["text"] for r in split])
    truth, predicted = [r["label"] for r in split], classifier.predict(features)
    return {
        "loss": log_loss(truth, classifier.predict_proba(features), labels=classifier.classes_),
        "accuracy": accuracy_score(truth, predicted),
        "precision": precision_score(truth, predicted, average="macro", zero_division=0),
        "recall": recall_score(truth, predicted, average="macro", zero_division=0),
        "f1": f1_score(truth, predicted, average="macro"),
    }


def test_the_baseline_equals_scikit_learn_on_the_rows_the_model_trained_on(fitted):
    report = json.loads((fitted / "report.json").read_text())["baseline"]
    train = read_csv(PHRASEBANK / "train.csv")[:320]  # the fixture's data.max_train_samples
    for split in ("validation", "test"):
        expected = _scikit_learn_scores(train, read_csv(PHRASEBANK / f"{split}.csv"))
        assert report[split]["examples"] == len(read_csv(PHRASEBANK / f"{split}.csv"))
        assert report[split]["loss"] == pytest.approx(expected["loss"], abs=1e-9), split
        for m in METRICS:
            assert report[split]["metrics"][m] == pytest.approx(expected[m], abs=1e-12), (split, m)
    assert report["fit_seconds"] > 0


def test_card_and_summary_show_the_baseline_beside_the_best_checkpoint_and_say_who_won(fitted):
    run = read_run(fitted)
    baseline = run.baseline["test"]["metrics"]
    ours = run.test["metrics"]
    won = ours["accuracy"] > baseline["accuracy"] and ours["f1"] > baseline["f1"]
    lost = ours["accuracy"] <= baseline["accuracy"] and ours["f1"] <= baseline["f1"]
    outcome = "beat the TF-IDF + LR baseline" if won else "did not beat the TF-IDF + LR baseline" if lost else "only"
    card = (fitted / "README.md").read_text()
    top = card[: card.index("## Model description")]
    row = "| TF-IDF + LR | test | " + f"{run.baseline['test']['loss']:.4f} | "
    assert row + " | ".join(f"{baseline[m]:.4f}" for m in METRICS) + " |" in top
    assert "| ALBERT | validation | " + f"{run.best.val_loss:.4f} | " in top
    console = (fitted.parents[1] / "console.txt").read_text()
    verdict = next(line for line in console.splitlines() if line.startswith("ALBERT "))
    assert outcome in verdict and f"macro-F1 {ours['f1']:.4f} vs {baseline['f1']:.4f}" in verdict
    assert verdict in top
    # A from-scratch model that lost is pointed to pretraining; one that won is not.
    assert ("python -m lightning_albert pretrain --config configs/pretrain.yaml" in console) == lost
    line = next(line for line in console.splitlines() if line.strip().startswith("TF-IDF + LR test"))
    assert line.split()[4:] == [f"{run.baseline['test']['loss']:.4f}", *(f"{baseline[m]:.4f}" for m in METRICS)]
