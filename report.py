"""The statistics report of a comparison over seeds: report.md with its charts.

    python report.py --results_dir results/benchmarks/quick   # a benchmark.py sweep (benchmark.py runs this)
    python plot_results.py --report                           # every completed run in results/ -> results/report.md
    python report.py --results_dir results --reference lora --n_resamples 20000
    python report.py --markdown --results_dir results/benchmarks/quick   # only the tables, printed (for docs/)

Runs are grouped by data set, model and method label; each group's figures are the mean ± sample standard
deviation over its runs (one per seed), with n and a 95% Student-t confidence interval of the mean. Every
method is compared with the reference (full fine-tuning unless --reference says otherwise) on the same test
examples: a paired bootstrap over seeds and examples (difference, 95% interval, p-value) and an exact McNemar
test per seed. Charts: accuracy against trainable parameters, peak memory and training time (the Pareto
front drawn), and learning curves with ±1 std bands, generalisation gap included. A table at the end names
every run behind the numbers.

--markdown prints the tables alone to stdout (no charts, no run list), after a line naming the date, the command
and the machine the runs were measured on, and writes nothing: the docs' generated blocks are this output
(python -m ftbench.docs_tables regenerates them).
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import json
import os
import re
import shlex
import sys
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftbench.docs_tables import generated_line
from ftbench.run_store import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    ResultsError,
    label_of,
    load_runs,
    model_short,
    peak_memory,
    started,
    train_time,
)

if TYPE_CHECKING:
    import numpy as np

# numpy, scipy (ftbench.stats) and matplotlib (ftbench.chart_style) are imported where they are used, so that
# --help answers at once: together they take about a second to import.

REPORT_FILE = "report.md"
CONFIDENCE = 0.95
# Settings that differ between the seeds of one comparison by design, and so do not split a group.
PER_RUN_SETTINGS = {("training", "seed"), ("training", "run_name"), ("training", "output_dir")}


class ReportError(Exception):
    """A user-facing problem: one line, exit status 2, nothing written."""


# ---------------------------------------------------------------------------------------------------
# Grouping and figures


def settings_of(run: dict) -> dict:
    """The run's resolved options, flattened, without those that differ between seeds by design."""
    config = run["run_info"].get("config") or {}
    return {f"{section}.{key}": value for section, values in config.items() if isinstance(values, dict)
            for key, value in values.items() if (section, key) not in PER_RUN_SETTINGS}


def group_runs(runs: list[dict]) -> tuple[dict, list[str]]:
    """{(dataset, model, label): runs sorted by seed}, and notes on what was set aside or differs."""
    groups: dict[tuple, list] = {}
    notes = []
    for run in sorted(runs, key=started):
        info = run["run_info"]
        groups.setdefault((info["dataset"], model_short(run), label_of(run)), []).append(run)
    for key, members in groups.items():
        by_seed = {}
        for run in members:  # newest last, so a repeated seed keeps its newest run
            by_seed[run["run_info"].get("seed")] = run
        if len(by_seed) < len(members):
            notes.append(f"{'/'.join(key)}: {len(members) - len(by_seed)} older run(s) of a seed that was run again "
                         "left out")
        groups[key] = [by_seed[s] for s in sorted(by_seed, key=lambda s: (s is None, s))]
        settings = [settings_of(r) for r in groups[key]]
        differing = sorted({k for s in settings for k in s if any(o.get(k) != s.get(k) for o in settings)})
        if differing:
            notes.append(f"{'/'.join(key)}: its runs differ in {', '.join(differing)} besides the seed")
    return groups, notes


def _test(run, key):
    return (run["train_info"].get("test") or {}).get(key)


