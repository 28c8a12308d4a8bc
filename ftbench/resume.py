"""Resuming: reading a --resume request, checking the run can continue (same data, not completed, not running),
finding its last complete checkpoint, and noticing a stopped twin of a new run."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys

import utils
from config import OptionParser, RunConfig
from ftbench import run_store
from ftbench.errors import ConfigError
from ftbench.run_store import CHECKPOINTS_DIR, RESULTS_FILE


def resume_request(method: str, argv: list[str] | None, prog: str | None) -> tuple[str, dict, str] | None:
    """(run folder, its results, its status) when the command line asks to resume a run; ConfigError when that run
    cannot be resumed. --resume comes alone (or with --output_dir, where 'latest' looks)."""
    # Read before the full parser, as config_file_values reads --config.
    pre = OptionParser(add_help=False, allow_abbrev=False, prog=prog)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--output_dir", default="results")
    known, others = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if known.resume is None:
        return None
    if others:
        raise ConfigError(f"--resume continues a run with the settings it recorded; drop the other options "
                          f"({' '.join(others)})")
    target = known.resume
    if target == "latest":
        output_dir = known.output_dir
        found = run_store.resumable_runs(output_dir, method)
        if not found:
            raise ConfigError(f"--resume latest: no interrupted or unfinished {method} run under "
                              f"{os.path.join(output_dir, 'runs')}")
        run_dir = found[0][0]
    else:
        run_dir = os.path.normpath(target)
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"--resume: {run_dir} is not a run folder (it has no {RESULTS_FILE}); give a folder "
                          f"under results/runs/, or 'latest'")
    try:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
        info = results["run_info"]
        info["config"]["training"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"--resume: {path} cannot be read as a run's results, so the run cannot be resumed") \
            from None
    run_id = info.get("run_id", os.path.basename(run_dir))
    if info.get("method") != method:
        raise ConfigError(f"--resume: run {run_id} was trained with train_{info.get('method')}.py; resume it with "
                          f"that script")
    status = run_store.effective_status(run_dir, info)
    if status == "completed":
        raise ConfigError(f"--resume: run {run_id} completed; there is nothing to resume")
    if status == "failed":
        raise ConfigError(f"--resume: run {run_id} failed ({info.get('error')}); fix the cause and start a new run")
    if status == "running":
        raise ConfigError(f"--resume: run {run_id} is still running (pid {info.get('pid')} on "
                          f"{info.get('hostname')}); stop it first")
    if info.get("resumable") is False:
        raise ConfigError(f"--resume: run {run_id} cannot be resumed ({info.get('not_resumable_because')}); "
                          f"start a new run")
    return run_dir, results, status


def resolve_recorded_paths(run_config: RunConfig, working_dir: str | None) -> None:
    """Relative paths a run recorded are relative to the folder it started in, which may not be this one."""
    if not working_dir:
        return
    owners = ((run_config.data, "data_dir"), (run_config.data, "train_file"), (run_config.data, "validation_file"),
              (run_config.data, "test_file"), (run_config.pretraining, "mlm_text_file"),
              (run_config.model, "model_name_or_path"))
    for owner, name in owners:
        value = getattr(owner, name)
        if value and not os.path.isabs(value) and not os.path.exists(value) \
                and os.path.exists(os.path.join(working_dir, value)):
            setattr(owner, name, os.path.join(working_dir, value))


def _data_fingerprint(data_info: dict) -> dict:
    source = data_info.get("source") or {}
    return {"files": {split: entry.get("sha256") for split, entry in (source.get("files") or {}).items()},
            "source": {key: value for key, value in source.items() if key not in ("files", "file")},
            "file_sha256": (source.get("sha256")), "split_sizes": data_info.get("split_sizes"),
            "label_names": data_info.get("label_names")}


def check_same_data(previous_info: dict, splits: utils.Splits) -> None:
    before, now = _data_fingerprint(previous_info.get("data") or {}), _data_fingerprint(splits.info)
    changed = [key for key in before if before[key] != now[key]]
    if changed:
        raise utils.DataError(f"the data differ from those run {previous_info.get('run_id')} started with "
                              f"({', '.join(changed)} changed); a resumed run must see the same data, so start a "
                              f"new run instead")


def _comparable(config: dict) -> dict:
    """A run's settings without those that do not change what it computes."""
    config = json.loads(json.dumps(config, default=str))
    for key in ("output_dir", "run_name", "resume"):
        config.get("training", {}).pop(key, None)
    return config


def note_unfinished(run_config: RunConfig, method: str) -> None:
    """Starting a run whose twin stopped early: say so, since resuming it saves the time already spent."""
    mine = _comparable(run_config.to_dict())
    for run_dir, results, status in run_store.resumable_runs(run_config.training.output_dir, method):
        if results["run_info"].get("resumable") is not False \
                and _comparable(results["run_info"].get("config") or {}) == mine:
            print(f"note: an {status} run with the same settings is in {run_dir}; this starts a new run. To continue "
                  f"that one instead: {run_store.resume_hint(run_dir, results['run_info'])}", file=sys.stderr)
            return


def last_checkpoint(run_dir: str) -> tuple[int, str] | None:
    """The newest complete checkpoint; incomplete ones (the process died while saving) are removed."""
    complete = run_store.valid_checkpoints(run_dir)
    complete_folders = {folder for _, folder in complete}
    for folder in glob.glob(os.path.join(run_dir, CHECKPOINTS_DIR, "checkpoint-*")):
        if folder not in complete_folders:
            shutil.rmtree(folder, ignore_errors=True)
    return complete[-1] if complete else None
