"""LN tuning: only the LayerNorm layers of the encoder (scale and shift) and the classification head train.

    python train_ln_tuning.py                              # MiniLM on the tweets data set, offline
    python train_ln_tuning.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_ln_tuning.py --help                       # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the LayerNorms and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("ln_tuning")  # declared in ftbench/methods/
