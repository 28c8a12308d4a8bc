"""The rules that turn a measured difference into a verdict on a claim, stated once (RULES, printed at the top of
docs/findings.md) and applied by two functions: one for claims that two methods are alike, one for claims
that one is lower or higher. Every interval is a 95% interval of "method minus reference"."""

from __future__ import annotations

from dataclasses import dataclass

CONFIRMED, NOT_CONFIRMED, REVERSED, INCONCLUSIVE = ("confirmed", "not confirmed", "reversed",
                                                    "inconclusive at this budget")
NOT_MEASURED = "not measured yet"

CLOSE_MARGIN_POINTS = 1.0  # "comes close"
EQUAL_MARGIN_POINTS = 0.5  # "within the error range", "matches"
NO_EFFECT = {"points": 0.5, "percent": 5.0, "loss": 0.02}  # the band inside which a difference counts as none

RULES = f"""\
- **Accuracy differences** are the method's test accuracy minus the reference's, in points, with the 95%
  interval of the paired bootstrap over seeds and test examples (the statistics of `report.py`). They pair
  runs by seed whatever machine they trained on; where the two methods trained in different precisions, the
  comparison says so.
- **Time, memory and the generalisation gap** have no test examples to resample: their intervals are 95%
  Student-t intervals of the per-seed differences (method minus reference, trained with the same seed), in
  percent of the reference for time and memory, in loss units for the gap. Time and memory pair only seeds
  whose two runs trained in the same precision in one boot of one machine (`meta_info.boot_id`: cloud machines that
  report one CPU name and vector unit can be different hosts; runs recorded before it pair by CPU and precision).
- A claim that two methods are **alike** ("comes close", "within the error range", "matches") is
  **{CONFIRMED}** when the whole interval lies within ±m points (m = {CLOSE_MARGIN_POINTS:g} for "comes close",
  {EQUAL_MARGIN_POINTS:g} for "within the error range" and "matches"), **{NOT_CONFIRMED}** when the whole
  interval lies outside ±m (the difference is larger than m), and **{INCONCLUSIVE}** otherwise.
- A claim that one method is **lower or higher** (less memory, less time, a smaller gap, an accuracy cost)
  is **{CONFIRMED}** when the interval excludes zero on the claimed side, **{REVERSED}** when it excludes zero
  on the other side, **{NOT_CONFIRMED}** when the whole interval lies within the band of no effect
  (±{NO_EFFECT['points']:g} points of accuracy, ±{NO_EFFECT['percent']:g}% of time or memory,
  ±{NO_EFFECT['loss']:g} of loss), and **{INCONCLUSIVE}** otherwise.
- p-values are the paired bootstrap's, two-sided. Where one sweep compares several methods with one reference,
  they are also given Holm-adjusted over that sweep's comparisons. The verdicts use the intervals.
- **{NOT_MEASURED}**: the sweep the claim needs has fewer than two seeds of a method here; its command is given.
"""


@dataclass(frozen=True)
class Interval:
    """A difference (method minus reference) and its 95% interval, in one unit."""

    estimate: float
    low: float
    high: float
    unit: str  # "points", "percent" or "loss"

    def text(self, spec: str = "+.2f") -> str:
        suffix = {"points": " points", "percent": "%", "loss": ""}[self.unit]
        return f"{self.estimate:{spec}}{suffix} [{self.low:{spec}}, {self.high:{spec}}]"


def alike(interval: Interval, margin: float) -> str:
    """The verdict on "the method and the reference are alike within ±margin"."""
    if -margin <= interval.low and interval.high <= margin:
        return CONFIRMED
    if interval.high < -margin or interval.low > margin:
        return NOT_CONFIRMED
    return INCONCLUSIVE


def directional(interval: Interval, claimed_sign: int) -> str:
    """The verdict on "the method is lower (claimed_sign -1) or higher (+1) than the reference"."""
    band = NO_EFFECT[interval.unit]
    if claimed_sign * interval.low > 0 and claimed_sign * interval.high > 0:
        return CONFIRMED
    if claimed_sign * interval.low < 0 and claimed_sign * interval.high < 0:
        return REVERSED
    if -band <= interval.low and interval.high <= band:
        return NOT_CONFIRMED
    return INCONCLUSIVE
