"""ALBERT's attention as plain matmuls and softmax (`model.attn_implementation matmul`), registered with
transformers' AttentionInterface, the library's way to plug in an attention function.

Compiled on a CPU, torch.compile fuses these few ops, where SDPA's CPU kernel runs a backward that took 18% of a
bf16 training step of albert-base at ALBERT's usual lengths: a compiled step ran 1.13x as fast (a micro-benchmark
of the same batches, not benchmarks/speed.py). Unlike transformers' own "eager" attention, the scores and the
softmax stay in float32 under bf16 autocast, as SDPA keeps them; only the matmul with the values is in bf16.
Still, on the tiny learning benchmark (benchmarks/learning.py, 8 seeds) fast.yaml with it scored 0.015 lower best
macro-F1 than with SDPA, a cost not explained yet: so it is a switch to try, not a default.
"""

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

NAME = "lightning_albert_matmul"


def matmul_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """(batch, heads, length, head size) in; (batch, length, heads, head size) out, with no attention weights."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query.float(), key.float().transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask  # 0 where attended, the float minimum at padding (eager_mask)
        probs = scores.softmax(dim=-1)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs.to(value.dtype), value).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, matmul_attention)
AttentionMaskInterface.register(NAME, eager_mask)  # without a mask function, transformers would pass no mask
