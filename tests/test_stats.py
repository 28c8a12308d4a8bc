"""stats.py against hand-computed values and an independent loop implementation of the bootstrap."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ftbench.stats import holm, mcnemar, mean_curve, paired_bootstrap, summarize

# t_{0.975, 2} in closed form: for 2 degrees of freedom, t_p = (2p - 1) * sqrt(2 / (4 p (1 - p))).
T_975_DF2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))


def test_t_quantile_closed_form():
    assert T_975_DF2 == pytest.approx(4.30265272974946, rel=1e-12)


def test_summarize_three_seeds():
    s = summarize([0.80, 0.82, 0.84])
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.82)
    assert s["std"] == pytest.approx(0.02)
    assert s["ci_low"] == pytest.approx(0.82 - half, rel=1e-9)
    assert s["ci_high"] == pytest.approx(0.82 + half, rel=1e-9)
    assert (s["min"], s["max"]) == (pytest.approx(0.80), pytest.approx(0.84))


def test_summarize_other_confidence():
    # df = 1: t_p = tan(pi (p - 1/2)), so at 90% t = tan(0.45 pi).
    s = summarize([1.0, 3.0], confidence=0.90)
    half = math.tan(0.45 * math.pi) * math.sqrt(2) / math.sqrt(2)
    assert s["ci_low"] == pytest.approx(2.0 - half, rel=1e-9)
    assert s["ci_high"] == pytest.approx(2.0 + half, rel=1e-9)


def test_summarize_one_value_and_missing():
    one = summarize([0.7])
    assert one == {"n": 1, "mean": 0.7, "std": None, "ci_low": None, "ci_high": None, "min": 0.7, "max": 0.7}
    assert summarize([None, 0.80, float("nan"), 0.82, np.nan, 0.84]) == summarize([0.80, 0.82, 0.84])
    empty = summarize([None, float("nan")])
    assert empty["n"] == 0 and all(v is None for k, v in empty.items() if k != "n")
    assert summarize([])["n"] == 0


def _table(both_correct: int, a_only: int, b_only: int, both_wrong: int):
    a = [1] * both_correct + [1] * a_only + [0] * b_only + [0] * both_wrong
    b = [1] * both_correct + [0] * a_only + [1] * b_only + [0] * both_wrong
    return a, b


def test_mcnemar_known_table():
    a, b = _table(both_correct=10, a_only=1, b_only=7, both_wrong=2)
    r = mcnemar(a, b)
    assert (r["n_examples"], r["both_correct"], r["a_only"], r["b_only"], r["both_wrong"]) == (20, 10, 1, 7, 2)
    assert r["accuracy_a"] == pytest.approx(11 / 20)
    assert r["accuracy_b"] == pytest.approx(17 / 20)
    assert r["difference"] == pytest.approx(-6 / 20)
    # 2 * (C(8,0) + C(8,1)) / 2^8
    assert r["p_value"] == pytest.approx(2 * 9 / 256, rel=1e-12)
    assert r["statistic"] == pytest.approx((6 - 1) ** 2 / 8)
    assert r["test"] == "exact binomial"
    # Swapping A and B swaps the discordant counts but not the two-sided p-value.
    swapped = mcnemar(b, a)
    assert (swapped["a_only"], swapped["b_only"]) == (7, 1)
    assert swapped["p_value"] == r["p_value"]


def test_mcnemar_balanced_and_no_discordant_pairs():
    assert mcnemar(*_table(5, 3, 3, 1))["p_value"] == 1.0
    same = mcnemar([True, False, True], [True, False, True])
    assert same["p_value"] == 1.0 and same["statistic"] is None
    # All discordant pairs one way: p = 2 / 2^10.
    assert mcnemar(*_table(0, 10, 0, 0))["p_value"] == pytest.approx(2 / 1024, rel=1e-12)


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="same examples"):
        mcnemar([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        mcnemar([], [])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar([0.5, 1], [1, 1])


def _loop_bootstrap(a, b, n_resamples, seed, chunk_size):
    """The bootstrap statistic resample by resample, with the draws in the order stats.py documents."""
    a, b = np.atleast_2d(a).astype(float), np.atleast_2d(b).astype(float)
    n_seeds, n_examples = a.shape
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n_resamples:
        m = min(chunk_size, n_resamples - len(out))
        seed_idx = rng.integers(0, n_seeds, size=(m, n_seeds))
        example_idx = rng.integers(0, n_examples, size=(m, n_examples))
        for r in range(m):
            rows_a = [[a[s, e] for e in example_idx[r]] for s in seed_idx[r]]
            rows_b = [[b[s, e] for e in example_idx[r]] for s in seed_idx[r]]
            out.append(np.mean(rows_a) - np.mean(rows_b))
    return np.array(out)


def test_paired_bootstrap_matches_loop_implementation():
    rng = np.random.default_rng(123)
    a = (rng.random((3, 15)) < 0.8).astype(int)
    b = (rng.random((3, 15)) < 0.6).astype(int)
    # chunk_size 7 with 20 resamples exercises a short last chunk.
    r = paired_bootstrap(a, b, n_resamples=20, seed=5, confidence=0.9, chunk_size=7)
    expected = _loop_bootstrap(a, b, 20, seed=5, chunk_size=7)
    low, high = np.quantile(expected, [0.05, 0.95])
    assert r["ci_low"] == pytest.approx(low, abs=1e-12)
    assert r["ci_high"] == pytest.approx(high, abs=1e-12)
    p = min(1.0, 2 * min(np.mean(expected <= 0), np.mean(expected >= 0)))
    assert r["p_value"] == pytest.approx(p)
    assert r["difference"] == pytest.approx(a.mean() - b.mean())
    assert (r["n_resamples"], r["seed"], r["n_seeds"], r["n_examples"]) == (20, 5, 3, 15)
    assert r["test"] == "paired bootstrap"


def test_paired_bootstrap_deterministic_and_seed_dependent():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 50)) < 0.7).astype(int)
    b = (rng.random((3, 50)) < 0.65).astype(int)
    first = paired_bootstrap(a, b, n_resamples=500, seed=1)
    assert paired_bootstrap(a, b, n_resamples=500, seed=1) == first
    assert paired_bootstrap(a, b, n_resamples=500, seed=2)["ci_low"] != first["ci_low"]


def test_paired_bootstrap_identical_methods():
    a = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1]])
    r = paired_bootstrap(a, a.copy(), n_resamples=200)
    assert (r["difference"], r["ci_low"], r["ci_high"], r["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_clear_difference():
    n = 100
    a = np.ones((3, n), dtype=int)
    b = np.tile(np.arange(n) % 2, (3, 1))
    r = paired_bootstrap(a, b, n_resamples=2000)
    assert r["difference"] == pytest.approx(0.5)
    assert 0 < r["ci_low"] < 0.5 < r["ci_high"]
    assert r["p_value"] < 0.01


def test_paired_bootstrap_one_dimensional_is_one_seed():
    rng = np.random.default_rng(7)
    a = (rng.random(40) < 0.8).astype(bool)
    b = (rng.random(40) < 0.5).astype(bool)
    assert paired_bootstrap(a, b, n_resamples=300) == paired_bootstrap(a[None, :], b[None, :], n_resamples=300)


def test_paired_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap([], [])


def test_paired_bootstrap_full_size_is_fast():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 872)) < 0.9).astype(int)
    b = (rng.random((3, 872)) < 0.88).astype(int)
    start = time.perf_counter()
    r = paired_bootstrap(a, b)
    assert time.perf_counter() - start < 5.0
    assert r["ci_low"] < r["difference"] < r["ci_high"]


def test_mean_curve_two_seeds():
    seed0 = [{"step": 10, "val_loss": 0.6, "val_accuracy": 0.7, "train_loss": None},
             {"step": 20, "val_loss": 0.4, "val_accuracy": 0.8, "train_loss": 0.5},
             {"step": 30, "val_loss": 0.3, "val_accuracy": 0.9, "train_loss": 0.2}]
    seed1 = [{"step": 20, "val_loss": 0.2, "val_accuracy": 0.9, "train_loss": None},
             {"step": 10, "val_loss": 0.8, "val_accuracy": 0.6, "train_loss": None, "only_here": 1.0}]
    rows = mean_curve([seed0, seed1])
    assert [row["step"] for row in rows] == [10, 20]  # step 30 is missing from seed1
    first, second = rows
    assert first["n"] == 2 and second["n"] == 2
    assert first["val_loss_mean"] == pytest.approx(0.7)
    assert first["val_loss_std"] == pytest.approx(math.sqrt(0.02))  # sqrt(((0.1)^2 + (0.1)^2) / 1)
    assert first["val_accuracy_mean"] == pytest.approx(0.65)
    assert first["train_loss_mean"] is None and first["train_loss_std"] is None
    assert "only_here_mean" not in first
    assert second["val_loss_mean"] == pytest.approx(0.3)
    assert second["val_accuracy_std"] == pytest.approx(math.sqrt(0.005))
    assert second["train_loss_mean"] == pytest.approx(0.5) and second["train_loss_std"] is None


def test_mean_curve_single_seed_and_empty():
    rows = mean_curve([[{"step": 5, "val_loss": 1.0, "epoch": 0.5}]])
    assert rows == [{"step": 5, "val_loss_mean": 1.0, "val_loss_std": None,
                     "epoch_mean": 0.5, "epoch_std": None, "n": 1}]
    assert mean_curve([]) == []


def test_holm_by_hand():
    # Sorted 0.01, 0.02, 0.04, 0.30 of m=4: x4 = 0.04, x3 = 0.06, x2 = 0.08, x1 = 0.30; monotone; given order kept.
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    # A smaller adjusted value after a larger one is raised to it (step-down monotonicity), and 1 caps.
    assert holm([0.01, 0.011, 0.5]) == pytest.approx([0.03, 0.03, 0.5])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([0.2]) == [0.2] and holm([]) == []
