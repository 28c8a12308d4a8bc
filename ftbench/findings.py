"""docs/findings.md: the design documents' claims (C1-C7) re-tested on the full-scale sweeps, a verdict per claim
by the rules stated once at its top (ftbench.verdicts), and what to use under a limit.

    python report.py --findings      # docs/findings.md, and its charts in docs/findings/

It reads the sweeps that benchmark.py's findings_* presets make (python benchmark.py --preset findings_sst2
--data_dir ../shared/data, and so on, in results/benchmarks/), or by default their records, committed in
results/findings/ (python -m ftbench.sweep_records). A sweep not made or not finished yet is named as such, and a
claim that needs it is "not measured yet". Every figure in the document is computed here.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

import numpy as np

from ftbench.claims import FPB, IMDB, SST2, SST2_DOC_RATE, claims, sst2_groups, sweep_command
from ftbench.convergence import RULE as EPOCHS_RULE
from ftbench.convergence import epochs_table, schedule_note
from ftbench.docs_tables import generated_line
from ftbench.machine_load import timing_setups
from ftbench.paired import METRICS, group_summary
from ftbench.recommend import recommendation_lines
from ftbench.report_tables import memory_kind_of, section_tables
from ftbench.run_groups import group_runs, runs_in
from ftbench.run_store import ResultsError, label_of, load_runs, train_time, write_text_atomic
from ftbench.search_space import options
from ftbench.sweep_manifest import MANIFEST_FILE, cell_wall_time, read_manifest
from ftbench.sweep_presets import FINDINGS_RECORDS_DIR, PRESETS
from ftbench.verdicts import NOT_MEASURED, RULES

CHARTS_DIR = "findings"  # beside the document
CHART_NAMES = ("curves_*.png", "pareto_*.png")  # what charts() writes there


@dataclass(frozen=True)
class FindingsSweep:
    key: str
    preset: str  # benchmark.py's preset, and the sweep's folder name
    title: str


SWEEPS = (
    FindingsSweep("sst2", SST2, "SST-2, complete"),
    FindingsSweep("sst2_doc_rate", SST2_DOC_RATE, "SST-2, complete, LoRA at the documents' 5e-4"),
    FindingsSweep("phrasebank", FPB, "Financial PhraseBank, every method"),
    FindingsSweep("imdb", IMDB, "IMDb at 256 tokens"),
)


@dataclass
class LoadedSweep:
    spec: FindingsSweep
    folder: str
    runs: list = field(default_factory=list)  # completed runs
    search_runs: list = field(default_factory=list)  # the learning-rate search's completed runs
    groups: dict = field(default_factory=dict)  # {method label: runs sorted by seed}
    summaries: dict = field(default_factory=dict)  # {method label: paired.group_summary of its runs}
    manifest: dict | None = None  # benchmark.json


def load_sweep(spec: FindingsSweep, sweeps_dir: str) -> LoadedSweep:
    folder = os.path.join(sweeps_dir, spec.preset)
    loaded = LoadedSweep(spec, folder)
    if os.path.isdir(os.path.join(folder, "runs")):
        loaded.runs = [r for r in load_runs(folder) if r["run_info"].get("status") == "completed"]
        grouped, _ = group_runs(loaded.runs)
        loaded.groups = {label: runs for (_, _, label), runs in sorted(grouped.items())}
        loaded.summaries = {label: group_summary(runs) for label, runs in loaded.groups.items()}
    if os.path.isdir(os.path.join(folder, "lr_search", "runs")):
        loaded.search_runs = [r for r in load_runs(os.path.join(folder, "lr_search"))
                              if r["run_info"].get("status") == "completed"]
    loaded.manifest = read_manifest(folder)
    if loaded.manifest is None and os.path.exists(os.path.join(folder, MANIFEST_FILE)):
        raise ResultsError(f"{os.path.join(folder, MANIFEST_FILE)} cannot be read; restore it from the sweep's "
                           "records (python -m ftbench.sweep_records) or re-run the sweep's command")
    return loaded


def learning_rate(run: dict) -> float:
    return run["run_info"]["config"]["training"]["learning_rate"]


def wall_time_h(loaded: LoadedSweep) -> tuple[float, bool]:
    """The sweep's cells' wall time in hours, and whether it is exact: a completed cell's from its run (over all
    the run's processes, whichever code wrote benchmark.json), else benchmark.json's record."""
    runs = {run["run_info"]["run_id"]: run for run in loaded.runs + loaded.search_runs}
    total_s, exact = 0.0, True
    for cell in (loaded.manifest or {}).get("cells") or []:
        run = runs.get(cell.get("run_id"))
        seconds, known = cell_wall_time(run, None) if run else (cell.get("wall_time_s"),
                                                                  cell.get("wall_time_exact", True))
        total_s, exact = total_s + (seconds or 0.0), exact and known and seconds is not None
    return total_s / 3600, exact


def sweeps_table(sweeps: dict) -> list[str]:
    lines = ["| sweep | command | runs completed / planned | failed cells | runs resumed (times) "
             "| wall time of its runs (h) | learning rates used | trained on |", "|---|---|---|---|---|---|---|---|"]
    for loaded in sweeps.values():
        cells = (loaded.manifest or {}).get("cells") or []
        preset = PRESETS[loaded.spec.preset]  # its runs, not only the cells a partial sweep has reached
        planned = len(preset.methods) * len(preset.datasets) * len(preset.models) * len(preset.seeds)
        failed = [c["cell_id"] for c in cells if c.get("status") == "failed"]
        resumed = [f"{label_of(r)} seed {r['run_info']['seed']} ({len(r['run_info']['resumes'])}×)"
                   for r in loaded.runs if r["run_info"].get("resumes")]
        hours, exact = wall_time_h(loaded)
        at_least = "" if exact else "≥ "
        rates = "; ".join(f"{label} {', '.join(sorted({format(learning_rate(r), 'g') for r in runs}))}"
                          for label, runs in loaded.groups.items())
        lines.append(f"| {loaded.spec.title} | `{sweep_command(loaded.spec.preset)}` | {len(loaded.runs)} / {planned} "
                     f"| {', '.join(failed) or 'none'} | {', '.join(resumed) or 'none'} | {at_least}{hours:.2f} "
                     f"| {rates or '–'} | {timing_setups(loaded.runs) if loaded.runs else '–'} |")
    edges = [f"{group.split('|')[0]} ({loaded.spec.title}, {choice['chosen_learning_rate']:g})"
             for loaded in sweeps.values() for group, choice in ((loaded.manifest or {}).get("lr_search") or {}).items()
             if choice.get("at_edge")]
    lines += ["", "Rates chosen at the edge of what their search tried, even after its steps past the grid (the best "
                  "rate may lie further out): " + ", ".join(edges) + "."] if edges else []
    lines += search_budgets(sweeps)
    return lines + ["", "Wall time: the cells' own, learning-rate search included, from each sweep's benchmark.json: a "
                    "completed cell's run over all its processes (a resumed run ran in several), a failed cell's "
                    "process. ≥: a lower bound, where a run had a process whose wall time is unknown (killed, or "
                    "from before interrupted runs kept it); of that process only what reached a checkpoint counts "
                    "(`run_store.wall_time`). A sweep resumes where it stopped: re-run its command.", "",
                    f"The sweeps' records (each completed run's results and test predictions, no models) are "
                    f"committed in `{FINDINGS_RECORDS_DIR}/`, made by `python -m ftbench.sweep_records "
                    f"results/benchmarks/findings_* {FINDINGS_RECORDS_DIR}`; copied back the same way, a sweep's "
                    "command continues from them.", ""]


def search_budgets(sweeps: dict) -> list[str]:
    """How each sweep's learning-rate search trained (from its benchmark.json), against its runs' epochs: a rate that
    wins a short search may be too high for a longer run."""
    searched = []
    for loaded in sweeps.values():
        settings = (loaded.manifest or {}).get("settings") or {}
        if settings.get("lr_search"):
            searched.append(f"`{' '.join(settings['lr_search_args'])}` ({loaded.spec.title})")
    if not searched:
        return []
    return ["", "The learning-rate searches trained one seed per method with their sweep's options and these on top: "
            + "; ".join(searched) + ". The runs then train for their own epochs (under each claim, and in the epochs "
            "tables) at the rate chosen: a rate that wins a short search may be too high for a longer run."]


def headline(results: list[dict]) -> str:
    """The verdicts in one sentence: each claim's verdicts, and how many measurements are still to come."""
    rows = [row for claim in results for row in claim["rows"]]
    waiting = sum(1 for row in rows if row["verdict"] == NOT_MEASURED)
    parts = []
    for claim in results:
        found = list(dict.fromkeys(row["verdict"] for row in claim["rows"] if row["verdict"] != NOT_MEASURED))
        if found:
            parts.append(f"{claim['id']} {' / '.join(found)}")
    if not parts:
        return f"No claim is measured yet: all {len(rows)} measurements await their sweeps."
    if not waiting:
        return f"Verdicts: {'; '.join(parts)} (all {len(rows)} measurements made)."
    return (f"Verdicts so far: {'; '.join(parts)} ({len(rows) - waiting} of {len(rows)} measurements made; "
            f"{waiting} await their sweeps).")


