"""The CLI under Lightning's DDP strategy on CPU processes (gloo): the same figures as one process, exactly.

Evaluation sets here have an odd number of rows, so they cannot split evenly over two processes: our
EvalBatchSampler gives every process the same number of batches (so DDP's per-forward buffer broadcast
never waits on a process that has finished) and every example exactly once (so the synced metric states
count no example twice and drop none). `test_sampler.py` checks the sampler alone; here, whole runs.

Each CLI process costs 10-20 s of startup per rank, so one DDP fit is shared by the tests of this file.
"""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    PHRASEBANK,
    REPO,
    TINY_ALBERT,
    joined_tweets,
    logged_rows,
    only_run,
    read_csv,
    run_cli,
    scored_pairs,
)

from lightning_albert.checkpoints import load_checkpoint

# Every test here starts two or more training processes: `pytest -m "not multiprocess"` leaves them out.
pytestmark = pytest.mark.multiprocess

DDP = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
# num_nodes too: a run's config.yaml from a two-node fit would otherwise wait for a second node forever.
ONE_PROCESS = ["--trainer.strategy", "auto", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
ONE_PROCESS += ["--trainer.num_nodes", "1"]
METRICS = ("accuracy", "precision", "recall", "f1", "loss")
# DDP sums each process's metric states: counts add up exactly, but a float32 loss summed in another order can
# differ in its last bits (seen: 6e-8 on a loss of 0.66).
TOLERANCE = 1e-6
# Dropout in every layer, as offline.yaml has it: its draws depend on batch shapes, so they differ per process.
MODEL = {**TINY_ALBERT, "hidden_dropout_prob": 0.1}
VALIDATION_ROWS, TEST_ROWS = 149, 75  # odd: the processes get 75 and 74, 38 and 37 examples


def first_rows(source: Path, n: int, target: Path) -> Path:
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


@pytest.fixture(scope="module")
def odd_sets(tmp_path_factory, shared_data) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("odd")
    return {
        "validation": first_rows(PHRASEBANK / "validation.csv", VALIDATION_ROWS, folder / "validation.csv"),
        "test": first_rows(PHRASEBANK / "test.csv", TEST_ROWS, folder / "test.csv"),
    }


def fit_args(odd_sets: dict[str, Path], root: Path) -> list[str]:
    """A tiny ALBERT, three short epochs on a phrasebank slice: enough to predict all three classes."""
    return [
        "fit", "--config", "configs/quickstart.yaml",
        "--data.train_file", str(PHRASEBANK / "train.csv"), "--data.max_train_samples", "320",
        "--data.validation_file", str(odd_sets["validation"]), "--data.test_file", str(odd_sets["test"]),
        "--data.batch_size", "8", "--data.eval_batch_size", "16",
        "--trainer.default_root_dir", str(root),
        "--model.config", json.dumps(MODEL), "--model.learning_rate", "0.003",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, odd_sets) -> Path:
    """Fit under DDP on 2 processes with length-grouped training batches; fit ends by testing the best."""
    root = tmp_path_factory.mktemp("ddp_fit")
    run_cli(*fit_args(odd_sets, root), "--trainer.max_epochs", "3", "--data.group_by_length", "true", *DDP)
    return only_run(root)  # one run folder, though two processes logged


def evaluate(command: str, run: Path, root: Path, *args: str, checkpoint: str = "best") -> dict[str, float]:
    """`validate` or `test` of one of the run's checkpoints in a fresh process: the figures it logged."""
    prefix = {"validate": "val", "test": "test"}[command]
    run_cli(command, "--config", str(run / "config.yaml"), "--ckpt_path", checkpoint,
            "--trainer.default_root_dir", str(root), *args)  # fmt: skip
    (row,) = logged_rows(only_run(root), prefix)
    return {m: row[f"{prefix}_{m}"] for m in METRICS}


def assert_same(a: dict[str, float], b: dict[str, float], what: str) -> None:
    for m in METRICS:
        assert a[m] == pytest.approx(b[m], abs=TOLERANCE), (what, m, a, b)


@pytest.fixture(scope="module")
def one_process(ddp_run, tmp_path_factory) -> dict[str, dict[str, float]]:
    """The DDP run's best checkpoint validated and tested on a single process: the reference figures."""
    root = tmp_path_factory.mktemp("one_process")
    return {
        "val": evaluate("validate", ddp_run, root / "validate", *ONE_PROCESS),
        "test": evaluate("test", ddp_run, root / "test", *ONE_PROCESS),
    }


def test_ddp_fit_reports_what_one_process_computes_on_sets_that_do_not_divide_evenly(ddp_run, one_process):
    assert {"README.md", "report.json", "hf_model", "learning_curves.png"} <= {p.name for p in ddp_run.iterdir()}
    report = json.loads((ddp_run / "report.json").read_text())
    assert report["facts"]["world_size"] == 2 and report["facts"]["validation_examples"] == VALIDATION_ROWS
    # Every validation and the test counted each example exactly once: the synced confusion matrices add up.
    assert [e["epoch"] for e in report["evaluations"]] == [0, 1, 2]
    assert all(sum(map(sum, e["confusion_matrix"])) == VALIDATION_ROWS for e in report["evaluations"])
    assert sum(map(sum, report["test"]["confusion_matrix"])) == report["test"]["examples"] == TEST_ROWS
    assert sum(1 for column in zip(*report["test"]["confusion_matrix"]) if any(column)) > 1  # not one class

    # The validation logged at the best checkpoint's epoch is what one process computes on that checkpoint.
    best_epoch = int(re.search(r"epoch=(\d+)", report["test"]["checkpoint"]).group(1))
    (logged,) = [r for r in logged_rows(ddp_run, "val") if r["epoch"] == best_epoch]
    assert_same({m: logged[f"val_{m}"] for m in METRICS}, one_process["val"], "fit's validation")

    # Fit's test of the best checkpoint, in report.json and in metrics.csv, is what one process's test gives.
    tested = {"loss": report["test"]["loss"], **report["test"]["metrics"]}
    assert_same(tested, one_process["test"], "report.json's test")
    (row,) = logged_rows(ddp_run, "test")
    assert_same({m: row[f"test_{m}"] for m in METRICS}, one_process["test"], "metrics.csv's test")


def test_ddp_validate_and_test_of_a_checkpoint_match_one_process(ddp_run, one_process, tmp_path):
    assert_same(evaluate("validate", ddp_run, tmp_path / "validate", *DDP), one_process["val"], "DDP validate")
    assert_same(evaluate("test", ddp_run, tmp_path / "test", *DDP), one_process["test"], "DDP test")


def test_ddp_predict_writes_each_row_once_in_input_order(ddp_run, odd_sets, tmp_path):
    out = tmp_path / "predictions.csv"
    run_cli("predict", "--config", str(ddp_run / "config.yaml"), "--ckpt_path", "last",
            "--predictions_file", str(out), "--data.predict_file", str(odd_sets["test"]),
            "--trainer.default_root_dir", str(tmp_path), *DDP)  # fmt: skip
    rows = read_csv(out)
    assert [int(r["row"]) for r in rows] == list(range(TEST_ROWS))
    assert [r["text"] for r in rows] == [r["text"] for r in read_csv(odd_sets["test"])]


def test_ddp_fit_killed_mid_epoch_resumes_to_the_uninterrupted_runs_metrics(ddp_run, odd_sets, tmp_path):
    """Each process holds its own share of the epoch's training-loss sums and its own random streams (dropout
    masks differ with batch shapes), but rank 0 alone writes the checkpoint: both must reach it whole."""
    # 320 rows, batches of 8 on 2 processes: 20 steps an epoch. A step checkpoint every 6 steps; killed at 27,
    # so the resume starts from step 24, mid-epoch 1, and repeats steps 25-27.
    fit = [*fit_args(odd_sets, tmp_path), "--trainer.max_epochs", "3", "--data.group_by_length", "true", *DDP]
    kill = ["--save_every_n_steps", "6", "--trainer.callbacks+=tests.interrupt.KillAt", "--trainer.callbacks.step"]
    killed = run_cli(*fit, *kill, "27", check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = only_run(tmp_path)
    run_cli("fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.callbacks", "[]")
    assert only_run(tmp_path) == run
    assert read_csv(run / "metrics.csv") == read_csv(ddp_run / "metrics.csv")


def test_two_nodes_launched_by_torchrun_report_what_one_process_computes(odd_sets, tmp_path):
    """Two "nodes" of one process each on this machine: torchrun per node, as on a cluster (loopback only)."""
    # No port is picked ahead of its use. This test once handed torchrun a "free" port (bind to 0, close) for
    # its static rendezvous, which is also the process group's MASTER_PORT, and started both agents at once.
    # That port is in the ephemeral range: until node 0's agent bound it, seconds later, anything could take
    # it, node 1's own connection attempts included (on loopback a connect whose ephemeral source port equals
    # the port it dials connects to itself). Node 1 then aborted in init_process_group. Now this process hosts
    # the c10d rendezvous store on a port the kernel assigns and holds, both agents join it as clients, and
    # the agent that becomes rank 0 binds the process group's store on a kernel-assigned port of its own and
    # publishes it through the rendezvous (MASTER_PORT), so both launchers can still start together.
    from torch.distributed import TCPStore

    rendezvous = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    root = tmp_path / "fit"
    args = fit_args(odd_sets, root) + ["--trainer.max_epochs", "2", "--data.test_file", "null"]
    args += ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    args += ["--trainer.accelerator", "cpu"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LIGHTNING_ALBERT_DEBUG", None)
    for name in [n for n in env if n.startswith("PET_")]:
        env.pop(name)  # torchrun reads its options from PET_* too: a PET_MASTER_PORT would pin MASTER_PORT again

    def node() -> subprocess.Popen:
        # Node ranks come from the order of joining; --local-addr keeps the process group's store on loopback.
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                    "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{rendezvous.port}",
                    "--rdzv-id", "two-nodes", "--rdzv-conf", "is_host=0", "--local-addr", "127.0.0.1"]  # fmt: skip
        command = [*torchrun, "-m", "lightning_albert", *args]
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    nodes = [node(), node()]  # started together, as a scheduler starts one launcher per node
    try:
        outputs = [launcher.communicate(timeout=600)[0] for launcher in nodes]
    finally:
        for launcher in nodes:
            launcher.kill()
    for i, (launcher, output) in enumerate(zip(nodes, outputs)):
        assert launcher.returncode == 0, f"launcher {i}:\n{output[-5000:]}"
    run = only_run(root)
    assert json.loads((run / "report.json").read_text())["facts"]["world_size"] == 2
    logged = logged_rows(run, "val")[-1]
    assert logged["val_f1"] > 0.3  # learnt more than the majority class (f1 0.25), so the check means something
    single = evaluate("validate", run, tmp_path / "validate", *ONE_PROCESS, checkpoint="last")
    assert_same({m: logged[f"val_{m}"] for m in METRICS}, single, "two nodes' validation")


def test_ddp_fit_signalled_mid_epoch_saves_together_and_resumes_to_the_uninterrupted_runs_metrics(
    ddp_run, odd_sets, tmp_path
):
    """SIGTERM to rank 0 alone (what Lightning's launcher receives from a shell or a scheduler) at step 27: both
    processes agree to stop after that batch and save last.ckpt together, which Lightning's own handling cannot
    (its handler broadcasts, so the processes part at different batches); the resume ends where ddp_run ended."""
    fit = [*fit_args(odd_sets, tmp_path), "--trainer.max_epochs", "3", "--data.group_by_length", "true", *DDP]
    send = ["--trainer.callbacks+=tests.fault_injection.SendSignal", "--trainer.callbacks.step", "27",
            "--trainer.callbacks.rank", "0"]  # fmt: skip
    stopped = run_cli(*fit, *send, check=False)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    run = only_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert f"Interrupted by SIGTERM at optimizer step 27 (epoch 1): saved {last}. To resume:" in stopped.stderr
    assert load_checkpoint(last)["global_step"] == 27
    run_cli("fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.callbacks", "[]")
    assert read_csv(run / "metrics.csv") == read_csv(ddp_run / "metrics.csv")


# ------------------------------------------------------------------------------ multi-label and regression
TASK_RUNS = {
    # task: (how its rows are made from real data, fit's settings beside the quickstart)
    "multi_label": (joined_tweets, ["--config", "configs/multi_label.yaml"]),
    "regression": (scored_pairs, ["--config", "configs/regression.yaml", "--data.label_column", "score",
                                  "--data.text_pair_column", "text_pair"]),
}  # fmt: skip
TASK_METRICS = {
    "multi_label": ("loss", "micro_f1", "f1", "precision", "recall", "subset_accuracy", "hamming_loss"),
    "regression": ("loss", "mse", "mae", "pearson", "spearman", "r2"),
}


@pytest.mark.parametrize("task", TASK_RUNS)
def test_other_tasks_under_ddp_report_what_one_process_computes(task, tmp_path):
    """A 2-process fit on an odd validation set: each validation counted every example once, and the best
    checkpoint's logged figures are what one process computes on it."""
    make, settings = TASK_RUNS[task]
    files = {split: tmp_path / f"{split}.csv" for split in ("train", "validation")}
    make("train", 240, files["train"])
    make("validation", VALIDATION_ROWS, files["validation"])
    run_cli(
        "fit", "--config", "configs/quickstart.yaml", *settings,
        "--data.train_file", str(files["train"]), "--data.validation_file", str(files["validation"]),
        "--data.test_file", "null", "--data.predict_file", "null", "--data.eval_batch_size", "16",
        "--model.config", json.dumps(MODEL), "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", str(tmp_path / "ddp"), *DDP,
    )  # fmt: skip
    run = only_run(tmp_path / "ddp")
    report = json.loads((run / "report.json").read_text())
    assert report["task"] == task and report["facts"]["world_size"] == 2
    (evaluation,) = report["evaluations"]
    if task == "multi_label":  # a 2x2 matrix per label, each over every validation row
        assert {sum(map(sum, m)) for m in evaluation["confusion_matrix"]} == {VALIDATION_ROWS}
    else:  # a (predicted, true) pair per validation row
        assert len(evaluation["pairs"]) == VALIDATION_ROWS
    (logged,) = logged_rows(run, "val")
    run_cli("validate", "--config", str(run / "config.yaml"), "--ckpt_path", "best",
            "--trainer.default_root_dir", str(tmp_path / "one"), *ONE_PROCESS)  # fmt: skip
    (single,) = logged_rows(only_run(tmp_path / "one"), "val")
    for m in TASK_METRICS[task]:
        # Correlations and R² are merged from per-process moments in float32: equal to a few ulps of their sums.
        assert logged[f"val_{m}"] == pytest.approx(single[f"val_{m}"], abs=1e-5), (task, m, logged, single)
