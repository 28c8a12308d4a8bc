"""What a run measures, checked against injected work of known size: seconds of sleep inside evaluation and
checkpoint saving must stay out of the training time, and a block of memory held just before training, or while
the best checkpoint is loaded after it, must stay out of the training peak. Real tiny runs (4 steps) of the
tiny BERT on the offline tweets."""

import json
import os
import time

import numpy as np
import pytest
from transformers import TrainerCallback

import logger_callback
from conftest import train
from ftbench import runner
from ftbench.trainer import BenchmarkTrainer

# 64 tweets in batches of 16 for one epoch: 4 steps, evaluated and checkpointed at steps 2 and 4.
TINY = ["--max_train_samples", "64", "--max_eval_samples", "32", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--evals_per_epoch", "2", "--logging_steps", "1",
        "--measure_mfu", "false", "--device", "cpu"]
SLEEP_S = 1.5
BLOCK_MIB = 400


def run_once(tiny_bert, output_dir) -> dict:
    assert train("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(output_dir)] + TINY) == 0
    (run_dir,) = [os.path.join(output_dir, "runs", name) for name in os.listdir(os.path.join(output_dir, "runs"))]
    with open(os.path.join(run_dir, "results.json")) as handle:
        return json.load(handle)


class StepClock(TrainerCallback):
    """Seconds inside optimizer steps (on_step_begin to on_step_end), measured apart from the recorder."""

    def __init__(self):
        self.total_s, self.begin, self.steps = 0.0, None, 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.total_s += time.perf_counter() - self.begin
        self.steps += 1


@pytest.mark.slow
def test_evaluation_and_checkpoint_time_stay_out_of_train_time(tiny_bert, tmp_path, monkeypatch):
    clock, calls = StepClock(), {"evaluation": 0, "checkpoint": 0}
    evaluation_loop, save_checkpoint = BenchmarkTrainer.evaluation_loop, BenchmarkTrainer._save_checkpoint
    build_trainer = runner.build_trainer

    def slow_evaluation_loop(self, *args, **kwargs):
        if kwargs.get("description") == "Evaluation":  # the evaluations during training, not the final predict()
            calls["evaluation"] += 1
            time.sleep(SLEEP_S)  # inside Trainer.evaluate's own clock: counted in eval_runtime
        return evaluation_loop(self, *args, **kwargs)

    def slow_save_checkpoint(self, *args, **kwargs):
        calls["checkpoint"] += 1
        time.sleep(SLEEP_S)
        return save_checkpoint(self, *args, **kwargs)

    def build_with_clock(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(clock)
        return trainer

    monkeypatch.setattr(BenchmarkTrainer, "evaluation_loop", slow_evaluation_loop)
    monkeypatch.setattr(BenchmarkTrainer, "_save_checkpoint", slow_save_checkpoint)
    monkeypatch.setattr(runner, "build_trainer", build_with_clock)
    start = time.perf_counter()
    info = run_once(tiny_bert, tmp_path)["train_info"]
    wall_s = time.perf_counter() - start

    assert calls == {"evaluation": 2, "checkpoint": 2} and clock.steps == 4 == info["global_steps"]
    slept_s = SLEEP_S * (calls["evaluation"] + calls["checkpoint"])
    assert wall_s > slept_s
    # Train time is the steps plus what lies between them (fetching batches, milliseconds): no part of any
    # 1.5 s sleep. Those after the last step lie outside its window anyway; those at step 2 must be taken out.
    # (Bounds from the steps' own clock, not absolute ones: a step of this run takes 0.1-1.3 s on a busy CPU.)
    assert clock.total_s - 0.01 <= info["train_time_s"] < clock.total_s + SLEEP_S / 2, \
        (info["train_time_s"], clock.total_s)
    assert info["history"][-1]["train_time_s"] == pytest.approx(info["train_time_s"], abs=1e-3)
    # The evaluation sleeps are where they belong: in the evaluation time, each one.
    assert [entry["step"] for entry in info["history"]] == [2, 4]
    assert all(SLEEP_S <= entry["eval_time_s"] < SLEEP_S + 2 for entry in info["history"]), info["history"]
    assert info["eval_time_s"] >= 2 * SLEEP_S


def _rss_mib() -> float:
    return logger_callback.current_rss_mib()


def _hwm_mib() -> float:
    return logger_callback._read_status_kib("VmHWM") / 1024


def _hold_a_block(seen: dict) -> None:
    """Make BLOCK_MIB resident (every page written) and free it: the process's high-water mark keeps it."""
    seen["rss_before_mib"] = _rss_mib()
    block = np.ones(BLOCK_MIB * 2**20 // 8)
    seen["rss_with_block_mib"] = _rss_mib()
    del block  # a block this large is its own mapping: freeing it returns it to the system at once
    seen["hwm_after_mib"] = _hwm_mib()


def _assert_the_block_counted_and_was_left_out(seen: dict, memory: dict) -> None:
    # The block was real: resident, and it raised the kernel's peak, which a recorder that read it would report.
    assert seen["rss_with_block_mib"] >= seen["rss_before_mib"] + 0.95 * BLOCK_MIB, seen
    assert seen["hwm_after_mib"] >= seen["rss_before_mib"] + 0.95 * BLOCK_MIB, seen
    assert memory["peak_rss_scope"] == "since training started"
    # Training 4 steps of a 1M-parameter model adds far less than half the block.
    assert memory["rss_at_train_start_mib"] <= memory["peak_rss_mib"] < seen["rss_before_mib"] + BLOCK_MIB / 2, \
        (memory, seen)


@pytest.fixture
def clear_refs():
    try:  # how the recorder resets the peak (Linux); elsewhere there is no training-only peak to test
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError as error:
        pytest.skip(f"the peak resident size cannot be reset here ({error}): no training peak to check")


def test_peak_rss_is_reset_when_training_starts(tiny_bert, tmp_path, monkeypatch, clear_refs):
    seen = {}
    train_method = BenchmarkTrainer.train

    def train_after_a_block(self, *args, **kwargs):
        _hold_a_block(seen)  # the moment before trainer.train(): everything loaded, nothing trained
        return train_method(self, *args, **kwargs)

    monkeypatch.setattr(BenchmarkTrainer, "train", train_after_a_block)
    memory = run_once(tiny_bert, tmp_path)["train_info"]["memory"]
    _assert_the_block_counted_and_was_left_out(seen, memory)


def test_loading_the_best_model_is_not_training_memory(tiny_bert, tmp_path, monkeypatch, clear_refs):
    """The Trainer loads the best checkpoint (load_best_model_at_end) after the last step and before on_train_end:
    what that load holds is not training memory."""
    seen = {}
    load_best_model = BenchmarkTrainer._load_best_model

    def load_with_a_block(self):
        _hold_a_block(seen)
        return load_best_model(self)

    monkeypatch.setattr(BenchmarkTrainer, "_load_best_model", load_with_a_block)
    memory = run_once(tiny_bert, tmp_path)["train_info"]["memory"]
    assert seen, "the best model was not loaded"
    _assert_the_block_counted_and_was_left_out(seen, memory)


PHASES = {"options_and_checks", "data_loading_and_tokenising", "model_loading", "run_folder_and_provenance",
          "trainer_set_up_and_probes", "training", "evaluation", "checkpoints_and_callbacks", "training_figures",
          "revalidation", "testing", "saving"}


@pytest.mark.parametrize("method", ["full", "lora", "prefix"])
def test_wall_time_is_broken_down_into_phases_that_add_up(trained_runs, method):
    """train_info.wall_time_s is the sum of its phases; training and evaluation are the recorder's own figures."""
    info = json.load(open(os.path.join(trained_runs[method], "results.json")))["train_info"]
    phases = info["wall_time_breakdown_s"]
    assert set(phases) == PHASES  # in-process (runner.run): no start-up phase, the process was not the run's
    assert all(seconds >= 0 for seconds in phases.values())
    assert abs(sum(phases.values()) - info["wall_time_s"]) <= 0.001 * len(phases)
    assert phases["training"] == pytest.approx(info["train_time_s"], abs=1e-3)
    assert phases["evaluation"] == pytest.approx(info["eval_time_s"], abs=1e-3)
    assert info["wall_time_s"] > info["train_time_s"] + info["eval_time_s"]
