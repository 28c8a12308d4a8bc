"""Defects of real data files: each is either repaired with a recorded count or refused with one clear line."""

import gzip
import json

import pytest

from config import DataArguments
from conftest import local, refused
from ftbench.dataset_loaders import hub_source
from ftbench.dedup import text_key
from utils import DataError, load_splits


def write(path, text: str, encoding="utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def rows(n: int, start: int = 0, prefix: str = "text", labels=("neg", "pos")) -> list[str]:
    return [f"{prefix} number {i},{labels[i % len(labels)]}" for i in range(start, start + n)]


def csv_file(path, lines, header="text,label") -> str:
    return write(path, header + "\n" + "\n".join(lines) + "\n")


# --- 1, 2: blank texts and missing values -------------------------------------------------------------------------


def test_blank_texts_and_missing_labels_are_dropped_and_counted_apart(tmp_path):
    lines = rows(40) + [" ,pos", ",neg", "   ,", "no label at all,", "blank label,   ", "short row"]
    splits = local(train_file=csv_file(tmp_path / "t.csv", lines))
    cleaning = splits.info["cleaning"]
    assert cleaning["train_empty_texts_dropped"] == 3  # a row missing both counts as a missing text
    assert cleaning["train_missing_labels_dropped"] == 3  # empty cell, blank cell, and a row without the cell
    assert sum(splits.sizes().values()) == 40


def test_jsonl_nulls_missing_keys_and_integral_floats(tmp_path):
    objects = [{"text": f"t {i}", "label": float(i % 2)} for i in range(30)]
    objects += [{"text": None, "label": 1}, {"label": 0}, {"text": "no label"}, {"text": "null label", "label": None}]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(o) for o in objects) + "\n\n")
    splits = local(train_file=path)
    assert splits.label_names == ["0", "1"]  # 0.0 and 1.0 are the integers they spell, not two new labels
    assert splits.info["cleaning"] == {"train_empty_texts_dropped": 2, "train_missing_labels_dropped": 2}


def test_json_list_of_objects_and_byte_order_mark(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": f"t {i}", "label": i % 2} for i in range(30)]), encoding="utf-8")
    assert sum(local(train_file=str(path)).sizes().values()) == 30
    bom = write(tmp_path / "bom.csv", "\ufeff" + "text,label\n" + "\n".join(rows(30)) + "\n")
    assert sum(local(train_file=bom).sizes().values()) == 30  # the header's first name is 'text', not '\ufefftext'


def test_unicode_line_separator_inside_a_jsonl_text(tmp_path):
    objects = [{"text": f"t {i}\u2028second line", "label": i % 2} for i in range(30)]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(o, ensure_ascii=False) for o in objects))
    assert sum(local(train_file=path).sizes().values()) == 30


# --- 3: encodings and broken files ----------------------------------------------------------------------------------


def test_non_utf8_csv_names_file_offset_line_and_fix(tmp_path):
    path = write(tmp_path / "latin.csv", "text,label\n" + "\n".join(rows(10)) + "\ncaf\u00e9 au lait,pos\n", "latin-1")
    message = refused(train_file=path)
    offset = ("text,label\n" + "\n".join(rows(10)) + "\ncaf").encode().__len__()
    assert f"'{path}' is not UTF-8 text: byte 0xe9 at offset {offset} (line 12)" in message
    assert "iconv -f latin1 -t utf-8" in message


@pytest.mark.parametrize("name", ["latin.csv.gz", "latin.jsonl", "latin.jsonl.gz", "latin.tsv"])
def test_non_utf8_gz_and_jsonl_are_one_clear_line(tmp_path, name):
    if "jsonl" in name:
        text = json.dumps({"text": "ok", "label": 1}) + "\n" + '{"text": "caf\u00e9", "label": 0}\n'
    else:
        sep = "\t" if name.endswith(".tsv") else ","
        text = f"text{sep}label\nok{sep}1\ncaf\u00e9{sep}0\n"
    data = text.encode("latin-1")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    message = refused(train_file=str(path))
    line = 2 if "jsonl" in name else 3
    assert f"'{path}' is not UTF-8 text: byte 0xe9" in message and f"(line {line})" in message and "iconv" in message
    assert ("decompressed" in message) == name.endswith(".gz")


