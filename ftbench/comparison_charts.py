"""The comparison charts of a sweep: accuracy against cost with the Pareto front, and learning curves over seeds
(mean ± 1 std), as report.py and the findings draw them."""

from __future__ import annotations

from ftbench.paired import pareto_front


def pareto_chart(summaries: dict, colours: dict, title: str, memory_kind: str):
    from ftbench.chart_style import plt

    panels = (("num_params_trainable", "trainable parameters (log scale)", True),
              ("peak_memory_mib", f"peak memory (MiB, {memory_kind})", False),
              ("train_time_s", "train time (s)", False))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True, layout="constrained")
    for axis, (key, xlabel, log) in zip(axes, panels):
        points = []
        for label, summary in summaries.items():
            accuracy = summary["test_accuracy"]
            cost = summary[key]
            x = cost if not isinstance(cost, dict) else cost["mean"]
            if x is None or accuracy["mean"] is None:
                continue
            xerr = cost.get("std") if isinstance(cost, dict) else None
            axis.errorbar(x, accuracy["mean"], yerr=accuracy["std"] or 0, xerr=xerr or 0, fmt="o",
                          color=colours[label], capsize=3, label=label)
            axis.annotate(label, (x, accuracy["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
            points.append((x, accuracy["mean"]))
        front = pareto_front(points)
        if len(front) > 1:
            axis.plot(*zip(*front), color="grey", linestyle="--", linewidth=1, label="Pareto front")
        if log:
            axis.set_xscale("log")
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (mean ± std over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), fontsize=9)
    figure.suptitle(f"Accuracy against cost — {title}")
    return figure


def curves_chart(groups: dict, colours: dict, title: str):
    import numpy as np

    from ftbench import stats
    from ftbench.chart_style import plt

    panels = (("train_loss", "training loss"), ("val_loss", "validation loss"),
              ("val_accuracy", "validation accuracy"), ("generalization_gap", "generalisation gap (val − train loss)"))
    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True, layout="constrained")
    # The runs of one section train on the same data in the same batches: a step is the same epoch in each.
    epochs = {row["step"]: row["epoch"] for runs in groups.values() for run in runs
              for row in run["train_info"].get("history") or [] if row.get("epoch") is not None}
    for label, runs in groups.items():
        curve = stats.mean_curve([r["train_info"].get("history") or [] for r in runs])
        for axis, (key, _) in zip(axes.flat, panels):
            rows = [row for row in curve if row.get(f"{key}_mean") is not None]
            if not rows:
                continue
            steps = np.array([epochs.get(row["step"], np.nan) for row in rows])
            mean = np.array([row[f"{key}_mean"] for row in rows])
            std = np.array([row[f"{key}_std"] or 0.0 for row in rows])
            axis.plot(steps, mean, marker="o", markersize=3, color=colours[label], label=f"{label} (n={len(runs)})")
            axis.fill_between(steps, mean - std, mean + std, color=colours[label], alpha=0.2)
    for axis, (key, heading) in zip(axes.flat, panels):
        axis.set_title(heading)
        axis.grid(alpha=0.3)
        if key == "generalization_gap":
            axis.axhline(0, color="black", linewidth=0.8)
    for axis in axes[1]:
        axis.set_xlabel("epoch")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9)
    figure.suptitle(f"Learning curves, mean ± 1 std over seeds — {title}")
    return figure
