"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): small trained down/up projections inside
every layer, plus the head. Implemented in ftbench/bottleneck_adapter.py (peft has no such method)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ftbench.errors import check
from ftbench.registry import Method, register
from ftbench.search_space import Choice


@dataclass
class BottleneckAdapterArguments:
    adapter_style: Literal["houlsby", "pfeiffer"] = field(
        default="houlsby",
        metadata={"help": "'houlsby': an adapter after the attention output and after the feed-forward output of "
                  "every layer; 'pfeiffer': after the feed-forward output only."},
    )
    adapter_reduction_factor: int = field(
        default=16, metadata={"help": "Bottleneck width = hidden size / this factor."}
    )
    adapter_activation: Literal["relu", "gelu", "tanh", "silu"] = field(
        default="relu", metadata={"help": "Non-linearity inside the bottleneck."}
    )
    adapter_train_layer_norms: bool | None = field(
        default=None,
        metadata={"help": "Also train the encoder's LayerNorms (default: yes for houlsby, as in the paper; no for "
                  "pfeiffer)."},
    )

    def __post_init__(self):
        check(self.adapter_reduction_factor >= 1,
              f"--adapter_reduction_factor must be at least 1, got {self.adapter_reduction_factor}")


def build_bottleneck_adapter(run_config, model_config, head_modules):
    from ftbench.bottleneck_adapter import BottleneckAdapterTransform, check_supported

    check_supported(model_config)
    options = run_config.method_options
    return BottleneckAdapterTransform(style=options.adapter_style, reduction_factor=options.adapter_reduction_factor,
                                      activation=options.adapter_activation,
                                      train_layer_norms=options.adapter_train_layer_norms)


def rebuild_bottleneck_adapter(options: dict):
    from ftbench.bottleneck_adapter import BottleneckAdapterTransform

    return BottleneckAdapterTransform(**options)


BOTTLENECK_ADAPTER = register(Method(
    name="bottleneck_adapter", options=BottleneckAdapterArguments, learning_rate=1e-3,
    build=build_bottleneck_adapter, rebuild=rebuild_bottleneck_adapter, variant_options=("adapter_style",),
    search_space={"adapter_reduction_factor": Choice((4, 8, 16, 32, 64)),
                  "adapter_activation": Choice(("relu", "gelu", "tanh", "silu"))},
    merge_refusal="bottleneck adapters have a nonlinearity between their down- and up-projection, so they cannot "
                  "be folded into the weights",
    description="bottleneck adapters: small trained down/up projections inside every layer, plus the head"))
