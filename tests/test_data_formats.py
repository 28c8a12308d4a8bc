"""Users' own files read the standard way: RFC 4180 quoting in TSV files (detected from their content), numbers
spelled several ways as one class, and JSON values that are no text or label refused; the named data sets'
files read exactly as before."""

import csv
import hashlib
import json

import pandas as pd
import pytest

from config import DataArguments
from conftest import SHARED_DATA, local, needs_shared_data, refused
from ftbench.data_files import read_table
from utils import load_splits


def line_count(path) -> int:
    with open(path, "rb") as handle:
        return handle.read().count(b"\n")


def loaded(splits) -> list[tuple[str, str]]:
    """Every (text, label name) of the three splits, sorted."""
    return sorted((text, splits.label_names[label]) for split in ("train", "validation", "test")
                  for text, label in zip(*getattr(splits, split)))


# --- TSV with RFC 4180 quoting ----------------------------------------------------------------------------------------

ODD_TEXTS = ["two\nlines", "three\r\nlines\nhere", "a\ttab", 'say ""hi"" twice', '"quoted start"', 'say "hi"', '""',
             "ends with a quote\"", "tab\tand\nbreak"]
TEXTS = [f"plain review {i}" for i in range(40)] + ODD_TEXTS


def write_tsv(path, writer: str) -> str:
    labels = [i % 2 for i in range(len(TEXTS))]
    if writer == "pandas":  # quotes only the fields that need it, never the header
        pd.DataFrame({"text": TEXTS, "label": labels}).to_csv(path, sep="\t", index=False)
        return str(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if writer == "plain header":  # a header typed by hand above rows that csv.writer quoted
            handle.write("text\tlabel\r\n")
        rows = ([] if writer == "plain header" else [["text", "label"]]) + list(zip(TEXTS, labels))
        csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL).writerows(rows)
    return str(path)


@pytest.mark.parametrize("writer", ["pandas", "csv QUOTE_ALL", "plain header"])
def test_rfc_quoted_tsv_loads_what_pandas_reads_and_strictly(tmp_path, writer):
    path = write_tsv(tmp_path / "train.tsv", writer)
    back = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert back["text"].tolist() == TEXTS  # pandas reads back what was written
    splits = local(train_file=path)
    assert splits.label_names == ["0", "1"]
    assert loaded(splits) == sorted((t.strip(), str(i % 2)) for i, t in enumerate(TEXTS))  # texts come stripped
    # Read that way, it must parse that way: a field that opens a quote must close it before a tab or line end.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('"broken" quote\t1\n')
    lines = line_count(path)  # the broken row is the last line
    message = refused(train_file=path)
    evidence = {"pandas": "line 42 holds a quoted field with a line break", "csv QUOTE_ALL": "line 1 has every "
                "field quoted", "plain header": "line 2 has every field quoted"}[writer]
    assert message.startswith(f"could not parse '{path}' as tab-separated text: the row at line {lines}: '\\t' "
                              f"expected after '\"'; close each quoted field with a quote before a tab or line end "
                              f"(it is read with RFC 4180 quoting since {evidence}; if its quotes are ordinary ")


def test_rfc_quoted_tsv_needs_the_header_field_count_on_every_row(tmp_path):
    path = write_tsv(tmp_path / "train.tsv", "pandas")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("an unquoted\ttab\t1\n")
    line = line_count(path)
    message = refused(train_file=path)
    assert message.startswith(f"'{path}' line {line} has 3 fields, its header 2; quote fields that hold a tab or a "
                              f"line break (it is read with RFC 4180 quoting since line 42 holds a quoted field")


