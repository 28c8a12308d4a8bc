"""Prefix tuning: trained key/value prefixes in every attention layer, plus the classification head.

    python train_prefix.py                                 # MiniLM on the tweets data set, offline
    python train_prefix.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_prefix.py --model_name_or_path bert-base-uncased --dataset sst2 --num_virtual_tokens 20
    python train_prefix.py --help                          # every option, with its default

Works for BERT-, RoBERTa- and DistilBERT-type encoders (DistilBERT through prefix_distilbert.py); models
whose attention takes no past key values (MPNet, for one) are refused before anything is loaded.
Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the prefix and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import sys

from peft import PrefixTuningConfig, TaskType

from config import ConfigError
from prefix_distilbert import load_distilbert_for_prefix, prefix_tuning_dims, supports_prefix_tuning
from runner import main_for


def build_prefix(run_config, model_config, head_modules):
    supported, reason = supports_prefix_tuning(model_config)
    if not supported:
        raise ConfigError(f"prefix tuning cannot run on '{run_config.model.model_name_or_path}' ({reason}); "
                          f"use a BERT, RoBERTa or DistilBERT model, or train_lora.py")
    if run_config.training.gradient_checkpointing:
        # transformers drops past key values inside checkpointed layers, so the prefix would be lost.
        raise ConfigError("prefix tuning cannot use --gradient_checkpointing (checkpointed layers drop the prefix "
                          "key/values); drop --gradient_checkpointing or lower --per_device_train_batch_size")
    options = run_config.method_options
    # BERT-style embeddings number positions after the past key values, so the prefix shifts every position
    # by num_virtual_tokens (RoBERTa's also skip padding_idx + 1); DistilBERT's class here does not shift them.
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions and model_config.model_type != "distilbert":
        if model_config.model_type in ("roberta", "xlm-roberta", "camembert"):
            positions -= (getattr(model_config, "pad_token_id", 1) or 1) + 1
        longest = positions - options.num_virtual_tokens
        if longest < 8:
            raise ConfigError(f"--num_virtual_tokens {options.num_virtual_tokens} leaves this model's {positions} "
                              f"positions no room for text; use fewer virtual tokens")
        if run_config.data.max_seq_length > longest:
            # Texts longer than this would run past the position table; the lowered length is what the run
            # records (run_info.config.data.max_seq_length).
            print(f"note: prefix tuning shifts positions by --num_virtual_tokens {options.num_virtual_tokens}, so on "
                  f"this model texts are truncated at {longest} tokens, not {run_config.data.max_seq_length}",
                  file=sys.stderr)
            run_config.data.max_seq_length = longest
    dims = prefix_tuning_dims(model_config)
    return PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=options.num_virtual_tokens,
        prefix_projection=options.prefix_projection,
        encoder_hidden_size=options.encoder_hidden_size or dims["token_dim"],
        modules_to_save=list(head_modules),
        **dims,
    )


def prefix_loader(model_config):
    """DistilBERT needs a model class that takes the prefix; the others load as usual."""
    return load_distilbert_for_prefix if model_config.model_type == "distilbert" else None


if __name__ == "__main__":
    main_for("prefix", build_prefix, prefix_loader)
