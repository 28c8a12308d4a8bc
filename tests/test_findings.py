"""report.py --findings: the claims' verdicts from sweeps whose runs are copies of a real tiny run with their test
predictions, memory, time and gaps set by hand, so that every verdict follows from a hand computation; and the
verdict rules on their own."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import report
from ftbench import provenance, sweep_records, verdicts
from ftbench.run_store import load_runs, timing_setup
from ftbench.verdicts import Interval

LABELS = [0, 1, 2] * 6 + [0, 1]  # 20 test examples
FULL_RIGHT = {1: 16, 2: 15, 3: 17}  # full fine-tuning gets the first k right, per seed


def write_run(sweep: Path, template: dict, method: str, seed: int, right: list[int], memory: float, seconds: float,
              gap: float, learning_rate: float, epochs: float = 2.0, resumes: int = 0) -> None:
    data = json.loads(json.dumps(template))
    run_id = f"2026120{seed}-120000_{method}_{sweep.name}_seed{seed}"
    info, train = data["run_info"], data["train_info"]
    info.update(run_id=run_id, seed=seed, method=method, method_label=method, started_at=f"2026-12-0{seed}T12:00")
    info["config"]["training"].update(seed=seed, run_name=run_id, learning_rate=learning_rate)
    info["resumes"] = [{"from_status": "interrupted"}] * resumes
    train["test"]["accuracy"] = sum(right) / len(right)
    train["memory"]["peak_rss_mib"] = memory
    train["train_time_s"] = seconds
    train["epochs"] = epochs  # the template's 2, or more, as where LoRA needs more epochs than full fine-tuning
    train["final_generalization_gap"] = gap
    for entry in train["history"]:
        entry["generalization_gap"] = gap / 2
    train["selection"]["best_step"] = train["history"][0]["step"]
    folder = sweep / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    predictions = [label if ok else (label + 1) % 3 for label, ok in zip(LABELS, right)]
    (folder / "test_predictions.json").write_text(json.dumps({"labels": LABELS, "predictions": predictions}))


@pytest.fixture
def sweeps(trained_runs, tmp_path) -> Path:
    """SST-2: LoRA right exactly where full is (a difference of 0), prefix right on 10 of 20 (far below), LoRA at
    5e-4 as LoRA; LoRA with 40%, 39%, 38% less memory and 20-30% less time per epoch (4 epochs to full's 2), but a
    larger gap. The other sweeps
    are not made: their claims are not measured yet."""
    template = json.loads((Path(trained_runs["full"]) / "results.json").read_text())
    root = tmp_path / "benchmarks"
    sst2, doc_rate = root / "findings_sst2", root / "findings_sst2_lora_5e-4"
    for seed, k in FULL_RIGHT.items():
        full = [1] * k + [0] * (20 - k)
        write_run(sst2, template, "full", seed, full, 1000.0, 100.0 + 10 * (seed - 1), 0.10, 5e-5)
        write_run(sst2, template, "lora", seed, full, 600.0 + 10 * (seed - 1), 160.0 + 4 * (seed - 1), 0.30, 3e-3,
                  epochs=4.0)
        write_run(sst2, template, "prefix", seed, [1] * 10 + [0] * 10, 700.0, 90.0, 0.10, 1e-2,
                  resumes=2 if seed == 2 else 0)
        write_run(doc_rate, template, "lora", seed, full, 600.0, 80.0, 0.30, 5e-4)
    (sst2 / "benchmark.json").write_text(json.dumps({
        "settings": {"lr_search": True, "lr_search_args": ["--max_train_samples", "20000", "--num_train_epochs", "1"]},
        "cells": [
        {"cell_id": "full-sst2-minilm-seed1", "kind": "run", "status": "completed", "wall_time_s": 3600.0,
         "wall_time_exact": False},
        {"cell_id": "lora-sst2-minilm-seed4", "kind": "run", "status": "failed", "wall_time_s": 1800.0}],
        "lr_search": {"prefix|sst2|minilm": {"chosen_learning_rate": 1e-2, "at_edge": True},
                      "lora|sst2|minilm": {"chosen_learning_rate": 3e-3, "at_edge": False}}}))
    return root


def claim_rows(text: str) -> dict:
    """{claim: {comparison: (what was measured, verdict)}} from the verdicts table (a claim's later rows leave
    its cell empty)."""
    claims, claim = {}, None
    for row in verdict_rows(text):
        claim = row[0] or claim
        comparison, measured = row[3].split(": ", 1)
        claims.setdefault(claim, {})[comparison] = (measured, row[4])
    return claims


def measured_rows(text: str) -> dict:
    """{comparison: (what was measured, verdict)} over all claims; C1 and C3 both have SST-2's LoRA rows, under
    one label each, so those are read per claim with claim_rows."""
    return {comparison: row for rows in claim_rows(text).values() for comparison, row in rows.items()}


def edit_results(path: Path, change) -> None:
    """Rewrite a run's results.json after change(run)."""
    run = json.loads(path.read_text())
    change(run)
    path.write_text(json.dumps(run))


def verdict_rows(text: str) -> list[list[str]]:
    lines = text[text.index("## Verdicts"):].splitlines()[4:]
    rows = []
    for line in lines:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.split("|")[1:-1]])
    return rows