def test_quotes_are_text_unless_the_file_shows_rfc_quoting(tmp_path):
    rows = ['5" screen\t1', 'he said "hi" twice\t0', '"Wow"\t1', '"Great" film\t0'] + [
        f"review {i}\t{i % 2}" for i in range(30)]
    plain = tmp_path / "plain.tsv"
    plain.write_text("text\tlabel\n" + "\n".join(rows) + '\n"a quoted text without its label"\n', encoding="utf-8")
    splits = local(train_file=str(plain))
    texts = {text for text, _ in loaded(splits)}
    assert {'5" screen', 'he said "hi" twice', '"Wow"', '"Great" film'} <= texts  # GLUE-style: quotes are text
    assert splits.info["cleaning"] == {"train_missing_labels_dropped": 1}  # one quoted field alone shows nothing
    # One quoted field holding a line break shows RFC 4180 quoting; then quotes inside a field are still text,
    # but a field that is quoted whole is unquoted, as pandas reads it.
    quoted = tmp_path / "quoted.tsv"
    quoted.write_text("text\tlabel\n" + "\n".join(rows[:3] + rows[4:]) + '\n"two\nlines"\t0\n', encoding="utf-8")
    texts = {text for text, _ in loaded(local(train_file=str(quoted)))}
    assert {'5" screen', 'he said "hi" twice', "Wow", "two\nlines"} <= texts
    assert texts == set(pd.read_csv(quoted, sep="\t", dtype=str)["text"])


# --- the named data sets' files: read exactly as before ---------------------------------------------------------------

# sha256 of json.dumps([texts, labels], ensure_ascii=False) per split, as the code before RFC 4180 detection loaded them
BEFORE = {
    "sst2": ({"train": 60275, "validation": 6698, "test": 872}, {
        "train": "2edee63ddd6754a9c3d47ade9334888bd837029b5a53bd9b0727459a8e571eb3",
        "validation": "0be0ac700690ee32968ff416635b85241a3aac4075a24f1ccda6bbd6d0d49764",
        "test": "b93cc541cb2205142d8a486d68de94b0cb699bea42a7029a0b44cd5fe267e762"}),
    "nsmc": ({"train": 130766, "validation": 14530, "test": 49997}, {
        "train": "965a01ea27f99244be2ba8f9a52fdb045fcdc14b75a7898055944309c8df5b61",
        "validation": "57386b70cb044a2e8e140693128706f8e346077fd5c3b06f9780539ba96ab2ce",
        "test": "ced0d6faeb2d2acd60846610ff936b2080c5d7ab29acf3db9dba147760022943"}),
}
NSMC_QUOTED = ('"""스토리, 연출, 연기, 비주얼 등 영화의 기본 조차 안된 영화에 무슨 평을 해. '
               '이런 영화 찍고도 김문옥 감독은 """"내가 영화 경력이 몇OO인데 조무래기들이 '
               '내 영화를 평론해?"""" 같은 마인드에 빠져있겠지?"""')


@needs_shared_data
@pytest.mark.parametrize("dataset", ["sst2", "nsmc"])
def test_named_tsv_files_load_exactly_as_before(dataset):
    splits = load_splits(DataArguments(dataset=dataset, data_dir=str(SHARED_DATA)))
    sizes, digests = BEFORE[dataset]
    assert splits.sizes() == sizes
    for split, digest in digests.items():
        assert hashlib.sha256(json.dumps(getattr(splits, split), ensure_ascii=False).encode()).hexdigest() == digest
    if dataset == "sst2":  # its quotes are `` and ''
        assert "more than another `` best man '' clone by weaving a theme throughout this funny film" in splits.train[0]
        return
    # 856 reviews in the files are written """...""": they keep their quotes, as ever (853 after de-duplication)
    assert NSMC_QUOTED in splits.test[0]
    assert sum('"' in t for split in ("train", "validation", "test") for t in getattr(splits, split)[0]) == 853


@needs_shared_data
def test_nsmc_file_given_as_a_local_file_is_read_as_pandas_reads_it():
    path = str(SHARED_DATA / "nsmc" / "ratings_test.txt")
    frame = read_table(path)
    read_by_pandas = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert frame["document"].tolist() == read_by_pandas["document"].tolist()
    assert NSMC_QUOTED[1:-1].replace('""', '"') in frame["document"].tolist()


