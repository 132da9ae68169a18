"""Serving a model over HTTP with LitServe: `POST /predict` answers each text's prediction.

    python -m lightning_albert serve <run folder | checkpoint.ckpt | exported folder> [--port 8000]

Requests are JSON: `{"text": "..."}` answers the task's prediction (tasks/): `{"label": ..., "probabilities":
{label: p, ...}}` (single-label), `{"labels": [...], "probabilities": {...}}` (multi-label, at the exported
thresholds) or `{"value": x}` (regression); `{"text": ["...", "..."]}` answers `{"predictions": [...]}` in request
order. A sentence-pair model needs `"text_pair"` of the same shape. Texts are truncated at the exported
tokenizer's `model_max_length`, the run's `data.max_length`, so the answers are those of `predict`.

LitServe gathers concurrent requests into one batch (up to `--max_batch_size`); their texts are sorted by length
and run `FORWARD_BATCH` at a time, as `predict` runs its sorted batches, so a short text is not padded to a long
one's length. Each worker times itself on start-up and says its throughput in one line. `--precision bf16`
and `--compile` run a torch model in bfloat16 autocast and through torch.compile.
"""

import argparse
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AlbertForSequenceClassification, AutoConfig, AutoTokenizer
from transformers.utils import logging as transformers_logging

from lightning_albert.checkpoints import best_checkpoint, load_checkpoint
from lightning_albert.errors import InputError
from lightning_albert.export import EXPORT_FOLDER, export_checkpoint
from lightning_albert.onnx_export import OnnxClassifier, is_onnx_folder
from lightning_albert.tasks import task_of_config

try:
    import litserve as ls
    from fastapi import Header, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.datastructures import Headers
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError:
    raise InputError("serve needs LitServe: pip install 'lightning-albert[serve]'.") from None

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")
# Texts per forward pass, after sorting a batch's texts by length: on a CPU a batch of 8 runs each text nearly as
# fast as one of 32, and 8 texts sorted by length pad far less than 32 arrivals in request order.
FORWARD_BATCH = 8
SELF_TEST = "The model answers texts like this one, a sentence of about the length that people send in requests."
_KEY_REFUSED = "missing or wrong X-API-Key header."
_SOURCE_HELP = (
    "Give a run folder (runs/<name>/lightning_logs/version_N), a .ckpt file, or an exported folder "
    "(config.json and tokenizer files, as `export` writes)."
)


@dataclass
class _Texts:
    """One request, checked: its texts (and pairs), and whether it sent a list or a single text."""

    texts: list[str]
    pairs: list[str] | None
    is_list: bool


@dataclass
class _Answer:
    """The outputs (the task's: probabilities, or a value) of each text of one request."""

    outputs: list[list[float]]
    is_list: bool


@dataclass
class _Rejected:
    """A request that failed its checks. Answered on its own: an exception would fail its whole batch."""

    status: int
    message: str


