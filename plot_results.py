"""Plot and tabulate finished training runs from their results.json files.

    python plot_results.py                                   # results/runs/*/results.json -> results/plots/
    python plot_results.py --results_dir /tmp/r1 --dataset tweets --method lora prefix
    python plot_results.py --all_runs                         # every completed run, not only the newest
    python plot_results.py --runs 20261123-193109_lora_tweets_minilm results/runs/<other run>
    python plot_results.py --report                           # statistics over seeds -> results/report.md
    python plot_results.py --markdown --results_dir /tmp/r1   # only the table, printed (for docs/; see below)

Writes to --output_dir (default <results_dir>/plots): learning_curves.png, train_time.png,
peak_memory.png, trainable_params.png, accuracy_vs_params.png and summary.md.

Selection: only runs whose status is "completed" are used; the others (failed, interrupted, unfinished:
killed without a word, still running) are counted in a note, which gives the command that resumes each
interrupted or unfinished run. By default the newest completed run (by started_at, then run id) per
(method label, dataset, model) is shown; --all_runs shows every completed run; --runs names runs
explicitly (folders or run ids) and cannot be combined with the filters.

Runs are grouped, labelled and coloured by run_info.method_label, the method and its variant ("lora",
"lora[all_linear]", "mlm+full"), or by run_info.method in results written before labels existed. A run
with continued pre-training (train_info.pretraining) is charted with both phases: its train time is the
total, stacked as MLM + fine-tuning, and its peak memory the larger of the two phases'.

A results.json that is not valid JSON (or not a benchmark results file) is skipped with a warning and
counted in the note, so one broken run does not hide the others; naming it with --runs is an error.

--markdown prints the summary table alone to stdout, after a line naming the date, the command and the machine
the runs were measured on, and writes nothing: the docs' generated blocks are this output
(python -m ftbench.docs_tables regenerates them).

--csv FILE and --parquet FILE write the selected runs as one flat table instead of the charts: a row per run, a
column per scalar of results.json under its dotted key path, lists left out (the rule: ftbench/results_table.py).

Errors (missing results dir, nothing matching the filters, unknown or unusable run in --runs) print
one line and exit with status 2, and nothing is written.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import math
import os
import shlex
import sys
from collections import Counter

from ftbench import results_table, run_store
from ftbench.docs_tables import generated_line
from ftbench.run_selection import describe_filters, describe_selection, skip_notes
from ftbench.run_store import (
    ResultsError,
    explicit_runs,
    hardware,
    label_of,
    load_runs,
    memory_phases,
    model_short,
    peak_memory,
    pretraining_time,
    select_runs,
    train_time,
)

PLOT_FILES = ("learning_curves.png", "train_time.png", "peak_memory.png", "trainable_params.png",
              "accuracy_vs_params.png")
SUMMARY_FILE = "summary.md"


CHART_NAMES = ("LINE_STYLES", "method_colours", "method_markers", "plt")


class PlotError(ResultsError):
    """A user-facing problem with what to plot: main prints it on one line and exits with status 2."""


def __getattr__(name: str):
    """plot_results.plt and the chart helpers, imported on first use: matplotlib takes half a second to import,
    and --help, --markdown and --report need none of it."""
    if name in CHART_NAMES:
        from ftbench import chart_style

        return getattr(chart_style, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------
# Labels, colours and figures


def run_labels(runs: list[dict]) -> list[str]:
    """'lora (minilm)'; the dataset is added when runs span several, the run id when a label repeats."""
    datasets = {r["run_info"]["dataset"] for r in runs}
    shorts = {}
    for run in runs:
        shorts.setdefault(model_short(run), set()).add(run["run_info"]["model_name_or_path"])
    labels = []
    for run in runs:
        info = run["run_info"]
        model = model_short(run) if len(shorts[model_short(run)]) == 1 else info["model_name_or_path"]
        labels.append(f"{label_of(run)} ({info['dataset']}, {model})" if len(datasets) > 1
                      else f"{label_of(run)} ({model})")
    counts = Counter(labels)
    return [f"{label} {run['run_info']['run_id'][:15]}" if counts[label] > 1 else label
            for label, run in zip(labels, runs)]


def learning_curves(runs, labels, colours):
    """Training loss, validation loss and validation accuracy against epochs (of the fine-tuning phase), one line
    per run in its method label's colour and marker; the legend sits below the panels, outside them."""
    from ftbench.chart_style import LINE_STYLES, method_markers, plt
    from ftbench.convergence import validation_points

    markers = method_markers(runs)
    longest = max(len(label) for label in labels)
    columns = min(len(labels), 3 if longest <= 28 else 2 if longest <= 45 else 1)
    legend_rows = math.ceil(len(labels) / columns)
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 9 + 0.25 * legend_rows), layout="constrained")
    panels = (("Training loss", "loss"), ("Validation loss", "loss"), ("Validation accuracy", "accuracy"))
    style_index = Counter()
    handles = {}
    for run, label in zip(runs, labels):
        info = run["train_info"]
        method = label_of(run)
        style = {"color": colours[method], "linestyle": LINE_STYLES[style_index[method] % len(LINE_STYLES)],
                 "marker": markers[method], "markersize": 4, "label": label}
        style_index[method] += 1
        history = info.get("history") or []
        # Training loss: the finer of the two records (every logging step, or the mean between evaluations).
        logged = [(e["epoch"], e["loss"]) for e in info.get("train_loss_log") or [] if e.get("loss") is not None]
        between = [(e["epoch"], e["train_loss"]) for e in history if e.get("train_loss") is not None]
        train = logged if len(logged) >= len(between) else between
        for axis, points in zip(axes, (train,
                                       [(e["epoch"], e["val_loss"]) for e in history],
                                       validation_points(run))):
            points = [(x, y) for x, y in points if y is not None]
            if points:
                handles.setdefault(label, axis.plot(*zip(*points), **style)[0])
    for axis, (title, ylabel) in zip(axes, panels):
        axis.set_title(title)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=columns, fontsize=9)
    figure.suptitle(f"Learning curves ({', '.join(sorted({r['run_info']['dataset'] for r in runs}))})")
    return figure


