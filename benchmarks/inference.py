"""Inference speed of a run, every way it answers, against a transformers pipeline on its export, in one sitting.

    python benchmarks/inference.py --run <run folder>                 # a run of the albert-base-v2 architecture
    python benchmarks/inference.py --run <run folder> --texts 24 --rounds 1 --quick --output /tmp/out.md  # harness

Rows, each on the same test texts of financial_phrasebank_allagree, in interleaved rounds (forward order, then
reversed), on `--threads` threads; each figure is a median over rounds:
- `transformers.pipeline(model=<run>/hf_model, truncation=True)`, batch_size 1 and 32 (float32; 32 is the
  baseline of every ratio);
- `predict` as a user runs it (`main(["predict", ...])` in this process: its Trainer, the run's checkpoint, the
  DataModule's length-sorted batches, the CSV written), with PyTorch in float32 (`--trainer.precision 32-true`,
  whatever the run trained in) and in bf16 autocast (`--trainer.precision bf16-mixed`), and with `--runtime onnx`
  on `export --format onnx` (float32) and `--quantize int8`; its start-up (the same command on one text) is a
  column of its own;
- `serve` of the export, asked over HTTP on 127.0.0.1 by 1, 8 and 32 concurrent clients, one text per request,
  every text once per round (and at 32 clients: `--precision bf16`, `--precision bf16 --compile`, the int8 ONNX
  export); p50 / p95 are per-request latencies, the peak RSS is the server's process tree's.
Label agreement and the largest probability difference are against float32 `predict`. `--texts-file` reads
another CSV's `text` column (a longer file shrinks predict's start-up share).
"""

import argparse
import csv
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TEXTS = SHARED / "data" / "financial_phrasebank_allagree" / "test.csv"
BATCH = 32
CLIENTS = (1, 8, 32)
QUICK = ("pipeline(batch_size=32), float32", "predict, float32", "predict --runtime onnx, int8", "serve, 32 clients")


class Row:
    """One way of answering: `run()` gives (probabilities per text, per-request latencies or None)."""

    def __init__(self, name: str, run, labels: list[str]):
        self.name, self.run, self.labels = name, run, labels
        self.seconds: list[float] = []
        self.latencies: list[float] = []
        self.answers: np.ndarray | None = None
        self.rss_mb: float | None = None
        self.startup: list[float] = []  # predict rows: the same command on one text


def pipeline_row(folder: Path, texts: list[str], batch_size: int):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    labels = list(classify.model.config.id2label.values())

    def run():
        out = classify(texts, batch_size=batch_size, truncation=True)
        return np.array([[next(s["score"] for s in row if s["label"] == name) for name in labels] for row in out]), None

    return run


def predict_row(run_folder: Path, checkpoint: Path, texts_file: Path, work: Path, *options: str):
    from lightning_albert.cli import main

    out = work / f"predictions-{'-'.join(options[1::2]).replace('/', '_') or 'torch'}.csv"

    def run(file: Path = texts_file):
        main(["predict", "--config", str(run_folder / "config.yaml"), "--ckpt_path", str(checkpoint),
              "--data.predict_file", str(file), "--predictions_file", str(out), "--overwrite", "true",
              "--trainer.default_root_dir", str(work / "runs"), "--trainer.enable_progress_bar", "false",
              *options])  # fmt: skip
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows]), None

    return run


class Server:
    """`python -m lightning_albert serve <folder>` on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, threads: int, log: Path, *options: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        self.log = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lightning_albert", "serve", str(folder), "--port", str(self.port),
             "--max_batch_size", str(BATCH), *options],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 900  # --compile compiles before it answers
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"serve did not come up:\n{Path(log).read_text()[-3000:]}")
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2).status == 200
        except OSError:
            return False

    def ask(self, text: str) -> tuple[dict, float]:
        body = json.dumps({"text": text}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/predict", body, {"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
        return answer, time.perf_counter() - started

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the server and its worker processes."""
        total, pids = 0, [self.process.pid]
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, StopIteration):
                continue
        return total / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.log.close()


