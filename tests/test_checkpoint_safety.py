"""Checkpoints from someone else never run code here, and every broken one gets one clear line.

A crafted checkpoint whose unpickling would create a file is handed to every command that reads checkpoints;
each must refuse it with exit status 2, without a traceback, without advice to turn the safe load off, and
without the file appearing.
"""

import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_clear_error, run_cli, run_main

from lightning_albert.cli import main


class _CreatesAFile:
    """Unpickling this calls `open(marker, "w")`: code a checkpoint must not be able to run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def malicious(fitted, tmp_path) -> tuple[Path, Path, Path]:
    """A copy of the fitted run whose last.ckpt runs code when unpickled; the run, that file, and the marker."""
    run = tmp_path / "run"
    shutil.copytree(fitted, run)
    marker = tmp_path / "code-ran"
    evil = run / "checkpoints" / "last.ckpt"
    real = torch.load(evil, weights_only=True)
    torch.save({**real, "payload": _CreatesAFile(marker)}, evil)
    return run, evil, marker


def _commands(run: Path, evil: Path, out: Path) -> dict[str, list[str]]:
    config = ["--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(out / "runs")]
    return {
        "validate": ["validate", *config, "--ckpt_path", str(evil)],
        "test": ["test", *config, "--ckpt_path", "last"],
        "predict": ["predict", *config, "--ckpt_path", str(evil)],
        "fit": ["fit", *config, "--ckpt_path", "last"],
        "validate best": ["validate", *config, "--ckpt_path", "best"],  # best is looked up in last.ckpt
        "export": ["export", str(evil), str(out / "exported")],
        "report": ["report", str(run)],
    }


def test_every_command_refuses_a_checkpoint_that_would_run_code(malicious, tmp_path, capsys):
    run, evil, marker = malicious
    for name, args in _commands(run, evil, tmp_path).items():
        code, err = run_main(args, capsys)
        assert_clear_error(code, err, ["refused", "last.ckpt", "could run code"])
        assert "weights_only" not in err, (name, err)
        assert not marker.exists(), f"{name}: the checkpoint's code ran"
    assert not (tmp_path / "exported").exists()


def test_the_refusal_holds_in_a_fresh_process(malicious, tmp_path):
    run, evil, marker = malicious
    result = run_cli("validate", "--config", str(run / "config.yaml"), "--ckpt_path", str(evil), check=False)
    assert result.returncode == 2 and "refused" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_get_one_line(fitted, tmp_path, capsys):
    data = (fitted / "checkpoints" / "last.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    config = ["--config", str(fitted / "config.yaml"), "--trainer.default_root_dir", str(tmp_path / "runs")]
    for path, fragment in ((truncated, "truncated"), (text, "truncated"), (foreign, "not a Lightning checkpoint")):
        code, err = run_main(["validate", *config, "--ckpt_path", str(path)], capsys)
        assert_clear_error(code, err, [path.name, fragment])
        code, err = run_main(["export", str(path), str(tmp_path / "out")], capsys)
        assert_clear_error(code, err, ["export", path.name, fragment])


def test_no_remote_code_is_trusted_anywhere():
    package = Path(__file__).resolve().parents[1] / "lightning_albert"
    for source in package.glob("*.py"):
        assert "trust_remote_code" not in source.read_text(), source


def test_a_checkpoint_tokenizer_unpacked_for_a_command_is_removed_after_it(fitted, tmp_path, monkeypatch):
    """A checkpoint moved away from its run folder brings its tokenizer, unpacked into a temporary folder."""
    moved = tmp_path / "moved.ckpt"
    shutil.copy(fitted / "checkpoints" / "last.ckpt", moved)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    seen = []
    real = tempfile.TemporaryDirectory.cleanup

    def cleanup(self):
        seen.extend(p.name for p in Path(self.name).iterdir())
        real(self)

    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", cleanup)
    main(["validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", str(moved),
          "--trainer.default_root_dir", str(tmp_path / "runs")])  # fmt: skip
    assert "tokenizer" in seen  # the checkpoint's tokenizer was used from the temporary folder...
    assert not list(scratch.iterdir())  # ...which is gone
