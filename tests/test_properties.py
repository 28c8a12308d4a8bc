"""Property-based tests (hypothesis): whatever file or option list a user gives, loading either succeeds with
valid splits or is refused with one line (utils.DataError, config.ConfigError, or argparse's exit status 2);
never a traceback. Data files generated clean (quoted by csv.writer or pandas, numbers spelled several ways, only
defects that are repaired) must load, with exactly the rows written; JSON texts or labels that are lists or
objects must be refused, naming the first.

The runs are derandomised (the same inputs on every run and machine) and sized to take well under a minute
together on one core. How many inputs each property tried is printed at the end of the module (pytest -s);
`--hypothesis-show-statistics` gives hypothesis' own account.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import random
import re
import tempfile
from collections import Counter
from fractions import Fraction

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
import utils
from config import ConfigError, DataArguments
from ftbench.dedup import text_key

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

TRIED: Counter = Counter()  # inputs tried per property, and how they ended
REASONS: dict[str, Counter] = {}  # the kinds of refusal per property (values in the messages blanked out)


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nhypothesis inputs tried per property:", dict(sorted(TRIED.items())))
    for name, reasons in REASONS.items():
        print(f"most frequent refusals, {name}:", reasons.most_common(6))


# --- what every outcome must satisfy ---------------------------------------------------------------------------------


def check_splits(splits: utils.Splits, keep_duplicates: bool) -> None:
    names = splits.label_names
    assert len(names) >= 2 and len(set(names)) == len(names)
    keys = {}
    for split in ("train", "validation", "test"):
        texts, labels = getattr(splits, split)
        assert texts and len(texts) == len(labels), split
        assert all(isinstance(t, str) and t.strip() for t in texts), split
        assert all(isinstance(i, int) and 0 <= i < len(names) for i in labels), split
        assert len(set(labels)) >= 2, split
        keys[split] = {text_key(t) for t in texts}
    if not keep_duplicates:
        assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
        assert not keys["validation"] & keys["test"]
    json.dumps(splits.info)  # it goes into the results JSON


def one_line_refusal(name: str, error: utils.DataError) -> str:
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, message
    TRIED[name + ": refused"] += 1
    REASONS.setdefault(name, Counter())[re.sub(r"'[^']*'|\[[^]]*\]|[0-9]+", "_", message)[:70]] += 1
    return message


def load_or_refuse(name: str, args: DataArguments, clean: dict | None = None) -> None:
    """Load; a file generated clean (`clean`: the rows written per split) must load, with exactly those rows."""
    TRIED[name] += 1
    try:
        splits = utils.load_splits(args)
    except utils.DataError as error:
        message = one_line_refusal(name, error)
        assert clean is None, f"a clean file was refused: {message}"
        return
    check_splits(splits, args.keep_duplicates)
    if clean is not None:
        check_rows(splits, clean, args.keep_duplicates)
        TRIED[name + ": clean, loaded exactly"] += 1
    TRIED[name + ": loaded"] += 1


# What loading promises for clean rows, worked out here without utils: texts come back stripped; labels that
# differ in case, surrounding spaces or the spelling of a number are one class; within a split other than a given
# test split, a text repeated (whitespace collapsed, case ignored) keeps its first copy, or no copy if its copies
# disagree on the class.


def label_class(label) -> str:
    """The class of a written label: a number by its value ('1.0', '+1', 1.0 are '1'; '2.50' is '5/2'), another
    label in lower case without surrounding spaces."""
    text = str(label).strip()
    try:
        return str(Fraction(text))
    except ValueError:
        return text.casefold()


def same_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def repaired(rows: list, whole: bool) -> list[tuple[str, str]]:
    rows = [(text.strip(), label_class(label)) for text, label in rows]
    if whole:
        return rows
    classes: dict = {}
    for text, cls in rows:
        classes.setdefault(same_text(text), set()).add(cls)
    kept, seen = [], set()
    for text, cls in rows:
        if same_text(text) not in seen and len(classes[same_text(text)]) == 1:
            kept.append((text, cls))
        seen.add(same_text(text))
    return kept


def check_rows(splits: utils.Splits, clean: dict, keep: bool) -> None:
    """The loaded (text, class) rows are exactly the clean rows written, repaired as promised; one class per
    written class, a number named by its integer spelling when integral."""
    got = sorted((text, label_class(splits.label_names[i])) for split in ("train", "validation", "test")
                 for text, i in zip(*getattr(splits, split)))
    want = sorted(row for split, rows in clean.items() for row in repaired(rows, keep or split == "test"))
    assert got == want
    if "train" in clean:  # a local file: its label names come from its labels
        assert sorted(label_class(name) for name in splits.label_names) == \
            sorted({label_class(label) for _, label in clean["train"]})
    for name in splits.label_names:
        if re.fullmatch(r"-?[0-9]+", label_class(name)):  # an integer is named by its integer spelling
            assert name == label_class(name), name


# --- data files: malformed, and clean ---------------------------------------------------------------------------
# Hypothesis draws each file's shape (size, delimiter, header, encoding, label spellings, how often each defect
# occurs); the rows themselves come from a seeded generator it also draws. Half the files are clean: the
# delimiter and header they should have, UTF-8, only defects that are repaired (label spellings, repeats,
# blank lines), texts that a quoting writer must quote (line breaks, tabs, quotes); they must load, with exactly
# the rows written. The others carry many defects at once and are loaded or refused in one line.

ODD_CELLS = ["", " ", "\t", '"', '""', 'say "hi"', "a,b", "a;b", "a|b", "a\tb", "x\ny", "x\r\ny", "\r", "caf\u00e9",
             "\u2028", "\x00", "NaN", "null", "None", "#comment", "\ufeff", "=1+1", "\\", "'", "\x1c", "\u200b"]
ODD_LABELS = ["pos", "neg", "Positive", " POSITIVE ", "positive", "negative", "NEGATIVE", "0", "1", "01", "-1", "2",
              "1.0", "", "  ", "nan", "NULL", "pos ", "neutral", "9" * 30]
USUAL_LABELS = ["pos", "neg", "Pos", " NEG ", "positive", "Positive", "negative", "0", "1", " 1"]
# numbers as spreadsheets export them: each spelling of one number must be one class
NUMBER_LABELS = ["1.0", "01", "+1", "1 ", "0.0", " 0", "-0", "2.5", "2.50", "-1", "-1.0", "10", "10.00"]
# texts a quoting writer (csv.writer, pandas) must quote, or that must not be taken for anything but text
QUOTED_TEXTS = ["two\nlines", "crlf\r\nline", "cr\ronly", "tab\there", "tab\tand\nbreak", 'say "hi"', '"quoted"',
                'ends "', '""', "comma, here", "semi;colon|pipe"]
PLAIN_TEXTS = ["caf\u00e9 \u00fcber", "line\u2028sep", "nul\x00char", "x\x1cy", "NaN", "null", "#hash", "=1+1",
               "back\\slash", "'single'"]
DELIMITERS = [",", "\t", ";", "|", " "]
RATE = st.sampled_from([0.0, 0.0, 0.02, 0.1, 0.5])  # how often a defect occurs in a file
CLEAN_RATE = st.sampled_from([0.0, 0.0, 0.02, 0.1])  # repeats and relabelled repeats in clean files


def labels():
    """A pool of 1-4 label spellings: mostly usual ones (in various cases), sometimes odd ones."""
    usual = st.sampled_from(USUAL_LABELS)
    return st.lists(st.one_of(usual, usual, usual, st.sampled_from(ODD_LABELS), st.text(max_size=6)),
                    min_size=2, max_size=4) | st.lists(st.sampled_from(ODD_LABELS), min_size=1, max_size=1)


NO_MORE_LABELS = st.nothing()


def clean_labels(numbers=NO_MORE_LABELS):
    """A pool of 2-4 label spellings of at least two classes, often numbers spelled several ways (at most 4 classes:
    a tenth of 40 rows can hold each in the test split)."""
    spelling = st.sampled_from(USUAL_LABELS) | st.sampled_from(["0", "1"] + NUMBER_LABELS) | numbers
    return st.lists(spelling, min_size=2, max_size=4).filter(lambda pool: len(set(map(label_class, pool))) >= 2)


def odd_text(rng, i: int) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(ODD_CELLS)
    if kind == 1:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x3000)]))
                       for _ in range(rng.randrange(8)))
    if kind == 2:  # a huge field
        return rng.choice(["x", "long ", "\u00e9", '"']) * rng.randrange(1000, 200_000)
    return f"{rng.choice(ODD_CELLS)} {i}"


@st.composite
def examples(draw, clean: bool, pool: list | None = None, prefix: str = "review", texts=()) -> tuple[list, list]:
    """Texts (with repeats that differ in case and spacing, odd texts unless clean, and some of `texts`) and labels
    drawn from a pool. In a clean file the labels go round the pool, so every spelling has a tenth of the rows."""
    n = draw(st.integers(50, 90) if clean else st.one_of(st.integers(0, 12), st.integers(20, 80)))
    pool = pool or draw(clean_labels() if clean else labels())
    odd, special = (0.0 if clean else draw(RATE)), (draw(RATE) if texts else 0.0)
    repeats, relabel = draw(CLEAN_RATE if clean else RATE), draw(CLEAN_RATE if clean else RATE)
    rng = random.Random(draw(st.integers(0, 2**32)))
    rows = []
    for i in range(n):
        if rows and rng.random() < repeats:
            text, value = rng.choice(rows)
            change = rng.choice([str.upper, str.lower, lambda t: f"  {t} "])
            rows.append((change(text), value if rng.random() >= relabel else rng.choice(pool)))
            continue
        if rng.random() < odd:
            text = odd_text(rng, i)
        elif rng.random() < special:
            text = f"{rng.choice(texts)} {prefix} {i}"
        else:
            text = f"{prefix} number {i}"
        rows.append((text, pool[len(rows) % len(pool)] if clean else rng.choice(pool)))
    return [t for t, _ in rows], [v for _, v in rows]


def write_table(draw, rng, writer: str, rows: list, header: list, sep: str, bad: float) -> str:
    """The rows under the header as text: by csv.writer or pandas (quoting what needs it), or joined naively with
    ragged rows (only if bad) and blank lines."""
    if writer == "pandas":  # it quotes what needs it, never a header name that does not
        buffer = io.StringIO()
        end = draw(st.sampled_from(["\n", "\r\n"]))
        pd.DataFrame(rows).to_csv(buffer, sep=sep, index=False, header=False, lineterminator=end)
        return sep.join(header) + end + buffer.getvalue()
    if writer != "naive":
        buffer = io.StringIO()
        quoting = csv.QUOTE_ALL if writer == "csv QUOTE_ALL" else csv.QUOTE_MINIMAL
        csv.writer(buffer, delimiter=sep, quoting=quoting).writerows([header] + rows)
        return buffer.getvalue()
    ragged, blank = draw(RATE) * bad, draw(RATE)
    lines = []
    for row in [header] + rows:
        if rng.random() < ragged:
            row = rng.choice([row[:1], [], row + ["more"]])
        lines.append(sep.join(row))
        if rng.random() < blank:
            lines.append(rng.choice(["", " ", "\t", sep]))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))


@st.composite
def table_bytes(draw, clean: bool, pool: list | None = None, prefix: str = "review") -> tuple[str, bytes, list]:
    """A CSV/TSV-like file with random delimiter, quoting, header, missing or extra cells, label spellings, repeats,
    blank lines, encoding and stray bytes; (extension, contents, rows written: [(text, label)])."""
    writer = draw(st.sampled_from(["csv", "csv QUOTE_ALL", "pandas", "naive"]))
    quoted = QUOTED_TEXTS if writer != "naive" or not clean else []  # unquoted, they would be defects
    if writer == "pandas" and clean:  # to_csv does not quote a lone '\r', which every reader takes for a line end
        quoted = [text for text in quoted if "\r" not in text.replace("\r\n", "")]
    texts, values = draw(examples(clean, pool, prefix, quoted + PLAIN_TEXTS))
    rows = [[t, v] for t, v in zip(texts, values)]
    rng = random.Random(draw(st.integers(0, 2**32)))
    bad = 0.0 if clean else 1.0  # scales the chance of each defect that gets a file refused
    extension = draw(st.sampled_from([".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"]))
    # mostly the delimiter and header the file should have, sometimes another
    sep = ("\t" if extension.startswith((".tsv", ".txt")) else ",") if rng.random() < 1 - 0.2 * bad else \
        draw(st.sampled_from(DELIMITERS))
    header = ["text", "label"] if rng.random() < 1 - 0.25 * bad else draw(st.sampled_from(
        [["label", "text"], ["sentence", "label"], ["text"], ["text", "label", "extra"], [], ["Text", "Label"],
         ["text", "text"]]))
    if draw(st.booleans()):
        rows, header = [row[::-1] for row in rows], header[::-1]
    text = write_table(draw, rng, writer, rows, header, sep, bad)
    encoding = rng.choice(["utf-8-sig", "latin-1", "utf-16"]) if rng.random() < 0.2 * bad else \
        rng.choice(["utf-8", "utf-8", "utf-8-sig"])
    data = text.encode(encoding, errors="replace")
    if rng.random() < 0.1 * bad:  # a stray byte that is not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\x80", b"\xc3"])) + data[at:]
    if extension.endswith(".gz"):
        data = gzip.compress(data)
        if rng.random() < 0.1 * bad:
            data = data[: draw(st.integers(0, len(data)))]
    return extension, data, list(zip(texts, values))


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
              st.sampled_from(ODD_LABELS)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)
NESTED = st.lists(JSON_VALUES, max_size=3) | st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3)


@st.composite
def json_bytes(draw, clean: bool, pool: list | None = None, prefix: str = "review") -> tuple[str, bytes, list]:
    """A JSON Lines (or JSON) file: objects with the right, wrong or missing keys and values of any JSON type
    (labels as numbers, floats, nulls, lists), plus garbage lines; (extension, contents, rows that have a text and
    a label: [(text, label)]). Clean files: labels as strings or numbers, some keys missing, nothing else odd."""
    if clean:
        pool = pool or draw(clean_labels(st.sampled_from([0, 1, 1.0, 0.0, 2.5, -1])))
    texts, values = draw(examples(clean, pool, prefix, QUOTED_TEXTS + PLAIN_TEXTS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    bad = 0.0 if clean else 1.0
    if not clean and draw(st.booleans()):  # labels of other JSON types: 0.0, 1, null, true, [..]
        others = draw(st.lists(st.one_of(st.integers(-1, 3), st.sampled_from([0.0, 1.0, None, True])), min_size=1,
                               max_size=3) | st.lists(JSON_VALUES, min_size=1, max_size=3))
        values = [others[sum(map(ord, str(v))) % len(others)] for v in values]
    odd_value, missing_key = draw(RATE) * bad, draw(CLEAN_RATE if clean else RATE)
    weird = draw(st.lists(JSON_VALUES, min_size=1, max_size=3))
    objects, rows = [], []
    for text, value in zip(texts, values):
        row = {"text": rng.choice(weird) if rng.random() < odd_value else text, "label": value}
        if rng.random() < missing_key:
            del row[rng.choice(["text", "label"])]
        else:
            rows.append((text, value))
        objects.append(row)
    extension = draw(st.sampled_from([".jsonl", ".jsonl", ".json", ".jsonl.gz"]))
    if extension == ".json":
        text = json.dumps(objects if rng.random() < 1 - 0.2 * bad else draw(JSON_VALUES))
    else:
        lines = [json.dumps(o, ensure_ascii=draw(st.booleans())) for o in objects]
        for _ in range(rng.choice([0, 0, 0, 1, 2]) if not clean else 0):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(
                ["", "   ", "{", "[1, 2]", "null", '"text"', "{'a': 1}", "{}",
                 '{"text": "t", "label": 1' + "0" * 5000 + "}", "[" * 100_000])))
        text = "\n".join(lines)
    data = text.encode("utf-8")
    if rng.random() < 0.1 * bad:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff" + data[at:]
    return extension, gzip.compress(data) if extension.endswith(".gz") else data, rows


@st.composite
def nested_json(draw) -> tuple[str, bytes, str]:
    """A clean JSON Lines or JSON file in which 1-3 texts or labels are lists or objects; (extension, contents, the
    start of the refusal: where the first of them is and which key holds it)."""
    texts, values = draw(examples(True, None, "review", PLAIN_TEXTS))
    objects = [{"text": t, "label": v} for t, v in zip(texts, values)]
    for _ in range(draw(st.integers(1, 3))):
        objects[draw(st.integers(0, len(objects) - 1))][draw(st.sampled_from(["text", "label"]))] = draw(NESTED)
    first, key = next((i, key) for i, o in enumerate(objects) for key in ("text", "label")
                      if isinstance(o[key], (list, dict)))
    kind = "list" if isinstance(objects[first][key], list) else "object"
    if draw(st.booleans()):
        return ".json", json.dumps(objects).encode(), f'object {first + 1}: "{key}" is a JSON {kind}, '
    lines = []
    for i, o in enumerate(objects):  # blank lines count as lines, as a user counts them
        lines += [""] * draw(st.sampled_from([0, 0, 0, 1, 2])) + [json.dumps(o)]
        if i == first:
            number = len(lines)
    return ".jsonl", "\n".join(lines).encode(), f'line {number}: "{key}" is a JSON {kind}, '


RANDOM_BYTES = st.tuples(st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt", ".csv.gz"]),
                         st.binary(max_size=600))


def write(folder: str, name: str, file: tuple) -> str:
    path = os.path.join(folder, name + file[0])
    with open(path, "wb") as handle:
        handle.write(file[1])
    return path


@st.composite
def file_pair(draw, kind, second: str) -> tuple[tuple, tuple | None, dict | None]:
    """A training file and maybe a second one (`second`: its split); both clean (sharing the label spellings; the
    rows written come back per split) or not (None)."""
    clean = draw(st.booleans())
    if not clean:
        return draw(kind(False)), draw(st.none() | kind(False)), None
    train = draw(kind(True))
    pool = sorted({label for _, label in train[2]}, key=str)
    other = draw(st.none() | kind(True, pool, "held out"))  # other texts: none shared with train
    return train, other, {"train": train[2], **({second: other[2]} if other else {})}


@settings(max_examples=400, **SETTINGS)
@given(files=file_pair(table_bytes, "test"), keep=st.booleans())
def test_delimited_files_load_exactly_if_clean_else_validly_or_are_refused_in_one_line(files, keep):
    train, test, clean = files
    with tempfile.TemporaryDirectory() as folder:
        args = DataArguments(dataset="local", train_file=write(folder, "train", train),
                             test_file=test and write(folder, "test", test), keep_duplicates=keep)
        load_or_refuse("delimited files", args, clean)


@settings(max_examples=250, **SETTINGS)
@given(files=file_pair(json_bytes, "validation"), keep=st.booleans())
def test_json_files_load_exactly_if_clean_else_validly_or_are_refused_in_one_line(files, keep):
    train, validation, clean = files
    with tempfile.TemporaryDirectory() as folder:
        args = DataArguments(dataset="local", train_file=write(folder, "train", train),
                             validation_file=validation and write(folder, "validation", validation),
                             keep_duplicates=keep)
        load_or_refuse("json files", args, clean)


@settings(max_examples=100, **SETTINGS)
@given(file=nested_json())
def test_json_lists_and_objects_as_texts_or_labels_are_refused_in_one_line(file):
    TRIED["nested json values"] += 1
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "train", file)
        with pytest.raises(utils.DataError) as error:
            utils.load_splits(DataArguments(dataset="local", train_file=path))
    message = one_line_refusal("nested json values", error.value)
    assert message.startswith(f"'{path}' {file[2]}"), message


@settings(max_examples=150, **SETTINGS)
@given(train=RANDOM_BYTES, test=st.none() | RANDOM_BYTES)
def test_random_bytes_are_refused_in_one_line(train, test):
    with tempfile.TemporaryDirectory() as folder:
        args = DataArguments(dataset="local", train_file=write(folder, "train", train),
                             test_file=test and write(folder, "test", test))
        load_or_refuse("random bytes", args)


@st.composite
def phrasebank_bytes(draw) -> tuple[bytes, list | None]:
    """A Financial PhraseBank file: 'sentence@label' lines with other label spellings, lines without '@', '@' inside
    sentences, repeats, blank lines, Latin-1 or UTF-8; or random bytes. (contents, rows written if clean)"""
    rng = random.Random(draw(st.integers(0, 2**32)))
    if rng.random() < 0.15:
        return draw(st.binary(max_size=400)), None
    clean = draw(st.booleans())
    usual = ["positive", "negative", "neutral", "Positive", " NEUTRAL", "0", "0.0", "1", "+2", "2.00"]  # ids too
    pool = draw(st.lists(st.sampled_from(usual if clean else usual + ["", "pos", "positive@", "2"]),
                         min_size=2 if clean else 1, max_size=4).filter(
        lambda p: not clean or len({phrasebank_class(label) for label in p}) >= 2))
    texts, values = draw(examples(clean, pool))
    no_at = draw(RATE) * (not clean)
    lines = [t if rng.random() < no_at / 10 else f"{t}@{v}" for t, v in zip(texts, values)]
    contents = "\n".join(lines).encode(draw(st.sampled_from(["utf-8", "latin-1"])), errors="replace")
    return contents, [(t, phrasebank_class(v)) for t, v in zip(texts, values)] if clean else None


def phrasebank_class(label: str) -> str:
    """The class of a label there: a name, or an id 0..2 spelled as any number."""
    names = {"0": "negative", "1": "neutral", "2": "positive"}
    return names.get(label_class(label), label_class(label))


@settings(max_examples=150, **SETTINGS)
@given(file=phrasebank_bytes(), level=st.sampled_from(["50", "all"]))
def test_financial_phrasebank_reader_loads_exactly_if_clean_else_validly_or_refuses_in_one_line(file, level):
    with tempfile.TemporaryDirectory() as folder:
        os.mkdir(os.path.join(folder, "financial_phrasebank"))
        name = "Sentences_AllAgree.txt" if level == "all" else "Sentences_50Agree.txt"
        with open(os.path.join(folder, "financial_phrasebank", name), "wb") as handle:
            handle.write(file[0])
        load_or_refuse("financial phrasebank", DataArguments(dataset="financial_phrasebank", data_dir=folder,
                                                             phrasebank_agreement=level),
                       file[1] and {"all": file[1]})


# --- option lists and config files ------------------------------------------------------------------------------------

METHODS = ("full", "lora", "prefix")
ACTIONS = {method: {option: action for action in config.build_parser(method)._actions
                    for option in action.option_strings
                    if option.startswith("--") and option not in ("--help", "--config")}
           for method in METHODS}
OPTIONS = {method: sorted(actions) for method, actions in ACTIONS.items()}
NAMES = sorted({option[2:] for options in OPTIONS.values() for option in options})
WORDS = ["0", "-1", "1", "3", "-0.5", "0.5", "1e-3", "1e309", "nan", "NaN", "inf", "-inf", "", " ", "true", "false",
         "True", "yes", "none", "None", "null", "auto", "cpu", "cuda", "bf16", "sst2", "local", "tweets", "lora",
         "query_value", "all", "50", "latest", "longest", "accuracy", "linear", "minilm", "x", "-", "--",
         "/nonexistent"]
VALUE = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WORDS),
                  st.integers(-10**6, 10**6).map(str), st.floats().map(str), st.text(max_size=8))


def plausible(action, rng) -> list[str]:
    """Values an option of this kind might be given: mostly of its type, often out of range."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [rng.choice(list(action.choices))]
    if action.type is int:
        return [str(rng.choice([-1, 0, 1, 2, 8, 100, 10**12]))]
    if action.type is float:
        return [rng.choice(["0", "0.1", "1e-3", "-1", "2", "nan", "inf", "-inf", "1e309"])]
    if action.nargs in ("+", "*"):
        return rng.choice([["query", "value"], ["x"]])
    return [rng.choice(["x", "tweets", "", "minilm", "/nonexistent", "latest"])]


