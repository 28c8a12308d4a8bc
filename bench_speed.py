"""Training speed, measured: the suite's pipeline against the usual notebook recipe, and cost as the work grows.

    # The suite's pipeline vs the recipe (pad to 128, no length grouping, fp32, plain AdamW), same examples,
    # steps, seed and optimizer settings; each trained once per pipeline, then their ratio:
    python bench_speed.py --methods full lora --dataset sst2 --data_dir ../shared/data \
        --run_args "--max_train_samples 4000 --max_eval_samples 872 --num_train_epochs 1"

    # Throughput and peak memory against sequence length and batch size (every text padded to the length,
    # so each step costs what that length costs), with and without gradient checkpointing:
    python bench_speed.py --scaling --methods full lora prefix --dataset imdb --data_dir ../shared/data

Every measurement is a normal training run of train_<method>.py in its own process (so its peak memory is
its own), in <output_dir>/<name>/runs/. The comparison goes to speed.json and speed.md, the scaling sweep to
scaling.json, scaling.md and scaling.png. Re-running the same command skips runs that completed.
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
    labels: dict  # what it varies: pipeline, or seq_length / batch_size / gradient_checkpointing


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


def recipe_measurements(args: SpeedArguments, folder: str) -> list[Measurement]:
    base = _base_argv(args, folder) + ["--max_seq_length", str(args.recipe_max_length)]
    cells = []
    for method in args.methods:
        for pipeline, extra in (("suite", SUITE_ARGS), ("recipe", RECIPE_ARGS)):
            name = f"{method}-{pipeline}"
            cells.append(Measurement(method, name, base + extra + ["--run_name", name], {"pipeline": pipeline}))
    return cells


def scaling_measurements(args: SpeedArguments, folder: str) -> list[Measurement]:
    """Every text padded to the length under test (long reviews fill it anyway), a fixed number of steps, no
    saved model; one evaluation, on a handful of examples, because a run must select a checkpoint."""
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
    return cells


def completed_runs(folder: str) -> dict:
    from benchmark import find_runs

    return {name: [r for r in runs if r["run_info"].get("status") == "completed"][-1]
            for name, runs in find_runs(folder).items()
            if any(r["run_info"].get("status") == "completed" for r in runs)}


def train(cell: Measurement, folder: str) -> int:
    """One run in its own process, its output in logs/<run name>.log."""
    from benchmark import die_with_parent

    os.makedirs(os.path.join(folder, "logs"), exist_ok=True)
    command = [sys.executable, os.path.join(ROOT, get_method(cell.method).script)] + cell.argv
    with open(os.path.join(folder, "logs", f"{cell.run_name}.log"), "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        return subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)


def run_all(cells: list[Measurement], folder: str, dry_run: bool) -> tuple[dict, dict]:
    """({run name: results} of the completed cells, {run name: why not} of the others), running every cell
    not completed yet; a cell that fails is recorded and the others still run."""
    for cell in cells:  # every run's options are checked before the first starts
        parse_args(cell.method, cell.argv)
    if dry_run:
        for cell in cells:
            print(shlex.join([get_method(cell.method).script] + cell.argv))
        return {}, {}
    done = completed_runs(folder)
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
    return completed_runs(folder), failed


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


def summarise(results: dict) -> dict:
    from ftbench.run_store import memory_phases

    info, run_info = results["train_info"], results["run_info"]
    steady = info.get("steady_state") or {}
    return {
        "run_id": run_info["run_id"],
        "train_samples_per_s": info["train_samples_per_s"],
        "train_tokens_per_s": info["train_tokens_per_s"],
        "steady_samples_per_s": steady.get("train_samples_per_s"),
        "text_share_of_tokens": info["train_tokens"] / info["train_padded_tokens"],
        "real_tokens_per_sample": info["train_tokens"] / info["train_samples"],
        "train_time_s": info["train_time_s"],
        "epochs": info["epochs"],
        "time_per_epoch_s": info["train_time_s"] / info["epochs"] if info["epochs"] else None,
        "peak_memory_mib": memory_phases(results)[0],  # the fine-tuning phase's: GPU allocated, or CPU RSS
        "memory_kind": "GPU allocated" if info["memory"].get("device_type") == "cuda" else "process resident (RSS)",
        "best_val_accuracy": info["best_val"]["val_accuracy"],
        "test_accuracy": info["test"]["accuracy"],
        "mfu": info.get("utilisation", {}).get("mfu"),
        "achieved_model_flops_per_s": info.get("utilisation", {}).get("achieved_model_flops_per_s"),
        "peak_matmul_flops_per_s": info.get("utilisation", {}).get("peak_matmul_flops_per_s"),
        "pipeline": info.get("pipeline"),
        "device": results["meta_info"]["device_name"],
    }


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def recipe_report(args: SpeedArguments, runs: dict, failed: dict, folder: str, command: str) -> dict:
    rows, comparison = [], {}
    for method in args.methods:
        missing = [f"{method}-{p}" for p in ("suite", "recipe") if f"{method}-{p}" not in runs]
        if missing:
            reasons = "; ".join(f"{name} {failed.get(name, 'missing')}" for name in missing)
            rows.append(f"| {method} | not measured: {reasons} | | | | | | | | |")
            continue
        suite, recipe = summarise(runs[f"{method}-suite"]), summarise(runs[f"{method}-recipe"])
        ratio = suite["train_samples_per_s"] / recipe["train_samples_per_s"]
        comparison[method] = {
            "suite": suite, "recipe": recipe,
            "samples_per_s_ratio": ratio,
            "peak_memory_ratio": (suite["peak_memory_mib"] / recipe["peak_memory_mib"]
                                  if suite["peak_memory_mib"] and recipe["peak_memory_mib"] else None),
            "val_accuracy_difference_points": 100 * (suite["best_val_accuracy"] - recipe["best_val_accuracy"]),
        }
        for pipeline, row in (("suite", suite), ("recipe", recipe)):
            rows.append(f"| {method} | {pipeline} | {row['train_samples_per_s']:.1f} | "
                        f"{row['train_tokens_per_s']:.0f} | "
                        f"{100 * row['text_share_of_tokens']:.0f}% | {row['time_per_epoch_s']:.1f} | "
                        f"{_fmt(row['peak_memory_mib'], '.0f')} | {row['best_val_accuracy']:.4f} | "
                        f"{row['test_accuracy']:.4f} | {_fmt(row['mfu'] and 100 * row['mfu'], '.1f')} |")
        rows.append(f"| {method} | **suite ÷ recipe** | **{ratio:.2f}×** | | | | "
                    f"{_fmt(comparison[method]['peak_memory_ratio'], '.2f')}× | "
                    f"{comparison[method]['val_accuracy_difference_points']:+.2f} pts | | |")
    if not comparison:
        raise RuntimeError("no method was measured with both pipelines: " + "; ".join(f"{k}: {v}" for k, v in
                                                                                      failed.items()))
    some = next(iter(comparison.values()))["suite"]
    lines = [
        f"# Training speed: the suite's pipeline against the documents' recipe ({args.dataset}, {args.model})", "",
        f"`{command}`", "",
        f"Device: {some['device']}. Recipe: every text padded to {args.recipe_max_length} tokens, batches drawn at "
        "random, fp32, per-tensor AdamW. Suite: each batch padded to its own longest text, batches of similar "
        "lengths in shuffled order, fused AdamW (on CUDA also bf16/fp16 autocast and TF32). Same examples, "
        "steps, seed and optimizer settings. Train time leaves evaluation out; peak memory is "
        f"{some['memory_kind']}.", "",
        "| method | pipeline | samples/s | real tokens/s | text share of tokens | time per epoch (s) | "
        "peak memory (MiB) | best val acc | test acc | MFU (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows, ""]
    report = {"command": command, "kind": "recipe", "dataset": args.dataset, "model": args.model,
              "recipe_args": RECIPE_ARGS, "suite_args": SUITE_ARGS, "methods": comparison, "failed": failed}
    _write(folder, "speed", report, lines)
    return report


def scaling_report(args: SpeedArguments, runs: dict, failed: dict, cells: list[Measurement], folder: str,
                   command: str) -> dict:
    entries, not_measured = [], []
    for cell in cells:
        if cell.run_name not in runs:
            not_measured.append({"method": cell.method, **cell.labels, "reason": failed.get(cell.run_name, "missing")})
            continue
        row = summarise(runs[cell.run_name])
        run_info = runs[cell.run_name]["run_info"]
        # The length the run really used (prefix tuning lowers it where the prefix shifts positions).
        length = {"seq_length": run_info["config"]["data"]["max_seq_length"]}
        entries.append({"method": cell.method, "label": run_info["method_label"],
                        **cell.labels, **length, **{k: row[k] for k in (
            "run_id", "train_samples_per_s", "steady_samples_per_s", "train_tokens_per_s", "peak_memory_mib",
            "mfu", "device", "memory_kind", "text_share_of_tokens", "real_tokens_per_sample")}})
    lines = [f"# Training throughput and peak memory against sequence length and batch size "
             f"({args.dataset}, {args.model})", "", f"`{command}`", "",
             f"Device: {entries[0]['device']}. Every text padded to the length, {args.steps} training steps, the "
             f"first left out as warm-up; peak memory is {entries[0]['memory_kind']}.", "",
             "| method | seq length | batch | grad. checkpointing | samples/s | real tokens/s | text share of tokens "
             "| peak memory (MiB) | MFU (%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    if not entries:
        raise RuntimeError("no measurement completed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    for e in entries:
        rate = e["steady_samples_per_s"] or e["train_samples_per_s"]
        lines.append(f"| {e['label']} | {e['seq_length']} | {e['batch_size']} | "
                     f"{'yes' if e['gradient_checkpointing'] else 'no'} | {rate:.2f} | "
                     f"{rate * e['real_tokens_per_sample']:.0f} | {100 * e['text_share_of_tokens']:.0f}% | "
                     f"{_fmt(e['peak_memory_mib'], '.0f')} | {_fmt(e['mfu'] and 100 * e['mfu'], '.1f')} |")
    for e in not_measured:
        lines.append(f"| {e['method']} | {e['seq_length']} | {e['batch_size']} | "
                     f"{'yes' if e['gradient_checkpointing'] else 'no'} | not measured: {e['reason']} | | | | |")
    report = {"command": command, "kind": "scaling", "dataset": args.dataset, "model": args.model,
              "steps": args.steps, "entries": entries, "not_measured": not_measured}
    _write(folder, "scaling", report, lines + [""])
    scaling_chart(report, [runs[cell.run_name] for cell in cells if cell.run_name in runs],
                  os.path.join(folder, "scaling.png"), args)
    return report


def scaling_chart(report: dict, runs: list[dict], path: str, args: SpeedArguments) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ftbench.chart_style import method_colours

    entries = report["entries"]
    methods = list(dict.fromkeys(e["label"] for e in entries))
    colours = method_colours(runs)
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for method in methods:
        for checkpointing, style in ((False, "-"), (True, "--")):
            by_length = sorted((e for e in entries if e["label"] == method and e["batch_size"] == args.base_batch_size
                                and e["gradient_checkpointing"] == checkpointing), key=lambda e: e["seq_length"])
            if by_length:
                label = method + (" + grad. checkpointing" if checkpointing else "")
                xs = [e["seq_length"] for e in by_length]
                axes[0][0].plot(xs, [e["steady_samples_per_s"] or e["train_samples_per_s"] for e in by_length],
                                style, marker="o", color=colours[method], label=label)
                axes[1][0].plot(xs, [e["peak_memory_mib"] for e in by_length], style, marker="o",
                                color=colours[method], label=label)
        by_batch = sorted((e for e in entries if e["label"] == method and e["seq_length"] == args.base_seq_length
                           and not e["gradient_checkpointing"]), key=lambda e: e["batch_size"])
        xs = [e["batch_size"] for e in by_batch]
        axes[0][1].plot(xs, [e["steady_samples_per_s"] or e["train_samples_per_s"] for e in by_batch], marker="o",
                        color=colours[method], label=method)
        axes[1][1].plot(xs, [e["peak_memory_mib"] for e in by_batch], marker="o", color=colours[method], label=method)
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set(title=f"throughput vs sequence length (batch {args.base_batch_size})", ylabel="samples/s")
    axes[1][0].set(xlabel="sequence length (tokens)", ylabel=f"peak memory (MiB, {entries[0]['memory_kind']})")
    axes[0][1].set(title=f"throughput vs batch size (length {args.base_seq_length})", ylabel="samples/s")
    axes[1][1].set(xlabel="batch size", ylabel="peak memory (MiB)")
    axes[0][0].set_yscale("log")
    figure.suptitle(f"Training cost as the work grows — {report['model']} on {entries[0]['device']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _write(folder: str, stem: str, report: dict, lines: list[str]) -> None:
    from ftbench.run_store import write_json_atomic, write_text_atomic

    write_json_atomic(os.path.join(folder, f"{stem}.json"), report)
    write_text_atomic(os.path.join(folder, f"{stem}.md"), "\n".join(lines))
    print("\n".join(lines))
    print(f"written: {os.path.join(folder, stem + '.json')}, {os.path.join(folder, stem + '.md')}")


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
