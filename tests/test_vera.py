"""VeRA (ftbench/methods/vera.py), added as one file: a real run on the tiny BERT with the exact count of what
trains, the frozen weights left bit-identical, the saved adapter, its variant label, its place in a sweep, and
inference.py --verify and --benchmark (merged against unmerged) through the registry alone."""

import glob
import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

import benchmark
import inference
from config import parse_args
from conftest import QUICK, train
from ftbench.registry import get_method, method_label

H, LAYERS, LABELS = 32, 2, 3  # the tiny BERT (conftest.tiny_bert), the tweets' three labels
HEAD = H * LABELS + LABELS


@pytest.fixture(scope="module")
def vera_run(tiny_bert, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("vera")
    assert train("vera", ["--model_name_or_path", tiny_bert, "--output_dir", str(out), "--vera_r", "16"] + QUICK) == 0
    (run_dir,) = glob.glob(str(out / "runs" / "*"))
    return run_dir


def test_vera_trains_two_scaling_vectors_per_adapted_layer_and_the_head(vera_run, tiny_bert):
    results = json.load(open(os.path.join(vera_run, "results.json")))
    info, run = results["train_info"], results["run_info"]
    # query and value of each layer: d (one per rank, 16) and b (one per output, H); the projections are frozen
    assert info["num_params_trainable"] == LAYERS * 2 * (16 + H) + HEAD
    assert run["method_label"] == "vera" and run["peft_config"]["peft_type"] == "VERA"
    assert run["peft_config"]["projection_prng_key"] == run["seed"] == 42
    saved = load_file(os.path.join(vera_run, "model", "adapter_model.safetensors"))
    assert sorted({name.rsplit(".", 1)[-1] for name in saved if "vera_lambda" in name}) == ["vera_lambda_b",
                                                                                            "vera_lambda_d"]
    assert {tuple(t.shape) for n, t in saved.items() if "vera_lambda_d" in n} == {(16,)}
    assert any("vera_A" in name for name in saved)  # the shared projections travel with the adapter
    # the base weights are untouched: the merged update lies in the trained vectors only
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=LABELS)
    model, _, _ = inference.load_run(vera_run, torch.device("cpu"))
    query = "bert.encoder.layer.0.attention.self.query"
    frozen = dict(model.named_parameters())[f"base_model.model.{query}.base_layer.weight"]
    assert torch.equal(frozen, dict(base.named_parameters())[f"{query}.weight"])


def test_vera_reloads_and_merges_through_the_registry(vera_run, capsys):
    assert inference.main(["--run", vera_run, "--verify"]) == 0
    assert "verify passed" in capsys.readouterr().out
    assert inference.main(["--run", vera_run, "--benchmark", "--benchmark_warmup", "1", "--benchmark_iterations", "2",
                           "--benchmark_batches", "1", "a fine day", "a bad day"]) == 0
    record = json.load(open(os.path.join(vera_run, inference.BENCHMARK_FILE)))
    assert set(record["variants"]) == {"unmerged", "merged"} and record["merge"]["measured"]
    assert record["comparison"]["max_abs_logit_diff"] < 1e-4


def test_vera_has_options_a_variant_label_and_a_sweep_cell(capsys):
    method = get_method("vera")
    run_config = parse_args("vera", ["--vera_targets", "all_linear"])
    assert run_config.training.learning_rate == method.learning_rate == 1e-1
    assert method_label(method, run_config.method_options, False) == "vera[all_linear]"
    assert benchmark.main(["--methods", "vera", "--seeds", "1", "--dry_run"]) == 0
    assert "vera-tweets-minilm-seed1: python train_vera.py" in capsys.readouterr().out
