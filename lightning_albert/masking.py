"""ALBERT's pretraining inputs: n-gram span masking (ALBERT paper, section 4.1) and sentence-order pairs.

Spans are n-grams of tokens with n in 1..3 drawn with probability proportional to 1/n (6/11, 3/11, 2/11). They
cover `rate` of each sequence's maskable tokens (every token but [CLS], [SEP], <pad> and the other special ids).
Of the covered positions 80% become [MASK], 10% a random non-special token, 10% stay (BERT's rule); `labels`
hold the original ids there and -100 everywhere else. transformers' `DataCollatorForLanguageModeling` masks
single tokens only, hence this.

Every draw comes from a `torch.Generator`, so a seed gives the same masks.
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
    1) and a `sentence_order_label`. With `fixed_per_example`, example i is drawn from a generator seeded with
    `seed + i` (the row), so validation scores the same masks every epoch; otherwise one generator runs on,
    giving fresh masks every epoch (dynamic masking) that repeat for the same seed.
    """

    def __init__(
        self, tokenizer, rate: float, sentence_order: bool, seed: int, fixed_per_example: bool = False
    ) -> None:
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad_id, self.mask_id = tokenizer.pad_token_id, tokenizer.mask_token_id
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.random_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in set(tokenizer.all_special_ids)])
        self.rate = rate
        self.sentence_order = sentence_order
        self.seed = seed
        self.fixed_per_example = fixed_per_example
        self._generator: torch.Generator | None = None

    def generator(self, row: int) -> torch.Generator:
        if self.fixed_per_example:
            return torch.Generator().manual_seed(self.seed + row)
        if self._generator is None:  # made in the process that collates: each loader worker seeds its own
            worker = torch.utils.data.get_worker_info()
            self._generator = torch.Generator().manual_seed(self.seed + 1_000_003 * (worker.id + 1 if worker else 0))
        return self._generator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [self.example(e["input_ids"], self.generator(e["row"])) for e in examples]
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
