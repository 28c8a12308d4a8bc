"""Whether a run folder's process is still alive, and what state a run is really in.

A training process holds an exclusive lock on <run>/.lock for as long as it lives; the kernel drops the
lock when the process ends, however it ends (kill -9 included). A results.json that still says "running"
while nobody holds the lock belongs to a run that died: "unfinished", resumable from its last checkpoint.

    python run_status.py results            # list the runs that did not complete, and how to resume them
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import contextlib
import glob
import json
import os
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
        "resumable", "not_resumable_because", "resumes"}),
    "train_info": frozenset({
        "num_params_total", "num_params_trainable", "trainable_params_pct", "history", "train_loss_log",
        "selection", "best_val", "test", "train_time_s", "eval_time_s", "train_samples", "train_tokens",
        "train_samples_per_s", "train_tokens_per_s", "train_padded_tokens", "steady_state", "pipeline",
        "utilisation", "memory", "checkpoint_size_mib", "checkpoint_files", "tokenizer_size_mib",
        "merged_checkpoint_size_mib", "pretraining", "total_train_time_s", "final_generalization_gap",
        "global_steps", "epochs", "stopped_at_step", "resume_from_step"}),
}


def results_paths(output_dir: str) -> list[str]:
    """The results.json of every run folder under output_dir, in run-id order (run ids begin with the start time)."""
    return sorted(glob.glob(os.path.join(output_dir, RUNS_DIR, "*", RESULTS_FILE)))


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


def resume_hint(run_dir: str, run_info: dict) -> str:
    script = f"train_{run_info.get('method', '<method>')}.py"
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="List the interrupted and unfinished runs under a results folder, "
                                                 "with the command that resumes each.")
    parser.add_argument("output_dir", nargs="?", default="results", help="The results folder (default: results).")
    output_dir = parser.parse_args(argv).output_dir
    if not os.path.isdir(output_dir):
        print(f"error: {output_dir} is not a folder; give the results folder (default 'results')", file=sys.stderr)
        return 2
    runs = resumable_runs(output_dir)
    if not runs:
        print(f"no interrupted or unfinished runs under {os.path.join(output_dir, 'runs')}")
    for run_dir, results, status in runs:
        info = results["run_info"]
        print(f"{status}: {info.get('run_id')} ({info.get('method_label')}, {info.get('dataset')}), "
              f"{where_it_stopped(results)}; resume: {resume_hint(run_dir, info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