class AlbertAPI(ls.LitAPI):
    """Loads an exported model in each inference worker and classifies the texts of a batch of requests."""

    def __init__(
        self,
        model_folder: str,
        pairs: bool,
        max_texts: int = 64,
        max_batch_size: int = 32,
        batch_timeout: float = 0.01,
        api_key: str | None = None,
        precision: str = "32",
        compile: bool = False,
    ):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_folder = model_folder
        self.pairs = pairs
        self.max_texts = max_texts
        self.api_key = api_key
        self.precision = precision
        self.compile = compile

    def setup(self, device: str) -> None:
        transformers_logging.disable_progress_bar()  # a "Loading weights" bar per worker says nothing in a server's log
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_folder, local_files_only=True)
        config = AutoConfig.from_pretrained(self.model_folder, local_files_only=True)
        self.onnx = is_onnx_folder(Path(self.model_folder))
        if self.onnx:  # an `export --format onnx` folder: ONNX Runtime
            self.model = OnnxClassifier(Path(self.model_folder), device)
        else:
            model = AlbertForSequenceClassification.from_pretrained(self.model_folder, local_files_only=True)
            self.model = model.to(device).eval()
            if self.compile:  # dynamic shapes: one graph for every batch and length (compiled in the self-test)
                self.model = torch.compile(self.model, dynamic=True)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.task = task_of_config(config)
        self.thresholds = getattr(config, "thresholds", None)  # multi-label: written by export
        self._self_test()

    def _self_test(self) -> None:
        """Time a full batch of a typical text (after one warm-up batch) and say the throughput in one line."""
        texts = [SELF_TEST] * self.max_batch_size
        pairs = texts if self.pairs else None
        self._outputs(texts, pairs)
        if self.compile:  # torch.compile specializes a batch of one: compile that graph now, not on a request
            self._outputs(texts[:1], pairs and pairs[:1])
        started = time.perf_counter()
        self._outputs(texts, pairs)
        seconds = time.perf_counter() - started
        runtime = "ONNX Runtime" if self.onnx else f"torch, {torch.get_num_threads()} threads"
        if not self.onnx:
            runtime += ", bfloat16 autocast" if self.precision == "bf16" else ", float32"
            runtime += ", compiled" if self.compile else ""
        tokens = len(self.tokenizer(SELF_TEST, truncation=True)["input_ids"])
        print(
            f"Self-test: {len(texts) / seconds:.1f} texts/s on {self.device} ({runtime}; {len(texts)} texts of "
            f"{tokens} tokens, {FORWARD_BATCH} per forward pass).",
            flush=True,
        )

    def authorize(self, x_api_key: str | None = Header(default=None)) -> None:
        """LitServe's hook for its own routes (a FastAPI dependency), behind `_RequireKey`: it also documents
        the header in /docs, and overrides LitServe's check of $LIT_SERVER_API_KEY, which has another message."""
        if self.api_key and not _key_matches(x_api_key, self.api_key):
            raise HTTPException(status_code=401, detail=_KEY_REFUSED)

    # Annotated as a dict so FastAPI parses the JSON body in the HTTP process: invalid JSON or a body that is no
    # JSON object is answered 422 there and never reaches a batch.
    def decode_request(self, request: dict[str, Any]) -> _Texts | _Rejected:
        unknown = sorted(set(request) - {"text", "text_pair"})
        if unknown:
            return _Rejected(422, f"unknown field(s) {', '.join(unknown)}: the body takes text and text_pair.")
        shape = f"a string, or a list of 1 to {self.max_texts} strings"
        texts = request.get("text")
        if not _is_texts(texts):
            return _Rejected(422, f'"text" must be {shape}; got {_describe(texts)}.')
        is_list = isinstance(texts, list)
        if is_list and not 1 <= len(texts) <= self.max_texts:
            status = 413 if texts else 422
            return _Rejected(status, f'"text" has {len(texts)} strings: send 1 to {self.max_texts} per request.')
        pairs = request.get("text_pair")
        if not self.pairs:
            if pairs is not None:
                return _Rejected(422, 'this model classifies single texts: remove "text_pair".')
            return _Texts(texts if is_list else [texts], None, is_list)
        if not _is_texts(pairs) or isinstance(pairs, list) != is_list or is_list and len(pairs) != len(texts):
            like = f"a list of {len(texts)} strings" if is_list else "a string"
            return _Rejected(422, f'this model classifies sentence pairs: "text_pair" must be {like}, like "text".')
        return _Texts(texts if is_list else [texts], pairs if is_list else [pairs], is_list)

    def predict(self, batch: list[_Texts | _Rejected] | _Texts | _Rejected) -> Any:
        """Classify every text of the batch's requests, `max_batch_size` texts per forward pass.

        With `max_batch_size` 1 LitServe does not batch and passes one request instead of a list.
        """
        requests = batch if isinstance(batch, list) else [batch]
        accepted = [r for r in requests if isinstance(r, _Texts)]
        texts = [t for r in accepted for t in r.texts]
        pairs = [p for r in accepted for p in r.pairs] if self.pairs else None
        answers = iter(self._outputs(texts, pairs))
        outputs = [  # one per request, in request order
            _Answer([next(answers) for _ in r.texts], r.is_list) if isinstance(r, _Texts) else r for r in requests
        ]
        return outputs if isinstance(batch, list) else outputs[0]

    def _outputs(self, texts: list[str], pairs: list[str] | None) -> list[list[float]]:
        """The task's outputs for each text, in order: tokenized once, sorted by length, FORWARD_BATCH at a time."""
        if not texts:  # a batch of rejected requests only
            return []
        encoded = self.tokenizer(
            texts,
            pairs,
            truncation=True,
            max_length=self.tokenizer.model_max_length,  # the run's data.max_length (see export)
            return_token_type_ids=pairs is not None or self.onnx,  # the ONNX graph takes all three
        )
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        outputs: list[list[float]] = [[] for _ in texts]
        bf16 = self.precision == "bf16" and not self.onnx
        with torch.inference_mode(), torch.autocast(torch.device(self.device).type, torch.bfloat16, enabled=bf16):
            for start in range(0, len(order), FORWARD_BATCH):
                rows = order[start : start + FORWARD_BATCH]
                inputs = self.tokenizer.pad(
                    {key: [values[i] for i in rows] for key, values in encoded.items()},
                    return_tensors="np" if self.onnx else "pt",
                )
                logits = self.model(inputs) if self.onnx else self.model(**inputs.to(self.device)).logits
                for i, output in zip(rows, self.task.outputs(logits.float()).tolist()):
                    outputs[i] = output
        return outputs

    def encode_response(self, output: _Answer | _Rejected) -> Any:
        if isinstance(output, _Rejected):
            return JSONResponse(status_code=output.status, content={"detail": output.message})
        predictions = [self.task.answer(p, self.labels, self.thresholds) for p in output.outputs]
        # The answer's shape follows the request's: a list of one text answers a list of one prediction.
        return {"predictions": predictions} if output.is_list else predictions[0]


