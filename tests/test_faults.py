"""A fit that meets a signal or a non-finite loss ends cleanly: a resumable checkpoint, one message, an exit status."""

import json
import re

import pytest
import torch
from conftest import PHRASEBANK, only_run, run_cli, tiny_model_args

from lightning_albert.checkpoints import load_checkpoint

STEP = 6  # 64 samples in batches of 16: 4 optimizer steps an epoch, so step 6 is mid-way through epoch 1


def fit(root, *extra, test_file="null"):
    return run_cli(
        "fit", "--config", "configs/quickstart.yaml",
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"),
        "--data.max_train_samples", "64",
        "--data.max_eval_samples", "32", "--data.test_file", test_file,
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


def in_evaluation(stage: str, epoch: int = 0, batch: int = 0) -> list[str]:
    return ["--trainer.callbacks+=tests.fault_injection.SendSignalInEvaluation", "--trainer.callbacks.stage", stage,
            "--trainer.callbacks.epoch", str(epoch), "--trainer.callbacks.batch", str(batch)]  # fmt: skip


def resume(run, *extra):
    # `--trainer.callbacks=[]`: the run's config.yaml keeps the callback that sent the signal.
    return run_cli("fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.callbacks=[]", *extra)


def test_a_signal_during_validation_is_validated_again_on_resume(tmp_path, shared_data):
    """A preempting scheduler lands anywhere. Stopped in epoch 0's validation (batch 2 of 4), the resumed fit runs
    that validation again before training on: metrics.csv, the best checkpoint and the card are those of a run
    that was never stopped."""
    small_batches = ["--data.eval_batch_size", "8"]  # 32 validation texts: 4 batches
    assert fit(tmp_path / "whole", *small_batches).returncode == 0
    stopped = fit(tmp_path / "stopped", *small_batches, *in_evaluation("validate", epoch=0, batch=1))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    run, whole = only_run(tmp_path / "stopped"), only_run(tmp_path / "whole")
    assert "Interrupted by SIGTERM at optimizer step 4 (epoch 0): saved" in stopped.stderr
    assert json.loads((run / "report.json").read_text())["evaluations"] == []  # before the validation ended

    resume(run)
    assert (run / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    evaluations = [json.loads((r / "report.json").read_text())["evaluations"] for r in (run, whole)]
    assert evaluations[0] == evaluations[1] and [e["epoch"] for e in evaluations[0]] == [0, 1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (whole / "checkpoints").iterdir()
    )
    # The baseline's fit time ("fitted on the same training split in 0.3 s.") is the one figure a clock sets.
    cards = [re.sub(r"split in [\d.]+ s\.", "split in T s.", (r / "README.md").read_text().replace(str(r), "RUN"))
             for r in (run, whole)]  # fmt: skip
    assert cards[0] == cards[1]


@pytest.mark.parametrize("stage", ["test", "after_test"])
def test_a_signal_after_training_keeps_last_ckpt_and_says_how_to_finish(tmp_path, shared_data, stage):
    """Stopped in the test that ends fit, or while the baseline is fitted after it: last.ckpt stays the last epoch's
    (it was once overwritten with the best checkpoint's weights, as the test had loaded them), the message says
    what is missing, and the command it gives adds the test results and the baseline to the card."""
    stopped = fit(tmp_path, *in_evaluation(stage), test_file=str(PHRASEBANK / "test.csv"))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    run = only_run(tmp_path)
    command = f"python -m lightning_albert fit --config {run / 'config.yaml'} --ckpt_path last"
    assert f"Interrupted by SIGTERM after training had finished, before the test of the best checkpoint and the " \
        f"baseline were done: the checkpoints, the export and the model card are written, without those results. " \
        f"To add them:\n  {command}" in stopped.stderr  # fmt: skip
    assert "Traceback" not in stopped.stderr
    assert "bag-of-words baseline" not in (run / "README.md").read_text()
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    best = load_checkpoint(next((run / "checkpoints").glob("best-*")))
    assert last["global_step"] == 8 and last["epoch"] == 1  # both epochs done
    assert last["loops"]["test_loop"]["batch_progress"]["total"]["completed"] == 0  # not saved by the test
    key = "model.albert.embeddings.word_embeddings.weight"
    assert best["global_step"] == 8 or not torch.equal(last["state_dict"][key], best["state_dict"][key])

    finished = resume(run)
    assert "Fit finished after 2 epochs." in finished.stdout and "TF-IDF + LR test" in finished.stdout
    card = (run / "README.md").read_text()
    assert "### Test results" in card and "bag-of-words baseline" in card
