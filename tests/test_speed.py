"""Speed: FLOPs counting and MFU, the length-grouped pipeline, the recipe comparison, the scaling sweep,
gradient checkpointing, and training under torchrun (DDP over gloo) equal to one process."""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

import bench_speed
from conftest import ROOT, train
from ftbench import flops
from ftbench.length_sampler import LengthGroupedShuffleSampler

H, LAYERS, INTERMEDIATE = 32, 2, 64  # the tiny BERT of conftest


def results_of(output_dir, name="*"):
    paths = sorted(glob.glob(os.path.join(str(output_dir), "runs", f"*{name}*", "results.json")))
    assert paths, f"no run {name} under {output_dir}"
    return json.load(open(paths[-1]))


def tiny_classifier(num_labels=2, dropout=0.1):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1100, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=4,
                        intermediate_size=INTERMEDIATE, max_position_embeddings=128, num_labels=num_labels,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(config)


# -- FLOPs -------------------------------------------------------------------------------------------------


def test_flops_of_full_fine_tuning_match_the_hand_count():
    """Per token, each encoder weight matrix costs 2 FLOPs per entry forward, 2 for the input gradient and 2 for
    the weight gradient; attention's two L x L products cost 4*L*H per token forward and twice that backward."""
    model = tiny_classifier()
    coefficients = flops.flops_coefficients(model, torch.device("cpu"))
    encoder_weights = LAYERS * (4 * H * H + 2 * H * INTERMEDIATE)
    assert coefficients["c1"] == pytest.approx(6 * encoder_weights)
    assert coefficients["c2"] == pytest.approx(12 * H * LAYERS)
    assert coefficients["c0"] == pytest.approx(6 * (H * H + H * 2))  # pooler and 2-class head, once per sequence
    # The quadratic is exact: it predicts a length it was not fitted on.
    assert flops.model_flops(coefficients, 1, 24, 24 * 24) == pytest.approx(
        flops.count_training_flops(model, 24, torch.device("cpu")))


def test_frozen_weights_need_no_weight_gradients():
    from ftbench.transforms import ModelTransform  # noqa: F401  (the suite's methods import cleanly beside flops)

    model = tiny_classifier()
    full = flops.flops_coefficients(model, torch.device("cpu"))
    for parameter in model.bert.parameters():
        parameter.requires_grad_(False)  # feature extraction: only the head trains
    frozen = flops.flops_coefficients(model, torch.device("cpu"))
    encoder_weights = LAYERS * (4 * H * H + 2 * H * INTERMEDIATE)
    assert frozen["c1"] == pytest.approx(2 * encoder_weights)  # forward only
    assert frozen["c2"] == pytest.approx(4 * H * LAYERS)
    assert frozen["c1"] < full["c1"] / 2.9

    import peft

    lora = peft.get_peft_model(tiny_classifier(), peft.LoraConfig(task_type="SEQ_CLS", r=4,
                                                                    target_modules=["query", "value"]))
    coefficients = flops.flops_coefficients(lora, torch.device("cpu"))
    # Input gradients flow through every layer above the first adapter, but no frozen weight gets a gradient.
    assert 2 * encoder_weights < coefficients["c1"] < 5 * encoder_weights


