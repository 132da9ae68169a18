"""What every benchmark row records in the process that trains, and the matmul probe that MFU divides by.

One definition for all rows (the Lightning ones through `timing.StepTimer`, the Hugging Face ones through
`hf_trainer.py`'s TrainerCallback):

- a step's time is the wall time from the end of one optimizer step to the end of the next, so it holds data
  loading, collation, forward, backward, clipping, the optimizer and logging; validation is not in it;
- the first `warmup_steps` steps are not recorded;
- real tokens are the batch's attention_mask ones, padded tokens its input_ids' numel;
- the validation time is one full pass over the validation set, after an untimed pass that warms it up.

No Lightning import here: the Hugging Face rows' peak memory should not carry it.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class Measurements:
    step_seconds: list[float] = field(default_factory=list)
    step_samples: list[int] = field(default_factory=list)
    step_real_tokens: list[int] = field(default_factory=list)
    step_padded_tokens: list[int] = field(default_factory=list)
    eval_seconds: float | None = None
    eval_samples: int = 0
    eval_warmup_seconds: float | None = None  # the untimed first pass: cold caches, compilation
    probe_dtype: str = ""
    probe_flops_per_second: float = 0.0
    torch_threads: int = 0

    def record_step(self, seconds: float, batch: dict[str, torch.Tensor]) -> None:
        self.step_seconds.append(seconds)
        self.step_samples.append(int(batch["input_ids"].shape[0]))
        self.step_real_tokens.append(int(batch["attention_mask"].sum()))
        self.step_padded_tokens.append(int(batch["input_ids"].numel()))

    def finish(self, dtype: torch.dtype, path: str | Path) -> None:
        """Probe the matmul rate in this process (same threads, after training) and write the JSON."""
        self.probe_dtype = str(dtype).removeprefix("torch.")
        self.probe_flops_per_second = matmul_flops_per_second(dtype)
        self.torch_threads = torch.get_num_threads()
        Path(path).write_text(json.dumps(asdict(self), indent=1))


def matmul_flops_per_second(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """Median FLOP/s of n x n matmuls in `dtype` on this process's threads: the "peak" that MFU divides by.

    1024 is about the size of ALBERT-base's matmuls at batch 8 x 128 tokens (1024 x 768 x 3072); a larger
    square would report a higher peak that no layer of the model reaches.
    """
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):  # oneDNN picks and caches its kernel on the first calls
        a @ b
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    times.sort()
    return 2 * n**3 / times[len(times) // 2]