def test_findings_give_each_claim_its_verdict_by_the_stated_rules(sweeps, tmp_path):
    out = tmp_path / "docs" / "findings.md"
    (tmp_path / "docs" / "findings").mkdir(parents=True)
    (tmp_path / "docs" / "findings" / "curves_imdb.png").write_bytes(b"a chart of runs no longer there")
    assert report.main(["--findings", "--sweeps_dir", str(sweeps), "--findings_file", str(out),
                        "--n_resamples", "2000"]) == 0
    text = out.read_text()
    charts = {path.name for path in (tmp_path / "docs" / "findings").iterdir()}
    assert charts == set(re.findall(r"\]\(findings/(\w+\.png)\)", text)) and "curves_sst2.png" in charts
    rows, c1, c3 = measured_rows(text), claim_rows(text)["C1"], claim_rows(text)["C3"]
    # LoRA right on exactly the examples full is: every bootstrap difference is 0, the interval [0, 0].
    assert c1["SST-2, LoRA at its chosen rate vs full"] == ("+0.00 points [+0.00, +0.00]", "**confirmed**")
    assert c1["SST-2, LoRA at 5e-4 vs full"] == ("+0.00 points [+0.00, +0.00]", "**confirmed**")
    # C3: within ±0.5, at both rates.
    assert c3["SST-2, LoRA at its chosen rate vs full"][1] == c3["SST-2, LoRA at 5e-4 vs full"][1] == "**confirmed**"
    # Prefix: 50% against 80/75/85%: the whole interval far below -0.5 points.
    measured, verdict = rows["SST-2, prefix vs full"]
    assert verdict == "**not confirmed**" and measured.startswith(f"{100 * (0.5 - np.mean([0.8, 0.75, 0.85])):+.2f}")
    # Memory: -40%, -39%, -38% of 1000 MiB; mean -39, t-interval -39 ± 4.303 * 1 / sqrt(3).
    half = 4.302652729911275 * 1.0 / np.sqrt(3)
    assert rows["SST-2, LoRA vs full, peak memory"] == (f"-39.00% [{-39 - half:+.2f}, {-39 + half:+.2f}]",
                                                        "**confirmed**")
    # Time per epoch: 160/4 against 100/2, 164/4 against 110/2, 168/4 against 120/2 -> -20%, -25.45%, -30%.
    times = [100 * (40 / 50 - 1), 100 * (41 / 55 - 1), 100 * (42 / 60 - 1)]
    assert rows["SST-2, LoRA vs full, train time per epoch"][0].startswith(f"{np.mean(times):+.2f}%")
    assert rows["SST-2, LoRA vs full, train time per epoch"][1] == "**confirmed**"
    assert ("batch 32; 2 epochs (full, lora (lr 5e-4)), 4 (lora) instead of the documents' 10\n" in text
            and "batch 32; 2 epochs (full, prefix) instead of the documents' 10\n" in text)
    # The gap: LoRA's is larger by 0.2 on every seed (an interval of zero width): the claim is reversed.
    assert rows["SST-2, final gap, LoRA - full"] == ("+0.20 [+0.20, +0.20]", "**reversed**")
    assert rows["SST-2, gap at the selected checkpoint, LoRA - full"] == ("+0.10 [+0.10, +0.10]", "**reversed**")
    for missing in ("Financial PhraseBank, LoRA vs full", "IMDb, LoRA vs full", "IMDb, prefix vs full",
                    "Financial PhraseBank, every method"):
        assert rows[missing][1] == "**not measured yet**"
    assert "run `python benchmark.py --preset findings_imdb --data_dir ../shared/data`" in text
    # A claim's missing rows name only their own sweeps' commands (C3's SST-2 rows are measured).
    assert ("Not measured yet: Financial PhraseBank, LoRA vs full; run `python benchmark.py --preset "
            "findings_phrasebank --data_dir ../shared/data`.\n") in text
    # The sweeps: planned runs from the preset (3 methods, 3 seeds), failed cells and wall time from benchmark.json,
    # rates from the runs; the wall time is a lower bound (a cell's time is inexact).
    assert ("| SST-2, complete | `python benchmark.py --preset findings_sst2 --data_dir ../shared/data` | 9 / 9 | "
            "lora-sst2-minilm-seed4 | prefix seed 2 (2×) | ≥ 1.50 | full 5e-05; lora 0.003; prefix 0.01 |") in text
    assert "--data_dir ../shared/data` | 3 / 3 | none | none | 0.00 | lora 0.0005 |" in text  # no benchmark.json
    assert ("Rates chosen at the edge of what their search tried, even after its steps past the grid (the best rate "
            "may lie further out): prefix (SST-2, complete, 0.01).") in text
    assert ("The learning-rate searches trained one seed per method with their sweep's options and these on top: "
            "`--max_train_samples 20000 --num_train_epochs 1` (SST-2, complete). The runs then train") in text
    assert "a CPU budget: its preset's `--max_seq_length 256 --max_train_samples 5000" in text  # no IMDb runs yet
    # What to use: memory 600-620 (LoRA, as accurate as full) is the only choice on memory.
    assert "| peak memory (MiB, CPU RSS) | 610 | lora |" in text
    assert (out.parent / "findings" / "curves_sst2.png").stat().st_size > 10_000
    # Enough epochs: a row per SST-2 method (LoRA at 5e-4 with them), each trained the template's 2 epochs.
    epochs = text[text.index("## Enough epochs?"):text.index("## Learning curves")].splitlines()
    assert epochs[2].startswith("Validation accuracy has stopped rising where the last epoch added at most 0.5 points")
    assert epochs[4] == "**SST-2**" and [row.split(" | ")[:2] for row in epochs[8:12]] == [
        ["| full", "2"], ["| lora", "4"], ["| prefix", "2"], ["| lora (lr 5e-4)", "2"]]
    assert epochs[13].startswith("Over the 12 runs, the best validation accuracy averaged ")
    assert text.startswith("# Findings") and "Generated " in text.splitlines()[2]
    headline = ("Verdicts so far: C1 confirmed; C2 confirmed; C3 confirmed; C4 reversed; C5 not confirmed (9 of 17 "
                "measurements made; 8 await their sweeps).")
    assert text.splitlines()[4] == f"**In short.** {headline}"


