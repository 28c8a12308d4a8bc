"""The statistics report of a comparison over seeds: report.md with its charts.

    python report.py --results_dir results/benchmarks/quick   # a benchmark.py sweep (benchmark.py runs this)
    python plot_results.py --report                           # every completed run in results/ -> results/report.md
    python report.py --results_dir results --reference lora --n_resamples 20000
    python report.py --markdown --results_dir results/benchmarks/quick   # only the tables, printed (for docs/)
    python report.py --findings     # docs/findings.md: the design documents' claims, with verdicts (ftbench.findings)

Runs are grouped by data set, model and method label; each group's figures are the mean ± sample standard
deviation over its runs (one per seed), with n and a 95% Student-t confidence interval of the mean. Every
method is compared with the reference (full fine-tuning unless --reference says otherwise) on the same test
examples: a paired bootstrap over seeds and examples (difference, 95% interval, p-value) and an exact McNemar
test per seed. Charts: accuracy against trainable parameters, peak memory and training time (the Pareto
front drawn), and learning curves with ±1 std bands, generalisation gap included. A table at the end names
every run behind the numbers. A sweep whose settings an Optuna search chose (benchmark.py --search optuna) also gets
the search: its best trials, or with two objectives its Pareto front and a chart (ftbench/search_report.py).

--markdown prints the tables alone to stdout (no charts, no run list), after a line naming the date, the command
and the machine the runs were measured on, and writes nothing: the docs' generated blocks are this output
(python -m ftbench.docs_tables regenerates them).
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import os
import re
import shlex
import sys
from collections import Counter
from typing import TYPE_CHECKING

from ftbench.comparison_charts import curves_chart, pareto_chart
from ftbench.docs_tables import generated_line
from ftbench.paired import figure_on_test, group_summary
from ftbench.report_tables import memory_kind_of, section_tables
from ftbench.run_groups import GroupingError, group_runs
from ftbench.run_store import (
    RESULTS_FILE,
    ResultsError,
    load_runs,
    train_time,
)
from ftbench.search_report import search_section
from ftbench.sweep_presets import FINDINGS_RECORDS_DIR

if TYPE_CHECKING:
    pass

# numpy, scipy (ftbench.stats) and matplotlib (ftbench.chart_style) are imported where they are used, so that
# --help answers at once: together they take about a second to import.

REPORT_FILE = "report.md"


class ReportError(Exception):
    """A user-facing problem: one line, exit status 2, nothing written."""


# ---------------------------------------------------------------------------------------------------
# Grouping and figures


# ---------------------------------------------------------------------------------------------------
# The Markdown


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-")


def heading(level: int, text: str) -> str:
    return f"{'#' * level} {text}"


def bold_heading(level: int, text: str) -> str:
    """A heading that does not cut into the outline of the page a generated table sits in."""
    return f"**{text}**"


def section(dataset: str, model: str, groups: dict, reference: str | None, n_resamples: int, out_dir: str,
            charts: dict) -> list[str]:
    from ftbench.chart_style import label_colours

    summaries = {label: group_summary(runs) for label, runs in groups.items()}
    lines = [heading(2, f"{dataset} · {model}"), ""]
    lines += section_tables(groups, summaries, reference, n_resamples, heading)
    title = f"{dataset}, {model}"
    colours = label_colours(list(groups))  # the groups' labels: with --split_by, more than the methods' own
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
                accuracy, seconds = figure_on_test(run, "accuracy"), train_time(run)
                lines.append(f"| {dataset} · {model} | {label} | {run['run_info'].get('seed')} | "
                             f"{'–' if accuracy is None else format(accuracy, '.4f')} | "
                             f"{'–' if seconds is None else format(seconds, '.1f')} | "
                             f"[{run['run_info']['run_id']}]({link}) |")
    return lines + [""]


def completed_sections(results_dir: str, split_by: list[str] | None = None) -> tuple[list[dict], dict, list[str]]:
    """(the completed runs under results_dir/runs, {(dataset, model): {method label: runs}}, notes on grouping);
    split_by: settings whose values split a method's runs into groups of their own."""
    try:
        runs = [r for r in load_runs(results_dir) if r["run_info"].get("status") == "completed"]
    except ResultsError as error:
        raise ReportError(str(error)) from None
    if not runs:
        raise ReportError(f"no completed runs in {os.path.join(results_dir, 'runs')}; train some first "
                          "(python benchmark.py --preset quick)")
    try:
        grouped, notes = group_runs(runs, split_by or [])
    except GroupingError as error:
        raise ReportError(str(error)) from None
    by_section: dict[tuple, dict] = {}
    for (dataset, model, label), members in sorted(grouped.items()):
        by_section.setdefault((dataset, model), {})[label] = members
    return runs, by_section, notes


