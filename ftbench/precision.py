"""The training precision a run uses, and why: `--precision auto` resolved for the device it runs on.

On CUDA: bf16 autocast where the GPU has bf16, else fp16 with loss scaling. On the CPU: bf16 autocast where the
CPU computes bf16 natively (AVX512-BF16 or AMX tiles, as torch itself detects them), else fp32. Without those
instructions bf16 still runs on any CPU, only emulated and slower, so `--precision bf16` stays an explicit choice.

FTB_CPU_NATIVE_BF16=0 or 1 overrides the CPU detection (the test suite sets 0, so that no test depends on the
CPU it runs on; set 1 to try the bf16 rule on any CPU). The override is recorded with the choice.
"""

from __future__ import annotations

import os

import torch

from ftbench.errors import ConfigError

OVERRIDE_VARIABLE = "FTB_CPU_NATIVE_BF16"


def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and what said so."""
    override = os.environ.get(OVERRIDE_VARIABLE, "").strip()
    if override in ("0", "1"):
        return override == "1", f"{OVERRIDE_VARIABLE}={override}"
    if override:
        raise ConfigError(f"{OVERRIDE_VARIABLE}={override!r} is not understood; set it to 0 or 1, or unset it")
    if torch.cpu._is_amx_tile_supported():
        return True, "the CPU has AMX tiles (torch.cpu)"
    if torch.cpu._is_avx512_bf16_supported():
        return True, "the CPU has AVX512-BF16 (torch.cpu)"
    vector_unit = torch.backends.cpu.get_cpu_capability()
    return False, f"the CPU has neither AVX512-BF16 nor AMX (torch.cpu; vector unit {vector_unit})"


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in."""
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use --precision fp16")
    elif precision == "fp16":
        raise ConfigError("--precision fp16 needs a CUDA device; on the CPU use --precision bf16 or fp32")


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """The precision a run trains in, and the reason, as train_info.pipeline records them."""
    if precision != "auto":
        return precision, "asked for"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: the GPU supports bf16"
        return "fp16", "auto: the GPU has no bf16"
    native, why = cpu_native_bf16()
    return ("bf16" if native else "fp32"), f"auto: {why}"


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the matmuls of a run in this precision compute in."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
