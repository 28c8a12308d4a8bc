"""The training precision: --precision auto per device (bf16 on CPUs with native bf16, fp32 on others), and
bf16 autocast on the CPU trained for real. The CPU detection is overridden both ways (FTB_CPU_NATIVE_BF16),
so that no result here depends on the CPU the tests run on: bf16 runs on every CPU, only slower without it."""

from __future__ import annotations

import glob
import json
import os

import pytest
import torch

from conftest import QUICK, train
from ftbench.errors import ConfigError
from ftbench.precision import OVERRIDE_VARIABLE, check_precision, cpu_native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("override, expected", [("0", ("fp32", "auto: FTB_CPU_NATIVE_BF16=0")),
                                                ("1", ("bf16", "auto: FTB_CPU_NATIVE_BF16=1"))])
def test_auto_on_the_cpu_follows_native_bf16(monkeypatch, override, expected):
    monkeypatch.setenv(OVERRIDE_VARIABLE, override)
    assert resolve_precision("auto", CPU) == expected
    for explicit in ("fp32", "bf16"):
        assert resolve_precision(explicit, CPU) == (explicit, "asked for")


def test_detection_without_override_is_torchs(monkeypatch):
    monkeypatch.delenv(OVERRIDE_VARIABLE)
    native, why = cpu_native_bf16()
    assert native == bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    assert ("AMX" in why or "AVX512-BF16" in why) and "torch.cpu" in why


def test_a_bad_override_and_fp16_on_the_cpu_are_refused(monkeypatch):
    monkeypatch.setenv(OVERRIDE_VARIABLE, "yes")
    with pytest.raises(ConfigError, match="FTB_CPU_NATIVE_BF16='yes' is not understood; set it to 0 or 1"):
        cpu_native_bf16()
    with pytest.raises(ConfigError, match="--precision fp16 needs a CUDA device"):
        check_precision("fp16", CPU)
    check_precision("bf16", CPU)  # allowed on any CPU


def _results(output) -> dict:
    [run_dir] = glob.glob(os.path.join(output, "runs", "*"))
    return json.load(open(os.path.join(run_dir, "results.json")))


def test_bf16_autocast_trains_on_the_cpu_and_keeps_fp32_weights(tiny_bert, tmp_path, monkeypatch):
    """The same run in fp32, and in bf16 under auto on a CPU taken as native: bf16 computes (its losses differ
    from fp32's in the low bits, not more), the trained weights stay fp32, and MFU's peak is bf16's."""
    args = ["--model_name_or_path", tiny_bert, "--save_model", "false"] + QUICK
    assert train("full", args + ["--output_dir", str(tmp_path / "fp32")]) == 0
    monkeypatch.setenv(OVERRIDE_VARIABLE, "1")
    assert train("full", args + ["--output_dir", str(tmp_path / "bf16")]) == 0
    fp32, bf16 = _results(tmp_path / "fp32"), _results(tmp_path / "bf16")
    assert fp32["train_info"]["pipeline"]["precision"] == "fp32"
    pipeline = bf16["train_info"]["pipeline"]
    assert (pipeline["precision"], pipeline["precision_reason"]) == ("bf16", "auto: FTB_CPU_NATIVE_BF16=1")
    assert bf16["train_info"]["utilisation"]["peak_matmul"]["dtype"] == "bfloat16"
    assert fp32["train_info"]["utilisation"]["peak_matmul"]["dtype"] == "float32"
    losses = [[entry["loss"] for entry in run["train_info"]["train_loss_log"]] for run in (fp32, bf16)]
    assert len(losses[0]) == len(losses[1]) > 0
    differences = [abs(a - b) for a, b in zip(*losses)]
    assert 0 < max(differences) < 0.05, differences  # bf16 really computed, and computed the same thing
    assert bf16["train_info"]["test"]["accuracy"] == pytest.approx(fp32["train_info"]["test"]["accuracy"], abs=0.1)
