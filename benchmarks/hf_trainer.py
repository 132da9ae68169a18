"""The baseline rows: the Hugging Face Trainer on the same data, model, recipe and steps as the Lightning rows.

    python -m benchmarks.hf_trainer --mode run_glue|best --output row.json --steps 30 --warmup 5 ...

`run_glue`: as transformers' examples/pytorch/text-classification/run_glue.py runs it by default: every text
padded to max_length, the default collator, random sampling, fp32.
`best`: the Trainer at its best on a CPU: dynamic padding (DataCollatorWithPadding), length-grouped sampling
(train_sampling_strategy="group_by_length") and bf16 autocast.

Both: batch 8, AdamW lr 1e-5 betas (0.9, 0.999) eps 1e-8, no weight decay, linear decay, clipping at 1.0,
seed 42, no evaluation or saving during training, no progress bar. Writes `measurements.Measurements` as JSON.
"""

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from benchmarks.measurements import Measurements


class RecordingTrainer(Trainer):
    """The Trainer, keeping each training batch for the step timer (a callback does not see the batch)."""

    last_batch: dict[str, torch.Tensor] | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.last_batch = inputs
        return super().training_step(model, inputs, num_items_in_batch)


class StepTimerCallback(TrainerCallback):
    """Step times after warm-up, end of one optimizer step to the end of the next (as `timing.StepTimer`)."""

    def __init__(self, trainer_ref: list[RecordingTrainer], measurements: Measurements, warmup_steps: int):
        self.trainer_ref = trainer_ref
        self.measurements = measurements
        self.warmup_steps = warmup_steps
        self.last_step_end: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.last_step_end is not None and state.global_step > self.warmup_steps:
            self.measurements.record_step(now - self.last_step_end, self.trainer_ref[0].last_batch)
        self.last_step_end = now


def read_split(path: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["run_glue", "best"], required=True)
    parser.add_argument("--output", required=True, help="JSON file to write the measurements to.")
    parser.add_argument("--model-config", required=True, help="AlbertConfig JSON (random initialisation).")
    parser.add_argument("--tokenizer", required=True, help="Tokenizer folder.")
    parser.add_argument("--train-file", required=True)
    parser.add_argument("--validation-file", required=True)
    parser.add_argument("--steps", type=int, default=30, help="Optimizer steps timed after the warm-up.")
    parser.add_argument("--warmup", type=int, default=5, help="Optimizer steps run first and not timed.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=None, help="default: --batch-size")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="TrainingArguments(torch_compile=True), as a Trainer user at their best",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    best = args.mode == "best"

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    train_texts, train_labels = read_split(args.train_file)
    val_texts, val_labels = read_split(args.validation_file)
    labels = sorted(set(train_labels))  # the ids lightning_albert gives: sorted class names
    label_ids = {name: i for i, name in enumerate(labels)}
    # run_glue pads every text to max_length when it tokenizes (its default pad_to_max_length=True).
    padding = False if best else "max_length"

    def encode(texts: list[str], names: list[str]) -> list[dict]:
        enc = tokenizer(texts, padding=padding, truncation=True, max_length=args.max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label_ids[name]}
            for ids, mask, name in zip(enc["input_ids"], enc["attention_mask"], names)
        ]

    train, validation = encode(train_texts, train_labels), encode(val_texts, val_labels)

    set_seed(42)  # before the model, as the seed run (and LightningCLI's seed_everything) does
    config = AlbertConfig.from_json_file(args.model_config)
    config.update(
        {
            "vocab_size": len(tokenizer),
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": label_ids,
        }
    )
    model = AlbertForSequenceClassification(config)

    output_dir = tempfile.mkdtemp(prefix="hf_trainer_bench_")
    training_args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size or args.batch_size,
        learning_rate=1e-5,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        max_steps=args.warmup + args.steps,
        seed=42,
        use_cpu=True,
        bf16=best,
        torch_compile=args.torch_compile,
        train_sampling_strategy="group_by_length" if best else "random",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    measurements = Measurements()
    trainer_ref: list[RecordingTrainer] = []
    trainer = RecordingTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=DataCollatorWithPadding(tokenizer) if best else default_data_collator,
        processing_class=tokenizer,
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
        callbacks=[StepTimerCallback(trainer_ref, measurements, args.warmup)],
    )
    trainer_ref.append(trainer)

    start = time.perf_counter()
    trainer.evaluate()  # the untimed warm-up pass, as the Lightning rows' full sanity check
    measurements.eval_warmup_seconds = time.perf_counter() - start
    trainer.train()
    start = time.perf_counter()
    trainer.evaluate()
    measurements.eval_seconds = time.perf_counter() - start
    measurements.eval_samples = len(validation)
    measurements.finish(torch.bfloat16 if best else torch.float32, Path(args.output))


if __name__ == "__main__":
    main()
