"""Tests for benchmark.py --search optuna (ftbench/optuna_search.py, ftbench/search_space.py): every method's search
space is made of its training script's real options; sweeps made before the search options existed keep their
settings and resume; bad input is refused in one line; and real searches of the tiny BERT: one with two objectives
killed mid-trial and resumed without losing or repeating a trial, its Pareto front in the report, and one whose
pruner stops a trial, which then counts as pruned, never as a result."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchmark
from config import parse_args
from conftest import ROOT
from ftbench import launchers, optuna_search, run_store
from ftbench.registry import all_methods
from ftbench.search_space import corners, markdown_table, options, search_space
from ftbench.sweep_manifest import MANIFEST_FILE, check_folder

# A few seconds a run: 20 optimizer steps, evaluated (and checkpointed) every 5 (20 steps an epoch, 4 evaluations).
SEARCH_RUN = ("--max_train_samples 320 --max_eval_samples 64 --per_device_train_batch_size 16 --max_steps 20 "
              "--evals_per_epoch 4 --logging_steps 5 --measure_mfu false --save_model false")

# benchmark.json's settings as today's code wrote them before the search options existed (results/benchmarks/quick
# and findings_phrasebank), with their fingerprints: such sweeps must still resume.
OLD_SWEEPS = [
    (["--preset", "quick"], "3e32dd82d2749ec0", {
        "methods": ["full", "lora", "prefix"], "datasets": ["tweets"], "models": ["minilm"], "seeds": [1, 2, 3],
        "data_dir": None, "run_args": ["--max_train_samples", "1500", "--max_eval_samples", "400",
                                       "--num_train_epochs", "1"],
        "method_args": {"lora": ["--learning_rate", "3e-3"]}, "lr_search": False, "lr_search_factors": [0.3, 1.0, 3.0],
        "lr_search_args": [], "lr_search_seed": 1}),
    (["--preset", "findings_phrasebank", "--data_dir", "../shared/data"], "3918e619f3d829bb", {
        "methods": ["adalora", "bitfit", "bottleneck_adapter", "continued_pretraining", "dora", "feature_extraction",
                    "full", "ia3", "ln_tuning", "lora", "prefix", "prompt_tuning", "ptuning", "qlora", "vera"],
        "datasets": ["financial_phrasebank"], "models": ["minilm"], "seeds": [1, 2, 3], "data_dir": "../shared/data",
        "run_args": ["--phrasebank_agreement", "50", "--num_train_epochs", "3"], "method_args": {},
        "lr_search": True, "lr_search_factors": [0.3, 1.0, 3.0], "lr_search_args": ["--num_train_epochs", "1"],
        "lr_search_seed": 1}),
]


def sweep_of(argv: list[str]):
    args, _, file_method_args = benchmark.parse_benchmark_args(argv)
    return benchmark.resolve(args, file_method_args)


@pytest.mark.parametrize("argv, fingerprint, settings", OLD_SWEEPS)
def test_a_sweep_made_before_the_search_options_keeps_its_settings_and_resumes(argv, fingerprint, settings, tmp_path):
    sweep = sweep_of(argv + ["--output_dir", str(tmp_path)])
    assert sweep.settings() == settings and sweep.fingerprint() == fingerprint
    (tmp_path / sweep.name).mkdir()
    (tmp_path / sweep.name / MANIFEST_FILE).write_text(json.dumps(
        {"settings": settings, "settings_fingerprint": fingerprint, "created_at": "2026-12-01T10:00:00+00:00"}))
    assert check_folder(sweep) == "2026-12-01T10:00:00+00:00"  # resumed, not refused
    # --search grid is --lr_search; --search none turns a preset's search off; an Optuna search is other settings.
    assert sweep_of(["--preset", "quick", "--search", "grid"]).settings() == \
        sweep_of(["--preset", "quick", "--lr_search"]).settings()
    assert sweep_of(argv + ["--search", "none"]).settings() == settings | {"lr_search": False}
    searched = sweep_of(argv + ["--search", "optuna", "--trials", "7"]).settings()
    assert searched == settings | {"lr_search": False,
                                   "optuna_search": {"trials": 7, "objectives": ["accuracy"], "pruner": "median"}}


def test_every_methods_search_space_is_its_training_scripts_options():
    """Each range's ends (each choice's values) parse as the script's options and arrive exactly as sampled."""
    for name, method in all_methods().items():
        space = search_space(method, method.learning_rate)
        assert space["learning_rate"].low == pytest.approx(method.learning_rate / 10)
        assert space["learning_rate"].high == pytest.approx(method.learning_rate * 10)
        for params in corners(space):
            config = parse_args(name, options(params))
            sections = (config.training, config.method_options, config.pretraining)
            for option, value in params.items():
                (section,) = [s for s in sections if hasattr(s, option)]
                assert getattr(section, option) == value, (name, option)


def test_the_docs_show_every_methods_search_space():
    assert markdown_table() in (ROOT / "docs" / "benchmark.md").read_text(encoding="utf-8")


