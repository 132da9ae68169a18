"""The seed recipe's optimizer, shared by fine-tuning and pretraining: AdamW without decay on biases and
LayerNorm weights, a per-step transformers schedule, and gradient clipping that also works for fused AdamW."""

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from transformers import SchedulerType, get_scheduler

from lightning_albert.errors import InputError


def check_scheduler_type(name: str) -> None:
    if name not in {t.value for t in SchedulerType}:
        names = ", ".join(t.value for t in SchedulerType)
        raise InputError(f"model.lr_scheduler_type: '{name}' is not one of {names}.")


def adamw_with_schedule(module: LightningModule) -> dict[str, Any]:
    """AdamW and a per-step schedule from the module's hyperparameters (learning_rate, adam_betas, adam_epsilon,
    weight_decay, lr_scheduler_type, warmup_steps, warmup_ratio, fused_adamw): shared by fine-tuning and
    pretraining, so both follow the seed recipe's optimizer."""
    hp = module.hparams
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            # By name, not by shape: FSDP hands over flattened (1-D) parameters.
            (no_decay if _never_decays(name) else decay).append(param)
    # A GradScaler (16-mixed) leaves its scale in the gradients until a fused optimizer's step removes it, so they
    # cannot be clipped before: "auto" leaves fused off there. bf16 has no scaler (see `clip_gradients`).
    trainer = module.trainer
    clipping = bool(trainer.gradient_clip_val)
    scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
    fused = hp.fused_adamw
    if fused is None:
        fused = module.device.type in _FUSED_ADAMW_DEVICES and not (scaled and clipping)
    elif fused and scaled and clipping:
        raise InputError(
            "model.fused_adamw: true cannot be combined with 16-mixed precision and gradient clipping "
            "(trainer.gradient_clip_val): the gradient scaler's scale is still in the gradients when they are "
            "clipped. Leave model.fused_adamw unset, or use bf16-mixed."
        )
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp.learning_rate,
        betas=tuple(hp.adam_betas),
        eps=hp.adam_epsilon,
        fused=fused or None,
    )
    total = trainer.estimated_stepping_batches
    warmup = hp.warmup_steps or math.ceil(total * hp.warmup_ratio)
    scheduler = get_scheduler(hp.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    # "step": the seed's schedule decays every optimizer step (Lightning's default interval is "epoch").
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def clip_gradients(module: LightningModule, optimizer, clip_val, algorithm) -> None:
    """Lightning's gradient clipping, also for a fused AdamW under bf16-mixed (the HF Trainer's default optimizer).

    Lightning's MixedPrecision plugin refuses to clip for any optimizer that unscales gradients in its step (fused
    AdamW), guarding against a GradScaler's scale. bf16-mixed has no scaler, so nothing is left to unscale: there
    the plugin's base-class clipping (the same `clip_grad_norm_` over the same parameters) is called directly.
    """
    plugin = module.trainer.precision_plugin
    if type(plugin) is MixedPrecision and plugin.scaler is None:
        Precision.clip_gradients(plugin, optimizer, clip_val or 0.0, GradClipAlgorithmType(algorithm or "norm"))
    else:
        module.clip_gradients(optimizer, gradient_clip_val=clip_val, gradient_clip_algorithm=algorithm)


def _never_decays(name: str) -> bool:
    """Biases and layer-norm weights (ALBERT names them LayerNorm and full_layer_layer_norm), as the HF Trainer."""
    return name.endswith("bias") or "layernorm" in name.lower().replace("_", "")


# Where torch >= 2.4 has a fused AdamW kernel for floating-point parameters.
_FUSED_ADAMW_DEVICES = ("cuda", "cpu", "mps", "xpu")