def bar_chart(runs, labels, colours, values, title, xlabel, value_text, log=False):
    """Horizontal bars, one per run (labels stay readable however long), each annotated with its value."""
    from ftbench.chart_style import plt

    width = 7 + 0.08 * max(len(label) for label in labels)  # room for long run labels on the left
    figure, axis = plt.subplots(figsize=(width, 1.4 + 0.55 * len(runs)))
    positions = range(len(runs))
    bars = [v if v is not None else 0 for v in values]
    axis.barh(positions, bars, color=[colours[label_of(r)] for r in runs], height=0.6)
    axis.set_yticks(list(positions), labels)
    axis.invert_yaxis()
    left = 0
    if log:
        axis.set_xscale("log")
        smallest = min([v for v in values if v] or [1])
        left = 10 ** math.floor(math.log10(smallest))
        left = left / 10 if left >= smallest else left  # a bar of exactly a power of ten still shows
    anchors, texts = [], []
    for position, value, run in zip(positions, values, runs):
        anchors.append(value or left)  # "n/a" at the start of the axis
        texts.append(axis.annotate(value_text(value, run) if value is not None else "n/a", (anchors[-1], position),
                                   xytext=(4, 0), textcoords="offset points", va="center", fontsize=9))
        texts[-1].set_in_layout(False)  # fit_texts makes room for it inside the axes
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.grid(axis="x", alpha=0.3)
    fit_texts(figure, axis, left, anchors, texts, log)
    return figure


def fit_texts(figure, axis, left, anchors, texts, log):
    """End the x axis (and widen the figure where needed) so that the text after every bar fits inside the axes."""
    largest = max([a for a in anchors if a] or [1])
    for _ in range(3):
        figure.tight_layout()
        renderer = figure.canvas.get_renderer()
        axis_width = axis.get_window_extent(renderer).width
        # Each text's width in pixels, with its 4-point offset from the bar and a small margin.
        needed = [t.get_window_extent(renderer).width + 4 * figure.dpi / 72 + 10 for t in texts]
        if max(needed) <= 0.6 * axis_width:  # the bars keep at least 40% of the axis
            break
        figure.set_size_inches(figure.get_figwidth() + (max(needed) - 0.6 * axis_width) / figure.dpi + 0.2,
                               figure.get_figheight())
    fractions = [max(0.05, 1 - n / axis_width) for n in needed]  # where each bar may end, as a share of the axis
    if log:
        low = math.log10(left)
        right = max(low + (math.log10(a) - low) / f for a, f in zip(anchors, fractions))
        right = 10 ** max(right, math.log10(largest) + 0.1)
    else:
        right = max(max(a / f for a, f in zip(anchors, fractions)), largest * 1.05)
    axis.set_xlim(left, right)
    figure.tight_layout()


