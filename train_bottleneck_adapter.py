"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): small down-projection, non-linearity,
up-projection modules inside every encoder layer, started as the identity; the encoder's own weights stay
frozen; plus the classification head. Implemented in ftbench/bottleneck_adapter.py, see README for why.

    python train_bottleneck_adapter.py                     # MiniLM on the tweets data set, offline
    python train_bottleneck_adapter.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_bottleneck_adapter.py --adapter_style pfeiffer --adapter_reduction_factor 8
    python train_bottleneck_adapter.py --help              # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapters, trained layer
norms and head only).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("bottleneck_adapter")  # declared in ftbench/methods/
