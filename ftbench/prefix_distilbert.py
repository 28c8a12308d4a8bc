"""Prefix tuning (peft ``PrefixTuningConfig``) for DistilBERT sequence classification on transformers 5.

Why this module exists
----------------------
peft's ``PeftModelForSequenceClassification._prefix_tuning_forward`` hands the learned prefix to the base model
as ``past_key_values`` only if ``base_model.forward`` names that argument; otherwise it calls the backbone
directly.  In transformers 5, neither ``DistilBertForSequenceClassification`` nor ``DistilBertModel`` takes
``past_key_values``, so peft fails with "Model does not support past key values which are required for prefix
tuning." (and its backbone fallback would skip DistilBERT's ``pre_classifier`` anyway).  BERT and RoBERTa work
because their self-attention prepends cached keys/values; DistilBERT's attention has no cache at all.

How it works
------------
* ``DistilBertForPrefixSequenceClassification`` subclasses the stock class (same weights, same checkpoint
  names).  Its ``forward`` names ``past_key_values`` (so peft passes the prefix to it and keeps the stock head),
  turns peft's ``DynamicCache`` into one ``(key, value)`` pair per layer and sends them down the model through
  the ``**kwargs`` that DistilBERT already forwards to every attention call (under ``PREFIX_KV_KWARG``, not
  ``past_key_values``, which gradient checkpointing would drop).  Each attention module gets a ``layer_idx``.
* A custom attention implementation, registered through the documented ``transformers.AttentionInterface`` /
  ``AttentionMaskInterface`` extension points, prepends the layer's prefix keys/values along the sequence axis
  and then calls the ordinary sdpa (``PREFIX_ATTN_IMPLEMENTATION``) or eager (``PREFIX_EAGER_ATTN_IMPLEMENTATION``)
  kernel.  Masks are built by the stock sdpa/eager mask functions: peft already prepends ones for the virtual
  tokens to the 2D ``attention_mask``, and ``create_bidirectional_mask`` takes the key length from that mask, so
  prefix positions are always attended and padded tokens never.
* With no prefix the wrapper is a pass-through, so the model computes exactly what the stock class computes.

Design choice: the prefix holds no positions.  DistilBERT's position ids stay ``0..L-1`` (BERT under peft shifts
them by ``num_virtual_tokens``), so the [CLS] token keeps the position it was pretrained with.

Usage::

    model = load_distilbert_for_prefix(path, num_labels=2)
    peft_model = get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=10,
                                                          **prefix_tuning_dims(model.config)))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_MAPPING,
    AttentionInterface,
    DistilBertForSequenceClassification,
    PreTrainedConfig,
)
from transformers.cache_utils import Cache
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.distilbert import modeling_distilbert

__all__ = [
    "PREFIX_ATTN_IMPLEMENTATION",
    "PREFIX_EAGER_ATTN_IMPLEMENTATION",
    "PREFIX_KV_KWARG",
    "DistilBertForPrefixSequenceClassification",
    "load_distilbert_for_prefix",
    "prefix_tuning_dims",
    "supports_prefix_tuning",
]

PREFIX_ATTN_IMPLEMENTATION = "distilbert_prefix_sdpa"
PREFIX_EAGER_ATTN_IMPLEMENTATION = "distilbert_prefix_eager"
# Keyword under which the per-layer prefix travels through DistilBERT's **kwargs down to the attention function.
PREFIX_KV_KWARG = "prefix_key_values"

# What the user may ask for -> the prefix-aware implementation we register for it.
_PREFIX_IMPL_FOR = {
    None: PREFIX_ATTN_IMPLEMENTATION,
    "sdpa": PREFIX_ATTN_IMPLEMENTATION,
    "eager": PREFIX_EAGER_ATTN_IMPLEMENTATION,
    PREFIX_ATTN_IMPLEMENTATION: PREFIX_ATTN_IMPLEMENTATION,
    PREFIX_EAGER_ATTN_IMPLEMENTATION: PREFIX_EAGER_ATTN_IMPLEMENTATION,
}


def _eager_attention(*args, **kwargs):
    # Looked up at call time: "eager" is DistilBERT's module-level fallback, not an AttentionInterface entry.
    return modeling_distilbert.eager_attention_forward(*args, **kwargs)


def _make_prefix_attention(inner: Callable[[], Callable]) -> Callable:
    def prefix_attention_forward(module, query, key, value, attention_mask, **kwargs):
        prefix = kwargs.pop(PREFIX_KV_KWARG, None)
        if prefix is not None:
            prefix_key, prefix_value = prefix[module.layer_idx]
            # (batch, heads, num_virtual_tokens, head_dim) + (batch, heads, seq_len, head_dim) along the sequence axis
            key = torch.cat([prefix_key.to(device=key.device, dtype=key.dtype), key], dim=2)
            value = torch.cat([prefix_value.to(device=value.device, dtype=value.dtype), value], dim=2)
        return inner()(module, query, key, value, attention_mask, **kwargs)

    return prefix_attention_forward


# Documented extension points: a named attention function, plus the mask builder that goes with it (without a
# registered mask function, create_bidirectional_mask would return no mask at all for an unknown name).
_prefix_sdpa = _make_prefix_attention(lambda: ALL_ATTENTION_FUNCTIONS["sdpa"])
_prefix_eager = _make_prefix_attention(lambda: _eager_attention)
AttentionInterface.register(PREFIX_ATTN_IMPLEMENTATION, _prefix_sdpa)
AttentionInterface.register(PREFIX_EAGER_ATTN_IMPLEMENTATION, _prefix_eager)
AttentionMaskInterface.register(PREFIX_ATTN_IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
AttentionMaskInterface.register(PREFIX_EAGER_ATTN_IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def _per_layer_prefix(past_key_values: Any, num_layers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalise peft's prefix (a ``Cache``, or a legacy sequence of per-layer ``(key, value)`` pairs or stacked
    ``[2, batch, heads, tokens, head_dim]`` tensors) into a list of ``(key, value)`` pairs, one per layer."""
    if isinstance(past_key_values, Cache):
        pairs = [(layer.keys, layer.values) for layer in past_key_values.layers]
    elif isinstance(past_key_values, Sequence):
        pairs = [(entry[0], entry[1]) for entry in past_key_values]
    else:
        raise TypeError(f"Unsupported past_key_values type for DistilBERT prefix tuning: {type(past_key_values)!r}")
    if len(pairs) != num_layers or any(k is None or v is None for k, v in pairs):
        raise ValueError(
            f"Prefix has {len(pairs)} layers but DistilBERT has n_layers={num_layers}; set "
            "PrefixTuningConfig(num_layers=config.n_layers) (see prefix_tuning_dims)."
        )
    return pairs


