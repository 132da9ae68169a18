"""`pretrain`: its losses are transformers' own, and `fit` starts from every encoder weight it exports, with its
tokenizer. The masks it draws are checked in test_masking.py."""

import json
import logging
import re
import shutil

import pytest
import torch
import yaml
from conftest import ALBERT_BASE_TOKENIZER, PHRASEBANK, REPO, TINY_ALBERT, only_run, read_csv, run_cli
from safetensors.torch import load_file, save_file
from transformers import AlbertConfig, AlbertForMaskedLM, AlbertForSequenceClassification

from lightning_albert.cli import main
from lightning_albert.errors import InputError
from lightning_albert.fit import AlbertCLI
from lightning_albert.model import AlbertClassifier
from lightning_albert.pretrain.masking import IGNORE, PretrainingCollator
from lightning_albert.tokenizer import load_tokenizer


@pytest.mark.parametrize("sentence_order", [False, True], ids=["mlm", "mlm+sop"])
def test_scoring_only_masked_positions_is_transformers_own_loss_and_accuracy(tokenizer, texts, sentence_order):
    """The pretrainer runs the vocabulary head on masked positions only (for speed); its loss, gradients and
    masked-token accuracy must be those of transformers' model scoring every position."""
    from lightning_albert.pretrain.cli import AlbertPretrainer

    torch.manual_seed(0)
    ours = AlbertPretrainer(config=TINY_ALBERT, vocab_size=len(tokenizer), sentence_order=sentence_order).eval()
    batch = PretrainingCollator(tokenizer, 0.15, sentence_order, seed=0)(texts[:32])
    mlm, sop, logits, targets, _ = ours._losses(batch)
    ours_loss = mlm if sop is None else mlm + sop
    ours_loss.backward()
    ours_grads = {k: p.grad.clone() for k, p in ours.model.named_parameters() if p.grad is not None}
    ours.model.zero_grad()

    extra = {"sentence_order_label": batch["sentence_order_label"]} if sentence_order else {}
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    full = ours.model(**inputs, **extra)  # transformers' forward: every position scored, -100 ignored
    full.loss.backward()
    torch.testing.assert_close(ours_loss, full.loss)
    for key, p in ours.model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(ours_grads.pop(key), p.grad, msg=key)
    assert not ours_grads  # no parameter gets a gradient that transformers' loss does not give
    masked = batch["labels"] != IGNORE
    every_position = full.prediction_logits if sentence_order else full.logits
    assert torch.equal(logits.argmax(-1), every_position[masked].argmax(-1))  # what val_mlm_accuracy counts
    assert torch.equal(targets, batch["labels"][masked])  # ...against these, row for row


