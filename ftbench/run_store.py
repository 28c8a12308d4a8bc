"""The run store: the run folder's format and everything that reads or writes it. File names, the results
schema as code, atomic writes, the lock a live run holds, run status, listing runs and loading their results,
and the figures every chart, table and report takes from a run. Imports neither torch nor matplotlib, so the
commands that only read results start fast.

Whether a run folder's process is still alive, and what state a run is really in:

A training process holds an exclusive lock on <run>/.lock for as long as it lives; the kernel drops the
lock when the process ends, however it ends (kill -9 included). A results.json that still says "running"
while nobody holds the lock belongs to a run that died: "unfinished", resumable from its last checkpoint.

"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import os
import re
import shutil
import socket
import sys

try:
    import fcntl
except ImportError:  # not POSIX: fall back on the recorded process id
    fcntl = None

# The run folder's format, here and nowhere else: output_dir/runs/<run id>/ holds these.
RUNS_DIR = "runs"
LOCK_FILE = ".lock"
RESULTS_FILE = "results.json"
LOG_FILE = "training_log.txt"
PREDICTIONS_FILE = "test_predictions.json"
MODEL_DIR = "model"
MODEL_CARD_FILE = "README.md"  # in model/: the Hugging Face model card (ftbench/model_card.py)
MERGED_MODEL_DIR = "merged_model"  # with --export_merged
BACKBONE_DIR = "pretrained_backbone"  # after continued pre-training, where the saved model needs it
CHECKPOINTS_DIR = "checkpoints"
RESUME_STATE_FILE = "resume_state.json"  # written last into a checkpoint folder: its presence marks it complete

# The keys results.json (schema version 1) may hold in each section; the table in docs/results_schema.md
# documents exactly these (a test compares the two). meta_info is documented as a whole.
RESULTS_KEYS = {
    "run_info": frozenset({
        "run_id", "run_dir", "method", "method_label", "model_name_or_path", "model_resolved_path", "model_type",
        "model_fingerprint", "dataset", "base_model_path", "model_loader", "peft_config", "method_transform",
        "total_steps", "data", "split_sizes", "label_names", "head_modules", "config", "seed", "command",
        "working_dir", "started_at", "finished_at", "status", "error", "pid", "hostname", "progress",
        "resumable", "not_resumable_because", "resumes", "tracking"}),
    "train_info": frozenset({
        "num_params_total", "num_params_trainable", "trainable_params_pct", "history", "train_loss_log",
        "selection", "best_val", "test", "train_time_s", "eval_time_s", "train_samples", "train_tokens",
        "train_samples_per_s", "train_tokens_per_s", "train_padded_tokens", "steady_state", "pipeline",
        "utilisation", "memory", "checkpoint_size_mib", "checkpoint_files", "tokenizer_size_mib",
        "merged_checkpoint_size_mib", "pretraining", "total_train_time_s", "final_generalization_gap",
        "global_steps", "epochs", "stopped_at_step", "resume_from_step", "wall_time_s", "wall_time_breakdown_s",
        "machine_load"}),
}


def results_paths(output_dir: str) -> list[str]:
    """The results.json of every run folder under output_dir, in run-id order (run ids begin with the start time)."""
    return sorted(glob.glob(os.path.join(output_dir, RUNS_DIR, "*", RESULTS_FILE)))


def create_run_dir(output_dir: str, method: str, dataset: str, model_name: str, run_name: str | None) -> str:
    """A new folder under output_dir/runs; never one that exists (mkdir is atomic, so concurrent runs differ)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    model_short = re.sub(r"[^A-Za-z0-9.-]+", "-", os.path.basename(model_name.rstrip("/")))[:40]
    parts = [stamp, method, dataset, model_short] + ([re.sub(r"[^A-Za-z0-9.-]+", "-", run_name)] if run_name else [])
    base = os.path.join(output_dir, RUNS_DIR, "_".join(parts))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    for attempt in range(1, 1000):
        path = base if attempt == 1 else f"{base}-{attempt}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {os.path.dirname(base)}")


def remove_result_files(run_dir: str) -> None:
    for name in (PREDICTIONS_FILE, MODEL_DIR, MERGED_MODEL_DIR):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def write_text_atomic(path: str, text: str) -> None:
    """Write to a temporary file and rename, so a reader never sees a half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:  # e.g. a full disk: leave no partial temporary file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


class RunLock:
    """The lock a live run holds on its folder; acquire() is False when another process holds it."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.handle = None

    def acquire(self) -> bool:
        self.handle = open(self.path, "a+")
        if fcntl is None:
            return True
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            self.handle.close()
            self.handle = None
            return False

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


