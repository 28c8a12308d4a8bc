"""DoRA (weight-decomposed low-rank adaptation): each adapted weight is split into a trained magnitude
vector and a direction that gets a LoRA update; plus the classification head. Every LoRA option applies.

    python train_dora.py                                   # MiniLM on the tweets data set, offline
    python train_dora.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_dora.py --lora_targets all_linear --lora_r 16 --export_merged
    python train_dora.py --help                            # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapter and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("dora")  # declared in ftbench/methods/