def test_time_and_memory_pair_only_seeds_trained_on_one_machine_in_one_precision(sweeps, tmp_path):
    """A sweep resumed on another machine: LoRA's seed 3 trained on another CPU, so C2 pairs seeds 1 and 2 only
    (memory -40% and -39%: mean -39.5, t-interval ±12.706 * 0.7071 / sqrt(2)), and says why seed 3 is out."""
    moved = next((sweeps / "findings_sst2" / "runs").glob("*_lora_findings_sst2_seed3")) / "results.json"
    edit_results(moved, lambda run: run["meta_info"].update(cpu="Other CPU", cpu_count=2, cpu_capability="AVX512"))
    out = tmp_path / "findings.md"
    assert report.main(["--findings", "--sweeps_dir", str(sweeps), "--findings_file", str(out),
                        "--n_resamples", "200"]) == 0
    text = out.read_text()
    rows = measured_rows(text)
    half = 12.706204736174698 * np.std([-40, -39], ddof=1) / np.sqrt(2)
    assert rows["SST-2, LoRA vs full, peak memory"] == (f"-39.50% [{-39.5 - half:+.2f}, {-39.5 + half:+.2f}]",
                                                        "**confirmed**")
    assert ("| 2 seeds paired; 1 seed(s) left out, their runs trained on different machines (or boots) or precisions |"
            in text)
    here = sorted(setup for setup in {timing_setup(r) for r in load_runs(str(sweeps / "findings_sst2"))}
                  if not setup.startswith("Other CPU"))
    assert here and here[0].endswith(" in fp32")  # the suite's tests train in fp32 on any CPU
    boot = ", 1 boot" if provenance.boot_id() else ""  # each run's boot: the tiny run's, this machine's
    setups = sorted([("Other CPU (2 CPU cores, AVX512) in fp32", f"1 run{boot}"), (here[0], f"8 runs{boot}")])
    assert f"| {', '.join(f'{setup} ({n})' for setup, n in setups)} |" in text  # SST-2's row of the sweeps table
    # The gap does not depend on the machine: all three seeds stay paired.
    assert "| SST-2, final gap, LoRA - full | " in text and text.count("| 3 seeds paired |") == 2


