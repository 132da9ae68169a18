"""pretrain/masking.py: ALBERT's n-gram span masks and sentence-order pairs, checked on real texts and on
hand-made sequences whose answer is known."""

import math

import numpy as np
import pytest
import torch

from lightning_albert.pretrain.masking import (
    IGNORE,
    PretrainingCollator,
    choose_spans,
    sentence_order_pair,
    span_mask,
)


def masked_batches(tokenizer, texts, rate: float, seed: int = 0, sentence_order: bool = False) -> list[dict]:
    collator = PretrainingCollator(tokenizer, rate, sentence_order, seed)
    return [collator(texts[i : i + 32]) for i in range(0, len(texts), 32)]


def counts(tokenizer, batches) -> dict[str, int]:
    special = torch.tensor(tokenizer.all_special_ids)
    total = dict.fromkeys(("maskable", "labelled", "mask", "kept", "random", "ngrams", "special_labelled"), 0)
    for b in batches:
        labelled = b["labels"] != IGNORE
        original = torch.where(labelled, b["labels"], b["input_ids"])
        is_special = torch.isin(original, special) | (b["attention_mask"] == 0)
        total["maskable"] += int((~is_special).sum())
        total["labelled"] += int(labelled.sum())
        total["special_labelled"] += int((labelled & is_special).sum())
        inputs = b["input_ids"][labelled]
        total["mask"] += int((inputs == tokenizer.mask_token_id).sum())
        total["kept"] += int((inputs == b["labels"][labelled]).sum())
        total["random"] += int(((inputs != tokenizer.mask_token_id) & (inputs != b["labels"][labelled])).sum())
        total["ngrams"] += int((labelled[:, 1:] & labelled[:, :-1]).sum())  # neighbours both labelled
        assert not (b["input_ids"] == tokenizer.mask_token_id)[~labelled].any()  # [MASK] only where predicted
    return total


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_masks_only_maskable_tokens_at_the_configured_rate_in_spans(tokenizer, texts, rate):
    total = counts(tokenizer, masked_batches(tokenizer, texts, rate))
    assert total["maskable"] > 5000
    assert total["special_labelled"] == 0  # [CLS], [SEP] and <pad> never masked nor labelled
    assert abs(total["labelled"] / total["maskable"] - rate) < 0.01
    assert total["ngrams"] > 0.2 * total["labelled"]  # spans, not only single tokens
    labelled = total["labelled"]
    assert abs(total["mask"] / labelled - 0.8) < 0.03
    assert abs(total["kept"] / labelled - 0.1) < 0.03
    assert abs(total["random"] / labelled - 0.1) < 0.03


def test_same_seed_same_masks(tokenizer, texts):
    first, again, other = (masked_batches(tokenizer, texts[:64], 0.15, seed) for seed in (1, 1, 2))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again))
    assert not all(torch.equal(a["labels"], b["labels"]) for a, b in zip(first, other))


def test_a_texts_masks_depend_on_seed_epoch_and_row_alone(tokenizer, texts):
    """Not on the batch a text lands in (length grouping, processes, workers, a resume mid-epoch all change
    that), so a resumed run draws what the uninterrupted one would; a new epoch draws anew."""
    collator = PretrainingCollator(tokenizer, 0.15, False, seed=3)
    rows = [{**t, "epoch": 5} for t in texts[:48]]
    together = collator(rows[:32])
    apart = collator(rows[16:48])  # rows 16-31 again, beside other texts and at other positions
    for i in range(16):
        n = int(together["attention_mask"][16 + i].sum())  # the text's own length; the rest is padding
        assert int(apart["attention_mask"][i].sum()) == n
        assert torch.equal(together["labels"][16 + i, :n], apart["labels"][i, :n])
        assert torch.equal(together["input_ids"][16 + i, :n], apart["input_ids"][i, :n])
    next_epoch = collator([{**t, "epoch": 6} for t in texts[:32]])
    assert not torch.equal(next_epoch["labels"], together["labels"])


def test_sentence_order_pairs_are_swapped_half_the_time(tokenizer, texts):
    batches = masked_batches(tokenizer, texts, 0.15, sentence_order=True)
    order = torch.cat([b["sentence_order_label"] for b in batches])
    assert set(order.tolist()) <= {0, 1} and abs(order.float().mean().item() - 0.5) < 0.1
    for b in batches:
        seps = (b["input_ids"] == tokenizer.sep_token_id) | (b["labels"] == tokenizer.sep_token_id)
        assert (seps.sum(1) == 2).all()  # [CLS] A [SEP] B [SEP]
        # Segment B (type 1) starts right after the first [SEP] and ends with the second.
        first_sep = seps.int().argmax(1)
        assert (b["token_type_ids"].argmax(1) == first_sep + 1).all()


def test_each_text_gets_the_rate_of_its_own_maskable_tokens_rounded_up_or_down(tokenizer, texts):
    """The budget is per text, not per batch: a short text is not left unmasked to pay for a long one."""
    special = torch.tensor(tokenizer.all_special_ids)
    for b in masked_batches(tokenizer, texts[:128], 0.15):
        labelled = b["labels"] != IGNORE
        original = torch.where(labelled, b["labels"], b["input_ids"])
        maskable = (~torch.isin(original, special) & (b["attention_mask"] == 1)).sum(1)
        for n, masked in zip(maskable.tolist(), labelled.sum(1).tolist()):
            assert masked in (math.floor(0.15 * n), math.ceil(0.15 * n)), (n, masked)


