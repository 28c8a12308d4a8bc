"""IA3: trained vectors rescale the attention keys and values and the feed-forward activations of every
layer (Liu et al., 2022), plus the classification head. The fewest trained weights of the adapter methods.

    python train_ia3.py                                    # MiniLM on the tweets data set, offline
    python train_ia3.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_ia3.py --help                             # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the vectors and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from peft import IA3Config, TaskType

from config import ConfigError
from methods import ENCODER_LAYOUTS, layer_regex
from runner import main_for


def build_ia3(run_config, model_config, head_modules):
    model_type = model_config.model_type
    if model_type not in ENCODER_LAYOUTS:
        raise ConfigError(f"IA3 has no layer layout for model type '{model_type}' (known: "
                          f"{', '.join(sorted(ENCODER_LAYOUTS))}); use train_lora.py with --lora_target_modules")
    return IA3Config(
        task_type=TaskType.SEQ_CLS,
        # Keys and values are rescaled at the output of their projections; the feed-forward activation at the
        # input of the feed-forward output layer (which is why that one is also a "feedforward" module).
        target_modules=layer_regex(model_type, ("key", "value", "ffn_out")),
        feedforward_modules=layer_regex(model_type, ("ffn_out",)),
        modules_to_save=list(head_modules),
    )


if __name__ == "__main__":
    main_for("ia3", build_ia3)
