"""Tests for report.py: the statistics report over seeds, on copies of real tiny runs whose test predictions
and figures are set by hand, so that every number in the report can be checked against a hand computation."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plot_results  # noqa: E402
import report  # noqa: E402
from ftbench import paired, stats  # noqa: E402

T_975_2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # Student t, 2 degrees of freedom, closed form
LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]  # 20 test examples
# Which test examples each run gets right: full is right on its first k, LoRA on a fixed pattern per seed.
CORRECT = {
    ("full", 1): [1] * 16 + [0] * 4,
    ("full", 2): [1] * 15 + [0] * 5,
    ("full", 3): [1] * 17 + [0] * 3,
    ("lora", 1): [0, 0, 0] + [1] * 12 + [0] * 5,
    ("lora", 2): [1] * 10 + [0] * 10,
    ("lora", 3): [1] * 14 + [0] * 2 + [1] * 2 + [0] * 2,
}
TRAIN_TIME = {("full", 1): 100.0, ("full", 2): 110.0, ("full", 3): 120.0,
              ("lora", 1): 80.0, ("lora", 2): 82.0, ("lora", 3): 84.0}


def write_run(root: Path, template: dict, method: str, seed: int, correct: list, run_id: str | None = None,
              **config_changes) -> Path:
    data = json.loads(json.dumps(template))
    run_id = run_id or f"2026112{seed}-120000_{method}_tweets_tiny-seed{seed}"
    info, train = data["run_info"], data["train_info"]
    info.update(run_id=run_id, seed=seed, method=method, method_label=method,
                started_at=f"2026-11-2{seed}T12:00:00+00:00")
    info["config"]["training"]["seed"] = seed
    info["config"]["training"]["run_name"] = f"{method}-seed{seed}"
    for key, value in config_changes.items():
        section, name = key.split("__")
        info["config"][section][name] = value
    train["test"]["accuracy"] = sum(correct) / len(correct)
    train["train_time_s"] = TRAIN_TIME.get((method, seed), 90.0)
    train.pop("total_train_time_s", None)
    train.pop("pretraining", None)
    folder = root / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    predictions = [label if ok else (label + 1) % 3 for label, ok in zip(LABELS, correct)]
    (folder / "test_predictions.json").write_text(json.dumps({"labels": LABELS, "predictions": predictions}))
    return folder


@pytest.fixture
def sweep(trained_runs, tmp_path) -> tuple[Path, dict]:
    """Three seeds each of full fine-tuning and LoRA, built from the real tiny full run's results."""
    template = json.loads((Path(trained_runs["full"]) / "results.json").read_text())
    root = tmp_path / "sweep"
    for (method, seed), correct in CORRECT.items():
        write_run(root, template, method, seed, correct)
    return root, template


