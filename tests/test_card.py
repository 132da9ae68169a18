"""reporting/card.py: the model card says what the run history holds: per-class figures are scikit-learn's from
the confusion matrix, every table row is an evaluation, the front matter is YAML the hub reads."""

import re

import pytest
import yaml
from conftest import markdown_table
from sklearn.metrics import precision_recall_fscore_support

from lightning_albert.reporting.card import render_card
from lightning_albert.reporting.history import METRICS, Evaluation, RunHistory

LABELS = ["negative", "neutral", "positive"]
# Class `neutral` is never predicted on validation (precision 0/0), and the test split has no `positive`.
VALIDATION_CONFUSION = [[30, 0, 5], [12, 0, 9], [4, 0, 40]]
TEST_CONFUSION = [[20, 3, 2], [4, 11, 1], [0, 0, 0]]


def _evaluation(epoch: int, val_loss: float, f1: float, train_loss: float | None = None) -> Evaluation:
    metrics = {"accuracy": f1 + 0.1, "precision": f1 + 0.05, "recall": f1 - 0.05, "f1": f1}
    return Evaluation(epoch, 25 * (epoch + 1), val_loss, metrics, train_loss, VALIDATION_CONFUSION)


def _run(tmp_path, model=None, data=None, trainer=None, facts=None, **fields) -> RunHistory:
    evaluations = [_evaluation(0, 0.9, 0.41, 1.02), _evaluation(1, 0.7, 0.63, 0.81), _evaluation(2, 0.75, 0.60)]
    config = {
        "seed_everything": 42,
        "model": {"config": {"hidden_size": 64, "num_hidden_layers": 2}, "learning_rate": 0.001,
                  "weight_decay": 0.01, "warmup_ratio": 0.1, **(model or {})},
        "data": {"train_file": "../shared/data/financial_phrasebank_allagree/train.csv",
                 "validation_file": "../shared/data/financial_phrasebank_allagree/validation.csv",
                 "batch_size": 16, "eval_batch_size": 32, "max_length": 64, **(data or {})},
        "trainer": {"max_epochs": 3, "gradient_clip_val": 1.0, **(trainer or {})},
    }  # fmt: skip
    test = {"examples": 41, "loss": 0.66, "metrics": {"accuracy": 0.76, "precision": 0.7, "recall": 0.68, "f1": 0.69},
            "confusion_matrix": TEST_CONFUSION}  # fmt: skip
    values = {
        "labels": LABELS, "evaluations": evaluations, "best": evaluations[1], "best_checkpoint": None,
        "facts": {"train_examples": 320, "validation_examples": 100, "world_size": 1, "precision": "32-true",
                  "max_epochs": 3, **(facts or {})},
        "test": test, **fields,
    }  # fmt: skip
    return RunHistory(folder=tmp_path, config=config, **values)


def _scikit_learn_per_class(confusion: list[list[int]]) -> list[list[str]]:
    truth = [i for i, row in enumerate(confusion) for j, n in enumerate(row) for _ in range(n)]
    predicted = [j for i, row in enumerate(confusion) for j, n in enumerate(row) for _ in range(n)]
    figures = precision_recall_fscore_support(truth, predicted, labels=range(len(LABELS)), zero_division=0)
    return [[name, *(f"{v[i]:.4f}" for v in figures[:3]), str(figures[3][i])] for i, name in enumerate(LABELS)]


def _hyperparameters(card: str) -> dict[str, str]:
    section = card[card.index("### Training hyperparameters") : card.index("### Training results")]
    return dict(re.findall(r"^- (\w+): (.*)$", section, re.M))


def test_per_class_tables_are_scikit_learns_figures_from_the_confusion_matrices(tmp_path):
    card = render_card(_run(tmp_path))
    assert markdown_table(card, "### Per-class results of the best checkpoint (epoch 2") == _scikit_learn_per_class(
        VALIDATION_CONFUSION
    )
    assert markdown_table(card, "Per-class results on the test split") == _scikit_learn_per_class(TEST_CONFUSION)
    for heading, confusion in (("Confusion matrix (rows", VALIDATION_CONFUSION), ("Test confusion", TEST_CONFUSION)):
        assert markdown_table(card, heading) == [[f"**{n}**", *map(str, row)] for n, row in zip(LABELS, confusion)]


