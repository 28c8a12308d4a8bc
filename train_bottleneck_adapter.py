"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): small down-projection, non-linearity,
up-projection modules inside every encoder layer, started as the identity; the encoder's own weights stay
frozen; plus the classification head. Implemented here (bottleneck_adapter.py), see README for why.

    python train_bottleneck_adapter.py                     # MiniLM on the tweets data set, offline
    python train_bottleneck_adapter.py --dataset sst2 --data_dir ../shared/data --num_train_epochs 1
    python train_bottleneck_adapter.py --adapter_style pfeiffer --adapter_reduction_factor 8
    python train_bottleneck_adapter.py --help              # every option, with its default

Writes results/runs/<run id>/ (results.json, training_log.txt, model/ with the adapters, trained layer
norms and head only).
"""

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

from bottleneck_adapter import BottleneckAdapterTransform, check_supported
from runner import main_for


def build_bottleneck_adapter(run_config, model_config, head_modules):
    check_supported(model_config)
    options = run_config.method_options
    return BottleneckAdapterTransform(style=options.adapter_style, reduction_factor=options.adapter_reduction_factor,
                                      activation=options.adapter_activation,
                                      train_layer_norms=options.adapter_train_layer_norms)


if __name__ == "__main__":
    main_for("bottleneck_adapter", build_bottleneck_adapter)
