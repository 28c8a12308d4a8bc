"""P-tuning (Liu et al., 2021): virtual tokens produced by a trained prompt encoder (an MLP, or an LSTM
and MLP) are prepended to every input; the encoder is frozen; plus the classification head.

    python train_ptuning.py                                # MiniLM on the tweets data set, offline
    python train_ptuning.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_ptuning.py --encoder_reparameterization_type LSTM --encoder_hidden_size 128
    python train_ptuning.py --help                         # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the prompt encoder and head).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from peft import PromptEncoderConfig, TaskType

from prefix_distilbert import prefix_tuning_dims
from runner import main_for


def build_ptuning(run_config, model_config, head_modules):
    options = run_config.method_options
    return PromptEncoderConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=options.num_virtual_tokens,
        encoder_reparameterization_type=options.encoder_reparameterization_type,
        encoder_hidden_size=options.encoder_hidden_size or model_config.hidden_size,
        encoder_num_layers=options.encoder_num_layers,
        encoder_dropout=options.encoder_dropout,
        modules_to_save=list(head_modules),
        # Read from the model's config here: peft finds them only under BERT-style names, not DistilBERT's.
        **prefix_tuning_dims(model_config),
    )


if __name__ == "__main__":
    main_for("ptuning", build_ptuning)
