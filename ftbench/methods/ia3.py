"""IA3 (Liu et al., 2022): trained vectors rescaling the attention keys and values and the feed-forward
activations of every layer, plus the head. The fewest trained weights of the adapter methods."""

from __future__ import annotations

from dataclasses import dataclass

from ftbench.errors import ConfigError
from ftbench.registry import Method, register


@dataclass
class IA3Arguments:
    """IA3 rescales the attention keys and values and the feed-forward activations with trained vectors."""


def build_ia3(run_config, model_config, head_modules):
    from peft import IA3Config, TaskType

    from ftbench.transforms import ENCODER_LAYOUTS, layer_regex

    model_type = model_config.model_type
    if model_type not in ENCODER_LAYOUTS:
        raise ConfigError(f"IA3 has no layer layout for model type '{model_type}' (known: "
                          f"{', '.join(sorted(ENCODER_LAYOUTS))}); use train_lora.py with --lora_target_modules")
    return IA3Config(
        task_type=TaskType.SEQ_CLS,
        # Keys and values are rescaled at the output of their projections; the feed-forward activation at the
        # input of the feed-forward output layer (which is why that one is also a "feedforward" module).
        target_modules=layer_regex(model_type, ("key", "value", "ffn_out")),
        feedforward_modules=layer_regex(model_type, ("ffn_out",)),
        modules_to_save=list(head_modules),
    )


IA3 = register(Method(
    name="ia3", options=IA3Arguments, learning_rate=5e-2, build=build_ia3,
    description="IA3: trained vectors rescaling attention keys, values and feed-forward activations, plus the head"))
