"""Feature extraction: the encoder is frozen, only the newly initialised classification head trains."""

from dataclasses import dataclass

from ftbench.registry import Method, register


@dataclass
class FeatureExtractionArguments:
    """Feature extraction trains the classification head only."""


def build_feature_extraction(run_config, model_config, head_modules):
    from ftbench.transforms import FeatureExtraction

    return FeatureExtraction()


def rebuild_feature_extraction(options: dict):
    from ftbench.transforms import FeatureExtraction

    return FeatureExtraction(**options)


FEATURE_EXTRACTION = register(Method(
    name="feature_extraction", options=FeatureExtractionArguments, learning_rate=5e-2,
    build=build_feature_extraction, rebuild=rebuild_feature_extraction,
    description="feature extraction: the encoder is frozen, only the classification head trains"))
