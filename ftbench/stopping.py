"""Stopping on request: Ctrl-C and SIGTERM become a stop after the current training step with a checkpoint (a
resumable run), or a stop at once; and the moment the final results are written, when signals wait."""

from __future__ import annotations

import signal
import sys
import threading

import torch
from transformers import TrainerCallback

from ftbench.distributed import world_size


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM. While training steps run, the first signal asks the run to stop after the
    current step with a checkpoint saved (StopOnRequest); at any other moment, or on a second signal, it
    stops at once (KeyboardInterrupt), keeping whatever checkpoints exist."""

    def __init__(self):
        self.signal_name: str | None = None
        self.graceful = False
        self.finished = False  # the results are written: nothing is left to stop
        self.run_dir: str | None = None
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def exit_code(self) -> int:
        return 128 + (signal.SIGTERM if self.signal_name == "SIGTERM" else signal.SIGINT)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.finished:
            return
        if self.graceful and self.signal_name is None:
            self.signal_name = name
            print(f"\n{name}: stopping after this step and saving a checkpoint (send it again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        self.signal_name = self.signal_name or name
        raise KeyboardInterrupt(name)


class StopOnRequest(TrainerCallback):
    """Ends training at the step where a stop was requested, with a checkpoint of that step. Under several
    processes they agree first, so that all stop at the same step."""

    def __init__(self, stop: StopRequest, save: bool):
        self.stop = stop
        self.save = save
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.stop.signal_name is not None
        if world_size() > 1 and torch.distributed.is_initialized():
            flag = torch.tensor([float(requested)], device=args.device if torch.distributed.get_backend() == "nccl"
                                else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            requested = bool(flag.item())
            self.stop.signal_name = self.stop.signal_name or ("SIGTERM" if requested else None)
        if requested and state.global_step < state.max_steps:
            self.stopped_at = state.global_step
            control.should_save = self.save
            control.should_training_stop = True


class signals_held:
    """SIGINT and SIGTERM wait (are not lost) while the final results are written."""

    def __enter__(self):
        self.held = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
        if self.held:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    def __exit__(self, *exc):
        if self.held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
