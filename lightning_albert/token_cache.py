"""Token ids held compactly: flat numpy arrays with offsets, encoded in chunks, cached on disk, padded per batch.

A split of n examples is `input_ids` (int32, every example's ids end to end), `offsets` (int64, n + 1: example i
is `input_ids[offsets[i]:offsets[i + 1]]`) and, for sentence pairs only, `token_type_ids` (int8, aligned with
`input_ids`). The attention mask is all ones up to an example's length, so it is made when a batch is padded,
not stored. That is 4-5 bytes a token; a Python list of ints costs about 36.

The cache is one file per split, named by a digest of everything the ids depend on (`cache_key`), written
atomically and read back memory-mapped, so a second fit/validate/test reads it instead of tokenizing.
"""

import hashlib
import itertools
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib import format as npy

from lightning_albert.files import atomic_write

FORMAT_VERSION = 1  # bump when the layout of a cache file or the way ids are made changes
CHUNK_SIZE = 10_000  # texts per tokenizer call: the batch API's speed, without a list of all ids at once
_ALIGN = 64  # each array in a cache file starts on a 64-byte boundary, as .npy aligns its data


@dataclass
class TokenArrays:
    """The token ids of one split (see the module docstring); `truncated` counts texts cut at max_length."""

    input_ids: np.ndarray
    offsets: np.ndarray
    token_type_ids: np.ndarray | None = None
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example (special tokens included), int64."""
        return np.diff(np.asarray(self.offsets))

    @property
    def nbytes(self) -> int:
        arrays = (self.input_ids, self.offsets, self.token_type_ids)
        return sum(a.nbytes for a in arrays if a is not None)


def encode(
    tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int, chunk_size: int = CHUNK_SIZE
) -> TokenArrays:
    """Tokenize `chunk_size` texts at a time into flat arrays, truncating at `max_length`.

    Each chunk is tokenized whole, then only its over-long texts again with truncation, so the truncated ones
    are counted exactly and the ids are those of `tokenizer(text, pair, truncation=True, max_length=...)`.
    """
    kwargs = dict(return_token_type_ids=pairs is not None, return_attention_mask=False, verbose=False)
    ids, types, lengths, truncated = [], [], [], 0
    for start in range(0, len(texts), chunk_size):
        chunk = list(texts[start : start + chunk_size])
        chunk_pairs = list(pairs[start : start + chunk_size]) if pairs is not None else None
        enc = tokenizer(chunk, chunk_pairs, **kwargs)
        chunk_ids, chunk_types = enc["input_ids"], enc.get("token_type_ids")
        long = [i for i, x in enumerate(chunk_ids) if len(x) > max_length]
        if long:
            cut = tokenizer(
                [chunk[i] for i in long],
                [chunk_pairs[i] for i in long] if chunk_pairs else None,
                truncation=True,
                max_length=max_length,
                **kwargs,
            )
            for j, i in enumerate(long):
                chunk_ids[i] = cut["input_ids"][j]
                if chunk_types is not None:
                    chunk_types[i] = cut["token_type_ids"][j]
            truncated += len(long)
        chunk_lengths = np.fromiter(map(len, chunk_ids), dtype=np.int64, count=len(chunk_ids))
        total = int(chunk_lengths.sum())
        lengths.append(chunk_lengths)
        ids.append(_flat(chunk_ids, np.int32, total))
        if chunk_types is not None:
            types.append(_flat(chunk_types, np.int8, total))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return TokenArrays(
        input_ids=np.concatenate(ids) if ids else np.zeros(0, np.int32),
        offsets=offsets,
        token_type_ids=(np.concatenate(types) if types else np.zeros(0, np.int8)) if pairs is not None else None,
        truncated=truncated,
    )


def _flat(lists: list[list[int]], dtype, total: int) -> np.ndarray:
    return np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=total)


# ------------------------------------------------------------------------------------------------ the cache
def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/lightning_albert/tokens`, or `~/.cache/lightning_albert/tokens`."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "lightning_albert" / "tokens"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of every file under a folder (relative names and bytes, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if p != path:
            digest.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def cache_key(
    source_digest: str,
    rows: Iterable[int],
    tokenizer_files: dict[str, bytes],
    max_length: int,
    columns: Sequence[str | None],
    encoding: str,
) -> str:
    """The cache file's name: a digest of the source's content, which of its rows (in order), the tokenizer's
    files, max_length, the text (and pair) column names, the text encoding and the format version."""
    digest = hashlib.sha256(f"lightning_albert tokens v{FORMAT_VERSION}\0".encode())
    digest.update(source_digest.encode())
    digest.update(np.fromiter(rows, dtype=np.int64).tobytes())
    for name, data in sorted(tokenizer_files.items()):
        digest.update(hashlib.sha256(name.encode() + b"\0" + data).digest())
    digest.update(repr((max_length, list(columns), encoding)).encode())
    return digest.hexdigest()


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.tokens"


def save(path: str | Path, tokens: TokenArrays) -> None:
    """Write the arrays to one file, atomically: concurrent writers (DDP ranks) and a kill leave either no file
    or a whole one. Layout: a header array, then input_ids, offsets and token_type_ids, each as .npy data."""
    has_types = tokens.token_type_ids is not None
    header = np.array([FORMAT_VERSION, len(tokens), len(tokens.input_ids), has_types, tokens.truncated], np.int64)
    arrays = [header, tokens.input_ids, tokens.offsets] + ([tokens.token_type_ids] if has_types else [])
    remove_stale_partials(Path(path).parent)
    with atomic_write(path, "wb") as f:
        for array in arrays:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            f.write(b"\0" * (-f.tell() % _ALIGN))


def remove_stale_partials(cache_dir: Path, max_age_s: float = 24 * 3600) -> None:
    """Delete the temporary files of writes that never finished (a process killed while writing: the rename
    never came). Only old ones: a fresh one may be another process (a DDP rank) writing right now."""
    now = time.time()
    for partial in cache_dir.glob(".*.tokens.*.tmp"):
        try:
            if now - partial.stat().st_mtime > max_age_s:
                partial.unlink()
        except OSError:  # gone already, or not ours to delete: it stays
            pass


def load(path: str | Path) -> TokenArrays | None:
    """The arrays of a cache file, memory-mapped; None if the file is missing or not a whole, valid one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = _read_array(f, path, size, mmap=False)
            if len(header) != 5 or header[0] != FORMAT_VERSION:
                return None
            n, n_tokens, has_types, truncated = (int(x) for x in header[1:])
            input_ids = _read_array(f, path, size)
            offsets = _read_array(f, path, size)
            types = _read_array(f, path, size) if has_types else None
            complete = f.tell() == size
    except (OSError, ValueError, EOFError):
        return None
    shapes_fit = input_ids.shape == (n_tokens,) and offsets.shape == (n + 1,)
    if not complete or not shapes_fit or (types is not None and types.shape != (n_tokens,)):
        return None
    if n_tokens and offsets[-1] != n_tokens:
        return None
    return TokenArrays(input_ids, offsets, types, truncated)