def test_pretrain_then_fit_loads_every_encoder_weight_and_the_tokenizer(tmp_path, capsys, shared_data):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in read_csv(PHRASEBANK / "train.csv")[:300]) + "\n")
    main(["pretrain", "--config", str(REPO / "configs" / "pretrain.yaml"), "--data.text_file", str(texts),
          "--model.config", json.dumps(TINY_ALBERT), "--data.sentence_order", "true",
          "--data.tokenizer_vocab_size", "1000", "--trainer.max_epochs", "1",
          "--trainer.default_root_dir", str(tmp_path / "pretrain")])  # fmt: skip
    run = only_run(tmp_path / "pretrain")
    export = run / "hf_model"
    assert f"--model.pretrained {export}" in capsys.readouterr().out
    logged = [row for row in read_csv(run / "metrics.csv") if row["val_loss"]]
    assert logged and logged[0]["val_mlm_accuracy"] and logged[0]["val_sop_accuracy"]
    (best,) = run.glob("checkpoints/best-*.ckpt")
    assert (run / "checkpoints" / "last.ckpt").is_file()
    best_weights = torch.load(best, weights_only=True)["state_dict"]
    for key, value in load_file(export / "model.safetensors").items():  # the export is the best checkpoint
        assert torch.equal(best_weights[f"model.{key}"], value), key
    record = json.loads((export / "pretraining.json").read_text())  # ...and says which, with its score
    saved = torch.load(best, weights_only=True)
    assert (record["checkpoint"], record["global_step"]) == (str(best), saved["global_step"])
    assert record["best_val_loss"] == pytest.approx(min(float(row["val_loss"]) for row in logged))

    # Step 2 of the offline default, as its config's header says (its model.config is for fits without pretraining).
    fit = ["fit", "--config", str(REPO / "configs" / "offline.yaml"), "--model.pretrained", str(export),
           "--data.train_file", str(PHRASEBANK / "train.csv"),
           "--data.validation_file", str(PHRASEBANK / "validation.csv"), "--data.test_file", "null",
           "--data.predict_file", "null", "--data.max_train_samples", "64", "--data.max_eval_samples", "64",
           "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "fit")]  # fmt: skip
    # The model and data exactly as fit builds them, before any training step (run=False takes no subcommand).
    cli = AlbertCLI(args=fit[1:], run=False)
    assert cli.datamodule.tokenizer.get_vocab() == load_tokenizer(str(export)).get_vocab()
    assert_same_encoder(cli.model, export, new=set())
    main(fit)  # and fit runs from it
    assert only_run(tmp_path / "fit").joinpath("checkpoints", "last.ckpt").is_file()
    # Its card says what pretrained the weights, from the record, even once the export is gone.
    shutil.rmtree(export)
    main(["report", str(only_run(tmp_path / "fit"))])
    card = only_run(tmp_path / "fit").joinpath("README.md").read_text()
    budget = yaml.safe_load((REPO / "configs" / "pretrain.yaml").read_text())["trainer"]["max_steps"]
    assert (
        f"pretrained by `python -m lightning_albert pretrain` (masked-language modelling) on `texts.txt` "
        f"({record['train_texts']} texts): the checkpoint of step {saved['global_step']} of {budget}, held-out "
        f"masked-language loss {record['best_val_loss']:.4f}." in card
    )
    assert record["train_texts"] + record["validation_texts"] == 300 and record["texts"] == [str(texts)]


def assert_same_encoder(model: AlbertClassifier, export, new: set[str]) -> None:
    """Every encoder (`albert.`) tensor of the classifier is the export's; only `new` ones are not in it."""
    saved = {k: v for k, v in load_file(export / "model.safetensors").items() if k.startswith("albert.")}
    encoder = {k: v for k, v in model.model.state_dict().items() if k.startswith("albert.")}
    assert set(encoder) - set(saved) == new and set(saved) <= set(encoder)
    for key, value in saved.items():
        assert torch.equal(encoder[key], value), key


def tiny_mlm_export(folder, vocab_size: int = 100):
    AlbertForMaskedLM(AlbertConfig(vocab_size=vocab_size, **TINY_ALBERT)).save_pretrained(folder)
    return folder


def test_a_masked_language_export_lacks_only_the_pooler(tmp_path):
    """Pretraining without sentence order trains no pooler: the classifier starts it fresh, and nothing else."""
    export = tiny_mlm_export(tmp_path)
    assert_same_encoder(AlbertClassifier(pretrained=str(export), num_labels=3), export, new={
        "albert.pooler.weight", "albert.pooler.bias",
    })  # fmt: skip


def test_loading_says_in_one_line_what_starts_fresh_and_what_is_unused(tmp_path, caplog):
    """transformers' own LOAD REPORT (a table of keys, logged as a warning) is replaced by one line."""
    export = tiny_mlm_export(tmp_path)
    caplog.set_level(logging.INFO)
    AlbertClassifier(pretrained=str(export), num_labels=3)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        f"model.pretrained '{export}': every encoder weight loaded; starting fresh: pooler (no sentence-order "
        "prediction in its pretraining), classifier; not used here: predictions."
    ]


def test_a_classifier_for_other_labels_keeps_its_encoder_and_starts_a_new_head(tmp_path, caplog):
    """Fine-tuning a fit's export on a data set with another number of labels: the head cannot be reused."""
    config = AlbertConfig(vocab_size=100, **TINY_ALBERT, num_labels=3)
    AlbertForSequenceClassification(config).save_pretrained(tmp_path)
    caplog.set_level(logging.INFO)
    model = AlbertClassifier(pretrained=str(tmp_path), num_labels=5)
    assert_same_encoder(model, tmp_path, new=set())
    assert model.model.classifier.out_features == 5 and model.model.config.num_labels == 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "starting fresh: classifier (3 outputs there, 5 here)." in caplog.text


def test_an_encoder_weight_of_another_shape_is_refused_not_reinitialised(tmp_path):
    """Heads of another shape start fresh (ignore_mismatched_sizes); an encoder weight must not."""
    export = tiny_mlm_export(tmp_path)
    weights = load_file(export / "model.safetensors")
    key = next(k for k in weights if "attention.query.weight" in k)
    weights[key] = weights[key][:-1]
    save_file(weights, export / "model.safetensors", metadata={"format": "pt"})
    rows, columns = weights[key].shape
    shapes = re.escape(f"{key} [{rows}, {columns}] there, [{columns}, {columns}] here")
    with pytest.raises(InputError, match=shapes):
        AlbertClassifier(pretrained=str(export), num_labels=3)


def test_an_export_missing_an_encoder_weight_is_refused(tmp_path):
    export = tiny_mlm_export(tmp_path)
    weights = load_file(export / "model.safetensors")
    dropped = next(k for k in weights if "attention.query.weight" in k)
    del weights[dropped]
    save_file(weights, export / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match=dropped.replace(".", r"\.")):
        AlbertClassifier(pretrained=str(export), num_labels=3)


