"""Docs that cannot go stale: every results table in docs/results.md, docs/benchmark.md and docs/speed.md is a
generated block, made by the command its marker names, and regenerating a block gives exactly what that command
prints (ftbench/docs_tables.py).

The rule for "results table": a Markdown table whose header row names a measured figure, that is, holds one of
MEASURED (accuracy, time, memory, a rate "/s", MFU, F1, loss, a bootstrap or McNemar test). Such a table must lie
inside a `<!-- generated: <command> -->` ... `<!-- end generated -->` block. A table that documents options
(speed.md's "option (default) | what it does | where it saves") names no measured figure and may stand anywhere.

No training here: the runs are small results files made by hand, with a fixed SOURCE_DATE_EPOCH so that a command
and its regenerated block carry the same date.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from ftbench import docs_tables

RESULTS_DOCS = ("docs/results.md", "docs/benchmark.md", "docs/speed.md", "README.md")
MEASURED = ("accuracy", "time", "memory", "/s", "mfu", "f1", "loss", "bootstrap", "mcnemar")
EPOCH = 1764590400  # the date every generated line of these tests states
LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]  # ten test examples


def table_headers(text: str) -> list[str]:
    """The header row of every Markdown table in the text (a row followed by a |---| separator row)."""
    lines = text.splitlines()
    return [line for line, below in zip(lines, lines[1:]) if line.startswith("|") and below.startswith("|---")]


def results_tables_outside_blocks(text: str) -> list[str]:
    outside = docs_tables.BLOCK.sub("", text)
    return [header for header in table_headers(outside) if any(word in header.lower() for word in MEASURED)]


def test_the_rule_tells_results_tables_from_option_tables():
    results = "| method | samples/s |\n|---|---|\n| full | 1 |\n"
    options = "| option (default) | what it does | where it saves |\n|---|---|---|\n| `--a` | b | c |\n"
    block = f"{docs_tables.start_marker('python report.py --markdown --results_dir r')}\n{results}" \
            f"{docs_tables.END_MARKER}\n"
    assert results_tables_outside_blocks(results + "\n" + options) == ["| method | samples/s |"]
    assert results_tables_outside_blocks(block + "\n" + options) == []


@pytest.mark.parametrize("name", RESULTS_DOCS)
def test_every_results_table_in_the_docs_is_a_generated_block(name):
    path = ROOT / name
    text = path.read_text(encoding="utf-8")
    assert results_tables_outside_blocks(text) == []
    blocks = docs_tables.find_blocks(str(path), text)
    assert blocks, f"{name} has no generated block"
    for block in blocks:
        first = block.body.splitlines()[0] if block.body else ""
        # Each block says what made it, or that it has not been made here yet and from which folder.
        assert first.startswith("Generated ") and f" by `{block.command}` " in first \
            or first.startswith(f"{docs_tables.NOT_GENERATED}: `{block.source}` does not exist"), (name, first)


# ---------------------------------------------------------------------------------------------------
# Regenerating from hand-made results


def write_run(results_dir: Path, method: str, seed: int, right: int) -> None:
    """One completed run whose first `right` test predictions are correct."""
    run_id = f"2026120{seed}-120000_{method}_tweets_tiny"
    accuracy = right / len(LABELS)
    results = {
        "schema_version": 1,
        "run_info": {"run_id": run_id, "method": method, "method_label": method, "model_name_or_path": "tiny",
                     "dataset": "tweets", "seed": seed, "status": "completed",
                     "started_at": f"2026-12-0{seed}T12:00:00+00:00", "config": {"training": {"seed": seed}}},
        "train_info": {"num_params_trainable": 1000 if method == "lora" else 100000, "num_params_total": 100000,
                       "trainable_params_pct": 1.0 if method == "lora" else 100.0,
                       "test": {"accuracy": accuracy, "f1_macro": accuracy / 2, "loss": 1 - accuracy},
                       "best_val": {"val_accuracy": accuracy}, "train_time_s": 10.0 + seed,
                       "train_samples_per_s": 20.0 + seed, "memory": {"device_type": "cpu", "peak_rss_mib": 900.0},
                       "checkpoint_size_mib": 0.5, "history": []},
        "meta_info": {"device": "cpu", "device_name": "Test CPU", "cpu": "Test CPU", "cpu_count": 2},
    }
    folder = results_dir / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    predictions = [label if i < right else (label + 1) % 3 for i, label in enumerate(LABELS)]
    (folder / "test_predictions.json").write_text(json.dumps({"labels": LABELS, "predictions": predictions}),
                                                  encoding="utf-8")


@pytest.fixture
def sources(tmp_path, monkeypatch) -> dict[str, Path]:
    """A sweep of two methods over two seeds, and a bench_speed.py folder with its speed.md."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    sweep = tmp_path / "sweep"
    for method, seed, right in (("full", 1, 8), ("full", 2, 7), ("lora", 1, 6), ("lora", 2, 9)):
        write_run(sweep, method, seed, right)
    speed = tmp_path / "speed"
    write_run(speed, "full", 1, 8)
    (speed / "speed.md").write_text("# Training speed\n\n`python bench_speed.py`\n\nDevice: Test CPU.\n\n"
                                    "| method | pipeline | samples/s |\n|---|---|---|\n| full | suite | 12.5 |\n"
                                    "| full | recipe | 1.5 |\n\nafter the table\n", encoding="utf-8")
    return {"sweep": sweep, "speed": speed}


