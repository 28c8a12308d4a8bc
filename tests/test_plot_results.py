"""Tests for plot_results.py: end to end on real runs (the trained_runs fixture), and selection and error
handling on edited copies of those runs' results.json files."""

import datetime as dt
import json
import shutil
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plot_results as pr  # noqa: E402

METHODS = ("full", "lora", "prefix")
OUTPUTS = pr.PLOT_FILES + (pr.SUMMARY_FILE,)


def load(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert len(data) > 10_000, f"{path.name} is suspiciously small ({len(data)} bytes)"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert width >= 600 and height >= 300, (path.name, width, height)


def table_rows(summary: str) -> list[list[str]]:
    """The data rows of the Markdown table, as lists of cells."""
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


@pytest.fixture
def results(trained_runs, tmp_path) -> Path:
    """A results folder in tmp_path holding copies of the three real runs' results.json files."""
    root = tmp_path / "results"
    for method in METHODS:
        source = Path(trained_runs[method])
        (root / "runs" / source.name).mkdir(parents=True)
        shutil.copy(source / "results.json", root / "runs" / source.name / "results.json")
    return root


def run_id(results: Path, method: str) -> str:
    (folder,) = [p.name for p in (results / "runs").iterdir() if f"_{method}_" in p.name]
    return folder


def clone(results: Path, method: str, new_id: str, hours: float = 0.0, **run_info) -> dict:
    """Copy a method's run to runs/<new_id>, started `hours` later, with run_info fields replaced."""
    data = load(results / "runs" / run_id(results, method))
    started = dt.datetime.fromisoformat(data["run_info"]["started_at"]) + dt.timedelta(hours=hours)
    data["run_info"].update(run_id=new_id, started_at=started.isoformat(timespec="seconds"), **run_info)
    folder = results / "runs" / new_id
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(data))
    return data


def ids(runs) -> list[str]:
    return [r["run_info"]["run_id"] for r in runs]


# ---------------------------------------------------------------------------------------------------
# End to end on the real runs


