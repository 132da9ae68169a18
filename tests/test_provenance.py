"""pretrain/provenance.py: the record `pretrain` leaves beside its export, read back by tune and the model card."""

import json

import pytest

from lightning_albert.errors import InputError
from lightning_albert.pretrain.provenance import PRETRAINING_RECORD, pretraining_record, write_pretraining_record

RECORD = {
    "checkpoint": "runs/pretrain/lightning_logs/version_0/checkpoints/best-epoch=2-step=27.ckpt",
    "global_step": 27,
    "max_steps": 2000,
    "best_val_loss": 5.4321,
    "texts": ["data/texts.txt"],
    "train_texts": 285,
    "validation_texts": 15,
}


def test_a_written_record_reads_back_equal_and_is_plain_json(tmp_path):
    write_pretraining_record(tmp_path, RECORD)
    assert pretraining_record(tmp_path) == RECORD
    assert pretraining_record(str(tmp_path)) == RECORD  # a path as the config gives it: a string
    assert json.loads((tmp_path / PRETRAINING_RECORD).read_text()) == RECORD  # readable without this package
    assert (tmp_path / PRETRAINING_RECORD).read_text().endswith("}\n")


def test_no_record_for_a_hub_name_another_folder_or_no_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pretraining_record(None) is None
    assert pretraining_record("") is None
    assert pretraining_record("albert-base-v2") is None  # a hub name: no such folder here
    (tmp_path / "fit_export").mkdir()
    (tmp_path / "fit_export" / "config.json").write_text("{}")
    assert pretraining_record(tmp_path / "fit_export") is None  # a folder fit exported: it has no record


def test_a_record_whose_export_was_removed_is_gone_too(tmp_path):
    export = tmp_path / "hf_model"
    export.mkdir()
    write_pretraining_record(export, RECORD)
    assert pretraining_record(export) == RECORD
    (export / PRETRAINING_RECORD).unlink()
    export.rmdir()
    assert pretraining_record(export) is None


@pytest.mark.parametrize(
    "text", ['{"global_step": 27, "best_val', "[1, 2]", '"a string"', "", "\xff\xfe"], ids=[
        "truncated", "a list", "a string", "empty", "not utf-8",
    ]
)  # fmt: skip
def test_a_damaged_record_is_an_error_that_names_the_file_not_no_record(tmp_path, text):
    """tune would otherwise search the learning rates of a published model for a small self-pretrained one."""
    path = tmp_path / PRETRAINING_RECORD
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match="not a pretraining record") as error:
        pretraining_record(tmp_path)
    assert str(path) in str(error.value)
