"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021) for BERT-like encoders, as a method of
this suite (a methods.ModelTransform):

    transform = BottleneckAdapterTransform(style="houlsby", reduction_factor=16)
    model = transform.apply(model, head_modules=["classifier"])   # adapters in, everything else frozen
    save_trained(model, transform, "model/")                       # methods.py: adapters (+ LayerNorms) and head

    check_supported(AutoConfig.from_pretrained(name))              # before loading any weights

An adapter is h + up(act(down(h))): a down-projection from the hidden size to hidden_size // reduction_factor
(at least 1), a non-linearity (relu, gelu, tanh or silu) and an up-projection back, added to its input. It
sits on the output of a projection Linear inside each encoder block, before that block's dropout, residual
connection and LayerNorm, as in both papers:
- "houlsby": after the attention output projection and after the feed-forward output projection (2 per layer);
- "pfeiffer": after the feed-forward output projection only (1 per layer).
The injection sites per model type are INJECTION_SITES (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT,
MPNet), taken by role from methods.ENCODER_LAYOUTS and matched as regexes anchored on full module names, so
that BERT's attention output "attention.output.dense" and its feed-forward output "output.dense" are never
confused. Other types (GPT-2, ALBERT with its shared layers, DeBERTa, ...) raise config.ConfigError.

Initialisation: the up-projection's weight and bias start at zero, so before training the adapted model
computes exactly (bit for bit) what the pretrained one did; the down-projection keeps nn.Linear's default
init (see BottleneckAdapter).

Trained: the adapters and the new head (head_modules); with train_layer_norms also the LayerNorms inside the
encoder blocks (not the embeddings' LayerNorm). train_layer_norms=None takes the style's default: True for
"houlsby" (Houlsby et al. trained the layer norms too), False for "pfeiffer". Everything else is frozen.

Mechanics: the adapter is registered as a child of the projection it follows (e.g.
"bert.encoder.layer.0.output.dense.adapter.down.weight") and a forward hook on that Linear passes its output
through the adapter. Every original parameter thus keeps its name, pretrained weights load unchanged, and a
model rebuilt by apply() has exactly the parameter names that methods.save_trained wrote. The hooks are not
part of a checkpoint: rebuild with apply() (methods.load_trained does), not with from_pretrained.

Why not AdapterHub's `adapters` library: it requires transformers 4.57 and cannot be installed beside the
transformers 5 this suite runs on; peft has no bottleneck adapter.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ftbench.errors import ConfigError
from ftbench.transforms import ENCODER_LAYOUTS, ModelTransform, freeze_all_but, in_modules, layer_regex

# Which roles (keys of methods.ENCODER_LAYOUTS) get an adapter, per style.
STYLES = {"houlsby": ("attention_output", "ffn_out"), "pfeiffer": ("ffn_out",)}
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}

# Model types whose blocks have one attention output projection and one feed-forward output projection, each
# followed by dropout, residual and LayerNorm. Module names relative to the block ("<...>.layer.<N>."):
#   bert, roberta, xlm-roberta, camembert, electra: attention.output.dense, output.dense
#   distilbert: attention.out_lin, ffn.lin2
#   mpnet: attention.attn.o, output.dense (checked against transformers 5.23's MPNet)
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "mpnet")
INJECTION_SITES = {model_type: {role: ENCODER_LAYOUTS[model_type][role] for role in ("attention_output", "ffn_out")}
                   for model_type in SUPPORTED_MODEL_TYPES}

# A module inside an encoder block (BERT's "bert.encoder.layer.3.", DistilBERT's "distilbert.transformer.layer.3.").
_IN_BLOCK = re.compile(r"(.*\.)?layer\.\d+\..+")


