"""LoRA: trained low-rank updates on the attention projections, plus the classification head.

    python train_lora.py                                   # MiniLM on the tweets data set, offline
    python train_lora.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_lora.py --model_name_or_path distilbert-base-uncased --dataset sst2 --num_train_epochs 10
    python train_lora.py --lora_r 16 --lora_alpha 32 --lora_targets all_linear
    python train_lora.py --lora_target_modules query key value --export_merged   # also save merged weights
    python train_lora.py --help                            # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapter and head, and with
--export_merged merged_model/: a plain model with the updates merged in). DoRA: train_dora.py.
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("lora")  # declared in ftbench/methods/
