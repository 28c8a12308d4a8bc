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
from ftbench import (
    chart_style,  # noqa: E402
    run_store,  # noqa: E402
)

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
        assert row[10] == f"{train['wall_time_s']:.1f}" and train["wall_time_s"] > train["train_time_s"]
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
    clone(results, "full", "running_full", hours=1, status="running")  # no process holds it: unfinished
    clone(results, "lora", "live_lora", hours=1, status="running")
    live = run_store.RunLock(str(results / "runs" / "live_lora"))
    assert live.acquire()  # as the live training process does
    clone(results, "full", "failed_full", hours=2, status="failed")
    out = results / "out"
    try:
        assert pr.main(["--results_dir", str(results), "--output_dir", str(out)]) == 0
    finally:
        live.release()
    note = "skipped 5 run(s) (2 failed; 1 interrupted; 1 running; 1 unfinished; "
    printed = capsys.readouterr().out
    assert f"note: {note}" in printed
    for stopped in ("interrupted_prefix", "running_full"):  # each with the command that continues it
        run_dir = results / "runs" / stopped
        method = stopped.split("_")[1]
        assert f"{stopped} stopped early, resume: python train_{method}.py --resume {run_dir}" in printed
    assert "live_lora stopped early" not in printed
    summary = (out / pr.SUMMARY_FILE).read_text()
    assert note.capitalize() in summary
    assert sorted(row[-1] for row in table_rows(summary)) == sorted(run_id(results, m) for m in METHODS)

    # The count covers only runs that match the filters.
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--method", "prefix"]) == 0
    assert "skipped 1 run(s) (1 interrupted; interrupted_prefix stopped early" in capsys.readouterr().out


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


# ---------------------------------------------------------------------------------------------------
# Method variants, two-phase runs and merged exports


def test_variants_of_one_method_are_compared_side_by_side(results):
    clone(results, "lora", "20991231-000000_lora_all", hours=1, method_label="lora[all_linear]")
    selected = pr.select_runs(pr.load_runs(str(results)))
    assert sorted(pr.label_of(r) for r in selected) == ["full", "lora", "lora[all_linear]", "prefix"]
    labels = pr.run_labels(selected)
    assert labels[1].startswith("lora (") and labels[2].startswith("lora[all_linear] (")
    colours = pr.method_colours(selected)
    assert len(set(colours.values())) == 4
    # --method matches the method (both variants) or one label
    assert len(pr.select_runs(pr.load_runs(str(results)), methods=["lora"])) == 2
    assert ids(pr.select_runs(pr.load_runs(str(results)), methods=["lora[all_linear]"])) == \
        ["20991231-000000_lora_all"]


def test_results_without_labels_fall_back_to_the_method(results):
    data = load(results / "runs" / run_id(results, "prefix"))
    del data["run_info"]["method_label"]
    (results / "runs" / run_id(results, "prefix") / "results.json").write_text(json.dumps(data))
    assert sorted(pr.label_of(r) for r in pr.select_runs(pr.load_runs(str(results)))) == ["full", "lora", "prefix"]


def two_phase(results: Path, new_id="20991231-000000_cpt", pre_time=30.25, pre_memory=99999.0, **train_info) -> dict:
    """A copy of the full run with a continued pre-training phase before it (label mlm+full)."""
    data = clone(results, "full", new_id, hours=1, method_label="mlm+full")
    train = data["train_info"]
    device = train["memory"]["device_type"]
    key = "peak_mem_alloc_mib" if device == "cuda" else "peak_rss_mib"
    train["pretraining"] = {"train_time_s": pre_time, "memory": {"device_type": device, key: pre_memory},
                            "global_steps": 3, "train_samples": 48, "train_tokens": 900,
                            "train_loss_log": [{"step": 1, "epoch": 0.5, "loss": 9.5}]}
    train["total_train_time_s"] = pre_time + train["train_time_s"]
    train.update(train_info)
    (results / "runs" / new_id / "results.json").write_text(json.dumps(data))
    return data


def fine_tune_memory(train: dict) -> float:
    memory = train["memory"]
    return memory["peak_mem_alloc_mib" if memory["device_type"] == "cuda" else "peak_rss_mib"]


def chart_texts(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].texts]


def test_two_phase_runs_show_total_time_parts_and_the_larger_memory_peak(results, tmp_path):
    train = two_phase(results)["train_info"]
    runs = pr.select_runs(pr.load_runs(str(results)))
    cpt = next(r for r in runs if pr.label_of(r) == "mlm+full")
    assert pr.peak_memory(cpt)[0] == 99999.0  # the MLM phase's peak, larger than fine-tuning's
    assert pr.train_time(cpt) == pytest.approx(30.25 + train["train_time_s"])
    rows = {row[0]: row for row in table_rows(pr.summary_table(runs))}
    row, full = rows["mlm+full"], rows["full"]
    assert row[5] == f"{30.25 + train['train_time_s']:.1f} (MLM 30.2 + fine-tune {train['train_time_s']:.1f})"
    assert row[6] == f"{train['train_samples_per_s']:.1f}"  # throughput: the fine-tuning phase's
    assert row[4].startswith("99999.0 (")
    assert full[5] == f"{train['train_time_s']:.1f}" and full[4].startswith(f"{fine_tune_memory(train):.1f} (")
    out = tmp_path / "plots"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out)]) == 0
    check_png(out / "train_time.png")
    assert "| mlm+full |" in (out / pr.SUMMARY_FILE).read_text()


