"""QLoRA (Dettmers et al., 2023): the frozen base model is loaded with 4-bit NormalFloat (NF4) weights by
bitsandbytes, LoRA adapters train on top (on every linear layer by default, as in the paper), plus the
classification head. Runs on a CUDA GPU and, with bitsandbytes' CPU backend, on the CPU (slowly: every
matmul de-quantises its weights first; see README).

    python train_qlora.py --model_name_or_path bert-base-uncased --dataset sst2 --num_train_epochs 3
    python train_qlora.py --lora_r 16 --bnb_4bit_quant_type fp4
    python train_qlora.py --device cpu --max_train_samples 2000            # the CPU route
    python train_qlora.py --help                           # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapter and head; inference
re-loads the base model in 4 bits the same way).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import importlib.util

import torch

from config import ConfigError
from runner import main_for
from train_lora import build_lora


def check_can_quantize(run_config) -> None:
    """One clear line, before any data or weights are loaded, where the 4-bit path cannot run; resolves
    --bnb_4bit_compute_dtype auto for the device, so that the run records the type it used."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("QLoRA needs bitsandbytes for its 4-bit weights; pip install bitsandbytes")
    options = run_config.method_options
    on_cuda = run_config.training.device != "cpu" and torch.cuda.is_available()
    if options.bnb_4bit_compute_dtype == "auto":
        options.bnb_4bit_compute_dtype = ("float32" if not on_cuda
                                          else "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    if on_cuda and options.bnb_4bit_compute_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bf16; use --bnb_4bit_compute_dtype float16")
    if not on_cuda and options.bnb_4bit_compute_dtype == "float16":
        raise ConfigError("--bnb_4bit_compute_dtype float16 is for GPUs; on the CPU use float32 or bfloat16")
    if options.export_merged:
        raise ConfigError("--export_merged is not offered for QLoRA: merging into 4-bit weights rounds the update "
                          "away; train with train_lora.py to export merged weights")


def quantization_config(options: dict):
    """The bitsandbytes settings of the frozen base model, from the run's QLoRA options."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=options["bnb_4bit_quant_type"],
        bnb_4bit_compute_dtype=getattr(torch, options["bnb_4bit_compute_dtype"]),
        bnb_4bit_use_double_quant=options["bnb_4bit_use_double_quant"],
        # The new head stays in full precision: it is trained, and it is tiny. (Quantised, bitsandbytes' CPU
        # kernel also fails on its 2-row weight.)
        llm_int8_skip_modules=["classifier", "pre_classifier", "score"],
    )


def use_portable_cpu_kernel(model) -> int:
    """On CPUs with AVX512-BF16, bitsandbytes 0.50 re-packs 4-bit weights in place for a fused kernel the first
    time a layer runs in eval mode; that repacking asserts an output size divisible by 32 ("N must be
    divisible by block_n"), and a packed layer then runs an inference-only kernel (no backward) in training
    mode too. Its generic path (de-quantise, then matmul) trains and evaluates alike, so the CPU route uses it.
    Returns how many layers were switched."""
    import bitsandbytes as bnb

    layers = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def load_4bit(model_path, method_options: dict, device=None, output_loading_info=False, **kwargs):
    """from_pretrained with 4-bit base weights, prepared for k-bit training (layer norms in fp32, input
    gradients on); inference.py loads a QLoRA run's base model through this too."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForSequenceClassification

    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    device_map = {"": device.index or 0} if device.type == "cuda" else "cpu"
    loaded = AutoModelForSequenceClassification.from_pretrained(
        model_path, quantization_config=quantization_config(method_options), device_map=device_map,
        output_loading_info=output_loading_info, **kwargs)
    model, info = loaded if output_loading_info else (loaded, None)
    if device.type == "cpu":
        use_portable_cpu_kernel(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return (model, info) if output_loading_info else model


def build_qlora(run_config, model_config, head_modules):
    check_can_quantize(run_config)
    return build_lora(run_config, model_config, head_modules)


# Checked as soon as the options are parsed, before the model's config, the data or any weights load.
build_qlora.precheck = check_can_quantize


def qlora_loader(model_config):
    return load_4bit


if __name__ == "__main__":
    main_for("qlora", build_qlora, qlora_loader)
