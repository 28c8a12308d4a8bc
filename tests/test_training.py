"""The training scripts run for real on tiny models and small slices of real data."""

import datetime as dt
import glob
import json
import os

import pytest
from safetensors import safe_open
from transformers import AutoTokenizer

import utils
from config import DataArguments
from conftest import QUICK, SHARED_DATA, needs_shared_data, train
from ftbench import run_store
from ftbench.trainer import BenchmarkTrainer

H, LAYERS, VOCAB, POSITIONS, INTERMEDIATE, LABELS = 32, 2, 30522, 128, 64, 3  # tiny BERT, tweets (3 labels)


def results_of(run_dir):
    return json.load(open(os.path.join(run_dir, "results.json")))


def tiny_bert_params():
    """Hand count of the tiny BERT with a 3-class head."""
    embeddings = VOCAB * H + POSITIONS * H + 2 * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * INTERMEDIATE + INTERMEDIATE) + (INTERMEDIATE * H + H) + 2 * H
    pooler = H * H + H
    head = H * LABELS + LABELS
    return embeddings + LAYERS * layer + pooler, head


def test_parameter_counts_match_hand_counts(trained_runs):
    backbone, head = tiny_bert_params()
    lora = LAYERS * 2 * (8 * H + H * 8)  # r=8 on query and value: A (r x in) and B (out x r)
    prefix = 20 * LAYERS * 2 * H  # 20 virtual tokens, a key and a value vector per layer
    expected = {
        "full": (backbone + head, backbone + head),
        "lora": (backbone + head + lora, lora + head),
        "prefix": (backbone + head + prefix, prefix + head),
    }
    for method, (total, trainable) in expected.items():
        info = results_of(trained_runs[method])["train_info"]
        assert (info["num_params_total"], info["num_params_trainable"]) == (total, trainable), method
        assert info["trainable_params_pct"] == pytest.approx(100 * trainable / total, abs=1e-5)


