"""Training and evaluation speed and peak memory of lightning_albert against the Hugging Face Trainer, side by side.

    python benchmarks/speed.py                         # the real run: albert-base-v2, 30 steps after 5, twice
    python benchmarks/speed.py --tiny --steps 3 --warmup 1 --repeats 1 --output /tmp/speed.md   # the harness

Every row trains the albert-base-v2 architecture from random weights (no pretrained weights exist offline) on
financial_phrasebank_allagree, batch 8, max_length 128, on `--threads` torch threads, each run in its own
fresh subprocess so its peak RSS is its own. Rows are interleaved (forward order, then reversed, ...) so the
drift of a shared host falls on all rows alike, and every figure is a median. See benchmarks/README.md.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

SEED_CONFIG_ARGS = ["--config", "configs/albert-base-v2.yaml"]
# The fast configuration: the seed recipe with group_by_length, bf16-mixed, torch.compile, pad_to_multiple_of 8,
# and length-sorted evaluation in batches of 32.
FAST_CONFIG_ARGS = ["--config", "configs/fast.yaml"]

# A model small enough to check the harness in seconds (--tiny); vocabulary and positions come from the
# tokenizer and max_length as for the real model.
TINY_CONFIG = {
    "model_type": "albert",
    "embedding_size": 16,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_hidden_groups": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_act": "gelu_new",
    "max_position_embeddings": 512,
    "classifier_dropout_prob": 0.1,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 3,
}


@dataclass
class Row:
    key: str
    name: str
    kind: str  # "lightning" or "hf"
    args: list[str]  # config arguments (lightning) or --mode (hf)


ROWS = [
    Row("seed", "lightning_albert, seed-faithful (fp32)", "lightning", SEED_CONFIG_ARGS),
    Row("fast", "lightning_albert, fast config", "lightning", FAST_CONFIG_ARGS),
    Row("hf-run_glue", "HF Trainer as run_glue (pad to 128, fp32)", "hf", ["--mode", "run_glue"]),
    # At its best also evaluates in batches of 32, as fast.yaml does: the same lever is open to a Trainer user.
    Row(
        "hf-best",
        "HF Trainer at its best (dynamic padding, length-grouped, bf16, eval batch 32)",
        "hf",
        ["--mode", "best", "--eval-batch-size", "32"],
    ),
    # The Trainer's own torch.compile switch on top (issue 27): what a Trainer user at their best would also set.
    Row(
        "hf-best-compile",
        "HF Trainer at its best, torch_compile=True",
        "hf",
        ["--mode", "best", "--eval-batch-size", "32", "--torch-compile"],
    ),
]
BEST_TRAINER = ("hf-best", "hf-best-compile")


def row_command(row: Row, opts: argparse.Namespace, output: Path, run_dir: Path) -> list[str]:
    """The child's command line, run in the repository root."""
    common = dict(train=str(opts.data / "train.csv"), validation=str(opts.data / "validation.csv"))
    total = opts.warmup + opts.steps
    if row.kind == "hf":
        return [
            sys.executable, "-m", "benchmarks.hf_trainer", *row.args,
            "--output", str(output),
            "--model-config", str(opts.model_config),
            "--tokenizer", str(opts.tokenizer),
            "--train-file", common["train"],
            "--validation-file", common["validation"],
            "--steps", str(opts.steps),
            "--warmup", str(opts.warmup),
            "--batch-size", "8",
            "--max-length", "128",
            "--threads", str(opts.threads),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "lightning_albert", "fit", *row.args,
        # offline: random weights from the architecture's config, the shared tokenizer, the shared data
        "--model.pretrained", "null",
        "--model.config", str(opts.model_config),
        "--data.tokenizer", str(opts.tokenizer),
        "--data.train_file", common["train"],
        "--data.validation_file", common["validation"],
        # batch sizes (train 8; evaluation 8 seed-faithful, 32 fast) and max_length 128 come from the configs
        "--trainer.max_steps", str(total),
        # One timed validation pass after the last step (no epoch-end validation), and the whole validation
        # set as the sanity check before training: the untimed pass that warms evaluation up.
        "--trainer.val_check_interval", str(total),
        "--trainer.check_val_every_n_epoch", "null",
        "--trainer.num_sanity_val_steps", "-1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.callbacks+=benchmarks.timing.StepTimer",
        "--trainer.callbacks.output", str(output),
        "--trainer.callbacks.warmup_steps", str(opts.warmup),
        "--trainer.callbacks.threads", str(opts.threads),
    ]  # fmt: skip