def test_end_to_end_writes_plots_and_exact_summary(trained_runs, tmp_path, capsys):
    out = tmp_path / "plots"
    assert pr.main(["--results_dir", trained_runs["output_dir"], "--output_dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    for name in pr.PLOT_FILES:
        check_png(out / name)

    summary = (out / pr.SUMMARY_FILE).read_text()
    rows = {row[-1]: row for row in table_rows(summary)}
    assert len(rows) == 3
    for method in METHODS:
        data = load(trained_runs[method])
        info, train = data["run_info"], data["train_info"]
        row = rows[info["run_id"]]
        assert row[:3] == [method, info["model_name_or_path"], "tweets"]
        assert row[3] == f"{train['num_params_trainable']:,} ({train['trainable_params_pct']:.4g}%)"
        if train["memory"]["device_type"] == "cuda":
            assert row[4] == f"{train['memory']['peak_mem_alloc_mib']:.1f} (GPU allocated)"
        else:
            assert row[4] == f"{train['memory']['peak_rss_mib']:.1f} (CPU RSS)"
        assert row[5] == f"{train['train_time_s']:.1f}"
        assert row[6] == f"{train['train_samples_per_s']:.1f}"
        assert row[7] == f"{train['test']['accuracy']:.4f}"
        assert row[8] == f"{train['test']['f1_macro']:.4f}"
        assert row[9] == f"{train['checkpoint_size_mib']:.2f}"
    meta = load(trained_runs["full"])["meta_info"]
    assert f"torch {meta['torch']}, transformers {meta['transformers']}, peft {meta['peft']}" in summary
    assert "No runs skipped." in summary
    assert "wrote 5 plots" in capsys.readouterr().out


def test_default_output_dir_is_under_results_dir(results):
    assert pr.main(["--results_dir", str(results)]) == 0
    assert sorted(p.name for p in (results / "plots").iterdir()) == sorted(OUTPUTS)
    # A second run does not pick the plots folder up as a run.
    assert len(pr.load_runs(str(results))) == 3


# ---------------------------------------------------------------------------------------------------
# Selection


def test_newest_completed_run_per_method_dataset_model(results):
    lora = run_id(results, "lora")
    clone(results, "lora", "older_lora", hours=-1)
    clone(results, "lora", "newer_lora", hours=+1)
    clone(results, "lora", "newest_lora_but_failed", hours=+2, status="failed")
    runs = pr.load_runs(str(results))
    assert len(runs) == 6

    selected = pr.select_runs(runs)
    assert [r["run_info"]["method"] for r in selected] == list(METHODS)
    assert "newer_lora" in ids(selected) and lora not in ids(selected)

    every = pr.select_runs(runs, all_runs=True)
    assert sorted(ids(every)) == sorted(set(ids(runs)) - {"newest_lora_but_failed"})
    # Within a method, --all_runs lists runs oldest first.
    assert [i for i in ids(every) if "lora" in i] == ["older_lora", lora, "newer_lora"]


def test_start_time_ties_are_broken_by_run_id(results):
    clone(results, "prefix", "zzz_same_start")
    selected = pr.select_runs(pr.load_runs(str(results)), methods=["prefix"])
    assert ids(selected) == ["zzz_same_start"]


def test_filters(results, trained_runs):
    clone(results, "lora", "lora_on_sst2", dataset="sst2")
    clone(results, "full", "full_other_model", model_name_or_path="/somewhere/else/other-model")
    runs = pr.load_runs(str(results))
    model_path = load(trained_runs["lora"])["run_info"]["model_name_or_path"]

    assert ids(pr.select_runs(runs, dataset="sst2")) == ["lora_on_sst2"]
    assert [r["run_info"]["method"] for r in pr.select_runs(runs, dataset="tweets", methods=["lora", "prefix"])] \
        == ["lora", "prefix"]
    assert ids(pr.select_runs(runs, model="other-model")) == ["full_other_model"]
    by_path = pr.select_runs(runs, model=model_path, dataset="tweets")
    assert [r["run_info"]["method"] for r in by_path] == list(METHODS)
    assert pr.select_runs(runs, model=Path(model_path).name, dataset="tweets") == by_path
    assert ids(pr.select_runs(runs, methods="full", model="other-model")) == ["full_other_model"]
    assert pr.select_runs(runs, dataset="imdb") == []


def test_incomplete_runs_are_skipped_and_counted(results, capsys):
    clone(results, "lora", "failed_lora", hours=1, status="failed")
    clone(results, "prefix", "interrupted_prefix", hours=1, status="interrupted")
    clone(results, "full", "running_full", hours=1, status="running")
    clone(results, "full", "failed_full", hours=2, status="failed")
    out = results / "out"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out)]) == 0
    note = "skipped 4 run(s) (2 failed; 1 interrupted; 1 running)"
    assert f"note: {note}" in capsys.readouterr().out
    summary = (out / pr.SUMMARY_FILE).read_text()
    assert note.capitalize() in summary
    assert sorted(row[-1] for row in table_rows(summary)) == sorted(run_id(results, m) for m in METHODS)

    # The count covers only runs that match the filters.
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--method", "prefix"]) == 0
    assert "skipped 1 run(s) (1 interrupted)" in capsys.readouterr().out


def test_older_runs_are_noted_and_all_runs_shows_them(results, capsys):
    clone(results, "lora", "older_lora", hours=-1)
    out = results / "out"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out)]) == 0
    assert "left out 1 older completed run(s)" in capsys.readouterr().out
    assert len(table_rows((out / pr.SUMMARY_FILE).read_text())) == 3

    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--all_runs"]) == 0
    rows = table_rows((out / pr.SUMMARY_FILE).read_text())
    assert len(rows) == 4 and "older_lora" in [row[-1] for row in rows]


def test_explicit_runs_by_folder_and_id_override_selection(results):
    clone(results, "lora", "older_lora", hours=-1)
    out = results / "out"
    full_folder = str(results / "runs" / run_id(results, "full"))
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out),
                    "--runs", full_folder, "older_lora", "older_lora"]) == 0
    summary = (out / pr.SUMMARY_FILE).read_text()
    assert sorted(row[-1] for row in table_rows(summary)) == sorted([run_id(results, "full"), "older_lora"])
    assert "the runs named with --runs" in summary


def test_invalid_json_is_skipped_with_a_warning(results, capsys):
    broken = results / "runs" / "broken_run" / "results.json"
    broken.parent.mkdir()
    broken.write_text('{"run_info": {"status": "compl')
    unreadable = []
    assert len(pr.load_runs(str(results), unreadable)) == 3
    assert len(unreadable) == 1 and str(broken) in unreadable[0]
    assert str(broken) in capsys.readouterr().err

    out = results / "out"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {broken} is not valid JSON" in captured.err
    assert "skipped 1 run(s) (unreadable: " in captured.out
    assert len(table_rows((out / pr.SUMMARY_FILE).read_text())) == 3


