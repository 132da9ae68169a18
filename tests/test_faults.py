"""A fit that meets a signal or a non-finite loss ends cleanly: a resumable checkpoint, one message, an exit status."""

import pytest
from conftest import PHRASEBANK, only_run, run_cli, tiny_model_args

from lightning_albert.checkpoints import load_checkpoint

STEP = 6  # 64 samples in batches of 16: 4 optimizer steps an epoch, so step 6 is mid-way through epoch 1


def fit(root, *extra):
    return run_cli(
        "fit", "--config", "configs/quickstart.yaml",
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"),
        "--data.max_train_samples", "64",
        "--data.max_eval_samples", "32", "--data.test_file", "null",
        "--trainer.max_epochs", "2",
        "--trainer.default_root_dir", str(root),
        *tiny_model_args(), *extra,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("signal_name", "status"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_saves_last_ckpt_at_the_batch_boundary_and_the_run_resumes(tmp_path, shared_data, signal_name, status):
    send = ["--trainer.callbacks+=tests.fault_injection.SendSignal", "--trainer.callbacks.step", str(STEP),
            "--trainer.callbacks.signal_name", signal_name]  # fmt: skip
    result = fit(tmp_path, *send)
    assert result.returncode == status, result.stderr[-3000:]
    run = only_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert f"Interrupted by {signal_name} at optimizer step {STEP} (epoch 1): saved {last}. To resume:" in result.stderr
    command = f"python -m lightning_albert fit --config {run / 'config.yaml'} --ckpt_path last"
    assert command in result.stderr
    assert "Traceback" not in result.stderr
    checkpoint = load_checkpoint(last)  # as --ckpt_path reads it
    assert checkpoint["global_step"] == STEP
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == STEP - 4
    assert checkpoint["optimizer_states"] and checkpoint["lr_schedulers"]
    assert not (run / "hf_model").exists()  # an interrupted fit is not a finished one

    if signal_name == "SIGINT":  # one resume is enough: both signals leave the same kind of checkpoint
        return
    resumed = run_cli(*command.split()[3:])
    assert f"Restored all states from the checkpoint at {last}" in resumed.stdout + resumed.stderr
    assert only_run(tmp_path) == run  # it went on in the same run folder
    assert load_checkpoint(last)["global_step"] == 8
    # From step 6: epoch 0's rows (logged at step 3) from before the signal, then epoch 1's, each once.
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in metrics[1:]] == [["0", "3"], ["0", "3"], ["1", "7"], ["1", "7"]]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_nan_loss_stops_with_one_message_and_no_checkpoint_after_it(tmp_path, shared_data, precision):
    poison = ["--trainer.callbacks+=tests.fault_injection.PoisonWeights", "--trainer.callbacks.step", str(STEP)]
    result = fit(tmp_path, *poison, "--trainer.precision", precision)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"error: the training loss was nan at optimizer step {STEP} (epoch 1), so training stopped" in result.stderr
    assert "Try a lower model.learning_rate" in result.stderr
    assert "Traceback" not in result.stderr
    checkpoints = sorted((only_run(tmp_path) / "checkpoints").glob("*.ckpt"))
    assert checkpoints  # epoch 0's are kept
    assert all(load_checkpoint(path)["global_step"] < STEP for path in checkpoints)