def write_report(results_dir: str, output_dir: str | None = None, reference: str | None = None,
                 n_resamples: int = 10000, command: str | None = None, split_by: list[str] | None = None) -> str:
    """Build report.md and its charts from the completed runs under results_dir/runs; returns its path."""
    output_dir = output_dir or results_dir
    runs, by_section, notes = completed_sections(results_dir, split_by)
    command = command or f"python report.py --results_dir {results_dir}"
    lines = ["# Fine-tuning methods: comparison over seeds", "",
             f"{len(runs)} completed run(s) from `{os.path.join(results_dir, 'runs')}`. Regenerate with "
             f"`{command}`.", "", f"Environment: {environment_line(runs)}.", ""]
    charts: dict = {}
    from ftbench.chart_style import plt

    try:
        for (dataset, model), groups in by_section.items():
            lines += section(dataset, model, groups, reference, n_resamples, output_dir, charts)
    except (ReportError, ResultsError) as error:  # nothing is written
        plt.close("all")
        raise ReportError(str(error)) from None
    search_lines, search_charts = search_section(results_dir, output_dir)  # a sweep's Optuna search, if any
    lines += search_lines
    charts.update(search_charts)
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


def report_markdown(results_dir: str, reference: str | None, n_resamples: int, command: str,
                    split_by: list[str] | None = None) -> str:
    """The report's tables alone, after the line naming the date, the command and the machine: no charts, no
    run list, nothing written. What a generated table in docs/ holds."""
    runs, by_section, notes = completed_sections(results_dir, split_by)
    lines = [generated_line(command, runs), ""]
    for (dataset, model), groups in by_section.items():
        summaries = {label: group_summary(members) for label, members in groups.items()}
        lines += [bold_heading(2, f"{dataset} · {model}"), ""]
        try:
            lines += section_tables(groups, summaries, reference, n_resamples, bold_heading)
        except ResultsError as error:
            raise ReportError(str(error)) from None
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
                        help="Method label every other method is compared with (default: full, where present); with "
                             "--split_by, also a setting's value (precision=fp32): each method against its own.")
    parser.add_argument("--n_resamples", type=int, default=10000, help="Bootstrap resamples (default 10000).")
    parser.add_argument("--split_by", nargs="+", default=[], metavar="SETTING",
                        help="Also group a method's runs by these settings, e.g. training.precision or "
                             "pipeline.precision (what auto resolved to); labels become 'lora (precision=bf16)'.")
    parser.add_argument("--markdown", action="store_true",
                        help="Print the tables (after a line naming the date, this command and the runs' machine) "
                             "and write nothing: what a generated table in docs/ holds.")
    parser.add_argument("--findings", action="store_true",
                        help="Instead: write the findings (the design documents' claims with verdicts) from the "
                             "findings_* sweeps under --sweeps_dir to --findings_file, charts beside it.")
    parser.add_argument("--sweeps_dir", default=FINDINGS_RECORDS_DIR,
                        help="With --findings: where benchmark.py made the findings_* sweeps (by default the folder "
                             "that holds their committed records).")
    parser.add_argument("--findings_file", default=os.path.join("docs", "findings.md"),
                        help="With --findings: the document to write (its charts go to findings/ beside it).")
    parser.add_argument("--headline", action="store_true",
                        help="With --findings: print the verdicts in one sentence (the README's block) and write "
                             "nothing.")
    args = parser.parse_args(argv)
    if args.n_resamples < 100:
        print("error: --n_resamples must be at least 100 for a usable interval", file=sys.stderr)
        return 2
    if args.markdown and args.output_dir:
        print("error: --markdown prints the tables and writes nothing; drop --output_dir", file=sys.stderr)
        return 2
    if args.headline and not args.findings:
        print("error: --headline goes with --findings", file=sys.stderr)
        return 2
    if args.findings:
        return write_findings_command(args, argv)
    try:
        if args.markdown:
            print(report_markdown(args.results_dir, args.reference, args.n_resamples,
                                  shlex.join(["python", "report.py", *argv]), args.split_by), end="")
            return 0
        path = write_report(args.results_dir, args.output_dir, args.reference, args.n_resamples,
                            command=shlex.join(["python", "report.py", *argv]), split_by=args.split_by)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def write_findings_command(args, argv: list[str]) -> int:
    if args.markdown or args.output_dir or args.split_by or args.reference:
        print("error: --findings takes only --sweeps_dir, --findings_file, --headline and --n_resamples",
              file=sys.stderr)
        return 2
    if not os.path.isdir(args.sweeps_dir):  # before the findings' imports: a typo answers at once
        print(f"error: {args.sweeps_dir} does not exist; give --sweeps_dir the folder of the findings_* sweeps or "
              "of their records; nothing written", file=sys.stderr)
        return 2
    from ftbench.findings import headline_block, write_findings

    command = shlex.join(["python", "report.py", *argv])
    try:
        if args.headline:
            print(headline_block(args.sweeps_dir, args.n_resamples, command), end="")
            return 0
        path = write_findings(args.sweeps_dir, args.findings_file, args.n_resamples, command)
    except (ResultsError, ReportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