class _RequireKey:
    """ASGI middleware, outermost: the key guards every route, FastAPI's /docs, /redoc and /openapi.json and a
    404 included, before anything reads the body (a bad body without the key is 401, not 422 or 413)."""

    def __init__(self, app: ASGIApp, key: str):
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _key_matches(Headers(scope=scope).get("x-api-key"), self.key):
            await self.app(scope, receive, send)  # lifespan events, and requests with the key
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before the accept: the client gets 403
        else:
            await JSONResponse(status_code=401, content={"detail": _KEY_REFUSED})(scope, receive, send)


def _key_matches(given: str | None, key: str) -> bool:
    """In constant time. Header values arrive as latin-1 text: back to their bytes, so a UTF-8 key matches."""
    return secrets.compare_digest((given or "").encode("latin-1"), key.encode())


async def _invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's answer to a body that is no JSON object, in the one-line `detail` of every other 4xx here."""
    reasons = "; ".join(
        f"{e['msg']}: {e['ctx']['error']}" if "error" in e.get("ctx", {}) else e["msg"] for e in error.errors()
    )
    return JSONResponse(
        status_code=422,
        content={
            "detail": 'the body must be a JSON object such as {"text": "..."}, sent with Content-Type: '
            f"application/json ({reasons})."
        },
    )


def _is_texts(value: Any) -> bool:
    return isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list holding " + ", ".join(sorted({type(v).__name__ for v in value} - {"str"})) + " items"
    return f"a JSON {type(value).__name__}"


