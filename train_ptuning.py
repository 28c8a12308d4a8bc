"""P-tuning (Liu et al., 2021): virtual tokens produced by a trained prompt encoder (an MLP, or an LSTM
and MLP) are prepended to every input; the encoder is frozen; plus the classification head.

    python train_ptuning.py                                # MiniLM on the tweets data set, offline
    python train_ptuning.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_ptuning.py --encoder_reparameterization_type LSTM --encoder_hidden_size 128
    python train_ptuning.py --help                         # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the prompt encoder and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("ptuning")  # declared in ftbench/methods/
