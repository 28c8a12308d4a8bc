"""AdaLoRA (Zhang et al., 2023): LoRA in SVD form whose rank budget is re-allocated during training from
the least to the most important layers, plus the classification head.

    python train_adalora.py                                # MiniLM on the tweets data set, offline
    python train_adalora.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_adalora.py --adalora_init_r 12 --adalora_target_r 4 --lora_targets all_linear
    python train_adalora.py --help                         # every option, with its default

The schedule: the first --adalora_tinit_ratio of the steps train at the starting rank, the budget then
shrinks every --adalora_delta_t steps to --adalora_target_r on average, and the last
--adalora_tfinal_ratio of the steps train with the final ranks. Writes results/runs/<run id>/ with
model/ holding the adapter (cut to its final ranks) and head.
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from peft import AdaLoraConfig, TaskType

from config import ConfigError
from runner import main_for
from train_lora import lora_targets


def build_adalora(run_config, model_config, head_modules):
    options = run_config.method_options
    # Before the data is loaded (the up-front check of the options) the step count is not known yet.
    total_steps = run_config.total_steps or 1000
    tinit = round(options.adalora_tinit_ratio * total_steps)
    tfinal = round(options.adalora_tfinal_ratio * total_steps)
    if tinit >= total_steps - tfinal:
        raise ConfigError(f"AdaLoRA's schedule needs steps between its warm-up ({tinit}) and final ({tfinal}) "
                          f"phases, but the run has only {total_steps} steps; train longer or lower "
                          f"--adalora_tinit_ratio / --adalora_tfinal_ratio")
    return AdaLoraConfig(
        task_type=TaskType.SEQ_CLS,
        init_r=options.adalora_init_r,
        target_r=options.adalora_target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=options.adalora_delta_t,
        total_step=total_steps,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=lora_targets(model_config, options.lora_targets, options.lora_target_modules),
        modules_to_save=list(head_modules),
    )


if __name__ == "__main__":
    main_for("adalora", build_adalora)
