"""Repeated texts: within a split and shared between splits, measured and (unless kept) dropped."""

from __future__ import annotations


def text_key(text: str) -> str:
    """The form in which two texts count as the same: whitespace collapsed, case ignored."""
    return " ".join(text.split()).casefold()


def _repeats(texts: list[str], labels: list[int]) -> tuple[list[int], dict]:
    """Rows to keep (first copy of each text; no copy of a text whose copies disagree on the label) and counts."""
    keys = [text_key(t) for t in texts]
    labels_of: dict[str, set] = {}
    for key, label in zip(keys, labels):
        labels_of.setdefault(key, set()).add(label)
    conflicting = {key for key, found in labels_of.items() if len(found) > 1}
    seen, keep = set(), []
    for i, key in enumerate(keys):
        if key in seen:
            continue
        seen.add(key)
        if key not in conflicting:
            keep.append(i)
    return keep, {
        "rows": len(texts),
        "repeated_rows": len(texts) - len(labels_of),
        "conflicting_label_texts": len(conflicting),
        "conflicting_label_rows": sum(1 for key in keys if key in conflicting),
    }


def _take(split: tuple[list, list], rows: list[int]) -> tuple[list, list]:
    return [split[0][i] for i in rows], [split[1][i] for i in rows]


def key_sets(found: dict) -> dict:
    """The distinct text keys of each split in `found`."""
    return {split: {text_key(t) for t in texts} for split, (texts, _) in found.items()}


def overlaps(keys: dict) -> dict:
    """Distinct texts shared by each pair of splits, from their key sets (key_sets)."""
    pairs = [("train", "test"), ("train", "validation"), ("validation", "test")]
    return {f"{a}_{b}": len(keys[a] & keys[b]) for a, b in pairs if a in keys and b in keys}


def deduplicate(found: dict, keep: bool, counts: dict) -> tuple[dict, dict]:
    """Repeated texts within each split and texts shared across the given splits: measured always; unless `keep`,
    repeats are dropped (first copy kept; texts with conflicting labels dropped altogether) except in a published
    test split, which stays whole so that its results compare with published ones; then texts of the
    test split are dropped from validation and train, and texts of validation from train. Returns the records
    for info['duplicates'] and info['overlap']."""
    duplicates = {"compared_as": "whitespace collapsed, case ignored", "action": "kept" if keep else
                  "first copy kept; texts whose copies disagree on the label dropped; a published test split "
                  "is kept whole (its repeats counted), so its results compare with published ones"}
    for split in list(found):
        rows, record = _repeats(*found[split])
        duplicates[split] = record
        if not keep and split != "test":
            found[split] = _take(found[split], rows)
            prefix = f"{split}_"
            if record["repeated_rows"]:
                counts[prefix + "duplicate_rows_dropped"] = record["repeated_rows"]
            if record["conflicting_label_texts"]:
                # the first copies of those texts: the other copies are counted as repeated rows
                counts[prefix + "conflicting_label_texts_dropped"] = record["conflicting_label_texts"]
    keys = key_sets(found)
    overlap = {"counted_as": "distinct texts found in both splits (whitespace collapsed, case ignored)",
               "between_loaded_splits": overlaps(keys)}
    if keep:
        overlap["action"] = "kept"
    elif not overlap["between_loaded_splits"]:
        overlap["action"] = "none to drop: the other splits are carved out after repeats are dropped"
    else:
        overlap["action"] = "dropped from train (and from a given validation split), so the test split is unchanged"
        removed = {}
        for split, others in (("validation", ("test",)), ("train", ("test", "validation"))):
            if split not in found or not any(o in found for o in others):
                continue
            # Validation's texts that are also test texts leave validation here, but train drops those anyway.
            shared = set().union(*(keys[o] for o in others if o in found))
            rows = [i for i, t in enumerate(found[split][0]) if text_key(t) not in shared]
            removed[split] = len(found[split][0]) - len(rows)
            found[split] = _take(found[split], rows)
            if removed[split]:
                counts[f"{split}_texts_in_{'_or_'.join(o for o in others if o in found)}_dropped"] = removed[split]
        overlap["rows_dropped"] = removed
    return duplicates, overlap
