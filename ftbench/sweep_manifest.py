"""A sweep's manifest, benchmark.json in its folder: its settings and their fingerprint, its state, its cells'
records and its searches' choices. A folder is resumed only by the same settings.

    created_at = check_folder(sweep) or now()     # ConfigError when the folder holds a sweep with other settings
    write_manifest(sweep, created_at, cells, choices, "running")
    manifest = read_manifest(sweep_folder)        # or None
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING

from ftbench.errors import ConfigError
from ftbench.run_store import wall_time, write_json_atomic

if TYPE_CHECKING:  # not imported at run time: report.py reads manifests and must start fast
    from ftbench.sweep_cells import Sweep

MANIFEST_FILE = "benchmark.json"
MANIFEST_SCHEMA_VERSION = 1


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def cell_wall_time(run: dict | None, seconds: float | None) -> tuple[float | None, bool]:
    """A cell's wall time and whether it is exact: its completed run's, over all the run's processes (a cell
    resumed by a later invocation ran in several; run_store.wall_time), else its process's in this invocation."""
    wall_time_s, exact = wall_time(run) if run else (None, True)
    if wall_time_s is not None:
        return wall_time_s, exact
    return (round(seconds, 1), True) if seconds is not None else (None, False)


def write_manifest(sweep: Sweep, created_at: str, cells: list[dict], choices: dict, state: str) -> None:
    """benchmark.json; choices: {"lr_search": {group: ...}, "optuna_search": {group: ...}} (the latter with
    --search optuna only)."""
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION, "name": sweep.name, "state": state,
        "settings": sweep.settings(), "settings_fingerprint": sweep.fingerprint(),
        "created_at": created_at, "updated_at": now(), "command": shlex.join(["benchmark.py"] + sys.argv[1:]),
        "lr_search": choices["lr_search"]}
    if sweep.optuna_search:
        manifest["optuna_search"] = choices["optuna_search"]
    write_json_atomic(os.path.join(sweep.folder, MANIFEST_FILE), manifest | {"cells": cells})


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


def read_manifest(folder: str) -> dict | None:
    """The folder's benchmark.json, or None where there is none or it cannot be read."""
    try:
        with open(os.path.join(folder, MANIFEST_FILE), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None
