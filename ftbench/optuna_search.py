"""Hyperparameter search with Optuna (benchmark.py --search optuna). Per method, data set and model, a study of
--trials trials; each trial is a normal training run (one seed, --lr_search_seed, on the search budget
--lr_search_args) in the sweep's optuna_search/ folder, apart from the sweep's runs, with settings sampled from the
method's search space (ftbench/search_space.py). The objective is the run's best validation accuracy
(train_info.best_val.val_accuracy), optionally with its training time or peak memory as a second objective; the test
split plays no part in the choice.

    search = Search(sweep, first_run_cell)    # the study, opened (or created) in optuna_search/optuna.db
    while search.missing():
        cell = search.next_trial()              # a "trial" cell, run by benchmark.py's run_cell ...
        run_cell(cell, sweep, None, search.watch)   # ... which polls the watch: pruning
        outcome, summary = search.finish(cell)  # completed, pruned or failed, told to the study
    record = search.record()                  # every trial and the choice, for benchmark.json

Rules, stated once here (and in docs/benchmark.md):
- Resuming: the studies live in SQLite, so a search stopped at any moment keeps its finished trials. --trials is the
  study's total: trials completed, pruned, or failed because their run failed count; a trial a stopped search left
  running is marked failed, does not count, and its settings are queued again: the retry keeps its cell, so that its
  run continues from its last checkpoint.
- Sampling: TPESampler seeded with --lr_search_seed; half the trials (at most 10) are sampled at random first. A
  resumed search re-seeds the sampler, so the trials after the interruption differ from an uninterrupted search's.
- Pruning (one objective only: optuna prunes no multi-objective study): MedianPruner with optuna's defaults. While a
  trial's run trains, each validation accuracy its checkpoints hold is reported at its optimizer step; once 5 trials
  have completed, a trial below the median of earlier trials at the same step is stopped with SIGTERM (its run records
  itself as interrupted, never as a result) and marked pruned. Methods that save no checkpoints (AdaLoRA) report
  only when their run ends, so they are never pruned.
- The choice: one objective, study.best_trial; two, the most accurate trial of the Pareto front (study.best_trials).
"""

from __future__ import annotations

import os
import shlex

from ftbench.errors import ConfigError, check
from ftbench.registry import get_method
from ftbench.run_store import checkpointed_history, peak_memory, train_time
from ftbench.search_space import Choice, FloatRange, IntRange, corners, options, search_space
from ftbench.sweep_cells import SEARCH_FOLDERS, Cell, Sweep, base_learning_rate, completed_run, find_runs

STUDY_FILE = "optuna.db"
# Objective name -> (the key its values are recorded under, optuna's direction).
OBJECTIVES = {"accuracy": ("val_accuracy", "maximize"), "train_time": ("train_time_s", "minimize"),
              "peak_memory": ("peak_memory_mib", "minimize")}
PRUNERS = ("median", "none")
PRUNER_DESCRIPTION = "MedianPruner(n_startup_trials=5, n_warmup_steps=0), at every evaluation's optimizer step"
FIGURES = {"accuracy": lambda run: run["train_info"]["best_val"]["val_accuracy"], "train_time": train_time,
           "peak_memory": lambda run: peak_memory(run)[0]}


