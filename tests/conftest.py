"""Shared fixtures: the real data in ../shared, a tiny ALBERT, and a way to run the CLI as a user does."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Under pytest-xdist (README's test command runs two workers), the cores are split between the workers, and the
# CLI processes a test starts inherit the share: torch's default of one thread per core in every worker would
# oversubscribe the cores, and OpenMP threads spin waiting on each other. Only the speed changes, not a result.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(_threads))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
PHRASEBANK = DATA / "financial_phrasebank_allagree"
ALBERT_BASE_TOKENIZER = SHARED / "assets" / "albert-base-v2-tokenizer"
ALBERT_BASE_CONFIG = SHARED / "assets" / "albert-base-v2-config.json"

# Small enough that a CPU epoch over a few hundred short texts takes seconds.
TINY_ALBERT = {
    "embedding_size": 32,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 128,
}


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m lightning_albert ARGS` in a fresh process, as a user types it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LIGHTNING_ALBERT_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "lightning_albert", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
        )
    return result


def tiny_model_args() -> list[str]:
    return ["--model.config", json.dumps(TINY_ALBERT), "--model.learning_rate", "0.001"]


@pytest.fixture(scope="session", autouse=True)
def _token_cache_in_tmp(tmp_path_factory):
    """The token cache of every test, and of the CLI processes `run_cli` starts (they inherit os.environ), goes
    to a fresh folder, never into the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not PHRASEBANK.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read the real data sets from ../shared beside the repo.")
    return DATA


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def logged_rows(run: Path, prefix: str) -> list[dict[str, float]]:
    """Rows of a run's metrics.csv that carry `<prefix>_loss`, as floats."""
    rows = read_csv(run / "metrics.csv")
    return [{k: float(v) for k, v in row.items() if v != ""} for row in rows if row.get(f"{prefix}_loss")]


