"""What a run measures while it trains: losses, evaluations, time and memory.

The callback observes the Trainer and records; it takes no training decisions. The runner
(ftbench/runner.py) attaches it to every method's training, so every method is measured the same way:

    recorder = RunRecorder(log_path="results/runs/<run>/training_log.txt")
    trainer = BenchmarkTrainer(..., callbacks=[recorder])

Measurement rules: time spent evaluating and saving checkpoints is not training time, and their memory
is not training memory either (peaks are read before and reset after each such stretch; the training peak is
read before the Trainer loads the best checkpoint at the end, so that load is not counted); CUDA work is
synchronised before a clock is read; peak memory is reset when training starts (CUDA allocator peaks,
or on CPU the peak resident set size of the process, via /proc/self/clear_refs where Linux allows it).
"""

from __future__ import annotations

import math
import os
import resource
import time

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from ftbench.machine_load import LoadTally, cpu_counters

MIB = 1024 * 1024


def synchronize(device: torch.device | None = None) -> None:
    """Wait for queued CUDA work (on `device`, or the current one), so that a clock read afterwards includes it."""
    if device is not None and device.type != "cuda":
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize(device)


def _read_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory() -> str:
    """Reset the peak-memory counters; returns what the CPU peak will cover afterwards."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    try:
        # Writing 5 resets the kernel's high-water mark of resident memory (Linux 4.0+).
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return "since training started"
    except OSError:
        return "whole process lifetime (the peak could not be reset here)"


def peak_memory(device_type: str, cpu_scope: str) -> dict:
    """Peak memory figures, each with its unit in the key."""
    figures: dict = {"device_type": device_type}
    if device_type == "cuda":
        figures["peak_mem_alloc_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
        figures["peak_mem_reserved_mib"] = round(torch.cuda.max_memory_reserved() / MIB, 1)
    hwm_kib = _read_status_kib("VmHWM")
    if hwm_kib is None:  # not Linux: ru_maxrss is the lifetime peak (KiB on Linux, bytes on macOS)
        scale = 1 if os.uname().sysname == "Darwin" else 1024
        figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB, 1)
        figures["peak_rss_scope"] = "whole process lifetime"
    else:
        figures["peak_rss_mib"] = round(hwm_kib / 1024, 1)
        figures["peak_rss_scope"] = cpu_scope
    return figures


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stops rather than train on garbage."""


def current_rss_mib() -> float | None:
    rss_kib = _read_status_kib("VmRSS")
    return None if rss_kib is None else round(rss_kib / 1024, 1)


