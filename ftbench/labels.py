"""From raw (text, label) cells to texts and label ids: rows without a text or a label are dropped and counted,
label spellings are mapped onto the label names (or refused), and the label names are found from the training
labels."""

from __future__ import annotations

import math
import re
from collections import Counter
from decimal import Decimal

import pandas as pd

from ftbench.data_errors import DataError, show


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_text(value) -> str:
    """A cell as text: integral floats (from JSON, or pandas' NaN-holding columns) lose their '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def clean(texts: list, labels: list, where: str, counts: dict) -> tuple[list[str], list[str]]:
    """Drop rows whose text is missing or blank, and rows whose label is missing or blank, counting each
    under counts['<where>_empty_texts_dropped'] and counts['<where>_missing_labels_dropped']. Texts come
    back stripped; labels as text, not yet stripped (so that to_ids can count the spellings it maps)."""
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


def to_ids(labels: list[str], label_names: list[str], where: str, split: str, counts: dict, spellings: dict,
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
        shown = ", ".join(f"{show(value)} ({n} row{'s' if n > 1 else ''})" for value, n in unknown.most_common(5))
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        ids_note = f" or ids 0..{len(label_names) - 1}" if allow_ids else ""
        raise DataError(f"{where}: {sum(unknown.values())} label(s) outside the expected set {label_names}{ids_note}: "
                        f"{shown}{more}; {fix}")
    if mapped:
        counts[f"{split}_labels_mapped"] = counts.get(f"{split}_labels_mapped", 0) + mapped
    return ids


def names_from(labels: list[str]) -> list[str]:
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