@st.composite
def option_list(draw, method: str) -> list[str]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    argv = []
    for _ in range(draw(st.integers(0, 6))):
        option = draw(st.sampled_from(OPTIONS[method]))
        argv.append(option)
        if rng.random() < 0.8:
            argv += plausible(ACTIONS[method][option], rng)
        else:
            argv += draw(st.lists(VALUE, max_size=2))
    if rng.random() < 0.1:
        argv.insert(draw(st.integers(0, len(argv))), draw(VALUE))  # a stray positional word
    return argv


CONFIG_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from(WORDS),
                          st.text(max_size=8), st.lists(st.sampled_from(WORDS), max_size=3),
                          st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def config_file(draw) -> tuple[str, bytes]:
    kind = draw(st.integers(0, 9))
    suffix = draw(st.sampled_from([".json", ".yaml", ".yml"]))
    if kind == 0:
        return suffix, draw(st.binary(max_size=200))
    if kind == 1:
        return suffix, draw(st.text(max_size=200)).encode("utf-8", errors="replace")
    if kind == 2:  # YAML scalars that PyYAML turns into dates, and odd keys
        return ".yaml", draw(st.sampled_from(["2001-13-45", "a: 2001-02-30", "1: 2", "? [1]\n: 2", "[1, 2]",
                                              "learning_rate: 2001-01-01", "!!python/object:os.system x",
                                              "'a\nb': 1", "lora_r: [1, 2]", "seed: {a: 1}", "- 1\n- 2", "~",
                                              "{" * 10_000])).encode()
    keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
    values = draw(st.dictionaries(keys, CONFIG_VALUES, max_size=5))
    if suffix == ".json":
        return suffix, json.dumps(values).encode()
    return suffix, yaml.safe_dump(values, allow_unicode=draw(st.booleans())).encode()


