import re

import pytest
import torch
from conftest import ALBERT_BASE_CONFIG, TINY_ALBERT
from lightning.pytorch import Callback, Trainer
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch.utils.data import DataLoader

from lightning_albert.errors import InputError
from lightning_albert.model import AlbertClassifier


def _model(**kwargs) -> AlbertClassifier:
    args = dict(config=TINY_ALBERT, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, vocab_size=100)
    return AlbertClassifier(**{**args, **kwargs})


def test_metrics_match_scikit_learn_and_accuracy_is_not_macro():
    # A hand-made confusion: class 2 is rare and often wrong, so micro accuracy and macro recall differ.
    y_true = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 1])
    y_pred = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0, 2, 0, 0, 2])
    logits = torch.nn.functional.one_hot(y_pred, 3).float()
    metrics = _model().val_metrics
    # Two updates, as two batches: the collection accumulates counts, not batch means.
    metrics.update(logits[:5], y_true[:5])
    metrics.update(logits[5:], y_true[5:])
    got = {k: v.item() for k, v in metrics.compute().items()}
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert got["val_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred)) == pytest.approx(8 / 12)
    assert got["val_precision"] == pytest.approx(p)
    assert got["val_recall"] == pytest.approx(r)
    assert got["val_f1"] == pytest.approx(f)
    assert got["val_accuracy"] != pytest.approx(r)  # macro accuracy would equal macro recall


def test_labels_and_vocabulary_reach_the_transformers_config():
    model = _model(vocab_size=321)
    config = model.model.config
    assert config.num_labels == 3 and config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    assert model.model.albert.embeddings.word_embeddings.num_embeddings == 321


def test_config_from_json_file_builds_the_albert_base_architecture():
    model = AlbertClassifier(config=str(ALBERT_BASE_CONFIG), num_labels=3, vocab_size=30000)
    config = model.model.config
    assert (config.hidden_size, config.num_hidden_layers, config.embedding_size) == (768, 12, 128)
    n = sum(p.numel() for p in model.parameters())
    assert 11_000_000 < n < 12_500_000  # albert-base: about 11.7M parameters, not xxlarge's 218M


def test_model_needs_pretrained_or_config():
    with pytest.raises(InputError, match="model.pretrained .* or model.config"):
        AlbertClassifier(num_labels=2)


class _RecordLR(Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_end(self, trainer, pl_module):
        self.final = trainer.optimizers[0].param_groups[0]["lr"]


def _batches(n, batch_size=4, length=6):
    g = torch.Generator().manual_seed(0)
    return [
        {
            "input_ids": torch.randint(5, 100, (batch_size, length), generator=g),
            "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
            "labels": torch.randint(0, 3, (batch_size,), generator=g),
        }
        for _ in range(n)
    ]


def test_linear_schedule_decays_to_zero_stepping_every_batch():
    lr, steps_per_epoch, epochs = 1e-3, 5, 2
    record = _RecordLR()
    trainer = Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[record], limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(_model(learning_rate=lr), train_dataloaders=DataLoader(_batches(steps_per_epoch), batch_size=None))
    total = steps_per_epoch * epochs
    assert record.lrs == pytest.approx([lr * (total - k) / total for k in range(total)])
    assert record.final == pytest.approx(0.0, abs=1e-12)


def test_warmup_ratio_rises_then_decays():
    record = _RecordLR()
    trainer = Trainer(
        max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[record], limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(
        _model(learning_rate=1.0, warmup_ratio=0.2), train_dataloaders=DataLoader(_batches(10), batch_size=None)
    )
    assert record.lrs[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert record.lrs[-1] == pytest.approx(1 / 8)


def test_weight_decay_spares_biases_and_layer_norms():
    model = _model(weight_decay=0.01)
    trainer = Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    model.trainer = trainer
    trainer.fit_loop.epoch_loop.max_steps = 1
    groups = {g["weight_decay"]: g["params"] for g in model.configure_optimizers()["optimizer"].param_groups}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in groups[0.01])
    assert any("LayerNorm" in names[id(p)] for p in groups[0.0])
    assert len(groups[0.01]) + len(groups[0.0]) == len(list(model.parameters()))


def test_predict_step_returns_rows_and_class_probabilities_that_the_task_names():
    model = _model().eval()
    batch = _batches(1)[0] | {"row": torch.arange(4)}
    out = model.predict_step(batch, 0)
    assert out["row"].tolist() == [0, 1, 2, 3]
    assert out["outputs"].shape == (4, 3)
    assert torch.allclose(out["outputs"].sum(-1), torch.ones(4))  # a softmax over the classes
    cells = model.task.prediction_cells(out["outputs"][0].tolist(), model.labels, None, "|")
    assert cells[0] == model.id2label[int(out["outputs"][0].argmax())]  # the label is the likeliest class
    assert type(cells[0]) is str and [float(c) for c in cells[1:]] == pytest.approx(out["outputs"][0].tolist())


def _uneven_batches(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Two batches of unequal size (the last one smaller), as an evaluation split ends."""
    g = torch.Generator().manual_seed(seed)
    return [
        {"input_ids": torch.randint(5, 100, (n, 9), generator=g), "attention_mask": torch.ones(n, 9, dtype=torch.long),
         "labels": torch.randint(0, 3, (n,), generator=g)}
        for n in (7, 3)
    ]  # fmt: skip


def test_class_weights_weight_the_training_loss_and_the_epochs_validation_loss_by_hand():
    weights = torch.tensor([1.0, 2.0, 5.0])
    torch.manual_seed(0)
    model = _model(class_weights=weights.tolist()).eval()
    with torch.no_grad():  # a head that favours class 0, so the classes' losses differ and the weights matter
        model.model.classifier.bias.copy_(torch.tensor([3.0, 0.0, -3.0]))
    model.log = model.log_dict = lambda *args, **kwargs: None  # no Trainer to log to
    batches = _uneven_batches()
    with torch.no_grad():
        for batch in batches:
            model._evaluate(batch, model.val_loss, model.val_metrics, model.val_record, "val")
        logits = torch.cat([model(b) for b in batches])
        labels = torch.cat([b["labels"] for b in batches])
        per_sample = -logits.log_softmax(-1).gather(1, labels[:, None]).squeeze(1)
        # The weighted mean over every sample of the split, not a mean of the two batch means.
        expected = (weights[labels] * per_sample).sum() / weights[labels].sum()
        assert model.val_loss.compute().item() == pytest.approx(expected.item(), rel=1e-5)
        step = model.training_step(batches[0], 0)
        first = slice(0, len(batches[0]["labels"]))
        by_hand = (weights[labels[first]] * per_sample[first]).sum() / weights[labels[first]].sum()
        assert step.item() == pytest.approx(by_hand.item(), rel=1e-5)
        assert step.item() != pytest.approx(per_sample[first].mean().item(), rel=1e-3)  # the weights matter
    assert torch.equal(model.state_dict()["loss_weights"], weights)  # checkpoints carry them


def test_without_class_weights_the_state_dict_keeps_its_keys_and_the_loss_is_plain():
    model = _model().eval()
    assert "loss_weights" not in model.state_dict()  # checkpoints of earlier runs still load
    batch = _uneven_batches()[0]
    with torch.no_grad():
        assert model.training_step(batch, 0).item() == pytest.approx(
            torch.nn.functional.cross_entropy(model(batch), batch["labels"]).item()
        )


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [([1.0, 2.0], "give balanced, or 3 weights (one per class, in the order neg, neu, pos)"),
     ([1.0, 0.0, 2.0], "every weight must be above 0")],
)  # fmt: skip
def test_class_weights_of_another_length_or_not_positive_are_refused(weights, fragment):
    with pytest.raises(InputError, match=re.escape(f"model.class_weights: {fragment}")):
        _model(class_weights=weights)
