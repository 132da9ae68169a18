"""The harnesses' own arithmetic (benchmarks/speed.py, benchmarks/quality.py), checked against a computation by
hand; the speed harness itself runs with `python benchmarks/speed.py --tiny --steps 3 --warmup 1`."""

import json

import pytest

from benchmarks.speed import SHARED, applied_matmul_params, summarize


def test_matmul_weights_per_token_count_albert_shared_layer_once_per_layer():
    config_file = SHARED / "assets" / "albert-base-v2-config.json"
    c = json.loads(config_file.read_text())
    h, i, e = c["hidden_size"], c["intermediate_size"], c["embedding_size"]
    # embedding projection, then per layer: query, key, value, attention output, FFN in and out
    by_hand = e * h + c["num_hidden_layers"] * (4 * h * h + 2 * h * i)
    assert applied_matmul_params(config_file, SHARED / "assets" / "albert-base-v2-tokenizer") == by_hand
    assert 84e6 < by_hand < 86e6  # against ALBERT-base's 11.7M parameters


def test_summary_takes_medians_over_pooled_steps():
    def run(seconds, real):
        return {
            "step_seconds": seconds,
            "step_samples": [8] * len(seconds),
            "step_real_tokens": real,
            "step_padded_tokens": [1024] * len(seconds),
            "eval_seconds": 2.25,
            "eval_samples": 225,
            "eval_warmup_seconds": 9.0,
            "probe_dtype": "float32",
            "probe_flops_per_second": 1e11,
            "peak_rss_mb": 500.0,
        }

    s = summarize([run([1.0, 2.0, 100.0], [256, 256, 256]), run([1.0, 4.0], [512, 512])], params=1000)
    assert s["timed_steps"] == 5
    assert s["train_samples_per_second"] == pytest.approx(4.0)  # rates 8, 4, 0.08, 8, 2: median 4
    assert s["train_samples_per_second_overall"] == pytest.approx(5 * 8 / 108.0)  # 40 samples in 108 s
    assert s["padding_share"] == pytest.approx(1 - (3 * 256 + 2 * 512) / (5 * 1024))
    assert s["eval_samples_per_second"] == pytest.approx(100.0)
    # real tokens/s: 256, 128, 2.56, 512, 128 -> median 128
    assert s["mfu_real_tokens"] == pytest.approx(6 * 1000 * 128 / 1e11)


def row(dataset, seed, accuracy, f1):
    """One run's row as quality.py writes it."""
    return {
        "dataset": dataset, "seed": seed, "albert": {"accuracy": accuracy, "f1": f1},
        "baseline": {"accuracy": 0.6, "f1": 0.5}, "baseline_fit_seconds": 1.0,
        "albert_validation": {"accuracy": accuracy - 0.1, "f1": f1 + 0.1},
        "baseline_validation": {"accuracy": 0.7, "f1": 0.5},
        "cpu_seconds": 600.0 * seed, "pretrain_cpu_seconds": 60.0 * seed,
    }  # fmt: skip


def test_quality_table_merges_sittings_into_means_and_ranges_over_seeds():
    from benchmarks.quality import merged, table

    earlier = [row("sst5", 1, 0.6, 0.52)]
    rows = merged(
        earlier, [row("sst5", 3, 0.8, 0.44), row("tweeteval_emotion", 2, 0.9, 0.9), row("sst5", 2, 0.7, 0.51)]
    )
    assert [(r["dataset"], r["seed"]) for r in rows] == [
        ("tweeteval_emotion", 2),
        ("sst5", 1),
        ("sst5", 2),
        ("sst5", 3),
    ]
    sst5 = next(line for line in table(rows).splitlines() if line.startswith("| sst5 "))
    # mean (min-max) over the three seeds, the baseline's likewise; ahead on accuracy only; CPU minutes per run
    assert sst5.split(" | ")[1:] == [
        "0.700 (0.600-0.800)", "0.490 (0.440-0.520)", "0.600 (0.600-0.600)", "0.500 (0.500-0.500)",
        "accuracy only", "20.0 (2.0 + 18.0)", "1.0 |",
    ]  # fmt: skip
    sst5 = next(line for line in table(rows, "validation").splitlines() if line.startswith("| sst5 "))
    assert sst5.split(" | ")[1:6] == [
        "0.600 (0.500-0.700)", "0.590 (0.540-0.620)", "0.700 (0.700-0.700)", "0.500 (0.500-0.500)", "F1 only"
    ]  # fmt: skip
    reused = [{**r, "pretrain_cpu_seconds": None} for r in rows]  # --reuse: fine-tuning an earlier sitting's exports
    assert table(reused).splitlines()[-1].split(" | ")[-2] == "fit 20.0 (pretraining reused)"
    with pytest.raises(ValueError, match="sst5"):
        merged(earlier, [row("sst5", 1, 0.5, 0.5)])


