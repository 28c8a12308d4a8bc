"""Reading a data set's files in their original formats: CSV/TSV (optionally gzipped), JSON and JSON Lines,
into a table of raw cells; finding the files and recording their checksums. Defects of a file (not UTF-8, not
gzip, not JSON, another delimiter, a malformed quoted field) are refused with a one-line DataError."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections import Counter

import pandas as pd

from ftbench.data_errors import DataError, show


def sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_files(paths: dict) -> dict:
    """The record of local files a data set came from: path and SHA-256 per split."""
    return {split: {"path": path, "sha256": sha256_of_file(path)} for split, path in paths.items() if path}


def find_file(data_dir: str, dataset: str, filename: str) -> str:
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
            f"(its header line {show(header)} holds no {_DELIMITERS[sep]}); {fix}")


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
    """Why a tab-separated text is read with RFC 4180 quoting (see read_table), naming the line; None if not."""
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


def read_table(path: str, sep: str | None = None, expected: str = "local", quoting: int | None = None
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


def column_values(frame: pd.DataFrame, name: str, path: str, option: str, expected: str = "local") -> list:
    if name not in frame.columns:
        if len(frame.columns) <= 1 and "sep" in frame.attrs:
            problem = _delimiter_problem(frame.attrs["header"], frame.attrs["sep"], path, expected)
            if problem:
                raise DataError(problem)
        shown = ", ".join(show(str(c), 30)[1:-1] for c in list(frame.columns)[:20])
        raise DataError(f"'{path}' has no column '{name}' (columns: {shown}); name the right one with {option}")
    return frame[name].tolist()


def refuse_nested(frame: pd.DataFrame, path: str, columns: dict) -> None:
    """Refuse, in one line naming the first line or object holding one, a JSON list or object (which has no one
    text) among the values of `columns` ({name: (values, what the value should be instead)})."""
    if "place" not in frame.attrs:  # CSV/TSV cells are strings
        return
    for row, number in enumerate(frame.index):
        for column, (values, expected) in columns.items():
            if isinstance(values[row], (list, dict)):
                kind = "list" if isinstance(values[row], list) else "object"
                raise DataError(f"'{path}' {frame.attrs['place']} {number}: {json.dumps(column)} is a JSON {kind}, "
                                f"{show(values[row])}; {expected}")
