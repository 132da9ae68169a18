"""Reading a user's labelled text file into columns, with errors that name the file and the line.

The standard library's `csv` and `json` readers are used on purpose: they report exact line numbers, which a
user needs to find a ragged row or a stray quote, and they add no dependency.

A table is held by column (one list of values per column, line numbers in an int64 array), not as a dict per
row: a million short rows cost the strings themselves, not a million dicts of hundreds of bytes each.
"""

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightning_albert.errors import InputError

DELIMITED = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = {".jsonl", ".ndjson"}
SUPPORTED = sorted([*DELIMITED, *JSON_LINES, ".json", ".parquet"])
DATASETS_EXTRA = "pip install 'lightning-albert[datasets]'"


@dataclass
class Table:
    """The values of one file by column, and the line each row starts on (1-based, the header being line 1 in CSV).

    A value missing from a row (a JSON object without the key) is None. Parquet files and Hugging Face datasets
    have no lines: there `unit` is "row" and `lines` count rows from 1. `class_names` holds the names of a
    datasets ClassLabel column, whose values are integer ids. `source` is the local file or folder read, if any.
    """

    path: Path | str
    data: dict[str, list[Any]]
    lines: Sequence[int]
    unit: str = "line"
    class_names: dict[str, list[str]] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        self.lines = np.asarray(self.lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def columns(self) -> list[str]:
        return list(self.data)

    @property
    def rows(self) -> "_Rows":
        """The rows as dicts, made when indexed (for inspection; the columns are what is stored)."""
        return _Rows(self)

    def column(self, name: str, role: str) -> list[Any]:
        """The values of column `name`, or an error that lists the columns the file has."""
        if name not in self.data:
            raise InputError(
                f"{self.path}: no column '{name}' (the {role} column). The file has columns: "
                f"{', '.join(repr(c) for c in self.columns)}. Set the data.{role}_column option to one of them."
            )
        return self.data[name]


class _Rows(Sequence):
    def __init__(self, table: Table):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return {name: values[i] for name, values in self.table.data.items()}


def _by_column(objects: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Dicts (JSON objects) to columns, in order of first appearance; a key a row lacks reads as None."""
    data: dict[str, list[Any]] = {}
    n = 0
    for obj in objects:
        for key in obj:
            if key not in data:
                data[key] = [None] * n
        for key, values in data.items():
            values.append(obj.get(key))
        n += 1
    return data


def read_table(path: str | Path, encoding: str = "utf-8", key: str = "") -> Table:
    """Read a CSV, TSV, JSON Lines, JSON (array of objects) or Parquet file, chosen by its extension, or a
    folder that `datasets.Dataset.save_to_disk` wrote. `key` names the option the path came from, for errors."""
    path = Path(path)
    if not path.exists():
        where = f"{key}: " if key else ""
        raise InputError(f"{where}{path}: no such file. Check the path (relative paths start from {Path.cwd()}).")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return read_dataset(str(path), None, None)
        raise InputError(f"{path}: is a folder, not a data file (nor a folder written by datasets' save_to_disk).")
    suffix = path.suffix.lower()
    if suffix not in DELIMITED and suffix not in JSON_LINES and suffix not in (".json", ".parquet"):
        raise InputError(f"{path}: unknown file type '{suffix}'. Use one of: {', '.join(SUPPORTED)}.")
    if suffix == ".parquet":
        return _read_parquet(path)
    text = _decode(path, encoding)
    if not text.strip():
        raise InputError(f"{path}: the file is empty. It needs a header line and at least one row.")
    if suffix in DELIMITED:
        table = _read_delimited(path, text, DELIMITED[suffix])
    elif suffix in JSON_LINES:
        table = _read_json_lines(path, text)
    else:
        table = _read_json_array(path, text)
    if not len(table):
        raise InputError(f"{path}: has a header but no rows of data.")
    table.source = path
    return table


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    # utf-8-sig reads plain UTF-8 too and drops the byte-order mark Excel writes.
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return raw.decode(codec)
    except LookupError:
        raise InputError(f"data.encoding: '{encoding}' is not a known text encoding (try utf-8 or latin-1).") from None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"{path}, line {line}: byte 0x{raw[e.start]:02x} is not valid {encoding}. Save the file as UTF-8, "
            f"or set data.encoding to the file's encoding (for example --data.encoding latin-1)."
        ) from None


# Lines as io.StringIO(newline="") splits them, without its copy of the text at 4 bytes a character.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _lines_of(text: str) -> Iterable[str]:
    return (m.group() for m in _LINE.finditer(text))


def _read_delimited(path: Path, text: str, delimiter: str) -> Table:
    reader = csv.reader(_lines_of(text), delimiter=delimiter, strict=True)
    kind = "CSV" if delimiter == "," else "TSV"
    values: list[list[str]] = []
    lines: list[int] = []
    columns: list[str] | None = None
    start = 1
    try:
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip() and columns is not None):
                start = reader.line_num + 1
                continue
            if columns is None:
                columns = [c.strip() for c in record]
                _check_header(path, columns)
                values = [[] for _ in columns]
            elif len(record) != len(columns):
                raise InputError(
                    f"{path}, line {start}: {len(record)} fields where the header has {len(columns)} "
                    f"({', '.join(columns)}). A field that contains '{delimiter if delimiter == ',' else 'a tab'}' "
                    f'must be wrapped in double quotes ("...").'
                )
            else:
                for column, value in zip(values, record):
                    column.append(value)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        if "end of data" in str(e):
            problem = "a double quote opened on this line is never closed (the file ends inside a quoted field)"
        else:
            problem = f"a quoted field goes on after its closing quote ({e})"
        raise InputError(
            f"{path}, line {start}: malformed {kind}: {problem}. Close the quote; a quote inside a quoted field "
            f'is written twice ("").'
        ) from None
    if columns is None:
        raise InputError(f"{path}: the file is empty. It needs a header line and at least one row.")
    return Table(path, dict(zip(columns, values)), lines)


def _check_header(path: Path, columns: list[str]) -> None:
    seen = set()
    for c in columns:
        if c in seen:
            raise InputError(f"{path}, line 1: the header names column '{c}' twice. Column names must be unique.")
        seen.add(c)


def _read_json_lines(path: Path, text: str) -> Table:
    lines: list[int] = []
    data = _by_column(_json_lines(path, text, lines))
    return Table(path, data, lines)


def _json_lines(path: Path, text: str, lines: list[int]) -> Iterable[dict]:
    """The objects of a JSON Lines text, appending each one's line number to `lines`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {number}: not valid JSON ({e.msg}, column {e.colno}).") from None
        if not isinstance(obj, dict):
            raise InputError(
                f'{path}, line {number}: each line must be a JSON object like {{"text": ..., "label": ...}}.'
            )
        lines.append(number)
        yield obj


def _read_json_array(path: Path, text: str) -> Table:
    """Read `[{...}, {...}]` item by item with raw_decode, so that each item keeps its line number."""
    decoder = json.JSONDecoder()
    i = _skip_space(text, 0)
    if text[i] != "[":
        raise InputError(
            f"{path}: a .json file must hold an array of objects ([{{...}}, ...]); use .jsonl for JSON Lines."
        )
    rows: list[dict] = []
    lines: list[int] = []
    i = _skip_space(text, i + 1)
    while i < len(text) and text[i] != "]":
        line = text.count("\n", 0, i) + 1
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}, column {e.colno}).") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}, line {line}: item {len(rows) + 1} of the array is not an object.")
        rows.append(obj)
        lines.append(line)
        i = _skip_space(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip_space(text, i + 1)
        elif i >= len(text) or text[i] != "]":
            line = text.count("\n", 0, min(i, len(text))) + 1
            raise InputError(f"{path}, line {line}: expected ',' or ']' after item {len(rows)} of the array.")
    if i >= len(text):
        raise InputError(f"{path}: the array is never closed with ']'.")
    return Table(path, _by_column(rows), lines)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow: {DATASETS_EXTRA} (or convert to CSV).") from None
    try:
        table = pq.read_table(path)
        data = table.to_pydict()
    except Exception as e:  # pyarrow's errors name no file
        raise InputError(f"{path}: not a readable Parquet file ({e}).") from None
    if not table.num_rows:
        raise InputError(f"{path}: has no rows of data.")
    return Table(path, data, np.arange(1, table.num_rows + 1), unit="row")


def read_dataset(source: str, config: str | None, split: str | None) -> Table:
    """One split of a Hugging Face dataset: a folder from `save_to_disk`, or a hub name (needs the network)."""
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"reading '{source}' as a Hugging Face dataset needs the datasets package: {DATASETS_EXTRA}."
        ) from None
    where = f"{source}[{split}]" if split else source
    if Path(source).is_dir():
        try:
            loaded = datasets.load_from_disk(source)
        except (FileNotFoundError, ValueError) as e:
            raise InputError(f"{source}: not a folder written by datasets' save_to_disk ({e}).") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split is None or split not in loaded:
                raise InputError(
                    f"{source}: holds splits {', '.join(loaded)}; "
                    + (f"no split '{split}'." if split else "name it with data.dataset and data.<stage>_split.")
                )
            loaded = loaded[split]
    else:
        try:
            loaded = datasets.load_dataset(source, config, split=split)
        except Exception as e:  # network, unknown name, unknown split: the first line says which
            raise InputError(f"data.dataset: cannot load '{where}' ({str(e).splitlines()[0]}).") from None
    if not loaded.num_rows:
        raise InputError(f"{where}: has no rows of data.")
    names = {c: f.names for c, f in loaded.features.items() if isinstance(f, datasets.ClassLabel)}
    # Multi-label columns: a sequence of ClassLabel ids (Sequence in datasets 2-3, List from 4).
    names |= {
        c: f.feature.names
        for c, f in loaded.features.items()
        if isinstance(getattr(f, "feature", None), datasets.ClassLabel)
    }
    lines = np.arange(1, loaded.num_rows + 1)
    source = Path(source) if Path(source).is_dir() else None
    return Table(where, loaded.to_dict(), lines, unit="row", class_names=names, source=source)


def dataset_splits(source: str, config: str | None) -> list[str]:
    """The split names a Hugging Face dataset has."""
    import datasets

    if Path(source).is_dir():
        loaded = datasets.load_from_disk(source)
        return list(loaded) if isinstance(loaded, datasets.DatasetDict) else []
    try:
        return list(datasets.get_dataset_split_names(source, config))
    except Exception as e:
        raise InputError(f"data.dataset: cannot list the splits of '{source}' ({str(e).splitlines()[0]}).") from None
