"""Every method beyond full/LoRA/prefix, run for real on the tiny BERT: exact trainable-parameter counts
against hand counts, what trains and what stays bit-identical, what is saved, and reloading in inference.py."""

import glob
import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import inference
from config import ConfigError, parse_args
from conftest import QUICK, train
from ftbench import finish, runner
from ftbench.registry import get_method, method_label

H, LAYERS, VOCAB, POSITIONS, INTERMEDIATE, LABELS = 32, 2, 30522, 128, 64, 3  # tiny BERT, tweets (3 labels)
HEAD = H * LABELS + LABELS
BACKBONE = (VOCAB * H + POSITIONS * H + 2 * H + 2 * H
            + LAYERS * (4 * (H * H + H) + 2 * H + (H * INTERMEDIATE + INTERMEDIATE) + (INTERMEDIATE * H + H) + 2 * H)
            + H * H + H)

# (method, extra options, hand count of the method's own trainable parameters, head excluded)
CASES = {
    "feature_extraction": ("feature_extraction", [], 0),
    # every bias: embeddings LayerNorm; per layer q, k, v, o, attention LayerNorm, intermediate, output, output
    # LayerNorm; the pooler
    "bitfit": ("bitfit", [], H + LAYERS * (7 * H + INTERMEDIATE) + H),
    # r=8 on query and value (A: r x in, B: out x r) plus DoRA's magnitude vector (out) per adapted layer
    "dora": ("dora", [], LAYERS * 2 * (8 * H + H * 8 + H)),
    # all six linear layers of each block at r=8: four H->H, H->I and I->H
    "lora_all_linear": ("lora", ["--lora_targets", "all_linear", "--export_merged"],
                        LAYERS * (4 * 16 * H + (8 * H + 8 * INTERMEDIATE) + (8 * INTERMEDIATE + 8 * H))),
    # AdaLoRA at init_r=12 on query and value: A (r x in), B (out x r) and the singular values E (r)
    "adalora": ("adalora", ["--adalora_delta_t", "2", "--adalora_target_r", "4"], LAYERS * 2 * (12 * H + H * 12 + 12)),
    # a scaling vector on the key and value outputs (H each) and on the feed-forward activation (I)
    "ia3": ("ia3", [], LAYERS * (2 * H + INTERMEDIATE)),
    "prompt_tuning": ("prompt_tuning", [], 20 * H),
    "prompt_tuning_text": ("prompt_tuning", ["--prompt_init", "text", "--num_virtual_tokens", "6"], 6 * H),
    # 20 input embeddings, then the MLP encoder: three H x H linear layers
    "ptuning": ("ptuning", [], 20 * H + 3 * (H * H + H)),
    # Houlsby: two adapters per layer (H -> 2 -> H at reduction 16) and both LayerNorms of each layer
    "bottleneck_adapter": ("bottleneck_adapter", [], LAYERS * (2 * (H * 2 + 2 + 2 * H + H) + 2 * 2 * H)),
    "bottleneck_pfeiffer": ("bottleneck_adapter", ["--adapter_style", "pfeiffer"], LAYERS * (H * 2 + 2 + 2 * H + H)),
    "continued_pretraining": ("continued_pretraining", ["--mlm_max_steps", "6"], BACKBONE),
    # QLoRA on the CPU: the same adapters as all-linear LoRA, over 4-bit base weights
    "qlora": ("qlora", [], LAYERS * (4 * 16 * H + (8 * H + 8 * INTERMEDIATE) + (8 * INTERMEDIATE + 8 * H))),
}
# Parameters that exist but do not train (AdaLoRA keeps its rank as a frozen one-element parameter per layer).
EXTRA_FROZEN = {"adalora": LAYERS * 2}
# Trained parameters the pretrained model already had (Houlsby adapters also train both LayerNorms per layer).
ALREADY_THERE = {"bottleneck_adapter": LAYERS * 2 * 2 * H}


def results_of(run_dir):
    return json.load(open(os.path.join(run_dir, "results.json")))


