"""Methods that are not a peft config: they choose which parameters train, and may add modules.

A peft method is data (a peft config); these are objects of the same spirit: a name, JSON-able options
that rebuild them, and apply(), which adapts a freshly loaded model in place. What they save is exactly
what trained (model/trained_parameters.safetensors) plus how to rebuild the rest (model/method.json):

    transform = BitFit()
    model = transform.apply(model, head_modules=["classifier"])   # only biases and the head train
    save_trained(model, transform, "model/")                       # writes the trained tensors only
    model = load_trained(fresh_base_model, "model/", head_modules)  # as inference.py does

The runner counts, trains, saves and reloads every ModelTransform the same way.
"""

from __future__ import annotations

import json
import os
import re

import torch

TRAINED_FILE = "trained_parameters.safetensors"
METHOD_FILE = "method.json"


# Where the linear layers of one encoder block sit, per architecture, relative to the block (which is
# "<...>.layer.<N>." in all of these but ALBERT, "<...>.albert_layers.<N>."). Methods choose their targets by
# role from this table, so that e.g. BERT's attention output "attention.output.dense" and its feed-forward
# output "output.dense" are never confused by a suffix match.
_BERT_LAYOUT = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
                "attention_output": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}
ENCODER_LAYOUTS = {
    **{model_type: _BERT_LAYOUT for model_type in ("bert", "roberta", "xlm-roberta", "camembert", "electra")},
    "deberta-v2": {"query": "attention.self.query_proj", "key": "attention.self.key_proj",
                   "value": "attention.self.value_proj", "attention_output": "attention.output.dense",
                   "ffn_in": "intermediate.dense", "ffn_out": "output.dense"},
    "distilbert": {"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                   "attention_output": "attention.out_lin", "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2"},
    "mpnet": {"query": "attention.attn.q", "key": "attention.attn.k", "value": "attention.attn.v",
              "attention_output": "attention.attn.o", "ffn_in": "intermediate.dense", "ffn_out": "output.dense"},
    "albert": {"query": "attention.query", "key": "attention.key", "value": "attention.value",
               "attention_output": "attention.dense", "ffn_in": "ffn", "ffn_out": "ffn_output"},
}
ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


def module_short_names(model_config, module_type: type) -> set[str]:
    """Short names of the model's modules of a type (torch.nn.Linear, torch.nn.LayerNorm), from its architecture
    alone: the model is built on the meta device, no weights are loaded."""
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config)
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, module_type)}


def layer_regex(model_type: str, roles) -> str:
    """A regex that fully matches the module names of the given roles in every encoder block (peft takes a
    string target_modules as such a regex)."""
    if model_type not in ENCODER_LAYOUTS:
        raise KeyError(model_type)
    layout = ENCODER_LAYOUTS[model_type]
    paths = "|".join(re.escape(layout[role]) for role in roles)
    return rf"(.*\.)?(layer|albert_layers)\.\d+\.({paths})"


class ModelTransform:
    """Base of the non-peft methods. Subclasses set `name`, keep their options as attributes listed by
    options(), and implement apply()."""

    name = ""

    def options(self) -> dict:
        """JSON-able keyword arguments that rebuild this transform: type(self)(**options())."""
        return {}

    def apply(self, model: torch.nn.Module, head_modules: list[str]) -> torch.nn.Module:
        """Adapt the loaded model in place (add modules, set requires_grad) and return it."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"transform": self.name, "options": self.options()}


def freeze_all_but(model: torch.nn.Module, trains) -> None:
    """requires_grad on exactly the parameters whose name trains(name) accepts."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(bool(trains(name)))


def in_modules(name: str, modules: list[str]) -> bool:
    """Whether parameter `name` belongs to one of the modules named (full module names, as the checkpoint's
    missing keys give them: 'classifier', 'pre_classifier', 'classifier.out_proj')."""
    owner = name.rsplit(".", 1)[0]
    return any(owner == m or owner.startswith(m + ".") for m in modules)


class FeatureExtraction(ModelTransform):
    """The encoder is frozen; only the newly initialised head trains. No gradient flows into the encoder
    (none of its weights needs one), so neither its gradients nor its optimizer state exist."""

    name = "feature_extraction"

    def apply(self, model, head_modules):
        if not head_modules:
            raise ValueError("feature extraction needs a newly initialised head to train, and this checkpoint "
                             "already has one; load the encoder without its head")
        freeze_all_but(model, lambda name: in_modules(name, head_modules))
        return model


class BitFit(ModelTransform):
    """BitFit (Ben Zaken et al., 2022): only bias terms (of every linear layer and LayerNorm) and the new head
    train."""

    name = "bitfit"

    def apply(self, model, head_modules):
        freeze_all_but(model, lambda name: name.endswith(".bias") or in_modules(name, head_modules))
        return model


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_trained(model: torch.nn.Module, transform: ModelTransform, model_dir: str, extra: dict | None = None) -> None:
    """Save what trained (as safetensors), the model config (labels, architecture) and how to rebuild."""
    from safetensors.torch import save_file

    os.makedirs(model_dir, exist_ok=True)
    save_file(trained_state(model), os.path.join(model_dir, TRAINED_FILE))
    model.config.save_pretrained(model_dir)
    with open(os.path.join(model_dir, METHOD_FILE), "w", encoding="utf-8") as handle:
        json.dump({**transform.to_dict(), **(extra or {})}, handle, indent=2)
        handle.write("\n")


def transform_from_dict(spec: dict) -> ModelTransform:
    """Rebuild a transform from what to_dict() recorded, through its method's registry entry."""
    from ftbench.registry import all_methods

    method = all_methods().get(spec["transform"])
    if method is None or method.rebuild is None:
        raise ValueError(f"unknown method transform '{spec['transform']}' in {METHOD_FILE}")
    return method.rebuild(spec.get("options", {}))


def load_trained(model: torch.nn.Module, model_dir: str, head_modules: list[str]) -> torch.nn.Module:
    """Rebuild the method on a freshly loaded base model and load its trained tensors; every saved tensor
    must find its parameter, and every trainable parameter must be in the file."""
    from safetensors.torch import load_file

    with open(os.path.join(model_dir, METHOD_FILE), encoding="utf-8") as handle:
        spec = json.load(handle)
    model = transform_from_dict(spec).apply(model, head_modules)
    state = load_file(os.path.join(model_dir, TRAINED_FILE))
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"saved parameters do not fit the rebuilt model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    model.load_state_dict(state, strict=False)
    return model
