"""Time and peak memory of `setup("fit")` as the data grows: empty, 100k and 1M rows of short texts.

Each size runs in a fresh subprocess, so peak RSS (`ru_maxrss`) is that size's alone. The "empty" run sets up a
three-row file: the imports and the tokenizer, which the other sizes subtract. The token cache is off, so every
size tokenizes. Run from the repository root:

    python benchmarks/setup_scale.py [--sizes 0 100000 1000000]
"""

import argparse
import csv
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO.parent / "shared" / "assets" / "albert-base-v2-tokenizer"
WORDS = (
    "the company said profits sales rose fell percent quarter year market shares growth outlook "
    "operating loss board meeting report net revenue expected increased decreased million euro"
).split()
LABELS = ("negative", "neutral", "positive")


def write_csv(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(max(rows, 3)):  # "empty": a row per class, the smallest file the DataModule accepts
            words = rng.choices(WORDS, k=rng.randint(10, 20))
            writer.writerow([" ".join(words).capitalize() + ".", LABELS[i % 3]])


def measure(train: str, validation: str) -> None:
    """In the child: import, set up for fit, print seconds and peak RSS in MB."""
    sys.path.insert(0, str(REPO))  # this checkout's package, whichever one is installed
    from lightning_albert.data import TextClassificationDataModule

    start = time.perf_counter()
    data = TextClassificationDataModule(
        train_file=train, validation_file=validation, tokenizer=str(TOKENIZER), cache_tokens=False
    )
    data.setup("fit")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(f"{len(data.split('train'))} {seconds:.2f} {peak_mb:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100_000, 1_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        validation = Path(folder) / "validation.csv"
        write_csv(validation, 1000, seed=1)
        results = []
        for size in args.sizes:
            train = Path(folder) / f"train_{size}.csv"
            write_csv(train, size, seed=0)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(train), str(validation)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows, seconds, peak = out.stdout.split()[-3:]
            results.append((size, int(rows), float(seconds), float(peak)))
            train.unlink()
    base_peak = results[0][3]
    print(f"{'rows':>9} {'setup s':>8} {'peak RSS MB':>12} {'+MB over empty':>15} {'bytes/row':>10}")
    for size, _, seconds, peak in results:
        extra = peak - base_peak
        per_row = f"{extra * 2**20 / size:.0f}" if size else "-"
        print(f"{size:>9} {seconds:>8.2f} {peak:>12.0f} {extra:>15.0f} {per_row:>10}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        measure(sys.argv[2], sys.argv[3])
    else:
        main()
