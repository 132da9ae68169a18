"""Getting an ALBERT tokenizer: loaded from the hub or a folder, or trained on the user's own text.

Training is the offline path: no pretrained vocabulary can be downloaded here, so a SentencePiece unigram model
is fitted to the training texts with ALBERT's special tokens at ALBERT's ids, and wrapped in transformers'
`AlbertTokenizer` so the rest of the ecosystem reads it.
"""

import io
import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from transformers import AlbertTokenizer, AutoTokenizer, PreTrainedTokenizerBase

from lightning_albert.errors import InputError

# ALBERT's ids: <pad> 0, <unk> 1, [CLS] 2, [SEP] 3, [MASK] 4 (see albert-base-v2's tokenizer).
_SPECIAL = dict(pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"])


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A hub name or a local folder, read with AutoTokenizer (which reads `spiece.model`; see RECIPE.md)."""
    looks_like_path = Path(name_or_path).exists() or name_or_path.startswith((".", "/", "~")) or "\\" in name_or_path
    if looks_like_path and not Path(name_or_path).is_dir():
        raise InputError(f"data.tokenizer: no such folder '{name_or_path}'.{_TOKENIZER_HELP}")
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        where = "folder" if looks_like_path else "hub name (is the network reachable?)"
        raise InputError(
            f"data.tokenizer: cannot load a tokenizer from the {where} '{name_or_path}' "
            f"({str(e).splitlines()[0]}).{_TOKENIZER_HELP}"
        ) from None


_TOKENIZER_HELP = (
    " Give a folder holding tokenizer files (tokenizer.json, or spiece.model with tokenizer_config.json), "
    "a hub name such as albert-base-v2 (needs the network), or leave it unset to train one on the data."
)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """Fit a SentencePiece unigram model to `texts` and return it as a transformers AlbertTokenizer.

    The texts are normalised as AlbertTokenizer will normalise them (lower case, accents stripped) before
    training, so no piece of the vocabulary is spent on forms the tokenizer never produces.
    `hard_vocab_limit=False` lets a small corpus end with fewer pieces than asked instead of failing.
    """
    normalizer = AlbertTokenizer().backend_tokenizer.normalizer
    sentences = [normalizer.normalize_str(t) for t in texts if t and t.strip()]
    if not sentences:
        raise InputError("cannot train a tokenizer: the training texts are all empty.")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            model_type="unigram",
            character_coverage=1.0,
            num_threads=1,  # deterministic: the same texts give the same vocabulary
            minloglevel=2,
            **_SPECIAL,
        )
    except RuntimeError as e:
        # Every character of the texts needs a piece of its own, and the special tokens theirs.
        needed = re.search(r"required_chars\. \d+ vs (\d+)", str(e))
        if needed is None:
            raise
        raise InputError(
            f"data.tokenizer_vocab_size {vocab_size} is too small: the training texts hold {needed.group(1)} "
            "distinct characters and special tokens, each of which needs a piece; ask for several times that many."
        ) from None
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "spiece.model").write_bytes(model.getvalue())
        # AutoTokenizer needs the class named; AlbertTokenizer(vocab_file=...) would silently build 5 pieces.
        (Path(folder) / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "AlbertTokenizer"}))
        return AutoTokenizer.from_pretrained(folder)


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, bytes]:
    """The files `save_pretrained` writes, as bytes, so a checkpoint can carry its tokenizer."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def tokenizer_from_files(files: dict[str, bytes], **settings) -> PreTrainedTokenizerBase:
    """The inverse of `tokenizer_files`; `settings` (e.g. model_max_length) override the saved ones."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(folder, **settings)
