"""albert.py: building a fresh ALBERT from a config, and loading pretrained weights only where every encoder
weight is there."""

import json
import logging

import pytest
import torch
from conftest import ALBERT_BASE_CONFIG, TINY_ALBERT
from safetensors.torch import load_file, save_file
from transformers import AlbertConfig, AlbertForMaskedLM, AlbertForSequenceClassification

from lightning_albert.albert import albert_config, build_albert, load_pretrained
from lightning_albert.errors import InputError

ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
VOCAB = 100


def _export(folder, cls=AlbertForSequenceClassification, **settings):
    """A saved tiny ALBERT (save_pretrained, as fit and pretrain export), and its weights as saved."""
    torch.manual_seed(0)
    cls(AlbertConfig(vocab_size=VOCAB, **TINY_ALBERT, **settings)).save_pretrained(folder)
    return load_file(folder / "model.safetensors")


def _drop(folder, keys) -> None:
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if k not in keys}, folder / "model.safetensors", {"format": "pt"})


def test_a_fresh_albert_has_the_configs_shape_the_tokenizers_vocabulary_and_the_datas_labels():
    model = build_albert(None, TINY_ALBERT, ID2LABEL, vocab_size=321)
    config = model.config
    assert {k: getattr(config, k) for k in TINY_ALBERT} == TINY_ALBERT
    assert model.albert.embeddings.word_embeddings.weight.shape == (321, TINY_ALBERT["embedding_size"])
    assert config.num_labels == 3 and model.classifier.out_features == 3
    assert config.id2label == ID2LABEL and config.label2id == {v: k for k, v in ID2LABEL.items()}


def test_a_config_file_is_read_and_vocab_size_and_settings_win_over_it():
    values = json.loads(ALBERT_BASE_CONFIG.read_text())
    config = albert_config(str(ALBERT_BASE_CONFIG), 1234, num_labels=5)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "embedding_size", "intermediate_size"):
        assert getattr(config, key) == values[key], key
    assert values["vocab_size"] != 1234 and config.vocab_size == 1234
    assert config.num_labels == 5
    assert albert_config(str(ALBERT_BASE_CONFIG), None).vocab_size == values["vocab_size"]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (None, "the model needs model.pretrained"),
        ("missing.json", "model.config: no such file 'missing.json'"),
        ({**TINY_ALBERT, "num_hiden_layers": 1}, "AlbertConfig has no such field"),
        ({**TINY_ALBERT, "hidden_dropout_prob": 1.0}, "model.config.hidden_dropout_prob must be in [0, 1)"),
    ],
    ids=["no-config", "missing-file", "misspelt-key", "out-of-range"],
)
def test_a_config_that_cannot_build_an_albert_is_an_input_error(tmp_path, monkeypatch, config, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as error:
        albert_config(config, VOCAB)
    assert fragment in str(error.value)


def test_a_config_file_that_is_not_json_names_the_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "hidden_size": 64,\n  "num_hidden_layers": ,\n}\n')
    with pytest.raises(InputError, match=r"config.json, line 3: not valid JSON"):
        albert_config(str(path), VOCAB)


def test_a_value_of_the_wrong_type_is_an_input_error():
    with pytest.raises(InputError, match="model.config"):
        albert_config({**TINY_ALBERT, "hidden_size": "64"}, VOCAB)


def test_pretrained_weights_are_loaded_whole_and_the_model_trains_with_dropout(tmp_path):
    saved = _export(tmp_path, num_labels=3)
    model = build_albert(str(tmp_path), None, ID2LABEL, VOCAB)
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    assert model.config.id2label == ID2LABEL
    # from_pretrained hands back a model in eval mode; a fit that kept it would train without dropout.
    assert all(module.training for module in model.modules())


def test_a_masked_language_export_starts_only_the_pooler_and_the_head_fresh_and_says_so(tmp_path, caplog):
    saved = _export(tmp_path, cls=AlbertForMaskedLM)
    caplog.set_level(logging.INFO)
    model = load_pretrained(AlbertForSequenceClassification, str(tmp_path), VOCAB, num_labels=3)
    state = model.state_dict()
    encoder = {k for k in state if k.startswith("albert.") and not k.startswith("albert.pooler.")}
    assert encoder <= set(saved)
    for key in encoder:
        assert torch.equal(state[key], saved[key]), key
    assert not {k for k in state if k.startswith(("albert.pooler.", "classifier."))} & set(saved)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model.pretrained")]
    assert "every encoder weight loaded" in line
    assert "starting fresh: pooler (no sentence-order prediction in its pretraining), classifier" in line
    assert "not used here: predictions" in line  # the MLM head


def test_an_export_without_its_pooler_loads(tmp_path):
    """Masked-language pretraining alone trains no pooler: a classifier starts it fresh, as it does its head."""
    saved = _export(tmp_path, num_labels=3)
    _drop(tmp_path, {k for k in saved if k.startswith("albert.pooler.")})
    model = load_pretrained(AlbertForSequenceClassification, str(tmp_path), VOCAB, num_labels=3)
    assert torch.equal(model.state_dict()["classifier.weight"], saved["classifier.weight"])


def test_a_folder_that_lacks_encoder_weights_is_refused(tmp_path):
    """Weights transformers would otherwise initialise at random, silently: the count and the first names."""
    saved = _export(tmp_path, num_labels=3)
    dropped = sorted(k for k in saved if k.startswith("albert.encoder."))
    _drop(tmp_path, set(dropped))
    with pytest.raises(InputError) as error:
        load_pretrained(AlbertForSequenceClassification, str(tmp_path), VOCAB, num_labels=3)
    message = str(error.value)
    assert f"lacks {len(dropped)} encoder weight(s)" in message
    assert all(key in message for key in dropped[:3]) and ", ..." in message


def test_a_tokenizer_with_more_pieces_than_the_embeddings_is_refused(tmp_path):
    _export(tmp_path, num_labels=3)
    assert load_pretrained(AlbertForSequenceClassification, str(tmp_path), VOCAB, num_labels=3)
    with pytest.raises(InputError, match=f"the tokenizer has {VOCAB + 1} pieces but .* embeddings for {VOCAB}"):
        load_pretrained(AlbertForSequenceClassification, str(tmp_path), VOCAB + 1, num_labels=3)


def test_a_source_that_cannot_be_loaded_is_an_input_error(tmp_path):
    AlbertConfig(vocab_size=VOCAB, **TINY_ALBERT).save_pretrained(tmp_path / "config_only")
    source = tmp_path / "config_only"
    with pytest.raises(InputError, match=f"model.pretrained: cannot load '{source}'"):
        load_pretrained(AlbertForSequenceClassification, str(source), VOCAB, num_labels=3)


def test_a_hidden_size_the_heads_cannot_share_is_refused_before_training():
    with pytest.raises(InputError, match="hidden_size 65 is not a multiple of num_attention_heads 2"):
        albert_config({**TINY_ALBERT, "hidden_size": 65, "num_attention_heads": 2}, VOCAB)


def test_a_missing_local_folder_is_named_as_one(tmp_path):
    with pytest.raises(InputError, match=f"model.pretrained: no such folder '{tmp_path / 'nowhere'}'"):
        build_albert(str(tmp_path / "nowhere"), None, ID2LABEL, VOCAB)
