"""Training speed, measured: the suite's pipeline against the strongest simple alternative (a plain Trainer with
dynamic padding and length grouping) and against the usual notebook recipe, and cost as the work grows.

    # The suite's pipeline vs the competent Trainer user (in the suite's precision, and in fp32 where that
    # differs) vs the recipe (pad to 128, no length grouping, fp32, plain AdamW); same examples, steps, seed and
    # optimizer settings; each trained once per pipeline, in one invocation, then their ratios:
    python bench_speed.py --methods full lora --dataset sst2 --data_dir ../shared/data \
        --run_args "--max_train_samples 4000 --max_eval_samples 872 --num_train_epochs 1"

    # Throughput and peak memory against sequence length and batch size (every text padded to the length,
    # so each step costs what that length costs), with and without gradient checkpointing:
    python bench_speed.py --scaling --methods full lora prefix --dataset imdb --data_dir ../shared/data

Every measurement runs in its own process (so its peak memory is its own): the suite's and the recipe's are
normal training runs of train_<method>.py, in <output_dir>/<name>/runs/; the competent user's pipeline is
ftbench/competent_pipeline.py on the same options, in <output_dir>/<name>/competent/. The comparison goes to
speed.json and speed.md, the scaling sweep to scaling.json, scaling.md and scaling.png. Re-running the same
command skips runs that completed.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

from config import ConfigError, check, parse_args
from ftbench.registry import get_method, method_names
from ftbench.speed_report import compare_method, pipeline_rows, scaling_report, write_report

ROOT = os.path.dirname(os.path.abspath(__file__))

# The design documents' recipe: every text padded to the maximum length, batches drawn at random, fp32,
# the per-tensor AdamW of transformers 4.x's Trainer, no TF32, no loader workers.
RECIPE_ARGS = ["--padding", "max_length", "--group_by_length", "false", "--precision", "fp32", "--tf32", "false",
               "--fused_adamw", "false", "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false"]
# The suite's pipeline is its defaults; named here so that a user's --run_args cannot silently change it.
SUITE_ARGS = ["--padding", "longest", "--group_by_length", "true", "--precision", "auto", "--tf32", "true",
              "--fused_adamw", "true", "--dataloader_num_workers", "-1"]


@dataclass
class SpeedArguments:
    methods: list[str] = field(default_factory=lambda: ["full", "lora"],
                               metadata={"help": f"Methods to measure: {', '.join(method_names())}."})
    model: str = field(default="minilm", metadata={"help": "The training scripts' --model_name_or_path."})
    dataset: str = field(default="sst2", metadata={"help": "The training scripts' --dataset."})
    data_dir: str | None = field(default=None, metadata={"help": "The training scripts' --data_dir, e.g. "
                                                                 "../shared/data."})
    run_args: str = field(default="", metadata={"help": "Options added to every run, as one string, e.g. "
                                                        "\"--max_train_samples 4000 --num_train_epochs 1\"."})
    recipe_max_length: int = field(default=128, metadata={"help": "The recipe pads every text to this length; "
                                                                  "both pipelines truncate at it."})
    seed: int = field(default=42, metadata={"help": "Training seed of every run."})
    repeats: int = field(default=1, metadata={"help": "Measure the suite and the competent user this many times "
                                                      "each, in turn, and report the median samples/s with the "
                                                      "range: on a shared machine single runs vary by 10%% or more. "
                                                      "The slow recipe runs once."})
    scaling: bool = field(default=False, metadata={"help": "Measure throughput and memory against sequence length "
                                                           "and batch size instead of the recipe comparison."})
    seq_lengths: list[int] = field(default_factory=lambda: [64, 128, 256, 512],
                                   metadata={"help": "--scaling: sequence lengths, at --base_batch_size."})
    batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 32, 64],
                                   metadata={"help": "--scaling: batch sizes, at --base_seq_length."})
    base_batch_size: int = field(default=16, metadata={"help": "--scaling: the batch size of the length sweep."})
    base_seq_length: int = field(default=128, metadata={"help": "--scaling: the length of the batch-size sweep."})
    steps: int = field(default=6, metadata={"help": "--scaling: training steps per measurement (the first is "
                                                    "left out of the throughput as warm-up)."})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "--scaling: measure the length sweep with "
                                                                         "gradient checkpointing as well (not for "
                                                                         "prefix tuning, which refuses it)."})
    name: str | None = field(default=None, metadata={"help": "Folder name under --output_dir (default: "
                                                             "<dataset>-<model>-recipe or -scaling)."})
    output_dir: str = field(default=os.path.join("results", "speed"), metadata={"help": "Where folders are made."})
    dry_run: bool = field(default=False, metadata={"help": "Print the runs' commands, run nothing."})

    def __post_init__(self):
        for method in self.methods:
            check(method in method_names(),
                  f"unknown method '{method}' in --methods; choose from {', '.join(method_names())}")
        check(bool(self.methods), "--methods needs at least one method, e.g. full lora")
        check(self.recipe_max_length >= 8, f"--recipe_max_length must be at least 8, got {self.recipe_max_length}")
        check(self.steps >= 2, f"--steps must be at least 2 (the first is warm-up), got {self.steps}")
        check(self.repeats >= 1, f"--repeats must be at least 1, got {self.repeats}")
        for name in ("seq_lengths", "batch_sizes"):
            values = getattr(self, name)
            check(bool(values) and all(v >= 1 for v in values), f"--{name} must be positive numbers, got {values}")
        check(self.name is None or (self.name.strip() and "/" not in self.name and self.name not in (".", "..")),
               f"--name must be a plain folder name, got '{self.name}'")


@dataclass
class Measurement:
    """One training run: a method with options, named so that a re-run finds it."""

    method: str
    run_name: str
    argv: list[str]
    labels: dict  # what it varies: pipeline, or seq_length / batch_size / gradient_checkpointing / precision
    competent: bool = False  # the competent user's pipeline (ftbench.competent_pipeline), not a suite run


def parse_speed_args(argv: list[str]) -> SpeedArguments:
    from config import OptionParser

    parser = OptionParser(SpeedArguments, prog="bench_speed.py", description=__doc__.split("\n")[0])
    try:
        args, remaining = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error).splitlines()[0]) from None
    check(not remaining, f"unrecognized arguments: {' '.join(remaining)} (run with --help to see every option)")
    return args


def _base_argv(args: SpeedArguments, folder: str) -> list[str]:
    argv = ["--model_name_or_path", args.model, "--dataset", args.dataset, "--seed", str(args.seed),
            "--output_dir", folder]
    argv += ["--data_dir", args.data_dir] if args.data_dir else []
    try:
        argv += shlex.split(args.run_args)
    except ValueError as error:
        raise ConfigError(f"--run_args is not a valid option string ({error}); quote it as one argument") from None
    return argv


def auto_precision(method: str, argv: list[str]) -> str:
    """What --precision auto resolves to for a run with these options on this machine."""
    from ftbench.model_loading import choose_device
    from ftbench.precision import resolve_precision

    training = parse_args(method, argv).training
    return resolve_precision(training.precision, choose_device(training.device))[0]


def recipe_measurements(args: SpeedArguments, folder: str) -> list[Measurement]:
    """Per method: the suite, the competent user in the suite's precision (and in fp32 where that differs), the
    recipe; the competent user gets the suite's options, so that only the pipeline differs. Repeats (-r2, -r3,
    ...) of the suite and the competent user come after every first measurement, each round in the same order."""
    base = _base_argv(args, folder) + ["--max_seq_length", str(args.recipe_max_length)]
    cells = []
    for repeat in range(1, args.repeats + 1):
        suffix = "" if repeat == 1 else f"-r{repeat}"
        for method in args.methods:
            suite_argv = base + SUITE_ARGS
            name = f"{method}-suite{suffix}"
            cells.append(Measurement(method, name, suite_argv + ["--run_name", name], {"pipeline": "suite"}))
            for precision in dict.fromkeys([auto_precision(method, suite_argv), "fp32"]):
                cells.append(Measurement(method, f"{method}-competent-{precision}{suffix}",
                                         suite_argv + ["--precision", precision],
                                         {"pipeline": "competent", "precision": precision}, competent=True))
            if repeat == 1:
                name = f"{method}-recipe"
                cells.append(Measurement(method, name, base + RECIPE_ARGS + ["--run_name", name],
                                         {"pipeline": "recipe"}))
    return cells


def scaling_measurements(args: SpeedArguments, folder: str) -> list[Measurement]:
    """Every text padded to the length under test (long reviews fill it anyway), a fixed number of steps, no
    saved model; one evaluation, on a handful of examples, because a run must select a checkpoint. The sweep is
    in the precision --precision auto resolves to; the base point is also measured in the other one of fp32
    and bf16 (labelled other_precision)."""
    base = _base_argv(args, folder) + RECIPE_ARGS[:4] + [
        "--max_steps", str(args.steps), "--evals_per_epoch", "1", "--max_eval_samples", "16",
        "--save_model", "false", "--logging_steps", "1"]
    points = [(length, args.base_batch_size) for length in args.seq_lengths]
    points += [(args.base_seq_length, batch) for batch in args.batch_sizes
               if (args.base_seq_length, batch) not in points]
    cells = []
    for method in args.methods:
        for length, batch in points:
            # Prefix tuning refuses gradient checkpointing (checkpointed layers drop its key/values).
            with_checkpointing = args.gradient_checkpointing and batch == args.base_batch_size and method != "prefix"
            for checkpointing in (False, True) if with_checkpointing else (False,):
                name = f"{method}-len{length}-bs{batch}" + ("-ckpt" if checkpointing else "")
                argv = base + ["--max_seq_length", str(length), "--per_device_train_batch_size", str(batch),
                               "--max_train_samples", str(batch * args.steps),
                               "--gradient_checkpointing", str(checkpointing).lower(), "--run_name", name]
                cells.append(Measurement(method, name, argv, {"seq_length": length, "batch_size": batch,
                                                              "gradient_checkpointing": checkpointing}))
        other = "fp32" if auto_precision(method, cells[-1].argv) != "fp32" else "bf16"
        name = f"{method}-len{args.base_seq_length}-bs{args.base_batch_size}-{other}"
        argv = base + ["--max_seq_length", str(args.base_seq_length), "--per_device_train_batch_size",
                       str(args.base_batch_size), "--max_train_samples", str(args.base_batch_size * args.steps),
                       "--precision", other, "--run_name", name]
        cells.append(Measurement(method, name, argv, {"seq_length": args.base_seq_length,
                                                      "batch_size": args.base_batch_size,
                                                      "gradient_checkpointing": False, "other_precision": True}))
    return cells


def completed_runs(folder: str) -> dict:
    from benchmark import find_runs

    return {name: [r for r in runs if r["run_info"].get("status") == "completed"][-1]
            for name, runs in find_runs(folder).items()
            if any(r["run_info"].get("status") == "completed" for r in runs)}


def competent_results(folder: str) -> dict:
    """{run name: measurement} of the competent user's pipeline runs that completed."""
    import json

    directory = os.path.join(folder, "competent")
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return {name[:-len(".json")]: json.load(open(os.path.join(directory, name), encoding="utf-8"))
            for name in names if name.endswith(".json")}


