"""Run a whole comparison: methods × data sets × models × seeds, each cell a normal training run, then the
statistics report (report.md with charts) over the seeds.

    python benchmark.py --preset quick                     # offline, a few minutes on a 2-core CPU
    python benchmark.py --preset quick --lr_search         # first choose each method's rate on validation
    python benchmark.py --methods full lora prefix --datasets sst2 --data_dir ../shared/data \
        --seeds 1 2 3 --run_args "--max_train_samples 8000 --max_eval_samples 1000 --num_train_epochs 1"
    python benchmark.py --preset sst2_distilbert_full_vs_lora     # a design document's experiment (GPU)
    python benchmark.py --config my_sweep.yaml --seeds 1 2 3 4 5  # the command line overrides the file
    python benchmark.py --list_presets

A sweep lives in results/benchmarks/<name>/ (runs/, lr_search/runs/, benchmark.json, logs/, report.md).
Re-running the same command resumes it: cells whose run completed are skipped, an interrupted or killed
cell's run continues from its last checkpoint (train_<method>.py --resume), failed cells run again. Each cell
runs as its own process, so its peak memory is its own.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from config import ConfigError, check, config_file_values, parse_args, set_config_defaults
from ftbench.registry import get_method, method_names
from ftbench.sweep_cells import Cell, Sweep, choose_learning_rate, completed_run, resumable_run, run_cells, search_cells
from ftbench.sweep_cells import find_runs as find_runs  # re-exported: tests and bench_speed.py use benchmark.find_runs

ROOT = os.path.dirname(os.path.abspath(__file__))
MANIFEST_FILE = "benchmark.json"
MANIFEST_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Preset:
    description: str
    methods: list
    datasets: list
    models: list
    run_args: str = ""
    method_args: dict = field(default_factory=dict)  # method -> extra options for that method's runs
    seeds: tuple = (1, 2, 3)
    lr_search: bool = False  # choose each method's rate on validation first (--lr_search)
    lr_search_args: str = ""  # the search runs' budget (--lr_search_args, which is added after it)


# The design documents' experiments, with what they state: model, data set, epochs, maximum length and LoRA's
# 5e-4 learning rate. What they leave open (other rates, batch size 32, warm-up) is the suite's default.
PRESETS = {
    # LoRA's default 1e-3 barely moves in 47 steps; short budgets favour higher rates (README, learning rates).
    "quick": Preset(
        "the offline default model (MiniLM) and data (tweets), full fine-tuning, LoRA (lr 3e-3) and prefix "
        "tuning, 1,500 training examples for 1 epoch, 3 seeds: about 10 minutes on a 2-core CPU",
        ["full", "lora", "prefix"], ["tweets"], ["minilm"],
        "--max_train_samples 1500 --max_eval_samples 400 --num_train_epochs 1", {"lora": "--learning_rate 3e-3"}),
    "sst2_distilbert_full_vs_lora": Preset(
        "SST-2, DistilBERT, full fine-tuning vs LoRA (lr 5e-4), 10 epochs (GPU)",
        ["full", "lora"], ["sst2"], ["distilbert"], "--num_train_epochs 10",
        {"lora": "--learning_rate 5e-4"}),
    "imdb_distilbert_full_vs_lora": Preset(
        "IMDb, DistilBERT, full fine-tuning vs LoRA (lr 5e-4), 3 epochs, max length 256 (GPU)",
        ["full", "lora"], ["imdb"], ["distilbert"], "--num_train_epochs 3 --max_seq_length 256",
        {"lora": "--learning_rate 5e-4"}),
    "imdb_bertbase_full_vs_prefix": Preset(
        "IMDb, BERT-base, full fine-tuning vs prefix tuning, 3 epochs, max length 256 (GPU)",
        ["full", "prefix"], ["imdb"], ["bert-base"], "--num_train_epochs 3 --max_seq_length 256"),
    "nsmc_kluero_full_vs_lora": Preset(
        "NSMC, klue/roberta-base, full fine-tuning vs LoRA (lr 5e-4), 3 epochs (GPU)",
        ["full", "lora"], ["nsmc"], ["klue-roberta"], "--num_train_epochs 3", {"lora": "--learning_rate 5e-4"}),
    "sst2_bertbase_full_vs_prefix": Preset(
        "SST-2, BERT-base, full fine-tuning vs prefix tuning, 3 epochs (GPU)",
        ["full", "prefix"], ["sst2"], ["bert-base"], "--num_train_epochs 3"),
    # The full-scale sweeps behind docs/findings.md (python report.py --findings), on the offline model; give
    # --data_dir ../shared/data. Budgets and what they leave open: docs/findings.md.
    "findings_sst2": Preset(
        "findings: SST-2 complete (60,275 training sentences, the 872-sentence dev set as test), MiniLM, full "
        "fine-tuning, LoRA and prefix tuning, 3 epochs, each rate chosen on validation first: hours on a CPU",
        ["full", "lora", "prefix"], ["sst2"], ["minilm"], "--num_train_epochs 3", lr_search=True,
        lr_search_args="--max_train_samples 20000 --num_train_epochs 1"),
    "findings_sst2_lora_5e-4": Preset(
        "findings: as findings_sst2, LoRA at the design documents' rate 5e-4",
        ["lora"], ["sst2"], ["minilm"], "--num_train_epochs 3", {"lora": "--learning_rate 5e-4"}),
    "findings_phrasebank": Preset(
        "findings: Financial PhraseBank, all 4,846 sentences (50% annotator agreement), 3 classes, MiniLM, every "
        "method, 3 epochs, each rate chosen on validation first",
        method_names(), ["financial_phrasebank"], ["minilm"], "--phrasebank_agreement 50 --num_train_epochs 3",
        lr_search=True, lr_search_args="--num_train_epochs 1"),
    "findings_imdb": Preset(
        "findings: IMDb at 256 tokens, MiniLM, full fine-tuning, LoRA and prefix tuning, 5,000 training reviews "
        "for 2 epochs, validation and test on 2,000 reviews each, each rate chosen on validation first",
        ["full", "lora", "prefix"], ["imdb"], ["minilm"],
        "--max_seq_length 256 --max_train_samples 5000 --max_eval_samples 2000 --num_train_epochs 2",
        lr_search=True, lr_search_args="--max_train_samples 2000 --max_eval_samples 500 --num_train_epochs 1"),
}


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
                                         "keep the one with the best validation accuracy; test results are not used."})
    lr_search_factors: list[float] = field(
        default_factory=lambda: [0.3, 1.0, 3.0],
        metadata={"help": "Learning rates tried: the method's rate times each factor."})
    lr_search_args: str = field(
        default="", metadata={"help": "Options added to the search runs only, to budget them, e.g. "
                                      "\"--max_train_samples 1000\"."})
    lr_search_seed: int = field(default=1, metadata={"help": "Training seed of the search runs."})
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


def parse_benchmark_args(argv: list[str]) -> tuple[BenchmarkArguments, dict]:
    """The command line over an optional --config file; returns the arguments and the file's method_args."""
    from config import OptionParser

    parser = OptionParser(BenchmarkArguments, prog="benchmark.py",
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
    args, remaining = outputs[0], outputs[-1]
    check(not remaining, f"unrecognized arguments: {' '.join(remaining)} (run with --help to see every option)")
    return args, file_method_args


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
        lr_search=args.lr_search or bool(preset and preset.lr_search), lr_search_factors=list(args.lr_search_factors),
        lr_search_args=_split_options(preset.lr_search_args if preset else "", "the preset's search options")
        + _split_options(args.lr_search_args, "--lr_search_args"), lr_search_seed=args.lr_search_seed)


