"""Several processes (torchrun, accelerate launch): which one is the main process, joining the process group, and
sharing values between processes. With one process each is a no-op."""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))



def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: torch.device) -> None:
    """Under torchrun or accelerate launch (WORLD_SIZE > 1), join the process group now: the run folder is
    created by the main process and shared with the others before the Trainer exists."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=device.type == "cpu")


def share_from_main(value):
    """The main process's value, in every process (as is when there is only one)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_from_all(value) -> list:
    """Every process's value, in rank order (a one-item list when there is only one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values
