"""Rebuilding a saved run's method that is not a peft config (feature extraction, BitFit, bottleneck adapters)
from what methods.save_trained wrote: the transform named in method.json, applied to a fresh base model, then
its trained tensors. Kept apart from methods.py, which the transforms themselves build on."""

from __future__ import annotations

import json
import os

import torch

from bottleneck_adapter import BottleneckAdapterTransform
from methods import METHOD_FILE, TRAINED_FILE, BitFit, FeatureExtraction, ModelTransform


def transform_from_dict(spec: dict) -> ModelTransform:
    """Rebuild a transform from what to_dict() recorded."""
    name = spec["transform"]
    if name == "feature_extraction":
        return FeatureExtraction(**spec.get("options", {}))
    if name == "bitfit":
        return BitFit(**spec.get("options", {}))
    if name == "bottleneck_adapter":
        return BottleneckAdapterTransform(**spec.get("options", {}))
    raise ValueError(f"unknown method transform '{name}' in {METHOD_FILE}")


def load_trained(model: torch.nn.Module, model_dir: str, head_modules: list[str]) -> torch.nn.Module:
    """Rebuild the method on a freshly loaded base model and load its trained tensors; every saved tensor
    must find its parameter, and every trainable parameter must be in the file."""
    from safetensors.torch import load_file

    with open(os.path.join(model_dir, METHOD_FILE), encoding="utf-8") as handle:
        spec = json.load(handle)
    model = transform_from_dict(spec).apply(model, head_modules)
    state = load_file(os.path.join(model_dir, TRAINED_FILE))
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"saved parameters do not fit the rebuilt model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    model.load_state_dict(state, strict=False)
    return model
