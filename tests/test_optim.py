"""optim.py: the seed recipe's AdamW (no decay on biases and layer norms), its per-step schedule, and gradient
clipping that also works for a fused AdamW under bf16-mixed."""

import math

import pytest
import torch
from conftest import TINY_ALBERT
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.precision import MixedPrecision
from transformers import SchedulerType

from lightning_albert.errors import InputError
from lightning_albert.model import AlbertClassifier
from lightning_albert.optim import adamw_with_schedule, check_scheduler_type, clip_gradients

TOTAL_STEPS = 20


def _attached(trainer_args: dict | None = None, **hparams) -> AlbertClassifier:
    """A tiny classifier attached to a Trainer that will run TOTAL_STEPS optimizer steps."""
    module = AlbertClassifier(config=TINY_ALBERT, num_labels=3, vocab_size=100, **hparams)
    trainer = Trainer(
        **{"max_steps": TOTAL_STEPS, "max_epochs": -1, "accelerator": "cpu", "logger": False,
           "enable_progress_bar": False, "enable_model_summary": False, **(trainer_args or {})}
    )  # fmt: skip
    module.trainer = trainer
    return module


def test_every_scheduler_type_of_transformers_is_accepted_and_another_name_is_refused_with_the_list():
    for scheduler in SchedulerType:
        check_scheduler_type(scheduler.value)
    with pytest.raises(InputError) as error:
        check_scheduler_type("linear_decay")
    assert "model.lr_scheduler_type: 'linear_decay'" in str(error.value)
    assert all(s.value in str(error.value) for s in SchedulerType)


def test_biases_and_layer_norm_weights_never_decay_and_every_other_weight_does():
    """Checked against the HF Trainer's rule written out by module type: parameters of nn.LayerNorm modules and
    biases get no decay (ALBERT names its layer norms LayerNorm and full_layer_layer_norm)."""
    module = _attached(weight_decay=0.03)
    module.model.albert.embeddings.position_embeddings.weight.requires_grad_(False)  # frozen: in no group
    layer_norm = {id(p) for m in module.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    trained = {n: p for n, p in module.named_parameters() if p.requires_grad}
    no_decay = {id(p) for n, p in trained.items() if id(p) in layer_norm or n.endswith("bias")}
    decay = {id(p) for p in trained.values()} - no_decay
    groups = adamw_with_schedule(module)["optimizer"].param_groups
    assert [g["weight_decay"] for g in groups] == [0.03, 0.0]
    assert {id(p) for p in groups[0]["params"]} == decay
    assert {id(p) for p in groups[1]["params"]} == no_decay
    names = {id(p): n for n, p in module.named_parameters()}
    assert any("full_layer_layer_norm" in names[i] for i in no_decay) and any("LayerNorm" in names[i] for i in no_decay)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in module.parameters())


def test_adamw_takes_the_modules_hyperparameters():
    module = _attached(learning_rate=3e-4, adam_betas=(0.8, 0.95), adam_epsilon=1e-6, weight_decay=0.1)
    optimizer = adamw_with_schedule(module)["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.8, 0.95) and optimizer.defaults["eps"] == 1e-6
    assert all(g["initial_lr"] == 3e-4 for g in optimizer.param_groups)
    assert optimizer.defaults["fused"]  # on a CPU, with torch >= 2.4: unset means fused where torch has it
    assert not adamw_with_schedule(_attached(fused_adamw=False))["optimizer"].defaults["fused"]


def _learning_rates(module: AlbertClassifier) -> tuple[list[float], dict]:
    """The learning rate before each optimizer step and after the last, stepping the scheduler as Lightning does."""
    configured = adamw_with_schedule(module)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(TOTAL_STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates + [optimizer.param_groups[0]["lr"]], configured["lr_scheduler"]


@pytest.mark.parametrize(
    ("warmup", "steps"),
    [({"warmup_ratio": 0.25}, 5), ({"warmup_steps": 3, "warmup_ratio": 0.5}, 3),
     ({"warmup_ratio": 0.12}, math.ceil(0.12 * TOTAL_STEPS))],
    ids=["ratio", "steps-win-over-ratio", "ratio-rounds-up"],
)  # fmt: skip
def test_the_linear_schedule_warms_up_then_reaches_zero_at_the_last_step(warmup, steps):
    rates, scheduler = _learning_rates(_attached(learning_rate=1e-3, **warmup))
    assert scheduler["interval"] == "step"  # stepped every optimizer step, not every epoch
    expected = [1e-3 * k / steps if k < steps else 1e-3 * (TOTAL_STEPS - k) / (TOTAL_STEPS - steps)
                for k in range(TOTAL_STEPS + 1)]  # fmt: skip
    assert rates == pytest.approx(expected, abs=1e-12)
    assert rates[-1] == 0.0


def test_another_schedule_is_the_named_transformers_one():
    rates, _ = _learning_rates(_attached(learning_rate=1e-3, lr_scheduler_type="constant_with_warmup", warmup_steps=4))
    assert rates == pytest.approx([1e-3 * k / 4 for k in range(4)] + [1e-3] * (TOTAL_STEPS - 3))


def test_fused_adamw_is_refused_where_a_gradient_scaler_would_be_clipped_and_left_off_when_unset():
    """16-mixed keeps its GradScaler's scale in the gradients until a fused step removes it: clipping before that
    would clip scaled gradients."""
    module = _attached({"gradient_clip_val": 1.0})
    module.trainer.strategy.precision_plugin = MixedPrecision("16-mixed", "cpu")
    assert module.trainer.precision_plugin.scaler is not None
    module.hparams.fused_adamw = True
    with pytest.raises(InputError, match="model.fused_adamw: true cannot be combined with 16-mixed"):
        adamw_with_schedule(module)
    module.hparams.fused_adamw = None
    assert not adamw_with_schedule(module)["optimizer"].defaults["fused"]


def _gradient_norm(module) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None]))


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
@pytest.mark.parametrize(("algorithm", "limit"), [("norm", 0.5), ("value", 0.001)])
def test_clipping_brings_the_gradients_down_to_the_limit_also_for_fused_adamw(precision, algorithm, limit):
    """Lightning's MixedPrecision refuses to clip for an optimizer that unscales in its step (fused AdamW); under
    bf16 there is no scaler, so clip_gradients clips anyway, as it does under 32-true."""
    trainer = {"precision": precision, "gradient_clip_val": limit, "gradient_clip_algorithm": algorithm}
    module = _attached(trainer, fused_adamw=True)
    optimizer = adamw_with_schedule(module)["optimizer"]
    assert optimizer.defaults["fused"]
    for p in module.parameters():
        p.grad = torch.full_like(p, 0.1)
    assert _gradient_norm(module) > 1
    clip_gradients(module, optimizer, limit, algorithm)
    if algorithm == "norm":
        assert _gradient_norm(module) == pytest.approx(limit, rel=1e-4)
    else:
        assert all(torch.equal(p.grad, torch.full_like(p, limit)) for p in module.parameters())