def test_a_float_option_round_trips_exactly():
    rate = 0.0012345678901234567
    assert parse_args("lora", options({"learning_rate": rate})).training.learning_rate == rate


@pytest.mark.parametrize("arguments, message", [
    (["--search", "bayes"], "unknown --search 'bayes'"),
    (["--search", "optuna", "--trials", "0"], "--trials must be at least 1"),
    (["--trials", "5"], "--trials goes with --search optuna"),
    (["--objectives", "accuracy", "train_time"], "--objectives goes with --search optuna"),
    (["--search", "optuna", "--objectives", "train_time"], "--objectives must be accuracy, optionally followed"),
    (["--search", "optuna", "--objectives", "accuracy", "peak_memory", "train_time"], "--objectives must be"),
    (["--search", "optuna", "--pruner", "hyperband"], "unknown --pruner 'hyperband'"),
    (["--lr_search", "--search", "optuna"], "--lr_search is --search grid"),
])
def test_bad_search_options_are_refused_with_one_line(arguments, message, tmp_path, capsys):
    status = benchmark.main(["--methods", "lora"] + arguments + ["--output_dir", str(tmp_path / "sweeps")])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "sweeps").exists()


def test_a_missing_optuna_is_named_in_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    status = benchmark.main(["--methods", "lora", "--search", "optuna", "--output_dir", str(tmp_path / "sweeps")])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and "needs the optuna package: pip install optuna" in error, error
    assert not (tmp_path / "sweeps").exists()


