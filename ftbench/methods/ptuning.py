"""P-tuning (Liu et al., 2021): virtual tokens produced by a trained prompt encoder (an MLP or an LSTM),
prepended to the input embeddings, plus the head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ftbench.errors import check
from ftbench.registry import Method, register
from ftbench.search_space import IntRange


@dataclass
class PTuningArguments:
    num_virtual_tokens: int = field(
        default=20, metadata={"help": "Number of virtual tokens the prompt encoder produces."}
    )
    encoder_reparameterization_type: Literal["MLP", "LSTM"] = field(
        default="MLP", metadata={"help": "Prompt encoder: a 3-layer MLP, or a bidirectional LSTM plus MLP."}
    )
    encoder_hidden_size: int | None = field(
        default=None, metadata={"help": "Hidden size of the prompt encoder (default: the model's hidden size)."}
    )
    encoder_num_layers: int = field(default=2, metadata={"help": "Layers of the LSTM prompt encoder."})
    encoder_dropout: float = field(default=0.0, metadata={"help": "Dropout inside the prompt encoder."})

    def __post_init__(self):
        check(self.num_virtual_tokens >= 1, f"--num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        check(self.encoder_hidden_size is None or self.encoder_hidden_size >= 1,
              f"--encoder_hidden_size must be positive, got {self.encoder_hidden_size}")
        check(self.encoder_num_layers >= 1, f"--encoder_num_layers must be at least 1, got {self.encoder_num_layers}")
        check(0 <= self.encoder_dropout < 1, f"--encoder_dropout must lie in [0, 1), got {self.encoder_dropout}")


def build_ptuning(run_config, model_config, head_modules):
    from peft import PromptEncoderConfig, TaskType

    from ftbench.prefix_distilbert import prefix_tuning_dims

    options = run_config.method_options
    return PromptEncoderConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=options.num_virtual_tokens,
        encoder_reparameterization_type=options.encoder_reparameterization_type,
        encoder_hidden_size=options.encoder_hidden_size or model_config.hidden_size,
        encoder_num_layers=options.encoder_num_layers,
        encoder_dropout=options.encoder_dropout,
        modules_to_save=list(head_modules),
        # Read from the model's config here: peft finds them only under BERT-style names, not DistilBERT's.
        **prefix_tuning_dims(model_config),
    )


PTUNING = register(Method(
    name="ptuning", options=PTuningArguments, learning_rate=1e-1, build=build_ptuning,
    variant_options=("encoder_reparameterization_type",),
    search_space={"num_virtual_tokens": IntRange(4, 64, log=True)},
    description="P-tuning: virtual tokens produced by a trained prompt encoder, plus the head"))