def serve_row(server: Server, texts: list[str], labels: list[str], clients: int):
    def run():
        with ThreadPoolExecutor(clients) as pool:
            answered = list(pool.map(server.ask, texts))
        probabilities = np.array([[a["probabilities"][name] for name in labels] for a, _ in answered])
        return probabilities, [seconds for _, seconds in answered]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a fit run folder (its hf_model and checkpoint)")
    parser.add_argument("--texts", type=int, default=0, help="test texts to read (default: all)")
    parser.add_argument(
        "--texts-file", type=Path, default=TEXTS, help="a CSV with a text column (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "inference.md")
    parser.add_argument(
        "--quick", action="store_true", help="one row of each kind (pipeline, predict, ONNX, serve): the harness test"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from transformers import AutoConfig

    from lightning_albert.export import export_checkpoint

    with open(args.texts_file, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    texts = texts[: args.texts] if args.texts else texts
    checkpoint = next((args.run / "checkpoints").glob("best-*.ckpt"), args.run / "checkpoints" / "last.ckpt")
    config = AutoConfig.from_pretrained(args.run / "hf_model")
    labels = [config.id2label[i] for i in range(config.num_labels)]
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts_file = tmp / "texts.csv"
        with open(texts_file, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text",), *((t,) for t in texts)])
        one_text = tmp / "one.csv"
        with open(one_text, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text",), (texts[0],)])
        float32 = export_checkpoint(checkpoint, tmp / "f32", format="onnx")
        int8 = export_checkpoint(checkpoint, tmp / "i8", format="onnx", quantize="int8")
        (tmp / "predict").mkdir()
        try:
            servers = {"": Server(args.run / "hf_model", args.threads, tmp / "serve.log")}
            if not args.quick:
                servers["ONNX int8"] = Server(int8, args.threads, tmp / "serve-int8.log")
                servers["bf16"] = Server(args.run / "hf_model", args.threads, tmp / "bf16.log", "--precision", "bf16")
                servers["bf16 compiled"] = Server(
                    args.run / "hf_model", args.threads, tmp / "compiled.log", "--precision", "bf16", "--compile"
                )
            made = {
                "pipeline(batch_size=32), float32": pipeline_row(args.run / "hf_model", texts, BATCH),
                "pipeline(batch_size=1), float32": pipeline_row(args.run / "hf_model", texts, 1),
                "predict, float32": predict_row(
                    args.run, checkpoint, texts_file, tmp / "predict", "--trainer.precision", "32-true"
                ),
                "predict, bf16 autocast": predict_row(
                    args.run, checkpoint, texts_file, tmp / "predict", "--trainer.precision", "bf16-mixed"
                ),
                "predict --runtime onnx, float32": predict_row(
                    args.run, checkpoint, texts_file, tmp / "predict", "--runtime", "onnx", "--onnx_model", str(float32)
                ),
                "predict --runtime onnx, int8": predict_row(
                    args.run, checkpoint, texts_file, tmp / "predict", "--runtime", "onnx", "--onnx_model", str(int8)
                ),
                **{
                    f"serve, {n} client{'s' if n > 1 else ''}": serve_row(servers[""], texts, labels, n)
                    for n in CLIENTS
                },
                **{
                    f"serve {kind}, 32 clients": serve_row(servers[kind], texts, labels, 32) for kind in servers if kind
                },
            }
            if args.quick:
                made = {k: v for k, v in made.items() if k in QUICK}
            rows = [Row(name, run, labels) for name, run in made.items()]
            for server in servers.values():  # each worker's first answers (and LitServe's) are not what is timed
                serve_row(server, texts[:8], labels, 8)()
            for r in range(args.rounds):
                for row in rows if r % 2 == 0 else reversed(rows):
                    started = time.perf_counter()
                    row.answers, latencies = row.run()
                    row.seconds.append(time.perf_counter() - started)
                    row.latencies += latencies or []
                    if row.name.startswith("predict"):
                        started = time.perf_counter()
                        row.run(one_text)
                        row.startup.append(time.perf_counter() - started)
            for row in rows:
                if row.name.startswith("serve"):
                    kind = row.name.removeprefix("serve").split(",")[0].strip()
                    row.rss_mb = servers[kind].peak_rss_mb()
            self_tests = [_self_test(server.log.name) for server in servers.values()]
        finally:
            for server in servers.values():
                server.stop()
    write_table(args, rows, texts, self_tests)


def _self_test(log: str) -> str:
    return next((line for line in Path(log).read_text().splitlines() if line.startswith("Self-test:")), "")


def write_table(args, rows: list[Row], texts: list[str], self_tests: list[str]) -> None:
    speed = {row.name: len(texts) / statistics.median(row.seconds) for row in rows}
    baseline, reference = rows[0].name, next(r for r in rows if r.name == "predict, float32")
    lines = [
        f"# Inference, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"{platform.processor() or platform.machine()} ({_cpu()}), {args.threads} threads; {len(texts)} texts of "
        f"{args.texts_file.name} ({args.texts_file.parent.name}); run {args.run}; median of {args.rounds} "
        f"interleaved rounds; this process's peak RSS {_rss_mb():.0f} MB. predict's start-up: the same command on "
        "one text; texts/s include it.",
        "",
        "| row | texts/s | vs pipeline(32) | vs predict | start-up | p50 / p95 latency | peak RSS | labels equal to "
        "predict | largest probability difference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        agree = float(np.mean(row.answers.argmax(1) == reference.answers.argmax(1)))
        diff = float(np.abs(row.answers - reference.answers).max())
        latency = (
            f"{np.percentile(row.latencies, 50) * 1000:.0f} / {np.percentile(row.latencies, 95) * 1000:.0f} ms"
            if row.latencies
            else ""
        )
        rss = f"{row.rss_mb:.0f} MB" if row.rss_mb else ""
        startup = f"{statistics.median(row.startup):.1f} s" if row.startup else ""
        lines.append(
            f"| {row.name} | {speed[row.name]:.1f} | {speed[row.name] / speed[baseline]:.2f}x | "
            f"{speed[row.name] / speed[reference.name]:.2f}x | {startup} | {latency} | {rss} | {agree:.2%} | "
            f"{diff:.1e} |"
        )
    lines += ["", *(f"serve's own line: `{line}`" for line in self_tests if line)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpu() -> str:
    try:
        model = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
        return model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return "unknown CPU"


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