@pytest.fixture(scope="session")
def method_runs(tiny_bert, tmp_path_factory):
    """One completed run per case, with what the model looked like when it was saved: {case: (run dir, probe)}."""
    output = tmp_path_factory.mktemp("method_results")
    runs = {}
    original_save = finish.save_model
    for case, (method, extra, _) in CASES.items():
        probe = {}

        def save_and_probe(trainer, run_dir, run_config, method_object, probe=probe):
            model = trainer.model
            probe["state"] = {n: p.detach().clone() for n, p in model.named_parameters()}
            probe["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
            probe["optimizer_numel"] = sum(p.numel() for group in trainer.optimizer.param_groups
                                           for p in group["params"])
            probe["optimizer_state_numel"] = sum(state["exp_avg"].numel()
                                                 for state in trainer.optimizer.state.values() if "exp_avg" in state)
            return original_save(trainer, run_dir, run_config, method_object)

        finish.save_model = save_and_probe
        try:
            out = output / case
            status = train(method, ["--model_name_or_path", tiny_bert, "--output_dir", str(out)] + QUICK + extra)
        finally:
            finish.save_model = original_save
        assert status == 0, f"{case} run failed"
        runs[case] = (glob.glob(str(out / "runs" / "*"))[0], probe)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_trainable_parameters_match_hand_counts(method_runs, case):
    method, _, own = CASES[case]
    info = results_of(method_runs[case][0])["train_info"]
    # BitFit, feature extraction and full fine-tuning select parameters the model has; the others add theirs.
    selects = method in ("bitfit", "feature_extraction", "continued_pretraining")
    assert info["num_params_trainable"] == own + HEAD
    added = 0 if selects else own - ALREADY_THERE.get(case, 0)
    assert info["num_params_total"] == BACKBONE + HEAD + added + EXTRA_FROZEN.get(case, 0)
    # The optimizer holds exactly the trainable parameters, and state for no others.
    probe = method_runs[case][1]
    assert probe["optimizer_numel"] == info["num_params_trainable"]
    assert probe["optimizer_state_numel"] <= info["num_params_trainable"]


def pretrained_name(name: str) -> str:
    """The base model's (BertModel's) name for a parameter of a trained model. peft keeps the model under
    base_model.model. (LoRA, DoRA, IA3) or under base_model. (prompt learning: prompt and P-tuning), and wraps
    adapted layers (…query.base_layer.weight)."""
    for prefix in ("base_model.model.", "base_model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.removeprefix("bert.").replace(".base_layer.", ".")


def _changed(probe, tiny_bert):
    """Names (as in the base model) of the trained model's parameters that differ from the pretrained ones."""
    base = {n: p for n, p in AutoModel.from_pretrained(tiny_bert).named_parameters()}
    changed, same = set(), set()
    for name, value in probe["state"].items():
        key = pretrained_name(name)
        if key in base:
            (same if torch.equal(value, base[key]) else changed).add(key)
    return changed, same, base


@pytest.mark.slow
def test_bitfit_changes_exactly_the_biases_and_the_head(method_runs, tiny_bert):
    probe = method_runs["bitfit"][1]
    changed, same, base = _changed(probe, tiny_bert)
    biases = {n for n in base if n.endswith(".bias")}
    assert changed == biases, (changed ^ biases)
    assert same == set(base) - biases
    assert probe["trainable"] == {f"bert.{n}" for n in biases} | {"classifier.weight", "classifier.bias"}


@pytest.mark.slow
def test_feature_extraction_trains_only_the_head_with_no_encoder_gradients(method_runs, tiny_bert):
    probe = method_runs["feature_extraction"][1]
    changed, same, base = _changed(probe, tiny_bert)
    assert not changed and same == set(base)
    assert probe["trainable"] == {"classifier.weight", "classifier.bias"}
    assert probe["optimizer_state_numel"] == HEAD  # Adam moments for the head alone
    info = results_of(method_runs["feature_extraction"][0])["train_info"]
    assert info["checkpoint_files"].keys() == {"config.json", "method.json", "trained_parameters.safetensors"}
    assert set(load_file(os.path.join(method_runs["feature_extraction"][0], "model",
                                      "trained_parameters.safetensors"))) == {"classifier.weight", "classifier.bias"}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bottleneck_adapter", "bottleneck_pfeiffer", "ia3", "prompt_tuning",
                                  "prompt_tuning_text", "ptuning", "dora", "lora_all_linear", "adalora", "qlora"])
