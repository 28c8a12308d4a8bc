"""LN tuning (Qi et al., 2022): only the encoder's LayerNorm layers (their scale and shift) and the head train,
through peft's LNTuningConfig. A sibling of BitFit: a few tens of thousands of weights."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ftbench.errors import ConfigError
from ftbench.registry import Method, register

# peft 0.21 asks every layer it wraps for in/out features and warns when, as for a LayerNorm, it has none; its own
# LN tuning then works (tests/test_ln_tuning.py). Filtered wherever the registry is read: training and inference.
warnings.filterwarnings("ignore", message=r"Unsupported layer type '<class 'torch\.nn\.modules\.normalization\."
                        r"LayerNorm'>' encountered", category=UserWarning)


@dataclass
class LNTuningArguments:
    """LN tuning trains the LayerNorm layers only (and the head)."""


def build_ln_tuning(run_config, model_config, head_modules):
    import torch
    from peft import LNTuningConfig, TaskType

    from ftbench.transforms import module_short_names

    # peft knows no LayerNorm names for BERT-like encoders: they are read from the architecture
    names = sorted(module_short_names(model_config, torch.nn.LayerNorm))
    if not names:
        raise ConfigError(f"LN tuning found no LayerNorm layer in this {model_config.model_type} model; use "
                          f"train_bitfit.py or train_lora.py")
    return LNTuningConfig(task_type=TaskType.SEQ_CLS, target_modules=names, modules_to_save=list(head_modules))


LN_TUNING = register(Method(
    name="ln_tuning", options=LNTuningArguments, learning_rate=5e-3, build=build_ln_tuning,
    description="LN tuning: only the LayerNorm layers and the head train"))