def test_two_phase_memory_is_the_max_of_both_phases_whichever_is_larger(results):
    train = two_phase(results, pre_memory=1.5)["train_info"]
    run = next(r for r in pr.load_runs(str(results)) if pr.label_of(r) == "mlm+full")
    assert pr.peak_memory(run)[0] == fine_tune_memory(train)  # fine-tuning's peak is the larger here
    # No memory recorded for the MLM phase: the fine-tuning peak, and the text does not claim a max of both.
    run["train_info"]["pretraining"]["memory"] = {}
    assert pr.peak_memory(run)[0] == fine_tune_memory(train)
    figure = pr.memory_chart([run], pr.run_labels([run]), pr.method_colours([run]))
    assert chart_texts(figure) == [f"{fine_tune_memory(train):,.0f} MiB"]
    pr.plt.close("all")


def test_train_time_chart_stacks_the_two_phases(results):
    train = two_phase(results)["train_info"]
    runs = pr.select_runs(pr.load_runs(str(results)))
    labels, colours = pr.run_labels(runs), pr.method_colours(runs)
    position = [pr.label_of(r) for r in runs].index("mlm+full")
    total = 30.25 + train["train_time_s"]

    figure = pr.train_time_chart(runs, labels, colours)
    axis = figure.axes[0]
    texts = chart_texts(figure)
    assert texts[position] == f"{total:.1f} s (MLM 30.2 + fine-tune {train['train_time_s']:.1f})"
    assert all("MLM" not in text for i, text in enumerate(texts) if i != position)
    bars = [p for p in axis.patches if abs(p.get_y() + p.get_height() / 2 - position) < 1e-9]
    # The whole bar in the method's colour, and its first part, the MLM phase, hatched over it.
    assert sorted(round(p.get_width(), 6) for p in bars) == [30.25, round(total, 6)]
    (hatched,) = [p for p in axis.patches if p.get_hatch()]
    assert hatched.get_width() == 30.25 and hatched.get_x() == 0
    assert "hatched: continued pre-training (MLM)" in axis.get_xlabel()

    memory = pr.memory_chart(runs, labels, colours)
    texts = chart_texts(memory)
    assert texts[position] == "99,999 MiB (max of MLM and fine-tuning)"
    assert all("max of" not in text for i, text in enumerate(texts) if i != position)
    assert memory.axes[0].patches[position].get_width() == 99999.0

    # Without a two-phase run: no hatching and the usual label.
    plain = [r for r in runs if pr.label_of(r) != "mlm+full"]
    axis = pr.train_time_chart(plain, pr.run_labels(plain), colours).axes[0]
    assert not any(p.get_hatch() for p in axis.patches) and axis.get_xlabel() == "training time (s)"
    pr.plt.close("all")


def test_total_time_is_the_sum_of_phases_when_total_is_missing(results):
    train = two_phase(results)["train_info"]
    run = next(r for r in pr.load_runs(str(results)) if pr.label_of(r) == "mlm+full")
    del run["train_info"]["total_train_time_s"]
    assert pr.train_time(run) == pytest.approx(30.25 + train["train_time_s"])


def test_merged_checkpoint_size_is_shown_beside_the_adapter(results):
    data = clone(results, "lora", "20991231-000000_lora_merged", hours=1)
    data["train_info"]["merged_checkpoint_size_mib"] = 86.6594
    (results / "runs" / "20991231-000000_lora_merged" / "results.json").write_text(json.dumps(data))
    rows = {row[0]: row for row in table_rows(pr.summary_table(pr.select_runs(pr.load_runs(str(results)))))}
    assert rows["lora"][9] == f"{data['train_info']['checkpoint_size_mib']:.2f} (merged: 86.66)"
    assert "merged" not in rows["full"][9] and "merged" not in rows["prefix"][9]


