"""Prefix tuning: trained key/value prefixes in every attention layer, plus the classification head.

    python train_prefix.py                                 # MiniLM on the tweets data set, offline
    python train_prefix.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_prefix.py --model_name_or_path bert-base-uncased --dataset sst2 --num_virtual_tokens 20
    python train_prefix.py --help                          # every option, with its default

Works for BERT-, RoBERTa- and DistilBERT-type encoders (DistilBERT through ftbench/prefix_distilbert.py); models
whose attention takes no past key values (MPNet, for one) are refused before anything is loaded.
Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the prefix and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("prefix")  # declared in ftbench/methods/