METRICS = {  # name: (column heading, value of one run)
    "test_accuracy": ("Test accuracy", lambda r: _test(r, "accuracy")),
    "test_f1_macro": ("Test macro-F1", lambda r: _test(r, "f1_macro")),
    "test_loss": ("Test loss", lambda r: _test(r, "loss")),
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
        raise ReportError(f"{path} is unreadable ({error}); re-run {run['run_info']['run_id']} or move it away") \
            from None
    labels = saved["labels"]
    return (np.asarray(saved["predictions"]) == np.asarray(labels)).astype(float), labels


def compare(runs: list[dict], reference: list[dict], n_resamples: int, seed: int = 0) -> dict:
    """`runs` against `reference` on the seeds both have: paired bootstrap and McNemar per seed."""
    import numpy as np

    from ftbench import stats

    ours = {r["run_info"].get("seed"): r for r in runs}
    theirs = {r["run_info"].get("seed"): r for r in reference}
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


# ---------------------------------------------------------------------------------------------------
# Charts


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both counts (lower cost, higher accuracy), by cost."""
    front, best = [], float("-inf")
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if accuracy > best:
            front.append((cost, accuracy))
            best = accuracy
    return front


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
    for label, runs in groups.items():
        curve = stats.mean_curve([r["train_info"].get("history") or [] for r in runs])
        for axis, (key, _) in zip(axes.flat, panels):
            rows = [row for row in curve if row.get(f"{key}_mean") is not None]
            if not rows:
                continue
            steps = np.array([row["step"] for row in rows])
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
        axis.set_xlabel("optimizer step")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9)
    figure.suptitle(f"Learning curves, mean ± 1 std over seeds — {title}")
    return figure


# ---------------------------------------------------------------------------------------------------
# The Markdown


def _mean_std(summary: dict, spec: str) -> str:
    if summary["mean"] is None:
        return "–"
    text = format(summary["mean"], spec)
    return text + (f" ± {format(summary['std'], spec)}" if summary["std"] is not None else "")


def _with_ci(summary: dict, spec: str) -> str:
    text = _mean_std(summary, spec)
    if summary.get("ci_low") is not None:
        text += f" [{format(summary['ci_low'], spec)}, {format(summary['ci_high'], spec)}]"
    return text


def _p(value: float, resolution: float | None = None) -> str:
    if resolution is not None and value == 0:
        return f"< {resolution:.0e}".replace("e-0", "e-")
    return f"{value:.3g}" if value >= 0.001 else f"{value:.1e}"


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-")


def heading(level: int, text: str) -> str:
    return f"{'#' * level} {text}"


def bold_heading(level: int, text: str) -> str:
    """A heading that does not cut into the outline of the page a generated table sits in."""
    return f"**{text}**"


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
            _mean_std(summary["peak_memory_mib"], ".0f"), _mean_std(summary["train_time_s"], ".1f"),
            _mean_std(summary["train_samples_per_s"], ".1f"), _with_ci(summary["test_accuracy"], ".4f"),
            _mean_std(summary["test_f1_macro"], ".4f"), _mean_std(summary["test_loss"], ".4f"),
            "–" if summary["checkpoint_size_mib"] is None else f"{summary['checkpoint_size_mib']:.2f}"]) + " |")
    lines += ["", "Mean ± sample standard deviation over the runs (one per seed, n of them); the interval is the "
              f"{CONFIDENCE:.0%} Student-t confidence interval of the mean test accuracy.", ""]

    reference_label = reference if reference in groups else ("full" if "full" in groups else None)
    if reference and reference not in groups:
        lines += [f"No `{reference}` runs here to compare with.", ""]
    if reference_label and len(groups) > 1:
        lines += [heading_of(3, f"Against {reference_label}"), "",
                  "| Method | Seeds paired | Accuracy difference (95% CI) | Bootstrap p | McNemar p per seed "
                  "(discordant: this right / reference right) |", "|---|---|---|---|---|"]
        for label, runs in groups.items():
            if label == reference_label:
                continue
            result = compare(runs, groups[reference_label], n_resamples)
            if "error" in result:
                lines.append(f"| {label} | – | not compared: {result['error']} | – | – |")
                continue
            boot = result["bootstrap"]
            mcnemar = "; ".join(f"seed {m['seed']}: {_p(m['p_value'])} ({m['a_only']}/{m['b_only']})"
                                for m in result["mcnemar"])
            lines.append(f"| {label} | {', '.join(map(str, result['seeds']))} | {boot['difference']:+.4f} "
                         f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}] | "
                         f"{_p(boot['p_value'], 1 / boot['n_resamples'])} | {mcnemar} |")
        lines += ["", f"Difference = this method's accuracy minus {reference_label}'s, on the same test examples and "
                  f"seeds. The paired bootstrap ({n_resamples:,} resamples, fixed seed 0) resamples both seeds and "
                  "test examples; its p-value is two-sided. McNemar's exact test compares one seed's two runs "
                  "example by example. A difference whose interval contains 0 is not shown to exist by these runs.",
                  ""]
    return lines


def section(dataset: str, model: str, groups: dict, reference: str | None, n_resamples: int, out_dir: str,
            charts: dict) -> list[str]:
    from ftbench.chart_style import method_colours

    summaries = {label: group_summary(runs) for label, runs in groups.items()}
    lines = [heading(2, f"{dataset} · {model}"), ""]
    lines += section_tables(groups, summaries, reference, n_resamples, heading)
    title = f"{dataset}, {model}"
    colours = method_colours([run for runs in groups.values() for run in runs])
    for kind, figure in (("pareto", pareto_chart(summaries, colours, title, memory_kind_of(groups))),
                         ("curves", curves_chart(groups, colours, title))):
        name = f"{kind}_{_slug(dataset, model)}.png"
        charts[os.path.join(out_dir, name)] = figure
        lines += [f"![{kind} {title}]({name})", ""]
    return lines


def environment_line(runs: list[dict]) -> str:
    seen = Counter()
    for run in runs:
        meta = run.get("meta_info") or {}
        device = meta.get("device_name") or meta.get("device", "?")
        cpu = meta.get("cpu")  # ftbench.provenance.environment_info's key
        seen[f"{meta.get('device', '?')} ({device}{'' if not cpu or cpu == device else ', ' + cpu}), "
             f"torch {meta.get('torch', '?')}, transformers {meta.get('transformers', '?')}, "
             f"peft {meta.get('peft', '?')}, Python {meta.get('python', '?')}"] += 1
    return "; ".join(f"{env} [{n} run{'s' if n != 1 else ''}]" for env, n in sorted(seen.items()))


def sources(groups_by_section: dict, out_dir: str) -> list[str]:
    lines = ["## Runs behind the numbers", "", "| Data set · model | Method | Seed | Test accuracy | Train time (s) | "
             "Run |", "|---|---|---|---|---|---|"]
    for (dataset, model), groups in groups_by_section.items():
        for label, runs in groups.items():
            for run in runs:
                link = os.path.relpath(os.path.join(run["_dir"], RESULTS_FILE), out_dir)
                accuracy, seconds = _test(run, "accuracy"), train_time(run)
                lines.append(f"| {dataset} · {model} | {label} | {run['run_info'].get('seed')} | "
                             f"{'–' if accuracy is None else format(accuracy, '.4f')} | "
                             f"{'–' if seconds is None else format(seconds, '.1f')} | "
                             f"[{run['run_info']['run_id']}]({link}) |")
    return lines + [""]


def completed_sections(results_dir: str) -> tuple[list[dict], dict, list[str]]:
    """(the completed runs under results_dir/runs, {(dataset, model): {method label: runs}}, notes on grouping)."""
    try:
        runs = [r for r in load_runs(results_dir) if r["run_info"].get("status") == "completed"]
    except ResultsError as error:
        raise ReportError(str(error)) from None
    if not runs:
        raise ReportError(f"no completed runs in {os.path.join(results_dir, 'runs')}; train some first "
                          "(python benchmark.py --preset quick)")
    grouped, notes = group_runs(runs)
    by_section: dict[tuple, dict] = {}
    for (dataset, model, label), members in sorted(grouped.items()):
        by_section.setdefault((dataset, model), {})[label] = members
    return runs, by_section, notes


def write_report(results_dir: str, output_dir: str | None = None, reference: str | None = None,
                 n_resamples: int = 10000, command: str | None = None) -> str:
    """Build report.md and its charts from the completed runs under results_dir/runs; returns its path."""
    output_dir = output_dir or results_dir
    runs, by_section, notes = completed_sections(results_dir)
    command = command or f"python report.py --results_dir {results_dir}"
    lines = ["# Fine-tuning methods: comparison over seeds", "",
             f"{len(runs)} completed run(s) from `{os.path.join(results_dir, 'runs')}`. Regenerate with "
             f"`{command}`.", "", f"Environment: {environment_line(runs)}.", ""]
    charts: dict = {}
    from ftbench.chart_style import plt

    try:
        for (dataset, model), groups in by_section.items():
            lines += section(dataset, model, groups, reference, n_resamples, output_dir, charts)
    except ReportError:
        plt.close("all")
        raise
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines += sources(by_section, output_dir)
    os.makedirs(output_dir, exist_ok=True)
    for path, figure in charts.items():
        figure.savefig(path, dpi=100)
        plt.close(figure)
    path = os.path.join(output_dir, REPORT_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    os.replace(tmp, path)
    return path


def report_markdown(results_dir: str, reference: str | None, n_resamples: int, command: str) -> str:
    """The report's tables alone, after the line naming the date, the command and the machine: no charts, no
    run list, nothing written. What a generated table in docs/ holds."""
    runs, by_section, notes = completed_sections(results_dir)
    lines = [generated_line(command, runs), ""]
    for (dataset, model), groups in by_section.items():
        summaries = {label: group_summary(members) for label, members in groups.items()}
        lines += [bold_heading(2, f"{dataset} · {model}"), ""]
        lines += section_tables(groups, summaries, reference, n_resamples, bold_heading)
    if notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]
    lines.append(f"Environment: {environment_line(runs)}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description="Write report.md: statistics over seeds, significance, charts.")
    parser.add_argument("--results_dir", default="results",
                        help="Folder holding runs/<run id>/results.json (a sweep's folder, or results).")
    parser.add_argument("--output_dir", default=None, help="Where report.md and its charts go (default: "
                                                           "--results_dir).")
    parser.add_argument("--reference", default=None,
                        help="Method label every other method is compared with (default: full, where present).")
    parser.add_argument("--n_resamples", type=int, default=10000, help="Bootstrap resamples (default 10000).")
    parser.add_argument("--markdown", action="store_true",
                        help="Print the tables (after a line naming the date, this command and the runs' machine) "
                             "and write nothing: what a generated table in docs/ holds.")
    args = parser.parse_args(argv)
    if args.n_resamples < 100:
        print("error: --n_resamples must be at least 100 for a usable interval", file=sys.stderr)
        return 2
    if args.markdown and args.output_dir:
        print("error: --markdown prints the tables and writes nothing; drop --output_dir", file=sys.stderr)
        return 2
    try:
        if args.markdown:
            print(report_markdown(args.results_dir, args.reference, args.n_resamples,
                                  shlex.join(["python", "report.py", *argv])), end="")
            return 0
        path = write_report(args.results_dir, args.output_dir, args.reference, args.n_resamples)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
