"""QLoRA (Dettmers et al., 2023): the frozen base model is loaded with 4-bit NormalFloat (NF4) weights by
bitsandbytes, LoRA adapters train on top (on every linear layer by default, as in the paper), plus the
classification head. Runs on a CUDA GPU and, with bitsandbytes' CPU backend, on the CPU (slowly: every
matmul de-quantises its weights first; see README).

    python train_qlora.py --model_name_or_path bert-base-uncased --dataset sst2 --num_train_epochs 3
    python train_qlora.py --lora_r 16 --bnb_4bit_quant_type fp4
    python train_qlora.py --device cpu --max_train_samples 2000            # the CPU route
    python train_qlora.py --help                           # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapter and head; inference
re-loads the base model in 4 bits the same way).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("qlora")  # declared in ftbench/methods/