def commands(sources: dict[str, Path]) -> list[str]:
    return [shlex.join(["python", "plot_results.py", "--markdown", "--results_dir", str(sources["sweep"])]),
            shlex.join(["python", "report.py", "--markdown", "--results_dir", str(sources["sweep"])]),
            shlex.join(["python", "-m", "ftbench.docs_tables", "--bench_speed_table", "--results_dir",
                        str(sources["speed"])])]


def page(commands: list[str]) -> str:
    """A Markdown page with prose around one not-yet-generated block per command."""
    return "# A page\n\nProse before.\n\n" + "".join(
        f"{docs_tables.start_marker(command)}\nNot generated yet.\n{docs_tables.END_MARKER}\n\nProse after {i}.\n\n"
        for i, command in enumerate(commands))


def stdout_of(command: str) -> str:
    done = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_regenerated_block_is_exactly_what_its_command_prints(sources, tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text(page(commands(sources)), encoding="utf-8")
    notes = docs_tables.update_docs([str(doc)])
    assert len(notes) == 3 and all(note.startswith("regenerated: ") for note in notes)
    text = doc.read_text(encoding="utf-8")
    blocks = docs_tables.find_blocks(str(doc), text)
    assert [block.command for block in blocks] == commands(sources)
    date = dt.datetime.fromtimestamp(EPOCH, dt.UTC).date().isoformat()
    for block in blocks:
        assert block.body == stdout_of(block.command)
        assert block.body.startswith(f"Generated {date} by `{block.command}` from ")
        assert "run(s) on Test CPU (2 CPU cores)." in block.body.splitlines()[0]
    # The prose around the blocks is kept as it was.
    assert docs_tables.BLOCK.sub("", text) == docs_tables.BLOCK.sub("", page(commands(sources)))
    plot_table, report_table, speed_table = (block.body for block in blocks)
    assert "| full | tiny | tweets | 100,000 (100%) |" in plot_table
    assert "| lora | 2 | 1,000 (1%) |" in report_table and "**Against full**" in report_table
    assert speed_table.endswith("| full | suite | 12.5 |\n| full | recipe | 1.5 |\n")
    assert docs_tables.update_docs([str(doc)]) == notes and doc.read_text(encoding="utf-8") == text  # stable


def test_a_missing_source_is_refused_in_one_line_and_nothing_is_written(sources, tmp_path, capsys):
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text(page(commands(sources)[:1]), encoding="utf-8")
    missing = shlex.join(["python", "report.py", "--markdown", "--results_dir", str(tmp_path / "gone")])
    bad.write_text(page([missing]), encoding="utf-8")
    before = good.read_text(encoding="utf-8"), bad.read_text(encoding="utf-8")
    assert docs_tables.main([str(good), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(r"gone, which does not exist; produce its runs", error)
    assert (good.read_text(encoding="utf-8"), bad.read_text(encoding="utf-8")) == before
    # --skip_missing regenerates the others and leaves that block as it is.
    assert docs_tables.main(["--skip_missing", str(good), str(bad)]) == 0
    assert good.read_text(encoding="utf-8") != before[0] and bad.read_text(encoding="utf-8") == before[1]


def test_a_failing_command_is_refused_with_its_reason_and_nothing_is_written(sources, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    doc = tmp_path / "page.md"
    doc.write_text(page([shlex.join(["python", "plot_results.py", "--markdown", "--results_dir", str(empty)])]),
                   encoding="utf-8")
    before = doc.read_text(encoding="utf-8")
    assert docs_tables.main([str(doc)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "failed (exit status 2): error: no completed runs in" in error
    assert doc.read_text(encoding="utf-8") == before
