"""Prefix tuning (Li and Liang, 2021): trained key/value prefixes in every attention layer, plus the head. Works
for BERT-, RoBERTa- and DistilBERT-type encoders (DistilBERT through ftbench/prefix_distilbert.py); models whose
attention takes no past key values (MPNet, for one) are refused before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from ftbench.errors import ConfigError, check
from ftbench.registry import Method, register
from ftbench.search_space import IntRange


@dataclass
class PrefixArguments:
    num_virtual_tokens: int = field(
        default=20, metadata={"help": "Length of the trained prefix prepended to every layer's keys and values."}
    )
    prefix_projection: bool = field(
        default=False,
        metadata={"help": "Reparameterise the prefix through a two-layer MLP (more parameters, often steadier)."},
    )
    encoder_hidden_size: int | None = field(
        default=None,
        metadata={"help": "Hidden size of that MLP with --prefix_projection (default: the model's hidden size)."},
    )

    def __post_init__(self):
        check(self.num_virtual_tokens >= 1, f"--num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        check(self.encoder_hidden_size is None or self.encoder_hidden_size >= 1,
              f"--encoder_hidden_size must be positive, got {self.encoder_hidden_size}")


def check_prefix_fits(run_config, model_config) -> None:
    from ftbench.prefix_distilbert import supports_prefix_tuning

    supported, reason = supports_prefix_tuning(model_config)
    if not supported:
        raise ConfigError(f"prefix tuning cannot run on '{run_config.model.model_name_or_path}' ({reason}); "
                          f"use a BERT, RoBERTa or DistilBERT model, or train_lora.py")
    if run_config.training.gradient_checkpointing:
        # transformers drops past key values inside checkpointed layers, so the prefix would be lost.
        raise ConfigError("prefix tuning cannot use --gradient_checkpointing (checkpointed layers drop the prefix "
                          "key/values); drop --gradient_checkpointing or lower --per_device_train_batch_size")


def longest_text(model_config, num_virtual_tokens: int) -> int | None:
    """The most text tokens this model's position table leaves room for beside the prefix, or None (no limit).
    BERT-style embeddings number positions after the past key values, so the prefix shifts every position by
    num_virtual_tokens (RoBERTa's also skip padding_idx + 1); DistilBERT's class here does not shift them."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if not positions or model_config.model_type == "distilbert":
        return None
    if model_config.model_type in ("roberta", "xlm-roberta", "camembert"):
        positions -= (getattr(model_config, "pad_token_id", 1) or 1) + 1
    longest = positions - num_virtual_tokens
    if longest < 8:
        raise ConfigError(f"--num_virtual_tokens {num_virtual_tokens} leaves this model's {positions} positions no "
                          f"room for text; use fewer virtual tokens")
    return longest


def resolve_prefix(run_config, model_config) -> list[str]:
    """Checks the model, and lowers --max_seq_length to what the position table leaves beside the prefix."""
    check_prefix_fits(run_config, model_config)
    num_virtual_tokens = run_config.method_options.num_virtual_tokens
    longest = longest_text(model_config, num_virtual_tokens)
    if longest is None or run_config.data.max_seq_length <= longest:
        return []
    note = (f"prefix tuning shifts positions by --num_virtual_tokens {num_virtual_tokens}, so on this model texts are "
            f"truncated at {longest} tokens, not {run_config.data.max_seq_length}")
    run_config.data.max_seq_length = longest  # what the run records (run_info.config.data.max_seq_length)
    return [note]


def build_prefix(run_config, model_config, head_modules):
    from peft import PrefixTuningConfig, TaskType

    from ftbench.prefix_distilbert import prefix_tuning_dims

    check_prefix_fits(run_config, model_config)
    options = run_config.method_options
    dims = prefix_tuning_dims(model_config)
    return PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=options.num_virtual_tokens,
        prefix_projection=options.prefix_projection,
        encoder_hidden_size=options.encoder_hidden_size or dims["token_dim"],
        modules_to_save=list(head_modules),
        **dims,
    )


def load_distilbert(model_path, *, method_options: dict, device, **from_pretrained_kwargs):
    from ftbench.prefix_distilbert import load_distilbert_for_prefix

    return load_distilbert_for_prefix(model_path, **from_pretrained_kwargs)


def prefix_loader(model_type: str):
    """DistilBERT needs a model class that takes the prefix; the others load as usual."""
    return load_distilbert if model_type == "distilbert" else None


PREFIX = register(Method(
    name="prefix", options=PrefixArguments, learning_rate=1e-2, build=build_prefix, resolve=resolve_prefix,
    base_loader=prefix_loader, variant_options=("prefix_projection",),
    search_space={"num_virtual_tokens": IntRange(4, 64, log=True)},
    description="prefix tuning: trained key/value prefixes in every layer, plus the head"))