def parse_or_refuse(name: str, method: str, argv: list[str]) -> None:
    TRIED[name] += 1
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            run_config = config.parse_args(method, argv, prog=f"train_{method}.py")
    except ConfigError as error:
        assert str(error) and "\n" not in str(error) and "\r" not in str(error), str(error)
        TRIED[name + ": refused (ConfigError)"] += 1
        return
    except SystemExit as exit_:
        assert exit_.code == 2, (exit_.code, stderr.getvalue())
        TRIED[name + ": refused (argparse, status 2)"] += 1
        return
    assert isinstance(run_config, config.RunConfig) and run_config.method == method
    json.dumps(run_config.to_dict())
    TRIED[name + ": parsed"] += 1


@settings(max_examples=400, **SETTINGS)
@given(data=st.data(), method=st.sampled_from(METHODS))
def test_option_lists_parse_or_are_refused_in_one_line(data, method):
    parse_or_refuse("option lists", method, data.draw(option_list(method)))


@settings(max_examples=250, **SETTINGS)
@given(data=st.data(), method=st.sampled_from(METHODS), file=config_file())
def test_config_files_parse_or_are_refused_in_one_line(data, method, file):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run" + file[0])
        with open(path, "wb") as handle:
            handle.write(file[1])
        argv = ["--config", path] + (data.draw(option_list(method)) if data.draw(st.booleans()) else [])
        parse_or_refuse("config files", method, argv)