def mixed_note(kinds) -> str:
    kinds = sorted(set(kinds))
    return f"\nruns mix devices ({', '.join(kinds)}): not directly comparable" if len(kinds) > 1 else ""


def train_time_chart(runs, labels, colours):
    """Bars of each run's training time; a run with continued pre-training gets a stacked bar, its MLM phase
    hatched and lighter, the fine-tuning phase after it, and the total with both parts in its text."""
    values = [train_time(r) for r in runs]

    def text(value, run):
        pre = pretraining_time(run)
        if pre is not None:
            return f"{value:.1f} s (MLM {pre:.1f} + fine-tune {run['train_info']['train_time_s']:.1f})"
        rate = run["train_info"].get("train_samples_per_s")
        return f"{value:.1f} s" + (f"  ({rate:.1f} samples/s)" if rate else "")

    two_phase = any(pretraining_time(r) is not None for r in runs)
    xlabel = "training time (s)" + ("; hatched: continued pre-training (MLM) before fine-tuning" if two_phase else "")
    figure = bar_chart(runs, labels, colours, values, "Training time (evaluation and saving excluded)"
                       + mixed_note(hardware(r) for r in runs), xlabel, text)
    axis = figure.axes[0]
    for position, run in enumerate(runs):
        pre = pretraining_time(run)
        if pre is not None:  # the first part of the bar: lightened and hatched
            axis.barh(position, pre, height=0.6, color="white", alpha=0.5, hatch="//", edgecolor="black",
                      linewidth=0.5)
    return figure


def memory_chart(runs, labels, colours):
    """Bars of each run's peak memory; for runs with continued pre-training, the larger of the two phases'."""
    values, kinds = zip(*[peak_memory(r) for r in runs])
    names = {"cuda": "peak GPU memory allocated (CUDA)", "cpu": "peak resident memory of the process (CPU RSS)"}
    if len(set(kinds)) == 1:
        xlabel = f"{names.get(kinds[0], 'peak memory')}, MiB"
    else:
        xlabel = "peak memory, MiB (cuda runs: GPU allocated; cpu runs: process RSS)"

    def text(value, run):
        fine_tune, pretrain, device = memory_phases(run)
        both = " (max of MLM and fine-tuning)" if fine_tune is not None and pretrain is not None else ""
        return f"{value:,.0f} MiB{both}" + (f" ({device})" if len(set(kinds)) > 1 else "")

    return bar_chart(runs, labels, colours, list(values), "Peak memory during training" + mixed_note(kinds), xlabel,
                     text)


def params_chart(runs, labels, colours):
    values = [r["train_info"].get("num_params_trainable") for r in runs]

    def text(value, run):
        info = run["train_info"]
        return f"{value:,} ({info.get('trainable_params_pct', 0):.4g}% of {info.get('num_params_total', 0) / 1e6:.1f}M)"

    return bar_chart(runs, labels, colours, values, "Trainable parameters", "trainable parameters (log scale)",
                     text, log=True)


ANNOTATED_POINTS = 6  # up to this many runs, the accuracy chart names each point beside it; beyond, a legend


def accuracy_chart(runs, labels, colours):
    """One point per run in its method's colour and marker. A few points are labelled beside them (no legend
    needed); more are numbered, with a legend of the numbers outside the axes, so that labels do not overlap."""
    from ftbench.chart_style import method_markers, plt

    numbered = len(runs) > ANNOTATED_POINTS
    longest = max(len(label) for label in labels)
    figure, axis = plt.subplots(figsize=(6 + 0.06 * longest + (0.07 * longest + 0.6 if numbered else 0), 5.5))
    markers = method_markers(runs)
    points = sorted((r["train_info"]["num_params_trainable"], r["train_info"]["test"]["accuracy"], label,
                     colours[label_of(r)], markers[label_of(r)]) for r, label in zip(runs, labels))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    middle = math.sqrt(min(xs) * max(xs))
    for i, (params, accuracy, label, colour, marker) in enumerate(points):
        axis.scatter(params, accuracy, s=60, color=colour, marker=marker, zorder=3,
                     label=f"{i + 1}. {label}" if numbered else None)
        # Labels point inwards (right of the left points, left of the right ones) and alternate above
        # and below, so that they stay inside the plot and neighbours do not overlap.
        right = params > middle
        axis.annotate(str(i + 1) if numbered else label, (params, accuracy),
                      xytext=(-6 if right else 6, 8 if i % 2 == 0 else -14), textcoords="offset points",
                      ha="right" if right else "left", fontsize=9, color=colour)
    if numbered:
        axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8, frameon=False)
    axis.set_xscale("log")
    axis.set_xlim(min(xs) / 3, max(xs) * 3)
    axis.set_ylim(max(0.0, min(ys) - 0.1), min(1.0, max(ys) + 0.1))
    axis.set_xlabel("trainable parameters (log scale)")
    axis.set_ylabel("test accuracy")
    axis.set_title("Test accuracy against trainable parameters")
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------------------------------
# Summary table


def fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def summary_table(runs: list[dict]) -> str:
    """A Markdown table, one row per run, and a line naming the device(s) and library versions."""
    header = ["Method", "Model", "Dataset", "Trainable params (% of total)", "Peak memory (MiB)", "Train time (s)",
              "Samples/s", "Test accuracy", "Test macro-F1", "Checkpoint (MiB)", "Wall time (s)", "Run id"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for run in runs:
        info, train = run["run_info"], run["train_info"]
        test = train.get("test") or {}
        memory, device = peak_memory(run)
        memory_kind = {"cuda": "GPU allocated", "cpu": "CPU RSS"}.get(device, device)
        pre = pretraining_time(run)
        time_cell = fmt(train.get("train_time_s"), ".1f") if pre is None else \
            f"{train_time(run):.1f} (MLM {pre:.1f} + fine-tune {train['train_time_s']:.1f})"
        checkpoint_cell = fmt(train.get("checkpoint_size_mib"), ".2f")
        wall_time_s, exact = run_store.wall_time(run)  # over the run's processes; ≥ where one is unknown
        if train.get("merged_checkpoint_size_mib") is not None:
            checkpoint_cell += f" (merged: {train['merged_checkpoint_size_mib']:.2f})"
        cells = [label_of(run), info["model_name_or_path"], info["dataset"],
                 f"{fmt(train.get('num_params_trainable'), ',')} ({fmt(train.get('trainable_params_pct'), '.4g')}%)",
                 f"{fmt(memory, '.1f')} ({memory_kind})", time_cell,
                 fmt(train.get("train_samples_per_s"), ".1f"), fmt(test.get("accuracy"), ".4f"),
                 fmt(test.get("f1_macro"), ".4f"), checkpoint_cell,
                 ("" if exact or wall_time_s is None else "≥ ") + fmt(wall_time_s, ".1f"),
                 info["run_id"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    environments = Counter()
    for run in runs:
        meta = run.get("meta_info") or {}
        environments[f"{meta.get('device', '?')} ({meta.get('device_name', '?')}), torch {meta.get('torch', '?')}, "
                     f"transformers {meta.get('transformers', '?')}, peft {meta.get('peft', '?')}"] += 1
    lines.append("")
    lines.append("Environment: " + "; ".join(f"{env} [{n} run{'s' if n != 1 else ''}]"
                                                for env, n in sorted(environments.items())) + ".")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Plot and tabulate the results.json files of training runs.")
    parser.add_argument("--results_dir", default="results",
                        help="Folder the training scripts wrote to (their --output_dir); "
                             "reads <results_dir>/runs/*/results.json (default: results).")
    parser.add_argument("--output_dir", default=None,
                        help="Where to write the plots and summary.md (default: <results_dir>/plots).")
    parser.add_argument("--dataset", default=None, help="Only runs on this data set (run_info.dataset, e.g. tweets).")
    parser.add_argument("--model", default=None,
                        help="Only runs of this model: run_info.model_name_or_path as given to training (e.g. minilm), "
                             "or the last folder name of a local model path.")
    parser.add_argument("--method", nargs="+", action="extend", default=None,
                        help="Only these methods: run_info.method (every variant of it) or a method label (e.g. "
                             "--method lora prefix, --method 'lora[all_linear]', or --method lora --method full).")
    parser.add_argument("--runs", nargs="+", default=None,
                        help="Exactly these runs: run folders or run ids under <results_dir>/runs. Overrides the "
                             "selection, so it cannot be combined with --dataset, --model, --method or --all_runs.")
    parser.add_argument("--all_runs", action="store_true",
                        help="Every completed run, instead of the newest completed run per (method label, dataset, "
                             "model).")
    parser.add_argument("--report", action="store_true",
                        help="Instead: the statistics report over seeds (report.py) of the completed runs in "
                             "--results_dir, written to <results_dir>/report.md.")
    parser.add_argument("--markdown", action="store_true",
                        help="Print the summary table (after a line naming the date, this command and the runs' "
                             "machine) and write nothing: what a generated table in docs/ holds.")
    for option, kind in (("--csv", "a CSV table"), ("--parquet", "a Parquet table (needs pyarrow)")):
        parser.add_argument(option, metavar="FILE", default=None,
                            help=f"Instead of the charts: the selected runs as {kind}, one row per run, one "
                                 "column per scalar of results.json named by its dotted key path (e.g. "
                                 "train_info.test.accuracy); lists (history, label_names, ...) are left out.")
    args = parser.parse_args(argv)
    if args.report and (args.runs or args.dataset or args.model or args.method or args.all_runs):
        parser.error("--report uses every completed run in --results_dir; drop the selection options")
    if args.markdown and (args.report or args.output_dir):
        parser.error("--markdown prints the table and writes nothing; drop --report and --output_dir")
    if (args.csv or args.parquet) and (args.report or args.markdown or args.output_dir):
        parser.error("--csv and --parquet write only the table; drop --report, --markdown and --output_dir")
    if args.runs and (args.dataset or args.model or args.method or args.all_runs):
        parser.error("--runs names runs explicitly; drop --dataset, --model, --method and --all_runs")
    return args


def chosen_runs(args, unreadable: list[str]) -> tuple[list[dict], list[dict]]:
    """(every run read, the runs to show); PlotError where none matches the filters."""
    if args.runs:
        runs = explicit_runs(args.runs, args.results_dir)
        return runs, runs
    runs = load_runs(args.results_dir, unreadable)
    selected = select_runs(runs, args.dataset, args.model, args.method, args.all_runs)
    if not selected:
        found = sorted({f"{label_of(r)}/{r['run_info'].get('dataset')}/{model_short(r)}"
                        for r in runs if r["run_info"].get("status") == "completed"})
        where = os.path.join(args.results_dir, run_store.RUNS_DIR)
        raise PlotError(f"no completed runs in {where} match {describe_filters(args)} (completed there, as "
                        f"method label/dataset/model: {', '.join(found) or 'none'}; {len(runs)} run(s) in all"
                        + (f", {len(unreadable)} unreadable results.json" if unreadable else "") + ")")
    return runs, selected


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.report:
        import report  # report builds on this module's helpers

        try:
            path = report.write_report(args.results_dir, args.output_dir,
                                       command=f"python plot_results.py --report --results_dir {args.results_dir}")
        except report.ReportError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
        return 0
    output_dir = args.output_dir or os.path.join(args.results_dir, "plots")
    unreadable: list[str] = []
    try:
        runs, selected = chosen_runs(args, unreadable)
        notes = skip_notes(runs, selected, unreadable, args)
        if args.csv or args.parquet:  # the flat table, instead of the charts
            written = results_table.write_tables(selected, args.csv, args.parquet)
            print("".join(f"note: {note}\n" for note in notes) + written)
            return 0
    except ResultsError as error:  # PlotError and results_table.TableError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.markdown:  # stdout is the table alone; the notes go to stderr
        print(generated_line(shlex.join(["python", "plot_results.py", *argv]), selected) + "\n\n"
              + summary_table(selected), end="")
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    from ftbench.chart_style import method_colours, plt

    try:
        # Everything is drawn in memory first, so that a failure leaves no partial output behind.
        labels, colours = run_labels(selected), method_colours(selected)
        figures = dict(zip(PLOT_FILES, (learning_curves(selected, labels, colours),
                                        train_time_chart(selected, labels, colours),
                                        memory_chart(selected, labels, colours),
                                        params_chart(selected, labels, colours),
                                        accuracy_chart(selected, labels, colours))))
        summary = summary_table(selected)
    except ResultsError as error:  # PlotError included
        plt.close("all")
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = (f"# Fine-tuning results\n\n{len(selected)} run(s): {describe_selection(args)}.\n\n{summary}"
               + "".join(f"\n{note[0].upper()}{note[1:]}.\n" for note in notes))
    os.makedirs(output_dir, exist_ok=True)
    for name, figure in figures.items():
        figure.savefig(os.path.join(output_dir, name), dpi=120)
        plt.close(figure)
    with open(os.path.join(output_dir, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        handle.write(summary)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {len(figures)} plots and {SUMMARY_FILE} for {len(selected)} run(s) to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
