"""Run a whole comparison: methods × data sets × models × seeds, each cell a normal training run, then the
statistics report (report.md with charts) over the seeds.

    python benchmark.py --preset quick                     # offline, a few minutes on a 2-core CPU
    python benchmark.py --preset quick --lr_search         # first choose each method's rate on validation
    python benchmark.py --preset quick --search optuna --trials 20   # or its settings, with Optuna
    python benchmark.py --methods full lora prefix --datasets sst2 --data_dir ../shared/data \
        --seeds 1 2 3 --run_args "--max_train_samples 8000 --max_eval_samples 1000 --num_train_epochs 1"
    python benchmark.py --preset sst2_distilbert_full_vs_lora     # a design document's experiment (GPU)
    python benchmark.py --config my_sweep.yaml --seeds 1 2 3 4 5  # the command line overrides the file
    python benchmark.py --list_presets
    python benchmark.py --preset findings_sst2 --dry_run         # its cells and their commands; nothing runs

A sweep lives in results/benchmarks/<name>/ (runs/, lr_search/runs/ or optuna_search/ with its runs and the
Optuna studies, benchmark.json, logs/, report.md).
Re-running the same command resumes it: cells whose run completed are skipped, an interrupted or killed
cell's run continues from its last checkpoint (train_<method>.py --resume), failed cells run again. Each cell
runs as its own process, so its peak memory is its own.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from config import ConfigError, check, config_file_values, parse_args, set_config_defaults
from ftbench.errors import check_only_with, flags_set
from ftbench.launchers import CellJob, LaunchSettings, LocalLauncher, make_launcher, run_cell
from ftbench.lr_search import MAX_EDGE_STEPS, earlier_steps, edge_steps, search_results, supersede_runs_at_other_rates
from ftbench.optuna_search import (
    OBJECTIVES,
    PRUNERS,
    cells_to_check,
    check_recorded_space,
    describe_trials,
    import_optuna,
)
from ftbench.registry import get_method, method_names
from ftbench.sweep_cells import (
    Cell,
    OptunaSearch,
    Sweep,
    completed_run,
    learning_rate_options,
    run_cells,
    search_cells,
)
from ftbench.sweep_cells import find_runs as find_runs  # re-exported: tests and bench_speed.py use benchmark.find_runs
from ftbench.sweep_manifest import cell_wall_time, check_folder, now, write_manifest
from ftbench.sweep_presets import PRESETS  # also read as benchmark.PRESETS
from ftbench.sweep_progress import Progress, clock

SEARCHES = ("none", "grid", "optuna")


@dataclass
class BenchmarkArguments:
    preset: str | None = field(
        default=None, metadata={"help": f"A ready-made sweep: {', '.join(PRESETS)} (--list_presets describes them). "
                                        "Options given as well override the preset's."})
    name: str | None = field(
        default=None, metadata={"help": "The sweep's name and folder (<output_dir>/<name>); default: the preset's "
                                        "name, or 'sweep'. Re-using a name resumes that sweep."})
    output_dir: str = field(default=os.path.join("results", "benchmarks"),
                            metadata={"help": "Where sweep folders are created."})
    methods: list[str] | None = field(default=None, metadata={"help": f"Methods: {', '.join(method_names())}."})
    datasets: list[str] | None = field(default=None, metadata={"help": "Data sets (the training scripts' --dataset)."})
    models: list[str] | None = field(default=None, metadata={
        "help": "Models (the training scripts' --model_name_or_path: alias, Hub id or folder)."})
    seeds: list[int] | None = field(default=None, metadata={"help": "Training seeds, one run per seed (default 1 2 3). "
                                                                    "The data split stays fixed (--split_seed)."})
    data_dir: str | None = field(default=None,
                                 metadata={"help": "The training scripts' --data_dir, e.g. ../shared/data."})
    run_args: str | None = field(
        default=None, metadata={"help": "Options added to every run, as one string, e.g. \"--max_train_samples 2000 "
                                        "--num_train_epochs 1\" (after the preset's, so they win)."})
    method_args: list[str] | None = field(
        default=None, metadata={"help": "Options for one method's runs, as 'method=options', e.g. "
                                        "\"lora=--lora_r 16 --learning_rate 2e-3\" (in a config file: a mapping)."})
    lr_search: bool = field(
        default=False, metadata={"help": "Before the sweep, train each method at a few learning rates (one seed) and "
                                         "keep the one with the best validation accuracy; test results are not used. "
                                         "The same as --search grid."})
    lr_search_factors: list[float] = field(
        default_factory=lambda: [0.3, 1.0, 3.0],
        metadata={"help": "Learning rates tried: the method's rate times each factor; where the best is the highest "
                          "or lowest tried, up to 2 more steps past it, by the grid's ratio at that end."})
    search: str | None = field(
        default=None, metadata={"help": "How each method's settings are chosen on validation (one seed) before the "
                                        "sweep's runs: 'grid' (--lr_search), 'optuna' (--trials runs sampled from the "
                                        "method's search space: docs/benchmark.md), or 'none' (also over a preset's "
                                        "search). Test results are never used."})
    trials: int = field(
        default=20, metadata={"help": "With --search optuna: trials per method, data set and model, in all: a resumed "
                                      "search runs only the missing ones."})
    objectives: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={"help": "With --search optuna: 'accuracy' (the best validation accuracy, maximised), optionally "
                          "followed by 'train_time' or 'peak_memory' (minimised): the report then shows the Pareto "
                          "front of the trials, and the runs use its most accurate trial."})
    pruner: str | None = field(
        default=None, metadata={"help": "With --search optuna and one objective: 'median' (the default there) stops a "
                                          "trial whose validation accuracy falls below the median of earlier trials' "
                                          "at the same step (optuna's MedianPruner, after 5 trials); 'none' never "
                                          "does. Optuna does not prune two objectives."})
    lr_search_args: str = field(
        default="", metadata={"help": "Options added to the search runs only (grid or Optuna), to budget them, e.g. "
                                      "\"--max_train_samples 1000\"."})
    lr_search_seed: int = field(default=1, metadata={"help": "Training seed of the search runs (grid or Optuna), "
                                                            "and the seed of Optuna's sampler."})
    report: bool = field(default=True, metadata={"help": "Write report.md and its charts when the sweep ends."})
    dry_run: bool = field(default=False, metadata={"help": "Print the cells and their commands, run nothing."})
    list_presets: bool = field(default=False, metadata={"help": "Describe the presets and exit."})

    def __post_init__(self):
        check(self.preset is None or self.preset in PRESETS,
               f"unknown --preset '{self.preset}'; choose one of {', '.join(PRESETS)}")
        for method in self.methods or []:
            check(method in method_names(),
                  f"unknown method '{method}' in --methods; choose from {', '.join(method_names())}")
        check(not self.seeds or len(set(self.seeds)) == len(self.seeds), f"--seeds repeats a seed: {self.seeds}")
        check(all(f > 0 for f in self.lr_search_factors) and bool(self.lr_search_factors),
               "--lr_search_factors must be positive numbers, e.g. 0.3 1 3")
        check(self.name is None or (self.name.strip() and "/" not in self.name and self.name not in (".", "..")),
               f"--name must be a plain folder name, got '{self.name}'")
        self.check_search()

    def check_search(self) -> None:
        check(self.search is None or self.search in SEARCHES,
              f"unknown --search '{self.search}'; choose one of {', '.join(SEARCHES)}")
        check(not (self.lr_search and self.search not in (None, "grid")),
              f"--lr_search is --search grid; drop it or --search {self.search}")
        check(self.trials >= 1, f"--trials must be at least 1, got {self.trials}")
        check(self.pruner is None or self.pruner in PRUNERS,
              f"unknown --pruner '{self.pruner}'; choose one of {', '.join(PRUNERS)}")
        check(not (self.pruner == "median" and len(self.objectives) > 1),
              "--pruner median prunes one objective only (optuna does not prune multi-objective studies); drop it")
        seconds = [o for o in OBJECTIVES if o != "accuracy"]
        check(self.objectives[:1] == ["accuracy"] and len(self.objectives) <= 2
              and all(o in seconds for o in self.objectives[1:]),
              f"--objectives must be accuracy, optionally followed by one of {', '.join(seconds)}; got "
              f"{' '.join(self.objectives)}")
        check_only_with(flags_set(self, ("trials", "objectives", "pruner")), "--search optuna", self.search == "optuna")


def _split_options(text: str, what: str) -> list:
    try:
        return shlex.split(text or "")
    except ValueError as error:
        raise ConfigError(f"{what} is not a valid option string ({error}); quote it as one argument") from None


def _method_args(values) -> dict:
    """'lora=--lora_r 16' strings (command line) or a {method: options} mapping (config file)."""
    if isinstance(values, dict):
        pairs = values.items()
    else:
        pairs = []
        for value in values or []:
            check("=" in value, f"--method_args '{value}' needs the form method=options, e.g. 'lora=--lora_r 16'")
            pairs.append(value.split("=", 1))
    result = {}
    for method, options in pairs:
        check(method in method_names(),
                  f"unknown method '{method}' in --method_args; choose from {', '.join(method_names())}")
        result[method] = _split_options(options, f"--method_args for {method}")
    return result


def parse_benchmark_args(argv: list[str]) -> tuple[BenchmarkArguments, LaunchSettings, dict]:
    """The command line over an optional --config file: the sweep's arguments, how its cells run, and the file's
    method_args."""
    from config import OptionParser

    parser = OptionParser((BenchmarkArguments, LaunchSettings), prog="benchmark.py",
                     description="Run a grid of fine-tuning runs over seeds and write the statistics report.")
    parser.add_argument("--config", default=None, help="A JSON or YAML file of these options; the command line "
                                                       "overrides it. method_args may be a mapping there.")
    path, values = config_file_values(argv, "benchmark.py")
    # A mapping of method_args is the file's own form; the parser takes the command line's strings.
    file_method_args = values.pop("method_args") if isinstance(values.get("method_args"), dict) else {}
    if path:
        set_config_defaults(parser, path, values)
    try:
        outputs = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error).splitlines()[0]) from None
    args, launch, remaining = outputs[0], outputs[1], outputs[-1]
    check(not remaining, f"unrecognized arguments: {' '.join(remaining)} (run with --help to see every option)")
    return args, launch, file_method_args


def resolve(args: BenchmarkArguments, file_method_args: dict) -> Sweep:
    preset = PRESETS.get(args.preset) if args.preset else None
    methods = args.methods or (preset.methods if preset else None)
    check(bool(methods), "no methods: give --preset (e.g. quick) or --methods (e.g. full lora)")
    method_args = {m: _split_options(o, f"the preset's options for {m}") for m, o in
                   (preset.method_args if preset else {}).items()}
    for method, options in (_method_args(file_method_args) | _method_args(args.method_args)).items():
        method_args[method] = method_args.get(method, []) + options
    name = args.name or args.preset or "sweep"
    return Sweep(
        name=name, folder=os.path.join(args.output_dir, name), methods=list(methods),
        datasets=list(args.datasets or (preset.datasets if preset else ["tweets"])),
        models=list(args.models or (preset.models if preset else ["minilm"])),
        seeds=list(args.seeds or (preset.seeds if preset else (1, 2, 3))),
        data_dir=args.data_dir,
        run_args=_split_options(preset.run_args if preset else "", "the preset's options")
        + _split_options(args.run_args, "--run_args"),
        method_args={m: o for m, o in method_args.items() if m in methods},
        lr_search=args.search == "grid" or args.lr_search or bool(args.search is None and preset and preset.lr_search),
        lr_search_factors=list(args.lr_search_factors),
        lr_search_args=_split_options(preset.lr_search_args if preset else "", "the preset's search options")
        + _split_options(args.lr_search_args, "--lr_search_args"), lr_search_seed=args.lr_search_seed,
        optuna_search=OptunaSearch(args.trials, list(args.objectives),
                                   args.pruner or ("median" if len(args.objectives) == 1 else "none"))
        if args.search == "optuna" else None)


# ---------------------------------------------------------------------------------------------------
# Running


def _cell_record(cell: Cell, status: str, run: dict | None, seconds: float | None, chosen: list[str]) -> dict:
    learning_rate = float(chosen[chosen.index("--learning_rate") + 1]) if "--learning_rate" in chosen else None
    wall_time_s, exact = cell_wall_time(run, seconds)
    return {"cell_id": cell.cell_id, "kind": cell.kind, "method": cell.method, "dataset": cell.dataset,
            "model": cell.model, "seed": cell.seed, "learning_rate": cell.learning_rate or learning_rate,
            "chosen_options": chosen or None, "status": status, "run_id": run["run_info"]["run_id"] if run else None,
            "test_accuracy": (run["train_info"].get("test") or {}).get("accuracy") if run and cell.kind == "run"
            else None, "wall_time_s": wall_time_s, "wall_time_exact": exact}


def check_cells(sweep: Sweep, searches: list[Cell], runs: list[Cell]) -> None:
    """Every cell's options, parsed before anything runs; an Optuna search's at every end of its ranges."""
    searched = learning_rate_options(1e-3) if sweep.lr_search or sweep.optuna_search else None
    for cell in searches + runs:
        parse_args(cell.method, cell.argv(sweep, searched if cell.kind == "run" else None))
    if sweep.optuna_search:
        import_optuna()  # one line naming the package when it is missing, before anything is written
        for first in group_cells(runs):
            check_recorded_space(sweep, first)
            for cell in cells_to_check(sweep, first):
                parse_args(cell.method, cell.argv(sweep))


def group_cells(runs: list[Cell]) -> list[Cell]:
    """The first run cell of each method, data set and model: what a search is made for."""
    return list({cell.group: cell for cell in reversed(runs)}.values())[::-1]


def print_dry_run(sweep: Sweep, searches: list[Cell], runs: list[Cell]) -> None:
    def command(cell: Cell) -> str:
        return f"{cell.cell_id}: python {get_method(cell.method).script} {shlex.join(cell.argv(sweep))}"

    trials = sweep.optuna_search.trials * len(group_cells(runs)) if sweep.optuna_search else 0
    lines = [command(cell) for cell in searches]
    lines += [describe_trials(sweep, first) for first in group_cells(runs)] if trials else []
    lines += [command(cell) for cell in runs]
    steps = (f", and up to {MAX_EDGE_STEPS * len(group_cells(runs))} search cells past the grid ({MAX_EDGE_STEPS} for "
             "a method whose best rate is at its edge)") if searches else ""
    print("\n".join(lines) + f"\n{len(searches) + len(runs)} cells" + (f" and {trials} Optuna trials" if trials else "")
          + steps + "; nothing run (--dry_run)")


def execute(sweep: Sweep, launch: LaunchSettings | None = None, dry_run: bool = False) -> int:
    searches = search_cells(sweep) if sweep.lr_search else []
    runs = run_cells(sweep)
    check_cells(sweep, searches, runs)
    if dry_run:
        print_dry_run(sweep, searches, runs)
        return 0
    launch = launch or LaunchSettings()
    launcher, how = make_launcher(launch, sweep.folder)  # refusals (a missing package, too few GPUs) come first
    created_at = check_folder(sweep) or now()
    os.makedirs(sweep.folder, exist_ok=True)
    trials = sweep.optuna_search.trials * len(group_cells(runs)) if sweep.optuna_search else 0
    print(f"sweep {sweep.name} in {sweep.folder}: {len(sweep.methods)} method(s) × {len(sweep.datasets)} data "
          f"set(s) × {len(sweep.models)} model(s) × {len(sweep.seeds)} seed(s) = {len(runs)} runs"
          + (f", after {len(searches)} learning-rate search runs" if searches else "")
          + (f", after {trials} Optuna trials" if trials else "") + f"; {how}", flush=True)
    progress = Progress(len(searches) + trials + len(runs), at_once=launch.parallel)
    records: dict[str, dict] = {}
    choices: dict = {"lr_search": {}, "optuna_search": {}}

    def save(state: str) -> None:
        write_manifest(sweep, created_at, [records[c.cell_id] for c in searches + runs if c.cell_id in records],
                       choices, state)

    def search_more(steps: list[Cell]) -> list[Cell]:
        searches.extend(steps)
        progress.total += len(steps)
        run_batch(steps, sweep, choices, launcher, progress, records, save)
        return steps

    save("running")
    try:
        if sweep.optuna_search:
            run_optuna_searches(sweep, runs, progress, choices["optuna_search"], save, launcher)
        run_batch(searches, sweep, choices, launcher, progress, records, save)
        if sweep.lr_search:  # past the grid's edge (ftbench/lr_search.py); an earlier invocation's steps are skipped
            firsts = group_cells(runs)
            search_more(earlier_steps(firsts, searches, sweep))
            while search_more(edge_steps(firsts, searches, sweep)):
                pass
            choices["lr_search"] = search_results(firsts, searches, sweep)
        supersede_runs_at_other_rates(runs, sweep, {group: choice["chosen_learning_rate"]
                                                    for group, choice in choices["lr_search"].items()})
        run_batch(runs, sweep, choices, launcher, progress, records, save)
    except KeyboardInterrupt:
        save("interrupted")
        print("interrupted; re-run the same command to resume (completed cells are kept)", file=sys.stderr)
        return 130
    failed = sum(record["status"] != "completed" for record in records.values())
    save("completed" if not failed else "completed with failures")
    print(f"sweep done in {clock(time.monotonic() - progress.started)}: "
          f"{len(records) - failed} of {len(records)} cells completed", flush=True)
    return 1 if failed else 0


def run_batch(cells: list[Cell], sweep: Sweep, choices: dict, launcher, progress: Progress, records: dict,
              save) -> None:
    """The cells that have not completed before, through the launcher (at once where it can); each cell's record
    goes into records as it ends."""
    pending = []
    for cell in cells:
        done = completed_run(cell, sweep)
        if done is None:
            pending.append(cell)
        else:
            progress.skip(cell, done)
            records[cell.cell_id] = _cell_record(cell, "completed", done, None, chosen_options(cell, choices))
    if len(pending) < len(cells):
        save("running")  # benchmark.json lists the cells completed before now, not once the next cell has ended
    lock = threading.Lock()  # the launcher reports from its worker threads

    def started(index: int) -> None:
        with lock:
            progress.start(pending[index], pending[index + 1:])

    def finished(index: int, status: int, seconds: float) -> None:
        with lock:
            record = outcome(pending[index], sweep, chosen_options(pending[index], choices), status, seconds)
            records[pending[index].cell_id] = record
            progress.finish(pending[index], record["wall_time_s"] or seconds)  # a resumed run's, all processes
            save("running")

    launcher.run([CellJob(cell, sweep, chosen_options(cell, choices)) for cell in pending], started, finished)


def chosen_options(cell: Cell, choices: dict) -> list[str]:
    """What the cell's search chose, as training options: a run cell's, after a grid or Optuna search."""
    if cell.kind != "run":
        return []
    learning_rate = (choices["lr_search"].get(cell.group) or {}).get("chosen_learning_rate")
    if learning_rate is not None:
        return learning_rate_options(learning_rate)
    return list((choices["optuna_search"].get(cell.group) or {}).get("chosen_options") or [])


def outcome(cell: Cell, sweep: Sweep, chosen: list[str], status: int, seconds: float) -> dict:
    """A cell's record for benchmark.json once its process ended, and a line saying how."""
    done = completed_run(cell, sweep)
    if status == 0 and done is not None:
        test = done["train_info"]["test"]
        print(f"    {cell.cell_id} completed in {seconds:.0f} s: best validation accuracy "
              f"{done['train_info']['best_val']['val_accuracy']:.4f}"
              + (f", test accuracy {test['accuracy']:.4f}" if cell.kind == "run" else ""), flush=True)
        return _cell_record(cell, "completed", done, seconds, chosen)
    print(f"    {cell.cell_id} failed (exit status {status}) after {seconds:.0f} s; see "
          f"{os.path.join(sweep.folder, 'logs', cell.cell_id + '.log')}", flush=True)
    return _cell_record(cell, "failed", None, seconds, chosen)


