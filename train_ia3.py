"""IA3: trained vectors rescale the attention keys and values and the feed-forward activations of every
layer (Liu et al., 2022), plus the classification head. The fewest trained weights of the adapter methods.

    python train_ia3.py                                    # MiniLM on the tweets data set, offline
    python train_ia3.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_ia3.py --help                             # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the vectors and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("ia3")  # declared in ftbench/methods/
