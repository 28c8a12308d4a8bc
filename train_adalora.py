"""AdaLoRA (Zhang et al., 2023): LoRA in SVD form whose rank budget is re-allocated during training from
the least to the most important layers, plus the classification head.

    python train_adalora.py                                # MiniLM on the tweets data set, offline
    python train_adalora.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_adalora.py --adalora_init_r 12 --adalora_target_r 4 --lora_targets all_linear
    python train_adalora.py --help                         # every option, with its default

The schedule: the first --adalora_tinit_ratio of the steps train at the starting rank, the budget then
shrinks every --adalora_delta_t steps to --adalora_target_r on average, and the last
--adalora_tfinal_ratio of the steps train with the final ranks. Writes results/runs/<run id>/ with
model/ holding the adapter (cut to its final ranks) and head.
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("adalora")  # declared in ftbench/methods/
