"""VeRA: shared frozen random low-rank projections on the attention projections, with trained scaling vectors
per layer, plus the classification head.

    python train_vera.py                                   # MiniLM on the tweets data set, offline
    python train_vera.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_vera.py --vera_r 512 --vera_targets all_linear
    python train_vera.py --help                            # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the scaling vectors, the shared
projections and the head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("vera")  # declared in ftbench/methods/