def claims_table(results: list[dict]) -> list[str]:
    lines = ["| # | claim | the documents | measured here | verdict |", "|---|---|---|---|---|"]
    for claim in results:
        for k, row in enumerate(claim["rows"]):
            named = [claim["id"], claim["claim"], claim["documents"]] if k == 0 else ["", "", ""]
            lines.append("| " + " | ".join(named + [f"{row['what']}: {row['measured']}", f"**{row['verdict']}**"])
                         + " |")
    return lines + [""]


def claim_sections(results: list[dict]) -> list[str]:
    lines = []
    for claim in results:
        lines += [f"### {claim['id']}: {claim['claim']}", "", f"The documents: {claim['documents']}.", ""]
        lines += claim["details"] + [f"What differs from the documents: {claim['differs']}", ""]
    return lines


def curve_sweeps(sweeps: dict) -> list[tuple[str, str, dict]]:
    """(key, title, groups) of each data set with runs: SST-2 (LoRA at the documents' rate with it), Financial
    PhraseBank, IMDb; what the learning curves and the epochs check are shown for."""
    data_sets = (("sst2", "SST-2", sst2_groups(sweeps)),
                 ("phrasebank", "Financial PhraseBank", sweeps["phrasebank"].groups),
                 ("imdb", "IMDb, 256 tokens", sweeps["imdb"].groups))
    return [(key, title, groups) for key, title, groups in data_sets if groups]


