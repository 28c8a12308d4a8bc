"""Tests for benchmark.py: the grid and its commands, refusals before anything runs, the learning-rate choice,
and real sweeps of the tiny BERT: one killed mid-cell and resumed, one with a learning-rate search."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchmark  # noqa: E402
from ftbench import provenance, sweep_records  # noqa: E402
from ftbench.lr_search import choose_learning_rate, next_search_rate  # noqa: E402
from ftbench.sweep_progress import Progress  # noqa: E402

# Small enough to take seconds, long enough (60 steps, 3 evaluations) for a kill to land mid-training.
TINY_RUN = ("--max_train_samples 640 --max_eval_samples 64 --max_steps 60 --per_device_train_batch_size 16 "
            "--logging_steps 5 --save_model false")


def cells_of(output: str) -> list[str]:
    return [line.split(":")[0] for line in output.splitlines() if ": python train_" in line]


def test_quick_preset_grid_and_commands(capsys):
    assert benchmark.main(["--preset", "quick", "--dry_run"]) == 0
    output = capsys.readouterr().out
    cells = cells_of(output)
    # Seed by seed: each seed's methods one after another.
    assert cells == [f"{m}-tweets-minilm-seed{s}" for s in (1, 2, 3) for m in ("full", "lora", "prefix")]
    line = next(line for line in output.splitlines() if line.startswith("lora-tweets-minilm-seed2:"))
    for part in ("python train_lora.py", "--seed 2", "--run_name lora-tweets-minilm-seed2", "--max_train_samples 1500",
                 "--learning_rate 3e-3", "--output_dir results/benchmarks/quick"):
        assert part in line
    assert "9 cells; nothing run" in output


def test_design_document_presets_carry_their_settings(capsys):
    assert benchmark.main(["--preset", "imdb_distilbert_full_vs_lora", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lora = next(line for line in lines if line.startswith("lora-imdb-distilbert-seed1"))
    full = next(line for line in lines if line.startswith("full-imdb-distilbert-seed1"))
    assert "--max_seq_length 256" in full and "--num_train_epochs 3" in full and "--learning_rate" not in full
    assert lora.endswith("--learning_rate 5e-4")
    assert benchmark.main(["--list_presets"]) == 0
    assert set(benchmark.PRESETS) <= {line.split(":")[0] for line in capsys.readouterr().out.splitlines()}


def test_command_line_overrides_a_config_file_and_lr_search_cells_come_first(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text("methods: [full, lora]\nseeds: [7, 8]\nrun_args: --num_train_epochs 1\n"
                      "method_args:\n  lora: --lora_r 4\nlr_search_factors: [0.5, 2]\n")
    assert benchmark.main(["--config", str(config), "--seeds", "5", "--lr_search", "--dry_run"]) == 0
    output = capsys.readouterr().out
    assert cells_of(output) == ["lr2.5e-05-full-tweets-minilm-seed1", "lr0.0001-full-tweets-minilm-seed1",
                                "lr0.0015-lora-tweets-minilm-seed1", "lr0.006-lora-tweets-minilm-seed1",
                                "full-tweets-minilm-seed5", "lora-tweets-minilm-seed5"]
    lora = next(line for line in output.splitlines() if line.startswith("lora-tweets-minilm-seed5"))
    assert "--num_train_epochs 1" in lora and "--lora_r 4" in lora
    assert output.splitlines()[-1] == ("6 cells, and up to 4 search cells past the grid (2 for a method whose best "
                                       "rate is at its edge); nothing run (--dry_run)")


@pytest.mark.parametrize("arguments, message", [
    (["--methods", "lora", "sgd"], "unknown method 'sgd' in --methods"),
    (["--preset", "fast"], "unknown --preset 'fast'"),
    (["--methods", "lora", "--seeds", "1", "1"], "--seeds repeats a seed"),
    (["--methods", "lora", "--method_args", "lora --lora_r 4"], "needs the form method=options"),
    (["--methods", "lora", "--run_args", "--learning_rate -1"], "--learning_rate must be positive"),
    (["--methods", "lora", "--run_args", "--no_such_option 3"], "unrecognized arguments: --no_such_option"),
    (["--methods", "lora", "--run_args", "--dataset 'sst2"], "is not a valid option string"),
    (["--methods", "lora", "--lr_search_factors", "0"], "--lr_search_factors must be positive"),
    ([], "no methods"),
])
def test_bad_input_is_refused_with_one_line_before_anything_runs(arguments, message, tmp_path, capsys):
    status = benchmark.main(arguments + ["--output_dir", str(tmp_path / "sweeps")])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "sweeps").exists()


def test_a_stop_while_the_report_is_written_says_how_to_write_it(tmp_path, monkeypatch, capsys):
    import report

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(benchmark, "execute", lambda sweep, launch, dry_run: 0)  # every cell completed
    monkeypatch.setattr(report, "write_report", stopped)
    status = benchmark.main(["--methods", "lora", "--name", "done", "--output_dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 130 and error == ("interrupted while writing the report; write it with: python report.py "
                                       f"--results_dir {tmp_path / 'done'}\n")


def test_choose_learning_rate_by_validation_accuracy_then_loss():
    candidates = [{"learning_rate": 1e-4, "best_val_accuracy": 0.80, "best_val_loss": 0.50},
                  {"learning_rate": 1e-3, "best_val_accuracy": 0.85, "best_val_loss": 0.45},
                  {"learning_rate": 3e-3, "best_val_accuracy": 0.85, "best_val_loss": 0.40},
                  {"learning_rate": 1e-2, "best_val_accuracy": None, "best_val_loss": None}]
    assert choose_learning_rate(candidates)["learning_rate"] == 3e-3
    assert choose_learning_rate(candidates[-1:]) is None


def tried(*results) -> list[dict]:
    """Search candidates from (rate, validation accuracy) pairs; None: the run failed."""
    return [{"learning_rate": rate, "best_val_accuracy": accuracy, "best_val_loss": None if accuracy is None else 0.5}
            for rate, accuracy in results]


def test_a_search_goes_past_the_edge_of_its_grid_while_the_best_rate_is_there():
    grid = [9e-4, 3e-3, 9e-3]  # lora's 3e-3 times 0.3 1 3
    assert next_search_rate(tried((9e-4, .70), (3e-3, .80), (9e-3, .75)), grid) is None  # best inside: done
    assert next_search_rate(tried((9e-4, .70), (3e-3, .75), (9e-3, .80)), grid) == 0.027  # the grid's ratio up
    assert next_search_rate(tried((9e-4, .80), (3e-3, .75), (9e-3, .70)), grid) == 0.00027  # and down
    assert next_search_rate(tried((9e-4, .70), (3e-3, .75), (9e-3, .80), (0.027, .85)), grid) == 0.081
    # Two steps a side at most; a failed step or a worse one ends it.
    assert next_search_rate(tried((9e-4, .70), (3e-3, .75), (9e-3, .80), (0.027, .85), (0.081, .9)), grid) is None
    assert next_search_rate(tried((9e-4, .70), (3e-3, .75), (9e-3, .80), (0.027, None)), grid) is None
    assert next_search_rate(tried((9e-4, .70), (3e-3, .75), (9e-3, .80), (0.027, .79)), grid) is None
    # Past the top, the best can still fall back to the bottom edge: then the search goes down.
    assert next_search_rate(tried((9e-4, .90), (3e-3, .75), (9e-3, .80), (0.027, .79)), grid) == 0.00027
    assert next_search_rate(tried((3e-3, .75)), [3e-3]) is None  # one rate is no grid
    assert next_search_rate(tried((1e-3, .70), (1.0001e-3, .80)), [1e-3, 1.0001e-3]) is None  # too fine to step


def test_the_estimate_of_what_remains_counts_runs_completed_before_this_invocation(capsys):
    def cell(kind: str, method: str, seed: int) -> benchmark.Cell:
        return benchmark.Cell(kind, method, "sst2", "minilm", seed, 1e-4 if kind == "lr_search" else None)

    def run(wall: float, resumes: list, phases: dict) -> dict:
        return {"run_info": {"run_id": "r", "resumes": resumes},
                "train_info": {"wall_time_s": wall, "wall_time_breakdown_s": phases, "train_time_s": 900.0,
                               "eval_time_s": 100.0}}

    progress = Progress(5)
    progress.skip(cell("lr_search", "full", 1), run(600.0, [], {}))
    # Resumed before earlier processes were timed: its lower bound, 1000 + 900 + 100 - 700 (this process's share).
    progress.skip(cell("run", "full", 1), run(1000.0, [{}], {"training": 700.0}))
    progress.start(cell("run", "full", 2), [cell("run", "full", 3), cell("run", "lora", 1)])
    # full: 1300 s; lora, no run yet: the mean of the runs (1300 s), not of the shorter search.
    assert capsys.readouterr().out.endswith("seed 2 (run); elapsed 0m00s; remaining ≈ 43m20s\n")
    progress.finish(cell("run", "full", 2), 1500.0)
    progress.start(cell("run", "full", 3), [cell("run", "lora", 1)])
    assert capsys.readouterr().out.endswith("remaining ≈ 23m20s\n")  # (1300 + 1500) / 2


def runs_by_cell(sweep: Path) -> dict:
    return {name: [(r["run_info"]["run_id"], r["run_info"]["status"]) for r in runs]
            for name, runs in benchmark.find_runs(str(sweep)).items()}


@pytest.mark.slow
def test_a_sweep_killed_mid_cell_resumes_without_losing_or_repeating_a_cell(tiny_bert, tmp_path):
    sweep = tmp_path / "sweeps" / "resume"
    command = [sys.executable, str(ROOT / "benchmark.py"), "--methods", "full", "lora", "--models", tiny_bert,
               "--seeds", "1", "2", "--name", "resume", "--output_dir", str(tmp_path / "sweeps"),
               "--run_args", TINY_RUN]
    # Seed by seed: full and LoRA at seed 1, then at seed 2; the sweep is killed in the second cell.
    first, killed, full2, lora2 = (benchmark.Cell("run", method, "tweets", tiny_bert, seed).cell_id
                                   for seed in (1, 2) for method in ("full", "lora"))
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 240
        while killed not in runs_by_cell(sweep):  # the second cell has started training
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    # The orphaned training run is told (SIGINT) that its sweep died, and records itself as interrupted.
    deadline = time.monotonic() + 60
    while runs_by_cell(sweep)[killed][0][1] == "running":
        assert time.monotonic() < deadline, "the orphaned run kept running"
        time.sleep(0.1)
    before = runs_by_cell(sweep)
    assert before[first] == [(before[first][0][0], "completed")]
    assert [status for _, status in before[killed]] == ["interrupted"]
    assert set(before) == {first, killed}
    assert pending_cells_see(command, [first, killed]) == ([killed], {first: "completed"})

    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{first}: already completed ({before[first][0][0]}), skipped" in result.stdout
    assert "[4/4]" in result.stdout and "remaining ≈" in result.stdout
    after = runs_by_cell(sweep)
    assert set(after) == {first, killed, full2, lora2}
    assert after[first] == before[first]  # not run again
    # The killed cell's run continued in its own folder from its checkpoint (train_full.py --resume).
    assert after[killed] == [(before[killed][0][0], "completed")]
    resumed = benchmark.find_runs(str(sweep))[killed][0]["run_info"]
    assert [r["from_status"] for r in resumed["resumes"]] == ["interrupted"]
    # Both processes trained in this boot of this machine, and say so: their times and memory compare
    # (run_store.boot_setup).
    boot = provenance.boot_id()
    assert resumed["resumes"][0]["boot_id"] == boot
    assert benchmark.find_runs(str(sweep))[killed][0]["meta_info"]["boot_id"] == boot
    for cell in after:
        assert [status for _, status in after[cell]].count("completed") == 1
    manifest = json.loads((sweep / "benchmark.json").read_text())
    assert manifest["state"] == "completed"
    assert sorted(c["cell_id"] for c in manifest["cells"]) == sorted(after)
    assert all(c["status"] == "completed" for c in manifest["cells"])
    # The cell completed before the kill keeps a wall time: its run's own.
    (first_record,) = [c for c in manifest["cells"] if c["cell_id"] == first]
    (first_run,) = benchmark.find_runs(str(sweep))[first]
    assert first_record["wall_time_s"] == first_run["train_info"]["wall_time_s"] > 0
    # The resumed cell's: both processes of its run, the interrupted one recorded as it stopped.
    (killed_record,) = [c for c in manifest["cells"] if c["cell_id"] == killed]
    killed_run = benchmark.find_runs(str(sweep))[killed][0]["train_info"]
    assert killed_record["wall_time_s"] == killed_run["wall_time_s"] and killed_record["wall_time_exact"]
    assert killed_run["wall_time_breakdown_s"]["earlier_processes"] > 0
    text = (sweep / "report.md").read_text()
    for runs in after.values():
        (completed,) = [run_id for run_id, status in runs if status == "completed"]
        assert text.count(f"[{completed}]") == 1  # once in the table of runs behind the numbers

    # Same name, other settings: refused, so that incomparable runs never mix in one sweep.
    refused = subprocess.run(command[:-1] + [TINY_RUN + " --weight_decay 0"], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "holds a sweep with other settings (differing: run_args)" in refused.stderr


def pending_cells_see(command: list[str], cell_ids: list[str]) -> tuple[list[str], dict]:
    """The cells benchmark.run_batch hands its launcher, and the cells benchmark.json lists as those start: the cells
    completed before are there already, not only once the next cell has ended."""
    args, _, file_method_args = benchmark.parse_benchmark_args(command[2:])
    sweep = benchmark.resolve(args, file_method_args)
    cells = [cell for cell in benchmark.run_cells(sweep) if cell.cell_id in cell_ids]
    records, manifest, handed = {}, {}, []

    class Launcher:  # runs nothing: notes what it was given, and what the manifest said then
        def run(self, jobs, started, finished):
            handed.extend(job.cell.cell_id for job in jobs)

    def save(state: str) -> None:
        manifest.update({cell_id: record["status"] for cell_id, record in records.items()})

    benchmark.run_batch(cells, sweep, {"lr_search": {}, "optuna_search": {}}, Launcher(), Progress(len(cells)),
                        records, save)
    return handed, manifest


def check_search_and_runs(sweep: Path, replay: bool = True) -> dict:
    """The sweep's search took exactly the steps its rule gives (replay), chose the best rate it tried, and its one
    run used it; returns the search's record."""
    (choice,) = json.loads((sweep / "benchmark.json").read_text())["lr_search"].values()
    searched = {r["run_info"]["config"]["training"]["learning_rate"]: r["train_info"]["best_val"]
                for runs in benchmark.find_runs(str(sweep / "lr_search")).values() for r in runs}
    candidates = [{"learning_rate": rate, "best_val_accuracy": searched[rate]["val_accuracy"],
                   "best_val_loss": searched[rate]["val_loss"]} for rate in [c["learning_rate"] for c in
                                                                             choice["candidates"]]]
    assert choice["grid"] == pytest.approx([9e-4, 3e-3])  # LoRA's default rate 3e-3 times the factors
    assert [c["learning_rate"] for c in candidates[:2]] == choice["grid"] and len(candidates) == len(searched)
    for taken in range(2, len(candidates)) if replay else []:  # each step past the edge is the rule's, in order
        assert next_search_rate(candidates[:taken], choice["grid"]) == candidates[taken]["learning_rate"]
    assert next_search_rate(candidates, choice["grid"]) is None
    best = max(searched, key=lambda lr: (searched[lr]["val_accuracy"], -searched[lr]["val_loss"]))
    assert choice["chosen_learning_rate"] == best
    assert choice["at_edge"] == (best in (min(searched), max(searched)))
    (main_runs,) = benchmark.find_runs(str(sweep)).values()
    assert [r["run_info"]["config"]["training"]["learning_rate"] for r in main_runs] == [best]
    return choice


