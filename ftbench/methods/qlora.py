"""QLoRA (Dettmers et al., 2023): the frozen base model is loaded with 4-bit NormalFloat (NF4) weights by
bitsandbytes, LoRA adapters train on top (on every linear layer by default, as in the paper), plus the
classification head. Runs on a CUDA GPU and, with bitsandbytes' CPU backend, on the CPU (slowly: every matmul
de-quantises its weights first). Inference re-loads the base model in 4 bits through the same loader."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

from ftbench.errors import ConfigError
from ftbench.methods.lora import LORA_SEARCH_SPACE, TARGET_VARIANTS, LoraArguments, build_lora
from ftbench.registry import Method, register


@dataclass
class QLoraArguments(LoraArguments):
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(
        default="nf4", metadata={"help": "4-bit data type of the frozen base weights (NF4 in the QLoRA paper)."}
    )
    bnb_4bit_compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={"help": "Data type the 4-bit weights are de-quantised to for each matmul. auto: bfloat16 on GPUs "
                          "that have it (as in the QLoRA paper), else float16; float32 on the CPU, where it is "
                          "the faster one (measured: 46 against 35 samples/s with MiniLM)."},
    )
    bnb_4bit_use_double_quant: bool = field(
        default=True, metadata={"help": "Quantise the quantisation constants too (QLoRA's double quantisation)."}
    )


def on_cuda(run_config) -> bool:
    from ftbench.model_loading import choose_device

    return choose_device(run_config.training.device).type == "cuda"


def check_can_quantize(run_config) -> None:
    """One clear line, before any data or weights are loaded, where the 4-bit path cannot run."""
    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("QLoRA needs bitsandbytes for its 4-bit weights; pip install bitsandbytes")
    options = run_config.method_options
    cuda = on_cuda(run_config)
    if cuda and options.bnb_4bit_compute_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bf16; use --bnb_4bit_compute_dtype float16")
    if not cuda and options.bnb_4bit_compute_dtype == "float16":
        raise ConfigError("--bnb_4bit_compute_dtype float16 is for GPUs; on the CPU use float32 or bfloat16")
    if options.export_merged:
        raise ConfigError("--export_merged is not offered for QLoRA: merging into 4-bit weights rounds the update "
                          "away; train with train_lora.py to export merged weights")


def resolve_compute_dtype(run_config, model_config) -> list[str]:
    """--bnb_4bit_compute_dtype auto becomes the type for the device, so that the run records the one it used."""
    import torch

    options = run_config.method_options
    if options.bnb_4bit_compute_dtype != "auto":
        return []
    options.bnb_4bit_compute_dtype = ("float32" if not on_cuda(run_config)
                                      else "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    return []  # the documented meaning of auto: nothing to tell


def quantization_config(options: dict):
    """The bitsandbytes settings of the frozen base model, from the run's QLoRA options."""
    import torch
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


def load_4bit(model_path, *, method_options: dict, device, **from_pretrained_kwargs):
    """from_pretrained with 4-bit base weights, prepared for k-bit training (layer norms in fp32, input
    gradients on)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForSequenceClassification

    device = torch.device(device)
    device_map = {"": device.index or 0} if device.type == "cuda" else "cpu"
    loaded = AutoModelForSequenceClassification.from_pretrained(
        model_path, quantization_config=quantization_config(method_options), device_map=device_map,
        **from_pretrained_kwargs)
    with_info = from_pretrained_kwargs.get("output_loading_info", False)
    model, info = loaded if with_info else (loaded, None)
    if device.type == "cpu":
        use_portable_cpu_kernel(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return (model, info) if with_info else model


def qlora_loader(model_type: str):
    return load_4bit


QLORA = register(Method(
    name="qlora", options=QLoraArguments, learning_rate=1e-3, build=build_lora, defaults={"lora_targets": "all_linear"},
    precheck=check_can_quantize, resolve=resolve_compute_dtype, base_loader=qlora_loader,
    variant_options=(*TARGET_VARIANTS, "use_dora", "bnb_4bit_quant_type"), search_space=LORA_SEARCH_SPACE,
    merge_refusal="the base weights are 4-bit: merging would round the LoRA update away (train_qlora.py refuses "
                  "--export_merged for the same reason)",
    description="QLoRA: LoRA on a 4-bit NF4-quantised frozen base model (bitsandbytes), plus the head"))
