"""Full fine-tuning: every weight of the encoder and the head trains."""

from dataclasses import dataclass

from ftbench.registry import Method, register


@dataclass
class FullArguments:
    """Full fine-tuning: every weight trains; no method options."""


def build_full(run_config, model_config, head_modules):
    """Full fine-tuning adapts nothing: no peft config."""
    return None


FULL = register(Method(
    name="full", options=FullArguments, learning_rate=5e-5, build=build_full,
    description="full fine-tuning: every weight of the encoder and the head trains"))