def test_adapter_methods_leave_the_pretrained_weights_untouched(method_runs, tiny_bert, case):
    probe = method_runs[case][1]
    base = {n: p for n, p in AutoModel.from_pretrained(tiny_bert).named_parameters()}
    layer_norms = {n for n in base if "LayerNorm" in n and "encoder" in n}
    # QLoRA stores its linear weights packed in 4 bits: those cannot equal the float originals, and are
    # checked for the names alone; everything else it keeps in float must be bit-identical.
    packed = {n for n, p in probe["state"].items() if p.dtype == torch.uint8}
    compared = []
    for name, value in probe["state"].items():
        key = pretrained_name(name)
        if key not in base:
            continue  # the method's own parameters and the head
        compared.append(key)
        if name in packed or (case == "bottleneck_adapter" and key in layer_norms):
            continue
        assert torch.equal(value, base[key]), f"{case} changed the pretrained {key}"
    # A naming mismatch must fail here rather than compare nothing: every pretrained weight was found, once.
    assert sorted(compared) == sorted(base), (case, sorted(set(base) - set(compared))[:5])
    if case == "bottleneck_adapter":  # Houlsby trains the layer norms too
        assert all(not torch.equal(probe["state"]["bert." + n], base[n]) for n in layer_norms)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_saved_run_reloads_and_reproduces_its_test_results(method_runs, case, capsys):
    run_dir = method_runs[case][0]
    assert inference.main(["--run", run_dir, "--verify"]) == 0
    assert "verify passed" in capsys.readouterr().out
    info = results_of(run_dir)["train_info"]
    files = info["checkpoint_files"]
    assert info["checkpoint_size_mib"] == pytest.approx(sum(files.values()) / 2**20, abs=1e-3)
    if case != "continued_pretraining":
        assert info["checkpoint_size_mib"] < 0.1  # what trained, not the backbone (3.8 MiB)


@pytest.mark.slow
def test_a_random_head_fails_verification(method_runs, tmp_path, capsys):
    """Verification must catch a reload that loses the trained tensors: replace the BitFit head."""
    import shutil

    from safetensors.torch import save_file

    run_dir = str(tmp_path / "run")
    shutil.copytree(method_runs["bitfit"][0], run_dir)
    path = os.path.join(run_dir, "model", "trained_parameters.safetensors")
    state = load_file(path)
    state["classifier.weight"] = torch.randn_like(state["classifier.weight"]) * 5
    save_file(state, path)
    assert inference.main(["--run", run_dir, "--verify"]) == 1
    assert "verify FAILED" in capsys.readouterr().out


@pytest.mark.slow
def test_merged_export_predicts_as_the_adapter_does(method_runs):
    run_dir = method_runs["lora_all_linear"][0]
    info = results_of(run_dir)["train_info"]
    merged_dir = os.path.join(run_dir, "merged_model")
    assert os.path.isfile(os.path.join(merged_dir, "model.safetensors"))
    assert info["merged_checkpoint_size_mib"] == pytest.approx(
        sum(os.path.getsize(os.path.join(merged_dir, f)) for f in ("model.safetensors", "config.json")) / 2**20,
        abs=1e-3)
    assert info["merged_checkpoint_size_mib"] > 30 * info["checkpoint_size_mib"]  # the whole model
    texts = ["what a lovely day", "this is the worst service ever", "the meeting is at noon"]
    adapter_model, tokenizer, _ = inference.load_run(run_dir, torch.device("cpu"))
    merged_model, _, _ = inference.load_run(run_dir, torch.device("cpu"), merged=True)
    assert not hasattr(merged_model, "peft_config")
    torch.testing.assert_close(inference.predict(merged_model, tokenizer, texts, 128),
                               inference.predict(adapter_model, tokenizer, texts, 128), atol=1e-5, rtol=0)
    assert inference.main(["--run", run_dir, "--merged", "--verify"]) == 0
    assert inference.main(["--run", method_runs["dora"][0], "--merged"]) == 2  # trained without --export_merged


