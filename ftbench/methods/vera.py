"""VeRA (Kopiczko et al., 2024): LoRA's low-rank update with its two matrices frozen at random and shared by every
adapted layer; what trains is a pair of scaling vectors per layer (and the head). Even fewer trained weights
than LoRA at a much higher rank. Targets the same layers as LoRA's --lora_targets presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ftbench.errors import check
from ftbench.methods.lora import LoraTargets, lora_targets
from ftbench.registry import Method, register
from ftbench.search_space import Choice, FloatRange


@dataclass
class VeraArguments:
    vera_r: int = field(default=256, metadata={"help": "Rank of the shared random projections (the VeRA paper: 256)."})
    vera_d_initial: float = field(default=0.1, metadata={"help": "Initial value of the trained scaling vector d."})
    vera_dropout: float = field(default=0.0, metadata={"help": "Dropout on the VeRA branch's input."})
    vera_targets: LoraTargets = field(
        default="query_value",
        metadata={"help": "Which linear layers get VeRA, as for --lora_targets: 'query_value', 'attention' or "
                          "'all_linear'."},
    )

    def __post_init__(self):
        check(self.vera_r >= 1, f"--vera_r must be at least 1, got {self.vera_r}")
        check(self.vera_d_initial > 0, f"--vera_d_initial must be positive, got {self.vera_d_initial}")
        check(0 <= self.vera_dropout < 1, f"--vera_dropout must lie in [0, 1), got {self.vera_dropout}")


def build_vera(run_config, model_config, head_modules):
    from peft import TaskType, VeraConfig

    options = run_config.method_options
    return VeraConfig(
        task_type=TaskType.SEQ_CLS,
        r=options.vera_r,
        d_initial=options.vera_d_initial,
        vera_dropout=options.vera_dropout,
        target_modules=lora_targets(model_config, options.vera_targets, None),
        # The frozen random projections come from the run's seed, so that seeds of a sweep differ in them too;
        # they are saved with the adapter, so inference needs no seed.
        projection_prng_key=run_config.training.seed,
        save_projection=True,
        modules_to_save=list(head_modules),
    )


VERA = register(Method(
    name="vera", options=VeraArguments, learning_rate=1e-1, build=build_vera, variant_options=("vera_targets",),
    search_space={"vera_r": Choice((64, 128, 256, 512)), "vera_d_initial": FloatRange(0.01, 1.0, log=True)},
    description="VeRA: frozen shared random low-rank projections with trained scaling vectors per layer, plus "
                "the head"))