def _read_array(f, path: Path, size: int, mmap: bool = True) -> np.ndarray:
    version = npy.read_magic(f)
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran_order, dtype = read_header(f)
    start = f.tell()
    end = start + int(np.prod(shape)) * dtype.itemsize
    if fortran_order or end > size:
        raise ValueError(f"{path}: truncated or foreign array")
    if mmap and end > start:
        array = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)
    else:
        array = np.frombuffer(f.read(end - start), dtype=dtype).reshape(shape)
    f.seek(end + (-end % _ALIGN))
    return array


# ------------------------------------------------------------------------------------------------ batching
class PadCollator:
    """Pad a list of examples (`input_ids`, optional `token_type_ids`, `labels`, `row`) to the longest in the
    batch, on the right, into int64 tensors, with an `attention_mask` of ones over the real tokens.

    `pad_to_multiple_of` rounds the padded length up (multiples of 8 suit tensor cores and give torch.compile
    fewer distinct shapes to compile for).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(e["input_ids"]) for e in examples]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(examples), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(examples), width), dtype=np.int64)
        has_types = "token_type_ids" in examples[0]
        token_type_ids = np.zeros((len(examples), width), dtype=np.int64) if has_types else None
        for i, (e, n) in enumerate(zip(examples, lengths)):
            input_ids[i, :n] = e["input_ids"]
            attention_mask[i, :n] = 1
            if has_types:
                token_type_ids[i, :n] = e["token_type_ids"]
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if has_types:
            batch["token_type_ids"] = torch.from_numpy(token_type_ids)
        if "labels" in examples[0]:
            labels = np.stack([np.asarray(e["labels"]) for e in examples])  # class ids, multi-hot rows or values
            batch["labels"] = torch.from_numpy(labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64))
        batch["row"] = torch.tensor([e["row"] for e in examples], dtype=torch.int64)
        return batch