def test_results_schema_field_by_field(trained_runs):
    for method in ("full", "lora", "prefix"):
        results = results_of(trained_runs[method])
        assert results["schema_version"] == run_store.SCHEMA_VERSION == 1
        assert set(results) == {"schema_version", "run_info", "train_info", "meta_info"}
        run = results["run_info"]
        assert run["method"] == method and run["status"] == "completed" and run["error"] is None
        assert run["dataset"] == "tweets" and run["seed"] == 42 and run["model_type"] == "bert"
        assert run["split_sizes"] == {"train": 160, "validation": 64, "test": 64}
        assert run["label_names"] == ["negative", "neutral", "positive"]
        assert run["head_modules"] == ["classifier"]
        assert run["config"]["training"]["learning_rate"] == {"full": 5e-5, "lora": 3e-3, "prefix": 1e-2}[method]
        assert set(run["config"]) == {"method", "model", "data", "training", "method_options", "pretraining"}
        assert run["method_label"] == method and run["base_model_path"] == run["model_resolved_path"]
        assert run["total_steps"] == 20 and run["method_transform"] is None
        assert (run["peft_config"] is None) == (method == "full")
        assert run["data"]["cleaning"]["all_duplicate_rows_dropped"] == 955  # case and spacing ignored
        started, finished = (dt.datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at"))
        assert started <= finished
        assert run["command"].startswith(f"train_{method}.py --model_name_or_path")

        info = results["train_info"]
        # Every key is one the schema in code (and so the README's table) knows.
        assert set(run) <= run_store.RESULTS_KEYS["run_info"] and set(info) <= run_store.RESULTS_KEYS["train_info"]
        epochs, per_epoch = 2, 3  # 160 examples at batch 16 = 10 steps/epoch; 2 evaluations per epoch
        assert info["global_steps"] == 20 and info["epochs"] == pytest.approx(epochs)
        assert [h["step"] for h in info["history"]] == [5, 10, 15, 20]
        for entry in info["history"]:
            assert set(entry) == {"step", "epoch", "train_loss", "val_loss", "val_accuracy", "val_f1_macro",
                                  "generalization_gap", "train_time_s", "eval_time_s"}
            assert entry["generalization_gap"] == pytest.approx(entry["val_loss"] - entry["train_loss"])
            assert 0 <= entry["val_accuracy"] <= 1 and 0 <= entry["val_f1_macro"] <= 1
        times = [h["train_time_s"] for h in info["history"]]
        assert times == sorted(times) and times[-1] == pytest.approx(info["train_time_s"], abs=1e-3)
        assert [e["step"] for e in info["train_loss_log"]] == list(range(2, 21, 2))
        assert info["train_samples"] == epochs * 160
        assert info["train_samples_per_s"] == pytest.approx(info["train_samples"] / info["train_time_s"], rel=1e-3)
        assert set(info["test"]) == {"accuracy", "f1_macro", "loss", "num_examples", "eval_time_s",
                                     "majority_baseline"}
        assert info["test"]["num_examples"] == 64
        # Always answering the training split's most frequent class: its share of the test split, and the
        # macro-F1 of that constant answer (F1 2p/(p+1) for its class, 0 for every other present class).
        train_counts, test_counts = run["data"]["label_counts"]["train"], run["data"]["label_counts"]["test"]
        majority = train_counts.index(max(train_counts))
        share = test_counts[majority] / 64
        assert info["test"]["majority_baseline"] == pytest.approx({
            "label": run["label_names"][majority], "accuracy": share,
            "f1_macro": 2 * share / (share + 1) / sum(1 for c in test_counts if c)})
        best = max(info["history"], key=lambda h: h["val_accuracy"])
        # the tested model, evaluated on validation again, reproduces the figures it was chosen on
        revalidated = {"rule": "the first validation batch's logits recomputed", "examples": 64,
                       "max_abs_logit_difference": 0.0}  # all 64 fit one batch of 128; bit-identical on the CPU
        assert info["selection"] == {"metric": "val_accuracy", "best_step": best["step"],
                                     "best_value": best["val_accuracy"], "rule": "best validation checkpoint",
                                     "revalidated": revalidated}
        assert info["final_generalization_gap"] == info["history"][-1]["generalization_gap"]
        memory = info["memory"]
        assert memory["device_type"] == "cpu" and memory["peak_rss_mib"] >= memory["rss_at_train_start_mib"] > 50
        assert memory["peak_rss_scope"] == "since training started"

        meta = results["meta_info"]
        for key in ("torch", "transformers", "peft", "accelerate", "datasets", "python", "device_name",
                    "cpu_count", "device"):
            assert meta[key] not in (None, ""), key
        assert meta["device"] == "cpu"
        import bitsandbytes

        assert meta["bitsandbytes"] == bitsandbytes.__version__
        del per_epoch


def test_real_token_count_and_time_accounting(trained_runs, tiny_bert):
    info = results_of(trained_runs["lora"])["train_info"]
    splits = utils.load_splits(DataArguments(max_train_samples=160, max_eval_samples=64))
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    real_tokens = sum(len(ids) for ids in tokenizer(splits.train[0], truncation=True, max_length=128)["input_ids"])
    assert info["train_tokens"] == 2 * real_tokens  # two epochs, no padding counted
    assert info["train_tokens_per_s"] == pytest.approx(info["train_tokens"] / info["train_time_s"], rel=1e-3)
    run = results_of(trained_runs["lora"])["run_info"]
    wall = (dt.datetime.fromisoformat(run["finished_at"]) - dt.datetime.fromisoformat(run["started_at"]))
    assert 0 < info["train_time_s"] and info["train_time_s"] + info["eval_time_s"] <= wall.total_seconds() + 1
    assert info["eval_time_s"] == pytest.approx(sum(h["eval_time_s"] for h in info["history"]), abs=1e-3)


def test_saved_model_is_what_inference_needs(trained_runs):
    for method in ("full", "lora", "prefix"):
        run_dir = trained_runs[method]
        model_dir = os.path.join(run_dir, "model")
        files = set(os.listdir(model_dir))
        assert "training_args.bin" not in files and not os.path.exists(os.path.join(run_dir, "checkpoints"))
        assert {"tokenizer.json", "tokenizer_config.json"} <= files
        info = results_of(run_dir)["train_info"]
        assert info["checkpoint_size_mib"] == pytest.approx(
            sum(os.path.getsize(os.path.join(model_dir, f)) for f in info["checkpoint_files"]) / 2**20, abs=1e-3)
        if method == "full":
            assert {"model.safetensors", "config.json"} <= files
        else:
            assert {"adapter_model.safetensors", "adapter_config.json"} <= files and "model.safetensors" not in files
            with safe_open(os.path.join(model_dir, "adapter_model.safetensors"), "pt") as weights:
                keys = list(weights.keys())
            assert any("classifier" in k for k in keys), "the trained head must be saved with the adapter"
            assert info["checkpoint_size_mib"] < 0.1  # the adapter and head, not the backbone
    log = open(os.path.join(trained_runs["lora"], "training_log.txt")).read().splitlines()
    assert log[0].startswith("run ") and "trainable parameters 2,147" in log[1]
    assert sum(1 for line in log if line.strip().split(" ")[0] in {"5", "10", "15", "20"}) == 4
    ending = [line for line in log if not line.startswith("note: other processes")]  # only on a busy machine
    assert ending[-1].startswith("results: ") and ending[-2].startswith("wall time ") and "test accuracy" in ending[-3]


@needs_shared_data
def test_loss_falls_and_gap_opens_on_an_easy_slice(tiny_bert, tmp_path):
    """64 SST-2 sentences, 10 epochs at a high rate: the tiny model memorises them, so the training loss must
    fall far below chance level (ln 2 = 0.69) while the validation loss does not: the gap opens."""
    status = train("full", ["--model_name_or_path", tiny_bert, "--dataset", "sst2", "--data_dir", str(SHARED_DATA),
                            "--max_train_samples", "64", "--max_eval_samples", "200", "--num_train_epochs", "10",
                            "--per_device_train_batch_size", "16", "--learning_rate", "1e-2", "--warmup_ratio", "0",
                            "--evals_per_epoch", "1", "--output_dir", str(tmp_path)])
    assert status == 0
    history = results_of(glob.glob(str(tmp_path / "runs" / "*"))[0])["train_info"]["history"]
    assert len(history) == 10
    assert history[0]["train_loss"] > 0.6
    assert history[-1]["train_loss"] < 0.2
    assert history[-1]["generalization_gap"] > 0.5


@needs_shared_data
@pytest.mark.parametrize("method", ["full", "lora", "prefix"])
def test_each_method_on_sst2_from_the_shared_folder(tiny_bert, tmp_path, method):
    status = train(method, ["--model_name_or_path", tiny_bert, "--dataset", "sst2", "--data_dir", str(SHARED_DATA),
                            "--output_dir", str(tmp_path)] + QUICK)
    assert status == 0
    run_dir = glob.glob(str(tmp_path / "runs" / f"*_{method}_sst2_*"))[0]
    results = results_of(run_dir)
    assert results["run_info"]["split_sizes"] == {"train": 160, "validation": 64, "test": 64}
    assert results["run_info"]["data"]["split_sizes_before_subsetting"] == {"train": 60275, "validation": 6698,
                                                                           "test": 872}
    assert results["run_info"]["data"]["source"]["kind"] == "local"
    if method == "lora":
        # the query and value projections of every block, by an anchored regex (never a suffix match)
        assert results["run_info"]["peft_config"]["target_modules"] == \
            r"(.*\.)?(layer|albert_layers)\.\d+\.(attention\.self\.query|attention\.self\.value)"

    import inference

    assert inference.main(["--run", run_dir, "--verify"]) == 0


@pytest.mark.slow
def test_the_script_itself_runs_and_exits_with_its_status(tiny_bert, tmp_path):
    """The real command line, in its own process: a tiny run succeeds, bad input exits 2 with one line."""
    import subprocess
    import sys

    from conftest import ROOT

    command = [sys.executable, "train_lora.py", "--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path),
               "--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test accuracy" in done.stdout + done.stderr and "wall time" in done.stdout + done.stderr
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    info = results_of(run_dir)["train_info"]
    # a script's wall time starts when it began importing: start-up and imports are a phase of their own
    assert info["wall_time_breakdown_s"]["start_up_and_imports"] > 0.5
    assert abs(sum(info["wall_time_breakdown_s"].values()) - info["wall_time_s"]) <= 0.02
    bad = subprocess.run(command + ["--lora_alpha", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --lora_alpha must be positive, got 0"
    assert len(glob.glob(str(tmp_path / "runs" / "*"))) == 1


def test_distilbert_prefix_tuning_end_to_end(tiny_distilbert, tmp_path):
    status = train("prefix", ["--model_name_or_path", tiny_distilbert, "--output_dir", str(tmp_path),
                              "--num_virtual_tokens", "5"] + QUICK)
    assert status == 0
    run_dir = glob.glob(str(tmp_path / "runs" / "*"))[0]
    results = results_of(run_dir)
    run, info = results["run_info"], results["train_info"]
    assert run["model_type"] == "distilbert"
    # DistilBERT's checkpoint has no pre_classifier either: it must train and be saved too
    assert run["head_modules"] == ["classifier", "pre_classifier"]
    assert run["model_loader"] == "ftbench.methods.prefix:load_distilbert"
    head = (H * H + H) + (H * LABELS + LABELS)
    assert info["num_params_trainable"] == 5 * LAYERS * 2 * H + head
    assert run["peft_config"]["token_dim"] == H and run["peft_config"]["num_layers"] == LAYERS

    import inference

    assert inference.main(["--run", run_dir, "--verify"]) == 0


def test_prefix_refused_for_mpnet_before_any_work(tmp_path, monkeypatch, capsys):
    from transformers import MPNetConfig, MPNetModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # saving's progress bar would write to stderr, which is checked below
    model_dir = tmp_path / "tiny_mpnet"
    MPNetModel(MPNetConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=64)).save_pretrained(model_dir)
    monkeypatch.setattr(utils, "load_splits", lambda *a: pytest.fail("data was loaded before the refusal"))
    status = train("prefix", ["--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prefix tuning cannot run on" in err[0] and "mpnet: no past key values" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method, extra, fragment", [
    ("lora", ["--lora_target_modules", "query", "attn_q"],
     "--lora_target_modules attn_q match no linear layer of this bert model; its linear layers are: classifier "
     "dense key query value"),
    ("full", ["--dataset", "local", "--train_file", "nowhere.csv"], "--train_file 'nowhere.csv' does not exist"),
    ("full", ["--learning_rate", "-1"], "--learning_rate must be positive"),
    ("full", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be at least 1"),
    ("full", ["--model_name_or_path", "/no/such/model"], "cannot load model '/no/such/model'"),
    ("lora", ["--dataset", "sst2", "--data_dir", "/no/such/dir"], "--data_dir '/no/such/dir' is not a folder"),
    ("full", ["--precision", "fp16"], "--precision fp16 needs a CUDA device"),
    ("prefix", ["--gradient_checkpointing", "true"], "prefix tuning cannot use --gradient_checkpointing"),
    ("full", ["--device", "cuda"], "no CUDA device is available"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_bert, tmp_path, capsys, method, extra, fragment):
    if "cuda" in " ".join(extra) or "fp16" in extra:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    status = train(method, ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path / "out")] + extra)
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not (tmp_path / "out").exists()


def test_failure_and_interruption_are_recorded_not_claimed(tiny_bert, tmp_path, monkeypatch):
    def crash(self, *args, **kwargs):
        raise RuntimeError("simulated crash")

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    for patch, code, status in ((crash, 1, "failed"), (interrupt, 130, "interrupted")):
        monkeypatch.setattr(BenchmarkTrainer, "train", patch)
        out = tmp_path / status
        assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(out)] + QUICK) == code
        run_dir = glob.glob(str(out / "runs" / "*"))[0]
        results = results_of(run_dir)
        assert results["run_info"]["status"] == status
        assert "test" not in results["train_info"] and not os.path.exists(os.path.join(run_dir, "model"))
        if status == "failed":
            assert results["run_info"]["error"] == "RuntimeError: simulated crash"
            assert "simulated crash" in open(os.path.join(run_dir, "training_log.txt")).read()


def test_a_wrongly_restored_checkpoint_is_caught_before_testing(tiny_bert, tmp_path, monkeypatch):
    """The selected checkpoint restored with one head weight off by 1e-4: the recomputed validation logits
    differ, and the run fails instead of reporting test figures of a model that was never chosen."""
    import torch

    restore = BenchmarkTrainer._load_best_model

    def restore_wrongly(self):
        restore(self)
        with torch.no_grad():
            [weight for name, weight in self.model.named_parameters() if "classifier" in name][0][0, 0] += 1e-4

    monkeypatch.setattr(BenchmarkTrainer, "_load_best_model", restore_wrongly)
    assert train("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + QUICK) == 1
    results = results_of(glob.glob(str(tmp_path / "runs" / "*"))[0])
    assert results["run_info"]["status"] == "failed" and "test" not in results["train_info"]
    assert "does not reproduce its validation logits" in results["run_info"]["error"]


def test_run_folders_are_never_reused(tmp_path):
    folders = {run_store.create_run_dir(str(tmp_path), "lora", "sst2", "minilm", None) for _ in range(3)}
    assert len(folders) == 3 and all(os.path.isdir(f) for f in folders)


@pytest.mark.slow
@needs_shared_data
def test_pretrained_minilm_learns_sst2(tmp_path):
    """The real offline default model: 100 LoRA steps on SST-2 must beat chance clearly on the dev set."""
    status = train("lora", ["--dataset", "sst2", "--data_dir", str(SHARED_DATA), "--max_train_samples", "1600",
                            "--per_device_train_batch_size", "16", "--max_eval_samples", "200",
                            "--num_train_epochs", "1", "--evals_per_epoch", "1", "--output_dir", str(tmp_path)])
    assert status == 0
    info = results_of(glob.glob(str(tmp_path / "runs" / "*"))[0])["train_info"]
    assert info["test"]["accuracy"] > 0.7, info["test"]


def test_a_bug_during_set_up_is_not_reported_as_bad_input(tiny_bert, tmp_path, monkeypatch, capsys):
    """Only the suite's own ConfigError and DataError are the user's mistakes (one line, exit 2); any other
    error during set-up, a ValueError included, is a bug and ends in a traceback."""
    import utils

    def broken(*args, **kwargs):
        raise ValueError("a bug in the tokenising code")

    monkeypatch.setattr(utils, "tokenize_splits", broken)
    with pytest.raises(ValueError, match="a bug in the tokenising code"):
        train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + QUICK)
    assert "error:" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
