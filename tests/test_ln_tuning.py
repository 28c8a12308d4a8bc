"""LN tuning (ftbench/methods/ln_tuning.py), added as one file: a real run on the tiny BERT with the exact count of
what trains (every LayerNorm's scale and shift, and the head), everything else bit-identical, a quiet stderr
(peft's warning on LayerNorms filtered, checked on the script's own stderr), and inference.py --verify and
--benchmark through the registry alone."""

import glob
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import benchmark
import inference
from config import parse_args
from conftest import QUICK, ROOT, train
from ftbench.registry import get_method, method_label

H, LAYERS, LABELS = 32, 2, 3  # the tiny BERT (conftest.tiny_bert), the tweets' three labels
HEAD = H * LABELS + LABELS


@pytest.fixture(scope="module")
def ln_run(tiny_bert, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("ln_tuning")
    assert train("ln_tuning", ["--model_name_or_path", tiny_bert, "--output_dir", str(out)] + QUICK) == 0
    (run_dir,) = glob.glob(str(out / "runs" / "*"))
    return run_dir


@pytest.mark.slow  # a process of its own
def test_the_script_writes_no_third_party_warning(tiny_bert, tmp_path):
    done = subprocess.run([sys.executable, "train_ln_tuning.py", "--model_name_or_path", tiny_bert, "--output_dir",
                           str(tmp_path), "--max_steps", "2", "--max_train_samples", "32", "--max_eval_samples", "16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "UserWarning" not in done.stderr and "Unsupported layer type" not in done.stderr


def test_ln_tuning_trains_every_layer_norm_and_the_head_only(ln_run, tiny_bert):
    run_dir = ln_run
    results = json.load(open(os.path.join(run_dir, "results.json")))
    # the embeddings' LayerNorm and two per layer, each a scale and a shift of H
    assert results["train_info"]["num_params_trainable"] == (1 + 2 * LAYERS) * 2 * H + HEAD
    assert results["run_info"]["peft_config"]["peft_type"] == "LN_TUNING"
    base = dict(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=LABELS).named_parameters())
    model, _, _ = inference.load_run(run_dir, torch.device("cpu"))
    trained, untouched = {}, {}
    for name, value in model.named_parameters():
        short = name.removeprefix("base_model.model.")
        if "classifier" in short:
            continue
        if ".ln_tuning_layers.default." in short:
            trained[short.replace(".ln_tuning_layers.default.", ".")] = value
        else:
            untouched[short.replace(".base_layer.", ".")] = value
    # the trained copies: every LayerNorm, moved by training; every other weight bit-identical to the base model
    assert len(trained) == (1 + 2 * LAYERS) * 2 and all("LayerNorm" in name for name in trained)
    assert all(not torch.equal(value, base[name]) for name, value in trained.items())
    assert set(untouched) == set(base) - {n for n in base if "classifier" in n}
    assert all(torch.equal(value, base[name]) for name, value in untouched.items())


def test_ln_tuning_reloads_and_merges_through_the_registry(ln_run, capsys):
    run_dir = ln_run
    assert inference.main(["--run", run_dir, "--verify"]) == 0
    assert "verify passed" in capsys.readouterr().out
    assert inference.main(["--run", run_dir, "--benchmark", "--benchmark_warmup", "1", "--benchmark_iterations", "2",
                           "--benchmark_batches", "1", "a fine day"]) == 0
    record = json.load(open(os.path.join(run_dir, inference.BENCHMARK_FILE)))
    assert record["merge"]["measured"] and record["comparison"]["max_abs_logit_diff"] < 1e-5


def test_ln_tuning_has_its_learning_rate_and_a_sweep_cell(capsys):
    method = get_method("ln_tuning")
    run_config = parse_args("ln_tuning", [])
    assert run_config.training.learning_rate == method.learning_rate == 5e-3
    assert method_label(method, run_config.method_options, False) == "ln_tuning"
    assert benchmark.main(["--methods", "ln_tuning", "--seeds", "1", "--dry_run"]) == 0
    assert "ln_tuning-tweets-minilm-seed1: python train_ln_tuning.py" in capsys.readouterr().out
