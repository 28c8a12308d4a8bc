"""AdaLoRA (Zhang et al., 2023): LoRA whose rank budget is re-allocated during training to the layers that
matter most, plus the classification head."""

from __future__ import annotations

from dataclasses import dataclass, field

from ftbench.errors import ConfigError, check
from ftbench.methods.lora import TARGET_VARIANTS, LoraTargets, lora_targets
from ftbench.registry import Method, register
from ftbench.search_space import Choice, FloatRange


@dataclass
class AdaLoraArguments:
    adalora_init_r: int = field(default=12, metadata={"help": "Starting rank of every adapted layer."})
    adalora_target_r: int = field(
        default=8, metadata={"help": "Average rank left after AdaLoRA prunes the least important directions."}
    )
    adalora_tinit_ratio: float = field(
        default=0.1, metadata={"help": "Share of the steps trained at the starting rank before pruning begins."}
    )
    adalora_tfinal_ratio: float = field(
        default=0.2, metadata={"help": "Share of the steps at the end trained with the final ranks fixed."}
    )
    adalora_delta_t: int = field(default=10, metadata={"help": "Steps between rank re-allocations."})
    lora_alpha: int = field(default=16, metadata={"help": "Scaling numerator, as for LoRA."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter branch's input."})
    lora_targets: LoraTargets = field(
        default="query_value", metadata={"help": "Which linear layers are adapted (as for train_lora.py)."}
    )
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Explicit names of the adapted linear layers; overrides --lora_targets."}
    )

    def __post_init__(self):
        check(self.adalora_init_r >= 1, f"--adalora_init_r must be at least 1, got {self.adalora_init_r}")
        check(1 <= self.adalora_target_r <= self.adalora_init_r,
              f"--adalora_target_r must lie in [1, --adalora_init_r={self.adalora_init_r}], got "
              f"{self.adalora_target_r}")
        check(0 <= self.adalora_tinit_ratio and 0 <= self.adalora_tfinal_ratio
              and self.adalora_tinit_ratio + self.adalora_tfinal_ratio < 1,
              "--adalora_tinit_ratio and --adalora_tfinal_ratio must be non-negative and sum to less than 1")
        check(self.adalora_delta_t >= 1, f"--adalora_delta_t must be at least 1, got {self.adalora_delta_t}")
        check(self.lora_alpha > 0, f"--lora_alpha must be positive, got {self.lora_alpha}")
        check(0 <= self.lora_dropout < 1, f"--lora_dropout must lie in [0, 1), got {self.lora_dropout}")


def build_adalora(run_config, model_config, head_modules):
    from peft import AdaLoraConfig, TaskType

    options = run_config.method_options
    # Before the data is loaded (the up-front check of the options) the step count is not known yet.
    total_steps = run_config.total_steps or 1000
    tinit = round(options.adalora_tinit_ratio * total_steps)
    tfinal = round(options.adalora_tfinal_ratio * total_steps)
    if tinit >= total_steps - tfinal:
        raise ConfigError(f"AdaLoRA's schedule needs steps between its warm-up ({tinit}) and final ({tfinal}) "
                          f"phases, but the run has only {total_steps} steps; train longer or lower "
                          f"--adalora_tinit_ratio / --adalora_tfinal_ratio")
    return AdaLoraConfig(
        task_type=TaskType.SEQ_CLS,
        init_r=options.adalora_init_r,
        target_r=options.adalora_target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=options.adalora_delta_t,
        total_step=total_steps,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=lora_targets(model_config, options.lora_targets, options.lora_target_modules),
        modules_to_save=list(head_modules),
    )


ADALORA = register(Method(
    name="adalora", options=AdaLoraArguments, learning_rate=1e-2, build=build_adalora,
    variant_options=TARGET_VARIANTS,
    # Every starting rank is at least every target rank, as the options' check requires.
    search_space={"adalora_init_r": Choice((8, 12, 16, 24)), "adalora_target_r": Choice((4, 8)),
                  "lora_alpha": Choice((8, 16, 32, 64)), "lora_dropout": FloatRange(0.0, 0.3)},
    not_resumable_because="peft saves AdaLoRA adapters at their re-allocated ranks, which a freshly built model "
                          "does not have",
    description="AdaLoRA: LoRA whose rank budget is re-allocated to the most important layers during training, "
                "plus the head"))