def run_child(command: list[str], log: Path, threads: int) -> tuple[int, float, float]:
    """Run one row; its exit code, its own peak RSS in MB (ru_maxrss from wait4) and its wall seconds."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",  # nothing is fetched: a row that tried would fail, not wait
        PYTHONUNBUFFERED="1",
    )
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, time.perf_counter() - start  # Linux: ru_maxrss in KiB


def applied_matmul_params(model_config: Path, tokenizer: Path) -> int:
    """Matmul weights applied to every token in one forward pass: the N of the 6 * N * tokens estimate.

    ALBERT shares one layer's weights across all its layers, so its parameter count (11.7M for base) says
    nothing of its compute; counting each nn.Linear per call on the token sequence counts the shared layer
    once per layer (about 85M for base). Embedding lookups and the pooler/classifier (once per sequence) are
    not counted.
    """
    import torch
    from transformers import AlbertConfig, AlbertForSequenceClassification, AutoTokenizer

    config = AlbertConfig.from_json_file(str(model_config))
    config.vocab_size = len(AutoTokenizer.from_pretrained(str(tokenizer)))
    model = AlbertForSequenceClassification(config).eval()
    counted: list[int] = []

    def count(module: torch.nn.Linear, inputs: tuple) -> None:
        if inputs[0].ndim == 3:  # (batch, tokens, features): applied per token
            counted.append(module.weight.numel())

    hooks = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model(input_ids=torch.ones(1, 8, dtype=torch.long))
    for hook in hooks:
        hook.remove()
    return sum(counted)


def summarize(runs: list[dict], params: int) -> dict:
    """Medians over all timed steps of a row's runs (pooled), medians of their validation passes."""
    steps = [
        (t, n, real, padded)
        for run in runs
        for t, n, real, padded in zip(
            run["step_seconds"], run["step_samples"], run["step_real_tokens"], run["step_padded_tokens"]
        )
    ]
    probe = statistics.median(run["probe_flops_per_second"] for run in runs)
    real_total, padded_total = sum(s[2] for s in steps), sum(s[3] for s in steps)
    return {
        "runs": len(runs),
        "timed_steps": len(steps),
        "median_step_seconds": statistics.median(s[0] for s in steps),
        "train_samples_per_second": statistics.median(n / t for t, n, _, _ in steps),
        # All timed samples over all their steps' time: an epoch's rate, where a long batch weighs what it costs.
        "train_samples_per_second_overall": sum(s[1] for s in steps) / sum(s[0] for s in steps),
        "real_tokens_per_second": statistics.median(real / t for t, _, real, _ in steps),
        "padded_tokens_per_second": statistics.median(padded / t for t, _, _, padded in steps),
        "padding_share": 1 - real_total / padded_total,
        "eval_samples_per_second": statistics.median(run["eval_samples"] / run["eval_seconds"] for run in runs),
        "eval_warmup_seconds": statistics.median(run["eval_warmup_seconds"] for run in runs),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "probe_dtype": runs[0]["probe_dtype"],
        "probe_flops_per_second": probe,
        "mfu_real_tokens": statistics.median(6 * params * real / t for t, _, real, _ in steps) / probe,
        "mfu_padded_tokens": statistics.median(6 * params * padded / t for t, _, _, padded in steps) / probe,
        "per_run_train_samples_per_second": [
            statistics.median(n / t for t, n in zip(run["step_seconds"], run["step_samples"])) for run in runs
        ],
    }


def markdown_table(rows: list[Row], results: dict[str, dict]) -> str:
    # The Trainer at its best: the faster of its best rows (with and without torch_compile) in each column.
    best = [results[key] for key in BEST_TRAINER if key in results]

    def baseline(column: str) -> float | None:
        return max(r[column] for r in best) if best else None

    lines = [
        "| run | train samples/s (median step / all steps) | real tokens/s | padding share | eval samples/s "
        "| peak RSS (MB) | MFU (real / padded tokens) | vs Trainer at its best (train all steps / eval) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = results[row.key]
        ratio = (
            f"{r['train_samples_per_second_overall'] / baseline('train_samples_per_second_overall'):.2f} / "
            f"{r['eval_samples_per_second'] / baseline('eval_samples_per_second'):.2f}"
            if best
            else "n/a"
        )
        lines.append(
            f"| {row.name} | {r['train_samples_per_second']:.2f} / {r['train_samples_per_second_overall']:.2f} "
            f"| {r['real_tokens_per_second']:.0f} "
            f"| {r['padding_share']:.1%} | {r['eval_samples_per_second']:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {r['mfu_real_tokens']:.1%} / {r['mfu_padded_tokens']:.1%} ({r['probe_dtype']}) | {ratio} |"
        )
    return "\n".join(lines)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="Optimizer steps timed per run, after the warm-up.")
    parser.add_argument("--warmup", type=int, default=5, help="Optimizer steps run first in every run, not timed.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of every row, interleaved (ABCD DCBA ...).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (and OMP/MKL threads) per run.")
    parser.add_argument(
        "--rows", nargs="+", choices=[r.key for r in ROWS], default=[r.key for r in ROWS], help="Rows to run."
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "financial_phrasebank_allagree")
    parser.add_argument("--model-config", type=Path, default=SHARED / "assets" / "albert-base-v2-config.json")
    parser.add_argument("--tokenizer", type=Path, default=SHARED / "assets" / "albert-base-v2-tokenizer")
    parser.add_argument("--tiny", action="store_true", help="A tiny ALBERT instead of --model-config (harness checks).")
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "benchmarks" / "results" / "speed.md",
        help="Markdown table to write; the JSON with every run's measurements goes beside it (.json).",
    )
    parser.add_argument("--work-dir", type=Path, help="Keep run folders and logs here (default: a temporary one).")
    return parser.parse_args()