def test_probe_leaves_no_gradients_and_no_trace_in_the_random_state():
    model = tiny_classifier()
    model.train()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    flops.flops_coefficients(model, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_peak_matmul_rate_is_measured_without_touching_the_random_state():
    """The probe's size depends on the device's speed: were its matrices drawn from the global generator, the data
    order and dropout of the training after it would too."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    peak = flops.peak_matmul_flops(torch.device("cpu"), size=256, repeats=2)
    assert peak["peak_matmul_flops_per_s"] > 1e8 and peak["matmul_size"] == 256 and peak["dtype"] == "float32"
    flops.peak_matmul_flops(torch.device("cpu"), repeats=1)  # the sizing path
    assert torch.equal(torch.rand(3), expected)


def test_probe_size_doubles_until_a_call_saturates_or_the_largest_is_reached():
    asked = []

    def seconds(size):  # a device at 16 GFLOP/s: 256 takes 2 ms, 512 17 ms, 1024 0.134 s
        asked.append(size)
        return 2 * size**3 / 16e9

    assert flops.saturating_size(seconds, largest=2048) == 1024 and asked == [256, 512, 1024]
    assert flops.saturating_size(lambda size: 0.0, largest=2048) == 2048
    assert flops.saturating_size(lambda size: 5.0, largest=2048) == 256


def test_bf16_probe_is_short_on_any_cpu():
    """On a CPU that emulates bf16 (about 1 GFLOP/s) the fixed 2048 probe took 12 minutes; now it takes seconds
    there; a CPU with native bf16 reaches a larger size."""
    start = time.perf_counter()
    peak = flops.peak_matmul_flops(torch.device("cpu"), torch.bfloat16)
    assert time.perf_counter() - start < 60 and peak["dtype"] == "bfloat16"
    assert peak["matmul_size"] in (256, 512, 1024, 2048) and peak["peak_matmul_flops_per_s"] > 0


# -- The pipeline ------------------------------------------------------------------------------------------


def test_length_grouped_batches_are_a_shuffled_permutation_with_little_padding():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 60, (1000,), generator=generator).tolist()
    sampler = LengthGroupedShuffleSampler(lengths, group_size=32, seed=5, window_groups=10)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(1000)) and sorted(second) == list(range(1000))
    assert first != second  # a new order every epoch
    again = LengthGroupedShuffleSampler(lengths, group_size=32, seed=5, window_groups=10)
    assert list(again) == first  # and the same order for the same seed and epoch

    def padded(order):
        batches = [order[i:i + 32] for i in range(0, len(order), 32)]
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    random_order = torch.randperm(1000, generator=generator).tolist()
    assert padded(first) < 1.15 * sum(lengths) < 0.7 * padded(random_order)
    batch_maxima = [max(lengths[i] for i in first[k:k + 32]) for k in range(0, 992, 32)]
    # Batches are not visited long-to-short (or short-to-long) within a window: their order is shuffled.
    assert batch_maxima != sorted(batch_maxima) and batch_maxima != sorted(batch_maxima, reverse=True)
    assert len(first[992:]) == 8  # the one short group comes last


def test_recipe_pads_to_max_length_and_the_suite_does_not(tiny_bert, tmp_path):
    common = ["--model_name_or_path", tiny_bert, "--max_train_samples", "96", "--max_eval_samples", "32",
              "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--save_model", "false",
              "--max_seq_length", "64"]
    assert train("full", common + ["--output_dir", str(tmp_path / "suite")]) == 0
    assert train("full", common + ["--output_dir", str(tmp_path / "recipe")] + bench_speed.RECIPE_ARGS) == 0
    suite, recipe = (results_of(tmp_path / name)["train_info"] for name in ("suite", "recipe"))
    assert suite["train_samples"] == recipe["train_samples"] == 96
    assert suite["train_tokens"] == recipe["train_tokens"]  # the same text, truncated the same way
    assert recipe["train_padded_tokens"] == 96 * 64
    assert suite["train_padded_tokens"] < 0.8 * recipe["train_padded_tokens"]
    assert suite["pipeline"] | {"optimizer": None} == {
        "padding": "longest", "group_by_length": True, "precision": "fp32", "tf32": False, "optimizer": None,
        "precision_reason": "auto: FTB_CPU_NATIVE_BF16=0",
        "attn_implementation": "sdpa", "torch_compile": False, "dataloader_num_workers": 0,
        "dataloader_pin_memory": False, "gradient_checkpointing": False, "world_size": 1}
    assert suite["pipeline"]["optimizer"] == "adamw_torch_fused" and recipe["pipeline"]["optimizer"] == "adamw_torch"
    assert recipe["pipeline"]["padding"] == "max_length" and recipe["pipeline"]["group_by_length"] is False
    for info in (suite, recipe):
        utilisation = info["utilisation"]
        assert 0 < utilisation["mfu"] < 1
        assert utilisation["achieved_model_flops_per_s"] == pytest.approx(  # train_time_s is rounded to 1 us
            utilisation["model_flops_total"] / info["train_time_s"], rel=1e-4)
        assert info["steady_state"]["train_samples"] == 96 - 16  # the first step is warm-up
    # Model FLOPs count real tokens, not padding: the same training work in both pipelines.
    assert suite["utilisation"]["model_flops_total"] == pytest.approx(recipe["utilisation"]["model_flops_total"])


@pytest.mark.slow
def test_gradient_checkpointing_changes_memory_not_results(tiny_bert, tmp_path):
    common = ["--model_name_or_path", tiny_bert, "--max_train_samples", "64", "--max_eval_samples", "32",
              "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--save_model", "false",
              "--logging_steps", "1"]
    for method in ("full", "lora"):
        assert train(method, common + ["--output_dir", str(tmp_path / f"{method}-plain")]) == 0
        assert train(method, common + ["--output_dir", str(tmp_path / f"{method}-ckpt"),
                                       "--gradient_checkpointing", "true"]) == 0
        plain, ckpt = (results_of(tmp_path / f"{method}-{kind}")["train_info"] for kind in ("plain", "ckpt"))
        assert ckpt["pipeline"]["gradient_checkpointing"] is True
        assert [e["loss"] for e in ckpt["train_loss_log"]] == pytest.approx(
            [e["loss"] for e in plain["train_loss_log"]], rel=1e-5)
        assert ckpt["test"]["accuracy"] == plain["test"]["accuracy"]


# -- bench_speed.py ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_speed_compares_the_pipelines_and_sweeps_length_and_batch(tiny_bert, tmp_path, capsys):
    out = str(tmp_path / "speed")
    status = bench_speed.main(["--methods", "full", "--model", tiny_bert, "--dataset", "tweets", "--output_dir", out,
                               "--name", "cmp", "--repeats", "2", "--run_args", "--max_train_samples 64 "
                               "--max_eval_samples 32 --num_train_epochs 1 --per_device_train_batch_size 16 "
                               "--save_model false"])
    assert status == 0
    report = json.load(open(os.path.join(out, "cmp", "speed.json")))
    full = report["methods"]["full"]
    suite, others = full["suite"], full["others"]
    assert set(others) == {"recipe", "competent-fp32"}  # the tests' CPU has no native bf16 (conftest)
    for name, other in others.items():
        assert full["ratios"][name]["samples_per_s_ratio"] == pytest.approx(
            suite["train_samples_per_s"] / other["train_samples_per_s"])
        assert full["ratios"][name]["test_accuracy_difference_points"] == pytest.approx(
            100 * (suite["test_accuracy"] - other["test_accuracy"]))
    assert others["recipe"]["text_share_of_tokens"] < suite["text_share_of_tokens"] <= 1
    # Two measurements of the suite and the competent user: the median of two is their mean.
    for row in (suite, others["competent-fp32"]):
        assert len(row["samples_per_s_each"]) == 2
        assert row["train_samples_per_s"] == pytest.approx(sum(row["samples_per_s_each"]) / 2)
    competent = json.load(open(os.path.join(out, "cmp", "competent", "full-competent-fp32.json")))
    assert (competent["train_samples"], competent["global_steps"]) == (64, 4)  # the suite's examples and steps
    assert competent["pipeline"]["precision"] == "fp32" and competent["pipeline"]["optimizer"] == "adamw_torch_fused"
    table = open(os.path.join(out, "cmp", "speed.md")).read()
    assert "suite ÷ recipe" in table and "suite ÷ competent-fp32" in table
    assert f"| full | suite | {suite['train_samples_per_s']:.1f} (" in table and ", n=2) |" in table
    # Re-running finds the completed runs instead of training again.
    assert bench_speed.main(["--methods", "full", "--model", tiny_bert, "--dataset", "tweets", "--output_dir", out,
                             "--name", "cmp", "--repeats", "2", "--run_args", "--max_train_samples 64 "
                             "--max_eval_samples 32 --num_train_epochs 1 --per_device_train_batch_size 16 "
                             "--save_model false"]) == 0
    assert capsys.readouterr().out.count("already completed, skipped") == 5
    assert len(glob.glob(os.path.join(out, "cmp", "runs", "*"))) == 3  # suite, its repeat, recipe

    status = bench_speed.main(["--scaling", "--methods", "lora", "--model", tiny_bert, "--dataset", "tweets",
                               "--output_dir", out, "--name", "grow", "--seq_lengths", "16", "64",
                               "--batch_sizes", "4", "--base_batch_size", "8", "--base_seq_length", "16",
                               "--steps", "2"])
    assert status == 0
    entries = json.load(open(os.path.join(out, "grow", "scaling.json")))["entries"]
    assert sorted((e["seq_length"], e["batch_size"], e["gradient_checkpointing"], e["precision"]) for e in entries) \
        == [(16, 4, False, "fp32"), (16, 8, False, "bf16"), (16, 8, False, "fp32"), (16, 8, True, "fp32"),
            (64, 8, False, "fp32"), (64, 8, True, "fp32")]  # the base point also in the precision auto did not pick
    for entry in entries:
        run = results_of(os.path.join(out, "grow"), entry["run_id"])["train_info"]
        assert run["train_padded_tokens"] == 2 * entry["batch_size"] * entry["seq_length"]  # padded to the length
        assert entry["steady_samples_per_s"] > 0 and entry["peak_memory_mib"] > 0
    assert os.path.getsize(os.path.join(out, "grow", "scaling.png")) > 10_000


@pytest.mark.slow
def test_a_failed_cell_is_reported_and_the_sweep_goes_on(tiny_bert, tmp_path, capsys):
    """The tiny BERT has 128 positions: texts padded to 256 run past them and that run fails; it is recorded as
    not measured with its error, the other cells still run, and the sweep exits 1. Prefix tuning, whose prefix
    shifts positions by its 20 virtual tokens, is run at the 108 tokens that fit and reported at that length."""
    out = str(tmp_path / "speed")
    status = bench_speed.main(["--scaling", "--methods", "lora", "prefix", "--model", tiny_bert, "--dataset",
                               "tweets", "--output_dir", out, "--name", "p", "--seq_lengths", "16", "256",
                               "--batch_sizes", "8", "--base_batch_size", "8", "--base_seq_length", "16",
                               "--steps", "2", "--no_gradient_checkpointing"])
    assert status == 1
    report = json.load(open(os.path.join(out, "p", "scaling.json")))
    assert sorted((e["method"], e["seq_length"]) for e in report["entries"]) == [
        ("lora", 16), ("lora", 16), ("prefix", 16), ("prefix", 16), ("prefix", 108)]  # base point in fp32 and bf16
    [failed] = report["not_measured"]
    assert (failed["method"], failed["seq_length"]) == ("lora", 256) and "exit status 1" in failed["reason"]
    assert "not measured: exit status 1" in open(os.path.join(out, "p", "scaling.md")).read()


def test_on_a_cpu_with_native_bf16_the_competent_user_is_measured_in_bf16_and_fp32(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTB_CPU_NATIVE_BF16", "1")
    assert bench_speed.main(["--methods", "lora", "--output_dir", str(tmp_path), "--dry_run"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert [c.split()[0] for c in commands] == ["train_lora.py", "-m", "-m", "train_lora.py"]
    assert commands[1].endswith("--precision auto --tf32 true --fused_adamw true --dataloader_num_workers -1 "
                                "--precision bf16")
    assert commands[2].endswith("--precision fp32") and "--precision fp32" in commands[3]


@pytest.mark.parametrize("arguments, message", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--steps", "1", "--scaling"], "--steps must be at least 2"),
    (["--run_args", "--per_device_train_batch_size 0"], "--per_device_train_batch_size must be at least 1"),
])
def test_bench_speed_refuses_bad_input_before_running(arguments, message, tmp_path, capsys):
    assert bench_speed.main(arguments + ["--output_dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "*" / "runs" / "*"))


# -- More than one process ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert_no_dropout(tmp_path_factory):
    """Dropout draws differ between processes; without it one and two processes do the same arithmetic."""
    from transformers import BertConfig, BertModel

    from conftest import _save_tiny

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=4,
                        intermediate_size=INTERMEDIATE, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return _save_tiny(tmp_path_factory.mktemp("tiny_bert_no_dropout"), BertModel(config))


def _one_and_two_processes(model: str, tmp_path, examples: int) -> tuple[dict, dict]:
    """The same run as 2 processes x batch 8 under torchrun (gloo) and as 1 process x batch 16."""
    common = ["--model_name_or_path", model, "--max_train_samples", str(examples), "--max_eval_samples", "64",
              "--num_train_epochs", "1", "--logging_steps", "1", "--learning_rate", "1e-3", "--save_model", "false"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run(torchrun + [os.path.join(ROOT, "train_full.py")] + common
                         + ["--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "two")],
                         env=environment, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert train("full", common + ["--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "one")]) == 0
    assert len(glob.glob(str(tmp_path / "two" / "runs" / "*"))) == 1  # one folder, written by the main process
    return results_of(tmp_path / "one"), results_of(tmp_path / "two")


@pytest.mark.slow
def test_two_processes_under_torchrun_equal_one_process(tiny_bert_no_dropout, tmp_path):
    """DDP over gloo on the CPU: 2 processes x batch 8 against 1 process x batch 16 (the same global batch, the
    same examples in each step). Gradients are averaged over processes instead of examples, which is the same
    sum in another order: losses agree to 1e-5, predictions exactly."""
    one, two = _one_and_two_processes(tiny_bert_no_dropout, tmp_path, 160)
    a, b = one["train_info"], two["train_info"]
    assert b["pipeline"]["world_size"] == 2 and a["pipeline"]["world_size"] == 1
    assert a["global_steps"] == b["global_steps"] == 10
    assert a["train_samples"] == b["train_samples"] == 160  # summed over processes
    assert a["train_tokens"] == b["train_tokens"]
    assert len(b["memory"]["per_process"]) == 2
    assert b["memory"]["peak_rss_mib"] == max(p["peak_rss_mib"] for p in b["memory"]["per_process"])
    for x, y in zip(a["history"], b["history"]):
        assert x["step"] == y["step"]
        for key in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), key
    assert [e["loss"] for e in a["train_loss_log"]] == pytest.approx([e["loss"] for e in b["train_loss_log"]],
                                                                      rel=1e-5)
    assert b["test"]["num_examples"] == 64  # the whole test split, not one process's shard
    assert a["test"]["accuracy"] == b["test"]["accuracy"]
    assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], rel=1e-5)
    predictions = [json.load(open(os.path.join(r["run_info"]["run_dir"], "test_predictions.json")))
                   for r in (one, two)]
    assert predictions[0]["predictions"] == predictions[1]["predictions"]
    assert predictions[0]["labels"] == predictions[1]["labels"]
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_a_partial_last_global_batch_under_torchrun_is_filled_with_repeated_examples(tiny_bert_no_dropout, tmp_path):
    """150 examples do not divide by the global batch of 16: as the README says, every step but the last equals
    one process's, and in the last step accelerate (even_batches) fills both processes' batches to 8 with
    examples from the start of the epoch: 6 leftover examples and 10 repeated ones, 160 trained in all."""
    one, two = _one_and_two_processes(tiny_bert_no_dropout, tmp_path, 150)
    a, b = one["train_info"], two["train_info"]
    assert a["global_steps"] == b["global_steps"] == 10
    assert (a["train_samples"], b["train_samples"]) == (150, 160)
    losses = [[e["loss"] for e in info["train_loss_log"]] for info in (a, b)]
    assert [e["step"] for e in a["train_loss_log"]] == [e["step"] for e in b["train_loss_log"]] == list(range(1, 11))
    assert losses[0][:9] == pytest.approx(losses[1][:9], rel=1e-5)
    assert losses[0][9] != pytest.approx(losses[1][9], rel=1e-3)
