"""Runs as one flat table, for pandas or a spreadsheet: plot_results.py --csv FILE / --parquet FILE.

One row per run, one column per scalar of its results.json, named by its path of keys joined with dots
(train_info.test.accuracy, run_info.config.training.learning_rate); a key that itself holds a dot (a file name in
train_info.checkpoint_files) keeps it. The rule for what becomes a column:
  - strings, numbers, true/false and null are scalars: each is a cell (null: an empty cell);
  - objects are walked into, so only their scalars become columns (an empty object gives none);
  - lists (history, train_loss_log, label_names, resumes, ...) are not scalars and are left out, with everything
    inside them;
  - a column's type comes from its values over all the runs: integers (empty where a run lacks the key),
    decimals (integers and decimals mixed), true/false, text, or, where runs hold different kinds of value
    under one key, text (each value as results.json writes it: 3, 0.5, true; strings as they are).
Columns run in the order their keys first appear over the runs (run_info, then train_info, then meta_info, as
results.json holds them).
"""

from __future__ import annotations

import contextlib
import json
import os

from ftbench.run_store import ResultsError, write_text_atomic

SCALARS = (str, int, float, bool, type(None))


class TableError(ResultsError):
    """A table that cannot be written (its package missing, its folder absent): one line, exit 2."""


def flatten(value: dict, prefix: str = "") -> dict:
    """{dotted key path: scalar} of a JSON object, lists left out (the rule in this module's docstring)."""
    flat = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        found = flatten(item, f"{name}.") if isinstance(item, dict) else \
            {name: item} if isinstance(item, SCALARS) else {}
        for column_name in found.keys() & flat.keys():  # e.g. {"a": {"b": 1}} beside {"a.b": 2}: never one silently
            raise TableError(f"two keys of a results file make the same column '{column_name}'; rename one of them")
        flat.update(found)
    return flat


def run_row(run: dict) -> dict:
    """A run's row: its results.json flattened (without the "_dir" the run store adds on reading)."""
    return flatten({key: value for key, value in run.items() if not key.startswith("_")})


def column(values: list):
    """One column as a pandas array whose type fits every run's value (the rule in this module's docstring)."""
    import pandas as pd

    kinds = {type(v) for v in values if v is not None}  # JSON's: bool, int, float, str
    if kinds == {bool}:
        return pd.array(values, dtype="boolean")
    if kinds == {int}:
        return pd.array(values, dtype="Int64")
    if kinds and kinds <= {int, float}:
        return pd.array([None if v is None else float(v) for v in values], dtype="Float64")
    if kinds == {str}:
        return pd.array(values, dtype="string")
    if not kinds:
        return pd.array(values, dtype="object")
    return pd.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                    dtype="string")


def runs_frame(runs: list[dict]):
    """The table: a pandas DataFrame, one row per run, in the order given."""
    import pandas as pd

    rows = [run_row(run) for run in runs]
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pd.DataFrame({name: column([row.get(name) for row in rows]) for name in names})


def check_writable(csv_path: str | None, parquet_path: str | None) -> None:
    """Refuse, before anything is written, a Parquet file without pyarrow and a file in a missing folder."""
    if parquet_path:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise TableError("--parquet needs the package pyarrow, which is not installed: pip install pyarrow "
                             "(or use --csv)") from None
    for path in filter(None, (csv_path, parquet_path)):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise TableError(f"cannot write {path}: the folder {folder} does not exist; create it or give another path")
        if os.path.isdir(path):
            raise TableError(f"cannot write {path}: it is a folder; give a file name, e.g. {path}/runs.csv")


def parquet_bytes(frame) -> bytes:
    """The table as a Parquet file, made in memory before anything is written (pyarrow refuses some values)."""
    from pyarrow.lib import ArrowException

    try:
        return frame.to_parquet(None, engine="pyarrow", index=False)
    except (ArrowException, TypeError, ValueError) as error:
        raise TableError(f"the table cannot be written as Parquet ({str(error).splitlines()[0]}); use --csv") from None


def write_bytes_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:  # leave no partial file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_tables(runs: list[dict], csv_path: str | None = None, parquet_path: str | None = None) -> str:
    """Write the table of runs as CSV and/or Parquet, each file whole or not at all; a line saying what was written."""
    check_writable(csv_path, parquet_path)
    frame = runs_frame(runs)
    parquet = parquet_bytes(frame) if parquet_path else None
    try:
        if csv_path:
            write_text_atomic(csv_path, frame.to_csv(index=False))
        if parquet_path:
            write_bytes_atomic(parquet_path, parquet)
    except OSError as error:  # e.g. no permission, a full disk
        raise TableError(f"cannot write {error.filename or csv_path or parquet_path} ({error.strerror or error}); "
                         "check the path") from None
    written = " and ".join(path for path in (csv_path, parquet_path) if path)
    return f"wrote {written}: {frame.shape[0]} run(s), one row each, {frame.shape[1]} columns"
