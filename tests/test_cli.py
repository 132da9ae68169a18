"""The package as a user drives it: `python -m lightning_albert ...` in fresh processes, on real data."""

import re

import pytest
from conftest import ALBERT_BASE_CONFIG, ALBERT_BASE_TOKENIZER, PHRASEBANK, logged_rows, only_run, read_csv, run_cli
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

METRICS = ("accuracy", "precision", "recall", "f1")


def test_fit_leaves_a_complete_run_folder(fitted):
    assert (fitted / "config.yaml").is_file()
    assert (fitted / "tokenizer" / "tokenizer.json").is_file()
    checkpoints = sorted(p.name for p in (fitted / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(n.startswith("best-") for n in checkpoints)
    val = logged_rows(fitted, "val")
    assert [r["epoch"] for r in val] == [0, 1]
    train = [r for r in read_csv(fitted / "metrics.csv") if r.get("train_loss")]
    assert len(train) == 2


def test_validate_on_best_checkpoint_in_a_fresh_process_reproduces_the_logged_epoch(fitted, tmp_path):
    best = next((fitted / "checkpoints").glob("best-*.ckpt"))
    epoch = int(re.search(r"epoch=(\d+)", best.name).group(1))
    logged = next(r for r in logged_rows(fitted, "val") if r["epoch"] == epoch)
    # Another root, and the training file gone: labels and tokenizer come from the checkpoint.
    run_cli(
        "validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
        "--trainer.default_root_dir", str(tmp_path), "--data.train_file", str(tmp_path / "gone.csv"),
    )  # fmt: skip
    (again,) = logged_rows(only_run(tmp_path), "val")
    for name in ("loss", *METRICS):
        assert again[f"val_{name}"] == logged[f"val_{name}"], name


def test_test_metrics_equal_scikit_learn_on_predict_output(fitted, tmp_path):
    tested_run = run_cli("test", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
                         "--trainer.default_root_dir", str(tmp_path / "test"))  # fmt: skip
    (tested,) = logged_rows(only_run(tmp_path / "test"), "test")
    predictions = tmp_path / "predictions.csv"
    elsewhere = str(tmp_path / "predict")
    predicted_run = run_cli("predict", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
                            "--trainer.default_root_dir", elsewhere,
                            "--predictions_file", str(predictions))  # fmt: skip
    # Lightning's warnings about a checkpoint's training callbacks and our predict sampler: nothing to act on.
    for console in (tested_run.stderr, predicted_run.stderr):
        for noise in ("callbacks used to create the checkpoint", "The dirpath has changed", "custom batch sampler"):
            assert noise not in console, noise
    truth = [r["label"] for r in read_csv(PHRASEBANK / "test.csv")]
    predicted = read_csv(predictions)
    assert [int(r["row"]) for r in predicted] == list(range(len(truth)))
    assert {k for k in predicted[0] if k.startswith("prob_")} == {"prob_negative", "prob_neutral", "prob_positive"}
    for r in predicted:
        probs = {k[5:]: float(v) for k, v in r.items() if k.startswith("prob_")}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == max(probs, key=probs.get)
    y_pred = [r["label"] for r in predicted]
    p, rec, f1, _ = precision_recall_fscore_support(truth, y_pred, average="macro", zero_division=0)
    expected = {"accuracy": accuracy_score(truth, y_pred), "precision": p, "recall": rec, "f1": f1}
    for name in METRICS:
        assert tested[f"test_{name}"] == pytest.approx(expected[name], abs=1e-6), name


def test_predict_refuses_to_overwrite_unless_asked(fitted, tmp_path):
    target = tmp_path / "mine.csv"
    target.write_text("precious\n")
    args = ["predict", "--config", str(fitted / "config.yaml"), "--ckpt_path", "last",
            "--trainer.default_root_dir", str(tmp_path / "p"), "--predictions_file", str(target)]  # fmt: skip
    refused = run_cli(*args, check=False)
    assert refused.returncode == 2
    assert str(target) in refused.stderr and "--overwrite true" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert target.read_text() == "precious\n"
    run_cli(*args, "--overwrite", "true")
    assert len(read_csv(target)) == len(read_csv(PHRASEBANK / "test.csv"))


def test_best_needs_a_run_folder(tmp_path):
    result = run_cli("test", "--config", "configs/quickstart.yaml", "--ckpt_path", "best", check=False)
    assert result.returncode == 2
    assert "run folder" in result.stderr and "Traceback" not in result.stderr


def test_seed_recipe_config_prints_the_card_hyperparameters():
    out = run_cli("fit", "--config", "configs/albert-base-v2.yaml", "--print_config").stdout
    expected = [
        "seed_everything: 42", "max_epochs: 20", "gradient_clip_val: 1.0", "check_val_every_n_epoch: 1",
        "pretrained: albert-base-v2", "learning_rate: 1.0e-05", "adam_betas:\n  - 0.9\n  - 0.999",
        "adam_epsilon: 1.0e-08", "weight_decay: 0.0", "lr_scheduler_type: linear", "warmup_steps: 0",
        "batch_size: 8", "eval_batch_size: 8", "tokenizer: albert-base-v2",
    ]  # fmt: skip
    for line in expected:
        assert line in out, line


def test_albert_base_architecture_with_the_shared_tokenizer_trains(tmp_path, shared_data):
    """The seed's architecture (random weights: none exist offline) and real tokenizer, for a few steps."""
    run_cli(
        "fit", "--config", "configs/albert-base-v2.yaml",
        "--model.pretrained", "null", "--model.config", str(ALBERT_BASE_CONFIG),
        "--data.tokenizer", str(ALBERT_BASE_TOKENIZER),
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.default_root_dir", str(tmp_path),
    )  # fmt: skip
    run = only_run(tmp_path)
    assert logged_rows(run, "val")
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_fine_tune_from_a_pretrained_folder_and_evaluate_without_it(fitted, tmp_path, shared_data):
    """`model.pretrained` with a local folder (what users with the hub get from it), then validate after the
    folder is gone: the checkpoint carries the architecture, so evaluating needs neither hub nor folder."""
    import shutil

    pretrained = tmp_path / "pretrained"
    shutil.copytree(fitted / "hf_model", pretrained)
    run_cli(
        "fit", "--config", "configs/quickstart.yaml", "--model.config", "null",
        "--model.pretrained", str(pretrained), "--data.tokenizer", str(pretrained),
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"), "--data.test_file", "null",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.default_root_dir", str(tmp_path / "fit"),
    )  # fmt: skip
    run = only_run(tmp_path / "fit")
    assert "fine-tuned version of" in (run / "README.md").read_text()
    (logged,) = logged_rows(run, "val")
    shutil.rmtree(pretrained)
    run_cli("validate", "--config", str(run / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path / "again"))  # fmt: skip
    (again,) = logged_rows(only_run(tmp_path / "again"), "val")
    assert again["val_f1"] == logged["val_f1"] and again["val_loss"] == logged["val_loss"]