def bottleneck_size(hidden_size: int, reduction_factor: int) -> int:
    return max(1, hidden_size // reduction_factor)


def adapter_parameter_count(hidden_size: int, bottleneck: int) -> int:
    """Parameters of one adapter: down (weight and bias) plus up (weight and bias)."""
    return hidden_size * bottleneck + bottleneck + bottleneck * hidden_size + hidden_size


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown adapter activation '{activation}'; choose one of {', '.join(ACTIVATIONS)}")


class BottleneckAdapter(nn.Module):
    """h + up(act(down(h))), starting as the identity."""

    def __init__(self, hidden_size: int, bottleneck: int, activation: str = "relu"):
        super().__init__()
        _check_activation(activation)
        self.down = nn.Linear(hidden_size, bottleneck)
        self.activation = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden_size)
        # The up-projection starts at zero: the adapter is exactly the identity, so training starts from the
        # pretrained model's function. The down-projection keeps nn.Linear's default (Kaiming-uniform, the same
        # as LoRA's A matrix in peft) rather than a tiny normal: with up at zero, up's first gradient is
        # proportional to act(down(h)), and down only gets a gradient once up is non-zero, so a down-projection
        # of normal scale lets the adapter start learning at once instead of crawling out of a near-zero start.
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.activation(self.down(hidden)))


def _adapter_hook(module: nn.Module, inputs, output):
    # A module-level function (not a closure) so that adapted models can be deep-copied and pickled.
    return module.adapter(output)


def check_supported(model_config) -> None:
    """Raise ConfigError unless bottleneck adapters know where to go in this model type (no weights needed)."""
    model_type = getattr(model_config, "model_type", None)
    if model_type not in INJECTION_SITES:
        raise ConfigError(f"bottleneck adapters have no injection sites for model type '{model_type}'; supported: "
                          f"{', '.join(SUPPORTED_MODEL_TYPES)}; use train_lora.py for other models")


def adapter_sites(model: nn.Module, style: str) -> list[str]:
    """Full names of the projection Linears that get an adapter in this style, in model order."""
    check_supported(model.config)
    pattern = re.compile(layer_regex(model.config.model_type, STYLES[style]))
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and pattern.fullmatch(name)]


def encoder_layer_norms(model: nn.Module) -> list[str]:
    """Full names of the LayerNorms inside the encoder blocks (not the embeddings' or the head's)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.LayerNorm) and _IN_BLOCK.fullmatch(name)]


class BottleneckAdapterTransform(ModelTransform):
    """Inject bottleneck adapters and train them (plus the head, and the layer norms where chosen)."""

    name = "bottleneck_adapter"

    def __init__(self, style: str = "houlsby", reduction_factor: int = 16, activation: str = "relu",
                 train_layer_norms: bool | None = None):
        if style not in STYLES:
            raise ConfigError(f"unknown adapter style '{style}'; choose one of {', '.join(STYLES)}")
        _check_activation(activation)
        if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int) or reduction_factor < 1:
            raise ConfigError(f"the adapter reduction factor must be an integer of at least 1, "
                              f"got {reduction_factor!r}")
        if train_layer_norms not in (None, True, False):
            raise ConfigError(f"train_layer_norms must be true, false or unset, got {train_layer_norms!r}")
        self.style = style
        self.reduction_factor = reduction_factor
        self.activation = activation
        self.train_layer_norms = train_layer_norms

    def options(self) -> dict:
        return {"style": self.style, "reduction_factor": self.reduction_factor, "activation": self.activation,
                "train_layer_norms": self.train_layer_norms}

    def trains_layer_norms(self) -> bool:
        return self.style == "houlsby" if self.train_layer_norms is None else self.train_layer_norms

    def apply(self, model: nn.Module, head_modules: list[str]) -> nn.Module:
        sites = adapter_sites(model, self.style)  # raises ConfigError for unsupported model types
        if not sites:
            raise ConfigError(f"found no {self.style} adapter sites in this {model.config.model_type} model "
                              "(unexpected module names); use train_lora.py")
        for name in sites:
            projection = model.get_submodule(name)
            if "adapter" in projection._modules:
                raise ValueError(f"{name} already has a bottleneck adapter; apply the transform to a fresh model")
            weight = projection.weight
            dtype = weight.dtype if weight.is_floating_point() else torch.float32
            adapter = BottleneckAdapter(projection.out_features,
                                        bottleneck_size(projection.out_features, self.reduction_factor),
                                        self.activation)
            projection.add_module("adapter", adapter.to(device=weight.device, dtype=dtype))
            projection.register_forward_hook(_adapter_hook)
        adapters = [f"{name}.adapter" for name in sites]
        layer_norms = encoder_layer_norms(model) if self.trains_layer_norms() else []
        freeze_all_but(model, lambda name: in_modules(name, adapters) or in_modules(name, layer_norms)
                       or in_modules(name, head_modules))
        return model