def test_the_results_table_has_one_row_per_evaluation(tmp_path):
    run = _run(tmp_path)
    rows = markdown_table(render_card(run), "### Training results")
    assert len(rows) == len(run.evaluations)
    for cells, e in zip(rows, run.evaluations):
        train = "No log" if e.train_loss is None else f"{e.train_loss:.4f}"  # the last epoch logged none
        assert cells == [train, f"{e.epoch + 1}.0", str(e.step), f"{e.val_loss:.4f}"] + [
            f"{e.metrics[m]:.4f}" for m in METRICS
        ]


def test_the_summary_names_the_best_then_the_last_evaluation_then_the_test_split(tmp_path):
    run = _run(tmp_path)
    card = render_card(run)
    top = card[: card.index("## Model description")]
    best, last = run.best, run.last
    assert f"its best checkpoint, epoch 2 (step {best.step}), chosen by max val_f1:" in top
    assert f"The last evaluation, epoch 3 (step {last.step}), gave:" in top
    assert "On the test split (41 examples, not used for any choice)" in top
    blocks = [b for b in top.split("\n\n") if b.startswith("- Loss:")]
    for block, (loss, metrics) in zip(blocks, [(best.val_loss, best.metrics), (last.val_loss, last.metrics),
                                               (run.test["loss"], run.test["metrics"])]):  # fmt: skip
        assert block.splitlines() == [f"- Loss: {loss:.4f}"] + [f"- {m.title()}: {metrics[m]:.4f}" for m in METRICS]
    assert len(blocks) == 3
    run.best = run.last  # best and last the same: said once
    once = render_card(run)
    assert "The last evaluation" not in once and f"epoch 3 (step {last.step}), chosen by" in once


def test_the_front_matter_is_yaml_with_the_best_and_test_scores_in_its_model_index(tmp_path):
    run = _run(tmp_path, model={"pretrained": "albert-base-v2"})
    card = render_card(run)
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert (meta["license"], meta["library_name"]) == ("apache-2.0", "transformers")
    assert meta["base_model"] == "albert-base-v2"
    (index,) = meta["model-index"]
    assert index["name"] == "albert-base-v2-financial_phrasebank_allagree"  # train.csv: named by its folder
    assert card.split("---\n")[2].lstrip().startswith(f"# {index['name']}\n")
    for result, split, (loss, metrics) in zip(index["results"], ("validation", "test"), [
        (run.best.val_loss, run.best.metrics), (run.test["loss"], run.test["metrics"]),
    ]):  # fmt: skip
        assert result["dataset"] == {"name": "financial_phrasebank_allagree", "type": "financial_phrasebank_allagree",
                                     "split": split}  # fmt: skip
        assert {m["type"]: m["value"] for m in result["metrics"]} == {
            "loss": round(loss, 4),
            **{m: round(metrics[m], 4) for m in METRICS},
        }
    assert "fine-tuned version of [albert-base-v2](https://huggingface.co/albert-base-v2)" in card
    assert "base_model" not in yaml.safe_load(render_card(_run(tmp_path)).split("---\n")[1])


def test_a_local_pretrained_folder_is_named_as_a_path_with_what_pretrained_it(tmp_path):
    export = tmp_path / "pretrain" / "hf_model"
    export.mkdir(parents=True)
    record = {"texts": ["/data/texts.txt"], "train_texts": 285, "global_step": 27, "max_steps": 2000,
              "best_val_loss": 5.43219}  # fmt: skip
    card = render_card(_run(tmp_path, model={"pretrained": str(export)}, facts={"pretraining": record}))
    assert f"This model is a fine-tuned version of `{export}` on `financial_phrasebank_allagree`." in card
    pretrained_by = (
        "on `texts.txt` (285 texts): the checkpoint of step 27 of 2000, held-out masked-language loss 5.4322."
    )
    assert pretrained_by in card