@contextmanager
def model_folder(source: str | Path) -> Iterator[Path]:
    """The exported folder to serve for `source`; a checkpoint is exported into a folder removed afterwards."""
    path = Path(source)
    if path.is_dir() and (path / "config.json").is_file() and any((path / f).is_file() for f in _TOKENIZER_FILES):
        yield path
        return
    if path.is_dir() and (path / EXPORT_FOLDER / "config.json").is_file():
        yield path / EXPORT_FOLDER
        return
    if path.is_dir() and (path / "checkpoints").is_dir():  # a run stopped before its export: its best checkpoint
        path = best_checkpoint(path / "checkpoints")
    if not (path.is_file() and path.suffix == ".ckpt"):
        what = "no such file or folder" if not path.exists() else "not a run folder, checkpoint or exported model"
        raise InputError(f"serve: '{source}' is {what}. {_SOURCE_HELP}")
    folder = Path(tempfile.mkdtemp(prefix="lightning_albert_serve_"))
    try:
        yield export_checkpoint(path, folder / "model")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def is_pair_model(source: str | Path, folder: Path) -> bool:
    """Whether the run behind `source` had a data.text_pair_column (an export alone does not record it)."""
    path = Path(source)
    if path.is_file():  # a checkpoint: its DataModule's hyperparameters
        return bool(load_checkpoint(path).get("datamodule_hyper_parameters", {}).get("text_pair_column"))
    for config in (path / "config.yaml", folder.parent / "config.yaml"):  # a run folder, or its hf_model/
        if config.is_file():
            data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data") or {}
            return bool(data.get("text_pair_column"))
    return False


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (docker stop, kill) shuts down like Ctrl-C: LitServe stops its workers, a temporary export goes."""
    owner = os.getpid()

    def interrupt(signum, frame):
        if os.getpid() != owner:  # a forked child that kept this handler: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lightning_albert serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a run folder (serves its hf_model/), a .ckpt file, or an exported folder")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        choices=["127.0.0.1", "0.0.0.0", "::"],
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--max_batch_size",
        type=_positive,
        default=32,
        help="requests gathered into one batch, and texts per forward pass (default 32)",
    )
    parser.add_argument(
        "--batch_timeout", type=float, default=0.01, help="seconds to wait for a batch to fill (default 0.01)"
    )
    parser.add_argument(
        "--max_texts",
        type=_positive,
        default=64,
        help="most texts in one request's list (default 64; more is answered 413)",
    )
    parser.add_argument(
        "--max_body_bytes",
        type=_positive,
        default=1_000_000,
        help="largest request body in bytes (default 1000000; larger is answered 413)",
    )
    parser.add_argument(
        "--accelerator",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="device to run the model on (default auto: a GPU if there is one)",
    )
    parser.add_argument(
        "--precision",
        default="32",
        choices=["32", "bf16"],
        help="a torch model's arithmetic: 32 (float32, predict's answers; default) or bf16 (bfloat16 autocast, "
        "for CPUs with AVX-512 BF16 or AMX and GPUs from Ampere on; probabilities move by about 1e-2)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile a torch model (dynamic shapes): faster answers after a compilation at start-up "
        "(a minute or more on a small CPU; needs a C++ compiler)",
    )
    parser.add_argument(
        "--workers_per_device",
        type=_positive,
        default=1,
        help="model copies per device, each in its own process (default 1)",
    )
    parser.add_argument(
        "--api_key",
        default=os.environ.get("LIT_SERVER_API_KEY"),
        help="require this key in every request's X-API-Key header (default: $LIT_SERVER_API_KEY, else no key)",
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="the model classifies sentence pairs (needed only for an exported folder outside its "
        "run: a run folder or checkpoint says so itself)",
    )
    args = parser.parse_args(argv)
    if args.batch_timeout < 0:
        parser.error("--batch_timeout must be 0 or more seconds.")
    if not 1024 <= args.port <= 65535:
        parser.error(f"--port must be from 1024 to 65535, got {args.port}.")
    with _sigterm_as_interrupt(), model_folder(args.source) as folder:
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise InputError(f"serve: cannot load the model in {folder} ({str(e).splitlines()[0]}).") from None
        if is_onnx_folder(folder):
            OnnxClassifier(folder)  # a truncated or foreign model.onnx: one line here, not a worker's traceback
            if args.precision != "32" or args.compile:
                raise InputError(
                    f"serve: --precision and --compile are for a torch model; {folder} is an ONNX export, which runs "
                    "as exported (for a faster one: export --format onnx --quantize int8)."
                )
        if args.precision == "bf16":
            check_bf16(args.accelerator)
        pairs = args.pairs or is_pair_model(args.source, folder)
        api = AlbertAPI(
            str(folder),
            pairs,
            args.max_texts,
            args.max_batch_size,
            args.batch_timeout,
            args.api_key,
            args.precision,
            args.compile,
        )
        server = ls.LitServer(
            api,
            accelerator=args.accelerator,
            workers_per_device=args.workers_per_device,
            max_payload_size=args.max_body_bytes,
        )
        server.app.add_exception_handler(RequestValidationError, _invalid_body)
        if args.api_key:
            server.app.add_middleware(_RequireKey, key=args.api_key)  # added last, so it runs first
        labels = ", ".join(config.id2label[i] for i in range(config.num_labels))
        task = task_of_config(config).name.replace("_", "-")
        print(
            f"Serving {args.source} ({'sentence pairs' if pairs else 'single texts'}; {task}; labels {labels}; "
            f"truncation at {tokenizer.model_max_length} tokens) on http://{args.host}:{args.port}/predict",
            flush=True,
        )
        short_socket_folder()  # after the checkpoint's export: that stays in TMPDIR
        server.run(host=args.host, port=args.port, generate_client_file=False)


def check_bf16(accelerator: str) -> None:
    """Refuse bf16 where the device has no bfloat16 arithmetic: there it is emulated, slower than float32."""
    cuda = accelerator in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        supported, device = torch.cuda.is_bf16_supported(), f"the GPU {torch.cuda.get_device_name()}"
    elif accelerator == "mps" or accelerator == "auto" and torch.backends.mps.is_available():
        supported, device = True, "mps"
    else:
        supported, device = cpu_has_bf16(), "this CPU"
    if not supported:
        raise InputError(
            f"serve: --precision bf16 needs bfloat16 arithmetic, which {device} lacks (it would be slower than "
            "float32): serve with --precision 32, or an int8 ONNX export on a CPU."
        )


def cpu_has_bf16() -> bool:
    """oneDNN's own check (AVX-512 BF16 or AMX), the one torch.compile asks; True where torch lacks it."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check else True


