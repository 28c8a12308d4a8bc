"""Prompt tuning (Lester et al., 2021): a trained soft prompt of virtual token embeddings is prepended to
every input; the encoder is frozen; plus the classification head. Initialised randomly or from a text.

    python train_prompt_tuning.py                          # MiniLM on the tweets data set, offline
    python train_prompt_tuning.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_prompt_tuning.py --prompt_init text --prompt_init_text "is this review positive or negative?"
    python train_prompt_tuning.py --help                   # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the prompt and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from peft import PromptTuningConfig, PromptTuningInit, TaskType

from prefix_distilbert import prefix_tuning_dims
from runner import main_for, resolve_model_path


def build_prompt_tuning(run_config, model_config, head_modules):
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


if __name__ == "__main__":
    main_for("prompt_tuning", build_prompt_tuning)
