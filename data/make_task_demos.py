#!/usr/bin/env python3
"""Generate the multi-label and regression demo sets from the demo data (data/demo, composed for this project).

Standard library only and seeded, so re-running rewrites byte-identical files. Each split is built from the
same split of data/demo, and every message is used once, so no text crosses splits.

    python3 data/make_task_demos.py

demo_multilabel/  a customer writes about one to three things at once: the messages joined, labelled with every
                  team that must act (names joined by "|", as `data.label_separator` reads by default).
demo_regression/  the same kind of joined messages, scored with the share of their parts that the billing team
                  must handle (0 to 1): a synthetic score that exercises `data.task: regression`.
"""

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "demo"
SEED = 42
ROWS = {"train": 300, "validation": 80, "test": 80}
PARTS = [1, 1, 1, 1, 2, 2, 2, 3]  # how many messages a row joins: half are single, as in real inboxes
SCORED_ROWS = {"train": 220, "validation": 55, "test": 55}
SCORED_PARTS = [1, 2, 2, 3, 3, 4]  # longer joins: shares between 0 and 1, not only the two ends


def read(split: str) -> list[dict[str, str]]:
    with open(SOURCE / f"{split}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def joined_rows(messages: list[dict[str, str]], rows: int, rng: random.Random, parts: list[int]) -> list[list[dict]]:
    """`rows` groups of `parts` messages, each message in at most one group."""
    pool = messages[:]
    rng.shuffle(pool)
    groups = []
    for _ in range(rows):
        n = min(rng.choice(parts), len(pool))
        if n == 0:
            raise SystemExit(f"not enough messages for {rows} rows")
        groups.append([pool.pop() for _ in range(n)])
    return groups


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    for split, rows in ROWS.items():
        messages = read(split)
        rng = random.Random(f"{SEED}-{split}")
        groups = joined_rows(messages, rows, rng, PARTS)
        labelled = [[" ".join(m["text"] for m in g), "|".join(sorted({m["label"] for m in g}))] for g in groups]
        write(HERE / "demo_multilabel" / f"{split}.csv", ["text", "labels"], labelled)
        groups = joined_rows(messages, SCORED_ROWS[split], rng, SCORED_PARTS)
        scored = [
            [" ".join(m["text"] for m in g), f"{sum(m['label'] == 'billing' for m in g) / len(g):.4f}"]
            for g in groups
        ]
        write(HERE / "demo_regression" / f"{split}.csv", ["text", "billing_share"], scored)
        print(f"{split}: {rows} multi-label and {len(scored)} regression rows from {len(messages)} messages")


if __name__ == "__main__":
    main()