def charts(sweeps: dict, out_dir: str) -> tuple[list[str], dict]:
    """The learning curves of each sweep (epochs on the x axis, so that where validation accuracy stops rising
    shows) and the accuracy-against-cost chart of the every-method sweep; ({path: figure}, Markdown)."""
    from ftbench.chart_style import label_colours
    from ftbench.comparison_charts import curves_chart, pareto_chart

    figures, lines = {}, []
    for key, title, groups in curve_sweeps(sweeps):
        colours = label_colours(list(groups))
        name = f"{CHARTS_DIR}/curves_{key}.png"
        figures[os.path.join(out_dir, name)] = curves_chart(groups, colours, f"{title}, MiniLM")
        lines += [f"![learning curves, {title}]({name})", ""]
        if key == "phrasebank":
            name = f"{CHARTS_DIR}/pareto_{key}.png"
            figures[os.path.join(out_dir, name)] = pareto_chart(sweeps[key].summaries, colours, f"{title}, MiniLM",
                                                                memory_kind_of(groups))
            lines += [f"![accuracy against cost, {title}]({name})", ""]
    return lines, figures


def data_command(run: dict) -> str:
    """The command that prints the run's splits (utils.py with the run's data options away from their defaults)."""
    from config import DataArguments

    defaults = DataArguments()
    given = {name: value for name, value in run["run_info"]["config"]["data"].items()
             if hasattr(defaults, name) and value != getattr(defaults, name)}
    return " ".join(["python utils.py", *options(given)])


def validation_against_test(groups: dict) -> str:
    """How far the runs' best validation accuracy lay from their test accuracy, and how each split was made: where
    validation is carved from a training file unlike the test set (SST-2's phrases), the two part."""
    runs = runs_in(groups)
    validation, test = (float(np.mean([METRICS[name][1](run) for run in runs]))
                        for name in ("best_val_accuracy", "test_accuracy"))
    data = runs[0]["run_info"]["data"]
    how, test_source = data["split_method"], data["source"].get("test_split")
    described = how["test"] + (f", {test_source}" if test_source and test_source != how["test"] else "")
    counted = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
    text = (f"Over the {counted}, the best validation accuracy averaged {validation:.4f} and test accuracy "
            f"{test:.4f} (validation minus test: {100 * (validation - test):+.2f} points). Validation: "
            f"{how['validation']}; test: {described}. The rates were "
            "chosen, and the checkpoints selected, on validation; the tables report test.")
    words = data.get("words_per_text")
    if words:
        return text + (f" Texts average {words['validation']['mean']:g} words in validation and "
                       f"{words['test']['mean']:g} in test.")
    return text + f" The splits' text lengths: `{data_command(runs[0])}`."