@pytest.mark.parametrize(
    ("files", "args", "fragment"),
    [
        ({}, ["--data.text_file", "missing.txt"], "missing.txt: no such file"),
        ({"empty.txt": "\n\n"}, ["--data.text_file", "empty.txt"], "has 0 non-empty text(s)"),
        ({"t.csv": "sentence\nhello\n"}, ["--data.text_file", "t.csv"], "no column 'text'"),
    ],
    ids=["missing-file", "empty-text", "unknown-column"],
)
def test_a_bad_input_gets_one_line_and_exit_2(tmp_path, capsys, monkeypatch, files, args, fragment):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--config", str(REPO / "configs" / "pretrain.yaml"), *args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert len(errors) == 1 and fragment in errors[0], err


def test_a_killed_pretrain_resumes_to_the_same_metrics_and_export(tmp_path, shared_data):
    """Killed mid-epoch (SIGKILL: nothing saved on the way out) and resumed from the last step checkpoint, a
    pretraining run ends as the run that was never killed: the same metrics.csv, the same exported weights.

    This holds only if each text's masks depend on (seed, epoch, row) alone, the training order restarts at the
    checkpoint's batch, the random streams (dropout) come back, and the tokenizer is the checkpoint's."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in read_csv(PHRASEBANK / "train.csv")[:300]) + "\n")

    def pretrain(root, *extra: str, check: bool = True):
        # 285 training texts in batches of 32: 9 steps an epoch, 27 in all; last.ckpt every 4 steps.
        return run_cli(
            "pretrain", "--config", "configs/pretrain.yaml", "--data.text_file", str(texts),
            "--model.config", json.dumps({**TINY_ALBERT, "hidden_dropout_prob": 0.1}),
            "--data.tokenizer_vocab_size", "1000", "--trainer.max_steps", "-1", "--trainer.max_epochs", "3",
            "--save_every_n_steps", "4", "--trainer.default_root_dir", str(root), *extra, check=check,
        )  # fmt: skip

    pretrain(tmp_path / "reference")
    reference = only_run(tmp_path / "reference")
    killed = pretrain(tmp_path / "run", "--trainer.callbacks+=tests.interrupt.KillAt", "--trainer.callbacks.step", "14",
                      check=False)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = only_run(tmp_path / "run")
    resumed = run_cli(
        "pretrain", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.callbacks", "[]"
    )
    assert "at optimizer step 12 (epoch 2)" in resumed.stdout  # from the step checkpoint, mid-epoch 2
    assert only_run(tmp_path / "run") == run  # the same run folder, no version_1
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert read_csv(run / "metrics.csv") == read_csv(reference / "metrics.csv")
    exported, expected = (
        load_file(run / "hf_model" / "model.safetensors"),
        load_file(reference / "hf_model" / "model.safetensors"),
    )
    assert exported.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(exported[key], value), key

    # Resumed with another tokenizer than the checkpoint's: one line naming it, before any weight is touched.
    other = run_cli("pretrain", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.callbacks",
                    "[]", "--data.tokenizer", str(ALBERT_BASE_TOKENIZER), check=False)  # fmt: skip
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr[-2000:]
    assert "the checkpoint's tokenizer differs from the data's (data.tokenizer)" in other.stderr


@pytest.mark.multiprocess
def test_pretrain_on_two_processes_trains_and_exports_the_best(tmp_path, shared_data):
    """Under DDP (gloo, 2 CPU processes): the batch samplers shard themselves (Lightning must not wrap them) and
    the export is written once, by rank 0, after every process has asked for the run folder."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in read_csv(PHRASEBANK / "train.csv")[:300]) + "\n")
    result = run_cli(
        "pretrain", "--config", "configs/pretrain.yaml", "--data.text_file", str(texts),
        "--model.config", json.dumps(TINY_ALBERT), "--data.tokenizer_vocab_size", "1000",
        "--trainer.max_steps", "-1", "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
    )  # fmt: skip
    run = only_run(tmp_path)
    assert f"export: {run / 'hf_model'}" in result.stdout
    # 285 training texts, batches of 32 per process: 5 steps an epoch on each of the two.
    assert [r["step"] for r in read_csv(run / "metrics.csv") if r["val_loss"]] == ["4", "9"]
    (best,) = run.glob("checkpoints/best-*.ckpt")
    best_weights = torch.load(best, weights_only=True)["state_dict"]
    for key, value in load_file(run / "hf_model" / "model.safetensors").items():
        assert torch.equal(best_weights[f"model.{key}"], value), key
