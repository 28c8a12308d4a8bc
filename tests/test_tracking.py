"""Experiment trackers through --report_to: a real run's TensorBoard event files and trackio database read back
and compared with its results.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import QUICK, ROOT

pytest.importorskip("tensorboard")
pytest.importorskip("trackio")


@pytest.fixture(scope="module")
def tracked_run(tiny_bert, tmp_path_factory) -> tuple[dict, Path]:
    """A LoRA run on the tiny BERT that reports to TensorBoard and trackio (trackio's folder kept in tmp)."""
    output = tmp_path_factory.mktemp("tracked")
    env = {**os.environ, "TRACKIO_DIR": str(output / "trackio"), "FTB_CPU_NATIVE_BF16": "0"}
    command = [sys.executable, "train_lora.py", "--model_name_or_path", tiny_bert, "--output_dir", str(output),
               "--report_to", "tensorboard", "trackio"] + QUICK
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (run_dir,) = (output / "runs").iterdir()
    return json.loads((run_dir / "results.json").read_text()), output


def tensorboard_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_float32(pairs) -> list[tuple[int, float]]:
    return [(step, float(np.float32(value))) for step, value in pairs]


@pytest.mark.slow
def test_tensorboard_receives_the_curves_and_the_summary(tracked_run):
    results, _ = tracked_run
    info, tracking = results["train_info"], results["run_info"]["tracking"]
    log_dir = tracking["tensorboard"]["log_dir"]
    assert log_dir == os.path.join(results["run_info"]["run_dir"], "tensorboard")
    scalars = tensorboard_scalars(log_dir)
    # Every logged training loss (results.json rounds it to 6 decimals) and learning rate, at its step (TensorBoard
    # keeps float32).
    tracked_losses = scalars["train/loss"]
    assert [step for step, _ in tracked_losses] == [e["step"] for e in info["train_loss_log"]]
    assert [loss for _, loss in tracked_losses] == pytest.approx([e["loss"] for e in info["train_loss_log"]], abs=1e-6)
    assert scalars["train/learning_rate"] == as_float32((e["step"], e["learning_rate"]) for e in info["train_loss_log"])
    # Every validation figure of the learning curves.
    for figure in ("accuracy", "f1_macro", "loss"):
        assert scalars[f"eval/{figure}"] == as_float32((e["step"], e[f"val_{figure}"]) for e in info["history"])
    # The summary, once, at the last step; the test split's figures under test/.
    last = info["global_steps"]
    assert scalars["test/accuracy"] == as_float32([(last, info["test"]["accuracy"])])
    assert scalars["test/f1_macro"] == as_float32([(last, info["test"]["f1_macro"])])
    assert scalars["train/num_params_trainable"] == as_float32([(last, info["num_params_trainable"])])
    assert scalars["train/train_time_s"] == as_float32([(last, info["train_time_s"])])
    peak = "peak_mem_alloc_mib" if info["memory"]["device_type"] == "cuda" else "peak_rss_mib"
    assert scalars[f"train/{peak}"] == as_float32([(last, info["memory"][peak])])
    assert scalars["train/mfu"] == as_float32([(last, info["utilisation"]["mfu"])])
    assert scalars["train/final_generalization_gap"] == as_float32([(last, info["final_generalization_gap"])])
    # Predictions (the test split, the selected checkpoint's check) are not filed as training figures.
    assert not [tag for tag in scalars if tag.startswith("train/test_") or tag.startswith("train/val_")]


@pytest.mark.slow
def test_trackio_receives_the_run_under_its_run_id(tracked_run):
    results, output = tracked_run
    run_id, info = results["run_info"]["run_id"], results["train_info"]
    tracking = results["run_info"]["tracking"]["trackio"]
    assert tracking == {"project": "ftbench", "run": run_id, "db": str(output / "trackio" / "ftbench.db")}
    assert os.path.isfile(tracking["db"])
    env = {**os.environ, "TRACKIO_DIR": str(output / "trackio")}
    # Read back in a process of its own: trackio fixes its folder when it is imported.
    read = subprocess.run([sys.executable, "-c", (
        "import json; from trackio.sqlite_storage import SQLiteStorage as S; "
        f"print(json.dumps(S.get_logs('ftbench', {run_id!r})))")], env=env, capture_output=True, text=True, check=True)
    logs = json.loads(read.stdout.strip().splitlines()[-1])
    losses = [(row["train/global_step"], round(row["train/loss"], 6)) for row in logs if "train/loss" in row]
    assert losses == [(e["step"], e["loss"]) for e in info["train_loss_log"]]
    accuracies = [(row["train/global_step"], row["eval/accuracy"]) for row in logs if "eval/accuracy" in row]
    assert accuracies == [(e["step"], e["val_accuracy"]) for e in info["history"]]
    (summary,) = [row for row in logs if "test/accuracy" in row]
    assert summary["test/accuracy"] == info["test"]["accuracy"]
    assert summary["test/f1_macro"] == info["test"]["f1_macro"]
    assert summary["train/train_samples_per_s"] == info["train_samples_per_s"]


def test_a_tracker_that_is_not_installed_is_refused_in_one_line(monkeypatch):
    import importlib.util

    from config import parse_args
    from ftbench.errors import ConfigError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a))
    with pytest.raises(ConfigError) as refusal:
        parse_args("lora", ["--report_to", "tensorboard", "mlflow"])
    assert str(refusal.value) == ("--report_to mlflow needs the mlflow package: pip install mlflow "
                                  "(or pip install -r requirements-tools.txt)")
    with pytest.raises(ConfigError, match="--report_to comet_ml is not offered; choose none or any of"):
        parse_args("lora", ["--report_to", "comet_ml"])
    with pytest.raises(ConfigError, match="mixes none with trackers"):
        parse_args("lora", ["--report_to", "none", "tensorboard"])
    assert parse_args("lora", []).training.report_to == ["none"]
