"""Full fine-tuning: every weight of the encoder and the classification head trains.

    python train_full.py                                   # MiniLM on the tweets data set, offline
    python train_full.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_full.py --config my_run.yaml --learning_rate 3e-5
    python train_full.py --help                            # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/); see docs/results_schema.md.
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("full")  # declared in ftbench/methods/
