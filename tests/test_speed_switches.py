"""The speed switches change how fast, not what is computed: bf16, torch.compile, fused AdamW, length grouping,
the attention implementation."""

import json
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from conftest import PHRASEBANK, TINY_ALBERT, logged_rows, only_run, run_cli, tiny_model_args

from lightning_albert import attention
from lightning_albert.cli import main
from lightning_albert.errors import InputError
from lightning_albert.model import AlbertClassifier

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (4, 19), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 11:] = 0  # a padded row, as in a real batch
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 2, 1])}


def test_compiled_forward_equals_eager_and_keeps_checkpoint_keys():
    torch.manual_seed(0)
    eager = AlbertClassifier(config=TINY_ALBERT, num_labels=3, id2label=LABELS, vocab_size=100).eval()
    compiled = AlbertClassifier(config=TINY_ALBERT, num_labels=3, id2label=LABELS, vocab_size=100, compile=True)
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no `_orig_mod.`: checkpoints interchange
    compiled.eval()
    with torch.inference_mode():
        for seed in (0, 1):  # a second batch of the same shape reuses the compiled graph
            batch = _batch(seed)
            torch.testing.assert_close(compiled(batch), eager(batch), atol=1e-5, rtol=1e-4)


def test_fused_adamw_takes_the_same_step_as_the_default_one():
    params = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = AlbertClassifier(
            config=TINY_ALBERT, num_labels=3, id2label=LABELS, vocab_size=100, fused_adamw=fused, weight_decay=0.01
        )
        model.trainer = _FakeTrainer()
        optimizer = model.configure_optimizers()["optimizer"]
        assert optimizer.defaults["fused"] is (True if fused else None)
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(_batch()), _batch()["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        params[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(params[True], params[False], atol=1e-6, rtol=1e-5)


class _RecordClippedStep(pl.Callback):
    """After the one optimizer step: which AdamW ran, and the gradient norm it stepped with (clipped before it)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.fused = trainer.optimizers[0].defaults["fused"]
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_fused_adamw_is_chosen_and_gradients_are_clipped_under_bf16_too(precision):
    """Lightning's AMP plugin refuses to clip for a fused optimizer (a GradScaler's guard); bf16 has no scaler, so
    fast.yaml (bf16-mixed, clipping at 1.0) keeps fused AdamW, as the HF Trainer does, and still clips."""
    torch.manual_seed(0)
    model = AlbertClassifier(config=TINY_ALBERT, num_labels=3, id2label=LABELS, vocab_size=100)
    record = _RecordClippedStep()
    trainer = pl.Trainer(
        accelerator="cpu", precision=precision, gradient_clip_val=1e-3, max_steps=1, callbacks=[record],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([_batch()], batch_size=None))
    assert record.fused is True
    assert record.norm == pytest.approx(1e-3, rel=1e-3)  # unclipped, the tiny model's gradient norm is ~1


def test_fused_adamw_stays_off_where_a_gradient_scaler_would_be_clipped():
    """16-mixed keeps its GradScaler's scale in the gradients until a fused step: auto leaves fused off, and
    asking for it is one clear error."""
    for fused in (None, True):
        model = AlbertClassifier(config=TINY_ALBERT, num_labels=3, vocab_size=100, fused_adamw=fused)
        model.trainer = _FakeTrainer()
        model.trainer.precision_plugin = SimpleNamespace(scaler=torch.amp.GradScaler("cpu"))
        if fused is None:
            assert model.configure_optimizers()["optimizer"].defaults["fused"] is None
        else:
            with pytest.raises(InputError, match="model.fused_adamw: true cannot be combined with 16-mixed"):
                model.configure_optimizers()


@pytest.mark.parametrize("chosen, expected", [(None, "sdpa"), ("sdpa", "sdpa"), ("matmul", attention.NAME)])
def test_attention_is_sdpa_unless_matmul_is_asked_for(chosen, expected):
    kwargs = {"attn_implementation": chosen} if chosen else {}
    model = AlbertClassifier(config=TINY_ALBERT, num_labels=3, vocab_size=100, **kwargs)
    assert model.model.config._attn_implementation == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_attention_computes_what_sdpa_computes_and_is_not_exported(dtype):
    """Padding masked, the same logits and gradients as SDPA; under bf16 autocast its scores and softmax stay in
    float32, as SDPA's do."""
    torch.manual_seed(0)
    model = AlbertClassifier(config=TINY_ALBERT, num_labels=3, id2label=LABELS, vocab_size=100).eval()
    results = {}
    for name in ("sdpa", attention.NAME):
        model.model.set_attn_implementation(name)
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = model(_batch())
        logits.float().sum().backward()
        results[name] = logits.float().detach(), torch.cat([p.grad.flatten() for p in model.parameters()])
        assert "lightning_albert" not in json.dumps(model.model.config.to_dict())  # nor in the export
    (ref_logits, ref_grads), (logits, grads) = results["sdpa"], results[attention.NAME]
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(logits, ref_logits, **tol)
    torch.testing.assert_close(grads, ref_grads, **tol)
    padded = _batch()
    padded["input_ids"][1, 11:] = 7  # other ids at the padded positions change nothing
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        torch.testing.assert_close(model(padded)[1].float(), logits[1])
    with pytest.raises(InputError, match="model.attn_implementation: 'flash' is not one of sdpa, matmul"):
        AlbertClassifier(config=TINY_ALBERT, num_labels=3, vocab_size=100, attn_implementation="flash")


