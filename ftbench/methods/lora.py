"""LoRA (Hu et al., 2021) and DoRA (Liu et al., 2024): trained low-rank updates on chosen linear layers, plus the
classification head. Also the target choice that AdaLoRA, QLoRA and VeRA share (lora_targets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ftbench.errors import ConfigError, check
from ftbench.registry import Method, register
from ftbench.search_space import Choice, FloatRange

LoraTargets = Literal["query_value", "attention", "all_linear"]

# The roles of the linear layers each --lora_targets choice adapts (see transforms.ENCODER_LAYOUTS).
TARGET_ROLES = {
    "query_value": ("query", "value"),  # as the LoRA paper adapts them
    "attention": ("query", "key", "value", "attention_output"),
    "all_linear": ("query", "key", "value", "attention_output", "ffn_in", "ffn_out"),
}
TARGET_VARIANTS = ("lora_targets", "lora_target_modules")  # the options that name a variant of a LoRA-like method
# What a hyperparameter search tries for LoRA-like methods (their targets stay: they name a variant).
LORA_SEARCH_SPACE = {"lora_r": Choice((4, 8, 16, 32)), "lora_alpha": Choice((8, 16, 32, 64)),
                     "lora_dropout": FloatRange(0.0, 0.3)}


@dataclass
class LoraArguments:
    lora_r: int = field(default=8, metadata={"help": "Rank of the LoRA update matrices."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator: updates are scaled by alpha/r."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_targets: LoraTargets = field(
        default="query_value",
        metadata={
            "help": "Which linear layers get LoRA: 'query_value' (the attention query and value projections, as "
            "in the LoRA paper), 'attention' (query, key, value and output projections) or 'all_linear' (those "
            "and both feed-forward layers of every block). --lora_target_modules overrides it."
        },
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Names of the linear layers that get LoRA, given explicitly (e.g. query key value); overrides "
            "--lora_targets."
        },
    )
    use_dora: bool = field(
        default=False,
        metadata={"help": "DoRA: decompose each adapted weight into magnitude and direction, LoRA on the direction."},
    )
    export_merged: bool = field(
        default=False,
        metadata={
            "help": "Also save the model with the LoRA updates merged into its weights (run folder merged_model/): "
            "a plain model for inference, with no adapter overhead, at the size of the full model."
        },
    )

    def __post_init__(self):
        check(self.lora_r >= 1, f"--lora_r must be at least 1, got {self.lora_r}")
        check(self.lora_alpha > 0, f"--lora_alpha must be positive, got {self.lora_alpha}")
        check(0 <= self.lora_dropout < 1, f"--lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        check(self.lora_target_modules is None or len(self.lora_target_modules) > 0,
              "--lora_target_modules needs at least one layer name")


def lora_targets(model_config, preset: str, requested: list[str] | None) -> list[str] | str:
    """peft target_modules: the names given explicitly (checked against the model), or the preset's regex."""
    import torch

    from ftbench.transforms import ENCODER_LAYOUTS, layer_regex, module_short_names

    if requested:
        available = module_short_names(model_config, torch.nn.Linear)
        unknown = [name for name in requested if name not in available]
        if unknown:
            raise ConfigError(f"--lora_target_modules {' '.join(unknown)} match no linear layer of this "
                              f"{model_config.model_type} model; its linear layers are: {' '.join(sorted(available))}")
        return list(requested)
    if model_config.model_type not in ENCODER_LAYOUTS:
        raise ConfigError(f"no --lora_targets layout for model type '{model_config.model_type}'; name the layers "
                          f"with --lora_target_modules (e.g. the attention query and value projections)")
    return layer_regex(model_config.model_type, TARGET_ROLES[preset])


def build_lora(run_config, model_config, head_modules):
    from peft import LoraConfig, TaskType

    options = run_config.method_options
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=lora_targets(model_config, options.lora_targets, options.lora_target_modules),
        use_dora=options.use_dora,
        # The head starts random: it must train and be saved with the adapter (peft adds 'classifier' itself;
        # this also covers heads named otherwise, such as DistilBERT's pre_classifier).
        modules_to_save=list(head_modules),
    )


LORA = register(Method(
    name="lora", options=LoraArguments, learning_rate=3e-3, build=build_lora,
    variant_options=(*TARGET_VARIANTS, "use_dora"), search_space=LORA_SEARCH_SPACE,
    description="LoRA: low-rank updates on the attention projections, plus the head"))

DORA = register(Method(
    name="dora", options=LoraArguments, learning_rate=3e-3, build=build_lora, defaults={"use_dora": True},
    variant_options=(*TARGET_VARIANTS, "use_dora"), search_space=LORA_SEARCH_SPACE,
    description="DoRA: LoRA on the direction of each weight, plus a trained magnitude, plus the head"))
