"""onnx_export.py: `export --format onnx` writes a folder ONNX Runtime answers from as the transformers export does
(float32 within 1e-4, on texts longer than the run's max_length too); `--quantize int8` holds int8 weights."""

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import GOOD, fit_args, only_run, run_main, write_good_splits
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from lightning_albert import export
from lightning_albert.errors import InputError

LONG = " ".join(text for text, _ in GOOD)  # far over the run's data.max_length in tokens
TEXTS = [text for text, _ in GOOD] + [LONG]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    write_good_splits(folder)
    from lightning_albert.cli import main

    main(fit_args(folder, "--trainer.max_epochs", "2", "--data.batch_size", "6", "--data.max_length", "24",
                  "--baseline", "false"))  # fmt: skip
    return only_run(folder / "runs")


def _onnx_probabilities(folder, texts):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out = []
    for text in texts:  # one at a time, and below as one padded batch: both shapes are dynamic
        enc = tokenizer([text], truncation=True, return_tensors="np")
        out.append(session.run(["logits"], {n: enc[n].astype(np.int64) for n in names})[0][0])
    enc = tokenizer(texts, truncation=True, padding=True, return_tensors="np")
    batched = session.run(["logits"], {n: enc[n].astype(np.int64) for n in names})[0]
    return torch.tensor(np.stack(out)).softmax(-1), torch.tensor(batched).softmax(-1)


def _torch_probabilities(folder, texts):
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return torch.cat([model(**tokenizer([t], truncation=True, return_tensors="pt")).logits for t in texts]).softmax(
            -1
        )


def test_the_float32_onnx_export_answers_as_the_transformers_export(run, tmp_path):
    reference = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "hf")
    folder = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "onnx", format="onnx")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.onnx", "tokenizer.json",
                                                       "tokenizer_config.json"]  # fmt: skip
    assert AutoConfig.from_pretrained(folder).id2label == AutoConfig.from_pretrained(reference).id2label
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 24  # the run's truncation comes along
    expected = _torch_probabilities(reference, TEXTS)
    one_by_one, batched = _onnx_probabilities(folder, TEXTS)
    torch.testing.assert_close(one_by_one, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(batched, expected, rtol=0, atol=1e-4)
    assert torch.equal(one_by_one.argmax(-1), expected.argmax(-1))


def test_the_int8_export_has_int8_weights_and_answers_close_to_float32(run, tmp_path):
    float32 = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "f32", format="onnx")
    int8 = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "i8", format="onnx", quantize="int8")
    graph = onnx.load(str(int8 / "model.onnx")).graph
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {node.op_type for node in graph.node}
    assert not any(
        t.data_type == onnx.TensorProto.INT8 for t in onnx.load(str(float32 / "model.onnx")).graph.initializer
    )
    quantized, _ = _onnx_probabilities(int8, TEXTS)
    reference, _ = _onnx_probabilities(float32, TEXTS)
    assert (quantized - reference).abs().max() < 0.05


def test_quantize_without_onnx_and_a_missing_onnx_runtime_are_one_line(run, tmp_path, capsys, monkeypatch):
    code, err = run_main(["export", str(run), str(tmp_path / "out"), "--quantize", "int8"], capsys)
    assert (
        code == 2
        and err == "error: export: --quantize needs --format onnx (the transformers export keeps float32 weights).\n"
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets when it is not installed
    with pytest.raises(InputError, match=r"pip install 'lightning-albert\[onnx\]'"):
        export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "out", format="onnx")
    assert not (tmp_path / "out").exists()
