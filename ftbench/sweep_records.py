"""A sweep's record without its weights: what the reports read, small enough to keep where a machine's disk is not.

    python -m ftbench.sweep_records SWEEP [SWEEP ...] RECORDS_DIR

copies each SWEEP folder (one with a benchmark.json) into RECORDS_DIR/<its name>: its benchmark.json, its Optuna
study if it has one, and each completed run's results.json, test_predictions.json and training_log.txt (the
sweep's runs and its searches' runs), paths kept. Models, checkpoints, logs and runs that have not completed stay
behind. A record folder is a sweep folder itself: report.py reads it, and copied back the same way to where the
sweep's command makes it, the command skips the cells whose runs it holds and trains the rest. Records are only
updated from the sweep continued from them: a run the records hold and the sweep has neither among its runs nor
moved to superseded/ is refused. Why and when: docs/benchmark.md, "Keeping a sweep's record".
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sqlite3
import sys
from dataclasses import dataclass, field

from ftbench.lr_search import SUPERSEDED_DIR
from ftbench.optuna_search import study_file
from ftbench.run_store import LOG_FILE, PREDICTIONS_FILE, RESULTS_FILE, RUNS_DIR, ResultsError, read_results
from ftbench.sweep_cells import SEARCH_FOLDERS
from ftbench.sweep_manifest import MANIFEST_FILE

RUN_RECORD_FILES = (RESULTS_FILE, PREDICTIONS_FILE, LOG_FILE)


@dataclass
class SweepCopy:
    """What copying one sweep into its record folder does; run folders relative to the sweep's folder."""

    source: str
    dest: str
    copied: list = field(default_factory=list)  # completed runs
    left_out: list = field(default_factory=list)  # runs not completed
    unreadable: list = field(default_factory=list)  # "run folder (why)"
    superseded: list = field(default_factory=list)  # records of runs the sweep moved aside: moved aside there too
    unknown: list = field(default_factory=list)  # records of runs the sweep does not hold: the copy is refused


def sweep_name(sweep_dir: str) -> str:
    """The name a sweep's records go under: its folder's."""
    return os.path.basename(os.path.normpath(sweep_dir))


def run_folders(sweep_dir: str) -> list[str]:
    """The run folders of a sweep and of its searches, relative to it (not superseded/ or anything else)."""
    found = [folder for sub in ("", *SEARCH_FOLDERS.values())
             for folder in glob.glob(os.path.join(glob.escape(sweep_dir), sub, RUNS_DIR, "*"))
             if os.path.isfile(os.path.join(folder, RESULTS_FILE))]
    return sorted(os.path.relpath(folder, sweep_dir) for folder in found)


def plan_copy(source: str, dest: str) -> SweepCopy:
    plan = SweepCopy(source, dest)
    in_source = run_folders(source)
    for run in in_source:
        try:
            status = read_results(os.path.join(source, run, RESULTS_FILE))["run_info"].get("status")
        except ResultsError as error:
            plan.unreadable.append(f"{run} ({error})")
            continue
        (plan.copied if status == "completed" else plan.left_out).append(run)
    for run in sorted(set(run_folders(dest)) - set(in_source)):
        moved = os.path.isdir(os.path.join(source, SUPERSEDED_DIR, os.path.basename(run)))
        (plan.superseded if moved else plan.unknown).append(run)
    return plan


def copy_file(source: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy2(source, dest)


def apply_copy(plan: SweepCopy) -> None:
    for run in plan.copied:
        for name in RUN_RECORD_FILES:
            if os.path.isfile(os.path.join(plan.source, run, name)):
                copy_file(os.path.join(plan.source, run, name), os.path.join(plan.dest, run, name))
    for run in plan.superseded:
        os.makedirs(os.path.join(plan.dest, SUPERSEDED_DIR), exist_ok=True)
        os.replace(os.path.join(plan.dest, run), os.path.join(plan.dest, SUPERSEDED_DIR, os.path.basename(run)))
    copy_file(os.path.join(plan.source, MANIFEST_FILE), os.path.join(plan.dest, MANIFEST_FILE))
    if os.path.isfile(study_file(plan.source)):  # through SQLite, so that a study being written copies whole
        os.makedirs(os.path.dirname(study_file(plan.dest)), exist_ok=True)
        with sqlite3.connect(study_file(plan.source)) as study, sqlite3.connect(study_file(plan.dest)) as copy:
            study.backup(copy)


def check_folders(sweeps: list[str], records_dir: str) -> str | None:
    """Why the copy cannot be made, or None."""
    if os.path.exists(records_dir) and not os.path.isdir(records_dir):
        return f"{records_dir} is a file; name a folder for the records"
    names = [sweep_name(sweep) for sweep in sweeps]
    for sweep, name in zip(sweeps, names):
        if not os.path.isfile(os.path.join(sweep, MANIFEST_FILE)):
            return (f"{sweep} is not a sweep's folder (no {MANIFEST_FILE}); name the folders benchmark.py made, "
                    f"such as results/benchmarks/quick")
        source, dest = os.path.realpath(sweep), os.path.realpath(os.path.join(records_dir, name))
        if os.path.commonpath([source, dest]) in (source, dest):
            return f"{sweep} would be copied into itself or its own sweep; copy the records to a folder of their own"
        if names.count(name) > 1:
            return f"two sweeps named {name} would share {os.path.join(records_dir, name)}; copy them one at a time"
    return None


def report_lines(plan: SweepCopy) -> list[str]:
    lines = [f"{sweep_name(plan.source)}: {len(plan.copied)} completed run(s) copied to {plan.dest}"]
    for label, runs in (("not completed, left out", plan.left_out), ("unreadable, left out", plan.unreadable),
                        (f"moved aside by the sweep, moved to {SUPERSEDED_DIR}/ in the records", plan.superseded)):
        lines += [f"  {label}: {', '.join(runs)}"] if runs else []
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", metavar="SWEEP", help="a sweep's folder (holding its benchmark.json)")
    parser.add_argument("records_dir", metavar="RECORDS_DIR", help="each SWEEP's records go to RECORDS_DIR/<its name>")
    args = parser.parse_args(argv)
    problem = check_folders(args.sweeps, args.records_dir)
    plans = [] if problem else [plan_copy(sweep, os.path.join(args.records_dir, sweep_name(sweep)))
                                for sweep in args.sweeps]
    unknown = [f"{plan.dest}: {', '.join(plan.unknown)}" for plan in plans if plan.unknown]
    problem = problem or (unknown and f"the records hold runs their sweep does not ({'; '.join(unknown)}): the "
                                      "sweep was not continued from these records; copy it to a folder of its own")
    if problem:
        print(f"error: {problem}; nothing copied", file=sys.stderr)
        return 2
    try:
        for plan in plans:
            apply_copy(plan)
            print("\n".join(report_lines(plan)))
    except (OSError, sqlite3.Error) as error:
        print(f"error: copying the records failed ({error}); run the command again", file=sys.stderr)
        return 1
    print("copied: results, test predictions, training logs, benchmark.json (no model, checkpoint or cell log)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
