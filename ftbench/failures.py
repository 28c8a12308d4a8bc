"""How a failed run says why, in one line with the fix: a full disk, device memory running out."""

from __future__ import annotations

import errno
import traceback


def failure_message(error: BaseException, run_dir: str) -> str:
    """The one line that says why a run failed; a full disk is named as such, with the fix."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing '{error.filename}'" if error.filename else ""
        return (f"the disk is full ({error.strerror}{where}); free space on the disk holding {run_dir} or give "
                f"another --output_dir, then run again")
    return f"{type(error).__name__}: {error}"


def out_of_memory_message(error: BaseException, run_config) -> str:
    training = run_config.training
    frames = {frame.name for frame in traceback.extract_tb(error.__traceback__)}
    if frames & {"evaluate", "evaluation_loop", "predict", "prediction_step"}:
        size = training.per_device_eval_batch_size
        return (f"out of device memory while evaluating at --per_device_eval_batch_size {size}; try "
                f"--per_device_eval_batch_size {max(1, size // 2)}")
    size, accumulation = training.per_device_train_batch_size, training.gradient_accumulation_steps
    return (f"out of device memory while training at --per_device_train_batch_size {size} "
            f"(--max_seq_length {run_config.data.max_seq_length}); try --per_device_train_batch_size "
            f"{max(1, size // 2)} --gradient_accumulation_steps {accumulation * 2} (the same effective batch), "
            f"--gradient_checkpointing, or a shorter --max_seq_length")
