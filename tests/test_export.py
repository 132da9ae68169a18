"""export.py: a checkpoint written out as a Hugging Face folder that transformers loads and that answers as the
checkpoint's own model does; a failed or refused export leaves the target as it was."""

import os
import stat
from pathlib import Path

import pytest
import torch
import yaml
from conftest import GOOD, fit_args, only_run, write_good_splits
from safetensors.torch import load_file
from transformers import AlbertForSequenceClassification, AutoModelForSequenceClassification, AutoTokenizer

from lightning_albert import export
from lightning_albert.cli import main
from lightning_albert.errors import InputError
from lightning_albert.model import AlbertClassifier

LONG = " ".join(text for text, _ in GOOD)  # far over the run's data.max_length in tokens


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Two epochs of a tiny ALBERT on the hand-written rows: last.ckpt and the best checkpoint differ."""
    folder = tmp_path_factory.mktemp("export")
    write_good_splits(folder)
    args = fit_args(folder, "--trainer.max_epochs", "2", "--data.batch_size", "6", "--trainer.limit_train_batches",
                    "1.0", "--trainer.limit_val_batches", "1.0", "--baseline", "false")  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["lightning_albert"])
        main(args)
    return only_run(folder / "runs")


def _checkpoint(run: Path, name: str) -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def _best_name(run: Path) -> str:
    (name,) = [p.name for p in (run / "checkpoints").glob("best-*.ckpt")]
    return name


def test_the_export_loads_with_auto_classes_and_gives_the_checkpoints_logits(run, tmp_path):
    out = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "exported")
    assert out == tmp_path / "exported"
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    # The checkpoint's own model, loaded the way a notebook does: no Trainer attached.
    reference = AlbertClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=False).eval()
    trained_with = AutoTokenizer.from_pretrained(run / "tokenizer")  # the tokenizer the run saved beside itself
    max_length = yaml.safe_load((run / "config.yaml").read_text())["data"]["max_length"]

    texts = [text for text, _ in GOOD[:6]] + [LONG]
    batch = tokenizer(texts, truncation=True, padding=True, return_tensors="pt")
    assert tokenizer.model_max_length == max_length and batch["input_ids"].shape[1] == max_length  # LONG is cut
    expected = trained_with(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reference(dict(batch)), rtol=0, atol=1e-5)
    assert model.config.id2label == reference.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}


def test_the_export_folder_gets_the_permissions_mkdir_would_give(run, tmp_path):
    umask = os.umask(0o022)
    try:
        out = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "exported")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o755
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in out.iterdir()} == dict.fromkeys(
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"], 0o644
    )


def test_the_export_is_save_pretrained_files_only_and_no_staging_folder_is_left(run, tmp_path):
    out = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "exported")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                               "tokenizer_config.json"}  # fmt: skip
    weights = load_file(out / "model.safetensors")
    state = _checkpoint(run, "last.ckpt")["state_dict"]
    assert set(weights) == {k.removeprefix("model.") for k in state if k.startswith("model.")}  # not the metrics'
    for key, value in weights.items():
        assert torch.equal(value, state[f"model.{key}"]), key
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]


def test_the_export_command_on_a_run_folder_exports_its_best_checkpoint(run, tmp_path, capsys):
    best, last = _checkpoint(run, _best_name(run)), _checkpoint(run, "last.ckpt")
    assert best["epoch"] != last["epoch"], "the test needs a best checkpoint other than the last"
    for source, out in ((run, tmp_path / "from_run"), (run / "checkpoints", tmp_path / "from_checkpoints")):
        export.main([str(source), str(out)])
        weights = load_file(out / "model.safetensors")
        assert all(torch.equal(v, best["state_dict"][f"model.{k}"]) for k, v in weights.items())
        assert not all(torch.equal(v, last["state_dict"][f"model.{k}"]) for k, v in weights.items())
        assert f"Exported {run / 'checkpoints' / _best_name(run)} to {out}" in capsys.readouterr().out


def test_a_non_empty_folder_is_kept_unless_overwrite_is_given(run, tmp_path):
    target = tmp_path / "exported"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not empty"):
        export.export_checkpoint(run / "checkpoints" / "last.ckpt", target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    export.export_checkpoint(run / "checkpoints" / "last.ckpt", target, overwrite=True)
    assert "notes.txt" not in {p.name for p in target.iterdir()} and (target / "model.safetensors").is_file()
    (tmp_path / "empty").mkdir()
    assert (export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "empty") / "config.json").is_file()


def test_a_checkpoint_not_written_by_lightning_albert_or_missing_is_refused(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}, "epoch": 0}, foreign)
    with pytest.raises(InputError, match="was not written by lightning_albert"):
        export.export_checkpoint(foreign, tmp_path / "out")
    with pytest.raises(InputError, match="no such checkpoint file"):
        export.export_checkpoint(tmp_path / "missing.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overwrite", [False, True], ids=["new-folder", "over-an-export"])
def test_a_failure_while_writing_leaves_the_target_as_it_was(run, tmp_path, monkeypatch, overwrite):
    target = tmp_path / "exported"
    if overwrite:
        export.export_checkpoint(run / "checkpoints" / _best_name(run), target)
    before = {p.name: p.read_bytes() for p in target.iterdir()} if overwrite else None

    def save_half_then_fail(self, folder, **kwargs):
        Path(folder, "model.safetensors").write_bytes(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(AlbertForSequenceClassification, "save_pretrained", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export.export_checkpoint(run / "checkpoints" / "last.ckpt", target, overwrite=overwrite)
    if overwrite:
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    else:
        assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["exported"] if overwrite else [])  # no staging folder


def test_an_output_path_that_is_a_file_is_refused(run, tmp_path):
    (tmp_path / "model").write_text("a file")
    with pytest.raises(InputError):
        export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "model")