@pytest.mark.slow
def test_learning_rate_search_steps_past_its_edge_picks_the_best_rate_and_supersedes_old_runs(tiny_bert, tmp_path,
                                                                                              capsys):
    args = ["--methods", "lora", "--models", tiny_bert, "--seeds", "3", "--name", "lr", "--output_dir", str(tmp_path),
            "--run_args", TINY_RUN, "--lr_search", "--lr_search_factors", "0.3", "1", "--report", "false"]
    assert benchmark.main(args) == 0, capsys.readouterr()
    sweep = tmp_path / "lr"
    choice = check_search_and_runs(sweep)
    assert len(choice["candidates"]) > 2  # with two rates the best is always at an edge: at least one step
    (first_run,) = benchmark.find_runs(str(sweep)).values()
    assert first_run[0]["run_info"]["seed"] == 3 and not (sweep / "report.md").exists()
    # The sweep's record alone (ftbench.sweep_records: no model, no checkpoint) resumes as the sweep would: every
    # cell is found completed, nothing is searched or trained again, and the search's choice stands.
    kept = tmp_path / "kept"
    assert sweep_records.main([str(sweep), str(kept)]) == 0
    capsys.readouterr()
    assert benchmark.main([str(kept) if arg == str(tmp_path) else arg for arg in args]) == 0
    out = capsys.readouterr().out
    assert out.count("already completed") == len(choice["candidates"]) + 1 and " completed in " not in out
    assert json.loads((kept / "lr" / "benchmark.json").read_text())["lr_search"] == json.loads(
        (sweep / "benchmark.json").read_text())["lr_search"]
    # The chosen rate's search run now scores worst: the search chooses again, and the run made at the old rate
    # is moved aside and made anew at the new one.
    chosen = next(c for c in choice["candidates"] if c["learning_rate"] == choice["chosen_learning_rate"])
    path = sweep / "lr_search" / "runs" / chosen["run_id"] / "results.json"
    results = json.loads(path.read_text())
    results["train_info"]["best_val"]["val_accuracy"] = -1.0
    path.write_text(json.dumps(results))
    assert benchmark.main(args) == 0, capsys.readouterr()
    assert "moved to" in capsys.readouterr().out
    again = check_search_and_runs(sweep, replay=False)  # the earlier steps stay candidates
    assert again["chosen_learning_rate"] != choice["chosen_learning_rate"]
    assert {c["learning_rate"] for c in again["candidates"]} >= {c["learning_rate"] for c in choice["candidates"]}
    assert [p.name for p in (sweep / "superseded").iterdir()] == [first_run[0]["run_info"]["run_id"]]
