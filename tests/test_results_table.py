"""plot_results.py --csv / --parquet on the real runs (the trained_runs fixture): every scalar of every results.json
comes back from the files exactly, under its dotted key path, and lists are left out."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plot_results as pr  # noqa: E402


def scalars(value, path=""):
    """(dotted path, value) of every scalar under a JSON value, walked independently of the module under test."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from scalars(item, f"{path}.{key}" if path else key)
    elif not isinstance(value, list):
        yield path, value


def results_of(trained_runs) -> dict:
    """{run id: results.json} of the three real runs."""
    found = {}
    for method in ("full", "lora", "prefix"):
        data = json.loads((Path(trained_runs[method]) / "results.json").read_text())
        found[data["run_info"]["run_id"]] = data
    return found


def csv_text(value, as_decimal: bool) -> str:
    """How a JSON scalar reads in the CSV: nothing for null, Python's spelling of numbers and true/false."""
    if value is None:
        return ""
    if isinstance(value, bool | str):
        return str(value)
    return repr(float(value)) if as_decimal else repr(value)


def test_csv_and_parquet_hold_every_scalar_of_every_run_exactly(trained_runs, tmp_path, capsys):
    csv_path, parquet_path = tmp_path / "runs.csv", tmp_path / "runs.parquet"
    assert pr.main(["--results_dir", trained_runs["output_dir"], "--csv", str(csv_path),
                    "--parquet", str(parquet_path)]) == 0
    runs = results_of(trained_runs)
    expected = {run_id: dict(scalars(data)) for run_id, data in runs.items()}
    columns = {name for row in expected.values() for name in row}
    assert f"3 run(s), one row each, {len(columns)} columns" in capsys.readouterr().out

    text = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    parquet = pd.read_parquet(parquet_path)
    for table in (text, parquet):
        assert set(table.columns) == columns and len(table.columns) == len(columns)
        assert sorted(table["run_info.run_id"]) == sorted(runs)
    assert "train_info.test.accuracy" in columns and "run_info.config.training.learning_rate" in columns
    # Lists are not scalars: neither they nor anything inside them is a column.
    assert not any(name.startswith(("train_info.history", "train_info.train_loss_log", "run_info.label_names"))
                   for name in columns)
    decimal = {name for row in expected.values() for name, value in row.items() if type(value) is float}
    for table_row, parquet_row in zip(text.to_dict("records"), parquet.to_dict("records")):
        row = expected[table_row["run_info.run_id"]]
        for name in columns:
            value = row.get(name)
            assert table_row[name] == csv_text(value, name in decimal), name
            cell = parquet_row[name]
            if value is None:
                assert cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell)), name
            else:
                assert cell == value and isinstance(cell, bool) == isinstance(value, bool), name
    typed = pd.read_csv(csv_path)
    for _, row in typed.iterrows():
        assert row["train_info.test.accuracy"] == runs[row["run_info.run_id"]]["train_info"]["test"]["accuracy"]


def test_the_table_follows_the_charts_selection(trained_runs, tmp_path):
    path = tmp_path / "lora.csv"
    assert pr.main(["--results_dir", trained_runs["output_dir"], "--method", "lora", "--csv", str(path)]) == 0
    table = pd.read_csv(path, dtype=str)
    assert list(table["run_info.method"]) == ["lora"]


def test_parquet_without_pyarrow_is_refused_in_one_line_and_nothing_is_written(trained_runs, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    csv_path, parquet_path = tmp_path / "runs.csv", tmp_path / "runs.parquet"
    assert pr.main(["--results_dir", trained_runs["output_dir"], "--csv", str(csv_path),
                    "--parquet", str(parquet_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "pyarrow" in error and error.startswith("error:")
    assert list(tmp_path.iterdir()) == []


def test_two_keys_that_would_make_one_column_are_refused():
    from ftbench.results_table import TableError, flatten

    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "d": None}
    with pytest.raises(TableError, match=r"^two keys of a results file make the same column 'a.b'; rename one"):
        flatten({"a": {"b": 1}, "a.b": 2})
