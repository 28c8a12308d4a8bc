"""Property-based tests (hypothesis): whatever file or option list a user gives, loading either succeeds with
valid splits or is refused with one line (utils.DataError, config.ConfigError, or argparse's exit status 2);
never a traceback.

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

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
import utils
from config import ConfigError, DataArguments

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
        keys[split] = {utils.text_key(t) for t in texts}
    if not keep_duplicates:
        assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
        assert not keys["validation"] & keys["test"]
    json.dumps(splits.info)  # it goes into the results JSON


def load_or_refuse(name: str, args: DataArguments) -> None:
    TRIED[name] += 1
    try:
        splits = utils.load_splits(args)
    except utils.DataError as error:
        message = str(error)
        assert message and "\n" not in message and "\r" not in message, message
        TRIED[name + ": refused"] += 1
        REASONS.setdefault(name, Counter())[re.sub(r"'[^']*'|\[[^]]*\]|[0-9]+", "_", message)[:70]] += 1
        return
    check_splits(splits, args.keep_duplicates)
    TRIED[name + ": loaded"] += 1


# --- malformed data files ---------------------------------------------------------------------------------------
# Hypothesis draws each file's shape (size, delimiter, header, encoding, label spellings, how often each defect
# occurs); the rows themselves come from a seeded generator it also draws, so that a fair share of files is
# nearly clean (and must load validly) while others carry many defects at once.

ODD_CELLS = ["", " ", "\t", '"', '""', 'say "hi"', "a,b", "a;b", "a|b", "a\tb", "x\ny", "x\r\ny", "\r", "caf\u00e9",
             "\u2028", "\x00", "NaN", "null", "None", "#comment", "\ufeff", "=1+1", "\\", "'", "\x1c", "\u200b"]
ODD_LABELS = ["pos", "neg", "Positive", " POSITIVE ", "positive", "negative", "NEGATIVE", "0", "1", "01", "-1", "2",
              "1.0", "", "  ", "nan", "NULL", "pos ", "neutral", "9" * 30]
USUAL_LABELS = ["pos", "neg", "Pos", " NEG ", "positive", "Positive", "negative", "0", "1", " 1"]
DELIMITERS = [",", "\t", ";", "|", " "]
RATE = st.sampled_from([0.0, 0.0, 0.02, 0.1, 0.5])  # how often a defect occurs in a file


def labels():
    """A pool of 1-4 label spellings: mostly usual ones (in various cases), sometimes odd ones."""
    usual = st.sampled_from(USUAL_LABELS)
    return st.lists(st.one_of(usual, usual, usual, st.sampled_from(ODD_LABELS), st.text(max_size=6)),
                    min_size=2, max_size=4) | st.lists(st.sampled_from(ODD_LABELS), min_size=1, max_size=1)


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
def examples(draw) -> tuple[list, list]:
    """Texts (with repeats that differ in case and spacing, and odd texts) and labels drawn from a pool."""
    clean = draw(st.sampled_from([True, False]))  # a nearly clean file (only defects that are repaired), or not
    n = draw(st.integers(20, 80) if clean else st.one_of(st.integers(0, 12), st.integers(20, 80)))
    pool = draw(st.lists(st.sampled_from(USUAL_LABELS), min_size=2, max_size=4).filter(
        lambda p: len({utils._label_key(v) for v in p}) >= 2) if clean else labels())
    odd, repeats, relabel = (0.0 if clean else draw(RATE)), draw(RATE), draw(RATE)
    rng = random.Random(draw(st.integers(0, 2**32)))
    texts, values = [], []
    for i in range(n):
        if texts and rng.random() < repeats:
            texts.append(rng.choice([str.upper, str.lower, lambda t: f"  {t} "])(rng.choice(texts)))
            values.append(values[texts.index(texts[-1])] if texts[-1] in texts[:-1] and rng.random() > relabel
                          else rng.choice(pool))
        else:
            texts.append(odd_text(rng, i) if rng.random() < odd else f"review number {i}")
            values.append(rng.choice(pool))
    return texts, values, clean


@st.composite
def table_bytes(draw) -> tuple[str, bytes]:
    """A CSV/TSV-like file with random delimiter, quoting, header, missing or extra cells, label spellings, repeats,
    blank lines, encoding and stray bytes; (extension, contents)."""
    texts, values, clean = draw(examples())
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
        rows, header = [[v, t] for t, v in rows], header[::-1]
    ragged, blank = draw(RATE) * bad, draw(RATE)
    if rng.random() < 0.75:  # written properly, with quoting
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=sep, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
        writer.writerows([header] + rows)
        text = buffer.getvalue()
    else:  # naively joined, with ragged rows and blank lines
        lines = []
        for row in [header] + rows:
            if rng.random() < ragged:
                row = rng.choice([row[:1], [], row + ["more"]])
            lines.append(sep.join(row))
            if rng.random() < blank:
                lines.append(rng.choice(["", " ", "\t", sep]))
        text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))
    encoding = "utf-8" if rng.random() < 0.8 else rng.choice(["utf-8-sig", "latin-1", "utf-16"][:3 - int(clean)])
    data = text.encode(encoding, errors="replace")
    if rng.random() < 0.1 * bad:  # a stray byte that is not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\x80", b"\xc3"])) + data[at:]
    if extension.endswith(".gz"):
        data = gzip.compress(data)
        if rng.random() < 0.1 * bad:
            data = data[: draw(st.integers(0, len(data)))]
    return extension, data


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
              st.sampled_from(ODD_LABELS)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)


@st.composite
def json_bytes(draw) -> tuple[str, bytes]:
    """A JSON Lines (or JSON) file: objects with the right, wrong or missing keys and values of any JSON type
    (labels as numbers, floats, nulls, lists), plus garbage lines; (extension, contents)."""
    texts, values, clean = draw(examples())
    rng = random.Random(draw(st.integers(0, 2**32)))
    bad = 0.0 if clean else 1.0
    if not clean and draw(st.booleans()):  # labels of other JSON types: 0.0, 1, null, true, [..]
        others = draw(st.lists(st.one_of(st.integers(-1, 3), st.sampled_from([0.0, 1.0, None, True])), min_size=1,
                               max_size=3) | st.lists(JSON_VALUES, min_size=1, max_size=3))
        values = [others[sum(map(ord, v)) % len(others)] for v in values]
    odd_value, missing_key = draw(RATE) * bad, draw(RATE)
    weird = draw(st.lists(JSON_VALUES, min_size=1, max_size=3))
    objects = []
    for text, value in zip(texts, values):
        row = {"text": rng.choice(weird) if rng.random() < odd_value else text, "label": value}
        if rng.random() < missing_key:
            del row[rng.choice(["text", "label"])]
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
    return extension, gzip.compress(data) if extension.endswith(".gz") else data


RANDOM_BYTES = st.tuples(st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt", ".csv.gz"]),
                         st.binary(max_size=600))


def write(folder: str, name: str, file: tuple[str, bytes]) -> str:
    path = os.path.join(folder, name + file[0])
    with open(path, "wb") as handle:
        handle.write(file[1])
    return path


@settings(max_examples=400, **SETTINGS)
@given(train=table_bytes(), test=st.none() | table_bytes(), keep=st.booleans())
def test_delimited_files_load_validly_or_are_refused_in_one_line(train, test, keep):
    with tempfile.TemporaryDirectory() as folder:
        args = DataArguments(dataset="local", train_file=write(folder, "train", train),
                             test_file=test and write(folder, "test", test), keep_duplicates=keep)
        load_or_refuse("delimited files", args)


@settings(max_examples=250, **SETTINGS)
@given(train=json_bytes(), validation=st.none() | json_bytes(), keep=st.booleans())
def test_json_files_load_validly_or_are_refused_in_one_line(train, validation, keep):
    with tempfile.TemporaryDirectory() as folder:
        args = DataArguments(dataset="local", train_file=write(folder, "train", train),
                             validation_file=validation and write(folder, "validation", validation),
                             keep_duplicates=keep)
        load_or_refuse("json files", args)


@settings(max_examples=150, **SETTINGS)
@given(train=RANDOM_BYTES, test=st.none() | RANDOM_BYTES)
def test_random_bytes_are_refused_in_one_line(train, test):
    with tempfile.TemporaryDirectory() as folder:
        args = DataArguments(dataset="local", train_file=write(folder, "train", train),
                             test_file=test and write(folder, "test", test))
        load_or_refuse("random bytes", args)


@st.composite
def phrasebank_bytes(draw) -> bytes:
    """A Financial PhraseBank file: 'sentence@label' lines with other label spellings, lines without '@', '@' inside
    sentences, repeats, blank lines, Latin-1 or UTF-8; or random bytes."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    if rng.random() < 0.15:
        return draw(st.binary(max_size=400))
    texts, _, clean = draw(examples())
    usual = ["positive", "negative", "neutral", "Positive", " NEUTRAL", "0"]
    pool = draw(st.lists(st.sampled_from(usual if clean else usual + ["", "pos", "positive@", "2"]),
                         min_size=2 if clean else 1, max_size=4))
    no_at = draw(RATE) * (not clean)
    lines = [t if rng.random() < no_at / 10 else f"{t}@{rng.choice(pool)}" for t in texts]
    return "\n".join(lines).encode(draw(st.sampled_from(["utf-8", "latin-1"])), errors="replace")


@settings(max_examples=150, **SETTINGS)
@given(contents=phrasebank_bytes(), level=st.sampled_from(["50", "all"]))
def test_financial_phrasebank_reader_loads_validly_or_refuses_in_one_line(contents, level):
    with tempfile.TemporaryDirectory() as folder:
        os.mkdir(os.path.join(folder, "financial_phrasebank"))
        name = "Sentences_AllAgree.txt" if level == "all" else "Sentences_50Agree.txt"
        with open(os.path.join(folder, "financial_phrasebank", name), "wb") as handle:
            handle.write(contents)
        load_or_refuse("financial phrasebank", DataArguments(dataset="financial_phrasebank", data_dir=folder,
                                                             phrasebank_agreement=level))


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