@pytest.mark.slow
def test_adalora_reallocates_its_rank_budget(method_runs):
    run_dir = method_runs["adalora"][0]
    results = results_of(run_dir)
    config = json.load(open(os.path.join(run_dir, "model", "adapter_config.json")))
    ranks = {name: sum(mask) for name, mask in config["rank_pattern"].items()}
    assert len(ranks) == LAYERS * 2
    assert sum(ranks.values()) == 4 * len(ranks)  # the target budget: target_r on average
    saved = load_file(os.path.join(run_dir, "model", "adapter_model.safetensors"))
    lora_a = [t for n, t in saved.items() if "lora_A" in n]
    assert sum(t.shape[0] for t in lora_a) == sum(ranks.values())  # saved cut to the final ranks
    info = results["train_info"]
    assert info["selection"]["rule"].startswith("final model") and info["selection"]["best_step"] == 20
    assert results["run_info"]["peft_config"]["total_step"] == 20 == results["run_info"]["total_steps"]


def test_prompt_tuning_text_init_starts_from_the_text(tiny_bert):
    import peft
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftbench.methods.prompt_tuning import build_prompt_tuning

    run_config = parse_args("prompt_tuning", ["--model_name_or_path", tiny_bert, "--prompt_init", "text",
                                              "--prompt_init_text", "good or bad", "--num_virtual_tokens", "7"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    peft_model = peft.get_peft_model(model, build_prompt_tuning(run_config, model.config, ["classifier"]))
    ids = AutoTokenizer.from_pretrained(tiny_bert)("good or bad")["input_ids"]  # [CLS] good or bad [SEP]
    assert len(ids) == 5
    expected_ids = (ids * 2)[:7]  # the text's tokens, repeated to the prompt's length
    prompt = peft_model.prompt_encoder["default"].embedding.weight
    torch.testing.assert_close(prompt, model.bert.embeddings.word_embeddings.weight[expected_ids])


@pytest.mark.slow
def test_continued_pretraining_records_both_phases(method_runs):
    results = results_of(method_runs["continued_pretraining"][0])
    run, info = results["run_info"], results["train_info"]
    assert run["method_label"] == "mlm+full"
    phase1 = info["pretraining"]
    assert phase1["global_steps"] == 6 and phase1["train_time_s"] > 0 and phase1["text_source"] == "training split"
    assert phase1["train_samples"] == 6 * 16
    assert info["total_train_time_s"] == pytest.approx(phase1["train_time_s"] + info["train_time_s"], abs=1e-5)
    assert phase1["memory"]["peak_rss_mib"] > 0 and info["memory"]["peak_rss_mib"] > 0
    # the full model is saved whole, so the intermediate backbone is not kept
    assert phase1["kept"] is False and not os.path.exists(phase1["saved_to"])


@pytest.mark.slow
def test_continued_pretraining_before_lora_keeps_its_backbone(tiny_bert, tmp_path, capsys):
    status = train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path), "--mlm_max_steps", "4"]
                   + QUICK)
    assert status == 0
    run_dir = glob.glob(str(tmp_path / "runs" / "*"))[0]
    results = results_of(run_dir)
    assert results["run_info"]["method_label"] == "mlm+lora"
    assert results["run_info"]["base_model_path"] == os.path.join(os.path.abspath(run_dir), "pretrained_backbone")
    assert results["train_info"]["pretraining"]["kept"] is True
    # the adapter is applied to the continued-pre-trained backbone, not to the original model
    assert inference.main(["--run", run_dir, "--verify"]) == 0
    assert "verify passed" in capsys.readouterr().out


@pytest.mark.parametrize("method, extra, label", [
    ("lora", [], "lora"),
    ("lora", ["--lora_targets", "all_linear"], "lora[all_linear]"),
    ("lora", ["--use_dora"], "lora[dora]"),
    ("dora", [], "dora"),
    ("prompt_tuning", ["--prompt_init", "text"], "prompt_tuning[text]"),
    ("bottleneck_adapter", ["--adapter_style", "pfeiffer"], "bottleneck_adapter[pfeiffer]"),
    ("continued_pretraining", [], "mlm+full"),
    ("prefix", ["--mlm_epochs", "1"], "mlm+prefix"),
    ("qlora", [], "qlora"),
])
def test_method_labels_name_the_variant(method, extra, label):
    run_config = parse_args(method, extra)
    assert method_label(get_method(method), run_config.method_options, run_config.pretraining.enabled) == label


