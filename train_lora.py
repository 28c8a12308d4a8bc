"""LoRA: trained low-rank updates on the attention projections, plus the classification head.

    python train_lora.py                                   # MiniLM on the tweets data set, offline
    python train_lora.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_lora.py --model_name_or_path distilbert-base-uncased --dataset sst2 --num_train_epochs 10
    python train_lora.py --lora_r 16 --lora_alpha 32 --lora_target_modules query key value
    python train_lora.py --help                            # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapter and head).
"""

import torch
from peft import LoraConfig, TaskType
from transformers import AutoModelForSequenceClassification

from config import ConfigError
from runner import main_for

# The attention query and value projections of each architecture, as the LoRA paper adapts them.
LORA_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
    "deberta-v2": ["query_proj", "value_proj"],
}


def linear_layer_names(model_config) -> set[str]:
    """Short names of the model's linear layers, from its architecture alone (no weights are loaded)."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config)
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def lora_targets(model_config, requested: list[str] | None) -> list[str]:
    if not requested and model_config.model_type not in LORA_TARGETS:
        raise ConfigError(f"no default LoRA target modules for model type '{model_config.model_type}'; "
                          f"name the attention projections with --lora_target_modules")
    targets = list(requested or LORA_TARGETS[model_config.model_type])
    available = linear_layer_names(model_config)
    unknown = [name for name in targets if name not in available]
    if unknown:
        raise ConfigError(f"--lora_target_modules {' '.join(unknown)} match no linear layer of this "
                          f"{model_config.model_type} model; its linear layers are: {' '.join(sorted(available))}")
    return targets


def build_lora(run_config, model_config, head_modules):
    options = run_config.method_options
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=lora_targets(model_config, options.lora_target_modules),
        # The head starts random: it must train and be saved with the adapter (peft adds 'classifier' itself;
        # this also covers heads named otherwise, such as DistilBERT's pre_classifier).
        modules_to_save=list(head_modules),
    )


if __name__ == "__main__":
    main_for("lora", build_lora)