def only_run(root: Path) -> Path:
    runs = sorted((root / "lightning_logs").glob("version_*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="session")
def fitted(tmp_path_factory, shared_data) -> Path:
    """The quickstart config pointed at a slice of financial_phrasebank, with a tiny ALBERT, two epochs.

    One fit shared by the CLI, report and export tests: each CLI process costs seconds of imports alone.
    """
    root = tmp_path_factory.mktemp("fit")
    result = run_cli(
        "fit", "--config", "configs/quickstart.yaml",
        "--data.train_file", str(PHRASEBANK / "train.csv"),
        "--data.validation_file", str(PHRASEBANK / "validation.csv"),
        "--data.test_file", str(PHRASEBANK / "test.csv"),
        "--data.predict_file", str(PHRASEBANK / "test.csv"),
        "--data.max_train_samples", "320",
        "--trainer.max_epochs", "2",
        "--trainer.default_root_dir", str(root),
        *tiny_model_args(),
    )  # fmt: skip
    run = only_run(root)
    (root / "console.txt").write_text(result.stdout + result.stderr)  # what the user saw, for the summary tests
    return run


@pytest.fixture(scope="session")
def pair_run(tmp_path_factory, shared_data) -> tuple[Path, list[dict[str, str]]]:
    """A sentence-pair run (max_length 32: most pairs are longer) and `predict`'s rows for 40 test pairs.

    Shared by the export and serve tests, which check that both answer as `predict` does.
    """
    root = tmp_path_factory.mktemp("pairs")

    def pairs(split: str, n: int) -> Path:
        source = read_csv(PHRASEBANK / f"{split}.csv")[: n + 1]
        path = root / f"{split}-pairs.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "text_pair", "label"])
            writer.writerows((a["text"], b["text"], a["label"]) for a, b in zip(source, source[1:]))
        return path

    run_cli(
        "fit", "--config", "configs/quickstart.yaml", "--data.text_pair_column", "text_pair",
        "--data.train_file", str(pairs("train", 320)), "--data.validation_file", str(pairs("validation", 64)),
        "--data.test_file", "null", "--data.max_length", "32", "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", str(root / "runs"), *tiny_model_args(),
    )  # fmt: skip
    run = only_run(root / "runs")
    predictions = root / "predictions.csv"
    run_cli("predict", "--config", str(run / "config.yaml"), "--ckpt_path", "best",
            "--data.predict_file", str(pairs("test", 40)), "--predictions_file", str(predictions),
            "--trainer.default_root_dir", str(root / "predict"))  # fmt: skip
    return run, read_csv(predictions)


# In-process CLI runs on a few hand-written rows, for the bad-input, format and checkpoint-safety tests.
GOOD = [
    ("Profits rose sharply in the third quarter.", "positive"),
    ("The company cut its outlook for the year.", "negative"),
    ("The meeting will be held in Helsinki.", "neutral"),
    ("Sales increased by 12 percent.", "positive"),
    ("Operating loss widened to EUR 3 million.", "negative"),
    ("The report is published on Tuesday.", "neutral"),
] * 3


def fit_args(folder: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
        "--data.train_file", str(folder / "train.csv"),
        "--data.validation_file", str(folder / "validation.csv"),
        "--data.test_file", "null", "--data.predict_file", "null",
        "--data.tokenizer_vocab_size", "100",
        "--model.config", json.dumps(TINY_ALBERT),
        "--trainer.default_root_dir", str(folder / "runs"),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def write_splits(folder: Path, train: list[tuple[str, str]], validation: list[tuple[str, str]]) -> None:
    """train.csv and validation.csv of (text, label) rows, as fit_args reads them."""
    for name, rows in (("train.csv", train), ("validation.csv", validation)):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text", "label"), *rows])


@pytest.fixture
def typed_at_a_shell(monkeypatch):
    """As if typed at a shell: LightningCLI warns when it sees pytest's own arguments beside `args`."""
    monkeypatch.setattr("sys.argv", ["lightning_albert"])


def run_main(args: list[str], capsys) -> tuple[int, str]:
    """`main(args)` in this process, as `python -m lightning_albert` runs it: its exit status and stderr."""
    from lightning_albert.cli import main  # here, not at the top: torch reads the thread settings above on import

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def assert_clear_error(code: int, err: str, fragments: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"


@pytest.fixture(scope="module")
def tokenizer():
    """The real albert-base-v2 tokenizer (../shared/assets)."""
    from lightning_albert.tokenizer import load_tokenizer  # here: torch reads the thread settings above on import

    return load_tokenizer(str(ALBERT_BASE_TOKENIZER))


@pytest.fixture(scope="module")
def texts(shared_data, tokenizer) -> list[dict]:
    """400 phrasebank texts as the pretraining data module hands them to the collator: ids without special tokens."""
    import torch

    rows = read_csv(PHRASEBANK / "train.csv")[:400]
    ids = tokenizer([r["text"] for r in rows], add_special_tokens=False)["input_ids"]
    return [{"input_ids": torch.tensor(x).numpy(), "row": i} for i, x in enumerate(ids)]


def markdown_table(card: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after `heading`, without its header and rule."""
    lines = card[card.index(heading) :].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def write_good_splits(folder: Path) -> None:
    """train.csv and validation.csv of the hand-written GOOD rows, as fit_args reads them."""
    write_splits(folder, GOOD, GOOD)


# Real data shaped as the other tasks, for the multi-label and regression tests (test_tasks_*, test_distributed).
EMOTION = DATA / "tweeteval_emotion"
SST5 = DATA / "sst5"
SST5_CLASSES = ["very negative", "negative", "neutral", "positive", "very positive"]


def joined_tweets(split: str, n: int, path: Path) -> list[dict[str, str]]:
    """`n` rows of one or two consecutive tweets, labelled with their emotions joined by '|'."""
    tweets = read_csv(EMOTION / f"{split}.csv")
    rows, i = [], 0
    for k in range(n):
        size = 2 if k % 3 else 1
        group = tweets[i : i + size]
        i += size
        rows.append(
            {"text": " ".join(t["text"] for t in group), "labels": "|".join(sorted({t["label"] for t in group}))}
        )
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def scored_pairs(split: str, n: int, path: Path) -> list[dict[str, str]]:
    sentences = read_csv(SST5 / f"{split}.csv")[: 2 * n]
    rows = [
        {
            "text": a["text"],
            "text_pair": b["text"],
            "score": str((SST5_CLASSES.index(a["label"]) + SST5_CLASSES.index(b["label"])) / 2),
        }
        for a, b in zip(sentences[::2], sentences[1::2])
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "text_pair", "score"])
        writer.writeheader()
        writer.writerows(rows)
    return rows