def enough_epochs(sweeps: dict) -> list[str]:
    """Per sweep, whether each method's validation accuracy stopped rising within its epochs (ftbench.convergence),
    and how validation accuracy compared with test accuracy."""
    lines, runs = [], []
    for _, title, groups in curve_sweeps(sweeps):
        lines += [f"**{title}**", ""] + epochs_table(groups) + [validation_against_test(groups), ""]
        runs += runs_in(groups)
    if not lines:
        return ["Not measured yet.", ""]
    note = schedule_note(runs)
    return [EPOCHS_RULE + (f" {note}" if note else ""), ""] + lines


def what_to_use(sweeps: dict) -> list[str]:
    lines = []
    for key in ("phrasebank", "sst2"):
        groups = sweeps[key].groups
        if len(groups) >= 2:
            lines += [f"**{sweeps[key].spec.title}** ({len(groups)} methods)", ""]
            lines += recommendation_lines(sweeps[key].summaries, memory_kind_of(groups))
    return lines or [f"Not measured yet: run `{sweep_command(FPB)}`.", ""]


def findings_document(sweeps_dir: str, doc_dir: str, n_resamples: int, command: str) -> tuple[str, dict]:
    """The document's Markdown and its charts {path: figure} (under doc_dir), from the sweeps under sweeps_dir."""
    sweeps = {spec.key: load_sweep(spec, sweeps_dir) for spec in SWEEPS}
    every_run = [run for loaded in sweeps.values() for run in loaded.runs]
    results = claims(sweeps, n_resamples)
    chart_lines, figures = charts(sweeps, doc_dir)
    phrasebank = sweeps["phrasebank"].groups
    lines = ["# Findings: the design documents' claims, re-tested at full scale", "",
             generated_line(command, every_run), "", f"**In short.** {headline(results)}", "",
             "Each claim of the design documents is re-tested here on complete data sets with the suite's "
             "statistics, on this machine's CPU with the offline model (all-MiniLM-L6-v2), and given a verdict by "
             "the rules below. The documents' runs were single runs on GPUs with larger models; what differs is "
             "said under each claim.", "",
             "## How a verdict is reached", "", RULES, "## The sweeps", ""] + sweeps_table(sweeps)
    lines += ["## Verdicts", ""] + claims_table(results) + ["## What to use under a limit", ""] + what_to_use(sweeps)
    lines += ["## The claims one by one", ""] + claim_sections(results)
    if phrasebank:
        lines += ["## Every method on Financial PhraseBank (C7's table)", ""]
        lines += section_tables(phrasebank, sweeps["phrasebank"].summaries, "full", n_resamples,
                                lambda level, text: f"**{text}**")
    lines += ["## Enough epochs?", ""] + enough_epochs(sweeps) + ["## Learning curves", ""] + chart_lines
    train_hours = sum(train_time(r) or 0 for r in every_run) / 3600
    lines += [f"{len(every_run)} completed runs, {train_hours:.1f} hours of training time in all.", ""]
    return "\n".join(lines), figures


def headline_block(sweeps_dir: str, n_resamples: int, command: str) -> str:
    """The generated line and the headline, for the README's generated block."""
    sweeps = {spec.key: load_sweep(spec, sweeps_dir) for spec in SWEEPS}
    runs = [run for loaded in sweeps.values() for run in loaded.runs]
    return f"{generated_line(command, runs)}\n\n{headline(claims(sweeps, n_resamples))}\n"


def write_findings(sweeps_dir: str, out_path: str, n_resamples: int, command: str) -> str:
    from ftbench.chart_style import plt

    doc_dir = os.path.dirname(os.path.abspath(out_path))
    text, figures = findings_document(sweeps_dir, doc_dir, n_resamples, command)
    for path, figure in figures.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
    charts_dir, written = os.path.join(doc_dir, CHARTS_DIR), set(map(os.path.normpath, figures))
    for pattern in CHART_NAMES:  # a chart of runs no longer there must not outlive them
        for path in glob.glob(os.path.join(glob.escape(charts_dir), pattern)):
            if os.path.normpath(path) not in written:
                os.remove(path)
    os.makedirs(doc_dir, exist_ok=True)  # where no chart made it
    write_text_atomic(out_path, text)
    return out_path
