"""The learning-rate grid search (benchmark.py --lr_search): its grid, its steps past the grid's edge, its choice,
and the runs made at a rate it no longer chooses.

A search whose best rate is the highest (or lowest) it tried has not found the best rate, only a bound. So the
search goes on that way, one step at a time, the step being the grid's own ratio at that end (3x up and 0.3x down
for the factors 0.3 1 3), until the best rate has a tried rate on both sides, a step fails, or MAX_EDGE_STEPS steps
were taken on that side; a choice still at the edge then is said so (benchmark.json: at_edge).

    next_search_rate(candidates, [0.0009, 0.003, 0.009])   # 0.027 where 0.009 was best, else None
    edge_steps(firsts, searches, sweep)                    # that, as the cells of each group that needs one
"""

from __future__ import annotations

import os
import shutil

from ftbench import run_store
from ftbench.sweep_cells import SEARCH_FOLDERS, Cell, Sweep, find_runs, grid_rates, rate_as_run, rounded_rate

MAX_EDGE_STEPS = 2  # per side: with 0.3 1 3, rates from 0.03x to 27x the method's rate can be tried
SUPERSEDED_DIR = "superseded"  # <sweep>/superseded/<run id>: runs made at a rate the search no longer chooses


def choose_learning_rate(candidates: list[dict]) -> dict | None:
    """Best validation accuracy; ties go to the lower validation loss, then the lower rate."""
    usable = [c for c in candidates if c.get("best_val_accuracy") is not None]
    if not usable:
        return None
    return min(usable, key=lambda c: (-c["best_val_accuracy"], c["best_val_loss"], c["learning_rate"]))


def next_search_rate(candidates: list[dict], grid: list[float]) -> float | None:
    """The rate to try next (one step past the best, where the best is the highest or lowest rate tried), or None:
    the search is done. grid: the grid's rates, ascending."""
    chosen = choose_learning_rate(candidates)
    if chosen is None or len(grid) < 2:
        return None
    rate, tried = chosen["learning_rate"], sorted(c["learning_rate"] for c in candidates)
    step = None
    if rate == tried[-1] and sum(r > grid[-1] for r in tried) < MAX_EDGE_STEPS:
        step = rounded_rate(rate * grid[-1] / grid[-2])
    elif rate == tried[0] and sum(r < grid[0] for r in tried) < MAX_EDGE_STEPS:
        step = rounded_rate(rate * grid[0] / grid[1])
    return None if step in tried else step  # a grid too fine for 3 significant digits ends here


def completed_searches(sweep: Sweep) -> dict:
    """{cell id: its newest completed search run} of the sweep's learning-rate search."""
    found = find_runs(os.path.join(sweep.folder, SEARCH_FOLDERS["lr_search"]))
    completed = {name: [r for r in runs if r["run_info"].get("status") == "completed"] for name, runs in found.items()}
    return {name: runs[-1] for name, runs in completed.items() if runs}


def search_candidates(first: Cell, searches: list[Cell], completed: dict) -> list[dict]:
    """Each rate the group's search tried, with its run's best validation figures (None where it failed)."""
    candidates = []
    for search in (s for s in searches if s.group == first.group):
        run = completed.get(search.cell_id)
        best = run["train_info"]["best_val"] if run else {}
        candidates.append({"learning_rate": search.learning_rate, "run_id": run["run_info"]["run_id"] if run else None,
                           "best_val_accuracy": best.get("val_accuracy"), "best_val_loss": best.get("val_loss")})
    return candidates


def search_cell(first: Cell, rate: float, sweep: Sweep) -> Cell:
    return Cell("lr_search", first.method, first.dataset, first.model, sweep.lr_search_seed, rate)


def earlier_steps(firsts: list[Cell], searches: list[Cell], sweep: Sweep) -> list[Cell]:
    """Steps past the grid that an earlier invocation completed: every rate a search tried stays a candidate, even
    where the rule would not take that step today (a search run's figures changed, or the rule did)."""
    completed, known = completed_searches(sweep), {cell.cell_id for cell in searches}
    rates = {run["run_info"]["config"]["training"]["learning_rate"] for run in completed.values()}
    cells = [search_cell(first, rate, sweep) for first in firsts for rate in sorted(rates)]
    return [cell for cell in cells if cell.cell_id in completed and cell.cell_id not in known]


def edge_steps(firsts: list[Cell], searches: list[Cell], sweep: Sweep) -> list[Cell]:
    """Each group's next search cell past the grid's edge, where it needs one."""
    completed = completed_searches(sweep)
    rates = {first.group: next_search_rate(search_candidates(first, searches, completed),
                                           sorted(grid_rates(sweep, first.method))) for first in firsts}
    return [search_cell(first, rates[first.group], sweep) for first in firsts if rates[first.group] is not None]


def search_results(firsts: list[Cell], searches: list[Cell], sweep: Sweep) -> dict:
    """{group: its choice for benchmark.json}, each printed in one line."""
    completed = completed_searches(sweep)
    return {first.group: search_result(first, search_candidates(first, searches, completed), sweep)
            for first in firsts}


def search_result(first: Cell, candidates: list[dict], sweep: Sweep) -> dict:
    chosen, grid = choose_learning_rate(candidates), sorted(grid_rates(sweep, first.method))
    tried = sorted(c["learning_rate"] for c in candidates)
    at_edge = chosen is not None and chosen["learning_rate"] in (tried[0], tried[-1])
    if chosen is None:
        print(f"    warning: every learning-rate search run of {first.group} failed; its runs use the method's rate",
              flush=True)
    else:
        print(f"    {first.method} on {first.dataset} with {first.model}: learning rate {chosen['learning_rate']:g} "
              f"(validation accuracy {chosen['best_val_accuracy']:.4f}; tried {', '.join(f'{r:g}' for r in tried)})"
              + ("; still the edge of what was tried" if at_edge else ""), flush=True)
    return {"candidates": candidates, "chosen_learning_rate": chosen["learning_rate"] if chosen else None,
            "grid": grid, "beyond_grid": [r for r in tried if not grid[0] <= r <= grid[-1]], "at_edge": at_edge,
            "selected_on": "best validation accuracy of one seed (ties: lower validation loss); a best rate at the "
                           f"edge of what was tried is followed by up to {MAX_EDGE_STEPS} steps past it"}


def supersede_runs_at_other_rates(runs: list[Cell], sweep: Sweep, chosen_rates: dict) -> None:
    """Moves each run cell's runs made at another rate than its group's chosen one (chosen_rates: {group: rate})
    to <sweep>/superseded/, so that neither the report nor a resume mixes two rates in one method's seeds."""
    found = find_runs(sweep.folder)
    for cell in runs:
        chosen = chosen_rates.get(cell.group)
        for run in found.get(cell.cell_id, []) if chosen is not None else []:
            rate = run["run_info"]["config"]["training"]["learning_rate"]
            if rate != rate_as_run(chosen):
                source = os.path.join(sweep.folder, run_store.RUNS_DIR, run["run_info"]["run_id"])
                target = os.path.join(sweep.folder, SUPERSEDED_DIR, run["run_info"]["run_id"])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.move(source, target)
                print(f"    {cell.cell_id}: its run at learning rate {rate:g} moved to {target} (the search now "
                      f"chooses {chosen:g}); it runs again", flush=True)
