"""Did the runs train long enough? Where each run's validation accuracy peaked and what its last epoch added, so that
the findings say, per method, whether the sweep's epochs let validation accuracy stop rising (the curves show it too).

The rule, stated once (RULE): a method's validation accuracy has stopped rising when its last epoch added at most
NO_EFFECT["points"] points on average over the seeds: the last evaluation's validation accuracy minus the best one
at least an epoch before it. Above that, more epochs may still help. Runs that learned nothing (test accuracy at or
below the majority class) are left out of the mean, and counted.

    last_epoch_gain_points(run)       # +0.8: the last epoch added 0.8 points of validation accuracy
    epochs_table(groups)              # a Markdown table, a row per method
    schedule_note(runs)               # what a flattening curve shows under a rate that decays to zero
"""

from __future__ import annotations

import numpy as np

from ftbench.run_store import learned_nothing
from ftbench.verdicts import NO_EFFECT

DECAYING_SCHEDULES = ("linear", "cosine")  # config.TrainingArguments.lr_scheduler_type's that end at zero
EPOCH_TOLERANCE = 1e-3  # history epochs are rounded to 4 decimals
RULE = (f"Validation accuracy has stopped rising where the last epoch added at most {NO_EFFECT['points']:g} points "
        "on average over the seeds (its last evaluation minus the best one at least an epoch before it); runs that "
        "learned nothing are left out of the mean.")


def validation_points(run: dict) -> list[tuple[float, float]]:
    """(epoch, validation accuracy) of each evaluation of the run, in order."""
    return [(entry["epoch"], entry["val_accuracy"]) for entry in run["train_info"]["history"]
            if entry.get("val_accuracy") is not None]


def best_point(run: dict) -> tuple[float, float] | None:
    """(epoch, validation accuracy) of the first evaluation that reached the run's highest validation accuracy."""
    points = validation_points(run)
    return max(points, key=lambda point: (point[1], -point[0])) if points else None


def last_epoch_gain_points(run: dict) -> float | None:
    """The last evaluation's validation accuracy minus the best one at least an epoch earlier, in points; None for a
    run of one epoch or less (nothing to compare with)."""
    points = validation_points(run)
    if not points:
        return None
    last_epoch, last_accuracy = points[-1]
    earlier = [accuracy for epoch, accuracy in points if epoch <= last_epoch - 1 + EPOCH_TOLERANCE]
    return 100 * (last_accuracy - max(earlier)) if earlier else None


def schedule_note(runs: list[dict]) -> str | None:
    """Where the runs' learning rate decays to zero over their epochs, a sentence on what a flattening curve then
    shows; None where any run kept a constant rate (its curve flattens for the data's sake alone)."""
    schedules = sorted({(r["run_info"]["config"]["training"].get("lr_scheduler_type"),
                         r["run_info"]["config"]["training"].get("warmup_ratio")) for r in runs})
    if not schedules or any(kind not in DECAYING_SCHEDULES for kind, _ in schedules):
        return None
    named = ", ".join(f"{kind} after a warm-up of {100 * (warmup or 0):g}% of the steps" for kind, warmup in schedules)
    return (f"The runs' learning rate decays to zero over their epochs ({named}), so their last epochs train at "
            "small rates: a curve that flattens there may show the schedule ending rather than the model having "
            "learned what it can. Whether more epochs help is told by a longer run of the same method.")


def epochs_row(label: str, runs: list[dict]) -> str:
    points = [point for point in map(best_point, runs) if point]
    bests = ", ".join(f"{round(epoch, 1):g}" for epoch, _ in points) or "–"
    # Side by side, a seed that learned slowly or not at all shows against its siblings.
    peaks = ", ".join(f"{accuracy:.3f}" for _, accuracy in points) or "–"
    # A run that learned nothing stays flat at the majority class: not a sign that training had run its course.
    learning = [run for run in runs if not learned_nothing(run)]
    gains = [gain for gain in map(last_epoch_gain_points, learning) if gain is not None]
    gain, state = "–", "too short to tell" if learning else "no run learned anything"
    if gains:
        mean = float(np.mean(gains))
        gain = f"{mean:+.2f}"
        state = "**still rising**: more epochs may help" if mean > NO_EFFECT["points"] else "stopped rising"
    if len(learning) < len(runs):
        gain += f" ({len(runs) - len(learning)} of {len(runs)} runs learned nothing, left out)"
    return f"| {label} | {runs[0]['train_info']['epochs']:g} | {bests} | {peaks} | {gain} | {state} |"


def epochs_table(groups: dict) -> list[str]:
    """{method label: runs} -> a Markdown table: epochs, where and how high validation accuracy peaked, what the
    last epoch added, and whether it stopped rising (RULE)."""
    lines = ["| Method | Epochs | Epoch of best validation accuracy (per seed) | Best validation accuracy (per seed) "
             "| Last epoch's gain (points, mean) | Validation accuracy |", "|---|---|---|---|---|---|"]
    return lines + [epochs_row(label, runs) for label, runs in groups.items()] + [""]
