"""Checkpoints are written straight to a temporary file and renamed into place: complete or not at all, and
without the in-memory copy Lightning's writer makes (benchmarks/speed.py measures the memory)."""

import lightning.fabric.plugins.io.torch_io as lightning_writer
import pytest
import torch
from conftest import PHRASEBANK, only_run, tiny_model_args

from lightning_albert.checkpoints import StreamingCheckpointIO
from lightning_albert.cli import main


def test_a_checkpoint_is_complete_or_the_previous_one_stays(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"  # the folder does not exist yet
    first = {"state_dict": {"w": torch.arange(6.0)}, "epoch": 1}
    StreamingCheckpointIO().save_checkpoint(first, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1

    def killed_midway(checkpoint, f):
        f.write(b"PK half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        StreamingCheckpointIO().save_checkpoint({"state_dict": {}, "epoch": 2}, path)
    monkeypatch.undo()
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 1 and torch.equal(loaded["state_dict"]["w"], first["state_dict"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no partial file left beside it


def test_fit_writes_its_checkpoints_without_lightnings_in_memory_writer(tmp_path, monkeypatch, shared_data):
    def in_memory_copy(checkpoint, filepath):
        raise AssertionError(f"Lightning's writer was used for {filepath}")

    monkeypatch.setattr(lightning_writer, "_atomic_save", in_memory_copy)
    main(["fit", "--config", "configs/quickstart.yaml",
          "--data.train_file", str(PHRASEBANK / "train.csv"),
          "--data.validation_file", str(PHRASEBANK / "validation.csv"),
          "--data.test_file", "null", "--data.max_train_samples", "64", "--data.max_eval_samples", "32",
          "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--baseline", "false",
          "--trainer.default_root_dir", str(tmp_path), *tiny_model_args()])  # fmt: skip
    checkpoints = sorted(p.name for p in (only_run(tmp_path) / "checkpoints").iterdir())
    assert checkpoints == ["best-epoch=0-step=4.ckpt", "last.ckpt"]
    assert torch.load(only_run(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