# LitServe's worker processes talk through a multiprocessing manager, whose Unix socket lies in
# <temp>/pymp-XXXXXXXX/listener-XXXXXXXX: Linux allows 107 characters for the path, and a longer one fails in a child
# process as a traceback ("AF_UNIX path too long") after the model has loaded.
_SOCKET_PATH_LIMIT, _SOCKET_NAME_LENGTH = 107, len("/pymp-XXXXXXXX/listener-XXXXXXXX")


def short_socket_folder() -> None:
    """Under a TMPDIR too long for those sockets, put this process's later temporary files (the manager's
    socket folder) in the first short system folder that can be written; refuse in one line without one."""
    folder = tempfile.gettempdir()
    if os.name != "posix" or len(folder) + _SOCKET_NAME_LENGTH <= _SOCKET_PATH_LIMIT:
        return
    for candidate in ("/tmp", "/var/tmp", "/usr/tmp"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            tempfile.tempdir = candidate  # tempfile's documented default folder, for this process only
            return
    raise InputError(
        f"the temporary folder {folder} ({len(folder)} characters; TMPDIR) is too long for the sockets of serve's "
        f"worker processes (Unix allows {_SOCKET_PATH_LIMIT - _SOCKET_NAME_LENGTH}), and /tmp cannot be written: "
        "run with TMPDIR set to a short folder."
    )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return number