class DistilBertForPrefixSequenceClassification(DistilBertForSequenceClassification):
    """``DistilBertForSequenceClassification`` whose ``forward`` accepts a peft prefix as ``past_key_values``.

    Weights, checkpoint keys and (with ``past_key_values=None``) outputs are those of the stock class.  The prefix
    only takes effect under ``PREFIX_ATTN_IMPLEMENTATION`` / ``PREFIX_EAGER_ATTN_IMPLEMENTATION``; passing one under
    any other attention implementation raises instead of silently ignoring it.
    """

    def __init__(self, config):
        super().__init__(config)
        for layer_idx, block in enumerate(self.distilbert.transformer.layer):
            block.attention.layer_idx = layer_idx

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | Sequence | None = None,
        **kwargs,
    ):
        if past_key_values is not None:
            impl = self.config._attn_implementation
            if impl not in (PREFIX_ATTN_IMPLEMENTATION, PREFIX_EAGER_ATTN_IMPLEMENTATION):
                raise ValueError(
                    f"A prefix was passed but attn_implementation={impl!r} would ignore it; load the model with "
                    "load_distilbert_for_prefix() or call "
                    f"model.set_attn_implementation({PREFIX_ATTN_IMPLEMENTATION!r})."
                )
            prefix = _per_layer_prefix(past_key_values, self.config.n_layers)
            kwargs[PREFIX_KV_KWARG] = prefix
            num_virtual_tokens = prefix[0][0].shape[-2]
            seq_len = (input_ids if input_ids is not None else inputs_embeds).shape[1]
            # peft prepends ones for the virtual tokens; a caller passing a prefix by hand may not have.
            if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] == seq_len:
                ones = attention_mask.new_ones(attention_mask.shape[0], num_virtual_tokens)
                attention_mask = torch.cat([ones, attention_mask], dim=-1)
            if attention_mask is not None and attention_mask.dim() == 2:
                if attention_mask.shape[-1] != num_virtual_tokens + seq_len:
                    raise ValueError(
                        f"attention_mask has length {attention_mask.shape[-1]}; expected {seq_len} or "
                        f"{num_virtual_tokens} prefix + {seq_len} tokens"
                    )
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels,
            position_ids=position_ids,
            **kwargs,
        )


