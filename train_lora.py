"""LoRA: trained low-rank updates on the attention projections, plus the classification head.

    python train_lora.py                                   # MiniLM on the tweets data set, offline
    python train_lora.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_lora.py --model_name_or_path distilbert-base-uncased --dataset sst2 --num_train_epochs 10
    python train_lora.py --lora_r 16 --lora_alpha 32 --lora_targets all_linear
    python train_lora.py --lora_target_modules query key value --export_merged   # also save merged weights
    python train_lora.py --help                            # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapter and head, and with
--export_merged merged_model/: a plain model with the updates merged in). DoRA: train_dora.py.
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import torch
from peft import LoraConfig, TaskType
from transformers import AutoModelForSequenceClassification

from config import ConfigError
from methods import ENCODER_LAYOUTS, layer_regex
from runner import main_for

# The roles of the linear layers each --lora_targets choice adapts (see methods.ENCODER_LAYOUTS).
TARGET_ROLES = {
    "query_value": ("query", "value"),  # as the LoRA paper adapts them
    "attention": ("query", "key", "value", "attention_output"),
    "all_linear": ("query", "key", "value", "attention_output", "ffn_in", "ffn_out"),
}


def linear_layer_names(model_config) -> set[str]:
    """Short names of the model's linear layers, from its architecture alone (no weights are loaded)."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config)
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def lora_targets(model_config, preset: str, requested: list[str] | None) -> list[str] | str:
    """peft target_modules: the names given explicitly (checked against the model), or the preset's regex."""
    if requested:
        available = linear_layer_names(model_config)
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


if __name__ == "__main__":
    main_for("lora", build_lora)