@pytest.mark.parametrize("method", ["ia3", "bottleneck_adapter", "bitfit", "prompt_tuning", "lora"])
def test_methods_run_on_distilbert(tiny_distilbert, tmp_path, method):
    extra = ["--lora_targets", "all_linear"] if method == "lora" else []
    status = train(method, ["--model_name_or_path", tiny_distilbert, "--output_dir", str(tmp_path),
                            "--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1"]
                   + extra)
    assert status == 0
    run_dir = glob.glob(str(tmp_path / "runs" / "*"))[0]
    results = results_of(run_dir)
    assert results["run_info"]["head_modules"] == ["classifier", "pre_classifier"]
    head = (H * H + H) + (H * LABELS + LABELS)
    own = {"ia3": LAYERS * (2 * H + INTERMEDIATE), "bitfit": None, "prompt_tuning": 20 * H,
           "lora": LAYERS * (4 * 16 * H + (8 * H + 8 * INTERMEDIATE) + (8 * INTERMEDIATE + 8 * H)),
           "bottleneck_adapter": LAYERS * (2 * (H * 2 + 2 + 2 * H + H) + 2 * 2 * H)}[method]
    if own is not None:
        assert results["train_info"]["num_params_trainable"] == own + head
    assert inference.main(["--run", run_dir, "--verify"]) == 0


@pytest.mark.slow
def test_qlora_trains_adapters_over_4bit_nf4_weights(method_runs):
    import bitsandbytes as bnb

    run_dir = method_runs["qlora"][0]
    model, _, results = inference.load_run(run_dir, torch.device("cpu"))
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    # every linear layer of each block, and the pooler; the head stays in full precision
    assert len(quantized) == LAYERS * 6 + 1 and not any("classifier" in name for name in quantized)
    for layer in quantized.values():
        state = layer.weight.quant_state
        assert state.quant_type == "nf4" and state.nested  # NF4 with double quantisation
        assert layer.weight.numel() * 2 == state.shape.numel()  # two 4-bit weights per byte
        # float32 compute on the CPU ("auto"), without bitsandbytes' AVX512-BF16 repacking
        assert layer.compute_dtype == torch.float32 and not layer.support_avx512bf16_for_cpu
    assert results["run_info"]["peft_config"]["peft_type"] == "LORA"
    options = results["run_info"]["config"]["method_options"]
    assert options["bnb_4bit_quant_type"] == "nf4" and options["bnb_4bit_compute_dtype"] == "float32"
    # gradients flowed through the 4-bit layers: every LoRA B (zero at the start) moved, losses stayed finite
    saved = load_file(os.path.join(run_dir, "model", "adapter_model.safetensors"))
    lora_b = [t for n, t in saved.items() if "lora_B" in n]
    assert len(lora_b) == LAYERS * 6 and all(t.abs().sum() > 0 for t in lora_b)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in results["train_info"]["train_loss_log"])


def test_training_and_inference_load_the_base_model_through_the_registry():
    """The one rule for which loader a method's base model needs, whatever a results file says."""
    from ftbench.methods.prefix import load_distilbert
    from ftbench.methods.qlora import load_4bit
    from ftbench.model_loading import base_loader, from_pretrained

    assert base_loader("qlora", "bert") is load_4bit
    assert base_loader("prefix", "distilbert") is load_distilbert
    assert base_loader("prefix", "bert") is from_pretrained
    assert all(base_loader(method, "bert") is from_pretrained for method in ("full", "lora", "vera", "ln_tuning"))


@pytest.mark.parametrize("extra, message", [
    (["--device", "cpu", "--bnb_4bit_compute_dtype", "float16"], "--bnb_4bit_compute_dtype float16 is for GPUs"),
    (["--export_merged"], "--export_merged is not offered for QLoRA"),
    ([], "QLoRA needs bitsandbytes"),
])
def test_qlora_refusals_come_before_anything_loads(tiny_bert, tmp_path, monkeypatch, capsys, extra, message):
    import importlib.util

    import utils

    if message == "QLoRA needs bitsandbytes":
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a))
    monkeypatch.setattr(runner, "load_model_config", lambda *a: pytest.fail("the model config was loaded"))
    monkeypatch.setattr(utils, "load_splits", lambda *a: pytest.fail("data was loaded before the refusal"))
    status = train("qlora", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path / "out")] + extra)
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + message)
    assert not (tmp_path / "out").exists()