class _FakeTrainer:
    """What configure_optimizers reads of the Trainer."""

    estimated_stepping_batches = 10
    gradient_clip_val = 1.0
    precision_plugin = None


def test_bf16_evaluation_agrees_with_fp32_on_the_same_checkpoint(fitted, tmp_path):
    best = next((fitted / "checkpoints").glob("best-*.ckpt"))
    epoch = int(best.name.split("epoch=")[1].split("-")[0])
    fp32 = next(r for r in logged_rows(fitted, "val") if r["epoch"] == epoch)
    main(["validate", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best",
          "--trainer.precision", "bf16-mixed", "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    (bf16,) = logged_rows(only_run(tmp_path), "val")
    assert bf16["val_loss"] == pytest.approx(fp32["val_loss"], abs=0.02)
    assert bf16["val_accuracy"] == pytest.approx(fp32["val_accuracy"], abs=0.02)  # at most ~4 of 225 flip
    assert bf16["val_loss"] != fp32["val_loss"]  # it really ran in bf16


def test_fast_switches_train_and_evaluate_through_the_cli(tmp_path, shared_data):
    """bf16-mixed, torch.compile, length-grouped batches padded to multiples of 8: fit, validate and test."""
    result = run_cli(
        "fit", "--config", "configs/quickstart.yaml",
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"),
        "--data.test_file", str(PHRASEBANK / "test.csv"),
        "--data.max_train_samples", "160", "--data.max_eval_samples", "64", "--trainer.max_epochs", "1",
        "--trainer.precision", "bf16-mixed", "--model.compile", "true",
        "--data.group_by_length", "true", "--data.pad_to_multiple_of", "8",
        "--trainer.default_root_dir", str(tmp_path), *tiny_model_args(),
    )  # fmt: skip
    run = only_run(tmp_path)
    (val,) = logged_rows(run, "val")
    report = json.loads((run / "report.json").read_text())
    # The metrics of a bf16, compiled, length-grouped run are those of its own predictions: accuracy and macro-F1
    # computed again from the validation's confusion matrix (64 texts, each counted once).
    (confusion,) = [e["confusion_matrix"] for e in report["evaluations"]]
    assert sum(map(sum, confusion)) == 64
    assert val["val_accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(3)) / 64, abs=1e-6)
    f1 = [2 * confusion[i][i] / (sum(confusion[i]) + sum(r[i] for r in confusion) or 1) for i in range(3)]
    assert val["val_f1"] == pytest.approx(sum(f1) / 3, abs=1e-6) and val["val_loss"] > 0
    test = report["test"]
    assert sum(map(sum, test["confusion_matrix"])) == 64
    assert "torch.compile: the first training step took" in result.stdout + result.stderr
    card = (run / "README.md").read_text()
    assert "- mixed_precision_training: bf16-mixed" in card
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
