"""Inference speed of an export against a transformers pipeline on it, side by side in one sitting.

    python benchmarks/inference.py --run <run folder>                 # a run of the albert-base-v2 architecture
    python benchmarks/inference.py --run <run folder> --texts 64 --rounds 1 --output /tmp/inference.md  # the harness

Rows: `transformers.pipeline(model=<run>/hf_model, batch_size=32, truncation=True)` (float32, the baseline), and
ONNX Runtime on `export --format onnx` (float32) and `--quantize int8`, fed length-sorted batches of 32 with the
order restored (what `predict` does). Every row reads the same test texts of financial_phrasebank_allagree, in
interleaved rounds (forward order, then reversed), on `--threads` threads; each figure is a median over rounds.
Label agreement and the largest probability difference are against the pipeline's answers.

Not rows yet (issue #27): `predict` itself, `serve` under concurrent clients, bf16 and torch.compile.
"""

import argparse
import csv
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TEXTS = SHARED / "data" / "financial_phrasebank_allagree" / "test.csv"
BATCH = 32


def pipeline_row(folder: Path, texts: list[str]):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")

    def run() -> np.ndarray:
        out = classify(texts, batch_size=BATCH, truncation=True)
        labels = list(classify.model.config.id2label.values())
        return np.array([[next(s["score"] for s in row if s["label"] == name) for name in labels] for row in out])

    return run


def onnx_row(folder: Path, texts: list[str]):
    from transformers import AutoTokenizer

    from lightning_albert.onnx_export import OnnxClassifier

    model, tokenizer = OnnxClassifier(folder), AutoTokenizer.from_pretrained(folder)

    def run() -> np.ndarray:
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        probabilities = np.zeros((len(texts), 0))
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            encoded = tokenizer([texts[i] for i in rows], truncation=True, padding=True, return_token_type_ids=True,
                                return_tensors="np")  # fmt: skip
            p = model(encoded).softmax(-1).numpy()
            if probabilities.shape[1] == 0:
                probabilities = np.zeros((len(texts), p.shape[1]))
            probabilities[rows] = p
        return probabilities

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a fit run folder (its hf_model and best checkpoint)")
    parser.add_argument("--texts", type=int, default=0, help="test texts to read (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "inference.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from lightning_albert.export import export_checkpoint

    with open(TEXTS, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    texts = texts[: args.texts] if args.texts else texts
    checkpoint = next((args.run / "checkpoints").glob("best-*.ckpt"), args.run / "checkpoints" / "last.ckpt")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "pipeline(batch_size=32), float32": pipeline_row(args.run / "hf_model", texts),
            "ONNX Runtime, float32": onnx_row(export_checkpoint(checkpoint, Path(tmp) / "f32", format="onnx"), texts),
            "ONNX Runtime, int8": onnx_row(
                export_checkpoint(checkpoint, Path(tmp) / "i8", format="onnx", quantize="int8"), texts
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in rows}
        answers: dict[str, np.ndarray] = {}
        for r in range(args.rounds):
            for name in list(rows) if r % 2 == 0 else reversed(list(rows)):
                started = time.perf_counter()
                answers[name] = rows[name]()
                seconds[name].append(time.perf_counter() - started)
    baseline = next(iter(rows))
    reference = answers[baseline]
    base_speed = len(texts) / statistics.median(seconds[baseline])
    lines = [
        f"# Inference, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"{platform.processor() or platform.machine()}, {args.threads} threads; {len(texts)} texts of {TEXTS.name} "
        f"({TEXTS.parent.name}); run {args.run}; median of {args.rounds} interleaved rounds.",
        "",
        "| row | texts/s | vs pipeline | labels equal to pipeline | largest probability difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in rows:
        speed = len(texts) / statistics.median(seconds[name])
        agree = float(np.mean(answers[name].argmax(1) == reference.argmax(1)))
        diff = float(np.abs(answers[name] - reference).max())
        lines.append(f"| {name} | {speed:.1f} | {speed / base_speed:.2f}x | {agree:.2%} | {diff:.1e} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
