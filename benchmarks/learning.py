"""Does the fast configuration learn as well as the seed-faithful one? Best validation macro-F1, over seeds.

    python benchmarks/learning.py                      # 3 seeds x 2 configs, tiny ALBERT, 5 epochs
    python benchmarks/learning.py --seeds 1 2 3 --epochs 10 --jobs 2 --threads 1   # two fits at a time
    python benchmarks/learning.py --variant "window8=--data.group_by_length_window 8" --rows window8   # ablation

Both rows run through the CLI with the shipped configs (configs/albert-base-v2.yaml, configs/fast.yaml), made
offline the same way: a tiny ALBERT from a config (albert-base-v2 would take hours on a CPU), the shared
albert-base-v2 tokenizer, a from-scratch learning rate (3e-4, as configs/offline.yaml for this architecture: at
1e-3 some runs sat at the majority class for 7 of 10 epochs, so a 3-seed mean said more about luck than about
the config). Everything else — batch size, schedule, clipping, and
the switches that make fast.yaml fast (length-grouped batches, bf16-mixed, torch.compile, fused AdamW where
allowed, padding to multiples of 8) — comes from the config files.
"""

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATA = SHARED / "data" / "financial_phrasebank_allagree"
TINY = {
    "embedding_size": 64,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
}
CONFIGS = {"seed-faithful": "configs/albert-base-v2.yaml", "fast": "configs/fast.yaml"}


def run(
    config: str, extra: list[str], seed: int, epochs: int, lr: float, root: Path, threads: int | None
) -> tuple[float, float]:
    """Best validation macro-F1 of one fit (`extra` CLI arguments after the config's), and its wall time in s."""
    command = [
        sys.executable, "-m", "lightning_albert", "fit", "--config", config,
        "--seed_everything", str(seed),
        "--model.pretrained", "null", "--model.config", json.dumps(TINY),
        "--model.learning_rate", str(lr), "--model.warmup_ratio", "0.1",
        "--data.tokenizer", str(SHARED / "assets" / "albert-base-v2-tokenizer"),
        "--data.train_file", str(DATA / "train.csv"), "--data.validation_file", str(DATA / "validation.csv"),
        "--data.test_file", "null", "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root), *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}))
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    (metrics,) = root.glob("lightning_logs/version_*/metrics.csv")
    with open(metrics, newline="") as f:
        scores = [float(r["val_f1"]) for r in csv.DictReader(f) if r.get("val_f1")]
    return max(scores), seconds


def table_rows(variants: list[str], selected: list[str] | None) -> dict[str, tuple[str, list[str]]]:
    """Row name -> (config, extra CLI arguments): the shipped configs, then each NAME=ARGS variant of fast.yaml;
    only the `selected` names when given."""
    rows = {name: (config, []) for name, config in CONFIGS.items()}
    for variant in variants:
        name, equals, extra = variant.partition("=")
        if not name or not equals or not extra.strip():
            raise ValueError(f'--variant {variant!r}: write NAME=ARGS, e.g. "w8=--data.group_by_length_window 8"')
        if name in rows:
            raise ValueError(f"--variant {name}: that row is already defined; give the variant another name")
        rows[name] = (CONFIGS["fast"], shlex.split(extra))
    unknown = set(selected or []) - set(rows)
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(sorted(unknown))}; defined: {', '.join(rows)}")
    return {name: row for name, row in rows.items() if not selected or name in selected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-4, help="Learning rate of every row (from scratch).")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="Fits run at the same time (tiny models use cores best as several one-thread processes).",
    )
    parser.add_argument("--threads", type=int, help="torch threads per fit (default: torch's own choice).")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='A further row: fast.yaml with these CLI arguments after it, e.g. "w8=--data.group_by_length_window 8".',
    )
    parser.add_argument("--rows", nargs="+", help="Rows to run, by name (default: all).")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "learning.md")
    args = parser.parse_args()
    try:
        rows = table_rows(args.variant, args.rows)
    except ValueError as e:
        parser.error(str(e))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    runs = [(seed, name) for seed in args.seeds for name in rows]  # interleaved
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run, *rows[name], seed, args.epochs, args.lr, Path(work) / f"{name}-{seed}", args.threads)
            for seed, name in runs
        ]
        for (seed, name), future in zip(runs, futures):
            f1, seconds = future.result()
            results[name].append((f1, seconds))
            print(f"{name:14s} seed {seed}: best val macro-F1 {f1:.4f} in {seconds:.0f} s", flush=True)
    lines = [
        f"Best validation macro-F1 on financial_phrasebank_allagree, tiny ALBERT ({args.epochs} epochs, batch 8, "
        f"lr {args.lr:g}), "
        f"seeds {', '.join(map(str, args.seeds))}; {args.jobs} fit(s) at a time, "
        f"{args.threads or 'default'} thread(s) each:",
        "",
        "| config | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | wall s (mean) |",
        "|---|" + "---:|" * (len(args.seeds) + 2),
    ]
    for name, scores in results.items():
        f1s = [f for f, _ in scores]
        cells = " | ".join(f"{f:.4f}" for f in f1s)
        lines.append(f"| {name} | {cells} | {statistics.mean(f1s):.4f} | {statistics.mean(s for _, s in scores):.0f} |")
    lines += ["", *(f"`{name}`: {' '.join(extra)}" for name, (_, extra) in rows.items() if extra)]
    if "seed-faithful" in results:
        base = statistics.mean(f for f, _ in results["seed-faithful"])
        for name in [n for n in results if n != "seed-faithful"]:
            gap = statistics.mean(f for f, _ in results[name]) - base
            lines.append(f"{name} - seed-faithful, mean best macro-F1: {gap:+.4f} (target: within 0.01)")
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