class RunRecorder(TrainerCallback):
    """Records the history of a run and writes it, readable, to a text log as it happens."""

    def __init__(self, log_path: str | None, device_type: str, echo: bool = True):
        self.log_path = log_path
        self.device_type = device_type
        self.echo = echo
        self.train_loss_log: list[dict] = []  # every logging step: step, epoch, loss, learning rate
        self.history: list[dict] = []  # every evaluation on the validation split
        # {str(step): logits of the first validation batch then}: the selected model is checked against its own
        # (kept in checkpoints, so that a resumed run checks the same way).
        self.validation_heads: dict[str, list] = {}
        self.excluded_intervals: list[tuple[float, float]] = []  # evaluation and checkpoint saving
        self.train_begin: float | None = None
        self.last_step_end: float | None = None
        self.memory: dict = {}
        self.after_first_step: tuple[float, int] | None = None  # (train seconds, samples) at the end of step 1
        self.rss_at_train_start_mib: float | None = None
        self._cpu_scope = ""
        self._peaks: dict = {}  # highest peaks of the training stretches so far
        self._steps_since_reset = 0  # optimizer steps since the peak counters were last reset
        # Training-loss sums since the previous evaluation, kept as tensors so that no step waits on the GPU.
        self._loss_sum = 0.0
        self._loss_batches = 0
        self.train_samples = 0
        self.train_tokens = 0  # real tokens (not padding)
        self.train_padded_tokens = 0  # tokens computed on, padding included
        self.sum_squared_lengths = 0  # of the real lengths: attention's FLOPs grow with it
        self._token_sum = 0
        self._squared_sum = 0
        # The same, since the previous logging step: the train_loss_log entries (not the Trainer's own running
        # mean, which restarts when a run resumes mid-window).
        self._log_loss_sum = 0.0
        self._log_loss_batches = 0
        self.time_offset_s = 0.0  # training seconds of earlier segments of a resumed run
        self.eval_offset_s = 0.0  # and their evaluation seconds
        self._resumed_peaks: dict = {}
        self.machine_load = LoadTally()  # other processes' CPU use while training (ftbench.machine_load)
        self._load_start = None
        self.check_loss_every_step = device_type != "cuda"  # on CUDA, reading the loss each step would stall it

    # -- called by the trainer for every training batch and for every excluded stretch of time --

    def record_batch(self, loss: torch.Tensor, attention_mask: torch.Tensor) -> None:
        loss = loss.detach().float()
        self._loss_sum = _on(self._loss_sum, loss.device) + loss
        self._loss_batches += 1
        self._log_loss_sum = _on(self._log_loss_sum, loss.device) + loss
        self._log_loss_batches += 1
        self.train_samples += int(attention_mask.shape[0])
        self.train_padded_tokens += attention_mask.numel()
        lengths = attention_mask.detach().sum(dim=1)
        self._token_sum = self._token_sum + lengths.sum()
        self._squared_sum = self._squared_sum + (lengths * lengths).sum()

    def begin_excluded(self) -> float:
        """Evaluation or checkpoint saving starts: bank the training peaks, start the clock."""
        synchronize()
        self._bank_peaks()
        return time.perf_counter()

    def end_excluded(self, start: float) -> None:
        synchronize()
        self.excluded_intervals.append((start, time.perf_counter()))
        reset_peak_memory()
        self._steps_since_reset = 0

    def _bank_peaks(self) -> None:
        for key, value in peak_memory(self.device_type, self._cpu_scope).items():
            if key.endswith("_mib"):
                self._peaks[key] = max(self._peaks.get(key, 0.0), value)

    # -- the text log --

    def write(self, line: str = "", echo: bool = True) -> None:
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.echo and echo:
            tqdm.write(line)

    # -- Trainer events --

    def on_train_begin(self, args, state, control, **kwargs):
        synchronize()
        self._cpu_scope = reset_peak_memory()
        self._steps_since_reset = 0
        rss_now_mib = current_rss_mib()
        if self.rss_at_train_start_mib is None:  # a resumed run keeps the figure of its first start
            self.rss_at_train_start_mib = rss_now_mib
        if rss_now_mib is not None:
            # The kernel updates its high-water mark lazily; the peak is never below a resident size we read.
            self._peaks["peak_rss_mib"] = max(self._peaks.get("peak_rss_mib", 0.0), rss_now_mib)
        for key, value in self._resumed_peaks.items():  # a resumed run: peaks of its earlier segments
            self._peaks[key] = max(self._peaks.get(key, 0.0), value)
        self.train_begin = time.perf_counter()
        self._load_start = cpu_counters()
        self.write(f"{'step':>7} {'epoch':>6} {'train_loss':>10} {'val_loss':>9} {'val_acc':>8} {'val_f1':>8} "
                   f"{'gap':>8} {'train_s':>8}")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps or state.global_step == 1:
            synchronize()
        self.last_step_end = time.perf_counter()
        self._steps_since_reset += 1
        if state.global_step == 1:  # the end of warm-up (first allocations, kernel selection)
            self.after_first_step = (self.train_time_s(), self.train_samples)
        if (self.check_loss_every_step or state.global_step % args.logging_steps == 0
                or state.global_step >= state.max_steps):
            self._check_finite(args, state, kwargs.get("lr_scheduler"))

    def _check_finite(self, args, state, lr_scheduler) -> None:
        value = float(self._log_loss_sum)
        if math.isfinite(value):
            return
        rate = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else args.learning_rate
        hint = "; or --precision fp32, since fp16 can overflow" if args.fp16 else ""
        raise NonFiniteLossError(
            f"the training loss became {value} by step {state.global_step} (learning rate {rate:.3g} there): the "
            f"learning rate is most likely too high; lower --learning_rate (e.g. to {args.learning_rate / 10:.2g}) "
            f"and keep --max_grad_norm on{hint}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            loss_sum, batches = _sum_over_processes(self._log_loss_sum, self._log_loss_batches)
            self._log_loss_sum, self._log_loss_batches = 0.0, 0
            self.train_loss_log.append({
                "step": state.global_step,
                "epoch": round(state.epoch or 0.0, 4),
                "loss": round(loss_sum / batches, 6) if batches else logs["loss"],
                "learning_rate": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
            })

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss_sum, batches = _sum_over_processes(self._loss_sum, self._loss_batches)
        train_loss = loss_sum / batches if batches else None
        self._loss_sum, self._loss_batches = 0.0, 0
        val_loss = metrics.get("eval_loss")
        entry = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": metrics.get("eval_accuracy"),
            "val_f1_macro": metrics.get("eval_f1_macro"),
            "generalization_gap": None if train_loss is None or val_loss is None else val_loss - train_loss,
            "train_time_s": self.train_time_s(),
            "eval_time_s": metrics.get("eval_runtime"),
        }
        self.history.append(entry)
        self.write(
            f"{entry['step']:>7} {entry['epoch']:>6.2f} {_fmt(train_loss, 10)} {_fmt(val_loss, 9)} "
            f"{_fmt(entry['val_accuracy'], 8)} {_fmt(entry['val_f1_macro'], 8)} "
            f"{_fmt(entry['generalization_gap'], 8, signed=True)} {entry['train_time_s']:>8.1f}"
        )

    def on_epoch_end(self, args, state, control, **kwargs):
        # The Trainer's last event after the last step (and its evaluation and checkpoint) and before it loads the
        # best checkpoint (load_best_model_at_end) and calls on_train_end: the training peak is banked here, so
        # that loading that checkpoint does not count as training memory. Only if steps ran since the last reset:
        # what an evaluation leaves resident is not training memory unless training goes on with it.
        if self._steps_since_reset:
            self._bank_peaks()  # allocator peaks are counted on the host as work is queued: no sync needed

    def on_train_end(self, args, state, control, **kwargs):
        # No fresh reading of the peaks: since on_epoch_end the Trainer has only loaded the best model. A figure
        # never banked (no step ran) falls back on the current reading.
        self.memory = {**peak_memory(self.device_type, self._cpu_scope), **self._peaks,
                       "rss_at_train_start_mib": self.rss_at_train_start_mib}
        self.train_tokens = int(self._token_sum)
        self.sum_squared_lengths = int(self._squared_sum)
        self.machine_load.add(self._load_start, cpu_counters())

    # -- derived figures --

    def train_time_s(self) -> float:
        """Seconds from the start of training to the last optimizer step, less evaluation and saving (summed
        over the segments of a resumed run)."""
        if self.train_begin is None or self.last_step_end is None:
            return self.time_offset_s
        window_end = self.last_step_end
        excluded = sum(max(0.0, min(end, window_end) - start) for start, end in self.excluded_intervals
                       if start < window_end)
        return self.time_offset_s + window_end - self.train_begin - excluded

    # -- resuming: what a checkpoint must carry so that the resumed run records what an uninterrupted one would --

    def eval_time_s(self) -> float:
        """Seconds of the validation evaluations so far (of every segment of a resumed run)."""
        return sum(entry["eval_time_s"] or 0.0 for entry in self.history)

    def state_dict(self) -> dict:
        return {
            "train_loss_log": self.train_loss_log,
            "history": self.history,
            "train_time_s": self.train_time_s(),
            "peaks": dict(self._peaks),  # banked when the checkpoint's saving began (begin_excluded)
            "after_first_step": self.after_first_step,
            "rss_at_train_start_mib": self.rss_at_train_start_mib,
            "train_samples": self.train_samples,
            "train_padded_tokens": self.train_padded_tokens,
            "token_sum": int(self._token_sum),
            "squared_sum": int(self._squared_sum),
            # float32 sums held as exact doubles, so that the resumed sums continue bit for bit
            "loss_sum": float(self._loss_sum),
            "loss_batches": self._loss_batches,
            "log_loss_sum": float(self._log_loss_sum),
            "log_loss_batches": self._log_loss_batches,
            "validation_heads": self.validation_heads,
            # The segments before this one, and this one so far (a resumed run continues from here).
            "machine_load": self.machine_load.including(self._load_start, cpu_counters()).state_dict(),
        }

    def load_state_dict(self, saved: dict) -> None:
        self.train_loss_log = list(saved["train_loss_log"])
        self.history = list(saved["history"])
        self.time_offset_s = float(saved["train_time_s"])
        self.eval_offset_s = self.eval_time_s()
        self._resumed_peaks = dict(saved["peaks"])
        self.after_first_step = tuple(saved["after_first_step"]) if saved["after_first_step"] else None
        self.rss_at_train_start_mib = saved["rss_at_train_start_mib"]
        self.train_samples = saved["train_samples"]
        self.train_padded_tokens = saved["train_padded_tokens"]
        self._token_sum, self._squared_sum = saved["token_sum"], saved["squared_sum"]
        float32 = torch.float32
        self._loss_sum = torch.tensor(saved["loss_sum"], dtype=float32) if saved["loss_batches"] else 0.0
        self._loss_batches = saved["loss_batches"]
        self._log_loss_sum = torch.tensor(saved["log_loss_sum"], dtype=float32) if saved["log_loss_batches"] else 0.0
        self._log_loss_batches = saved["log_loss_batches"]
        self.validation_heads = dict(saved.get("validation_heads") or {})
        # Checkpoints from before machine_load existed: the earlier segments were not measured.
        self.machine_load = LoadTally(saved.get("machine_load") or {"measured": False})


def _on(total, device: torch.device):
    """A running sum on the device its next term lives on (a resumed sum starts on the CPU)."""
    return total.to(device) if isinstance(total, torch.Tensor) and total.device != device else total


def _sum_over_processes(loss_sum, batches: int) -> tuple[float, int]:
    """The training-loss sum and batch count over every process (DDP), or this process's alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = loss_sum.device if isinstance(loss_sum, torch.Tensor) else torch.device("cpu")
        if torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        pair = torch.tensor([float(loss_sum), float(batches)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(pair)
        return float(pair[0]), int(pair[1])
    return float(loss_sum), batches


def _fmt(value, width: int, signed: bool = False) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:>+{width}.4f}" if signed else f"{value:>{width}.4f}"
