"""Continued pre-training, then full fine-tuning: the encoder first trains as a masked language model on
the data set's own training text (no labels; never the validation or test text), or on a text file you
give, and is then fine-tuned from the result. Both phases are timed and measured; results.json reports
each and the total (train_info.pretraining, train_info.total_train_time_s).

    python train_continued_pretraining.py                  # MiniLM on the tweets data set, offline
    python train_continued_pretraining.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_continued_pretraining.py --mlm_max_steps 500 --mlm_text_file reviews.txt
    python train_lora.py --mlm_epochs 1                    # the same first phase before any other method
    python train_continued_pretraining.py --help           # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the fine-tuned model).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from ftbench.script_entry import main

if __name__ == "__main__":
    main("continued_pretraining")  # declared in ftbench/methods/