def run_optuna_searches(sweep: Sweep, runs: list[Cell], progress: Progress, choices: dict, save, launcher) -> None:
    """Each method, data set and model's Optuna search, before the sweep's runs: the trials its study lacks, each
    a cell that run_cell runs (polling the trial's pruning); the choice goes to choices[group]."""
    from ftbench.optuna_search import Search, describe_choice

    firsts = group_cells(runs)
    for index, first in enumerate(firsts):
        search = Search(sweep, first)
        if search.retried:
            print(f"    {first.group}: trial(s) {', '.join(map(str, search.retried))} stopped with the search; "
                  f"marked failed and queued again", flush=True)
        progress.skip_trials(search.finished(), first.group)
        later = [cell for cell in firsts[index + 1:] for _ in range(sweep.optuna_search.trials)] + runs
        while search.missing():
            cell = search.next_trial()
            progress.start(cell, [cell] * (search.missing() - 1) + later)
            # A retried trial whose run completed before the search was stopped is told, not trained again.
            seconds = None if completed_run(cell, sweep) else run_trial(cell, sweep, search, launcher)[1]
            seconds = cell_wall_time(completed_run(cell, sweep), seconds)[0] or 0.0  # a resumed run's: all processes
            progress.finish(cell, seconds)
            ending, detail = search.finish(cell, seconds)
            print(f"    {ending} in {seconds:.0f} s: {detail}", flush=True)
        choices[first.group] = search.record()
        print(f"    {describe_choice(first, choices[first.group])}", flush=True)
        save("running")