def test_a_dry_run_shows_each_search_and_its_ranges(capsys):
    assert benchmark.main(["--preset", "quick", "--search", "optuna", "--trials", "5", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (lora,) = [line for line in lines if line.startswith("5 Optuna trials of lora|tweets|minilm")]
    assert "--output_dir results/benchmarks/quick/optuna_search" in lora and "--save_model false" in lora
    assert "--lora_r (one of 4, 8, 16, 32)" in lora and "--learning_rate (log-uniform 0.0003 to 0.03)" in lora
    assert lines[-1] == "9 cells and 15 Optuna trials; nothing run (--dry_run)"


def runs_by_cell(folder: Path) -> dict:
    return {name: [(r["run_info"]["run_id"], r["run_info"]["status"]) for r in runs]
            for name, runs in benchmark.find_runs(str(folder)).items()}


def orphan_status(folder: Path, cell_id: str) -> str:
    (run,) = benchmark.find_runs(str(folder))[cell_id]
    return run_store.effective_status(run["run_info"]["run_dir"], run["run_info"])


def load_trials(sweep: Path, group: str):
    import optuna

    storage = f"sqlite:///{sweep / 'optuna_search' / optuna_search.STUDY_FILE}"
    return optuna.load_study(study_name=group, storage=storage).get_trials(deepcopy=False)


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_without_losing_or_repeating_a_trial(tiny_bert, tmp_path):
    """Two objectives (accuracy, train time): 2 trials, the sweep killed during the second, then resumed."""
    sweep = tmp_path / "sweeps" / "search"
    command = [sys.executable, str(ROOT / "benchmark.py"), "--methods", "lora", "--models", tiny_bert, "--seeds", "2",
               "--name", "search", "--output_dir", str(tmp_path / "sweeps"), "--run_args", SEARCH_RUN,
               "--search", "optuna", "--trials", "2", "--objectives", "accuracy", "train_time"]
    run_cell = benchmark.Cell("run", "lora", "tweets", tiny_bert, 2)
    trial = [benchmark.Cell("trial", "lora", "tweets", tiny_bert, 1, trial=n).cell_id for n in range(2)]
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 300
        while trial[1] not in runs_by_cell(sweep / "optuna_search"):  # the second trial's run has started
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    # The orphaned run is told (SIGINT) that its sweep died: it stops, interrupted (or unfinished, before training).
    deadline = time.monotonic() + 60
    while (status := orphan_status(sweep / "optuna_search", trial[1])) == "running":
        assert time.monotonic() < deadline, "the orphaned trial kept running"
        time.sleep(0.1)
    assert status in ("interrupted", "unfinished")
    before = runs_by_cell(sweep / "optuna_search")
    assert [t.state.name for t in load_trials(sweep, run_cell.group)] == ["COMPLETE", "RUNNING"]

    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 Optuna trial(s) already finished, kept" in result.stdout
    assert "trial(s) 1 stopped with the search; marked failed and queued again" in result.stdout
    trials = load_trials(sweep, run_cell.group)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params and trials[2].user_attrs["retry_of"] == 1
    after = runs_by_cell(sweep / "optuna_search")
    assert set(after) == set(trial)
    assert after[trial[0]] == before[trial[0]]  # not run again
    # The killed trial's run continued in its own folder (train_lora.py --resume), and completed.
    assert after[trial[1]] == [(before[trial[1]][0][0], "completed")]
    resumed = benchmark.find_runs(str(sweep / "optuna_search"))[trial[1]][0]["run_info"]
    assert [r["from_status"] for r in resumed["resumes"]] == [status]

    manifest = json.loads((sweep / MANIFEST_FILE).read_text())
    record = manifest["optuna_search"][run_cell.group]
    assert record["objectives"] == {"val_accuracy": "maximize", "train_time_s": "minimize"}
    front = set(record["pareto_front"])
    assert front and front <= {0, 2} and record["chosen_trial"] in front
    chosen = trials[record["chosen_trial"]]
    assert chosen.values[0] == max(trials[n].values[0] for n in front)  # the front's most accurate
    assert record["chosen_options"] == options({name: chosen.params[name] for name in record["search_space"]})
    (run,) = benchmark.find_runs(str(sweep))[run_cell.cell_id]  # the sweep's run used the chosen settings
    assert run["run_info"]["config"]["training"]["learning_rate"] == chosen.params["learning_rate"]
    assert run["run_info"]["config"]["method_options"]["lora_r"] == chosen.params["lora_r"]
    assert manifest["cells"][-1]["chosen_options"] == record["chosen_options"]
    report = (sweep / "report.md").read_text()
    assert "## Hyperparameter search (Optuna)" in report and "The Pareto front:" in report
    assert "![Pareto front of" in report and (sweep / "optuna_pareto_1.png").stat().st_size > 0
    assert list(benchmark.find_runs(str(sweep))) == [run_cell.cell_id]  # the trials' runs are not the sweep's


@pytest.mark.slow
def test_a_pruned_trial_is_stopped_and_counted_as_pruned_never_as_a_result(tiny_bert, tmp_path, monkeypatch):
    import optuna

    class PruneTrialOne(optuna.pruners.BasePruner):
        """A pruner forced to stop trial 1 at its first report, and no other."""

        def prune(self, study, trial):
            return trial.number == 1

    monkeypatch.setattr(optuna_search, "make_pruner", lambda pruner: PruneTrialOne())
    monkeypatch.setattr(launchers, "POLL_S", 0.1)
    # 40 steps, a checkpoint every 5: the watch (every 0.1 s) sees the first long before the run could end.
    sweep = sweep_of(["--methods", "lora", "--models", tiny_bert, "--seeds", "1", "--output_dir", str(tmp_path),
                      "--run_args", SEARCH_RUN.replace("--max_steps 20", "--max_steps 40"),
                      "--search", "optuna", "--trials", "2"])
    search = optuna_search.Search(sweep, benchmark.run_cells(sweep)[0])
    outcomes = []
    while search.missing():
        cell = search.next_trial()
        status, seconds = benchmark.run_cell(cell, sweep, None, search.watch)
        outcomes.append((status, search.finish(cell, seconds)[0]))
    assert outcomes == [(0, "completed"), (143, "pruned")]  # 143: stopped by SIGTERM

    trials = search.study.get_trials(deepcopy=False)
    runs = benchmark.find_runs(str(tmp_path / sweep.name / "optuna_search"))
    (completed,), (pruned,) = runs[trials[0].user_attrs["cell_id"]], runs[trials[1].user_attrs["cell_id"]]
    # Trial 0: every evaluation reported, the objective its best validation accuracy.
    assert trials[0].intermediate_values == {row["step"]: row["val_accuracy"]
                                             for row in completed["train_info"]["history"]}
    assert trials[0].values == [completed["train_info"]["best_val"]["val_accuracy"]]
    # Trial 1: stopped at its first evaluation; its run is an interrupted one, with no test figures.
    assert trials[1].state.name == "PRUNED" and trials[1].user_attrs["pruned_at_step"] == 5
    assert list(trials[1].intermediate_values) == [5]
    assert pruned["run_info"]["status"] == "interrupted" and "test" not in pruned["train_info"]
    assert pruned["train_info"]["stopped_at_step"] < 40
    record = search.record()
    assert record["chosen_trial"] == 0 and [t["state"] for t in record["trials"]] == ["complete", "pruned"]
    assert record["pareto_front"] is None and record["pruner"] == optuna_search.PRUNER_DESCRIPTION


def test_a_study_made_with_another_search_space_is_refused_before_anything_runs(tmp_path, capsys):
    argv = ["--methods", "lora", "--search", "optuna", "--trials", "2", "--name", "space",
            "--output_dir", str(tmp_path)]
    sweep = sweep_of(argv)
    (first,) = benchmark.run_cells(sweep)[:1]
    study = optuna_search.open_study(sweep, first.group)
    described = optuna_search.described_space(sweep, first)
    study.set_user_attr("search_space", {**described, "--lora_r": "one of 1, 2"})  # as an older space recorded it
    before = sorted(p.name for p in (tmp_path / "space").rglob("*"))
    assert benchmark.main(argv) == 2
    error = capsys.readouterr().err
    assert error == (f"error: the Optuna study {first.group} was made with another search space (differing: "
                     f"--lora_r); give --name for a new sweep, or restore the method's search_space\n")
    assert sorted(p.name for p in (tmp_path / "space").rglob("*")) == before  # nothing written
    study.set_user_attr("search_space", described)
    optuna_search.check_recorded_space(sweep, first)  # the same space: resumed
