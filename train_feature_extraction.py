"""Feature extraction: the pretrained encoder is frozen and only the new classification head trains.

The cheapest baseline: no gradient flows into the encoder, so it keeps no activations for a backward pass,
has no gradients and no optimizer state; only the head's few hundred weights are updated and saved.

    python train_feature_extraction.py                     # MiniLM on the tweets data set, offline
    python train_feature_extraction.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_feature_extraction.py --help              # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the head's weights only).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("feature_extraction")  # declared in ftbench/methods/
