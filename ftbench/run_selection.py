"""How a results command describes the runs it chose (plot_results.py's filters, --all_runs, --runs): what the
selection was, and notes on the runs that match but are left out, and why (not completed, unreadable, older)."""

from __future__ import annotations

import os
from collections import Counter

from ftbench import run_store
from ftbench.run_store import matches


def describe_filters(args) -> str:
    parts = [f"--dataset {args.dataset}" if args.dataset else "", f"--model {args.model}" if args.model else "",
             f"--method {' '.join(args.method)}" if args.method else ""]
    return " ".join(p for p in parts if p) or "no filters"


def describe_selection(args) -> str:
    if args.runs:
        return "the runs named with --runs"
    which = "every completed run" if args.all_runs else "the newest completed run per (method label, dataset, model)"
    filters = describe_filters(args)
    return f"{which} in {os.path.join(args.results_dir, 'runs')}" + (
        f" matching {filters}" if filters != "no filters" else "")


def skip_notes(runs, selected, unreadable, args) -> list[str]:
    """How many runs matching the filters are not shown, and why."""
    if args.runs:
        return ["runs chosen with --runs; none skipped"]
    candidates = [r for r in runs if matches(r, args.dataset, args.model, args.method)]
    # A results.json that says "running" while no process holds its folder belongs to a run that died.
    statuses = [(r, run_store.effective_status(r["_dir"], r["run_info"])) for r in candidates
                if r["run_info"].get("status") != "completed"]
    incomplete = Counter(status for _, status in statuses)
    reasons = [f"{n} {status}" for status, n in sorted(incomplete.items())]
    reasons += [f"{r['run_info'].get('run_id')} stopped early, resume: "
                f"{run_store.resume_hint(r['_dir'], r['run_info'])}"
                for r, status in statuses if status in ("interrupted", "unfinished")
                and r["run_info"].get("resumable") is not False]
    reasons += [f"unreadable: {message}" for message in unreadable]
    skipped = sum(incomplete.values()) + len(unreadable)
    notes = [f"skipped {skipped} run(s) ({'; '.join(reasons)})" if skipped else "no runs skipped"]
    older = sum(r["run_info"].get("status") == "completed" for r in candidates) - len(selected)
    if older:
        notes.append(f"left out {older} older completed run(s) of the same method label, data set and model "
                     "(--all_runs shows them)")
    return notes
