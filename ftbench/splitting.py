"""Carving the validation and test splits out of the loaded data, subsetting, and refusing single-class splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from config import DataArguments
from ftbench.data_errors import DataError


def stratified_split(texts, labels, fraction: float, seed: int, what: str):
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


def subset(split: tuple[list, list], limit: int | None, seed: int) -> tuple[list, list]:
    texts, labels = split
    if limit is None or limit >= len(texts):
        return texts, labels
    order = np.random.default_rng(seed).permutation(len(texts))[:limit]
    order.sort()  # keep the file's order among the chosen examples
    return [texts[i] for i in order], [labels[i] for i in order]


def check_single_class(args: DataArguments, split: str, labels: list[int], label_names: list[str],
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