def train(cell: Measurement, folder: str) -> int:
    """One run in its own process, its output in logs/<run name>.log."""
    from ftbench.launchers import die_with_parent

    os.makedirs(os.path.join(folder, "logs"), exist_ok=True)
    if cell.competent:
        result = os.path.join(folder, "competent", f"{cell.run_name}.json")
        command = [sys.executable, "-m", "ftbench.competent_pipeline", cell.method, "--result", result, "--"]
        command += cell.argv
    else:
        command = [sys.executable, os.path.join(ROOT, get_method(cell.method).script)] + cell.argv
    with open(os.path.join(folder, "logs", f"{cell.run_name}.log"), "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        # The suite's folder on the path, for -m; the working directory stays the user's (relative paths).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
        return subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, env=env)


def run_all(cells: list[Measurement], folder: str, dry_run: bool) -> tuple[dict, dict]:
    """({run name: results} of the completed cells, {run name: why not} of the others), running every cell
    not completed yet; a cell that fails is recorded and the others still run."""
    for cell in cells:  # every run's options are checked before the first starts
        parse_args(cell.method, cell.argv)
    if dry_run:
        for cell in cells:
            script = ["-m", "ftbench.competent_pipeline", cell.method, "--"] if cell.competent \
                else [get_method(cell.method).script]
            print(shlex.join(script + cell.argv))
        return {}, {}
    done = {**completed_runs(folder), **competent_results(folder)}
    failed = {}
    start = time.monotonic()
    for k, cell in enumerate(cells, 1):
        if cell.run_name in done:
            print(f"[{k}/{len(cells)}] {cell.run_name}: already completed, skipped", flush=True)
            continue
        print(f"[{k}/{len(cells)}] {cell.run_name} (elapsed {time.monotonic() - start:.0f}s)", flush=True)
        status = train(cell, folder)
        if status != 0:
            log = os.path.join(folder, "logs", cell.run_name + ".log")
            failed[cell.run_name] = f"exit status {status}: {_last_error(log)} (log: {log})"
            print(f"    failed: {failed[cell.run_name]}", flush=True)
    return {**completed_runs(folder), **competent_results(folder)}, failed


