"""BitFit: only the bias terms of the encoder (every linear layer's and LayerNorm's) and the head train.

No library offers it: it is a choice of which parameters train (ftbench.transforms.BitFit), on the shared runner.

    python train_bitfit.py                                 # MiniLM on the tweets data set, offline
    python train_bitfit.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_bitfit.py --help                          # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the biases and head only).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("bitfit")  # declared in ftbench/methods/
