"""The serve command: a real LitServe server in a subprocess, asked over HTTP as a client would ask it.

Each answer is checked against the `predict` command's predictions.csv for the same texts: runs trained with
data.max_length shorter than many of the texts (the quickstart's 64; 32 for pairs), so the server must truncate
as the run did.
"""

import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PHRASEBANK, REPO, read_csv, run_cli

MAX_LENGTH = 64  # tokens: the quickstart's data.max_length, which the shared `fitted` run keeps
API_KEY = "test-key"
MAX_TEXTS = 8
MAX_BODY = 20_000


def predict(run: Path, texts_file: Path, root: Path) -> list[dict[str, str]]:
    """The `predict` command's rows for `texts_file`, from the run's best checkpoint."""
    out = root / "predictions.csv"
    run_cli("predict", "--config", str(run / "config.yaml"), "--ckpt_path", "best",
            "--data.predict_file", str(texts_file), "--predictions_file", str(out),
            "--trainer.default_root_dir", str(root))  # fmt: skip
    return read_csv(out)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m lightning_albert serve ...` in its own process group, stopped with SIGTERM as `docker stop` does."""

    def __init__(self, source: Path, *options: str, tmp: Path, api_key: str | None = None, tmpdir: Path | None = None):
        self.port = free_port()
        self.api_key = api_key
        self.log = tmp / "server.log"
        self.tmp = tmpdir or tmp / "tmp"  # the server's TMPDIR: where a checkpoint's temporary export goes
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(self.tmp)}
        env.pop("LIT_SERVER_API_KEY", None)
        args = ["serve", str(source), "--port", str(self.port), *options]
        args += ["--api_key", api_key] if api_key else []
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lightning_albert", *args],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while self.get("/health", self.headers())[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the server did not come up:\n{self.log.read_text()[-5000:]}")
            time.sleep(0.5)

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def request(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, object]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except OSError:  # not listening yet, or gone
            return 0, None
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body.decode()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, object]:
        return self.request("GET", path, None, headers or {})

    def post(self, body: object, headers: dict[str, str] | None = None, raw: bytes | None = None):
        headers = {"Content-Type": "application/json", **self.headers(), **(headers or {})}
        return self.request("POST", "/predict", json.dumps(body).encode() if raw is None else raw, headers)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only what this test started
                self.process.wait(timeout=10)
        return self.process.returncode


def assert_answers(answer: dict, row: dict[str, str], tolerance: float = 1e-5) -> None:
    """One served prediction equals one predictions.csv row of `predict`."""
    assert answer["label"] == row["label"]
    assert answer["probabilities"] == pytest.approx(
        {label: float(row[f"prob_{label}"]) for label in answer["probabilities"]}, abs=tolerance
    )
    assert set(answer["probabilities"]) == {k[len("prob_") :] for k in row if k.startswith("prob_")}


# ----------------------------------------------------------------------------------------- single texts
@pytest.fixture(scope="module")
def single(fitted, tmp_path_factory):
    """A run, predict's rows for test texts (some longer than MAX_LENGTH tokens), and a server of the run."""
    tmp = tmp_path_factory.mktemp("serve")
    run = fitted
    test = [r["text"] for r in read_csv(PHRASEBANK / "test.csv")]
    longest = sorted(test, key=len, reverse=True)[:20]  # over MAX_LENGTH
    texts = longest + [t for t in test[:20] if t not in longest]
    texts.append(" ".join(texts[:6]))  # far over MAX_LENGTH
    rows = predict(run, write_csv(tmp / "texts.csv", [{"text": t} for t in texts]), tmp / "predict")
    server = Server(run, "--max_texts", str(MAX_TEXTS), "--max_body_bytes", str(MAX_BODY),
                    "--max_batch_size", "4", "--batch_timeout", "0.05", tmp=tmp, api_key=API_KEY)  # fmt: skip
    yield run, rows, server
    assert server.stop() == 0, server.log.read_text()[-3000:]


def test_each_worker_says_its_throughput_on_start_up(single):
    """The self-test line: a measured rate, on the device, with what was timed."""
    _, _, server = single
    (line,) = [line for line in server.log.read_text().splitlines() if line.startswith("Self-test:")]
    rate = float(line.split()[1])
    assert rate > 0 and "texts/s on cpu (torch" in line and "4 texts of" in line, line


def test_the_run_truncates_and_each_text_has_its_own_answer(single):
    run, rows, server = single
    tokenizer = json.loads((run / "hf_model" / "tokenizer_config.json").read_text())
    assert tokenizer["model_max_length"] == MAX_LENGTH, "export.py must write data.max_length as model_max_length"
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(run / "hf_model")
    lengths = [len(ids) for ids in exported([r["text"] for r in rows])["input_ids"]]
    assert sum(n > MAX_LENGTH for n in lengths) >= 5  # truncation decides some of these answers
    # Each distinct input (after truncation) its own probabilities, so an answer given to the wrong request shows.
    inputs = {tuple(exported(r["text"], truncation=True)["input_ids"]) for r in rows}
    answers = {tuple(v for k, v in r.items() if k.startswith("prob_")) for r in rows}
    assert len(answers) == len(inputs) > len(rows) // 2


def test_single_text_and_list_answer_as_predict(single):
    run, rows, server = single
    for row in rows:
        status, answer = server.post({"text": row["text"]})
        assert status == 200, answer
        assert_answers(answer, row)
    for start in range(0, len(rows), MAX_TEXTS):
        chunk = rows[start : start + MAX_TEXTS]
        status, answer = server.post({"text": [r["text"] for r in chunk]})
        assert status == 200, answer
        assert len(answer["predictions"]) == len(chunk)
        for prediction, row in zip(answer["predictions"], chunk):
            assert_answers(prediction, row)
    status, answer = server.post({"text": [rows[0]["text"]]})  # a list of one answers a list of one
    assert status == 200 and len(answer["predictions"]) == 1


def test_concurrent_requests_are_batched_without_mixing_answers_and_bad_ones_fail_alone(single):
    run, rows, server = single
    requests = []
    for i, row in enumerate(rows[:24]):
        if i % 4 == 3:  # a bad request among good ones in the same batches
            requests.append(({"text": [row["text"], 7]}, None))
        elif i % 4 == 2:
            requests.append(({"text": [row["text"], rows[i + 1]["text"]]}, [row, rows[i + 1]]))
        else:
            requests.append(({"text": row["text"]}, [row]))
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda request: server.post(request[0]), requests))
    for (body, expected), (status, answer) in zip(requests, answers):
        if expected is None:
            assert status == 422 and "must be" in answer["detail"], answer
            continue
        assert status == 200, answer
        predictions = answer["predictions"] if isinstance(body["text"], list) else [answer]
        for prediction, row in zip(predictions, expected, strict=True):
            assert_answers(prediction, row)


NO_KEY = ({}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEY + "x"}, {"X-API-Key": ""})
ROUTES = [  # (method, path, status with the key): LitServe's routes, FastAPI's docs, and one that is not there
    ("POST", "/predict", 200),
    ("GET", "/", 200),
    ("GET", "/health", 200),
    ("GET", "/info", 200),
    ("GET", "/docs", 200),
    ("GET", "/docs/oauth2-redirect", 200),
    ("GET", "/redoc", 200),
    ("GET", "/openapi.json", 200),
    ("GET", "/no-such-route", 404),
]


@pytest.mark.parametrize("method, path, status", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_the_api_key_guards_every_route(single, method, path, status):
    run, rows, server = single
    body = json.dumps({"text": rows[0]["text"]}).encode() if method == "POST" else None
    for headers in NO_KEY:
        got, answer = server.request(method, path, body, {"Content-Type": "application/json", **headers})
        assert (got, answer) == (401, {"detail": "missing or wrong X-API-Key header."}), (headers, got, answer)
    got, answer = server.request(method, path, body, {"Content-Type": "application/json", **server.headers()})
    assert got == status, (got, answer)


BAD_REQUESTS = [
    # (name, body or raw bytes, extra headers, status, words of the message)
    ("no text", {}, {}, 422, '"text" must be a string, or a list of 1 to 8 strings; got nothing'),
    ("a number", {"text": 5}, {}, 422, "got a JSON int"),
    ("a list with a number", {"text": ["fine", 5]}, {}, 422, "a list holding int items"),
    ("an empty list", {"text": []}, {}, 422, '"text" has 0 strings: send 1 to 8'),
    ("too many texts", {"text": ["a"] * (MAX_TEXTS + 1)}, {}, 413, '"text" has 9 strings: send 1 to 8'),
    ("a pair for a single-text model", {"text": "a", "text_pair": "b"}, {}, 422, 'remove "text_pair"'),
    ("a misspelt field", {"texts": ["a"]}, {}, 422, "unknown field(s) texts"),
    ("invalid JSON", b'{"text": "a', {}, 422, "must be a JSON object"),
    ("a JSON array", ["a"], {}, 422, "must be a JSON object"),
    (
        "form data",
        b"text=a",
        {"Content-Type": "application/x-www-form-urlencoded"},
        422,
        "Content-Type: application/json",
    ),
    ("a body over --max_body_bytes", {"text": "word " * MAX_BODY}, {}, 413, "Payload too large"),
]


@pytest.mark.parametrize("body, headers, status, message", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])  # fmt: skip
def test_a_bad_request_is_answered_4xx_and_the_server_keeps_serving(single, body, headers, status, message):
    run, rows, server = single
    raw = body if isinstance(body, bytes) else None
    got, answer = server.post(body, headers, raw=raw)
    assert got == status and message in answer["detail"], (got, answer)
    status, answer = server.post({"text": rows[0]["text"]})
    assert status == 200
    assert_answers(answer, rows[0])


@pytest.mark.parametrize("body, headers", [case[1:3] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_without_the_key_is_401_before_its_body_is_read(single, body, headers):
    run, rows, server = single
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    for key in NO_KEY:
        got, answer = server.request("POST", "/predict", raw, {"Content-Type": "application/json", **headers, **key})
        assert (got, answer) == (401, {"detail": "missing or wrong X-API-Key header."}), (key, got, answer)


def test_the_key_middleware_refuses_a_websocket_and_passes_lifespan_events():
    """No route of LitServe's is a websocket, but one added later must not slip past the key either."""
    from lightning_albert.serve import _RequireKey

    async def app(scope, receive, send):
        await send({"type": "reached"})

    async def call(scope):
        sent = []

        async def send(message):
            sent.append(message)

        await _RequireKey(app, key=API_KEY)(scope, None, send)
        return sent

    key = [(b"x-api-key", API_KEY.encode())]
    websocket = {"type": "websocket", "path": "/ws", "headers": []}
    assert asyncio.run(call(websocket)) == [{"type": "websocket.close", "code": 1008}]
    assert asyncio.run(call({**websocket, "headers": key})) == [{"type": "reached"}]
    assert asyncio.run(call({"type": "lifespan"})) == [{"type": "reached"}]


# ------------------------------------------------------------------------------- pairs, from a checkpoint
def test_a_pair_model_served_from_a_checkpoint(pair_run, tmp_path):
    """Pairs need text_pair of text's shape and answer as predict; the temporary export goes when it stops."""
    run, rows = pair_run
    rows = rows[:12]
    checkpoint = next((run / "checkpoints").glob("best-*.ckpt"))
    server = Server(checkpoint, tmp=tmp_path)
    try:
        assert list(server.tmp.glob("lightning_albert_serve_*"))  # the checkpoint, exported while it serves
        status, answer = server.post({"text": [r["text"] for r in rows], "text_pair": [r["text_pair"] for r in rows]})
        assert status == 200, answer
        for prediction, row in zip(answer["predictions"], rows, strict=True):
            assert_answers(prediction, row)
        status, answer = server.post({"text": rows[0]["text"], "text_pair": rows[0]["text_pair"]})
        assert status == 200
        assert_answers(answer, rows[0])
        for path in ("/health", "/docs", "/openapi.json"):  # without --api_key, no route needs a key
            assert server.get(path)[0] == 200, path
        for body in ({"text": "a"}, {"text": ["a", "b"], "text_pair": ["c"]}, {"text": "a", "text_pair": ["c"]}):
            status, answer = server.post(body)
            assert status == 422 and "sentence pairs" in answer["detail"], answer
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]
    assert not list(server.tmp.glob("lightning_albert_serve_*"))  # the checkpoint's export is removed


@pytest.fixture(scope="module")
def pair_onnx(pair_run, tmp_path_factory) -> Path:
    """The pair run's float32 ONNX export, written once for the tests that read it."""
    from lightning_albert.export import export_checkpoint

    run, _ = pair_run
    checkpoint = next((run / "checkpoints").glob("best-*.ckpt"))
    return export_checkpoint(checkpoint, tmp_path_factory.mktemp("onnx") / "onnx", format="onnx")


def test_an_onnx_export_is_served_by_onnx_runtime_and_answers_as_predict(pair_run, pair_onnx, tmp_path):
    _, rows = pair_run
    rows = rows[:12]
    folder = pair_onnx
    assert not list(folder.glob("*.safetensors"))  # nothing but model.onnx to answer from
    server = Server(folder, "--pairs", tmp=tmp_path)
    try:
        status, answer = server.post({"text": [r["text"] for r in rows], "text_pair": [r["text_pair"] for r in rows]})
        assert status == 200, answer
        for prediction, row in zip(answer["predictions"], rows, strict=True):
            assert_answers(prediction, row, tolerance=1e-4)
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]


def test_torch_switches_on_an_onnx_export_are_one_line(pair_onnx, capsys):
    from lightning_albert.cli import main

    for switch in (["--precision", "bf16"], ["--compile"]):
        with pytest.raises(SystemExit) as exit:
            main(["serve", str(pair_onnx), "--pairs", *switch])
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: serve: --precision and --compile are for a torch model;") and err.count("\n") == 1


def test_bf16_where_the_cpu_lacks_it_is_one_line(fitted, monkeypatch, capsys):
    from lightning_albert import serve
    from lightning_albert.cli import main

    monkeypatch.setattr(serve, "cpu_has_bf16", lambda: False)
    with pytest.raises(SystemExit) as exit:
        main(["serve", str(fitted), "--precision", "bf16", "--accelerator", "cpu"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: serve: --precision bf16 needs bfloat16 arithmetic, which this CPU lacks") and (
        err.count("\n") == 1
    )


def test_bf16_and_compiled_answer_as_float32_to_bf16_precision(single, capsys):
    """The two torch switches, in the worker's own class: the same texts, probabilities within bf16's rounding,
    and the start-up line names them (compiled once in the self-test, batches of one included)."""
    from lightning_albert.serve import AlbertAPI

    run, rows, _ = single
    api = AlbertAPI(str(run / "hf_model"), pairs=False, max_batch_size=4, precision="bf16", compile=True)
    api.setup("cpu")
    assert "threads, bfloat16 autocast, compiled; 4 texts" in capsys.readouterr().out
    answers = api._outputs([r["text"] for r in rows], None) + api._outputs([rows[0]["text"]], None)
    expected = [[float(r[k]) for k in r if k.startswith("prob_")] for r in rows + rows[:1]]
    assert answers == [pytest.approx(e, abs=2e-2) for e in expected]
    assert answers != [pytest.approx(e, abs=1e-6) for e in expected]  # bf16 did run: not float32's answers


def test_a_truncated_onnx_model_is_one_line(pair_onnx, tmp_path, capsys):
    import shutil

    from lightning_albert.cli import main

    folder = shutil.copytree(pair_onnx, tmp_path / "onnx")
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(SystemExit) as exit:
        main(["serve", str(folder), "--pairs"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {model}: not a model ONNX Runtime can load (") and err.count("\n") == 1, err


def test_a_checkpoint_is_served_under_a_temporary_folder_too_long_for_unix_sockets(pair_run, tmp_path):
    """LitServe's manager socket would not fit under a long TMPDIR ("AF_UNIX path too long" in a child); the
    checkpoint's export still goes there, and the socket to a short system folder."""
    run, rows = pair_run
    long = tmp_path / ("t" * max(1, 100 - len(str(tmp_path))))
    server = Server(next((run / "checkpoints").glob("best-*.ckpt")), tmp=tmp_path, tmpdir=long)
    try:
        assert len(str(server.tmp)) >= 100 and list(server.tmp.glob("lightning_albert_serve_*"))
        status, answer = server.post({"text": rows[0]["text"], "text_pair": rows[0]["text_pair"]})
        assert status == 200
        assert_answers(answer, rows[0])
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]
    assert not list(server.tmp.glob("lightning_albert_serve_*"))


# ---------------------------------------------------------------------------------------- command errors
def test_a_bad_source_is_one_line(tmp_path, capsys):
    from lightning_albert.cli import main

    (tmp_path / "empty").mkdir()
    cases = ((tmp_path / "missing", "no such file or folder"), (tmp_path / "empty", "not a run folder, checkpoint or"))
    for source, words in cases:
        with pytest.raises(SystemExit) as exit:
            main(["serve", str(source)])
        assert exit.value.code == 2
        assert capsys.readouterr().err.startswith(f"error: serve: '{source}' is {words}")


def test_without_litserve_the_command_says_what_to_install(monkeypatch, capsys):
    from lightning_albert.cli import main

    monkeypatch.setitem(sys.modules, "litserve", None)  # what `import litserve` meets when it is not installed
    monkeypatch.delitem(sys.modules, "lightning_albert.serve", raising=False)
    with pytest.raises(SystemExit) as exit:
        main(["serve", "runs/x"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: serve needs LitServe: pip install 'lightning-albert[serve]'.\n"
