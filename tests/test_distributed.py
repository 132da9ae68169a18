"""The same CLI under Lightning's DDP strategy: two CPU processes (gloo), as RECIPE.md suggests."""

import pytest
from conftest import REPO, logged_rows, only_run, read_csv, run_cli

DEMO = REPO / "data" / "demo"


def test_ddp_fit_writes_the_run_folder_once_and_predict_keeps_every_row(tmp_path):
    ddp = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
    run_cli("fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "2",
            "--trainer.default_root_dir", str(tmp_path / "fit"), *ddp)  # fmt: skip
    run = only_run(tmp_path / "fit")  # one run folder, though two processes logged
    assert {"README.md", "report.json", "hf_model", "learning_curves.png"} <= {p.name for p in run.iterdir()}
    ddp_val = logged_rows(run, "val")
    assert [r["epoch"] for r in ddp_val] == [0, 1]
    # Metrics are synced metric objects: on one process the same checkpoint scores the same (150 rows split
    # evenly over 2 processes, so the distributed sampler repeats none).
    run_cli("validate", "--config", str(run / "config.yaml"), "--ckpt_path", "last",
            "--trainer.default_root_dir", str(tmp_path / "one"))  # fmt: skip
    (single,) = logged_rows(only_run(tmp_path / "one"), "val")
    for key in ("val_accuracy", "val_precision", "val_recall", "val_f1", "val_loss"):
        assert single[key] == pytest.approx(ddp_val[-1][key], abs=1e-6), key
    # An odd number of rows: the processes get 4 and 3, and each row is written once, in input order.
    odd = tmp_path / "odd.csv"
    odd.write_text("\n".join((DEMO / "validation.csv").read_text(encoding="utf-8").splitlines()[:8]) + "\n")
    out = tmp_path / "predictions.csv"
    run_cli("predict", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--predictions_file", str(out),
            "--data.predict_file", str(odd), "--trainer.default_root_dir", str(tmp_path / "predict"), *ddp)  # fmt: skip
    rows = read_csv(out)
    assert [int(r["row"]) for r in rows] == list(range(7))
    assert [r["text"] for r in rows] == [r["text"] for r in read_csv(odd)]