# --- numbers spelled several ways -------------------------------------------------------------------------------------


def test_labels_that_spell_one_number_are_one_class(tmp_path):
    spellings = ["1", "1.0", "01", "+1", "1 ", "0", "0.0", " 0", "-0", "1.00"]
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "\n".join(f"text {i},{spellings[i % 10]}" for i in range(100)) + "\n")
    splits = local(train_file=str(path))
    assert splits.label_names == ["0", "1"]
    assert sum(sum(counts) for counts in splits.info["label_counts"].values()) == 100
    assert [sum(splits.info["label_counts"][s][i] for s in ("train", "validation", "test")) for i in (0, 1)] == [40, 60]
    assert splits.info["cleaning"]["train_labels_mapped"] == 80  # all but the 10 '1' and the 10 '0'
    assert splits.info["label_spellings_mapped"] == {"1.0": "1", "01": "1", "+1": "1", "1 ": "1", "0.0": "0",
                                                     " 0": "0", "-0": "0", "1.00": "1"}


def test_decimals_compare_by_value_and_keep_numeric_order(tmp_path):
    spellings = ["2.5", "2.50", "10", "10.0", "-1", "-1.000"]
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "\n".join(f"text {i},{spellings[i % 6]}" for i in range(60)) + "\n")
    splits = local(train_file=str(path))
    assert splits.label_names == ["-1", "2.5", "10"]
    assert splits.info["label_spellings_mapped"] == {"2.50": "2.5", "10.0": "10", "-1.000": "-1"}


def test_named_data_set_takes_an_id_spelled_as_a_decimal(tmp_path):
    folder = tmp_path / "sst2"
    folder.mkdir()
    rows = [f"s{i}\t{['0', '1.0'][i % 2]}" for i in range(20)]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows))
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0.0\n")
    splits = load_splits(DataArguments(dataset="sst2", data_dir=str(tmp_path)))
    assert splits.info["label_spellings_mapped"] == {"1.0": "positive", "0.0": "negative"}
    assert splits.info["cleaning"] == {"train_labels_mapped": 10, "test_labels_mapped": 1}
    assert splits.test[1] == [1, 0]


# --- JSON values that are no text or label ----------------------------------------------------------------------------


LABEL_RULE = 'a label must be a string or a number, e.g. "label": 1'
TEXT_RULE = "a text must be a string (a number or true/false is taken as its text)"


@pytest.mark.parametrize("name, bad, where", [
    ("t.jsonl", [{"text": "odd", "label": [1]}], f'line 23: "label" is a JSON list, [1]; {LABEL_RULE}'),
    ("t.jsonl", [{"text": "odd", "label": {"a": 1}}], f'line 23: "label" is a JSON object, {{\'a\': 1}}; {LABEL_RULE}'),
    ("t.jsonl", [{"text": {"a": 1}, "label": 1}], f'line 23: "text" is a JSON object, {{\'a\': 1}}; {TEXT_RULE}'),
    ("t.jsonl", [{"text": "odd", "label": [1]}, {"text": [2], "label": 1}],  # the first row holding one
     f'line 23: "label" is a JSON list, [1]; {LABEL_RULE}'),
    ("t.json", [{"text": ["a", "b"], "label": 1}], f'object 21: "text" is a JSON list, [\'a\', \'b\']; {TEXT_RULE}'),
])
def test_json_lists_and_objects_are_refused_naming_the_row(tmp_path, name, bad, where):
    good = [{"text": f"t {i}", "label": i % 2} for i in range(20)]
    path = tmp_path / name
    if name.endswith(".jsonl"):  # after two blank lines: the number is the line's in the file
        path.write_text("\n".join(json.dumps(o) for o in good) + "\n\n\n" + "\n".join(map(json.dumps, bad)) + "\n")
    else:
        path.write_text(json.dumps(good + bad))
    assert refused(train_file=str(path)) == f"'{path}' {where}"
