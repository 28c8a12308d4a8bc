"""Reproducibility: a run repeated from what its results.json recorded gives bit-identical results on the CPU, a
different seed gives different ones, and the record names what is needed to repeat it (resolved options, data
file hashes, package versions, hardware)."""

import glob
import hashlib
import json
import os
import platform
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import SHARED_DATA, needs_shared_data, train

pytestmark = needs_shared_data

# LoRA: a fresh random head, random LoRA matrices, dropout and shuffled batches all depend on the seed.
SMALL = ["--dataset", "sst2", "--data_dir", str(SHARED_DATA), "--max_train_samples", "96", "--max_eval_samples", "48",
         "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--logging_steps", "1",
         "--evals_per_epoch", "2", "--measure_mfu", "false"]
TIMES = {"train_time_s", "eval_time_s"}  # wall-clock figures: the only things allowed to differ


def _runs(output) -> set:
    return set(glob.glob(os.path.join(str(output), "runs", "*")))


def _results(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def runs(tiny_bert, tmp_path_factory) -> dict:
    """first: seed 42; replay: the first run's recorded command run again; other_seed: seed 7; measured: seed 42
    with the utilisation probes (--measure_mfu true)."""
    output = tmp_path_factory.mktemp("repro")
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(output), "--seed", "42"] + SMALL) == 0
    (first,) = _runs(output)
    recorded = shlex.split(_results(first)["run_info"]["command"])
    assert recorded[0] == "train_lora.py"
    assert train("lora", recorded[1:]) == 0  # nothing but what the run recorded
    (replay,) = _runs(output) - {first}
    other = tmp_path_factory.mktemp("repro_other_seed")
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(other), "--seed", "7"] + SMALL) == 0
    (other_seed,) = _runs(other)
    measured = tmp_path_factory.mktemp("repro_measured")
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(measured), "--seed", "42"]
                 + SMALL[:-1] + ["true"]) == 0
    (measured_run,) = _runs(measured)
    return {"first": first, "replay": replay, "other_seed": other_seed, "measured": measured_run}


def _without_times(entries: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMES} for entry in entries]


def test_same_seed_gives_bit_identical_results(runs):
    a, b = (_results(runs[k]) for k in ("first", "replay"))
    assert a["run_info"]["run_id"] != b["run_info"]["run_id"]
    ta, tb = a["train_info"], b["train_info"]
    assert len(ta["history"]) == 2 and len(ta["train_loss_log"]) == 6
    assert _without_times(ta["history"]) == _without_times(tb["history"])  # val loss, accuracy, F1, train loss
    assert ta["train_loss_log"] == tb["train_loss_log"]  # loss, grad norm, learning rate at every step
    assert {k: v for k, v in ta["test"].items() if k not in TIMES} == \
        {k: v for k, v in tb["test"].items() if k not in TIMES}
    assert ta["selection"] == tb["selection"] and ta["best_val"] == tb["best_val"]
    assert (ta["train_tokens"], ta["train_samples"]) == (tb["train_tokens"], tb["train_samples"])
    predictions = [Path(runs[k], "test_predictions.json").read_bytes() for k in ("first", "replay")]
    assert predictions[0] == predictions[1]  # probabilities included, byte for byte
    weights = [load_file(os.path.join(runs[k], "model", "adapter_model.safetensors")) for k in ("first", "replay")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert a["run_info"]["config"] == b["run_info"]["config"] and a["run_info"]["data"] == b["run_info"]["data"]


def test_the_utilisation_probes_change_no_result(runs):
    """They run between the trainer's seeding and training, and their matmul probe sizes itself by the device's
    speed: they must leave the random state (data order, dropout) as they found it."""
    a, m = (_results(runs[k])["train_info"] for k in ("first", "measured"))
    assert m["utilisation"]["mfu"] > 0 and a["utilisation"]["mfu"] is None
    assert a["train_loss_log"] == m["train_loss_log"] and _without_times(a["history"]) == _without_times(m["history"])
    assert Path(runs["first"], "test_predictions.json").read_bytes() == \
        Path(runs["measured"], "test_predictions.json").read_bytes()


def test_another_seed_gives_other_results(runs):
    a, c = (_results(runs[k])["train_info"] for k in ("first", "other_seed"))
    assert _results(runs["other_seed"])["run_info"]["seed"] == 7
    assert [e["step"] for e in a["train_loss_log"]] == [e["step"] for e in c["train_loss_log"]]
    assert [e["loss"] for e in a["train_loss_log"]] != [e["loss"] for e in c["train_loss_log"]]
    assert [h["val_loss"] for h in a["history"]] != [h["val_loss"] for h in c["history"]]
    assert a["test"]["loss"] != c["test"]["loss"]


def _sha256(path: str) -> str:
    """Computed here independently of utils, which is what is checked."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def test_results_record_what_is_needed_to_repeat_the_run(runs, tiny_bert):
    import accelerate
    import datasets
    import peft
    import transformers

    results = _results(runs["first"])
    run = results["run_info"]
    # The resolved options, every group of them, with the values this run used.
    config = run["config"]
    assert set(config) == {"method", "model", "data", "training", "method_options", "pretraining"}
    assert config["method"] == run["method"] == "lora"
    assert config["model"] == {"model_name_or_path": tiny_bert, "trust_remote_code": False}
    assert run["model_resolved_path"] == tiny_bert and run["model_type"] == "bert"
    assert config["training"]["seed"] == run["seed"] == 42
    assert config["training"]["num_train_epochs"] == 1 and config["training"]["learning_rate"] == 3e-3
    assert config["data"]["dataset"] == "sst2" and config["data"]["data_dir"] == str(SHARED_DATA)
    assert (config["data"]["max_train_samples"], config["data"]["max_eval_samples"]) == (96, 48)
    assert config["data"]["split_seed"] == 42 and config["data"]["max_seq_length"] == 128
    assert config["method_options"]["lora_r"] == 8 and run["peft_config"]["r"] == 8
    assert run["command"].startswith("train_lora.py --model_name_or_path ")

    # The data: which files, with their sha256, how they were split and subset.
    data = run["data"]
    files = data["source"]["files"]
    assert data["source"]["kind"] == "local" and set(files) == {"train", "test"}
    for split, entry in files.items():
        assert os.path.dirname(entry["path"]) == str(SHARED_DATA / "sst2"), split
        assert entry["sha256"] == _sha256(entry["path"]), split
    assert data["split_method"]["validation"].startswith("stratified 10% of train, seed 42")
    assert data["split_sizes"] == run["split_sizes"] == {"train": 96, "validation": 48, "test": 48}
    assert data["split_sizes_before_subsetting"]["train"] > 60000
    assert data["label_names"] == run["label_names"] == ["negative", "positive"]

    # The software and the hardware.
    meta = results["meta_info"]
    assert meta["python"] == platform.python_version()
    assert (meta["torch"], meta["transformers"], meta["peft"], meta["accelerate"], meta["datasets"]) == \
        (torch.__version__, transformers.__version__, peft.__version__, accelerate.__version__, datasets.__version__)
    assert meta["device"] == "cpu" and meta["device_name"] and meta["cpu"] and meta["platform"]
    assert meta["cpu_count"] == os.cpu_count() and meta["torch_num_threads"] == torch.get_num_threads()
    assert meta["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert meta["gpu_count"] == torch.cuda.device_count()
