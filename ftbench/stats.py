"""Statistics for comparing fine-tuning methods across seeds and test examples.

A single accuracy number per method hides two sources of noise: which seed trained the model, and
which examples happen to be in the test split. These helpers put that noise into the comparison:

    summarize(values)               mean, sample std and Student-t confidence interval over seeds
    mcnemar(correct_a, correct_b)   exact McNemar test: two models, one seed, same test examples
    paired_bootstrap(a, b)          difference in accuracy over seeds and examples, resampling both
    holm(p_values)                  Holm's step-down adjustment for several comparisons at once
    mean_curve(histories)           per-step mean and std of training histories across seeds

All functions are pure (lists or numpy arrays in, plain dicts of Python numbers out).
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from scipy import stats as sps


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def summarize(values, confidence: float = 0.95) -> dict:
    """n, mean, sample std (ddof=1), Student-t CI of the mean, min and max; None/NaN values are skipped."""
    # None/NaN are runs that produced no measurement; counting them would bias n and the interval.
    kept = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=float)
    n = int(kept.size)
    out = {"n": n, "mean": None, "std": None, "ci_low": None, "ci_high": None, "min": None, "max": None}
    if n == 0:
        return out
    mean = float(kept.mean())
    out.update(mean=mean, min=float(kept.min()), max=float(kept.max()))
    if n >= 2:
        std = float(kept.std(ddof=1))
        half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci_low=mean - half, ci_high=mean + half)
    return out


def _as_binary(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0/1 or booleans (correct per example)")
    return array


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test of two classifiers scored on the same examples, in the same order.

    Only the discordant pairs carry information: b = examples A got right and B wrong (a_only),
    c = the reverse (b_only). Under the null each discordant pair is a fair coin, so
    p = min(1, 2 * BinomCDF(min(b, c); b + c, 0.5)), and p = 1 when b + c == 0. `statistic` is the
    continuity-corrected chi-square (|b - c| - 1)^2 / (b + c), reported for reference only.
    """
    a = _as_binary(correct_a, "correct_a").astype(bool).ravel()
    b_arr = _as_binary(correct_b, "correct_b").astype(bool).ravel()
    if a.size != b_arr.size:
        raise ValueError(f"correct_a and correct_b must score the same examples: got {a.size} and {b_arr.size}")
    if a.size == 0:
        raise ValueError("correct_a and correct_b are empty: there are no examples to compare")
    b = int(np.sum(a & ~b_arr))
    c = int(np.sum(~a & b_arr))
    discordant = b + c
    # Exact binomial rather than chi-square: discordant counts are often small for near-equal methods.
    p_value = 1.0 if discordant == 0 else min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), discordant, 0.5)))
    return {
        "n_examples": int(a.size),
        "both_correct": int(np.sum(a & b_arr)),
        "a_only": b,
        "b_only": c,
        "both_wrong": int(np.sum(~a & ~b_arr)),
        "accuracy_a": float(a.mean()),
        "accuracy_b": float(b_arr.mean()),
        "difference": float(a.mean() - b_arr.mean()),
        "p_value": p_value,
        "statistic": None if discordant == 0 else (abs(b - c) - 1) ** 2 / discordant,
        "test": "exact binomial",
    }