def test_results_without_the_new_fields_read_as_before(results, tmp_path):
    """Results written before method labels, two-phase runs and merged exports: grouped by method, plain cells."""
    for method in METHODS:
        path = results / "runs" / run_id(results, method) / "results.json"
        data = json.loads(path.read_text())
        data["run_info"].pop("method_label", None)
        for key in ("pretraining", "total_train_time_s", "merged_checkpoint_size_mib"):
            data["train_info"].pop(key, None)
        path.write_text(json.dumps(data))
    clone(results, "lora", "20991231-000000_lora_newer", hours=1)  # same method, no label: replaces the older
    runs = pr.select_runs(pr.load_runs(str(results)))
    assert [pr.label_of(r) for r in runs] == list(METHODS) and "20991231-000000_lora_newer" in ids(runs)
    out = tmp_path / "plots"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out)]) == 0
    for row in table_rows((out / pr.SUMMARY_FILE).read_text()):
        data = load(results / "runs" / row[-1])
        assert row[0] == data["run_info"]["method"]
        assert row[5] == f"{data['train_info']['train_time_s']:.1f}"
        assert row[9] == f"{data['train_info']['checkpoint_size_mib']:.2f}"
    for name in pr.PLOT_FILES:
        check_png(out / name)


def test_method_filter_on_the_command_line_takes_a_method_or_a_label(results, tmp_path, capsys):
    clone(results, "lora", "20991231-000000_lora_all", hours=1, method_label="lora[all_linear]")
    out = tmp_path / "plots"
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--method", "lora[all_linear]"]) == 0
    assert [row[0] for row in table_rows((out / pr.SUMMARY_FILE).read_text())] == ["lora[all_linear]"]
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--method", "lora"]) == 0
    assert [row[0] for row in table_rows((out / pr.SUMMARY_FILE).read_text())] == ["lora", "lora[all_linear]"]
    assert "per (method label, dataset, model)" in (out / pr.SUMMARY_FILE).read_text()
    # An unknown label: the error lists what there is, by label.
    assert pr.main(["--results_dir", str(results), "--output_dir", str(out), "--method", "lora[nothing]"]) == 2
    assert "lora[all_linear]/tweets/" in capsys.readouterr().err


LABELS = ("adalora", "bitfit", "bottleneck_adapter", "bottleneck_adapter[pfeiffer]", "continued_pretraining",
          "dora", "feature_extraction", "full", "ia3", "lora", "lora[all_linear]", "mlm+full", "mlm+lora", "prefix",
          "prompt_tuning", "prompt_tuning[text]", "ptuning", "qlora")


def test_a_dozen_methods_stay_distinct_and_readable(results, tmp_path):
    for i, label in enumerate(LABELS):
        clone(results, "lora", f"20991231-{i:06d}_many", hours=1 + i, method_label=label)
    runs = pr.select_runs(pr.load_runs(str(results)), methods=list(LABELS))
    assert [pr.label_of(r) for r in runs] == sorted(LABELS)
    labels, colours, markers = pr.run_labels(runs), pr.method_colours(runs), pr.method_markers(runs)
    assert len(set(colours.values())) == len(LABELS)  # 18 labels, 18 colours
    assert len({(colours[m], markers[m]) for m in LABELS}) == len(LABELS)
    assert colours["adalora"] == chart_style.PALETTE[0]

    # Learning curves: every run in its label's colour and marker, one legend, below the panels, outside them.
    figure = pr.learning_curves(runs, labels, colours)
    figure.canvas.draw()
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == labels
    assert not any(axis.get_legend() for axis in figure.axes)
    renderer = figure.canvas.get_renderer()
    assert legend.get_window_extent(renderer).y1 <= min(a.get_window_extent(renderer).y0 for a in figure.axes)
    lines = {line.get_label(): line for line in figure.axes[2].get_lines()}
    for run, label in zip(runs, labels):
        assert lines[label].get_color() == colours[pr.label_of(run)]
        assert lines[label].get_marker() == markers[pr.label_of(run)]

    # Accuracy against parameters: numbered points and a legend beside the axes, not 18 overlapping labels.
    figure = pr.accuracy_chart(runs, labels, colours)
    figure.canvas.draw()
    axis = figure.axes[0]
    assert sorted(int(t.get_text()) for t in axis.texts) == list(range(1, len(LABELS) + 1))
    assert sorted(t.get_text().split(". ", 1)[1] for t in axis.get_legend().get_texts()) == sorted(labels)
    renderer = figure.canvas.get_renderer()
    assert axis.get_legend().get_window_extent(renderer).x0 >= axis.get_window_extent(renderer).x1
    assert figure.get_window_extent(renderer).x1 >= axis.get_legend().get_window_extent(renderer).x1
    pr.plt.close("all")


def test_bar_texts_fit_inside_the_axes(results):
    two_phase(results)
    runs = pr.select_runs(pr.load_runs(str(results)))
    labels, colours = pr.run_labels(runs), pr.method_colours(runs)
    for chart in (pr.train_time_chart, pr.memory_chart, pr.params_chart):
        figure = chart(runs, labels, colours)
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        axis = figure.axes[0].get_window_extent(renderer)
        for text in figure.axes[0].texts:
            box = text.get_window_extent(renderer)
            assert axis.x0 < box.x0 and box.x1 <= axis.x1, (chart.__name__, text.get_text())
        assert figure.get_window_extent(renderer).x1 >= axis.x1
    pr.plt.close("all")