def load_distilbert_for_prefix(model_name_or_path, **from_pretrained_kwargs):
    """Load a DistilBERT checkpoint as ``DistilBertForPrefixSequenceClassification`` with a prefix-aware attention
    implementation.  All ``from_pretrained`` keyword arguments pass through (``num_labels``, ``id2label``,
    ``output_loading_info=True`` -> ``(model, loading_info)``, ...); ``attn_implementation`` may be ``None``/"sdpa"
    (default) or "eager", mapped to the prefix-aware variant."""
    requested = from_pretrained_kwargs.pop("attn_implementation", None)
    if requested not in _PREFIX_IMPL_FOR:
        raise ValueError(
            f"attn_implementation={requested!r} is not supported for DistilBERT prefix tuning; use 'sdpa' or 'eager'."
        )
    config = from_pretrained_kwargs.get("config")
    if isinstance(config, PreTrainedConfig):
        model_type = config.model_type
    else:
        config_dict, _ = PreTrainedConfig.get_config_dict(model_name_or_path, **dict(from_pretrained_kwargs))
        model_type = config_dict.get("model_type")
    if model_type != "distilbert":
        raise ValueError(f"{model_name_or_path!r} is a {model_type!r} checkpoint, not a DistilBERT one.")
    return DistilBertForPrefixSequenceClassification.from_pretrained(
        model_name_or_path, attn_implementation=_PREFIX_IMPL_FOR[requested], **from_pretrained_kwargs
    )


def _first_attr(config, names: Sequence[str]):
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"{type(config).__name__} has none of {list(names)}; pass it to PrefixTuningConfig yourself.")


def prefix_tuning_dims(config) -> dict[str, int]:
    """``token_dim``, ``num_layers`` and ``num_attention_heads`` for ``PrefixTuningConfig``, read from a DistilBERT
    config (``dim``/``n_layers``/``n_heads``) or a BERT/RoBERTa-like one (``hidden_size``/...)."""
    dims = {
        "token_dim": _first_attr(config, ("dim", "hidden_size", "d_model", "n_embd")),
        "num_layers": _first_attr(config, ("n_layers", "num_hidden_layers", "num_layers", "n_layer")),
        "num_attention_heads": _first_attr(config, ("n_heads", "num_attention_heads", "num_heads", "n_head")),
    }
    if dims["token_dim"] % dims["num_attention_heads"]:
        raise ValueError(f"token_dim {dims['token_dim']} is not divisible by {dims['num_attention_heads']} heads")
    return dims


def _takes_past_key_values(model_class) -> bool:
    return "past_key_values" in inspect.signature(model_class.forward).parameters


def supports_prefix_tuning(config) -> tuple[bool, str]:
    """Whether peft prefix tuning (task_type SEQ_CLS) can run for this config, decided before loading weights, in
    the same way peft decides: the sequence-classification class's ``forward`` (or, failing that, the backbone's)
    must accept ``past_key_values``.  DistilBERT counts as supported via this module's subclass."""
    model_type = getattr(config, "model_type", None) or type(config).__name__
    if model_type == "distilbert":
        return True, "distilbert: supported through prefix_distilbert.load_distilbert_for_prefix"
    try:
        cls_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        return False, f"{model_type}: no AutoModelForSequenceClassification class"
    if _takes_past_key_values(cls_class):
        return True, f"{model_type}: {cls_class.__name__}.forward accepts past_key_values"
    try:
        backbone = MODEL_MAPPING[type(config)]
    except KeyError:
        backbone = None
    if backbone is not None and _takes_past_key_values(backbone):
        return True, f"{model_type}: backbone {backbone.__name__}.forward accepts past_key_values"
    names = cls_class.__name__ + (f" / {backbone.__name__}" if backbone is not None else "")
    return False, f"{model_type}: no past key values ({names}.forward has no past_key_values argument)"
