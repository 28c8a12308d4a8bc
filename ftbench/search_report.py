"""The hyperparameter search's part of a sweep's report (report.md): per method, data set and model, what the Optuna
search tried and chose; with two objectives, the Pareto front of its trials as a table and a chart. Read from the
sweep's benchmark.json, which benchmark.py --search optuna writes (ftbench/optuna_search.py); needs no optuna.

    lines, charts = search_section(sweep_folder, out_dir)   # ([], {}) for a sweep without an Optuna search
"""

from __future__ import annotations

import os

from ftbench.sweep_manifest import read_manifest

HEADINGS = {"val_accuracy": "Validation accuracy", "train_time_s": "Train time (s)",
            "peak_memory_mib": "Peak memory (MiB)"}
BEST_SHOWN = 5  # trials listed for a one-objective search: the best completed ones


def search_section(folder: str, out_dir: str) -> tuple[list[str], dict]:
    """Report lines and {chart path: figure} for the Optuna searches recorded in folder's benchmark.json."""
    searches = (read_manifest(folder) or {}).get("optuna_search") or {}
    if not searches:
        return [], {}
    lines = ["## Hyperparameter search (Optuna)", "",
             "Each method's settings were chosen before its runs by an Optuna search on one seed, on the validation "
             "split only (its runs are in `optuna_search/runs/`, not in the tables above); every seed's run then used "
             "the chosen trial's settings. Pruned trials are stopped runs: their figure is the validation accuracy "
             "where they stopped, not a result.", ""]
    charts = {}
    for index, (group, record) in enumerate(searches.items(), start=1):
        lines += group_lines(group, record)
        if record.get("pareto_front") is not None:
            name = f"optuna_pareto_{index}.png"
            charts[os.path.join(out_dir, name)] = pareto_chart(group, record)
            lines += [f"![Pareto front of {group}]({name})", ""]
    return lines, charts


def group_lines(group: str, record: dict) -> list[str]:
    states = [trial["state"] for trial in record["trials"]]
    tally = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail") if states.count(s))
    chosen = record.get("chosen_trial")
    lines = [f"**{group.replace('|', ' · ')}**: {len(states)} trials ({tally}); {record['sampler']}; pruning: "
             f"{record['pruner'] or 'none'}; study `{record['study_name']}` in `{record['study_storage']}`. "
             + (f"Chosen ({record['selected_on']}): trial {chosen}, `{' '.join(record['chosen_options'])}`."
                if chosen is not None else "No trial completed: the runs used the method's settings."), ""]
    front = record.get("pareto_front")
    complete = [trial for trial in record["trials"] if trial["state"] == "complete"]
    if front is not None:
        shown, what = [trial for trial in complete if trial["number"] in front], "The Pareto front"
    else:
        shown = sorted(complete, key=lambda t: (-t["values"]["val_accuracy"], t["number"]))[:BEST_SHOWN]
        what = f"The {len(shown)} best completed trial(s)"
    if not shown:
        return lines
    keys = list(record["objectives"])
    lines += [f"{what}:", "", "| Trial | Settings | " + " | ".join(HEADINGS[key] for key in keys) + " | Run |",
              "|---|---|" + "---|" * len(keys) + "---|"]
    for trial in sorted(shown, key=lambda t: (-t["values"]["val_accuracy"], t["number"])):
        settings = ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                             for name, value in trial["params"].items())
        lines.append(f"| {trial['number']}{' (chosen)' if trial['number'] == chosen else ''} | {settings} | "
                     + " | ".join(format(trial["values"][key], ".4g") for key in keys) + f" | {trial['run_id']} |")
    return lines + [""]


def pareto_chart(group: str, record: dict):
    """Validation accuracy against the second objective: every completed trial, the front joined, the choice."""
    from ftbench.chart_style import PALETTE, plt

    accuracy_key, cost_key = list(record["objectives"])
    complete = [trial for trial in record["trials"] if trial["state"] == "complete"]
    front = sorted((t for t in complete if t["number"] in record["pareto_front"]), key=lambda t: t["values"][cost_key])
    figure, axis = plt.subplots(figsize=(7, 4.6), layout="constrained")
    axis.scatter([t["values"][cost_key] for t in complete], [t["values"][accuracy_key] for t in complete],
                 color="lightgrey", edgecolor="grey", label="completed trials")
    axis.step([t["values"][cost_key] for t in front], [t["values"][accuracy_key] for t in front], where="post",
              color=PALETTE[0], marker="o", label="Pareto front")
    for trial in complete:
        axis.annotate(str(trial["number"]), (trial["values"][cost_key], trial["values"][accuracy_key]),
                      textcoords="offset points", xytext=(4, 4), fontsize=8)
    chosen = [t for t in front if t["number"] == record.get("chosen_trial")]
    if chosen:
        axis.scatter([chosen[0]["values"][cost_key]], [chosen[0]["values"][accuracy_key]], marker="*", s=220,
                     color=PALETTE[3], zorder=3, label=f"chosen (trial {chosen[0]['number']})")
    axis.set_xlabel(HEADINGS[cost_key].lower())
    axis.set_ylabel("best validation accuracy")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9)
    axis.set_title(f"Optuna trials — {group.replace('|', ' · ')}")
    return figure
