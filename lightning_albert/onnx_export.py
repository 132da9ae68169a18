"""The ONNX form of an export: `model.onnx` beside the transformers config and tokenizer, for ONNX Runtime on
machines without PyTorch, optionally with int8 weights (ONNX Runtime's dynamic quantization); and answering from
such a folder (`serve`, and `predict --runtime onnx`).

    python -m lightning_albert export <checkpoint | run folder> <output> --format onnx [--quantize int8]

torch's own exporter (`torch.onnx.export`, the dynamo path) traces the transformers model with a dynamic batch
and length; the inputs are the tokenizer's (input_ids, attention_mask, token_type_ids), the output `logits`.
"""

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lightning_albert.errors import InputError

ONNX_FILE = "model.onnx"  # the name ONNX Runtime users and Optimum's ORTModel look for
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
QUANTIZE = ("int8",)


def check_onnx_available() -> None:
    """Before any work: the exporter needs onnx and onnxscript, the quantizer onnxruntime."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise InputError("export --format onnx needs ONNX: pip install 'lightning-albert[onnx]'") from None


def write_onnx(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, quantize: str | None) -> None:
    """`folder/model.onnx` of `model` (float32, or int8 weights with `quantize`)."""
    example = tokenizer(["an example text", "a second, longer example text here"], padding=True, return_tensors="pt")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path = folder / ONNX_FILE
    with _quiet():
        torch.onnx.export(
            model.eval(),
            tuple(example[name] for name in INPUTS),
            str(path),
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: length} for name in INPUTS},
            dynamo=True,
            external_data=False,  # one file: protobuf's 2 GB bound is above every ALBERT's float32 weights
            verbose=False,
        )
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers.optimizer import optimize_model

        float32, fused = folder / "model_float32.onnx", folder / "model_fused.onnx"
        path.rename(float32)
        with _quiet():
            # First ONNX Runtime's transformer fusions (GELU, layer norm with the residual add), then the matmul
            # weights in int8 with activations quantized on the fly (Optimum's and onnxruntime's BERT recipe).
            # Fused first, int8 answered albert-base 2.8x as fast as float32 on a 2-core AMD EPYC; quantized
            # alone, no faster than float32 (benchmarks/results/inference.md). The fused ops are ONNX Runtime's
            # own (com.microsoft), so this file is for ONNX Runtime (and Optimum), as the rest of the folder.
            config = model.config
            optimize_model(
                str(float32), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
            ).save_model_to_file(str(fused))
            quantize_dynamic(str(fused), str(path), weight_type=QuantType.QInt8)
        float32.unlink()
        fused.unlink()


def is_onnx_folder(folder: Path) -> bool:
    return (Path(folder) / ONNX_FILE).is_file()


class OnnxClassifier:
    """An ONNX export's model in an ONNX Runtime session: logits of tokenized inputs, as the torch model gives."""

    def __init__(self, folder: Path, device: str = "cpu"):
        check_onnx_available()
        import onnxruntime as ort

        providers = ["CUDAExecutionProvider"] if str(device).startswith("cuda") else []
        path = Path(folder) / ONNX_FILE
        try:
            self.session = ort.InferenceSession(str(path), providers=[*providers, "CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types (not exported): a truncated or foreign file
            reason = " ".join(str(e).split())[:200]
            raise InputError(f"{path}: not a model ONNX Runtime can load ({reason}); export it again.") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        if set(self.inputs) != set(INPUTS):
            raise InputError(f"{path}: takes {self.inputs}, not {list(INPUTS)}: export it again.")

    def __call__(self, encoded) -> torch.Tensor:
        """Logits of a tokenizer's output or a DataModule batch (numpy arrays or CPU tensors); without
        token_type_ids (single texts), segment 0 throughout, as the torch model assumes."""
        feed = {}
        for name in self.inputs:
            if name == "token_type_ids" and name not in encoded:
                feed[name] = np.zeros_like(np.asarray(encoded["input_ids"], dtype=np.int64))
            else:
                feed[name] = np.asarray(encoded[name], dtype=np.int64)
        return torch.from_numpy(self.session.run(["logits"], feed)[0])


@contextlib.contextmanager
def _quiet():
    """What the exporter and the quantizer say on every export, none of it about this model: progress lines on
    stdout, "torchvision is not installed" and axis-naming notes from torch.onnx, the quantizer's advice to
    preprocess (root logger). Errors still show."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
