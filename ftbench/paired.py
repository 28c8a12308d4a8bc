"""Groups of runs summarised over seeds, and compared on the same test examples seed by seed: the statistics
report.py prints and the findings (ftbench.findings) give verdicts from."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from ftbench.run_store import PREDICTIONS_FILE, ResultsError, peak_memory, train_time

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy (ftbench.stats) are imported where they are used: the reading commands' --help stays instant.
CONFIDENCE = 0.95


def figure_on_test(run: dict, key: str):
    """A figure of the run's test split (accuracy, f1_macro, loss), or None."""
    return (run["train_info"].get("test") or {}).get(key)


METRICS = {  # name: (column heading, value of one run)
    "test_accuracy": ("Test accuracy", lambda r: figure_on_test(r, "accuracy")),
    "test_f1_macro": ("Test macro-F1", lambda r: figure_on_test(r, "f1_macro")),
    "test_loss": ("Test loss", lambda r: figure_on_test(r, "loss")),
    "train_time_s": ("Train time (s)", train_time),
    "peak_memory_mib": ("Peak memory (MiB)", lambda r: peak_memory(r)[0]),
    "train_samples_per_s": ("Samples/s", lambda r: r["train_info"].get("train_samples_per_s")),
    "best_val_accuracy": ("Best val. accuracy", lambda r: (r["train_info"].get("best_val") or {}).get("val_accuracy")),
}


def group_summary(runs: list[dict]) -> dict:
    from ftbench import stats

    summary = {name: stats.summarize([value(r) for r in runs], CONFIDENCE) for name, (_, value) in METRICS.items()}
    first = runs[0]["train_info"]
    summary["num_params_trainable"] = first.get("num_params_trainable")
    summary["trainable_params_pct"] = first.get("trainable_params_pct")
    summary["checkpoint_size_mib"] = first.get("checkpoint_size_mib")
    summary["seeds"] = [r["run_info"].get("seed") for r in runs]
    return summary


def correctness(run: dict) -> tuple[np.ndarray, list]:
    """Per test example: 1 where the run's prediction was right; and the labels, to check pairing."""
    import numpy as np

    path = os.path.join(run["_dir"], PREDICTIONS_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path} is unreadable ({error}); re-run {run['run_info']['run_id']} or move it away") \
            from None
    labels = saved["labels"]
    return (np.asarray(saved["predictions"]) == np.asarray(labels)).astype(float), labels


def runs_by_seed(runs: list[dict]) -> dict:
    return {run["run_info"].get("seed"): run for run in runs}


def compare_pairs(groups: dict, pairs: list[tuple[str, str]], n_resamples: int) -> dict:
    """{label: compare(its runs, its reference's runs)} for each (label, reference label) pair; those compared get
    holm_p, their bootstrap p-value Holm-adjusted over this family of comparisons together."""
    from ftbench import stats

    results = {label: compare(groups[label], groups[reference], n_resamples) for label, reference in pairs}
    compared = [label for label, result in results.items() if "error" not in result]
    for label, adjusted in zip(compared, stats.holm([results[label]["bootstrap"]["p_value"] for label in compared])):
        results[label]["holm_p"] = adjusted
    return results


def compare(runs: list[dict], reference: list[dict], n_resamples: int, seed: int = 0) -> dict:
    """`runs` against `reference` on the seeds both have: paired bootstrap and McNemar per seed."""
    import numpy as np

    from ftbench import stats

    ours, theirs = runs_by_seed(runs), runs_by_seed(reference)
    seeds = sorted(set(ours) & set(theirs), key=lambda s: (s is None, s))
    if not seeds:
        return {"error": "no seed in common"}
    rows_a, rows_b, per_seed = [], [], []
    for s in seeds:
        (a, labels_a), (b, labels_b) = correctness(ours[s]), correctness(theirs[s])
        if labels_a != labels_b:
            return {"error": f"the test examples differ (seed {s}): not the same test set"}
        rows_a.append(a)
        rows_b.append(b)
        per_seed.append({"seed": s, **stats.mcnemar(a, b)})
    return {"seeds": seeds, "bootstrap": stats.paired_bootstrap(np.stack(rows_a), np.stack(rows_b), n_resamples, seed,
                                                                CONFIDENCE),
            "mcnemar": per_seed}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both counts (lower cost, higher accuracy), by cost."""
    front, best = [], float("-inf")
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if accuracy > best:
            front.append((cost, accuracy))
            best = accuracy
    return front