def test_the_collator_lays_out_cls_text_sep_then_padding(tokenizer, texts):
    """Undoing the masks (labels hold the original ids) gives back `[CLS] text [SEP]`, padded with <pad>."""
    examples = texts[:20]
    batch = PretrainingCollator(tokenizer, 0.15, False, seed=0)(examples)
    width = max(len(e["input_ids"]) for e in examples) + 2
    assert batch["input_ids"].shape == (20, width) and "sentence_order_label" not in batch
    restored = torch.where(batch["labels"] != IGNORE, batch["labels"], batch["input_ids"])
    for i, example in enumerate(examples):
        n = len(example["input_ids"]) + 2
        expected = [tokenizer.cls_token_id, *example["input_ids"].tolist(), tokenizer.sep_token_id]
        assert restored[i, :n].tolist() == expected
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][i, n:] == tokenizer.pad_token_id).all()
        assert (batch["labels"][i, n:] == IGNORE).all()
    assert not batch["token_type_ids"].any()


def test_a_one_token_text_has_no_sentence_order_to_predict(tokenizer):
    collator = PretrainingCollator(tokenizer, 0.15, True, seed=0)
    token = np.array([tokenizer.convert_tokens_to_ids("▁profit")])
    batch = collator([{"input_ids": token, "row": 0}, {"input_ids": np.arange(100, 110), "row": 1}])
    assert batch["sentence_order_label"][0].item() == IGNORE
    assert batch["sentence_order_label"][1].item() in (0, 1)
    restored = torch.where(batch["labels"] != IGNORE, batch["labels"], batch["input_ids"])
    assert restored[0, :3].tolist() == [tokenizer.cls_token_id, token[0], tokenizer.sep_token_id]  # one segment
    assert batch["attention_mask"][0].sum() == 3 and not batch["token_type_ids"][0].any()


def test_sentence_order_pair_cuts_into_two_non_empty_segments_and_swaps_or_keeps_them():
    generator = torch.Generator().manual_seed(0)
    labels = []
    for length in [2, 3, 5, 17, 40] * 20:
        tokens = np.arange(1000, 1000 + length)
        first, second, label = sentence_order_pair(tokens, generator)
        assert len(first) and len(second), length
        in_order = np.concatenate([first, second]) if label == 0 else np.concatenate([second, first])
        assert label in (0, 1) and np.array_equal(in_order, tokens)
        labels.append(label)
    assert 0.35 < np.mean(labels) < 0.65  # 100 fair coin flips: 0.5 +- 3 standard deviations
    one = np.array([7])
    first, second, label = sentence_order_pair(one, generator)
    assert np.array_equal(first, one) and len(second) == 0 and label == IGNORE


def test_spans_cover_maskable_positions_only_and_exactly_the_budget():
    """A sequence with a special token every few positions: no span may step onto one, and the number of chosen
    positions is rate x maskable, rounded up or down, however the spans fall."""
    maskable = torch.ones(200, dtype=torch.bool)
    maskable[::7] = False  # a "special" every 7th position
    maskable[100:110] = False
    count = int(maskable.sum())
    for seed in range(50):
        chosen = choose_spans(maskable, 0.2, torch.Generator().manual_seed(seed))
        assert chosen.shape == maskable.shape
        assert not (chosen & ~maskable).any()
        assert int(chosen.sum()) in (math.floor(0.2 * count), math.ceil(0.2 * count))
    assert choose_spans(maskable, 1.0, torch.Generator().manual_seed(0)).equal(maskable)
    assert not choose_spans(maskable, 0.0, torch.Generator().manual_seed(0)).any()


def test_span_lengths_are_drawn_with_probability_proportional_to_one_over_n():
    """ALBERT's n-gram masking: n = 1, 2, 3 with p = 6/11, 3/11, 2/11. At a 1% rate spans rarely touch, so each
    run of chosen positions is one span (the few that merge, or that the budget cuts short, move a share by about
    a percent)."""
    runs = []
    for seed in range(20):
        chosen = choose_spans(torch.ones(10_000, dtype=torch.bool), 0.01, torch.Generator().manual_seed(seed))
        padded = torch.cat([torch.tensor([False]), chosen, torch.tensor([False])]).int()
        starts, ends = (padded.diff() == 1).nonzero().squeeze(1), (padded.diff() == -1).nonzero().squeeze(1)
        runs += (ends - starts).tolist()
    assert len(runs) > 1000
    for n, p in ((1, 6 / 11), (2, 3 / 11), (3, 2 / 11)):
        assert abs(runs.count(n) / len(runs) - p) < 0.05, n


def test_span_mask_labels_the_chosen_positions_with_their_ids_and_changes_nothing_else():
    input_ids = torch.arange(10, 510)
    maskable = torch.ones(500, dtype=torch.bool)
    maskable[[0, 499]] = False  # [CLS] and [SEP]
    random_ids = torch.arange(5, 30)  # the non-special vocabulary, disjoint from the ids here
    masked, labels = span_mask(input_ids, maskable, 0.3, torch.Generator().manual_seed(0), 4, random_ids)
    chosen = labels != IGNORE
    assert torch.equal(labels[chosen], input_ids[chosen])
    assert torch.equal(masked[~chosen], input_ids[~chosen])
    assert not chosen[[0, 499]].any()
    at = masked[chosen]
    replaced = (at != 4) & (at != input_ids[chosen])
    assert torch.isin(at[replaced], random_ids).all()  # a random token is never a special one
    assert int(replaced.sum()) > 0 and int((at == 4).sum()) > int(replaced.sum())