def table(text: str, heading: str) -> list[list[str]]:
    """Rows of the first Markdown table after the line `heading` starts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # without the header


def test_table_has_mean_std_and_t_interval_computed_by_hand(sweep):
    root, _ = sweep
    text = Path(report.write_report(str(root))).read_text()
    rows = {row[0]: row for row in table(text, "## tweets")}
    assert set(rows) == {"full", "lora"}
    accuracies = [0.80, 0.75, 0.85]  # 16, 15, 17 of 20
    mean, std = np.mean(accuracies), np.std(accuracies, ddof=1)
    half = T_975_2 * std / math.sqrt(3)
    assert rows["full"][1] == "3"
    assert rows["full"][6] == f"{mean:.4f} ± {std:.4f} [{mean - half:.4f}, {mean + half:.4f}]"
    assert rows["full"][4] == "110.0 ± 10.0"  # 100, 110, 120 s
    assert rows["lora"][4] == "82.0 ± 2.0"
    assert rows["lora"][6].startswith(f"{np.mean([12 / 20, 10 / 20, 16 / 20]):.4f} ± ")


def test_comparison_against_full_matches_hand_counts(sweep):
    root, _ = sweep
    text = Path(report.write_report(str(root), n_resamples=2000)).read_text()
    (row,) = table(text, "### Against full")
    assert row[0] == "lora" and row[1] == "1, 2, 3"
    difference = np.mean([12 / 20, 10 / 20, 16 / 20]) - np.mean([16 / 20, 15 / 20, 17 / 20])
    assert row[2].startswith(f"{difference:+.4f} [")
    # Seed 1: LoRA right where full is wrong on 0 examples (16..19 LoRA wrong too), full right where LoRA is
    # wrong on examples 0-2 and 15: b=0, c=4, exact p = 2 * C(4,0) / 2^4 = 0.125.
    assert "seed 1: 0.125 (0/4)" in row[5]
    # Seed 2: LoRA right on 0-9, full on 0-14: b=0, c=5, p = 2/32 = 0.0625.
    assert "seed 2: 0.0625 (0/5)" in row[5]
    # Seed 3: LoRA right on 0-13, 16, 17; full on 0-16: b=1 (example 17), c=2 (14, 15), p = 2 * 4/8 = 1.
    lora3, full3 = np.array(CORRECT[("lora", 3)]), np.array(CORRECT[("full", 3)])
    b, c = int(((lora3 == 1) & (full3 == 0)).sum()), int(((lora3 == 0) & (full3 == 1)).sum())
    assert (b, c) == (1, 2)
    assert "seed 3: 1 (1/2)" in row[5]
    p = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
    assert f"seed 3: {p:.3g} ({b}/{c})" in row[5]
    # The bootstrap row is the paired bootstrap of exactly these arrays.
    expected = stats.paired_bootstrap(np.array([CORRECT[("lora", s)] for s in (1, 2, 3)]),
                                      np.array([CORRECT[("full", s)] for s in (1, 2, 3)]), 2000, 0)
    assert row[2] == f"{expected['difference']:+.4f} [{expected['ci_low']:+.4f}, {expected['ci_high']:+.4f}]"
    assert expected["ci_low"] < expected["difference"] < 0 and expected["ci_high"] <= 0
    assert row[3] == row[4]  # one comparison: Holm leaves its p as it is


def test_what_to_use_under_a_limit_is_each_costs_pareto_front(sweep):
    root, template = sweep
    text = Path(report.write_report(str(root))).read_text()
    rows = table(text, "### What to use under a limit")
    memory = template["train_info"]["memory"]["peak_rss_mib"]  # every run here is a copy: the same memory
    params = template["train_info"]["num_params_trainable"]
    full = f"{np.mean([0.80, 0.75, 0.85]):.4f} ± {np.std([0.80, 0.75, 0.85], ddof=1):.4f}"
    lora = f"{np.mean([0.60, 0.50, 0.80]):.4f} ± {np.std([0.60, 0.50, 0.80], ddof=1):.4f}"
    below = f"{100 * (np.mean([0.80, 0.75, 0.85]) - np.mean([0.60, 0.50, 0.80])):.2f}"
    assert rows == [
        ["peak memory (MiB, CPU RSS)", f"{memory:,.0f}", "full", full, "0.00"],  # a tie in cost: the better
        ["train time (s)", "82.0", "lora", lora, below],  # 80, 82, 84 s: the cheapest
        ["train time (s)", "110.0", "full", full, "0.00"],
        ["trainable parameters", f"{params:,}", "full", full, "0.00"],
    ]


def test_split_by_a_setting_compares_the_runs_of_one_method(trained_runs, tmp_path, capsys):
    """LoRA's runs in two precisions: without --split_by one group, where each seed's newer run replaces the older
    (with a note saying so); with it, two groups, compared with each other as two methods would be."""
    template = json.loads((Path(trained_runs["full"]) / "results.json").read_text())
    root = tmp_path / "precision"
    for seed in (1, 2, 3):
        write_run(root, template, "lora", seed, CORRECT[("full", seed)], run_id=f"fp32-{seed}",
                  training__precision="fp32")
        write_run(root, template, "lora", seed, CORRECT[("lora", seed)], run_id=f"bf16-{seed}",
                  training__precision="bf16")
    text = Path(report.write_report(str(root))).read_text()
    assert "3 older run(s) of a seed that was run again left out" in text
    assert report.main(["--results_dir", str(root), "--markdown", "--split_by", "training.precision",
                        "--reference", "lora (precision=fp32)", "--n_resamples", "2000"]) == 0
    text = capsys.readouterr().out
    assert {row[0] for row in table(text, "**tweets")} == {"lora (precision=fp32)", "lora (precision=bf16)"}
    (row,) = table(text, "**Against lora (precision=fp32)")
    assert row[0] == "lora (precision=bf16)" and "seed 1: 0.125 (0/4)" in row[5]  # as lora against full above
    assert "differ in" not in text
    assert report.main(["--results_dir", str(root), "--split_by", "training.nope"]) == 2
    assert "--split_by training.nope is not a setting of run" in capsys.readouterr().err
    # Each method against its own fp32 runs: full's bf16 runs are right exactly where its fp32 runs are.
    for seed in (1, 2, 3):
        for precision in ("fp32", "bf16"):
            write_run(root, template, "full", seed, CORRECT[("full", seed)], run_id=f"full-{precision}-{seed}",
                      training__precision=precision)
    assert report.main(["--results_dir", str(root), "--markdown", "--split_by", "training.precision",
                        "--reference", "precision=fp32", "--n_resamples", "2000"]) == 0
    rows = {row[0]: row for row in table(capsys.readouterr().out, "**Against precision=fp32 (each method against")}
    assert set(rows) == {"lora (precision=bf16)", "full (precision=bf16)"}
    assert "seed 1: 0.125 (0/4)" in rows["lora (precision=bf16)"][5]
    assert rows["full (precision=bf16)"][2].startswith("+0.0000 [+0.0000, +0.0000]")
    assert "seed 1: 1 (0/0)" in rows["full (precision=bf16)"][5]
    # Two comparisons: Holm doubles the smaller p (LoRA's), and full's p = 1 stays 1.
    assert (rows["full (precision=bf16)"][3], rows["full (precision=bf16)"][4]) == ("1", "1")
    lora_p, lora_holm = rows["lora (precision=bf16)"][3:5]
    assert lora_holm == lora_p if lora_p.startswith("<") else float(lora_holm) == pytest.approx(2 * float(lora_p),
                                                                                              rel=0.01)


def test_every_number_names_its_runs_and_charts_are_written(sweep):
    root, _ = sweep
    path = Path(report.write_report(str(root)))
    text = path.read_text()
    rows = table(text, "## Runs behind the numbers")
    assert len(rows) == 6
    for row in rows:
        link = row[-1].split("](")[1].rstrip(")")
        assert (path.parent / link).is_file(), link
        data = json.loads((path.parent / link).read_text())
        assert f"{data['train_info']['test']['accuracy']:.4f}" == row[3]
    for name in ("pareto_tweets_tiny_bert", "curves_tweets_tiny_bert"):
        matches = list(path.parent.glob(f"{name}*.png"))
        assert len(matches) == 1 and matches[0].read_bytes()[:4] == b"\x89PNG"
        assert f"]({matches[0].name})" in text
    assert "Environment: cpu" in text and "torch " in text


def test_repeated_seed_keeps_the_newest_and_differing_settings_are_noted(sweep):
    root, template = sweep
    newer = write_run(root, template, "full", 1, [1] * 20, run_id="20261130-120000_full_tweets_tiny-again")
    data = json.loads((newer / "results.json").read_text())
    data["run_info"]["started_at"] = "2026-11-30T12:00:00+00:00"
    (newer / "results.json").write_text(json.dumps(data))
    write_run(root, template, "lora", 4, [1] * 20, training__learning_rate=0.5)
    text = Path(report.write_report(str(root))).read_text()
    assert "1 older run(s) of a seed that was run again left out" in text
    assert "its runs differ in training.learning_rate besides the seed" in text
    full = {row[0]: row for row in table(text, "## tweets")}["full"]
    assert full[6].startswith(f"{np.mean([1.0, 0.75, 0.85]):.4f} ± ")


def test_runs_on_other_test_examples_or_seeds_are_not_compared(sweep):
    root, template = sweep
    for folder in (root / "runs").glob("*_lora_*"):
        saved = json.loads((folder / "test_predictions.json").read_text())
        saved["labels"] = saved["labels"][::-1]
        (folder / "test_predictions.json").write_text(json.dumps(saved))
    text = Path(report.write_report(str(root))).read_text()
    assert "not compared: the test examples differ" in text
    write_run(root, template, "prefix", 9, [1] * 20)
    text = Path(report.write_report(str(root))).read_text()
    assert "| prefix | – | not compared: no seed in common |" in text


def test_plot_results_report_flag_and_errors(sweep, tmp_path, capsys):
    root, _ = sweep
    assert plot_results.main(["--report", "--results_dir", str(root)]) == 0
    assert (root / "report.md").is_file()
    assert "plot_results.py --report" in (root / "report.md").read_text()
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    assert report.main(["--results_dir", str(empty)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no completed runs" in error
    assert not (empty / "report.md").exists()
    assert report.main(["--results_dir", str(tmp_path / "missing")]) == 2
    assert report.main(["--results_dir", str(root), "--n_resamples", "5"]) == 2


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 0.8), (5, 0.7), (20, 0.79), (1, 0.6), (30, 0.9), (5, 0.65)]
    assert paired.pareto_front(points) == [(1, 0.6), (5, 0.7), (10, 0.8), (30, 0.9)]


def test_broken_prediction_file_is_one_clear_error(sweep):
    root, _ = sweep
    folder = next((root / "runs").glob("*_lora_*"))
    (folder / "test_predictions.json").write_text("{broken")
    with pytest.raises(report.ReportError, match="test_predictions.json is unreadable"):
        report.write_report(str(root))
    assert not (root / "report.md").exists()


def test_environment_names_the_device_and_the_processor_the_runner_recorded(sweep):
    root, template = sweep
    meta = template["meta_info"]  # what runner.environment_info wrote for the real tiny run, on the CPU
    versions = (f"torch {meta['torch']}, transformers {meta['transformers']}, peft {meta['peft']}, "
                f"Python {meta['python']}")
    assert meta["device"] == "cpu" and meta["device_name"] == meta["cpu"]  # the processor, named once
    text = Path(report.write_report(str(root))).read_text()
    assert f"Environment: cpu ({meta['cpu']}), {versions} [6 runs]." in text.splitlines()
    # On a GPU the runner records the GPU's name as device_name and the processor under cpu: both are named.
    for path in (root / "runs").glob("*/results.json"):
        data = json.loads(path.read_text())
        data["meta_info"].update(device="cuda", device_name="NVIDIA H200")
        path.write_text(json.dumps(data))
    text = Path(report.write_report(str(root))).read_text()
    assert f"Environment: cuda (NVIDIA H200, {meta['cpu']}), {versions} [6 runs]." in text.splitlines()


def test_runs_no_better_than_the_majority_class_are_named():
    from ftbench.report_tables import runs_that_learned_nothing

    def run(seed: int, accuracy: float) -> dict:
        baseline = {"label": "neutral", "accuracy": 0.593, "f1_macro": 0.2482}
        return {"run_info": {"seed": seed}, "train_info": {"test": {"accuracy": accuracy,
                                                                     "majority_baseline": baseline}}}

    groups = {"dora": [run(1, 0.7872), run(2, 0.593)], "lora": [run(1, 0.5929), run(2, 0.5931)]}
    assert runs_that_learned_nothing(groups) == [
        "Runs that learned nothing (test accuracy at or below always predicting 'neutral', 0.5930): dora seed 2 "
        "(0.5930); lora seed 1 (0.5929).", ""]
    assert runs_that_learned_nothing({"dora": [run(1, 0.7872)]}) == []
