"""Prompt tuning (Lester et al., 2021): a trained soft prompt prepended to the input embeddings, plus the head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ftbench.errors import check
from ftbench.registry import Method, register
from ftbench.search_space import IntRange


@dataclass
class PromptTuningArguments:
    num_virtual_tokens: int = field(
        default=20, metadata={"help": "Number of trained soft-prompt embeddings prepended to the input."}
    )
    prompt_init: Literal["random", "text"] = field(
        default="random",
        metadata={"help": "Initialise the soft prompt randomly, or from the embeddings of --prompt_init_text."},
    )
    prompt_init_text: str = field(
        default="classify the sentiment of this text as negative, neutral or positive:",
        metadata={"help": "With --prompt_init text: the text whose token embeddings start the prompt (repeated "
                  "or cut to --num_virtual_tokens)."},
    )

    def __post_init__(self):
        check(self.num_virtual_tokens >= 1, f"--num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        check(self.prompt_init != "text" or bool(self.prompt_init_text.strip()),
              "--prompt_init text needs a non-empty --prompt_init_text")


def build_prompt_tuning(run_config, model_config, head_modules):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    from ftbench.model_names import resolve_model_path
    from ftbench.prefix_distilbert import prefix_tuning_dims

    options = run_config.method_options
    text_init = options.prompt_init == "text"
    return PromptTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=options.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text_init else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=options.prompt_init_text if text_init else None,
        # The resolved path, so that the text initialisation works offline with the 'minilm' alias too.
        tokenizer_name_or_path=resolve_model_path(run_config.model.model_name_or_path) if text_init else None,
        modules_to_save=list(head_modules),
        # Read from the model's config here: peft finds them only under BERT-style names, not DistilBERT's.
        **prefix_tuning_dims(model_config),
    )


PROMPT_TUNING = register(Method(
    name="prompt_tuning", options=PromptTuningArguments, learning_rate=3e-2, build=build_prompt_tuning,
    variant_options=("prompt_init",), search_space={"num_virtual_tokens": IntRange(4, 64, log=True)},
    description="prompt tuning: a trained soft prompt prepended to the input embeddings, plus the head"))