def test_the_hyperparameters_follow_the_config_and_name_only_what_differs_from_the_trainers_defaults(tmp_path):
    plain = _hyperparameters(render_card(_run(tmp_path)))
    assert plain == {
        "learning_rate": "0.001", "train_batch_size": "16", "eval_batch_size": "32", "seed": "42",
        "optimizer": "AdamW with betas=(0.9,0.999) and epsilon=1e-08", "lr_scheduler_type": "linear",
        "lr_scheduler_warmup_ratio": "0.1", "num_epochs": "3", "weight_decay": "0.01",
    }  # fmt: skip
    run = _run(tmp_path, model={"warmup_steps": 50, "adam_betas": [0.8, 0.95], "weight_decay": 0.0},
               trainer={"accumulate_grad_batches": 4, "gradient_clip_val": None},
               facts={"world_size": 2, "strategy": "DDPStrategy", "precision": "bf16-mixed"})  # fmt: skip
    changed = _hyperparameters(render_card(run))
    assert changed["optimizer"] == "AdamW with betas=(0.8,0.95) and epsilon=1e-08"
    assert changed["lr_scheduler_warmup_steps"] == "50" and "lr_scheduler_warmup_ratio" not in changed
    assert "weight_decay" not in changed
    assert changed["gradient_accumulation_steps"] == "4"
    assert changed["total_train_batch_size"] == str(16 * 4 * 2)  # per device, accumulated, over 2 processes
    assert (changed["distributed_type"], changed["num_devices"]) == ("DDPStrategy", "2")
    assert changed["mixed_precision_training"] == "bf16-mixed"
    assert changed["max_grad_norm"] == "none"


def test_a_run_without_evaluations_says_so_and_shows_no_per_class_section(tmp_path):
    card = render_card(_run(tmp_path, evaluations=[], best=None, test=None))
    assert "The run recorded no evaluation." in card
    assert "Per-class results" not in card and "### Test results" not in card
    assert yaml.safe_load(card.split("---\n")[1])["model-index"][0]["results"] == []
    assert markdown_table(card, "### Training results") == []


def test_early_stopping_a_baseline_and_a_validation_split_of_the_training_file_are_described(tmp_path):
    stop = {"stopped_after_epoch": 2, "monitor": "val_f1", "mode": "max", "min_delta": 0.001, "patience": 1}
    baseline = {
        "model": "TF-IDF + LR",
        "fit_seconds": 0.42,
        "test": {"loss": 0.5, "metrics": {"accuracy": 0.8, "precision": 0.79, "recall": 0.78, "f1": 0.77}},
    }
    run = _run(tmp_path, data={"validation_file": None, "val_split": 0.2, "split_seed": 7},
               facts={"early_stopping": stop, "max_epochs": 10}, baseline=baseline)  # fmt: skip
    card = render_card(run)
    assert "Training stopped early after epoch 3 of 10: val_f1 did not improve (max, by more than 0.001) for 1 " in card
    assert "The best checkpoint is from epoch 2." in card
    assert "- Validation: a stratified 20% of the training file (seed 7), 100 examples" in card
    assert "fitted on the same training split in 0.4 s." in card
    rows = markdown_table(card, "A bag-of-words baseline")
    test = run.test["metrics"]
    assert rows == [
        ["ALBERT", "validation", f"{run.best.val_loss:.4f}", *(f"{run.best.metrics[m]:.4f}" for m in METRICS)],
        ["ALBERT", "test", f"{run.test['loss']:.4f}", *(f"{test[m]:.4f}" for m in METRICS)],
        ["TF-IDF + LR", "test", "0.5000", *(f"{baseline['test']['metrics'][m]:.4f}" for m in METRICS)],
    ]


def test_pictures_are_linked_only_when_they_are_in_the_run_folder(tmp_path):
    names = ["learning_curves.png", "confusion_matrix.png", "test_confusion_matrix.png"]
    assert not any(f"]({name})" in render_card(_run(tmp_path)) for name in names)
    for name in names:
        (tmp_path / name).write_bytes(b"\x89PNG")
    card = render_card(_run(tmp_path))
    assert all(f"]({name})" in card for name in names)
    assert render_card(_run(tmp_path, test=None)).count("](test_confusion_matrix.png)") == 0


@pytest.mark.parametrize(("train_file", "name"), [("data/sst5/train.csv", "sst5"),
                                                  ("texts/reviews_2024.jsonl", "reviews_2024")])  # fmt: skip
def test_the_model_is_named_after_the_data_file_or_its_folder(tmp_path, train_file, name):
    card = render_card(_run(tmp_path, data={"train_file": train_file}))
    assert f"\n# albert-from-scratch-{name}\n" in card
    assert f"trained from scratch (hidden_size 64, num_hidden_layers 2) on `{name}`." in card