def test_time_and_memory_pair_only_seeds_trained_in_one_boot_of_one_machine(sweeps, tmp_path):
    """Machines that report one CPU name can be different hosts. LoRA's seed 3 trained in another boot: time per
    epoch pairs seeds 1 and 2 (-20% and -25.45%: LoRA 160/4 and 164/4 s against full 100/2 and 110/2), memory too
    (-40% and -39%). Then full's seed 1 resumed in another boot as well: it pairs with nothing, leaving one seed, too
    few to measure."""
    def edit(method: str, seed: int, change) -> None:
        edit_results(next((sweeps / "findings_sst2" / "runs").glob(f"*_{method}_findings_sst2_seed{seed}"))
                     / "results.json", change)

    def measured() -> dict:
        out = tmp_path / "findings.md"
        assert report.main(["--findings", "--sweeps_dir", str(sweeps), "--findings_file", str(out),
                            "--n_resamples", "200"]) == 0
        return {what: measured for what, (measured, _) in measured_rows(out.read_text()).items()}

    edit("lora", 3, lambda run: run["meta_info"].update(boot_id="another-boot"))
    rows = measured()
    differences = [-20.0, 100 * (41 - 55) / 55]
    half = 12.706204736174698 * np.std(differences, ddof=1) / np.sqrt(2)
    mean = np.mean(differences)
    assert rows["SST-2, LoRA vs full, train time per epoch"] == f"{mean:+.2f}% [{mean - half:+.2f}, {mean + half:+.2f}]"
    half = 12.706204736174698 * np.std([-40, -39], ddof=1) / np.sqrt(2)
    assert rows["SST-2, LoRA vs full, peak memory"] == f"-39.50% [{-39.5 - half:+.2f}, {-39.5 + half:+.2f}]"
    boots = "2 boots" if provenance.boot_id() else "1 boot"  # this one (where Linux gives it) and the other
    assert f"in fp32 (9 runs, {boots}) |" in (tmp_path / "findings.md").read_text()  # the sweeps table says so
    edit("full", 1, lambda run: run["run_info"]["resumes"].append({"from_status": "interrupted", "boot_id": "x"}))
    rows = measured()
    for cost in ("train time per epoch", "peak memory"):
        assert rows[f"SST-2, LoRA vs full, {cost}"] == ("fewer than two seeds measured; 2 seed(s) left out, their runs "
                                                        "trained on different machines (or boots) or precisions")


