"""Does the offline default beat a bag-of-words baseline? Test scores on each shared data set, over seeds.

    python benchmarks/quality.py --jobs 2 --threads 1               # 3 data sets x seeds 1 2 3, two at a time
    python benchmarks/quality.py --datasets sst5 --seeds 1 --output /tmp/quality.md
    python benchmarks/quality.py --seeds 2 3 --merge benchmarks/results/quality.json   # add seeds to a table
    python benchmarks/quality.py --seeds --merge a.json b.json --output c.md   # tables of runs made apart

Each run is what README tells a user to type: `pretrain` on the training texts (configs/pretrain.yaml), then
`fit --config configs/offline.yaml --model.pretrained <its export>`, with the data files on the command line.
The recipe is chosen on validation; the test split is scored once, by the best checkpoint, at the end of fit.
Every fit also fits the TF-IDF + logistic-regression baseline on the same training split (baseline.py), so
both rows come from the same report.json. CPU time is user + system seconds of a run's processes, counted in
the worker that waited for them, so it holds also with `--jobs 2` (two runs at once, e.g. one thread each).
"""

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from lightning_albert.reporting.history import read_run

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
PRETRAIN_STEPS = yaml.safe_load((REPO / "configs" / "pretrain.yaml").read_text())["trainer"]["max_steps"]
DATASETS = ("financial_phrasebank_allagree", "tweeteval_emotion", "sst5")