# ---------------------------------------------------------------------------------------------------
# Labels and device handling


def test_labels_name_dataset_and_model_only_when_needed(results):
    runs = pr.select_runs(pr.load_runs(str(results)))
    model = Path(runs[0]["run_info"]["model_name_or_path"]).name
    assert pr.run_labels(runs) == [f"{m} ({model})" for m in METHODS]

    clone(results, "lora", "20990101-000000_lora_sst2", dataset="sst2")
    clone(results, "prefix", "20990101-000001_prefix_tweets", hours=-1)
    labels = pr.run_labels(pr.select_runs(pr.load_runs(str(results)), all_runs=True))
    assert f"lora (sst2, {model})" in labels
    assert f"prefix (tweets, {model}) 20990101-000001" in labels  # two prefix runs: the run id tells them apart
    assert len(set(labels)) == len(labels)


def test_mixed_devices_are_said_so_not_compared_silently(results):
    data = clone(results, "lora", "gpu_lora", hours=1)
    data["train_info"]["memory"] = {"device_type": "cuda", "peak_rss_mib": 3000.0, "peak_mem_alloc_mib": 812.4,
                                    "peak_mem_reserved_mib": 1024.0}
    data["meta_info"].update(device="cuda", device_name="NVIDIA H100 80GB HBM3")
    (results / "runs" / "gpu_lora" / "results.json").write_text(json.dumps(data))
    runs = pr.select_runs(pr.load_runs(str(results)))
    labels, colours = pr.run_labels(runs), pr.method_colours(runs)

    axis = pr.memory_chart(runs, labels, colours).axes[0]
    assert "mix devices (cpu, cuda)" in axis.get_title()
    assert "GPU allocated" in axis.get_xlabel() and "RSS" in axis.get_xlabel()
    assert "mix devices" in pr.train_time_chart(runs, labels, colours).axes[0].get_title()
    table = pr.summary_table(runs)
    assert "812.4 (GPU allocated)" in table and "NVIDIA H100 80GB HBM3" in table

    only_cpu = [r for r in runs if r["run_info"]["run_id"] != "gpu_lora"]
    axis = pr.memory_chart(only_cpu, pr.run_labels(only_cpu), colours).axes[0]
    assert "mix" not in axis.get_title() and axis.get_xlabel() == "peak resident memory of the process (CPU RSS), MiB"
    pr.plt.close("all")


# ---------------------------------------------------------------------------------------------------
# Errors: status 2, one line naming the problem, nothing written


def _corrupt(results):
    path = results / "runs" / "broken_run" / "results.json"
    path.parent.mkdir()
    path.write_text("not json")


def _only_failed(results):
    for method in METHODS:
        path = results / "runs" / run_id(results, method) / "results.json"
        data = json.loads(path.read_text())
        data["run_info"]["status"] = "failed"
        path.write_text(json.dumps(data))


@pytest.mark.parametrize("arguments, prepare, message", [
    (["--results_dir", "{results}/missing"], None, "results directory {results}/missing does not exist"),
    (["--dataset", "sst2", "--method", "lora"], None, "no completed runs in {results}/runs match --dataset sst2 "
                                                      "--method lora"),
    (["--model", "no-such-model"], None, "match --model no-such-model"),
    ([], _only_failed, "no completed runs in {results}/runs match no filters"),
    (["--runs", "20000101-000000_lora_nowhere"], None, "unknown run 20000101-000000_lora_nowhere"),
    (["--runs", "broken_run"], _corrupt, "{results}/runs/broken_run/results.json is not valid JSON"),
])
def test_errors_exit_2_with_one_line_and_write_nothing(results, capsys, arguments, prepare, message):
    if prepare:
        prepare(results)
    out = results / "out"
    arguments = [a.format(results=results) for a in arguments]
    if "--results_dir" not in arguments:
        arguments = ["--results_dir", str(results)] + arguments
    assert pr.main(arguments + ["--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert message.format(results=results) in err[0]
    assert not out.exists()


def test_explicit_failed_run_is_an_error(results, capsys):
    clone(results, "lora", "failed_lora", status="failed")
    out = results / "out"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--runs", "failed_lora"]) == 2
    assert "run failed_lora has status failed" in capsys.readouterr().err
    assert not out.exists()


def test_runs_cannot_be_combined_with_filters(results, capsys):
    out = results / "out"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--runs", "x", "--method", "lora"]) == 2
    assert "--runs names runs explicitly" in capsys.readouterr().err
    assert not out.exists()