def test_an_accuracy_comparison_across_precisions_says_so(sweeps, tmp_path):
    """LoRA at 5e-4 is a sweep of its own, which may run on another machine: trained in bf16 against full
    fine-tuning's fp32, its row says so beside the interval (the verdict still follows the interval)."""
    for path in (sweeps / "findings_sst2_lora_5e-4" / "runs").glob("*/results.json"):
        edit_results(path, lambda run: run["train_info"]["pipeline"].update(precision="bf16"))
    out = tmp_path / "findings.md"
    assert report.main(["--findings", "--sweeps_dir", str(sweeps), "--findings_file", str(out),
                        "--n_resamples", "200"]) == 0
    rows = claim_rows(out.read_text())["C1"]
    assert rows["SST-2, LoRA at 5e-4 vs full"] == (
        "+0.00 points [+0.00, +0.00]; lora (lr 5e-4) trained in bf16, full in fp32", "**confirmed**")
    assert rows["SST-2, LoRA at its chosen rate vs full"] == ("+0.00 points [+0.00, +0.00]", "**confirmed**")


def test_the_readme_headline_is_the_findings_one_and_writes_nothing(sweeps, tmp_path, capsys):
    assert report.main(["--findings", "--headline", "--sweeps_dir", str(sweeps), "--n_resamples", "2000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Generated ") and " from 12 run(s) on " in lines[0]
    assert lines[2].startswith("Verdicts so far: C1 confirmed;")
    assert not (tmp_path / "docs").exists()
    assert report.main(["--headline"]) == 2
    # No sweep made yet: a document that says so, in a folder made for it.
    (tmp_path / "no_sweeps").mkdir()
    fresh = tmp_path / "fresh" / "findings.md"
    assert report.main(["--findings", "--sweeps_dir", str(tmp_path / "no_sweeps"), "--findings_file", str(fresh)]) == 0
    assert "**In short.** No claim is measured yet: all 17 measurements await their sweeps." in fresh.read_text()
    # A folder that is not there, or a sweep whose benchmark.json cannot be read: one line, and nothing written.
    out = tmp_path / "docs" / "findings.md"
    assert report.main(["--findings", "--sweeps_dir", str(tmp_path / "nowhere"), "--findings_file", str(out)]) == 2
    assert "nowhere does not exist; give --sweeps_dir" in capsys.readouterr().err
    (sweeps / "findings_sst2" / "benchmark.json").write_text("{")
    assert report.main(["--findings", "--sweeps_dir", str(sweeps), "--findings_file", str(out)]) == 2
    assert "benchmark.json cannot be read; restore it" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("low, high, margin, expected", [
    (-0.4, 0.3, 0.5, verdicts.CONFIRMED), (-0.6, 0.3, 0.5, verdicts.INCONCLUSIVE),
    (-3.0, -0.6, 0.5, verdicts.NOT_CONFIRMED), (0.7, 2.0, 0.5, verdicts.NOT_CONFIRMED),
    (-0.9, 0.9, 1.0, verdicts.CONFIRMED)])
def test_alike_verdicts(low, high, margin, expected):
    assert verdicts.alike(Interval(0.0, low, high, "points"), margin) == expected


@pytest.mark.parametrize("low, high, unit, expected", [
    (-30.0, -10.0, "percent", verdicts.CONFIRMED), (10.0, 30.0, "percent", verdicts.REVERSED),
    (-4.0, 4.0, "percent", verdicts.NOT_CONFIRMED), (-6.0, 4.0, "percent", verdicts.INCONCLUSIVE),
    (-0.01, 0.015, "loss", verdicts.NOT_CONFIRMED), (-3.0, -0.1, "points", verdicts.CONFIRMED),
    (0.0, 0.3, "points", verdicts.NOT_CONFIRMED)])
def test_directional_verdicts_for_a_claimed_decrease(low, high, unit, expected):
    assert verdicts.directional(Interval(0.0, low, high, unit), -1) == expected


def run_with_curve(curve: list[float], epochs: float = 3.0, test_accuracy: float = 0.8) -> dict:
    """A run evaluated twice an epoch, with these validation accuracies, against a majority class of 0.6."""
    history = [{"epoch": round(0.5 * (i + 1) + (0.0041 if i % 2 == 0 else 0), 4), "val_accuracy": accuracy}
               for i, accuracy in enumerate(curve)]
    test = {"accuracy": test_accuracy, "majority_baseline": {"label": "neutral", "accuracy": 0.6}}
    return {"train_info": {"epochs": epochs, "history": history + [{"epoch": epochs, "train_loss": 0.1}],
                           "test": test}}


def test_enough_epochs_says_where_validation_accuracy_peaked_and_whether_it_still_rose():
    from ftbench.convergence import best_point, epochs_table, last_epoch_gain_points

    late = run_with_curve([0.6, 0.7, 0.75, 0.80, 0.79, 0.81])  # the last epoch added 0.81 - 0.80
    early = run_with_curve([0.6, 0.7, 0.75, 0.82, 0.79, 0.80])  # peaked at epoch 2, then fell 2 points
    middle = run_with_curve([0.6, 0.7, 0.75, 0.80, 0.82, 0.81])  # peaked at epoch 2.5041, shown as 2.5
    assert best_point(late)[0] == 3.0 and best_point(early)[0] == 2.0
    assert last_epoch_gain_points(late) == pytest.approx(1.0) and last_epoch_gain_points(early) == pytest.approx(-2.0)
    rising = run_with_curve([0.6, 0.7, 0.75, 0.80, 0.80, 0.808])
    one_epoch = run_with_curve([0.6, 0.7], epochs=1.0)
    assert last_epoch_gain_points(one_epoch) is None
    # a run stuck at the majority class (flat at 0.6, gain 0) is left out of the mean, not taken as converged
    stuck = run_with_curve([0.6] * 6, test_accuracy=0.6)
    table = epochs_table({"full": [late, early, middle], "lora": [late, rising, stuck], "prefix": [one_epoch],
                          "qlora": [stuck, stuck]})
    assert table[2:] == ["| full | 3 | 3, 2, 2.5 | 0.810, 0.820, 0.820 | +0.00 | stopped rising |",
                         "| lora | 3 | 3, 3, 0.5 | 0.810, 0.808, 0.600 | +0.90 (1 of 3 runs learned nothing, left out) "
                         "| **still rising**: more epochs may help |",
                         "| prefix | 1 | 1 | 0.700 | – | too short to tell |",
                         "| qlora | 3 | 0.5, 0.5 | 0.600, 0.600 | – (2 of 2 runs learned nothing, left out) | "
                         "no run learned anything |",
                         ""]


def test_the_epochs_check_says_what_a_rate_decaying_to_zero_does_to_the_curves():
    from ftbench.convergence import schedule_note

    def run(schedule: str, warmup: float = 0.06) -> dict:
        return {"run_info": {"config": {"training": {"lr_scheduler_type": schedule, "warmup_ratio": warmup}}}}

    assert schedule_note([run("linear"), run("linear")]) == (
        "The runs' learning rate decays to zero over their epochs (linear after a warm-up of 6% of the steps), so "
        "their last epochs train at small rates: a curve that flattens there may show the schedule ending rather than "
        "the model having learned what it can. Whether more epochs help is told by a longer run of the same method.")
    assert "(cosine after a warm-up of 0% of the steps, linear after a warm-up of 6% of the steps)" in schedule_note(
        [run("linear"), run("cosine", 0.0)])
    # a rate that stays up: a flattening curve is the data's doing, nothing to add
    assert schedule_note([run("linear"), run("constant_with_warmup")]) is None and schedule_note([]) is None


def test_the_imdb_budget_is_read_from_its_runs_or_before_them_its_preset():
    from ftbench.claims import imdb_budget
    from ftbench.sweep_presets import PRESETS

    data = {"split_sizes": {"train": 5000, "validation": 2000, "test": 2000},
            "split_sizes_before_subsetting": {"train": 22500, "validation": 2500, "test": 25000}}
    run = {"run_info": {"data": data, "config": {"data": {"max_seq_length": 256}}}, "train_info": {"epochs": 2.0}}
    assert imdb_budget({"full": [run, run], "lora": [run]}) == (
        "5,000 of the 22,500 training reviews for 2 epochs (full, lora), 2,000 of 2,500 for validation and 2,000 of "
        "25,000 for test, at 256 tokens")
    assert imdb_budget({}) == f"its preset's `{PRESETS['findings_imdb'].run_args}`"


def test_validation_against_test_names_how_each_split_was_made():
    from ftbench.findings import validation_against_test

    def run(validation: float, test: float) -> dict:
        data = {"split_method": {"validation": "stratified 10% of train, seed 42", "test": "official test split"},
                "source": {"test_split": "GLUE dev set"},
                "words_per_text": {"validation": {"mean": 9.6}, "test": {"mean": 19.5}}}
        config = {"dataset": "imdb", "data_dir": "../shared/data", "max_seq_length": 256, "max_train_samples": 5000,
                  "phrasebank_agreement": "all", "split_seed": 42}
        return {"run_info": {"data": data, "config": {"data": config}},
                "train_info": {"best_val": {"val_accuracy": validation}, "test": {"accuracy": test}}}

    groups = {"full": [run(0.95, 0.89), run(0.94, 0.88)], "lora": [run(0.93, 0.87)]}
    said = ("Over the 3 runs, the best validation accuracy averaged 0.9400 and test accuracy 0.8800 (validation minus "
            "test: +6.00 points). Validation: stratified 10% of train, seed 42; test: official test split, GLUE dev "
            "set. The rates were chosen, and the checkpoints selected, on validation; the tables report test.")
    assert validation_against_test(groups) == said + " Texts average 9.6 words in validation and 19.5 in test."
    # runs made before the lengths were recorded: the command that prints them, with the options away from defaults
    del groups["full"][0]["run_info"]["data"]["words_per_text"]
    assert validation_against_test(groups) == said + (" The splits' text lengths: `python utils.py --dataset imdb "
                                                      "--data_dir ../shared/data --max_seq_length 256 "
                                                      "--max_train_samples 5000`.")
    # IMDb's loader names its test split as the split method does: said once
    for runs in groups.values():
        for each in runs:
            each["run_info"]["data"]["source"]["test_split"] = "official test split"
    assert "; test: official test split. The rates" in validation_against_test(groups)


def test_every_method_counts_for_c7_under_its_label_with_two_seeds_each():
    from ftbench.claims import template_claim
    from ftbench.registry import method_names

    def run(method: str) -> dict:
        return {"run_info": {"method": method}, "train_info": {"test": {"f1_macro": 0.5}, "history": [{"step": 1}]}}

    groups = {("mlm+full" if m == "continued_pretraining" else m): [run(m), run(m)] for m in method_names()}
    row = template_claim(groups)["rows"][0]
    assert row["verdict"] == "confirmed" and row["measured"].startswith("15 of 15 methods with 2 or more seeds")
    groups["mlm+full"] = groups["mlm+full"][:1]
    assert template_claim(groups)["rows"][0]["verdict"] == "not measured yet"


def test_a_sweeps_record_alone_gives_the_same_findings_and_holds_nothing_heavy(sweeps, tmp_path, capsys):
    """python -m ftbench.sweep_records: the completed runs' results, predictions and logs, each sweep's
    benchmark.json and Optuna study are copied; models, checkpoints, cell logs, unfinished and superseded runs are
    not; the findings made from the copy are the findings made from the sweeps."""
    sst2, doc_rate = sweeps / "findings_sst2", sweeps / "findings_sst2_lora_5e-4"
    (doc_rate / "benchmark.json").write_text(json.dumps({"cells": []}))
    first = sorted((sst2 / "runs").iterdir())[0]
    (first / "model").mkdir()
    (first / "model" / "model.safetensors").write_bytes(b"weights")
    (first / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (first / "training_log.txt").write_text("step 5: loss 0.69\n")
    results = json.loads((first / "results.json").read_text())
    for folder, status in ((sst2 / "lr_search" / "runs" / "search-run", "completed"),
                           (sst2 / "optuna_search" / "runs" / "trial-run", "completed"),
                           (sst2 / "runs" / "20261204-120000_lora_findings_sst2_seed4", "interrupted"),
                           (sst2 / "superseded" / "old-run", "completed")):
        folder.mkdir(parents=True)
        results["run_info"]["status"] = status
        (folder / "results.json").write_text(json.dumps(results))
    (sst2 / "runs" / "broken-run").mkdir()
    (sst2 / "runs" / "broken-run" / "results.json").write_text("{")
    with sqlite3.connect(sst2 / "optuna_search" / "optuna.db") as study:
        study.execute("create table trials (number integer)")
        study.execute("insert into trials values (7)")
    (sst2 / "logs").mkdir()
    (sst2 / "logs" / "full-sst2-minilm-seed1.log").write_text("progress\n")
    records = tmp_path / "records"

    assert sweep_records.main([str(sst2), str(doc_rate), str(records)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"findings_sst2: 11 completed run(s) copied to {records / 'findings_sst2'}"
    assert out[1] == "  not completed, left out: runs/20261204-120000_lora_findings_sst2_seed4"
    assert out[2].startswith("  unreadable, left out: runs/broken-run (") and "is not valid JSON" in out[2]
    assert out[3:] == [f"findings_sst2_lora_5e-4: 3 completed run(s) copied to {records / doc_rate.name}",
                       "copied: results, test predictions, training logs, benchmark.json (no model, checkpoint or "
                       "cell log)"]
    copied = {str(path.relative_to(records)) for path in records.rglob("*") if path.is_file()}
    runs = [path.relative_to(sweeps) for path in sweeps.glob("*/runs/2026120[123]-*")]
    assert len(runs) == 12 and copied == (
        {f"{run}/{name}" for run in runs for name in ("results.json", "test_predictions.json")}
        | {f"findings_sst2/runs/{first.name}/training_log.txt", "findings_sst2/lr_search/runs/search-run/results.json",
           "findings_sst2/optuna_search/runs/trial-run/results.json", "findings_sst2/optuna_search/optuna.db",
           "findings_sst2/benchmark.json", "findings_sst2_lora_5e-4/benchmark.json"})
    with sqlite3.connect(records / "findings_sst2" / "optuna_search" / "optuna.db") as study:
        assert study.execute("select number from trials").fetchall() == [(7,)]

    documents = []
    for folder in (sweeps, records):
        out_path = tmp_path / f"{folder.name}.md"
        assert report.main(["--findings", "--sweeps_dir", str(folder), "--findings_file", str(out_path),
                            "--n_resamples", "2000"]) == 0
        documents.append(out_path.read_text().replace(str(folder), "SWEEPS"))
    assert documents[0] == documents[1] and "**confirmed**" in documents[0]
    capsys.readouterr()

    # A run the sweep moved aside is moved aside in the records too; records that hold a run the sweep knows
    # nothing of (a sweep not continued from them) are refused whole, and so is a copy into the sweep itself.
    first.rename(sst2 / "superseded" / first.name)
    assert sweep_records.main([str(sst2), str(records)]) == 0
    assert capsys.readouterr().out.splitlines()[3] == (f"  moved aside by the sweep, moved to superseded/ in the "
                                                       f"records: runs/{first.name}")
    assert sorted(path.name for path in (records / "findings_sst2" / "superseded").iterdir()) == [first.name]
    shutil.rmtree(sst2 / "lr_search")
    before = sorted(records.rglob("*"))
    assert sweep_records.main([str(sst2), str(records)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: the records hold runs their sweep does not (") and "search-run" in error
    assert sorted(records.rglob("*")) == before
    assert sweep_records.main([str(sst2), str(sweeps)]) == 2
    assert "would be copied into itself" in capsys.readouterr().err
    assert sweep_records.main([str(sweeps), str(records)]) == 2
    assert "is not a sweep's folder (no benchmark.json)" in capsys.readouterr().err


def test_the_headline_drops_so_far_once_every_measurement_is_made():
    from ftbench.findings import headline
    from ftbench.verdicts import NOT_MEASURED

    results = [{"id": "C1", "rows": [{"verdict": "confirmed"}, {"verdict": "inconclusive at this budget"}]},
               {"id": "C2", "rows": [{"verdict": NOT_MEASURED}]}]
    assert headline(results) == ("Verdicts so far: C1 confirmed / inconclusive at this budget (2 of 3 measurements "
                                 "made; 1 await their sweeps).")
    results[1]["rows"][0]["verdict"] = "reversed"
    assert headline(results) == ("Verdicts: C1 confirmed / inconclusive at this budget; C2 reversed (all 3 "
                                 "measurements made).")