def main() -> None:
    opts = parse_args()
    opts.data, opts.tokenizer = opts.data.resolve(), opts.tokenizer.resolve()
    rows = [r for r in ROWS if r.key in opts.rows]
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="lightning_albert_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    if opts.tiny:
        opts.model_config = work / "tiny-albert-config.json"
        opts.model_config.write_text(json.dumps(TINY_CONFIG, indent=1))
    opts.model_config = opts.model_config.resolve()

    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"warning: load average {load:.1f} before starting: with {opts.threads} threads per run, other work on "
            "the cores makes the steps many times slower (OpenMP threads wait on each other). Run in a quiet sitting.",
            file=sys.stderr,
        )
    runs: dict[str, list[dict]] = {r.key: [] for r in rows}
    commands: dict[str, list[str]] = {}
    for repeat in range(opts.repeats):
        # Forward, then reversed: a drift of the host over the sitting falls on every row alike.
        for row in rows if repeat % 2 == 0 else rows[::-1]:
            name = f"{row.key}-{repeat}"
            output, log = work / f"{name}.json", work / f"{name}.log"
            command = row_command(row, opts, output, work / name)
            commands[row.key] = command
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command)}", file=sys.stderr, flush=True)
            load_before = os.getloadavg()[0]
            code, rss_mb, wall = run_child(command, log, opts.threads)
            if code != 0 or not output.exists():
                tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
                sys.exit(f"{name} failed (exit {code}); the end of {log}:\n{tail}")
            shutil.rmtree(work / name, ignore_errors=True)  # checkpoints and exports: not measured, large
            run = json.loads(output.read_text())
            # The 1-minute load average around the run: other work on the cores shows here (see the README).
            run.update(peak_rss_mb=rss_mb, wall_seconds=wall, load_before=load_before, load_after=os.getloadavg()[0])
            runs[row.key].append(run)
            print(f"    {wall:.0f} s, peak RSS {rss_mb:.0f} MB, load {load_before:.1f}", file=sys.stderr, flush=True)

    params = applied_matmul_params(opts.model_config, opts.tokenizer)
    results = {key: summarize(key_runs, params) for key, key_runs in runs.items()}
    table = markdown_table(rows, results)
    import lightning
    import torch
    import transformers

    setting = (
        f"{opts.steps} timed optimizer steps after {opts.warmup} warm-up steps, {opts.repeats} interleaved runs "
        f"per row, batch 8, max_length 128, {opts.threads} threads; model {opts.model_config.name}"
        f"{' (tiny)' if opts.tiny else ''}, {params / 1e6:.2f}M matmul weights applied per token; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, lightning {lightning.__version__}, "
        f"{cpu_name()}, {time.strftime('%Y-%m-%d %H:%M')}."
    )
    note = (
        "Medians over all timed steps of a row's runs (a step: end of one optimizer step to the end of the next, "
        "data loading included); train samples/s also as all timed samples over all timed steps' time (an epoch's "
        "rate when the steps are nearly an epoch), which the ratio uses, against the faster of the Trainer's best "
        "rows (with and without torch_compile) present. Eval: one warm pass over the validation set. MFU: 6 x "
        "matmul weights applied per token x tokens per second (real = attention-mask tokens, padded = all tokens "
        "computed), over the median "
        "FLOP/s of 1024x1024 matmuls in the row's dtype measured in the same process on the same threads."
    )
    print(table)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(f"{setting}\n\n{table}\n\n{note}\n")
    opts.output.with_suffix(".json").write_text(
        json.dumps(
            {
                "setting": setting,
                "note": note,
                "matmul_params_per_token": params,
                "rows": {r.key: {"name": r.name, "command": commands[r.key], **results[r.key]} for r in rows},
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"wrote {opts.output} and {opts.output.with_suffix('.json')} (logs in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