def run_trial(cell: Cell, sweep: Sweep, search, launcher) -> tuple[int, float]:
    """A trial's run: here, watched for pruning; or as a job of its own (submitit), which is not pruned."""
    if isinstance(launcher, LocalLauncher):
        return run_cell(cell, sweep, None, search.watch)
    return launcher.run([CellJob(cell, sweep, None)], started=lambda index: None,
                        finished=lambda index, status, seconds: None)[0]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, launch, file_method_args = parse_benchmark_args(argv)
        if args.list_presets:
            for name, preset in PRESETS.items():
                print(f"{name}: {preset.description}")
            return 0
        sweep = resolve(args, file_method_args)
        status = execute(sweep, launch, args.dry_run)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.report and not args.dry_run and status != 130:
        import report

        try:
            path = report.write_report(sweep.folder, command=f"python report.py --results_dir {sweep.folder}")
            print(f"report: {path}")
        except report.ReportError as error:
            print(f"error: no report: {error}", file=sys.stderr)
            return status or 1
        except KeyboardInterrupt:  # the cells are kept; only the report is missing (it is written atomically)
            print(f"interrupted while writing the report; write it with: python report.py --results_dir "
                  f"{sweep.folder}", file=sys.stderr)
            return 130
    return status


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (kill, a scheduler) stop the sweep alike: the cells record themselves as interrupted and
    a re-run resumes them. SIGINT is restored because a sweep started in the background (nohup ... &) ignores it."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


if __name__ == "__main__":
    stop_on_signals()
    sys.exit(main())
