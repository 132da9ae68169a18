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
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.onnx", "tokenizer.json",
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


@pytest.fixture(scope="module")
def best_int8(fitted, tmp_path_factory):
    """The int8 ONNX export of the shared run's best checkpoint."""
    best = next((fitted / "checkpoints").glob("best-*.ckpt"))
    return export.export_checkpoint(best, tmp_path_factory.mktemp("int8") / "i8", format="onnx", quantize="int8")


def test_predict_with_the_onnx_runtime_answers_as_torch_and_int8_keeps_the_labels(
    fitted, best_int8, tmp_path, monkeypatch
):
    """`predict --runtime onnx` on the exports of the shared run's best checkpoint (225 phrasebank texts, many longer
    than its max_length): float32 within 1e-4 of torch's predict, int8 with the same label on nearly all."""
    from conftest import read_csv

    from lightning_albert.cli import main

    monkeypatch.setattr("sys.argv", ["lightning_albert"])
    best = next((fitted / "checkpoints").glob("best-*.ckpt"))
    exports = {
        "float32": export.export_checkpoint(best, tmp_path / "f32", format="onnx"),
        "int8": best_int8,
    }
    rows = {}
    for name, runtime in [
        ("torch", []),
        *((k, ["--runtime", "onnx", "--onnx_model", str(v)]) for k, v in exports.items()),
    ]:
        out = tmp_path / f"{name}.csv"
        main(["predict", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best", "--predictions_file", str(out),
              "--trainer.default_root_dir", str(tmp_path / name), *runtime])  # fmt: skip
        rows[name] = read_csv(out)
    columns = [c for c in rows["torch"][0] if c.startswith("prob_")]
    assert len(rows["torch"]) == 225
    for a, b in zip(rows["torch"], rows["float32"]):
        assert a["label"] == b["label"] and a["text"] == b["text"]
        assert max(abs(float(a[c]) - float(b[c])) for c in columns) < 1e-4
    agreement = np.mean([a["label"] == b["label"] for a, b in zip(rows["torch"], rows["int8"])])
    assert agreement >= 0.95, agreement
    assert any(float(a[c]) != float(b[c]) for a, b in zip(rows["torch"], rows["int8"]) for c in columns)  # int8 it is


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [([], "--runtime onnx needs --onnx_model, an `export --format onnx` folder"),
     (["--onnx_model", "{tmp}"], "--runtime onnx needs --onnx_model"),
     (["--onnx_model", "{other}"], "answers for labels")],
    ids=["no folder", "not an onnx folder", "other labels"],
)  # fmt: skip
def test_predict_on_a_wrong_onnx_folder_is_one_line(fitted, run, tmp_path, capsys, monkeypatch, extra, fragment):
    from conftest import assert_clear_error

    monkeypatch.setattr("sys.argv", ["lightning_albert"])
    other = export.export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "other", format="onnx")
    other_config = AutoConfig.from_pretrained(other)
    other_config.id2label = {i: f"class {i}" for i in range(other_config.num_labels)}
    other_config.save_pretrained(other)
    extra = [a.replace("{tmp}", str(tmp_path)).replace("{other}", str(other)) for a in extra]
    args = ["predict", "--config", str(fitted / "config.yaml"), "--ckpt_path", "best", "--runtime", "onnx"]
    code, err = run_main([*args, "--predictions_file", str(tmp_path / "p.csv"), *extra], capsys)
    assert_clear_error(code, err, [fragment])
    assert not (tmp_path / "p.csv").exists()


def test_the_onnx_exports_card_gives_its_agreement_with_float32_on_the_validation_split(fitted, best_int8, tmp_path):
    """Computed again here from the export folders alone (tokenizer, transformers model, ONNX Runtime session), one
    text at a time: int8 activations are quantized per batch, so the card's batched difference is near, not equal."""
    import re

    from conftest import PHRASEBANK, read_csv

    best = next((fitted / "checkpoints").glob("best-*.ckpt"))
    folder = best_int8
    card = (folder / "README.md").read_text()
    texts = [r["text"] for r in read_csv(PHRASEBANK / "validation.csv")]
    reference = _torch_probabilities(export.export_checkpoint(best, tmp_path / "hf"), texts)
    quantized, _ = _onnx_probabilities(folder, texts)
    equal = (reference.argmax(-1) == quantized.argmax(-1)).float().mean().item()
    largest = (reference - quantized).abs().max().item()
    assert f"on the validation split ({len(texts)} texts of {PHRASEBANK / 'validation.csv'})" in card
    said = re.search(r"the same labels on ([\d.]+)%, largest output difference ([\d.e+-]+)\.", card)
    assert float(said.group(1)) == pytest.approx(100 * equal, abs=1.0)
    assert largest / 3 < float(said.group(2)) < largest * 3


def test_an_onnx_export_whose_validation_data_moved_says_it_was_not_compared(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run's data paths no longer lead anywhere
    checkpoint = run / "checkpoints" / "last.ckpt"
    moved = tmp_path / "moved.ckpt"
    data = torch.load(checkpoint, weights_only=False)
    data["datamodule_hyper_parameters"]["validation_file"] = str(tmp_path / "gone.csv")
    torch.save(data, moved)
    folder = export.export_checkpoint(moved, tmp_path / "onnx", format="onnx")
    assert (
        "not compared with the float32 model (the run's validation data is not found)"
        in (folder / "README.md").read_text()
    )