def test_quality_reuse_names_a_folder_without_one_export(tmp_path):
    from benchmarks.quality import kept_export

    with pytest.raises(SystemExit, match=f"{tmp_path}: expected one pretraining export .* found 0"):
        kept_export(tmp_path)
    export = tmp_path / "lightning_logs" / "version_0" / "hf_model"
    export.mkdir(parents=True)
    assert kept_export(tmp_path) == export


def test_quality_merged_table_names_the_recipes_its_rows_recorded(tmp_path, monkeypatch):
    """Rows of sittings with other recipes are not passed off as this sitting's: the header names each."""
    from benchmarks.quality import main

    (tmp_path / "a.json").write_text(
        json.dumps([{**row("sst5", 1, 0.6, 0.5), "recipe": "pretrain (8000 steps) + fit"}])
    )
    (tmp_path / "b.json").write_text(
        json.dumps([{**row("sst5", 2, 0.6, 0.5), "recipe": "pretrain (4000 steps) + fit"}])
    )
    output = tmp_path / "merged.md"
    argv = [
        "quality.py",
        "--seeds",
        "--merge",
        str(tmp_path / "a.json"),
        str(tmp_path / "b.json"),
        "--output",
        str(output),
    ]
    monkeypatch.setattr("sys.argv", argv)
    main()
    header = output.read_text().splitlines()[0]
    assert "pretrain (8000 steps) + fit; pretrain (4000 steps) + fit;" in header, header
    assert [r["recipe"] for r in json.loads(output.with_suffix(".json").read_text())] == [
        "pretrain (8000 steps) + fit",
        "pretrain (4000 steps) + fit",
    ]


def test_learning_variants_are_rows_of_fast_yaml_with_their_arguments():
    from benchmarks.learning import CONFIGS, table_rows

    rows = table_rows(['mm=--model.attn_implementation matmul --data.group_by_length_window "8"'], None)
    assert list(rows) == ["seed-faithful", "fast", "mm"]
    assert rows["mm"] == (
        CONFIGS["fast"],
        ["--model.attn_implementation", "matmul", "--data.group_by_length_window", "8"],
    )
    assert rows["fast"] == (CONFIGS["fast"], [])
    assert list(table_rows(["mm=--model.compile false"], ["fast", "mm"])) == ["fast", "mm"]


@pytest.mark.parametrize(
    ("variants", "selected", "named"),
    [
        (["mm"], None, "write NAME=ARGS"),
        (["=--model.compile false"], None, "write NAME=ARGS"),
        (["fast=--model.compile false"], None, "fast: that row is already defined"),
        ([], ["mm"], "unknown row(s) mm"),
    ],
)
def test_learning_bad_variant_or_row_is_named(variants, selected, named):
    from benchmarks.learning import table_rows

    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        table_rows(variants, selected)


def test_the_inference_benchmark_runs_end_to_end_and_its_rows_agree_with_predict(fitted, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    output = tmp_path / "inference.md"
    subprocess.run(
        [sys.executable, "benchmarks/inference.py", "--run", str(fitted), "--texts", "24", "--rounds", "1", "--quick",
         "--output", str(output)],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    table = output.read_text()
    rows = {line.split(" | ")[0].strip("| "): [c.strip(" |") for c in line.split(" | ")[1:]]
            for line in table.splitlines() if line.startswith("| ") and "texts/s" not in line}  # fmt: skip
    assert list(rows) == [
        "pipeline(batch_size=32), float32",
        "predict, float32",
        "predict --runtime onnx, int8",
        "serve, 32 clients",
    ]  # --quick: one of each kind (the full list: pipeline at batch 1, ONNX float32, serve at 1 and 8 clients, int8)
    assert rows["pipeline(batch_size=32), float32"][1] == "1.00x" and rows["predict, float32"][2] == "1.00x"
    for name in ("pipeline(batch_size=32), float32", "serve, 32 clients"):
        agree, diff = rows[name][6], float(rows[name][7])
        assert agree == "100.00%" and diff < 1e-4, name  # the same answers as predict, from the same checkpoint
    assert float(rows["predict --runtime onnx, int8"][7]) > 0  # int8, not the float32 model again
    for name in ("predict, float32", "predict --runtime onnx, int8"):  # start-up: predict on one text
        assert rows[name][3].endswith(" s") and float(rows[name][3][:-2]) > 0, name
    assert rows["serve, 32 clients"][3] == ""  # a server's start-up is before the sitting
    latency, rss = rows["serve, 32 clients"][4], rows["serve, 32 clients"][5]
    assert latency.endswith(" ms") and rss.endswith(" MB")
    assert "serve's own line: `Self-test:" in table