def _last_error(log_path: str) -> str:
    """The run's one-line refusal or its exception, from the end of its log."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle.read().replace("\r", "\n").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.startswith("error:") or "Error:" in line:
            return line[:300]
    return lines[-1][:300] if lines else "empty log"


def recipe_report(args: SpeedArguments, runs: dict, failed: dict, folder: str, command: str) -> dict:
    rows, comparison = [], {}
    for method in args.methods:
        compared = compare_method(method, runs)
        names = [c.run_name for c in recipe_measurements(args, folder) if c.method == method]
        missing = [name for name in names if name not in runs]
        if missing:
            rows.append(f"| {method} | not measured: " + "; ".join(f"{name} {failed.get(name, 'missing')}"
                                                                   for name in missing) + " | | | | | | | | |")
        if compared is None:
            continue
        comparison[method] = compared
        rows += pipeline_rows(method, [("suite", compared["suite"])] + list(compared["others"].items()))
        for name, ratio in compared["ratios"].items():
            rows.append(f"| {method} | **suite ÷ {name}** | **{ratio['samples_per_s_ratio']:.2f}×** | | | | | "
                        f"{ratio['val_accuracy_difference_points']:+.2f} pts | "
                        f"{ratio['test_accuracy_difference_points']:+.2f} pts | |")
    if not comparison:
        raise RuntimeError("no method was measured with the suite's pipeline: " + "; ".join(
            f"{k}: {v}" for k, v in failed.items()))
    suite = next(iter(comparison.values()))["suite"]
    lines = [
        f"# Training speed: the suite against the competent Trainer user and the documents' recipe "
        f"({args.dataset}, {args.model})", "", f"`{command}`", "",
        f"Device: {suite['device']}. Suite: each batch padded to its own longest text, batches of similar lengths in "
        f"shuffled order, fused AdamW, `--precision auto` (here {suite['pipeline']['precision']}: "
        f"{suite['pipeline'].get('precision_reason', 'not recorded')}; on CUDA also TF32). Competent user: a plain "
        "Trainer with DataCollatorWithPadding and train_sampling_strategy=\"group_by_length\", its default optimizer, "
        "in the precision named (ftbench/competent_pipeline.py); its time is the Trainer's train_runtime, its "
        "accuracies the final model's. Recipe: every text padded to "
        f"{args.recipe_max_length} tokens, batches drawn at random, fp32, per-tensor AdamW. Same examples, steps, "
        "seed and optimizer settings. Train time leaves evaluation out; peak memory is "
        f"{suite['memory_kind']} (not measured for the competent user: its process peak covers more than "
        "training). The suite's validation accuracy is its best checkpoint's.", "",
        "| method | pipeline | samples/s | real tokens/s | text share of tokens | time per epoch (s) | "
        "peak memory (MiB) | val acc | test acc | MFU (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows, ""]
    report = {"command": command, "kind": "recipe", "dataset": args.dataset, "model": args.model,
              "recipe_args": RECIPE_ARGS, "suite_args": SUITE_ARGS, "methods": comparison, "failed": failed}
    write_report(folder, "speed", report, lines)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "bench_speed.py"] + argv)
    try:
        args = parse_speed_args(argv)
        kind = "scaling" if args.scaling else "recipe"
        folder = os.path.join(args.output_dir, args.name or f"{args.dataset}-{os.path.basename(args.model)}-{kind}")
        cells = scaling_measurements(args, folder) if args.scaling else recipe_measurements(args, folder)
        runs, failed = run_all(cells, folder, args.dry_run)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to go on where it stopped", file=sys.stderr)
        return 130
    if args.dry_run:
        return 0
    try:
        if args.scaling:
            scaling_report(args, runs, failed, cells, folder, command)
        else:
            recipe_report(args, runs, failed, folder, command)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
