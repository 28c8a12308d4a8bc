"""The tables of one data set and model's comparison: the figures over seeds, the paired comparison with a
reference (Holm-adjusted), and what to use under a limit; report.py and the findings print them."""

from __future__ import annotations

import re
from collections.abc import Callable

from ftbench.paired import CONFIDENCE, compare_pairs
from ftbench.recommend import recommendation_lines
from ftbench.run_store import learned_nothing, peak_memory


def mean_std(summary: dict, spec: str) -> str:
    if summary["mean"] is None:
        return "–"
    text = format(summary["mean"], spec)
    return text + (f" ± {format(summary['std'], spec)}" if summary["std"] is not None else "")


def with_ci(summary: dict, spec: str) -> str:
    text = mean_std(summary, spec)
    if summary.get("ci_low") is not None:
        text += f" [{format(summary['ci_low'], spec)}, {format(summary['ci_high'], spec)}]"
    return text


def format_p(value: float, resolution: float | None = None) -> str:
    if resolution is not None and value == 0:
        return f"< {resolution:.0e}".replace("e-0", "e-")
    return f"{value:.3g}" if value >= 0.001 else f"{value:.1e}"


def mcnemar_text(result: dict) -> str:
    """A comparison's McNemar tests, one per seed: p (discordant pairs: this right / reference right)."""
    return "; ".join(f"seed {m['seed']}: {format_p(m['p_value'])} ({m['a_only']}/{m['b_only']})"
                     for m in result["mcnemar"])


def memory_kind_of(groups: dict) -> str:
    memory_kinds = {peak_memory(r)[1] for runs in groups.values() for r in runs}
    return "GPU allocated" if memory_kinds == {"cuda"} else "CPU RSS" if memory_kinds == {"cpu"} else \
        "GPU allocated on CUDA, RSS on CPU"


def section_tables(groups: dict, summaries: dict, reference: str | None, n_resamples: int,
                   heading_of: Callable[[int, str], str]) -> list[str]:
    """One data set and model's tables: the figures over seeds, then the comparison with the reference; headings
    are made by heading_of(level, text)."""
    memory_kind = memory_kind_of(groups)
    header = ["Method", "n", "Trainable params (% of total)", f"Peak memory (MiB, {memory_kind})", "Train time (s)",
              "Samples/s", "Test accuracy (95% CI)", "Test macro-F1", "Test loss", "Checkpoint (MiB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, summary in summaries.items():
        params = summary["num_params_trainable"]
        lines.append("| " + " | ".join([
            label.replace("|", "\\|"), str(summary["test_accuracy"]["n"]),
            f"{params:,} ({summary['trainable_params_pct']:.3g}%)" if params is not None else "–",
            mean_std(summary["peak_memory_mib"], ".0f"), mean_std(summary["train_time_s"], ".1f"),
            mean_std(summary["train_samples_per_s"], ".1f"), with_ci(summary["test_accuracy"], ".4f"),
            mean_std(summary["test_f1_macro"], ".4f"), mean_std(summary["test_loss"], ".4f"),
            "–" if summary["checkpoint_size_mib"] is None else f"{summary['checkpoint_size_mib']:.2f}"]) + " |")
    lines += ["", "Mean ± sample standard deviation over the runs (one per seed, n of them); the interval is the "
              f"{CONFIDENCE:.0%} Student-t confidence interval of the mean test accuracy.", ""]

    lines += runs_that_learned_nothing(groups)
    pairs, reference_name = reference_pairs(groups, reference)
    if reference and not pairs and reference not in groups:
        lines += [f"No `{reference}` runs here to compare with.", ""]
    if pairs:
        lines += [heading_of(3, f"Against {reference_name}"), "",
                  "| Method | Seeds paired | Accuracy difference (95% CI) | Bootstrap p | Holm-adjusted p | McNemar p "
                  "per seed (discordant: this right / reference right) |", "|---|---|---|---|---|---|"]
        results = compare_pairs(groups, pairs, n_resamples)
        compared = [label for label, result in results.items() if "error" not in result]
        for label, result in results.items():
            if "error" in result:
                lines.append(f"| {label} | – | not compared: {result['error']} | – | – | – |")
                continue
            boot = result["bootstrap"]
            lines.append(f"| {label} | {', '.join(map(str, result['seeds']))} | {boot['difference']:+.4f} "
                         f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}] | "
                         f"{format_p(boot['p_value'], 1 / boot['n_resamples'])} | "
                         f"{format_p(result['holm_p'], 1 / boot['n_resamples'])} | {mcnemar_text(result)} |")
        lines += ["", f"Difference = this method's accuracy minus {reference_name}'s, on the same test examples and "
                  f"seeds. The paired bootstrap ({n_resamples:,} resamples, fixed seed 0) resamples both seeds and "
                  "test examples; its p-value is two-sided, and Holm's adjustment accounts for the "
                  f"{len(compared)} comparison(s) of this table together. McNemar's exact test compares one seed's "
                  "two runs example by example. A difference whose interval contains 0 is not shown to exist by "
                  "these runs.", ""]
    recommendations = recommendation_lines(summaries, memory_kind)
    if recommendations:
        lines += [heading_of(3, "What to use under a limit"), ""] + recommendations
    return lines


def runs_that_learned_nothing(groups: dict) -> list[str]:
    """A line naming the runs whose test accuracy is at or below always predicting the training set's most common
    label (a learning rate too high for that seed, say): they inflate their method's spread, and say why."""
    found = [(label, run) for label, runs in groups.items() for run in runs if learned_nothing(run)]
    if not found:
        return []
    baseline = found[0][1]["train_info"]["test"]["majority_baseline"]
    found = [f"{label} seed {run['run_info']['seed']} ({run['train_info']['test']['accuracy']:.4f})"
             for label, run in found]
    return [f"Runs that learned nothing (test accuracy at or below always predicting '{baseline['label']}', "
            f"{baseline['accuracy']:.4f}): {'; '.join(found)}.", ""]


def reference_pairs(groups: dict, reference: str | None) -> tuple[list[tuple[str, str]], str]:
    """([(label, the label it is compared with)], how the reference is named). reference: a label (default full,
    where present), or, with --split_by, a setting's value such as precision=fp32: then each group is compared
    with the group of the same method at that value."""
    if reference and "=" in reference and reference not in groups:
        suffix = re.compile(rf" \({re.escape(reference.split('=', 1)[0])}=[^)]*\)")
        pairs = [(label, suffix.sub(f" ({reference})", label)) for label in groups]
        return [(a, b) for a, b in pairs if a != b and b in groups], f"{reference} (each method against its own)"
    label = reference if reference in groups else ("full" if reference is None and "full" in groups else None)
    if label is None or len(groups) < 2:
        return [], ""
    return [(other, label) for other in groups if other != label], label
