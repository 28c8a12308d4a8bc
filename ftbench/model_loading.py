"""Loading the base model the way every method and inference need it: the model's location (aliases, the offline
MiniLM), its config, the method's loader (the registry's base_loader), the new head's module names, the parameter
counts, and the method applied to the loaded model."""

from __future__ import annotations

import dataclasses
import os
import shutil

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from ftbench.errors import ConfigError
from ftbench.model_names import resolve_model_path
from ftbench.precision import check_precision
from ftbench.registry import get_method
from ftbench.transforms import ModelTransform


def load_model_config(name_or_path: str, trust_remote_code: bool = False):
    path = resolve_model_path(name_or_path)
    try:
        return path, AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        where = "folder" if os.path.isdir(path) else "Hub id"
        raise ConfigError(f"cannot load model '{name_or_path}' ({where} {path}): {str(error).splitlines()[0]} "
                          f"(offline, use a local folder or the alias 'minilm')") from None


def head_module_names(missing_keys) -> list[str]:
    """Modules the checkpoint did not provide (the classification head, and for DistilBERT also
    pre_classifier): they start random, so every method must train and save them."""
    return sorted({key.rsplit(".", 1)[0] for key in missing_keys})


def _numel(parameter: torch.nn.Parameter) -> int:
    # A 4-bit weight (QLoRA) is stored packed, two values per byte; count the weights it holds.
    quant_state = getattr(parameter, "quant_state", None)
    return quant_state.shape.numel() if quant_state is not None else parameter.numel()


def count_parameters(model: torch.nn.Module) -> dict:
    # peft keeps a frozen copy of each module it trains as a whole; it takes no part in the forward pass.
    params = [(name, p) for name, p in model.named_parameters() if ".original_module." not in name]
    total = sum(_numel(p) for _, p in params)
    trainable = sum(_numel(p) for _, p in params if p.requires_grad)
    return {"num_params_total": total, "num_params_trainable": trainable,
            "trainable_params_pct": round(100.0 * trainable / total, 6)}


def apply_method(model, method_object, head_modules):
    """The model the method trains: a peft model, the model adapted in place, or the model itself."""
    if method_object is None:
        return model
    if isinstance(method_object, ModelTransform):
        return method_object.apply(model, head_modules)
    import peft

    return peft.get_peft_model(model, method_object)


def describe_method(method_object) -> dict | None:
    if method_object is None:
        return None
    if isinstance(method_object, ModelTransform):
        return method_object.to_dict()
    return _jsonable(method_object.to_dict())


def _jsonable(value):
    """Sets (peft keeps target modules in one) as sorted lists, so the JSON stays JSON all the way down."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(item) for item in value)
    return value


def choose_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


def check_device(run_config) -> torch.device:
    """The run's device, and a refusal where its precision or torch.compile cannot run there."""
    training = run_config.training
    device = choose_device(training.device)
    check_precision(training.precision, device)
    if training.torch_compile and device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        raise ConfigError("--torch_compile on the CPU needs a C++ compiler (g++ not found); install one or drop "
                          "--torch_compile")
    return device


def from_pretrained(model_path, *, method_options: dict, device, **from_pretrained_kwargs):
    """The loader of every method that declares none: the Auto class, placed on the device later by the Trainer."""
    return AutoModelForSequenceClassification.from_pretrained(model_path, **from_pretrained_kwargs)


def base_loader(method: str, model_type: str):
    """How this method loads its base model for this architecture (its registry entry's base_loader), as
    training and inference both call it: loader(path, method_options=..., device=..., **from_pretrained)."""
    declared = get_method(method).base_loader
    return (declared(model_type) if declared else None) or from_pretrained


def load_base_model(run_config, model_path: str, model_type: str, label_names: list[str]):
    """The pretrained encoder with a fresh classification head, and the names of the modules that are new."""
    loader = base_loader(run_config.method, model_type)
    extra = {}
    if run_config.training.attn_implementation != "auto":
        extra["attn_implementation"] = run_config.training.attn_implementation
    model, loading_info = loader(
        model_path,
        method_options=dataclasses.asdict(run_config.method_options),
        device=choose_device(run_config.training.device),
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        trust_remote_code=run_config.model.trust_remote_code,
        output_loading_info=True,
        **extra,
    )
    return model, head_module_names(loading_info["missing_keys"])
