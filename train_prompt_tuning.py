"""Prompt tuning (Lester et al., 2021): a trained soft prompt of virtual token embeddings is prepended to
every input; the encoder is frozen; plus the classification head. Initialised randomly or from a text.

    python train_prompt_tuning.py                          # MiniLM on the tweets data set, offline
    python train_prompt_tuning.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_prompt_tuning.py --prompt_init text --prompt_init_text "is this review positive or negative?"
    python train_prompt_tuning.py --help                   # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the prompt and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("prompt_tuning")  # declared in ftbench/methods/
