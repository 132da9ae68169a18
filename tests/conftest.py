"""Shared fixtures: the real data in ../shared, a tiny ALBERT, and a way to run the CLI as a user does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not PHRASEBANK.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read the real data sets from ../shared beside the repo.")
    return DATA