# ---------------------------------------------------------------------------------------------------
# Running


def die_with_parent() -> None:
    """In the child: receive SIGINT when the benchmark process dies (even by SIGKILL), so that an orphaned run
    stops and records itself as interrupted instead of finishing unobserved beside a re-run of its cell."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Which cell, how far, time so far and an estimate of what remains (from cells run in this invocation)."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.durations: dict[str, list[float]] = {}

    def estimate(self, remaining: list[Cell]) -> str:
        if not self.durations:
            return "remaining: estimated after the first cell"
        overall = [d for ds in self.durations.values() for d in ds]
        seconds = sum(sum(self.durations.get(c.method, overall)) / len(self.durations.get(c.method, overall))
                      for c in remaining)
        return f"remaining ≈ {_clock(seconds)}"

    def start(self, cell: Cell, remaining: list[Cell]) -> None:
        self.done += 1
        what = f"lr {cell.learning_rate:g} search" if cell.kind == "lr_search" else "run"
        print(f"[{self.done}/{self.total}] {cell.method} · {cell.dataset} · {cell.model} · seed {cell.seed} ({what}); "
              f"elapsed {_clock(time.monotonic() - self.started)}; {self.estimate(remaining)}", flush=True)

    def skip(self, cell: Cell, run: dict) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {cell.cell_id}: already completed ({run['run_info']['run_id']}), skipped",
              flush=True)

    def finish(self, cell: Cell, seconds: float) -> None:
        self.durations.setdefault(cell.method, []).append(seconds)


def run_cell(cell: Cell, sweep: Sweep, learning_rate: float | None) -> tuple[int, float]:
    """One training run in its own process, its output in logs/<cell id>.log; returns (exit status, seconds)."""
    os.makedirs(os.path.join(sweep.folder, "logs"), exist_ok=True)
    resume_dir = resumable_run(cell, sweep)
    command = [sys.executable, os.path.join(ROOT, get_method(cell.method).script)] + (
        ["--resume", resume_dir] if resume_dir else cell.argv(sweep, learning_rate))
    log_path = os.path.join(sweep.folder, "logs", f"{cell.cell_id}.log")
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        try:
            status = process.wait()
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches the child too (same process group) and it records itself as
            # interrupted; a second signal could cut that short, so it is sent only if the child goes on.
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                process.wait()
            raise
    return status, time.monotonic() - start


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_manifest(sweep: Sweep, created_at: str, cells: list[dict], lr_choices: dict, state: str) -> None:
    from ftbench.run_store import write_json_atomic

    write_json_atomic(os.path.join(sweep.folder, MANIFEST_FILE), {
        "schema_version": MANIFEST_SCHEMA_VERSION, "name": sweep.name, "state": state,
        "settings": sweep.settings(), "settings_fingerprint": sweep.fingerprint(),
        "created_at": created_at, "updated_at": _now(), "command": shlex.join(["benchmark.py"] + sys.argv[1:]),
        "lr_search": lr_choices, "cells": cells})


def check_folder(sweep: Sweep) -> str | None:
    """A sweep folder is only resumed by the same settings; anything else would mix incomparable runs.
    Returns when the sweep was first created, or None for a new one."""
    path = os.path.join(sweep.folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is unreadable ({error}); move the folder away or give --name") from None
    if previous.get("settings_fingerprint") != sweep.fingerprint():
        old = previous.get("settings", {})
        differing = sorted(k for k in set(old) | set(sweep.settings()) if old.get(k) != sweep.settings().get(k))
        raise ConfigError(f"{sweep.folder} holds a sweep with other settings (differing: {', '.join(differing)}); "
                          f"give --name for a new sweep, or re-run it with its own settings to resume it")
    return previous.get("created_at")


def _cell_record(cell: Cell, status: str, run: dict | None, seconds: float | None, learning_rate=None) -> dict:
    return {"cell_id": cell.cell_id, "kind": cell.kind, "method": cell.method, "dataset": cell.dataset,
            "model": cell.model, "seed": cell.seed, "learning_rate": cell.learning_rate or learning_rate,
            "status": status, "run_id": run["run_info"]["run_id"] if run else None,
            "test_accuracy": (run["train_info"].get("test") or {}).get("accuracy") if run and cell.kind == "run"
            else None, "wall_time_s": None if seconds is None else round(seconds, 1)}


def execute(sweep: Sweep, dry_run: bool = False) -> int:
    searches = search_cells(sweep) if sweep.lr_search else []
    runs = run_cells(sweep)
    for cell in searches + runs:  # every cell's options are checked before anything runs
        parse_args(cell.method, cell.argv(sweep, 1e-3 if cell.kind == "run" and sweep.lr_search else None))
    if dry_run:
        for cell in searches + runs:
            print(f"{cell.cell_id}: python {get_method(cell.method).script} {shlex.join(cell.argv(sweep))}")
        print(f"{len(searches) + len(runs)} cells; nothing run (--dry_run)")
        return 0
    created_at = check_folder(sweep) or _now()
    os.makedirs(sweep.folder, exist_ok=True)
    print(f"sweep {sweep.name} in {sweep.folder}: {len(sweep.methods)} method(s) × {len(sweep.datasets)} data "
          f"set(s) × {len(sweep.models)} model(s) × {len(sweep.seeds)} seed(s) = {len(runs)} runs"
          + (f", after {len(searches)} learning-rate search runs" if searches else ""), flush=True)
    progress = Progress(len(searches) + len(runs))
    records: list[dict] = []
    lr_choices: dict = {}

    def save(state: str) -> None:
        write_manifest(sweep, created_at, records, lr_choices, state)

    save("running")
    failed = 0
    try:
        for index, cell in enumerate(searches + runs):
            if cell.kind == "run" and sweep.lr_search and cell.group not in lr_choices:
                lr_choices[cell.group] = _search_result(cell, searches, sweep)
            chosen = (lr_choices.get(cell.group) or {}).get("chosen_learning_rate") if cell.kind == "run" else None
            done = completed_run(cell, sweep)
            if done is not None:
                progress.skip(cell, done)
                records.append(_cell_record(cell, "completed", done, None, chosen))
                continue
            progress.start(cell, (searches + runs)[index + 1:])
            status, seconds = run_cell(cell, sweep, chosen)
            progress.finish(cell, seconds)
            done = completed_run(cell, sweep)
            if status == 0 and done is not None:
                test = done["train_info"]["test"]
                print(f"    completed in {seconds:.0f} s: best validation accuracy "
                      f"{done['train_info']['best_val']['val_accuracy']:.4f}"
                      + (f", test accuracy {test['accuracy']:.4f}" if cell.kind == "run" else ""), flush=True)
                records.append(_cell_record(cell, "completed", done, seconds, chosen))
            else:
                failed += 1
                print(f"    failed (exit status {status}) after {seconds:.0f} s; see "
                      f"{os.path.join(sweep.folder, 'logs', cell.cell_id + '.log')}", flush=True)
                records.append(_cell_record(cell, "failed", None, seconds, chosen))
            save("running")
    except KeyboardInterrupt:
        save("interrupted")
        print("interrupted; re-run the same command to resume (completed cells are kept)", file=sys.stderr)
        return 130
    save("completed" if not failed else "completed with failures")
    print(f"sweep done in {_clock(time.monotonic() - progress.started)}: "
          f"{sum(r['status'] == 'completed' for r in records)} of {len(records)} cells completed", flush=True)
    return 1 if failed else 0


def _search_result(cell: Cell, searches: list[Cell], sweep: Sweep) -> dict:
    candidates = []
    for search in (s for s in searches if s.group == cell.group):
        run = completed_run(search, sweep)
        best = run["train_info"]["best_val"] if run else {}
        candidates.append({"learning_rate": search.learning_rate, "run_id": run["run_info"]["run_id"] if run else None,
                           "best_val_accuracy": best.get("val_accuracy"), "best_val_loss": best.get("val_loss")})
    chosen = choose_learning_rate(candidates)
    if chosen is None:
        print(f"    warning: every learning-rate search run of {cell.group} failed; its runs use the method's rate",
              flush=True)
    else:
        print(f"    {cell.method} on {cell.dataset} with {cell.model}: learning rate {chosen['learning_rate']:g} "
              f"(validation accuracy {chosen['best_val_accuracy']:.4f}; tried "
              f"{', '.join(format(c['learning_rate'], 'g') for c in candidates)})", flush=True)
    return {"candidates": candidates, "chosen_learning_rate": chosen["learning_rate"] if chosen else None,
            "selected_on": "best validation accuracy of one seed (ties: lower validation loss)"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, file_method_args = parse_benchmark_args(argv)
        if args.list_presets:
            for name, preset in PRESETS.items():
                print(f"{name}: {preset.description}")
            return 0
        sweep = resolve(args, file_method_args)
        status = execute(sweep, args.dry_run)
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
    return status


if __name__ == "__main__":
    sys.exit(main())
