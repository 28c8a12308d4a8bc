"""Reading runs: the results.json files under a results folder, selecting among them, and the figures every
chart, table and report takes from a run (its label, peak memory, train time). Imports neither torch nor
matplotlib, so the commands that only read results start fast."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

from run_status import RESULTS_FILE, RUNS_DIR, results_paths

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


def memory_phases(run: dict) -> tuple[float | None, float | None, str]:
    """(fine-tuning peak MiB, continued pre-training peak MiB or None, device type): GPU memory allocated on
    CUDA, the process's peak RSS on the CPU."""
    train = run["train_info"]
    memory = train.get("memory") or {}
    device = memory.get("device_type", "?")
    key = "peak_mem_alloc_mib" if device == "cuda" else "peak_rss_mib"
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


def hardware(run: dict) -> str:
    meta = run.get("meta_info") or {}
    return str(meta.get("device_name") or meta.get("device") or peak_memory(run)[1])
