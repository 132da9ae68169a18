"""ALBERT's pretraining inputs: n-gram span masking (ALBERT paper, section 4.1) and sentence-order pairs.

Spans are n-grams of tokens with n in 1..3 drawn with probability proportional to 1/n (6/11, 3/11, 2/11). They
cover `rate` of each sequence's maskable tokens (every token but [CLS], [SEP], <pad> and the other special ids).
Of the covered positions 80% become [MASK], 10% a random non-special token, 10% stay (BERT's rule); `labels`
hold the original ids there and -100 everywhere else. transformers' `DataCollatorForLanguageModeling` masks
single tokens only, hence this.

Each text's draws come from its own `torch.Generator`, seeded by (seed, row) or (seed, epoch, row): a text's
masks depend on nothing else (not on the batch it lands in, the loader workers or the number of processes), so
a seed gives the same masks, and a run resumed mid-epoch draws what the uninterrupted one would.
"""

from typing import Any

import numpy as np
import torch

IGNORE = -100  # the label cross-entropy skips (torch's and transformers' default ignore_index)
NGRAM_WEIGHTS = torch.tensor([1.0, 1 / 2, 1 / 3])  # n = 1, 2, 3: p = 6/11, 3/11, 2/11


def span_mask(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    rate: float,
    generator: torch.Generator,
    mask_id: int,
    random_ids: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask one sequence: returns (masked input_ids, labels), both the shape of `input_ids` (1-D)."""
    chosen = choose_spans(maskable, rate, generator)
    labels = torch.full_like(input_ids, IGNORE)
    labels[chosen] = input_ids[chosen]
    masked = input_ids.clone()
    positions = chosen.nonzero().squeeze(1)
    draw = torch.rand(len(positions), generator=generator)
    masked[positions[draw < 0.8]] = mask_id
    swapped = positions[(draw >= 0.8) & (draw < 0.9)]
    masked[swapped] = random_ids[torch.randint(len(random_ids), (len(swapped),), generator=generator)]
    return masked, labels


def choose_spans(maskable: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Which positions to predict: n-gram spans over maskable tokens, never crossing a special token.

    The budget is `rate` of the maskable tokens, rounded up or down at random in proportion (so short texts
    are masked at the rate on average, not always rounded the same way). Spans start at maskable positions in
    random order; a span stops early at a special token, a covered position or the budget.
    """
    allowed = maskable.tolist()
    count = len(maskable.nonzero())
    exact = count * rate
    budget = int(exact) + int(torch.rand(1, generator=generator).item() < exact - int(exact))
    chosen = [False] * len(allowed)
    starts = maskable.nonzero().squeeze(1)[torch.randperm(count, generator=generator)].tolist()
    lengths = (torch.multinomial(NGRAM_WEIGHTS, max(count, 1), replacement=True, generator=generator) + 1).tolist()
    covered = 0
    for start, n in zip(starts, lengths):
        if covered >= budget:
            break
        i = start
        while i < len(allowed) and i < start + min(n, budget - covered) and allowed[i] and not chosen[i]:
            chosen[i] = True
            i += 1
        covered += i - start
    return torch.tensor(chosen, dtype=torch.bool)


def sentence_order_pair(tokens: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut a text's tokens at a random boundary into two segments and swap them with probability 0.5.

    Returns (first segment, second segment, label): label 1 when swapped, 0 in the original order
    (transformers' convention), and IGNORE for a text of one token, which has no order to predict.
    """
    if len(tokens) < 2:
        return tokens, tokens[:0], IGNORE
    cut = int(torch.randint(1, len(tokens), (1,), generator=generator))
    first, second = tokens[:cut], tokens[cut:]
    if torch.rand(1, generator=generator).item() < 0.5:
        return second, first, 1
    return first, second, 0


class PretrainingCollator:
    """Batches of texts (token ids without special tokens) into masked, padded pretraining inputs.

    Each text becomes `[CLS] text [SEP]`, or with `sentence_order` `[CLS] A [SEP] B [SEP]` (token types 0 then
    1) and a `sentence_order_label`. An example carries its `row` and, in training, its `epoch`: its masks are
    drawn from (seed, epoch, row), fresh every epoch (dynamic masking); without an epoch (validation) from
    (seed, row), the same every epoch.
    """

    def __init__(self, tokenizer, rate: float, sentence_order: bool, seed: int) -> None:
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad_id, self.mask_id = tokenizer.pad_token_id, tokenizer.mask_token_id
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.random_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in set(tokenizer.all_special_ids)])
        self.rate = rate
        self.sentence_order = sentence_order
        self.seed = seed

    def generator(self, example: dict[str, Any]) -> torch.Generator:
        key = (
            [self.seed, example["row"]]
            if example.get("epoch") is None
            else [self.seed, example["epoch"], example["row"]]
        )
        # SeedSequence mixes the numbers, so (seed, epoch, row) and (seed, epoch + 1, row - 1) are unrelated streams.
        return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1))

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [self.example(e["input_ids"], self.generator(e)) for e in examples]
        width = max(len(r[0]) for r in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
            "token_type_ids": torch.zeros((len(rows), width), dtype=torch.long),
            "labels": torch.full((len(rows), width), IGNORE, dtype=torch.long),
        }
        for i, (ids, types, labels, _) in enumerate(rows):
            n = len(ids)
            batch["input_ids"][i, :n] = ids
            batch["attention_mask"][i, :n] = 1
            batch["token_type_ids"][i, :n] = types
            batch["labels"][i, :n] = labels
        if self.sentence_order:
            batch["sentence_order_label"] = torch.tensor([r[3] for r in rows], dtype=torch.long)
        return batch

    def example(self, tokens: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(masked ids, token types, labels, sentence-order label) of one text."""
        if self.sentence_order:
            first, second, order = sentence_order_pair(tokens, generator)
            parts = [[self.cls_id], first, [self.sep_id]] + ([second, [self.sep_id]] if len(second) else [])
            types = torch.zeros(sum(map(len, parts)), dtype=torch.long)
            types[len(first) + 2 :] = 1
        else:
            parts, order = [[self.cls_id], tokens, [self.sep_id]], IGNORE
            types = torch.zeros(len(tokens) + 2, dtype=torch.long)
        ids = torch.from_numpy(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]))
        maskable = ~torch.isin(ids, self.special)
        masked, labels = span_mask(ids, maskable, self.rate, generator, self.mask_id, self.random_ids)
        return masked, types, labels, order
