"""What to use under a limit, from a sweep's own measurements: for a limit on peak memory, train time or trainable
parameters, the most accurate method that stays within it, and what choosing it costs in accuracy against the
most accurate method of all. The rows are the Pareto front of each cost (mean over seeds against mean test
accuracy): below the cheapest method's cost nothing measured fits, and a method off the front is never the
choice (a cheaper one is at least as accurate)."""

from __future__ import annotations

from ftbench.paired import pareto_front

COSTS = (  # summary key, what the limit is on, its format
    ("peak_memory_mib", "peak memory (MiB)", ",.0f"),
    ("train_time_s", "train time (s)", ",.1f"),
    ("num_params_trainable", "trainable parameters", ",.0f"),
)


def _mean(value):
    return value["mean"] if isinstance(value, dict) else value


def choices(summaries: dict, cost_key: str) -> list[dict]:
    """The methods on the Pareto front of this cost, cheapest first: label, cost, accuracy (mean and std) and
    the accuracy given up against the most accurate method (points)."""
    measured = {label: (_mean(s[cost_key]), s["test_accuracy"]) for label, s in summaries.items()
                if _mean(s[cost_key]) is not None and s["test_accuracy"]["mean"] is not None}
    if not measured:
        return []
    best = max(accuracy["mean"] for _, accuracy in measured.values())
    front = pareto_front([(cost, accuracy["mean"]) for cost, accuracy in measured.values()])
    rows = []
    for cost, mean in front:
        label = min(label for label, (c, a) in measured.items() if c == cost and a["mean"] == mean)
        accuracy = measured[label][1]
        rows.append({"label": label, "cost": cost, "accuracy": mean, "accuracy_std": accuracy["std"],
                     "points_below_best": 100 * (best - mean)})
    return rows


def recommendation_lines(summaries: dict, memory_kind: str) -> list[str]:
    """The Markdown table: for each cost, each limit from which a method becomes the choice."""
    best_label = max((label for label in summaries if summaries[label]["test_accuracy"]["mean"] is not None),
                     key=lambda label: summaries[label]["test_accuracy"]["mean"], default=None)
    if best_label is None or len(summaries) < 2:
        return []
    lines = ["| Limit on | At or above | Choose | Test accuracy | Points below the most accurate |",
             "|---|---|---|---|---|"]
    for key, name, spec in COSTS:
        name = name.replace("peak memory (MiB)", f"peak memory (MiB, {memory_kind})")
        for row in choices(summaries, key):
            std = f" ± {row['accuracy_std']:.4f}" if row["accuracy_std"] is not None else ""
            lines.append(f"| {name} | {format(row['cost'], spec)} | {row['label']} | {row['accuracy']:.4f}{std} | "
                         f"{row['points_below_best']:.2f} |")
    lines += ["", f"Read a row as: with a limit at or above this figure (and below the next row's), choose this "
              f"method; the most accurate method measured is {best_label}. Costs and accuracies are means over the "
              "seeds; a method whose accuracy is within about one standard deviation of another's is not shown "
              "better by these runs. Below the first row's figure no method measured here fits.", ""]
    return lines