def test_qlora_configuration(tiny_bert, monkeypatch):
    """What a run uses: NF4 with double quantisation, the compute type chosen for the device, the head kept
    out of the quantisation, and LoRA on every linear layer of each block."""
    import dataclasses
    import re

    from transformers import AutoConfig

    from ftbench.methods import qlora

    def resolved(argv, cuda, bf16=True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        run_config = parse_args("qlora", ["--model_name_or_path", tiny_bert] + argv)
        qlora.check_can_quantize(run_config)
        assert qlora.resolve_compute_dtype(run_config, None) == []
        return run_config

    cpu = resolved([], cuda=False)
    quant = qlora.quantization_config(dataclasses.asdict(cpu.method_options))
    assert quant.load_in_4bit and not quant.load_in_8bit
    assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.float32
    assert "classifier" in quant.llm_int8_skip_modules
    # on a GPU: bf16 as in the paper, float16 where the GPU lacks bf16
    assert resolved([], cuda=True).method_options.bnb_4bit_compute_dtype == "bfloat16"
    assert resolved([], cuda=True, bf16=False).method_options.bnb_4bit_compute_dtype == "float16"
    with pytest.raises(ConfigError, match="this GPU has no bf16"):
        resolved(["--bnb_4bit_compute_dtype", "bfloat16"], cuda=True, bf16=False)
    fp4 = resolved(["--bnb_4bit_compute_dtype", "bfloat16", "--bnb_4bit_quant_type", "fp4"], cuda=False)
    quant_fp4 = qlora.quantization_config(dataclasses.asdict(fp4.method_options))
    assert quant_fp4.bnb_4bit_compute_dtype == torch.bfloat16 and quant_fp4.bnb_4bit_quant_type == "fp4"

    lora = qlora.QLORA.build(cpu, AutoConfig.from_pretrained(tiny_bert), ["classifier"])
    names = [f"bert.encoder.layer.0.{p}" for p in ("attention.self.query", "attention.self.key",
                                                    "attention.self.value", "attention.output.dense",
                                                    "intermediate.dense", "output.dense")]
    assert all(re.fullmatch(lora.target_modules, name) for name in names)
    assert not re.fullmatch(lora.target_modules, "bert.pooler.dense") and lora.r == 8


@pytest.mark.parametrize("style, adapters_per_layer", [("houlsby", 2), ("pfeiffer", 1)])
def test_bottleneck_adapters_start_as_the_identity_in_the_right_places(tiny_bert, tiny_distilbert, style,
                                                                        adapters_per_layer):
    from transformers import AutoModelForSequenceClassification

    from ftbench.bottleneck_adapter import BottleneckAdapter, BottleneckAdapterTransform

    expected_sites = {
        "houlsby": ["attention.output.dense", "output.dense"], "pfeiffer": ["output.dense"]}[style]
    for path, prefix, sites in ((tiny_bert, "bert.encoder.layer", expected_sites),
                                (tiny_distilbert, "distilbert.transformer.layer",
                                 ["attention.out_lin", "ffn.lin2"][-adapters_per_layer:])):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
        inputs = {"input_ids": torch.randint(1000, 2000, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long)}
        with torch.no_grad():
            before = model(**inputs).logits
        BottleneckAdapterTransform(style=style).apply(model, ["classifier"])
        adapted = sorted(name.removesuffix(".adapter") for name, module in model.named_modules()
                         if isinstance(module, BottleneckAdapter))
        assert adapted == sorted(f"{prefix}.{i}.{site}" for i in range(LAYERS) for site in sites)
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, before)  # the up-projections start at zero


def test_bottleneck_adapters_refuse_unknown_architectures():
    from transformers import GPT2Config

    from config import ConfigError
    from ftbench.bottleneck_adapter import BottleneckAdapterTransform, check_supported

    with pytest.raises(ConfigError, match="no injection sites for model type 'gpt2'.*use train_lora.py"):
        check_supported(GPT2Config())
    with pytest.raises(ConfigError, match="unknown adapter activation 'swish'"):
        BottleneckAdapterTransform(activation="swish")
