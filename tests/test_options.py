"""Every bad input gets one clear message naming the file and line, column or key; exit status 2; no traceback.

Run in-process through `main()` (as `python -m lightning_albert` does) so the table stays fast; the exit code
is the SystemExit code the process would end with.
"""

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import ALBERT_BASE_TOKENIZER, GOOD, REPO, TINY_ALBERT, assert_clear_error, fit_args, run_main

from lightning_albert.cli import main


def _csv(rows, header=("text", "label")) -> str:
    lines = [",".join(header)] + [",".join(f'"{c}"' if "," in c else c for c in row) for row in rows]
    return "\n".join(lines) + "\n"


def _with_line(line_number: int, replacement: str) -> str:
    """The good CSV with one line (1-based, header = 1) replaced."""
    lines = _csv(GOOD).splitlines()
    lines[line_number - 1] = replacement
    return "\n".join(lines) + "\n"


NO_TEXT_JSONL = '{"text": "Sales rose.", "label": "positive"}\n{"label": "negative"}\n'

# (case id, files to write {name: text or bytes}, extra arguments, fragments the message must contain)
CASES = [
    ("missing file", {}, ["--data.train_file", "{tmp}/nope.csv"], ["nope.csv", "no such file"]),
    ("empty file", {"train.csv": ""}, [], ["train.csv", "empty"]),
    ("header only", {"train.csv": "text,label\n"}, [], ["train.csv", "no rows"]),
    ("missing text column", {"train.csv": _csv(GOOD, ("sentence", "label"))}, [],
     ["train.csv", "no column 'text'", "'sentence'", "data.text_column"]),
    ("missing label column", {}, ["--data.label_column", "category"],
     ["train.csv", "no column 'category'", "'label'"]),
    ("missing pair column", {}, ["--data.text_pair_column", "hypothesis"], ["train.csv", "no column 'hypothesis'"]),
    ("missing id column", {}, ["--data.id_column", "uid"], ["no column 'uid'"]),
    ("unbalanced quote", {"train.csv": _with_line(3, '"Sales fell, sharply,negative')}, [],
     ["train.csv, line 3", "quote"]),
    ("ragged row", {"train.csv": _with_line(4, "Sales fell,negative,extra")}, [],
     ["train.csv, line 4", "3 fields", "header has 2"]),
    ("non-UTF-8 bytes", {"train.csv": _with_line(5, "Caf\udce9 sales,positive")}, [],
     ["train.csv, line 5", "data.encoding"]),
    ("empty text", {"train.csv": _with_line(3, ",positive")}, [], ["train.csv", "line 3", "drop_empty_texts"]),
    ("missing text in JSON Lines", {"train.jsonl": NO_TEXT_JSONL},
     ["--data.train_file", "{tmp}/train.jsonl"], ["train.jsonl", "line 2", "missing 'text'"]),
    ("missing label", {"train.csv": _with_line(4, "Sales fell sharply,")}, [], ["train.csv", "line 4", "no label"]),
    ("validation label unseen in training", {"validation.csv": _with_line(3, "Mixed results overall,mixed")}, [],
     ["validation.csv, line 3", "'mixed'", "data.labels"]),
    ("integer label out of range", {"train.csv": _with_line(2, "Sales rose,7")},
     ["--data.labels", "[negative, neutral, positive]"], ["train.csv, line 2", "out of range", "0 to 2"]),
    ("only one class", {"train.csv": _csv([(t, "positive") for t, _ in GOOD])}, [],
     ["train.csv", "only 'positive'", "two classes"]),
    ("duplicate label names", {}, ["--data.labels", "[positive, negative, positive]"], ["data.labels", "'positive'"]),
    ("column given twice", {}, ["--data.label_column", "text"], ["data.text_column", "data.label_column", "'text'"]),
    ("max_length beyond the model's positions", {}, ["--data.max_length", "512"],
     ["data.max_length", "512", "max_position_embeddings"]),
    ("unknown file type", {"train.xlsx": "x"}, ["--data.train_file", "{tmp}/train.xlsx"],
     ["train.xlsx", "unknown file type", ".csv"]),
    ("bad JSON line", {"train.jsonl": '{"text": "a", "label": "b"}\n{"text": "a", "label": "c"}\n{text: oops}\n'},
     ["--data.train_file", "{tmp}/train.jsonl"], ["train.jsonl, line 3", "not valid JSON"]),
    ("JSON that is not an array", {"train.json": '{"text": "a", "label": "b"}'},
     ["--data.train_file", "{tmp}/train.json"], ["train.json", "array of objects"]),
    ("JSON array item not an object", {"train.json": '[\n{"text": "a", "label": "b"},\n3\n]'},
     ["--data.train_file", "{tmp}/train.json"], ["train.json, line 3", "not an object"]),
    ("duplicate header", {"train.csv": "text,text,label\na,b,c\n"}, [], ["train.csv, line 1", "'text' twice"]),
    ("unknown encoding", {}, ["--data.encoding", "klingon"], ["data.encoding", "klingon"]),
    ("a folder as the training file", {"folder/x.txt": "x"}, ["--data.train_file", "{tmp}/folder"],
     ["folder", "is a folder"]),
    ("val_split out of range", {}, ["--data.validation_file", "null", "--data.val_split", "1.5"], ["data.val_split"]),
    ("no validation data", {}, ["--data.validation_file", "null", "--data.val_split", "0"],
     ["no validation data", "data.validation_file"]),
    ("no training file", {}, ["--data.train_file", "null"], ["data.train_file"]),
    ("tokenizer folder that does not exist", {}, ["--data.tokenizer", "{tmp}/no-tokenizer"],
     ["data.tokenizer", "no-tokenizer"]),
    ("model config file missing", {}, ["--model.config", "{tmp}/none.json"], ["model.config", "none.json"]),
    ("unknown learning-rate schedule", {}, ["--model.lr_scheduler_type", "zigzag"],
     ["model.lr_scheduler_type", "zigzag"]),
    ("unknown key (LightningCLI)", {}, ["--data.bogus", "1"], ["data.bogus"]),
    ("wrong type (LightningCLI)", {}, ["--data.batch_size", "abc"], ["data.batch_size", "abc"]),
    ("last.ckpt as a link to the best", {}, ["--checkpoint.save_last", "link"],
     ["checkpoint.save_last: link is not supported", "set it to true"]),
    ("negative learning rate", {}, ["--model.learning_rate", "-1"],
     ["model.learning_rate must be greater than 0, got -1"]),
    ("warmup ratio above 1", {}, ["--model.warmup_ratio", "1.5"], ["model.warmup_ratio must be in [0, 1], got 1.5"]),
    ("negative weight decay", {}, ["--model.weight_decay", "-0.1"], ["model.weight_decay must be at least 0"]),
    ("Adam beta of 1 or more", {}, ["--model.adam_betas", "[0.9, 1.5]"], ["model.adam_betas[1] must be in [0, 1)"]),
    ("dropout above 1", {}, ["--model.config.hidden_dropout_prob", "1.5"],
     ["model.config.hidden_dropout_prob must be in [0, 1), got 1.5"]),
    ("a typo in model.config", {}, ["--model.config.num_hiden_layers", "1"],
     ["model.config: unknown key 'num_hiden_layers' (did you mean 'num_hidden_layers'?)"]),
    ("tokenizer vocabulary smaller than the characters", {}, ["--data.tokenizer_vocab_size", "5"],
     ["data.tokenizer_vocab_size 5 is too small", "distinct characters"]),
    ("no epoch to train", {}, ["--trainer.max_epochs", "0"], ["trainer.max_epochs is 0, so nothing would be trained"]),
    ("step checkpoints every 0 steps", {}, ["--save_every_n_steps", "0"], ["save_every_n_steps must be at least 1"]),
    ("negative early-stopping patience", {}, ["--early_stopping.patience", "-1"],
     ["early_stopping.patience must be at least 0"]),
    ("a run folder under a file", {}, ["--trainer.default_root_dir", "{tmp}/train.csv/runs"],
     ["trainer.default_root_dir: cannot write into {tmp}/train.csv/runs", "is a file, not a folder"]),
    ("config file that is not YAML", {"bad.yaml": "trainer:\n  max_epochs: 1\n model: [\n"},
     ["--config", "{tmp}/bad.yaml"], ["--config {tmp}/bad.yaml, line 3: not valid YAML"]),
    ("config file with an unknown key", {"bad.yaml": "model:\n  learning_rte: 0.1\n"},
     ["--config", "{tmp}/bad.yaml"],
     ["--config {tmp}/bad.yaml: unknown setting 'model.learning_rte' (did you mean model.learning_rate?)"]),
    ("config file holding a list", {"bad.yaml": "- 1\n- 2\n"}, ["--config", "{tmp}/bad.yaml"],
     ["--config {tmp}/bad.yaml: must hold a mapping"]),
    ("FSDP on a CPU (the shipped device config)", {}, ["--config", str(REPO / "configs" / "devices" / "fsdp.yaml")],
     ["trainer.strategy: FSDP needs a CUDA GPU", "--trainer.strategy ddp"]),
    ("FSDP on a CPU, accelerator cpu", {},
     ["--config", str(REPO / "configs" / "devices" / "fsdp.yaml"), "--trainer.accelerator", "cpu"],
     ["trainer.strategy: FSDP needs a CUDA GPU"]),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _argv(monkeypatch):
    """As if typed at a shell: LightningCLI warns when it sees pytest's own arguments beside `args`."""
    monkeypatch.setattr("sys.argv", ["lightning_albert"])


def _write(folder: Path, files: dict) -> None:
    defaults = {"train.csv": _csv(GOOD), "validation.csv": _csv(GOOD[:6])}
    for name, content in {**defaults, **files}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and "\udce9" in content:  # a latin-1 byte in an otherwise UTF-8 file
            path.write_bytes(content.encode("utf-8", "surrogateescape"))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize(("files", "extra", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(tmp_path, capsys, files, extra, fragments):
    _write(tmp_path, files)
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code, err = run_main(fit_args(tmp_path, *extra), capsys)
    assert_clear_error(code, err, [f.replace("{tmp}", str(tmp_path)) for f in fragments])
    assert len(err.strip().splitlines()) == 1, err  # one line, not a usage screen
    assert not list((tmp_path / "runs").glob("lightning_logs/*"))  # refused: no run folder left behind


def test_a_run_refused_in_setup_leaves_no_run_folder(tmp_path, capsys):
    """The validation file is read once the Trainer (and its loggers' version_0) exists: refused there, that
    folder held a TensorBoard file and nothing else, and was left behind."""
    _write(tmp_path, {"validation.csv": _with_line(3, "Mixed results overall,mixed")})
    code, err = run_main(fit_args(tmp_path), capsys)
    assert_clear_error(code, err, ["validation.csv, line 3"])
    assert not (tmp_path / "runs" / "lightning_logs").exists()


def test_an_unwritable_run_folder_is_refused_before_any_work(tmp_path, capsys):
    """Where even root cannot write (/sys): refused before a tokenizer is trained, with the folder named."""
    target = Path("/sys/lightning_albert_test/runs")
    try:
        Path("/sys/lightning_albert_test").mkdir()
    except OSError:
        pass
    else:
        pytest.skip("/sys is writable here")
    _write(tmp_path, {})
    code, err = run_main(fit_args(tmp_path, "--trainer.default_root_dir", str(target)), capsys)
    assert_clear_error(code, err, [f"trainer.default_root_dir: cannot write into {target}", "Choose a folder"])
    assert "Trained a SentencePiece tokenizer" not in capsys.readouterr().out


def test_missing_checkpoint_file(tmp_path, capsys):
    code, err = run_main(["validate", "--config", str(REPO / "configs" / "quickstart.yaml"),
                          "--ckpt_path", str(tmp_path / "none.ckpt")], capsys)  # fmt: skip
    assert_clear_error(code, err, ["--ckpt_path", "none.ckpt"])


def test_a_checkpoint_folder_is_named_as_a_folder(fitted, tmp_path, capsys):
    folder = fitted / "checkpoints"
    code, err = run_main(["validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", str(folder)], capsys)
    assert_clear_error(
        code, err, [f"--ckpt_path: '{folder}' is a folder (best-", "last.ckpt", "give a checkpoint file"]
    )


def test_last_of_a_run_killed_before_its_first_checkpoint(fitted, tmp_path, capsys):
    """A run folder as a kill before the first save leaves it: config.yaml and no checkpoints/."""
    run = tmp_path / "lightning_logs" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text((fitted / "config.yaml").read_text())
    code, err = run_main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last"], capsys)
    assert_clear_error(code, err, [f"--ckpt_path best/last: {run} has no checkpoint yet", "without --ckpt_path"])


def test_checkpoint_whose_labels_differ_from_the_data(fitted, tmp_path, capsys):
    args = ["validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path), "--data.labels", "[bad, good, neutral]"]  # fmt: skip
    code, err = run_main(args, capsys)
    assert_clear_error(code, err, ["labels", "'negative'", "bad"])


def test_checkpoint_whose_tokenizer_differs_from_the_data(fitted, tmp_path, capsys):
    args = ["validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path), "--data.tokenizer", str(ALBERT_BASE_TOKENIZER)]  # fmt: skip
    code, err = run_main(args, capsys)
    assert_clear_error(code, err, ["tokenizer", "data.tokenizer"])


def test_drop_empty_texts_drops_and_reports(tmp_path, capsys, caplog):
    _write(tmp_path, {"train.csv": _with_line(3, ",positive")})
    main(fit_args(tmp_path, "--data.drop_empty_texts", "true"))
    assert "dropped 1 row(s) with an empty text" in caplog.text + capsys.readouterr().err


def test_predictions_keep_empty_rows_in_order_and_unicode_unchanged(fitted, tmp_path, capsys):
    texts = ["Profit up 5% 📈", "", "Café Zoë's résumé", "الأرباح ارتفعت", 'Line\nbreak, and "quotes"']
    source = tmp_path / "predict.csv"
    with open(source, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["uid", "text"])
        writer.writerows([(f"id-{i}", t) for i, t in enumerate(texts)])
    out = tmp_path / "out.csv"
    main(["predict", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best", "--data.predict_file",
          str(source), "--data.id_column", "uid", "--predictions_file", str(out),
          "--trainer.default_root_dir", str(tmp_path / "runs")])  # fmt: skip
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == texts
    assert [r["uid"] for r in rows] == [f"id-{i}" for i in range(len(texts))]
    assert [r["row"] for r in rows] == [str(i) for i in range(len(texts))]
    # An empty text has nothing to classify: its row stays, with no label or probabilities, and one line says so.
    assert all(r["label"] in {"negative", "neutral", "positive"} for i, r in enumerate(rows) if i != 1)
    assert {k: v for k, v in rows[1].items() if k == "label" or k.startswith("prob_")} == {
        "label": "", "prob_negative": "", "prob_neutral": "", "prob_positive": ""
    }  # fmt: skip
    assert "1 text(s) were empty (row 1): their rows have no label or probabilities." in capsys.readouterr().out


def test_only_lightnings_own_setting_checks_become_one_line_errors(tmp_path, capsys, monkeypatch):
    """`instantiate_trainer` turns Lightning's refusal of a trainer setting into `error: trainer: ...`; a
    ValueError raised anywhere else while the Trainer is built is a defect and must keep its traceback."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningCLI

    _write(tmp_path, {})
    # What LightningCLI does inside our instantiate_trainer, replaced by each kind of failure in turn.
    monkeypatch.setattr(LightningCLI, "instantiate_trainer", lambda self, **_: Trainer(precision="bogus"))
    code, err = run_main(fit_args(tmp_path), capsys)
    assert_clear_error(code, err, ["trainer:", "bogus"])

    def a_bug_of_ours(self, **_):
        raise ValueError("a bug of ours")

    monkeypatch.setattr(LightningCLI, "instantiate_trainer", a_bug_of_ours)
    with pytest.raises(ValueError, match="a bug of ours") as ours:
        main(fit_args(tmp_path))
    assert ours.type is ValueError and ours.value.__cause__ is None  # not wrapped, not turned into an InputError


def test_one_architecture_key_over_a_config_file_is_refused_not_silently_replacing_it(tmp_path, capsys):
    architecture = tmp_path / "albert.json"
    architecture.write_text(json.dumps(TINY_ALBERT))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {"config": str(architecture)}}))
    args = [*fit_args(tmp_path), "--config", str(config), "--model.config.hidden_dropout_prob", "0.2"]
    code, err = run_main(args, capsys)
    assert_clear_error(code, err, ["--model.config.hidden_dropout_prob", f"the file {architecture}", "Copy"])
    assert not (tmp_path / "runs").exists()
