"""The cells of a sweep (benchmark.py): the resolved grid, each cell's training options (a learning-rate search
cell's and an Optuna trial's included), the grid search's choice of rate, and the cells' runs already on disk, which
a re-run of the sweep skips or resumes.

    cells = search_cells(sweep) + run_cells(sweep)
    done = completed_run(cells[0], sweep)   # its newest completed results, or None
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from config import parse_args
from ftbench import run_store

SEARCH_FOLDERS = {"lr_search": "lr_search", "trial": "optuna_search"}  # a search's runs: apart from the sweep's


@dataclass(frozen=True)
class OptunaSearch:
    """benchmark.py --search optuna: a study per method, data set and model (ftbench/optuna_search.py)."""

    trials: int  # the study's total, per method, data set and model
    objectives: list  # "accuracy" (validation, maximised), then "train_time" or "peak_memory" (minimised)
    pruner: str  # "median" or "none" (always "none" with two objectives)


LATER_FIELDS = ("optuna_search",)  # Sweep's fields that sweeps made before them lack


@dataclass
class Sweep:
    """The resolved grid: what every cell runs."""

    name: str
    folder: str
    methods: list
    datasets: list
    models: list
    seeds: list
    data_dir: str | None
    run_args: list
    method_args: dict
    lr_search: bool
    lr_search_factors: list
    lr_search_args: list
    lr_search_seed: int  # also the seed of an Optuna search's sampler
    # LATER_FIELDS: settings() leaves each out while it is None, so that sweeps made before it existed keep their
    # fingerprint and resume.
    optuna_search: OptunaSearch | None = None

    def settings(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("name", "folder") and not (k in LATER_FIELDS and v is None)}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Cell:
    kind: str  # "run", "lr_search" or "trial" (of an Optuna search)
    method: str
    dataset: str
    model: str
    seed: int
    learning_rate: float | None = None  # a learning-rate search cell's
    trial: int | None = None  # a trial's number in its study (a retried trial keeps the first's, and its run)
    trial_options: tuple = ()  # the trial's sampled settings as training options

    @property
    def group(self) -> str:
        return f"{self.method}|{self.dataset}|{self.model}"

    @property
    def cell_id(self) -> str:
        model = "".join(c if c.isalnum() or c in ".-" else "-" for c in os.path.basename(self.model.rstrip("/")))
        base = f"{self.method}-{self.dataset}-{model}-seed{self.seed}"
        if self.kind == "trial":
            return f"trial{self.trial}-{base}"
        return f"lr{self.learning_rate:g}-{base}" if self.kind == "lr_search" else base

    def output_dir(self, sweep: Sweep) -> str:
        return os.path.join(sweep.folder, SEARCH_FOLDERS[self.kind]) if self.kind in SEARCH_FOLDERS else sweep.folder

    def argv(self, sweep: Sweep, chosen_options: list[str] | None = None) -> list[str]:
        """The training script's options; a run cell's end with chosen_options, what its group's search chose."""
        args = ["--model_name_or_path", self.model, "--dataset", self.dataset, "--seed", str(self.seed),
                "--output_dir", self.output_dir(sweep), "--run_name", self.cell_id]
        args += ["--data_dir", sweep.data_dir] if sweep.data_dir else []
        args += sweep.run_args + sweep.method_args.get(self.method, [])
        if self.kind == "lr_search":
            args += sweep.lr_search_args + learning_rate_options(self.learning_rate) + ["--save_model", "false"]
        elif self.kind == "trial":
            args += sweep.lr_search_args + list(self.trial_options) + ["--save_model", "false"]
        else:
            args += chosen_options or []
        return args


def learning_rate_options(learning_rate: float) -> list[str]:
    return ["--learning_rate", f"{learning_rate:g}"]


def rate_as_run(learning_rate: float) -> float:
    """The rate a run given learning_rate_options(learning_rate) records in its config."""
    return float(learning_rate_options(learning_rate)[1])


def rounded_rate(learning_rate: float) -> float:
    """A search rate: 3 significant digits, so that 3e-3 x 3 is 0.009, not 0.009000000000000001."""
    return float(f"{learning_rate:.3g}")


def base_learning_rate(sweep: Sweep, method: str) -> float:
    """The rate a method would run at in this sweep: its default, or what its options set."""
    return parse_args(method, Cell("run", method, sweep.datasets[0], sweep.models[0], 1).argv(sweep)
                      ).training.learning_rate


def grid_rates(sweep: Sweep, method: str) -> list[float]:
    """The method's grid search rates: its rate in the sweep times each factor, in the factors' order."""
    base = base_learning_rate(sweep, method)
    return [rounded_rate(base * factor) for factor in sweep.lr_search_factors]


def search_cells(sweep: Sweep) -> list[Cell]:
    grids = {method: grid_rates(sweep, method) for method in sweep.methods}
    return [Cell("lr_search", method, dataset, model, sweep.lr_search_seed, rate) for dataset in sweep.datasets
            for model in sweep.models for method in sweep.methods for rate in grids[method]]


def run_cells(sweep: Sweep) -> list[Cell]:
    """Seed by seed: a seed's methods train one after another, so that a stopped sweep has every method at its first
    seeds, and the runs whose times a comparison pairs by seed train together, on one machine."""
    return [Cell("run", method, dataset, model, seed) for dataset in sweep.datasets for model in sweep.models
            for seed in sweep.seeds for method in sweep.methods]


def find_runs(output_dir: str) -> dict:
    """{run_name: [results, ...]} of every run folder under output_dir/runs, newest last."""
    found = {}
    for path in run_store.results_paths(output_dir):
        try:
            with open(path, encoding="utf-8") as handle:
                results = json.load(handle)
            name = results["run_info"]["config"]["training"]["run_name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable or foreign: not a cell's run
        found.setdefault(name, []).append(results)
    for runs in found.values():
        runs.sort(key=lambda r: (r["run_info"].get("started_at") or "", r["run_info"]["run_id"]))
    return found


def completed_run(cell: Cell, sweep: Sweep) -> dict | None:
    runs = [r for r in find_runs(cell.output_dir(sweep)).get(cell.cell_id, [])
            if r["run_info"].get("status") == "completed"]
    return runs[-1] if runs else None


def resumable_run(cell: Cell, sweep: Sweep) -> str | None:
    """The folder of the cell's newest run if it stopped early (interrupted, or killed: unfinished) and can
    continue from its checkpoint, so that re-running the sweep resumes it rather than starting over."""
    runs = find_runs(cell.output_dir(sweep)).get(cell.cell_id, [])
    if not runs or runs[-1]["run_info"].get("resumable") is False:
        return None
    info = runs[-1]["run_info"]
    run_dir = os.path.join(cell.output_dir(sweep), run_store.RUNS_DIR, info["run_id"])
    return run_dir if run_store.effective_status(run_dir, info) in ("interrupted", "unfinished") else None