def paired_bootstrap(correct_a, correct_b, n_resamples: int = 10000, seed: int = 0,
                     confidence: float = 0.95, chunk_size: int = 1000) -> dict:
    """Bootstrap the accuracy difference A - B, resampling both seeds and test examples.

    correct_a, correct_b: 0/1 arrays of shape (n_seeds, n_examples), row i of each being the run with
    seed index i (a 1-D array is one seed). Each resample draws seed indices and example indices with
    replacement, the same ones for A and B (the pairing), and the same example indices for every seed.
    Its statistic is mean(A) - mean(B) over the drawn seeds x drawn examples.

    Random draws, with rng = numpy.random.default_rng(seed), for each chunk of
    m = min(chunk_size, resamples left) resamples, in this order:
        seed_idx = rng.integers(0, n_seeds, size=(m, n_seeds))
        example_idx = rng.integers(0, n_examples, size=(m, n_examples))

    Returns the observed difference, the percentile interval at `confidence`, and
    p_value = min(1, 2 * min(fraction of resampled differences <= 0, fraction >= 0)), a two-sided
    bootstrap p-value for "no difference"; 0.0 means below the resolution 1 / n_resamples.
    """
    a = _as_binary(correct_a, "correct_a")
    b = _as_binary(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must have the same shape: got {a.shape} and {b.shape}")
    if a.ndim == 1:
        a, b = a[None, :], b[None, :]
    if a.ndim != 2 or a.size == 0:
        raise ValueError("expected non-empty arrays of shape (n_seeds, n_examples) or (n_examples,)")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    n_seeds, n_examples = a.shape
    # Same indices for A and B, so the difference per (seed, example) is all that is ever resampled.
    diff = a - b
    rng = np.random.default_rng(seed)
    resampled = np.empty(n_resamples, dtype=float)
    done = 0
    while done < n_resamples:
        m = min(chunk_size, n_resamples - done)
        seed_idx = rng.integers(0, n_seeds, size=(m, n_seeds))
        example_idx = rng.integers(0, n_examples, size=(m, n_examples))
        # Integer-valued sums stay exact in float64, so a difference of exactly 0 is seen as 0.
        per_seed = diff[:, example_idx].sum(axis=2).T  # (m, n_seeds): each seed over the drawn examples
        totals = np.take_along_axis(per_seed, seed_idx, axis=1).sum(axis=1)
        resampled[done:done + m] = totals / (n_seeds * n_examples)
        done += m
    alpha = 1.0 - confidence
    ci_low, ci_high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    p_value = min(1.0, 2.0 * min(float(np.mean(resampled <= 0)), float(np.mean(resampled >= 0))))
    return {
        "difference": float(a.mean() - b.mean()),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "p_value": p_value,
        "n_resamples": int(n_resamples),
        "seed": seed,
        "n_seeds": int(n_seeds),
        "n_examples": int(n_examples),
        "test": "paired bootstrap",
    }


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the i-th smallest of m is multiplied by m - i
    (i from 0), each kept at least as large as the one before it, and capped at 1. Rejecting where the adjusted
    p is below alpha controls the chance of any false rejection among the m at alpha."""
    values = [float(p) for p in p_values]
    adjusted = [0.0] * len(values)
    running = 0.0
    for rank, index in enumerate(sorted(range(len(values)), key=lambda i: values[i])):
        running = max(running, min(1.0, (len(values) - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def _is_metric(value) -> bool:
    # bool is a Real in Python, but a flag is not a metric to average.
    return value is None or (isinstance(value, Real) and not isinstance(value, bool))


def mean_curve(curves) -> list[dict]:
    """Average per-seed training histories step by step.

    curves: one history per seed, each a list of dicts with "step" and metric values (as the runner's
    train_info["history"]). Only steps present in every history are kept (a step some seeds lack would
    average over a different set of runs). For each metric key present at that step in every history:
    "<key>_mean" and "<key>_std" (ddof=1) over the values that are not None, each None when too few
    values remain; "n" is the number of seeds. Sorted by step.
    """
    by_step = [{entry["step"]: entry for entry in history} for history in curves]
    if not by_step:
        return []
    steps = sorted(set.intersection(*(set(seed) for seed in by_step)))
    rows = []
    for step in steps:
        entries = [seed[step] for seed in by_step]
        keys = [k for k in entries[0] if k != "step"
                and all(k in e and _is_metric(e[k]) for e in entries)]
        row = {"step": step}
        for key in keys:
            values = np.array([e[key] for e in entries if e[key] is not None], dtype=float)
            row[f"{key}_mean"] = float(values.mean()) if values.size else None
            row[f"{key}_std"] = float(values.std(ddof=1)) if values.size >= 2 else None
        row["n"] = len(entries)
        rows.append(row)
    return rows