def is_alive(run_dir: str, run_info: dict | None = None) -> bool:
    """Is a process still working in run_dir? (Lock held; without fcntl, the recorded pid on this host.)"""
    if fcntl is None:
        info = run_info or {}
        if info.get("hostname") != socket.gethostname() or not info.get("pid"):
            return False
        try:
            os.kill(int(info["pid"]), 0)
            return True
        except OSError:
            return False
    if not os.path.exists(os.path.join(run_dir, LOCK_FILE)):
        return False
    with open(os.path.join(run_dir, LOCK_FILE), "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True


def effective_status(run_dir: str, run_info: dict) -> str:
    """completed, failed, interrupted, running (alive), or unfinished (said running, but its process is gone)."""
    status = run_info.get("status") or "unknown"
    if status == "running" and not is_alive(run_dir, run_info):
        return "unfinished"
    return status


def valid_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every complete checkpoint of the run, oldest first."""
    found = []
    for folder in glob.glob(os.path.join(run_dir, CHECKPOINTS_DIR, "checkpoint-*")):
        step = folder.rsplit("-", 1)[-1]
        if step.isdigit() and os.path.isfile(os.path.join(folder, RESUME_STATE_FILE)):
            found.append((int(step), folder))
    return sorted(found)


def checkpointed_history(run_dir: str) -> list[dict]:
    """The validation history (train_info.history's rows) a run that is still training has saved so far: its newest
    complete checkpoint's. Its results.json holds the history only once the run has ended."""
    for _, folder in reversed(valid_checkpoints(run_dir)):
        try:
            with open(os.path.join(folder, RESUME_STATE_FILE), encoding="utf-8") as handle:
                return list(json.load(handle)["recorder"]["history"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed, or replaced by a newer one, since it was listed
    return []


def training_script(method: str) -> str:
    """The script that trains (and resumes) a method's runs: train_<method>.py, for every method."""
    return f"train_{method}.py"


def resume_hint(run_dir: str, run_info: dict) -> str:
    script = training_script(run_info.get("method", "<method>"))
    checkpoints = valid_checkpoints(run_dir)
    where = f"continues from step {checkpoints[-1][0]}" if checkpoints else "starts again: no checkpoint was saved"
    return f"python {script} --resume {run_dir}  ({where})"


def resumable_runs(output_dir: str, method: str | None = None) -> list[tuple[str, dict, str]]:
    """(run folder, results, status) of runs under output_dir/runs that stopped early and can be resumed,
    newest first."""
    found = []
    for path in results_paths(output_dir):
        try:
            with open(path, encoding="utf-8") as handle:
                results = json.load(handle)
            info = results["run_info"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if method is not None and info.get("method") != method:
            continue
        run_dir = os.path.dirname(path)
        status = effective_status(run_dir, info)
        if status in ("interrupted", "unfinished"):
            found.append((run_dir, results, status))
    return sorted(found, key=lambda item: (item[1]["run_info"].get("started_at") or "", item[0]), reverse=True)


def where_it_stopped(results: dict) -> str:
    """What the run's results say of where it stopped. An interrupted run recorded the step itself
    (train_info.stopped_at_step); a killed one recorded only its progress, the step of its last complete
    checkpoint (run_info.progress.last_checkpoint_step), and may have trained past it."""
    info = results["run_info"]
    total = info.get("total_steps")
    stopped = (results.get("train_info") or {}).get("stopped_at_step")
    if stopped is not None:
        return f"stopped at step {stopped} of {total}"
    checkpoint = (info.get("progress") or {}).get("last_checkpoint_step")
    if checkpoint is not None:
        return f"last checkpoint at step {checkpoint} of {total}"
    return f"no checkpoint of its {total} steps saved"


# Reading runs: selecting among them and the figures charts, tables and reports take from a run.

SCHEMA_VERSION = 1


class ResultsError(Exception):
    """A results folder or file that cannot be read as runs: commands print it on one line and exit with status 2."""


def read_results(path: str) -> dict:
    """One results.json, with "_dir" (its run folder) added; ResultsError if it is unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path} is not valid JSON ({error})") from None
    except OSError as error:
        raise ResultsError(f"cannot read {path} ({error.strerror})") from None
    if not isinstance(results, dict) or not isinstance(results.get("run_info"), dict):
        raise ResultsError(f"{path} is not a benchmark results file (no run_info)")
    if results.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{path} has schema_version {results.get('schema_version')!r}; "
                        f"this script reads version {SCHEMA_VERSION}")
    train = results.get("train_info")
    if results["run_info"].get("status") == "completed" and not (
            isinstance(train, dict) and isinstance(train.get("test"), dict) and "accuracy" in train["test"]
            and "num_params_trainable" in train):
        raise ResultsError(f"{path} says completed but its train_info has no test results")
    results["_dir"] = os.path.dirname(os.path.abspath(path))
    return results


def load_runs(results_dir: str, unreadable: list | None = None) -> list[dict]:
    """Every run under <results_dir>/runs/, whatever its status, in no particular order.

    A results.json that cannot be used is skipped with a warning on stderr; its message is appended
    to `unreadable` when a list is given.
    """
    if not os.path.isdir(results_dir):
        raise ResultsError(f"results directory {results_dir} does not exist")
    runs = []
    for path in results_paths(results_dir):
        try:
            runs.append(read_results(path))
        except ResultsError as error:
            print(f"warning: {error}; skipping it", file=sys.stderr)
            if unreadable is not None:
                unreadable.append(str(error))
    return runs


def model_short(run: dict) -> str:
    """'minilm', 'distilbert-base-uncased', or the last folder name of a local model path."""
    return os.path.basename(run["run_info"]["model_name_or_path"].rstrip("/\\")) or "?"


def label_of(run: dict) -> str:
    """The name a run is compared under: its method variant ('lora[all_linear]', 'mlm+full'), or for results
    written before labels existed, its method."""
    info = run["run_info"]
    return info.get("method_label") or info.get("method", "?")


def matches(run: dict, dataset=None, model=None, methods=None) -> bool:
    info = run["run_info"]
    return ((dataset is None or info.get("dataset") == dataset)
            and (model is None or model in (info.get("model_name_or_path"), model_short(run)))
            and (not methods or info.get("method") in methods or label_of(run) in methods))


def started(run: dict) -> tuple:
    """Sort key: start time (timezone-aware), then run id."""
    info = run["run_info"]
    try:
        when = dt.datetime.fromisoformat(info.get("started_at") or "").astimezone()
    except ValueError:
        when = dt.datetime.min.replace(tzinfo=dt.UTC)
    return when, info.get("run_id", "")


def select_runs(runs: list[dict], dataset=None, model=None, methods=None, all_runs=False) -> list[dict]:
    """Completed runs matching the filters: the newest per (method label, dataset, model), or all of them.

    `model` matches run_info.model_name_or_path exactly or its last path component. The result is
    ordered by dataset, model, method, then start time.
    """
    methods = [methods] if isinstance(methods, str) else methods
    chosen = [r for r in runs if r["run_info"].get("status") == "completed" and matches(r, dataset, model, methods)]
    if not all_runs:
        newest = {}
        for run in sorted(chosen, key=started):
            info = run["run_info"]
            newest[(label_of(run), info["dataset"], info["model_name_or_path"])] = run
        chosen = list(newest.values())
    return sorted(chosen, key=lambda r: (r["run_info"]["dataset"], r["run_info"]["model_name_or_path"],
                                         label_of(r), started(r)))


def explicit_runs(names: list[str], results_dir: str) -> list[dict]:
    """The runs named by --runs: run folders (or their results.json), or run ids under <results_dir>/runs."""
    runs = []
    for name in names:
        path = name if name.endswith(".json") else os.path.join(name, RESULTS_FILE)
        if not os.path.isfile(path):
            if not os.path.isdir(results_dir):
                raise ResultsError(f"results directory {results_dir} does not exist (needed to find run {name})")
            path = os.path.join(results_dir, RUNS_DIR, name, RESULTS_FILE)
            if not os.path.isfile(path):
                raise ResultsError(f"unknown run {name}: neither a run folder nor a run id with "
                                f"{os.path.join(results_dir, 'runs', name, 'results.json')}")
        run = read_results(path)
        status = run["run_info"].get("status")
        if status != "completed":
            raise ResultsError(f"run {run['run_info'].get('run_id', name)} has status {status}; "
                            "only completed runs can be plotted")
        if all(run["_dir"] != other["_dir"] for other in runs):
            runs.append(run)
    return runs


def peak_memory_key(memory: dict) -> str:
    """The peak that counts in train_info.memory: GPU memory allocated on CUDA, the process's peak RSS on the CPU."""
    return "peak_mem_alloc_mib" if memory.get("device_type") == "cuda" else "peak_rss_mib"


def memory_phases(run: dict) -> tuple[float | None, float | None, str]:
    """(fine-tuning peak MiB, continued pre-training peak MiB or None, device type), by peak_memory_key."""
    train = run["train_info"]
    memory = train.get("memory") or {}
    device = memory.get("device_type", "?")
    key = peak_memory_key(memory)
    return memory.get(key), ((train.get("pretraining") or {}).get("memory") or {}).get(key), device


def peak_memory(run: dict) -> tuple[float | None, str]:
    """(MiB, device type): the run's peak; for runs with a continued pre-training phase, the larger of the two
    phases' peaks."""
    fine_tune, pretrain, device = memory_phases(run)
    phases = [value for value in (fine_tune, pretrain) if value is not None]
    return (max(phases) if phases else None), device


def pretraining_time(run: dict) -> float | None:
    """Seconds of the continued pre-training (MLM) phase, or None for runs without one."""
    return (run["train_info"].get("pretraining") or {}).get("train_time_s")


def train_time(run: dict) -> float | None:
    """Training time of the whole run: both phases where continued pre-training came first (total_train_time_s),
    else train_time_s."""
    train = run["train_info"]
    if train.get("total_train_time_s") is not None:
        return train["total_train_time_s"]
    pre, fine_tune = pretraining_time(run), train.get("train_time_s")
    return fine_tune + pre if pre is not None and fine_tune is not None else fine_tune


EARLIER_PROCESSES = "earlier_processes"  # wall_time_breakdown_s's phase for a resumed run's earlier processes


def earlier_wall_time_s(previous: dict, previous_status: str) -> float | None:
    """The wall time a resumed run spent before this process: what its interrupted process recorded (over every
    process up to it); None when that is unknown (a process killed without a record, or one from before
    interrupted runs kept their wall time)."""
    recorded = (previous.get("train_info") or {}).get("wall_time_s")
    return float(recorded) if previous_status == "interrupted" and recorded is not None else None


def wall_time(run: dict) -> tuple[float | None, bool]:
    """A completed run's wall time over all its processes, and whether that is exact. Where a resumed run's
    earlier processes are unknown (earlier_wall_time_s), it adds what of them reached a checkpoint: their training
    and evaluation (train_time_s and eval_time_s sum over processes) and a continued pre-training this process
    reused; not their start-up nor the work lost at each stop. A lower bound."""
    train = run["train_info"]
    wall, phases = train.get("wall_time_s"), train.get("wall_time_breakdown_s") or {}
    if wall is None or not run["run_info"].get("resumes") or EARLIER_PROCESSES in phases:
        return wall, wall is not None
    # Runs from before this process's share was split out charged their whole loop to training: subtracting
    # it keeps the estimate a lower bound.
    this_process = phases.get("training", 0.0) + phases.get("evaluation", 0.0)
    earlier = (train.get("train_time_s") or 0.0) + (train.get("eval_time_s") or 0.0) - this_process
    pretraining_s = (train.get("pretraining") or {}).get("train_time_s") or 0.0
    if phases.get("mlm_pretraining", 0.0) < pretraining_s:  # reused from an earlier process
        earlier += pretraining_s
    return round(wall + max(earlier, 0.0), 3), False


def learned_nothing(run: dict) -> bool:
    """Whether the run's test accuracy is at or below always predicting the training set's most common label."""
    test = run["train_info"]["test"]
    return bool(test.get("majority_baseline")) and test["accuracy"] <= test["majority_baseline"]["accuracy"]


def machine_of(run: dict) -> str:
    """'AMD EPYC (2 CPU cores, AVX2)', or 'NVIDIA H200 on AMD EPYC (16 CPU cores, AVX512)' for a GPU run, from
    meta_info (runs from before meta_info.cpu_capability leave it out)."""
    meta = run.get("meta_info") or {}
    unit = f", {meta['cpu_capability']}" if meta.get("cpu_capability") else ""
    cpu = f"{meta.get('cpu') or '?'} ({meta.get('cpu_count') or '?'} CPU cores{unit})"
    return f"{meta.get('device_name') or '?'} on {cpu}" if meta.get("device") == "cuda" else cpu


def timing_setup(run: dict) -> str:
    """The kind of machine and the precision the run trained in ('AMD EPYC (2 CPU cores, AVX2) in fp32'). Runs
    compared on time or memory must share more: boot_setup."""
    return f"{machine_of(run)} in {precision_of(run)}"


def precision_of(run: dict) -> str:
    """The precision the run trained in ('bf16', 'fp32'), from train_info.pipeline."""
    return (run["train_info"].get("pipeline") or {}).get("precision") or "an unrecorded precision"


def boots_of(run: dict) -> list:
    """The machine boot (boot_id) of each process that trained the run, the first and each resume's; None where a
    process recorded none (before the record existed, or off Linux)."""
    return [(run.get("meta_info") or {}).get("boot_id")] + [
        resume.get("boot_id") for resume in run["run_info"].get("resumes") or []]


def boot_setup(run: dict) -> str | None:
    """What a run's train time and peak memory depend on besides its method: its timing_setup and the boot of the
    machine it trained in (meta_info.boot_id, and each resume's): cloud machines that report one CPU name and vector
    unit can be different hosts. None where it trained in several boots (it compares with no
    other run); a run from before the record has its timing_setup alone."""
    boots = boots_of(run)
    if all(boot is None for boot in boots):
        return timing_setup(run)
    return f"{timing_setup(run)}, boot {boots[0]}" if len(set(boots)) == 1 else None


def hardware(run: dict) -> str:
    meta = run.get("meta_info") or {}
    return str(meta.get("device_name") or meta.get("device") or peak_memory(run)[1])