def cli(*args: str, threads: int | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    command = [sys.executable, "-m", "lightning_albert", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(f"python -m lightning_albert {' '.join(args)}\nfailed:\n{result.stderr[-3000:]}")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    dataset: str,
    seed: int,
    work: Path,
    pretrain: bool,
    threads: int | None,
    steps: int | None = None,
    fit_args: list[str] = (),
    reuse: Path | None = None,
    pretrain_args: list[str] = (),
) -> dict:
    """One seed on one data set: the report.json figures of ALBERT and of the baseline, and the CPU spent.

    `steps` overrides configs/pretrain.yaml's budget (trainer.max_steps), to measure a longer one on validation;
    `fit_args` are more fit arguments (a fine-tuning lever), `pretrain_args` more pretrain ones; `reuse` is the
    --keep folder of an earlier sitting, whose pretraining export of this data set and seed is fine-tuned
    instead of pretraining again.
    """
    files = DATA / dataset
    started, wall = cpu_seconds(), time.perf_counter()
    extra = []
    if reuse:
        extra = ["--model.pretrained", str(kept_export(reuse / work.name / "pretrain"))]
    elif pretrain:
        cli(
            "pretrain", "--config", "configs/pretrain.yaml", "--seed_everything", str(seed),
            "--data.train_file", str(files / "train.csv"), "--trainer.default_root_dir", str(work / "pretrain"),
            "--trainer.enable_progress_bar", "false", *(["--trainer.max_steps", str(steps)] if steps else []),
            *pretrain_args, threads=threads,
        )  # fmt: skip
        extra = ["--model.pretrained", str(kept_export(work / "pretrain"))]
    pretrain_cpu = cpu_seconds() - started
    cli(
        "fit", "--config", "configs/offline.yaml", "--seed_everything", str(seed),
        "--data.train_file", str(files / "train.csv"), "--data.validation_file", str(files / "validation.csv"),
        "--data.test_file", str(files / "test.csv"), "--trainer.default_root_dir", str(work / "fit"),
        "--trainer.enable_progress_bar", "false", *extra, *fit_args, threads=threads,
    )  # fmt: skip
    (folder,) = (work / "fit").glob("lightning_logs/version_*")
    report = json.loads((folder / "report.json").read_text())
    return {
        "dataset": dataset,
        "seed": seed,
        "albert_validation": read_run(folder).best.metrics,
        "baseline_validation": report["baseline"]["validation"]["metrics"],
        "albert": report["test"]["metrics"],
        "baseline": report["baseline"]["test"]["metrics"],
        "baseline_fit_seconds": report["baseline"]["fit_seconds"],
        "cpu_seconds": cpu_seconds() - started,
        "pretrain_cpu_seconds": None if reuse else pretrain_cpu,
        "wall_seconds": time.perf_counter() - wall,
    }


def kept_export(root: Path) -> Path:
    """The one pretraining export under a pretrain root folder; a missing or ambiguous one is named, not unpacked."""
    exports = sorted(root.glob("lightning_logs/version_*/hf_model"))
    if len(exports) != 1:
        raise SystemExit(
            f"{root}: expected one pretraining export (lightning_logs/version_*/hf_model), found {len(exports)}"
        )
    return exports[0]


def already_run(rows: list[dict], jobs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (data set, seed) jobs that `rows` already hold: checked before an hour is spent on them again."""
    return sorted({(r["dataset"], r["seed"]) for r in rows} & set(jobs))


def merged(earlier: list[dict], new: list[dict]) -> list[dict]:
    """Rows of two sittings as one table's: by data set, then seed."""
    if clash := already_run(earlier, [(r["dataset"], r["seed"]) for r in new]):
        raise ValueError(f"both sittings ran {clash}")
    return sorted(earlier + new, key=lambda r: (DATASETS.index(r["dataset"]), r["seed"]))


def table(results: list[dict], split: str = "test") -> str:
    """Means and ranges over seeds on the test split, or on the validation split (where recipes are chosen)."""
    ours, theirs = {"test": ("albert", "baseline"), "validation": ("albert_validation", "baseline_validation")}[split]
    lines = [
        f"| data set | offline default, {split} accuracy | macro-F1 | TF-IDF + LR, {split} accuracy | macro-F1 "
        "| beats it? | CPU min per run (pretrain + fit) | baseline fit s |",
        "|---|---:|---:|---:|---:|:-:|---:|---:|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == dataset]
        (acc, acc_cell), (f1, f1_cell) = _spread(rows, ours, "accuracy"), _spread(rows, ours, "f1")
        (b_acc, b_acc_cell), (b_f1, b_f1_cell) = _spread(rows, theirs, "accuracy"), _spread(rows, theirs, "f1")
        beats = {(True, True): "yes", (True, False): "accuracy only", (False, True): "F1 only"}.get(
            (acc > b_acc, f1 > b_f1), "no"
        )
        cpu = statistics.mean(r["cpu_seconds"] for r in rows) / 60
        reused = any(r["pretrain_cpu_seconds"] is None for r in rows)
        pre = 0.0 if reused else statistics.mean(r["pretrain_cpu_seconds"] for r in rows) / 60
        seconds = statistics.mean(r["baseline_fit_seconds"] for r in rows)
        lines.append(
            f"| {dataset} | {acc_cell} | {f1_cell} | {b_acc_cell} | {b_f1_cell} | {beats} | "
            + (f"fit {cpu:.1f} (pretraining reused)" if reused else f"{cpu:.1f} ({pre:.1f} + {cpu - pre:.1f})")
            + f" | {seconds:.1f} |"
        )
    return "\n".join(lines)


def _spread(rows: list[dict], model: str, metric: str) -> tuple[float, str]:
    """The mean over seeds, and a cell with the mean and the range."""
    values = [r[model][metric] for r in rows]
    mean = statistics.mean(values)
    return mean, f"{mean:.3f} ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else f"{mean:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=[1, 2, 3], help="`--seeds` alone, with --merge: only the tables"
    )
    parser.add_argument("--no_pretrain", action="store_true", help="fit configs/offline.yaml from scratch")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each in its own process (CPU time is counted per run)"
    )
    parser.add_argument("--threads", type=int, help="torch threads per run (OMP_NUM_THREADS); default torch's")
    parser.add_argument("--pretrain_steps", type=int, help="pretraining budget instead of configs/pretrain.yaml's")
    parser.add_argument(
        "--fit_args", default="", help='more fit arguments, one string, e.g. "--model.learning_rate 1e-4"'
    )
    parser.add_argument(
        "--pretrain_args", default="", help='more pretrain arguments, one string, e.g. "--model.learning_rate 1e-3"'
    )
    parser.add_argument(
        "--reuse", type=Path, help="an earlier sitting's --keep folder: fine-tune its pretraining exports again"
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "quality.md")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the run folders here (pretraining exports, to fine-tune them again); default: "
        "a temporary folder, removed at the end",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=[],
        help="earlier runs' .json files (same recipe, other data sets or seeds): their rows join this table",
    )
    args = parser.parse_args()
    if not args.seeds and not args.merge:
        parser.error("nothing to do: give --seeds, or --merge files whose tables to write")
    earlier = []
    for path in args.merge:
        earlier = merged(earlier, json.loads(path.read_text()))
    if clash := already_run(earlier, [(d, s) for d in args.datasets for s in args.seeds]):
        parser.error(
            f"--merge {' '.join(map(str, args.merge))} already holds {clash}: run other seeds, or leave it out"
        )
    for d, s in [(d, s) for d in args.datasets for s in args.seeds] if args.reuse else []:
        kept_export(args.reuse / f"{d}-{s}" / "pretrain")  # before any run starts, not when a worker gets there
    more = f" {args.pretrain_args}" if args.pretrain_args else ""
    pretraining = f"pretrain ({args.pretrain_steps or PRETRAIN_STEPS} steps{more}) + "
    pretraining = f"the pretraining of {args.reuse} + " if args.reuse else "" if args.no_pretrain else pretraining
    recipe = pretraining + "fit with configs/offline.yaml" + (f" {args.fit_args}" if args.fit_args else "")
    # The largest data set first, so that two workers finish together rather than one waiting on the last run.
    jobs = sorted(((d, s) for d in args.datasets for s in args.seeds), key=lambda j: -DATASETS.index(j[0]))
    with tempfile.TemporaryDirectory() as scratch, ProcessPoolExecutor(args.jobs) as pool:
        work = args.keep or scratch
        pretrain = not args.no_pretrain
        futures = [
            pool.submit(
                run,
                d,
                s,
                Path(work) / f"{d}-{s}",
                pretrain,
                args.threads,
                args.pretrain_steps,
                shlex.split(args.fit_args),
                args.reuse,
                shlex.split(args.pretrain_args),
            )
            for d, s in jobs
        ]
        results = []
        for future in futures:
            results.append({**future.result(), "recipe": recipe})
            print(json.dumps(results[-1]), flush=True)
    results = merged(earlier, results)
    # Rows written before rows recorded their recipe are taken to be this sitting's (pass the same arguments).
    recipe = "; ".join(dict.fromkeys(r.get("recipe", recipe) for r in results)) or recipe
    seeds = sorted({r["seed"] for r in results})
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    text = (
        f"Test scores, mean (min-max) over seeds {', '.join(map(str, seeds))}; "
        f"{recipe}; {stamp} UTC, 2 CPU cores"
        + (f" ({len(earlier)} runs from {', '.join(map(str, args.merge))})" if earlier else "")
        + ".\n\n"
        + table(results)
        + "\n\nThe validation split, where recipes are chosen (best checkpoint's epoch):\n\n"
        + table(results, "validation")
        + "\n"
    )
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