def import_optuna():
    """optuna, or one line that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("--search optuna needs the optuna package: pip install optuna (or pip install -r "
                          "requirements-tools.txt)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def study_file(sweep_folder: str) -> str:
    return os.path.join(sweep_folder, SEARCH_FOLDERS["trial"], STUDY_FILE)


def study_path(sweep: Sweep) -> str:
    return study_file(sweep.folder)


def random_trials(trials: int) -> int:
    """Trials the sampler draws at random before TPE models the results: half, at most optuna's default of 10."""
    return max(1, min(10, trials // 2))


def make_pruner(pruner: str):
    optuna = import_optuna()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if pruner == "median" \
        else optuna.pruners.NopPruner()


def open_study(sweep: Sweep, group: str):
    """The group's study in the sweep's SQLite file: created, or loaded as it was left."""
    optuna = import_optuna()
    settings = sweep.optuna_search
    path = os.path.abspath(study_path(sweep))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sampler = optuna.samplers.TPESampler(seed=sweep.lr_search_seed, n_startup_trials=random_trials(settings.trials))
    return optuna.create_study(storage=f"sqlite:///{path}", study_name=group, sampler=sampler,
                               pruner=make_pruner(settings.pruner), load_if_exists=True,
                               directions=[OBJECTIVES[name][1] for name in settings.objectives])


def distribution(spec):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(spec, FloatRange):
        return FloatDistribution(spec.low, spec.high, log=spec.log)
    if isinstance(spec, IntRange):
        return IntDistribution(spec.low, spec.high, log=spec.log)
    if isinstance(spec, Choice):
        return CategoricalDistribution(spec.values)
    raise TypeError(f"not a search range: {spec!r}")


def counts(trial) -> bool:
    """Does a trial count towards --trials? Completed, pruned, or failed because its run failed; not one that a
    stopped search left running (failed on resume, and retried)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and bool(trial.user_attrs.get("run_failed")))


def first_number(trial) -> int:
    """The number of the trial a retry repeats (its cell and run), or the trial's own."""
    return trial.user_attrs.get("retry_of", trial.number)


def retry_abandoned_trials(study) -> list[int]:
    """Trials still RUNNING when a search starts were left by a search that stopped (one benchmark.py works on a
    sweep at a time): each is marked FAIL, and its settings queued to run again under its first number."""
    from optuna.trial import TrialState

    abandoned = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in abandoned:  # queued first: stopped between the two, the retry is not lost (the trial stays RUNNING)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": first_number(trial)})
        study.tell(trial.number, state=TrialState.FAIL)
    return [trial.number for trial in abandoned]


class PruningWatch:
    """What run_cell polls while a trial's run trains (watch() -> stop it?): each validation accuracy the run has
    checkpointed is reported to the trial at its optimizer step, and the pruner is asked whether to stop."""

    def __init__(self, trial, cell: Cell, sweep: Sweep):
        self.trial, self.cell, self.sweep = trial, cell, sweep
        self.run_dir: str | None = None
        self.reported: set[int] = set()
        self.pruned_at_step: int | None = None
        self.pruned_accuracy: float | None = None

    def __call__(self) -> bool:
        if self.pruned_at_step is not None:
            return True
        if self.run_dir is None:  # the trial's run, once its process has opened the folder
            runs = find_runs(self.cell.output_dir(self.sweep)).get(self.cell.cell_id, [])
            if not runs or runs[-1]["run_info"].get("status") != "running":
                return False
            self.run_dir = runs[-1]["run_info"]["run_dir"]
        return self.report(checkpointed_history(self.run_dir), prune=True)

    def report(self, history: list[dict], prune: bool) -> bool:
        """Reports the rows not reported yet; True when the pruner says stop (only asked when prune)."""
        for row in history:
            step, accuracy = row.get("step"), row.get("val_accuracy")
            if step is None or accuracy is None or step in self.reported:
                continue
            self.trial.report(accuracy, step)
            self.reported.add(step)
            if prune and self.trial.should_prune():
                self.pruned_at_step, self.pruned_accuracy = step, accuracy
                return True
        return False


def described_space(sweep: Sweep, cell: Cell) -> dict:
    return {name: spec.describe() for name, spec in
            search_space(get_method(cell.method), base_learning_rate(sweep, cell.method)).items()}


def check_same_space(study, described: dict) -> None:
    """A study keeps the search space it was made with; resuming it with another (a method's search_space edited
    since) would mix trials from two spaces, so it is refused."""
    recorded = study.user_attrs.get("search_space")
    differing = sorted(name for name in (recorded or {}).keys() | described.keys()
                       if recorded is not None and recorded.get(name) != described.get(name))
    check(not differing, f"the Optuna study {study.study_name} was made with another search space (differing: "
                         f"{', '.join(differing)}); give --name for a new sweep, or restore the method's search_space")


def check_recorded_space(sweep: Sweep, cell: Cell) -> None:
    """Before anything runs: the group's study, if the sweep has one already, was made with today's space."""
    path = os.path.abspath(study_path(sweep))
    if not os.path.isfile(path):
        return
    optuna, storage = import_optuna(), f"sqlite:///{path}"
    if cell.group in optuna.get_all_study_names(storage=storage):
        check_same_space(optuna.load_study(study_name=cell.group, storage=storage), described_space(sweep, cell))


class Search:
    """One method, data set and model's study, run trial by trial (see the module's docstring)."""

    def __init__(self, sweep: Sweep, cell: Cell):
        import_optuna()
        self.sweep, self.settings, self.group_cell = sweep, sweep.optuna_search, cell
        self.space = search_space(get_method(cell.method), base_learning_rate(sweep, cell.method))
        self.study = open_study(sweep, cell.group)
        check_same_space(self.study, described_space(sweep, cell))
        self.study.set_user_attr("search_space", described_space(sweep, cell))
        self.retried = retry_abandoned_trials(self.study)
        self.distributions = {name: distribution(spec) for name, spec in self.space.items()}
        self.trial, self.watch = None, None

    def finished(self) -> int:
        return sum(counts(trial) for trial in self.study.get_trials(deepcopy=False))

    def missing(self) -> int:
        return max(0, self.settings.trials - self.finished())

    def options_of(self, params: dict) -> list[str]:
        """A trial's parameters as training options, in the space's order."""
        return options({name: params[name] for name in self.space if name in params})

    def pruning(self) -> bool:
        return self.settings.pruner != "none" and len(self.settings.objectives) == 1

    def next_trial(self) -> Cell:
        """A new trial (or a queued retry), its settings sampled; its cell, and self.watch for run_cell."""
        self.trial = self.study.ask(fixed_distributions=self.distributions)
        first = self.group_cell
        cell = Cell("trial", first.method, first.dataset, first.model, self.sweep.lr_search_seed,
                    trial=first_number(self.trial), trial_options=tuple(self.options_of(self.trial.params)))
        self.trial.set_user_attr("cell_id", cell.cell_id)
        self.watch = PruningWatch(self.trial, cell, self.sweep) if self.pruning() else None
        return cell

    def finish(self, cell: Cell, wall_time_s: float) -> tuple[str, str]:
        """Tells the study how the trial's run ended; returns (completed|pruned|failed, what it found)."""
        from optuna.trial import TrialState

        trial, watch = self.trial, self.watch
        trial.set_user_attr("wall_time_s", round(wall_time_s, 1))
        run = completed_run(cell, self.sweep)
        if run is not None:
            trial.set_user_attr("run_id", run["run_info"]["run_id"])
            if watch is not None:  # every evaluation, also those after the last poll: the pruner's statistics
                watch.report(run["train_info"].get("history") or [], prune=False)
            values = [FIGURES[name](run) for name in self.settings.objectives]
            if None not in values:
                self.study.tell(trial, values)
                return "completed", ", ".join(
                    f"{OBJECTIVES[name][0]} {value:.4g}" for name, value in zip(self.settings.objectives, values))
        if run is None and watch is not None and watch.pruned_at_step is not None:
            trial.set_user_attr("pruned_at_step", watch.pruned_at_step)
            if watch.run_dir:
                trial.set_user_attr("run_id", os.path.basename(watch.run_dir))
            self.study.tell(trial, state=TrialState.PRUNED)
            return "pruned", (f"at step {watch.pruned_at_step} (validation accuracy {watch.pruned_accuracy:.4f}); its "
                              f"run was stopped and recorded itself as interrupted")
        trial.set_user_attr("run_failed", True)
        self.study.tell(trial, state=TrialState.FAIL)
        return "failed", (f"see {os.path.join(self.sweep.folder, 'logs', cell.cell_id + '.log')}"
                          if run is None else "its run recorded no " + " or ".join(self.settings.objectives))

    def chosen(self):
        """The trial every seed's run uses: the best (one objective), or the Pareto front's most accurate."""
        if len(self.settings.objectives) == 1:
            try:
                return self.study.best_trial
            except ValueError:  # no trial completed
                return None
        return min(self.study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number), default=None)

    def record(self) -> dict:
        """The search for benchmark.json: where the study is, how it sampled, every trial, the front, the choice."""
        chosen, objectives = self.chosen(), self.settings.objectives
        return {
            "study_storage": os.path.relpath(study_path(self.sweep), self.sweep.folder),
            "study_name": self.study.study_name,
            "objectives": {OBJECTIVES[name][0]: OBJECTIVES[name][1] for name in objectives},
            "trials_total": self.settings.trials,
            "sampler": f"TPESampler(seed={self.sweep.lr_search_seed}, "
                       f"n_startup_trials={random_trials(self.settings.trials)})",
            "pruner": PRUNER_DESCRIPTION if self.pruning() else None,
            "search_space": {name: spec.describe() for name, spec in self.space.items()},
            "trials": [trial_record(trial, objectives) for trial in self.study.get_trials(deepcopy=False)],
            "pareto_front": [t.number for t in self.study.best_trials] if len(objectives) > 1 else None,
            "chosen_trial": chosen.number if chosen else None,
            "chosen_params": dict(chosen.params) if chosen else None,
            "chosen_options": self.options_of(chosen.params) if chosen else None,
            "selected_on": "best validation accuracy of one seed" if len(objectives) == 1 else
                           f"the most accurate trial of the Pareto front of {' and '.join(objectives)} (ties: the "
                           f"lower {objectives[1]})",
        }


def trial_record(trial, objectives: list[str]) -> dict:
    """One trial as benchmark.json lists it; a pruned trial's value is its accuracy where it was stopped."""
    keys = [OBJECTIVES[name][0] for name in objectives]
    attrs = trial.user_attrs
    return {"number": trial.number, "state": trial.state.name.lower(), "params": dict(trial.params),
            "values": dict(zip(keys, trial.values)) if trial.values else None, "run_id": attrs.get("run_id"),
            "cell_id": attrs.get("cell_id"), "retry_of": attrs.get("retry_of"),
            "pruned_at_step": attrs.get("pruned_at_step"), "wall_time_s": attrs.get("wall_time_s")}


def describe_choice(cell: Cell, record: dict) -> str:
    states = [trial["state"] for trial in record["trials"]]
    tally = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail") if states.count(s))
    if record["chosen_trial"] is None:
        return (f"warning: no Optuna trial of {cell.group} completed ({tally}); its runs use the method's "
                f"settings")
    (chosen,) = [trial for trial in record["trials"] if trial["number"] == record["chosen_trial"]]
    values = ", ".join(f"{key} {value:.4g}" for key, value in chosen["values"].items())
    return (f"{cell.method} on {cell.dataset} with {cell.model}: trial {chosen['number']} "
            f"({' '.join(record['chosen_options'])}; {values}) of {len(states)} trials ({tally})")


def cells_to_check(sweep: Sweep, first: Cell) -> list[Cell]:
    """Trial cells at the ends of every range of the group's space: parsed before anything runs. Imports no optuna."""
    space = search_space(get_method(first.method), base_learning_rate(sweep, first.method))
    return [Cell("trial", first.method, first.dataset, first.model, sweep.lr_search_seed, trial=0,
                 trial_options=tuple(options(params))) for params in corners(space)]


def describe_trials(sweep: Sweep, first: Cell) -> str:
    """A group's search as --dry_run shows it: trial 0's command, and the ranges every trial samples."""
    cell = Cell("trial", first.method, first.dataset, first.model, sweep.lr_search_seed, trial=0)
    space = search_space(get_method(first.method), base_learning_rate(sweep, first.method))
    return (f"{sweep.optuna_search.trials} Optuna trials of {first.group}, e.g. {cell.cell_id}: python "
            f"{get_method(first.method).script} {shlex.join(cell.argv(sweep))}, sampling "
            + ", ".join(f"--{name} ({spec.describe()})" for name, spec in space.items()))