def test_truncated_gzip_and_bad_json(tmp_path):
    data = gzip.compress(("text,label\n" + "\n".join(rows(200))).encode())
    broken = tmp_path / "t.csv.gz"
    broken.write_bytes(data[: len(data) // 2])
    assert "is not a complete gzip file" in refused(train_file=str(broken))
    bad = write(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    assert f"'{bad}' line 2 is not valid JSON" in refused(train_file=bad)
    array = write(tmp_path / "a.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n')
    assert "line 2 holds a JSON list, not an object" in refused(train_file=array)


def test_unparseable_csv_names_the_line(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\n" + "\n".join(rows(10)) + '\nan "unclosed, quote,pos\n')
    message = refused(train_file=path)
    assert message.startswith(f"could not parse '{path}' as comma-separated text")


# --- 4: wrong delimiter -----------------------------------------------------------------------------------------------


def test_tsv_given_as_csv_says_rename_to_tsv(tmp_path):
    path = write(tmp_path / "t.csv", "text\tlabel\n" + "\n".join(f"a, b {i}\t{i % 2}" for i in range(20)) + "\n")
    message = refused(train_file=path)
    assert "seems to be tab-separated, not comma-separated" in message and "rename it to .tsv" in message


@pytest.mark.parametrize("sep, name", [(";", "semicolon"), ("|", "pipe")])
def test_semicolon_or_pipe_separated_csv(tmp_path, sep, name):
    path = write(tmp_path / "t.csv", f"text{sep}label\n" + "\n".join(f"x {i}{sep}{i % 2}" for i in range(20)) + "\n")
    message = refused(train_file=path)
    assert f"seems to be {name}-separated, not comma-separated" in message and "convert it" in message


def test_csv_given_as_tsv_says_rename_to_csv(tmp_path):
    path = csv_file(tmp_path / "t.tsv", rows(20))
    assert "seems to be comma-separated, not tab-separated" in refused(train_file=path)
    assert "rename it to .csv" in refused(train_file=path)


def test_named_dataset_file_with_the_wrong_delimiter(tmp_path):
    folder = tmp_path / "imdb"
    folder.mkdir()
    for name in ("train.csv.gz", "test.csv.gz"):
        (folder / name).write_bytes(gzip.compress(("text\tlabel\n" + "\n".join(f"r {i}\t{i % 2}" for i in range(9)))
                                                  .encode()))
    with pytest.raises(DataError, match="seems to be tab-separated.*imdb files are comma-separated in their original"):
        load_splits(DataArguments(dataset="imdb", data_dir=str(tmp_path)))


# --- 5, 6: label spellings and labels outside the set ---------------------------------------------------------------


def phrasebank(tmp_path, lines) -> DataArguments:
    folder = tmp_path / "financial_phrasebank"
    folder.mkdir(exist_ok=True)
    (folder / "Sentences_AllAgree.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return DataArguments(dataset="financial_phrasebank", data_dir=str(tmp_path))


def test_named_labels_in_other_case_or_with_spaces_are_mapped_and_counted(tmp_path):
    labels = ["positive", "Positive", " POSITIVE ", "negative", "neutral", "Neutral"]
    args = phrasebank(tmp_path, [f"sentence {i}@{labels[i % 6]}" for i in range(60)])
    splits = load_splits(args)
    assert splits.info["cleaning"]["all_labels_mapped"] == 30
    assert splits.info["label_spellings_mapped"] == {"Positive": "positive", " POSITIVE ": "positive",
                                                     "Neutral": "neutral"}
    per_class = [sum(splits.info["label_counts"][s][i] for s in ("train", "validation", "test")) for i in range(3)]
    assert per_class == [10, 20, 30]  # negative, neutral, positive


def test_synonyms_are_not_guessed_and_the_message_lists_values_with_counts(tmp_path):
    odd = ["pos", "pos", "neg", "good", "bad", "meh", "1.5"]
    args = phrasebank(tmp_path, [f"s {i}@{'positive' if i % 2 else 'negative'}" for i in range(20)]
                      + [f"odd {i}@{label}" for i, label in enumerate(odd)])
    with pytest.raises(DataError) as error:
        load_splits(args)
    message = str(error.value)
    assert message.startswith("financial_phrasebank: 7 label(s) outside the expected set "
                              "['negative', 'neutral', 'positive'] or ids 0..2: 'pos' (2 rows), 'neg' (1 row)")
    assert "and 1 more; fix or remove those rows" in message and "\n" not in message


def test_local_label_spellings_merge_into_one_class(tmp_path):
    spellings = ["Positive", "positive", " POSITIVE", "negative", "Negative ", "positive ", "negative"]
    path = csv_file(tmp_path / "t.csv", [f"text {i},{spellings[i % 7]}" for i in range(70)])
    splits = local(train_file=path)
    assert splits.label_names == ["negative", "positive"]  # each named by its most frequent spelling
    assert splits.info["cleaning"]["train_labels_mapped"] == 40
    numeric = csv_file(tmp_path / "n.csv", [f"text {i},{['1', '01', ' 0'][i % 3]}" for i in range(30)])
    assert local(train_file=numeric).label_names == ["0", "1"]


def test_local_ids_are_not_taken_for_positions(tmp_path):
    train = csv_file(tmp_path / "t.csv", [f"text {i},{['-1', '1'][i % 2]}" for i in range(30)])
    test = csv_file(tmp_path / "s.csv", ["held 1,0", "held 2,1", "held 3,-1"])
    assert "'0' (1 row)" in refused(train_file=train, test_file=test)


# --- 7: single-class splits -----------------------------------------------------------------------------------------


def test_single_class_test_file_is_refused(tmp_path):
    train = csv_file(tmp_path / "t.csv", rows(40))
    test = csv_file(tmp_path / "s.csv", [f"held {i},pos" for i in range(10)])
    message = refused(train_file=train, test_file=test)
    assert message.startswith("local: the test split holds only the label(s) ['pos'] (10 examples)")
    assert "give a test file holding at least two labels" in message


def test_single_class_after_subsetting_suggests_more_eval_samples(tmp_path):
    train = csv_file(tmp_path / "t.csv", rows(100))
    message = refused(train_file=train, max_eval_samples=1)
    assert "the validation split holds only the label(s)" in message
    assert "raise --max_eval_samples (now 1; the split has 9 examples)" in message


# --- 8, 9: repeated texts and texts shared across splits ------------------------------------------------------------


def test_repeats_within_a_split_and_conflicting_labels(tmp_path):
    lines = rows(40) + ["text number 1,pos", "TEXT   number 3 ,pos",  # repeats of rows 1 and 3 (same label)
                        "text number 2,pos"]  # row 2 is 'neg': its copies disagree, so both go
    splits = local(train_file=csv_file(tmp_path / "t.csv", lines))
    info = splits.info
    assert info["duplicates"]["train"] == {"rows": 43, "repeated_rows": 3, "conflicting_label_texts": 1,
                                           "conflicting_label_rows": 2}
    assert info["cleaning"] == {"train_duplicate_rows_dropped": 3, "train_conflicting_label_texts_dropped": 1}
    assert sum(splits.sizes().values()) == 39
    everything = [text_key(t) for s in ("train", "validation", "test") for t in getattr(splits, s)[0]]
    assert len(everything) == len(set(everything)) and "text number 2" not in everything


def test_training_texts_in_test_or_validation_are_dropped_from_train(tmp_path):
    train = csv_file(tmp_path / "t.csv", rows(60))
    validation = csv_file(tmp_path / "v.csv", rows(10, start=0) + rows(10, start=100))  # 10 shared with train
    test = csv_file(tmp_path / "s.csv", rows(5, start=5) + rows(10, start=200))  # 5 shared with train and validation
    splits = local(train_file=train, validation_file=validation, test_file=test)
    overlap = splits.info["overlap"]
    assert overlap["between_loaded_splits"] == {"train_test": 5, "train_validation": 10, "validation_test": 5}
    assert overlap["rows_dropped"] == {"validation": 5, "train": 10}
    assert splits.sizes() == {"train": 50, "validation": 15, "test": 15}  # the test file is used as given
    assert overlap["in_used_splits"] == {"train_test": 0, "train_validation": 0, "validation_test": 0}
    assert splits.info["cleaning"] == {"validation_texts_in_test_dropped": 5,
                                       "train_texts_in_test_or_validation_dropped": 10}


def test_keep_duplicates_measures_but_keeps(tmp_path):
    train = csv_file(tmp_path / "t.csv", rows(60) + rows(6))
    test = csv_file(tmp_path / "s.csv", rows(4, start=10) + rows(10, start=100))
    splits = local(train_file=train, test_file=test, keep_duplicates=True)
    assert splits.info["duplicates"]["train"]["repeated_rows"] == 6 and splits.info["duplicates"]["action"] == "kept"
    assert splits.info["overlap"]["between_loaded_splits"] == {"train_test": 4}
    assert splits.info["overlap"]["action"] == "kept" and splits.info["cleaning"] == {}
    assert splits.sizes()["train"] + splits.sizes()["validation"] == 66


def test_same_file_for_train_and_test_is_refused(tmp_path):
    path = csv_file(tmp_path / "t.csv", rows(30))
    message = refused(train_file=path, test_file=path)
    assert message.startswith("local: no train examples left after dropping repeated texts")
    assert "is one file given twice?" in message and "--keep_duplicates" in message


# --- 10: where hub data came from ------------------------------------------------------------------------------------


def test_hub_source_records_fingerprints_and_survives_missing_attributes(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network call for the revision here
    hub = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"sentence": ["a"], "label": [0]})})
    source = hub_source(hub, "some/data", {"revision": "main"}, ["train"])
    assert source["kind"] == "hub" and source["revision"] == "main"
    assert source["fingerprints"]["train"] == hub["train"]._fingerprint
    assert hub_source({"train": object()}, "some/data", {}, ["train"]) == {"kind": "hub", "path": "some/data"}
